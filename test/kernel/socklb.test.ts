// Socket load-balancing in the real kernel: sock_lb.bpf.o attached to a cgroup the test makes,
// a client process inside that cgroup and a network namespace, backends in the namespace, and
// frontends written through LbMaps. The client uses node:net and node:dgram, so connect,
// sendmsg, recvmsg and getpeername are the system calls applications make.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LbBackend, LbFrontend, LbProtocol, SockLbStat } from '../../src/datapath/lbmap.js';
import { LbServiceFlag2, LbScope } from '../../src/datapath/lbmap.js';
import { Sandbox, type Workload, WorkloadError } from './support/sandbox.js';
import { type LoadedSockLb, loadSockLb, monotonicSeconds } from './support/socklb.js';
import type { TcpResult, UdpResult } from './support/workload-protocol.js';

const tag = `weft-kt-socklb-${process.pid}`;
const BACKEND_PORT = 8080;
const v4Backends = ['10.248.0.1', '10.248.0.2', '10.248.0.3'];
const v6Backends = ['fd77:248::1', 'fd77:248::2', 'fd77:248::3'];
const names = ['b1', 'b2', 'b3'];
const CLUSTER_IP = '10.247.0.10';
const CLUSTER_IP6 = 'fd77:247::10';

let box: Sandbox;
let sockLb: LoadedSockLb;
let backends: Workload;
let client: Workload;

/** Backend ids: 1-3 IPv4/TCP, 4-6 IPv4/UDP, 11-13 IPv6/TCP, 14-16 IPv6/UDP (b1, b2, b3). */
function backendId(family: 4 | 6, protocol: LbProtocol, which: number): number {
  return (family === 6 ? 10 : 0) + (protocol === 'UDP' ? 3 : 0) + which + 1;
}

function allBackends(): LbBackend[] {
  const out: LbBackend[] = [];
  for (const family of [4, 6] as const) {
    for (const protocol of ['TCP', 'UDP'] as const) {
      (family === 4 ? v4Backends : v6Backends).forEach((address, i) => {
        out.push({
          id: backendId(family, protocol, i),
          address,
          port: BACKEND_PORT,
          protocol,
          state: 'active',
          clusterId: 0,
          zone: 0,
        });
      });
    }
  }
  return out;
}

let nextRevNat = 1;
function frontend(
  address: string,
  port: number,
  protocol: LbProtocol,
  which: number[],
  extra: Partial<LbFrontend> = {},
) {
  const family = address.includes(':') ? 6 : 4;
  const f: LbFrontend = {
    address,
    port,
    protocol,
    type: 'ClusterIP',
    revNatIndex: nextRevNat++,
    backends: which.map((i) => backendId(family, protocol, i)),
    externalTrafficPolicy: 'Cluster',
    internalTrafficPolicy: 'Cluster',
    ...extra,
  };
  sockLb.lb.applyFrontends([f]);
  return f;
}

function tcpConnect(host: string, port: number, count = 1): Promise<TcpResult[]> {
  return client.request<TcpResult[]>({ op: 'tcp-connect', host, port, count });
}

/** Connects until every expected backend answered (or 300 connections), and returns all answers. */
async function connectUntilAllSeen(host: string, port: number, expected: string[]): Promise<TcpResult[]> {
  const results: TcpResult[] = [];
  while (results.length < 300 && !expected.every((n) => results.some((r) => r.backend === n))) {
    results.push(...(await tcpConnect(host, port, 30)));
  }
  return results;
}

function udpRequest(host: string, port: number, connected: boolean, text = 'hello'): Promise<UdpResult> {
  return client.request<UdpResult>({ op: 'udp-request', host, port, text, connected });
}

async function errorCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof WorkloadError) return err.code;
    throw err;
  }
  return 'no error';
}

function stats(): Record<SockLbStat, number> {
  return sockLb.lb.sockLbStats();
}

beforeAll(async () => {
  box = Sandbox.create(tag, { addresses: [...v4Backends, ...v6Backends] });
  sockLb = loadSockLb(box.pinRoot, box.cgroup);
  sockLb.lb.applyBackends(allBackends());
  // Backends run in the namespace but outside the cgroup: their own sockets are not balanced.
  backends = await box.workload();
  for (const [i, name] of names.entries()) {
    for (const host of [v4Backends[i]!, v6Backends[i]!]) {
      await backends.request({ op: 'serve', protocol: 'tcp', name, host, port: BACKEND_PORT });
      await backends.request({ op: 'serve', protocol: 'udp', name, host, port: BACKEND_PORT });
    }
  }
  client = await box.workload({ cgroup: box.cgroup });
});

afterAll(async () => {
  try {
    sockLb?.close();
  } finally {
    await box?.destroy();
  }
});

describe('IPv4 ClusterIP', () => {
  it('TCP connections reach one of the three backends, and every backend over many connections', async () => {
    frontend(CLUSTER_IP, 80, 'TCP', [0, 1, 2]);
    const before = stats().translated;
    const results = await connectUntilAllSeen(CLUSTER_IP, 80, names);
    expect(new Set(results.map((r) => r.backend))).toEqual(new Set(names));
    expect(stats().translated - before).toBeGreaterThanOrEqual(results.length);
  });

  it('getpeername on a balanced TCP connection shows the ClusterIP and port, not the backend', async () => {
    const [r] = await tcpConnect(CLUSTER_IP, 80);
    expect(names).toContain(r!.backend);
    expect({ address: r!.remoteAddress, port: r!.remotePort }).toEqual({ address: CLUSTER_IP, port: 80 });
  });

  it('UDP replies to a request sent to the ClusterIP come from the ClusterIP (recvmsg reverse NAT)', async () => {
    frontend(CLUSTER_IP, 53, 'UDP', [0, 1, 2]);
    const r = await udpRequest(CLUSTER_IP, 53, false);
    expect(r.reply).toMatch(/^b[123]:hello$/);
    expect(r.from).toEqual({ address: CLUSTER_IP, port: 53 });
    expect(r.peer).toBeNull();
  });

  it('a connected UDP socket has the ClusterIP as its peer and as the source of replies', async () => {
    const r = await udpRequest(CLUSTER_IP, 53, true);
    expect(r.reply).toMatch(/^b[123]:hello$/);
    expect(r.peer).toEqual({ address: CLUSTER_IP, port: 53 });
    expect(r.from).toEqual({ address: CLUSTER_IP, port: 53 });
  });

  it('a frontend with no backends refuses TCP connects and UDP sends at once with ECONNREFUSED', async () => {
    frontend('10.247.0.11', 80, 'TCP', []);
    frontend('10.247.0.11', 53, 'UDP', []);
    const before = stats().refused_no_backend;
    expect(await errorCode(tcpConnect('10.247.0.11', 80))).toBe('ECONNREFUSED');
    expect(await errorCode(udpRequest('10.247.0.11', 53, false))).toBe('ECONNREFUSED');
    expect(await errorCode(udpRequest('10.247.0.11', 53, true))).toBe('ECONNREFUSED');
    expect(stats().refused_no_backend - before).toBe(3);
  });

  it('an open connection keeps working after its frontend is removed; new connections are no longer balanced', async () => {
    const f = frontend('10.247.0.12', 80, 'TCP', [0, 1, 2]);
    const opened = await client.request<TcpResult>({
      op: 'tcp-open',
      handle: 'kept',
      host: f.address,
      port: 80,
    });
    try {
      sockLb.lb.deleteFrontends([f]);
      expect(sockLb.lb.frontend(f)).toBeUndefined();
      const after = await client.request<{ reply: string } & Omit<TcpResult, 'backend'>>({
        op: 'tcp-send',
        handle: 'kept',
        text: 'still there?',
      });
      expect(after.reply).toBe(`${opened.backend}:still there?`);
      expect(after.remoteAddress).toBe(f.address);
      // Nothing routes 10.247.0.0/16 in the namespace: an untranslated connect cannot succeed.
      expect(await errorCode(tcpConnect(f.address, 80))).toBe('ENETUNREACH');
    } finally {
      await client.request({ op: 'tcp-close', handle: 'kept' });
    }
  });

  it('a backend removed from a frontend gets no new connections', async () => {
    const f = frontend('10.247.0.13', 80, 'TCP', [0, 1, 2]);
    sockLb.lb.applyFrontends([{ ...f, backends: [backendId(4, 'TCP', 0), backendId(4, 'TCP', 1)] }]);
    const results = await tcpConnect(f.address, 80, 60);
    expect(new Set(results.map((r) => r.backend))).toEqual(new Set(['b1', 'b2']));
  });

  it('a process outside the cgroup is not load-balanced', async () => {
    // The backends' workload lives in the namespace but not in the cgroup.
    const code = await errorCode(backends.request({ op: 'tcp-connect', host: CLUSTER_IP, port: 80 }));
    expect(code).toBe('ENETUNREACH');
  });
});

describe('IPv6', () => {
  it('a v4-mapped IPv6 socket to the ClusterIP is balanced through the IPv4 maps', async () => {
    const mapped = `::ffff:${CLUSTER_IP}`;
    const results = await connectUntilAllSeen(mapped, 80, names);
    expect(new Set(results.map((r) => r.backend))).toEqual(new Set(names));
    expect(results.every((r) => r.remoteAddress === mapped && r.remotePort === 80)).toBe(true);
  });

  it('UDP over a v4-mapped IPv6 socket gets replies from the mapped ClusterIP', async () => {
    const mapped = `::ffff:${CLUSTER_IP}`;
    const r = await udpRequest(mapped, 53, false);
    expect(r.reply).toMatch(/^b[123]:hello$/);
    expect(r.from).toEqual({ address: mapped, port: 53 });
  });

  it('an IPv6 ClusterIP is balanced over IPv6 backends, and shows itself as peer and reply source', async () => {
    frontend(CLUSTER_IP6, 80, 'TCP', [0, 1, 2]);
    frontend(CLUSTER_IP6, 53, 'UDP', [0, 1, 2]);
    const results = await connectUntilAllSeen(CLUSTER_IP6, 80, names);
    expect(new Set(results.map((r) => r.backend))).toEqual(new Set(names));
    expect(results.every((r) => r.remoteAddress === CLUSTER_IP6 && r.remotePort === 80)).toBe(true);
    const udp = await udpRequest(CLUSTER_IP6, 53, true);
    expect(udp.reply).toMatch(/^b[123]:hello$/);
    expect(udp.peer).toEqual({ address: CLUSTER_IP6, port: 53 });
    expect(udp.from).toEqual({ address: CLUSTER_IP6, port: 53 });
  });

  it('an IPv6 frontend with no backends refuses at once with ECONNREFUSED', async () => {
    frontend('fd77:247::11', 80, 'TCP', []);
    expect(await errorCode(tcpConnect('fd77:247::11', 80))).toBe('ECONNREFUSED');
  });
});

describe('session affinity (ClientIP)', () => {
  it('with ClientIP affinity a client keeps its backend across connections', async () => {
    const f = frontend('10.247.0.20', 80, 'TCP', [0, 1, 2], { affinityTimeoutSeconds: 3600 });
    const results = await tcpConnect(f.address, 80, 30);
    expect(new Set(results.map((r) => r.backend)).size).toBe(1);
    const entries = sockLb.lb.affinityEntries().filter(([k]) => k.rev_nat_index === f.revNatIndex);
    expect(entries).toHaveLength(1);
    expect(entries[0]![0].client.kind).toBe('netns');
    expect(names[f.backends.indexOf(entries[0]![1].backend_id)]).toBe(results[0]!.backend);
  });

  // One frontend whose only slot is b2, and an affinity entry the test writes for the client's
  // network namespace pointing at b1: which backend answers tells which path the program took.
  it.each([
    ['is honoured while fresh and its backend still serves the frontend', '10.247.0.21', 0, true, 'b1'],
    ['is ignored once older than the timeout', '10.247.0.22', 1000, true, 'b2'],
    [
      'is ignored once the backend no longer serves the frontend (match entry gone)',
      '10.247.0.23',
      0,
      false,
      'b2',
    ],
  ])('an affinity entry %s', async (_name, address, ageSeconds, matched, expected) => {
    const f = frontend(address, 80, 'TCP', [1], { affinityTimeoutSeconds: 10 });
    const [netnsEntry] = sockLb.lb.affinityEntries();
    expect(netnsEntry, 'the previous test leaves the client namespace in the affinity map').toBeDefined();
    const b1 = backendId(4, 'TCP', 0);
    const key = { client: netnsEntry![0].client, rev_nat_index: f.revNatIndex };
    sockLb.lb.affinity.update(key, { last_used: monotonicSeconds() - ageSeconds, backend_id: b1 });
    if (matched) sockLb.lb.affinityMatch.update({ backend_id: b1, rev_nat_index: f.revNatIndex }, 1);
    const [r] = await tcpConnect(f.address, 80);
    expect(r!.backend).toBe(expected);
    expect(sockLb.lb.affinity.lookup(key)?.backend_id).toBe(backendId(4, 'TCP', expected === 'b1' ? 0 : 1));
  });
});

describe('lookup scopes', () => {
  it("a two-scope frontend gives in-cluster (socket) clients the internal scope's backends", async () => {
    const f = frontend('10.247.0.30', 30080, 'TCP', [0], {
      type: 'NodePort',
      externalTrafficPolicy: 'Local',
      internalBackends: [1, 2].map((i) => backendId(4, 'TCP', i)),
    });
    expect(sockLb.lb.frontend(f)).toEqual(f);
    const results = await tcpConnect(f.address, 30080, 60);
    expect(new Set(results.map((r) => r.backend))).toEqual(new Set(['b2', 'b3']));
  });

  it('a master that says two scopes but has no internal run refuses rather than guessing', async () => {
    const f = frontend('10.247.0.31', 80, 'TCP', [0]);
    const services = sockLb.lb.v4.services;
    const key = { address: f.address, dport: 80, backend_slot: 0, proto: 6, scope: LbScope.external };
    const master = services.lookup(key)!;
    services.update(key, { ...master, flags2: master.flags2 | LbServiceFlag2.twoScopes });
    const before = stats().refused_inconsistent;
    expect(await errorCode(tcpConnect(f.address, 80))).toBe('ECONNREFUSED');
    expect(stats().refused_inconsistent - before).toBe(1);
  });
});
