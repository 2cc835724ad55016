// The NodePort programs packet by packet: frames built here are fed to weft_np_ingress and
// weft_np_egress with BPF_PROG_TEST_RUN (in a namespace of our own, whose loopback plays the
// uplink), and what comes out is checked byte by byte, checksums computed independently. A
// test-run skb holds full checksums (CHECKSUM_NONE), so the arithmetic is checked here; the
// topology tests (nodeport.test.ts) carry offloaded (partial) checksums across veths.
import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkEnvironment } from '../../src/datapath/environment.js';
import {
  type LbBackend,
  type LbFrontend,
  LbMaps,
  type LbProtocol,
  LbScope,
  LbServiceFlag,
  serviceKey,
} from '../../src/datapath/lbmap.js';
import { inNetns } from '../../src/datapath/netns.js';
import {
  defaultSnatPorts,
  NodePortMaps,
  type NodePortStat,
  nodePortProgramNames,
  nodePortStats,
} from '../../src/datapath/nodeport.js';
import { BpfObject, type BpfProgram } from '../../src/datapath/object.js';
import { testRun } from '../../src/datapath/testrun.js';
import { bpfObjectPath } from '../../src/shared/self.js';
import {
  CLIENT_MAC,
  ETH_HLEN,
  ipv4Frame,
  NODE_MAC,
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
  parseIpv4Frame,
  TCP_ACK,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  tcpSegment,
  udpDatagram,
  internetChecksum,
  addressBytes,
} from './support/ipv4-packets.js';

const tag = `weft-kt-np-${process.pid}-pkt`;
const nsPath = `/run/netns/${tag}`;
const pinRoot = `/sys/fs/bpf/${tag}`;

const NODE = '10.252.0.1';
const CLIENT = '10.252.9.9';
/** Local backends are on this node (weft_np4_local_backends); the remote one is routed via d0. */
const LOCAL_A = '10.252.0.50';
const LOCAL_B = '10.252.0.51';
const LOCAL_C = '10.252.0.52';
const REMOTE = '10.252.1.20';
const BACKEND_PORT = 8080;
const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;
const TC_ACT_REDIRECT = 7;

const backendIds = {
  LOCAL_A_TCP: 1,
  LOCAL_A_UDP: 2,
  REMOTE_TCP: 3,
  REMOTE_UDP: 4,
  LOCAL_B_TCP: 5,
  LOCAL_C_TCP: 6,
};

let obj: BpfObject;
let lb: LbMaps;
let np: NodePortMaps;
let ingress: BpfProgram;
let egress: BpfProgram;

function backend(id: number, address: string, protocol: LbProtocol): LbBackend {
  return { id, address, port: BACKEND_PORT, protocol, state: 'active', clusterId: 0, zone: 0 };
}

let nextRevNat = 1;
function frontend(port: number, protocol: LbProtocol, backends: number[]): LbFrontend {
  const f: LbFrontend = {
    address: NODE,
    port,
    protocol,
    type: 'NodePort',
    revNatIndex: nextRevNat++,
    backends,
    externalTrafficPolicy: 'Cluster',
    internalTrafficPolicy: 'Cluster',
  };
  lb.applyFrontends([f]);
  return f;
}

function run(prog: BpfProgram, frame: Buffer) {
  return inNetns(nsPath, () => testRun(prog, { data: frame }));
}

function counters(): Record<NodePortStat, number> {
  return np.counters();
}

function delta(before: Record<NodePortStat, number>): Partial<Record<NodePortStat, number>> {
  const now = counters();
  const out: Partial<Record<NodePortStat, number>> = {};
  for (const k of nodePortStats) if (now[k] !== before[k]) out[k] = now[k] - before[k];
  return out;
}

function tcpFrame(opts: {
  src?: string;
  dst?: string;
  sport: number;
  dport: number;
  flags: number;
  seq?: number;
  ack?: number;
  payload?: Buffer;
  options?: Buffer;
  ipOptions?: Buffer;
}): Buffer {
  const src = opts.src ?? CLIENT;
  const dst = opts.dst ?? NODE;
  return ipv4Frame({
    src,
    dst,
    proto: PROTO_TCP,
    options: opts.ipOptions,
    payload: tcpSegment({ ...opts, src, dst }),
  });
}

function udpFrame(opts: {
  src?: string;
  dst?: string;
  sport: number;
  dport: number;
  payload: Buffer;
  noChecksum?: boolean;
  ipOptions?: Buffer;
}): Buffer {
  const src = opts.src ?? CLIENT;
  const dst = opts.dst ?? NODE;
  return ipv4Frame({
    src,
    dst,
    proto: PROTO_UDP,
    options: opts.ipOptions,
    payload: udpDatagram({ ...opts, src, dst }),
  });
}

/** TCP options of a typical SYN: MSS, SACK permitted, timestamps, window scale (20 bytes). */
const SYN_OPTIONS = Buffer.from([2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7]);
/** IP options: three NOPs and an end of list. */
const IP_OPTIONS = Buffer.from([1, 1, 1, 0]);

beforeAll(() => {
  checkEnvironment();
  execFileSync('ip', ['netns', 'add', tag]);
  const inNs = (...args: string[]) => execFileSync('ip', ['-n', tag, ...args]);
  inNs('link', 'set', 'lo', 'up');
  execFileSync('ip', ['netns', 'exec', tag, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  // The remote backend's network and the client's, behind a veth: packets the programs redirect
  // (SNATed ones, and replies to the client) are routed there.
  inNs('link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1');
  inNs('addr', 'add', '10.252.1.1/24', 'dev', 'd0');
  inNs('link', 'set', 'd0', 'up');
  inNs('link', 'set', 'd1', 'up');
  inNs('route', 'add', '10.252.9.0/24', 'dev', 'd0');

  lb = LbMaps.open({ pinRoot });
  obj = BpfObject.open(bpfObjectPath('nodeport.bpf.o'), { pinRoot });
  obj.load();
  np = NodePortMaps.fromObject(obj);
  ingress = obj.program(nodePortProgramNames.ingress);
  egress = obj.program(nodePortProgramNames.egress);
  // A test run's skb arrives on the namespace's loopback (ifindex 1): it plays the uplink.
  np.writeConfig({
    node_ipv4: NODE,
    uplink_ifindex: 1,
    snat_port_min: defaultSnatPorts.min,
    snat_port_max: defaultSnatPorts.max,
    flags: 0,
  });
  np.setLocalBackends([LOCAL_A, LOCAL_B, LOCAL_C]);
  lb.applyBackends([
    backend(backendIds.LOCAL_A_TCP, LOCAL_A, 'TCP'),
    backend(backendIds.LOCAL_A_UDP, LOCAL_A, 'UDP'),
    backend(backendIds.REMOTE_TCP, REMOTE, 'TCP'),
    backend(backendIds.REMOTE_UDP, REMOTE, 'UDP'),
    backend(backendIds.LOCAL_B_TCP, LOCAL_B, 'TCP'),
    backend(backendIds.LOCAL_C_TCP, LOCAL_C, 'TCP'),
  ]);
});

afterAll(() => {
  try {
    np?.close();
    lb?.close();
    obj?.close();
  } finally {
    // Each step on its own: a failure in one (or a namespace never made) must not skip the next.
    spawnSync('ip', ['netns', 'del', tag], { stdio: 'ignore' });
    rmSync(pinRoot, { recursive: true, force: true });
  }
});

describe('translation keeps every checksum valid', () => {
  it('DNAT to a local backend rewrites only the destination (TCP with options and an odd payload)', () => {
    frontend(30080, 'TCP', [backendIds.LOCAL_A_TCP]);
    const frame = tcpFrame({
      sport: 40000,
      dport: 30080,
      flags: TCP_SYN,
      seq: 1,
      options: SYN_OPTIONS,
      payload: Buffer.from('hello'),
    });
    const r = run(ingress, frame);
    expect(r.retval).toBe(TC_ACT_OK);
    const p = parseIpv4Frame(r.dataOut);
    expect(p).toMatchObject({ src: CLIENT, sport: 40000, dst: LOCAL_A, dport: BACKEND_PORT, ttl: 64 });
    expect(p.ipChecksumValid).toBe(true);
    expect(p.l4ChecksumValid).toBe(true);
    expect(p.payload.subarray(20)).toEqual(Buffer.concat([SYN_OPTIONS, Buffer.from('hello')]));
  });

  it("the local backend's reply leaves the uplink from the frontend (egress)", () => {
    const reply = tcpFrame({
      src: LOCAL_A,
      dst: CLIENT,
      sport: BACKEND_PORT,
      dport: 40000,
      flags: TCP_SYN | TCP_ACK,
    });
    const r = run(egress, reply);
    expect(r.retval).toBe(TC_ACT_OK);
    const p = parseIpv4Frame(r.dataOut);
    expect(p).toMatchObject({ src: NODE, sport: 30080, dst: CLIENT, dport: 40000 });
    expect(p.ipChecksumValid && p.l4ChecksumValid).toBe(true);
  });

  it('SNAT to a remote backend: node address and a SNAT port, TTL one less; the reply returns from the frontend', () => {
    frontend(30081, 'UDP', [backendIds.REMOTE_UDP]);
    const before = counters();
    const r = run(ingress, udpFrame({ sport: 40001, dport: 30081, payload: Buffer.from('odd len') }));
    expect(r.retval).toBe(TC_ACT_REDIRECT);
    const out = parseIpv4Frame(r.dataOut);
    expect(out).toMatchObject({ src: NODE, dst: REMOTE, dport: BACKEND_PORT, ttl: 63 });
    expect(out.sport).toBeGreaterThanOrEqual(defaultSnatPorts.min);
    expect(out.sport).toBeLessThanOrEqual(defaultSnatPorts.max);
    expect(out.ipChecksumValid && out.l4ChecksumValid).toBe(true);

    const reply = udpFrame({
      src: REMOTE,
      dst: NODE,
      sport: BACKEND_PORT,
      dport: out.sport,
      payload: Buffer.from('pong'),
    });
    const back = run(ingress, reply);
    expect(back.retval).toBe(TC_ACT_REDIRECT);
    const p = parseIpv4Frame(back.dataOut);
    expect(p).toMatchObject({ src: NODE, sport: 30081, dst: CLIENT, dport: 40001, ttl: 63 });
    expect(p.ipChecksumValid && p.l4ChecksumValid).toBe(true);
    expect(delta(before)).toEqual({ ct_miss: 1, fwd_snat: 1, rev_snat: 1 });
  });

  it('a UDP datagram without a checksum (0) keeps none through DNAT and SNAT', () => {
    frontend(30082, 'UDP', [backendIds.LOCAL_A_UDP]);
    frontend(30083, 'UDP', [backendIds.REMOTE_UDP]);
    for (const port of [30082, 30083]) {
      const r = run(
        ingress,
        udpFrame({ sport: 40002, dport: port, payload: Buffer.from('x'), noChecksum: true }),
      );
      const p = parseIpv4Frame(r.dataOut);
      expect(p.dst, String(port)).toBe(port === 30082 ? LOCAL_A : REMOTE);
      expect(p.l4Checksum, String(port)).toBe(0);
      expect(p.ipChecksumValid).toBe(true);
    }
  });

  it('IP options are skipped over to find the ports, and kept', () => {
    const r = run(ingress, tcpFrame({ sport: 40003, dport: 30080, flags: TCP_SYN, ipOptions: IP_OPTIONS }));
    expect(r.retval).toBe(TC_ACT_OK);
    const p = parseIpv4Frame(r.dataOut);
    expect(p).toMatchObject({ ihl: 24, dst: LOCAL_A, dport: BACKEND_PORT });
    expect(p.options).toEqual(IP_OPTIONS);
    expect(p.ipChecksumValid && p.l4ChecksumValid).toBe(true);
  });
});

describe('fragments', () => {
  it("a datagram's later fragment follows its first: same backend, by the first's ports", () => {
    frontend(30084, 'UDP', [backendIds.REMOTE_UDP]);
    const datagram = udpDatagram({
      src: CLIENT,
      dst: NODE,
      sport: 40004,
      dport: 30084,
      payload: Buffer.alloc(40, 7),
    });
    const first = ipv4Frame({
      src: CLIENT,
      dst: NODE,
      proto: PROTO_UDP,
      id: 0x4242,
      fragOff: 0x2000,
      payload: datagram.subarray(0, 24),
    });
    const later = ipv4Frame({
      src: CLIENT,
      dst: NODE,
      proto: PROTO_UDP,
      id: 0x4242,
      fragOff: 3,
      payload: datagram.subarray(24),
    });
    const a = run(ingress, first);
    const b = run(ingress, later);
    expect([a.retval, b.retval]).toEqual([TC_ACT_REDIRECT, TC_ACT_REDIRECT]);
    const pa = parseIpv4Frame(a.dataOut);
    const pb = parseIpv4Frame(b.dataOut);
    expect(pb).toMatchObject({ src: NODE, dst: REMOTE, fragOff: 3, ttl: 63 });
    expect(pa).toMatchObject({ src: NODE, dst: REMOTE, fragOff: 0x2000, ttl: 63 });
    expect(pa.ipChecksumValid && pb.ipChecksumValid).toBe(true);
    expect(pb.payload).toEqual(datagram.subarray(24));
    // Reassembled, the datagram's checksum holds for its new addresses.
    const whole = Buffer.concat([pa.payload, pb.payload]);
    const pseudo = Buffer.concat([
      addressBytes(NODE),
      addressBytes(REMOTE),
      Buffer.from([0, PROTO_UDP, 0, whole.length]),
    ]);
    expect(internetChecksum(pseudo, whole)).toBe(0);
  });

  it('a later fragment whose first was never seen passes untouched', () => {
    const orphan = ipv4Frame({
      src: CLIENT,
      dst: NODE,
      proto: PROTO_UDP,
      id: 0x5555,
      fragOff: 3,
      payload: Buffer.alloc(24, 1),
    });
    const before = counters();
    const r = run(ingress, orphan);
    expect(r.retval).toBe(TC_ACT_OK);
    expect(r.dataOut).toEqual(orphan);
    expect(delta(before)).toEqual({ frag_untracked: 1 });
  });
});

describe('refusal answers in place', () => {
  it('a SYN to a frontend without backends becomes a RST|ACK acknowledging it, from the frontend', () => {
    frontend(30090, 'TCP', []);
    const before = counters();
    const syn = tcpFrame({
      sport: 40010,
      dport: 30090,
      flags: TCP_SYN,
      seq: 1000,
      options: SYN_OPTIONS,
      ipOptions: IP_OPTIONS,
    });
    const r = run(ingress, syn);
    expect(r.retval).toBe(TC_ACT_REDIRECT);
    const p = parseIpv4Frame(r.dataOut);
    expect(r.dataOut.length).toBe(ETH_HLEN + 40);
    expect(p).toMatchObject({
      dstMac: CLIENT_MAC,
      srcMac: NODE_MAC,
      ihl: 20,
      totalLength: 40,
      proto: PROTO_TCP,
    });
    expect(p).toMatchObject({ src: NODE, sport: 30090, dst: CLIENT, dport: 40010, ttl: 64 });
    expect(p.payload[12]! >> 4).toBe(5);
    expect(p.payload[13]).toBe(TCP_RST | TCP_ACK);
    expect(p.payload.readUInt32BE(4)).toBe(0);
    expect(p.payload.readUInt32BE(8)).toBe(1001);
    expect(p.ipChecksumValid && p.l4ChecksumValid).toBe(true);
    expect(delta(before)).toEqual({ ct_miss: 1, refused_tcp_rst: 1 });
  });

  it('a segment that acknowledges data gets a RST with that sequence number; a RST gets no answer', () => {
    const data = tcpFrame({
      sport: 40011,
      dport: 30090,
      flags: TCP_ACK | TCP_PSH,
      seq: 5,
      ack: 777,
      payload: Buffer.from('data!'),
    });
    const r = run(ingress, data);
    expect(r.retval).toBe(TC_ACT_REDIRECT);
    const p = parseIpv4Frame(r.dataOut);
    expect(p.payload[13]).toBe(TCP_RST);
    expect(p.payload.readUInt32BE(4)).toBe(777);
    expect(p.ipChecksumValid && p.l4ChecksumValid).toBe(true);

    const before = counters();
    const rst = run(ingress, tcpFrame({ sport: 40012, dport: 30090, flags: TCP_RST, seq: 9 }));
    expect(rst.retval).toBe(TC_ACT_SHOT);
    expect(delta(before)).toEqual({ ct_miss: 1, refused_dropped: 1 });
  });

  it('a first fragment of a TCP segment is dropped, not answered: its checksum covers bytes it does not hold', () => {
    const segment = tcpSegment({
      src: CLIENT,
      dst: NODE,
      sport: 40014,
      dport: 30090,
      flags: TCP_SYN,
      payload: Buffer.alloc(64),
    });
    const first = ipv4Frame({
      src: CLIENT,
      dst: NODE,
      proto: PROTO_TCP,
      id: 0x6060,
      fragOff: 0x2000,
      payload: segment.subarray(0, 40),
    });
    const before = counters();
    expect(run(ingress, first).retval).toBe(TC_ACT_SHOT);
    expect(delta(before)).toEqual({ ct_miss: 1, refused_dropped: 1 });
  });

  it('a UDP datagram to a frontend without backends becomes ICMP port unreachable quoting it', () => {
    frontend(30090, 'UDP', []);
    const frame = udpFrame({
      sport: 40013,
      dport: 30090,
      payload: Buffer.from('is anyone there?'),
      ipOptions: IP_OPTIONS,
    });
    const r = run(ingress, frame);
    expect(r.retval).toBe(TC_ACT_REDIRECT);
    const p = parseIpv4Frame(r.dataOut);
    const quote = frame.subarray(ETH_HLEN, ETH_HLEN + 24 + 8);
    expect(p).toMatchObject({
      dstMac: CLIENT_MAC,
      srcMac: NODE_MAC,
      ihl: 20,
      proto: PROTO_ICMP,
      src: NODE,
      dst: CLIENT,
    });
    expect(p.totalLength).toBe(20 + 8 + quote.length);
    expect(r.dataOut.length).toBe(ETH_HLEN + p.totalLength);
    expect([p.payload[0], p.payload[1]]).toEqual([3, 3]);
    expect(p.payload.subarray(8)).toEqual(quote);
    expect(p.ipChecksumValid && p.l4ChecksumValid).toBe(true);
  });
});

describe('traffic that is not ours', () => {
  it('ARP and IPv6 frames, and packets to no frontend, pass untouched', () => {
    const arp = Buffer.concat([NODE_MAC, CLIENT_MAC, Buffer.from([0x08, 0x06]), Buffer.alloc(28, 1)]);
    const ipv6 = Buffer.concat([NODE_MAC, CLIENT_MAC, Buffer.from([0x86, 0xdd, 0x60]), Buffer.alloc(53)]);
    const elsewhere = tcpFrame({ sport: 40020, dport: 22, flags: TCP_SYN });
    const before = counters();
    for (const frame of [arp, ipv6, elsewhere]) {
      for (const prog of [ingress, egress]) {
        const r = run(prog, frame);
        expect(r.retval).toBe(TC_ACT_OK);
        expect(r.dataOut).toEqual(frame);
      }
    }
    expect(delta(before)).toEqual({});
  });
});

describe('connection tracking', () => {
  it('a flow keeps its backend while it lives, even when the frontend changes; a SYN after it closed chooses anew', () => {
    const f = frontend(30100, 'TCP', [backendIds.LOCAL_A_TCP]);
    const to = (flags: number) =>
      parseIpv4Frame(run(ingress, tcpFrame({ sport: 41000, dport: 30100, flags, seq: 1 })).dataOut).dst;
    expect(to(TCP_SYN)).toBe(LOCAL_A);
    lb.applyFrontends([{ ...f, backends: [backendIds.LOCAL_B_TCP] }]);
    expect(to(TCP_SYN)).toBe(LOCAL_A); // a retransmitted SYN
    expect(to(TCP_ACK)).toBe(LOCAL_A);
    expect(to(TCP_RST | TCP_ACK)).toBe(LOCAL_A); // the client ends the flow
    expect(to(TCP_SYN)).toBe(LOCAL_B); // the same client port, a new connection
  });

  it('a flow whose backend left the backends map is given a new backend', () => {
    const f = frontend(30101, 'TCP', [backendIds.LOCAL_C_TCP]);
    const to = (flags: number) =>
      parseIpv4Frame(run(ingress, tcpFrame({ sport: 41001, dport: 30101, flags, seq: 1 })).dataOut).dst;
    expect(to(TCP_SYN)).toBe(LOCAL_C);
    lb.applyFrontends([{ ...f, backends: [backendIds.LOCAL_B_TCP] }]);
    lb.deleteBackends([backendIds.LOCAL_C_TCP]);
    const before = counters();
    expect(to(TCP_ACK)).toBe(LOCAL_B);
    expect(delta(before)).toMatchObject({ ct_backend_gone: 1, ct_miss: 1, fwd_local: 1 });
  });
});

describe('loadBalancerSourceRanges', () => {
  it('a frontend with source ranges starts flows only for clients inside them', () => {
    const f = frontend(30110, 'TCP', [backendIds.LOCAL_A_TCP]);
    f.type = 'LoadBalancer';
    // As the agent does it: the ranges first, then the frontend whose master carries the flag.
    np.setSourceRanges(f.revNatIndex, ['10.252.9.77/24', '10.252.7.0/30']);
    expect(np.sourceRangesByFrontend().get(f.revNatIndex)).toEqual(['10.252.7.0/30', '10.252.9.0/24']);
    f.sourceRanges = np.sourceRangesByFrontend().get(f.revNatIndex)!;
    lb.applyFrontends([f]);
    const master = lb.v4.services.lookup(serviceKey(f, LbScope.external, 0))!;
    expect(master.flags & LbServiceFlag.sourceRange).toBe(LbServiceFlag.sourceRange);

    const before = counters();
    const inside = run(ingress, tcpFrame({ src: CLIENT, sport: 42000, dport: 30110, flags: TCP_SYN }));
    expect(inside.retval).toBe(TC_ACT_OK);
    expect(parseIpv4Frame(inside.dataOut).dst).toBe(LOCAL_A);
    const outside = run(ingress, tcpFrame({ src: '10.252.7.4', sport: 42000, dport: 30110, flags: TCP_SYN }));
    expect(outside.retval).toBe(TC_ACT_SHOT);
    expect(delta(before)).toEqual({ ct_miss: 2, fwd_local: 1, source_range_denied: 1 });

    np.setSourceRanges(f.revNatIndex, ['10.252.7.0/29']);
    expect(np.sourceRangesByFrontend().get(f.revNatIndex)).toEqual(['10.252.7.0/29']);
    const nowInside = run(
      ingress,
      tcpFrame({ src: '10.252.7.4', sport: 42001, dport: 30110, flags: TCP_SYN }),
    );
    expect(nowInside.retval).toBe(TC_ACT_OK);
    const nowOutside = run(ingress, tcpFrame({ src: CLIENT, sport: 42001, dport: 30110, flags: TCP_SYN }));
    expect(nowOutside.retval).toBe(TC_ACT_SHOT);
    expect(() => np.setSourceRanges(f.revNatIndex, ['10.252.7.0/33'])).toThrowError(
      expect.objectContaining({ code: 'WEFT_ERR_NODEPORT_CONFIG' }),
    );
  });

  it('the agent replaces every frontend’s ranges at once; a frontend without the flag takes everyone', () => {
    const f = frontend(30111, 'TCP', [backendIds.LOCAL_A_TCP]);
    f.type = 'LoadBalancer';
    const other = 0xfff0;
    np.setSourceRanges(other, ['10.252.100.0/24']);
    expect(np.replaceSourceRanges(new Map([[f.revNatIndex, ['10.252.7.0/29']]]))).toMatchObject({ added: 1 });
    // The other frontend's ranges went: the map now holds exactly what was given.
    expect(np.sourceRangesByFrontend()).toEqual(new Map([[f.revNatIndex, ['10.252.7.0/29']]]));
    // A bad CIDR anywhere: nothing changes.
    expect(() =>
      np.replaceSourceRanges(new Map([[f.revNatIndex, ['10.252.8.0/24', '10.252.7.0/40']]])),
    ).toThrowError(expect.objectContaining({ code: 'WEFT_ERR_NODEPORT_CONFIG' }));
    expect(np.sourceRangesByFrontend()).toEqual(new Map([[f.revNatIndex, ['10.252.7.0/29']]]));

    lb.applyFrontends([{ ...f, sourceRanges: ['10.252.7.0/29'] }]);
    const outside = run(ingress, tcpFrame({ src: CLIENT, sport: 42100, dport: 30111, flags: TCP_SYN }));
    expect(outside.retval).toBe(TC_ACT_SHOT);
    // The Service drops its ranges: the flag goes with the master, then the entries.
    lb.applyFrontends([f]);
    expect(np.replaceSourceRanges(new Map())).toEqual({ added: 0, removed: 1 });
    const open = run(ingress, tcpFrame({ src: CLIENT, sport: 42101, dport: 30111, flags: TCP_SYN }));
    expect(open.retval).toBe(TC_ACT_OK);
    expect(parseIpv4Frame(open.dataOut).dst).toBe(LOCAL_A);
  });
});
