// Per-packet NodePort / ExternalIP / LoadBalancer load-balancing in the real kernel: a client
// namespace and two node namespaces on a LAN, pods behind each node, nodeport.bpf.o attached
// to each node's uplink exactly as the agent attaches it, frontends written through LbMaps.
// The client uses node:net and node:dgram, so what it sees (answers, the backend's view of its
// address, ECONNREFUSED) is what any application outside the cluster would see.
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LbBackend, type LbFrontend, LbMaps, type LbProtocol } from '../../src/datapath/lbmap.js';
import {
  attachNodePort,
  defaultSnatPorts,
  detachNodePort,
  type NodePortDatapath,
  type NodePortStat,
  NpCtFlag,
  NpCtDir,
  nodePortLayoutCodecs,
  nodePortStats,
  queryNodePort,
} from '../../src/datapath/nodeport.js';
import { BpfObject } from '../../src/datapath/object.js';
import { bpfObjectPath } from '../../src/shared/self.js';
import type { Exchange } from './support/nodeport-peer.js';
import {
  CLIENT_ADDRESS,
  CLIENT_SECOND_ADDRESS,
  NODE1_SECOND_ADDRESS,
  NodePortTopology,
  type Peer,
  type TopologyNode,
} from './support/nodeport-topology.js';

const tag = `weft-kt-np-${process.pid}`;
const BACKEND_PORT = 8080;

let topo: NodePortTopology;
let client: Peer;
/** The pods' peers, by pod name: backends, and clients for traffic from inside the cluster. */
const podPeers = new Map<string, Peer>();
const datapath: Partial<Record<TopologyNode['name'], NodePortDatapath>> = {};
const lb: Partial<Record<TopologyNode['name'], LbMaps>> = {};

type PodName = 'pod-a' | 'pod-b' | 'pod-c';
const podNames: PodName[] = ['pod-a', 'pod-b', 'pod-c'];

/** Backend ids: TCP 1-3, UDP 4-6, in pod order. */
function backendId(pod: PodName, protocol: LbProtocol): number {
  return podNames.indexOf(pod) + 1 + (protocol === 'UDP' ? 3 : 0);
}

function backends(): LbBackend[] {
  return topo.pods.flatMap((pod) =>
    (['TCP', 'UDP'] as const).map((protocol) => ({
      id: backendId(pod.name as PodName, protocol),
      address: pod.address,
      port: BACKEND_PORT,
      protocol,
      state: 'active' as const,
      clusterId: 0,
      zone: 0,
    })),
  );
}

let nextRevNat = 1;
/** Writes a frontend into `node`'s maps, as that node's agent would. */
function frontend(
  node: TopologyNode['name'],
  f: { address: string; port: number; protocol: LbProtocol; pods: PodName[] } & Partial<LbFrontend>,
): LbFrontend {
  const { pods, ...rest } = f;
  const full: LbFrontend = {
    type: 'NodePort',
    revNatIndex: nextRevNat++,
    backends: pods.map((p) => backendId(p, f.protocol)),
    externalTrafficPolicy: 'Cluster',
    internalTrafficPolicy: 'Cluster',
    ...rest,
  };
  lb[node]!.applyFrontends([full]);
  return full;
}

function nodeAddress(node: TopologyNode['name']): string {
  return topo.nodes[node].address;
}

function tcp(host: string, port: number, count = 1, from: Peer = client): Promise<Exchange[]> {
  return from.request<Exchange[]>({ op: 'tcp', host, port, count });
}

function udp(host: string, port: number, count = 1, size?: number): Promise<Exchange[]> {
  return client.request<Exchange[]>({ op: 'udp', host, port, count, size });
}

function answered(results: Exchange[]): Array<Extract<Exchange, { ok: true }>> {
  for (const r of results) if (!r.ok) throw new Error(`an exchange failed: ${r.code}`);
  return results as Array<Extract<Exchange, { ok: true }>>;
}

function counters(node: TopologyNode['name']): Record<NodePortStat, number> {
  return datapath[node]!.maps.counters();
}

function delta(
  node: TopologyNode['name'],
  before: Record<NodePortStat, number>,
): Partial<Record<NodePortStat, number>> {
  const now = counters(node);
  const out: Partial<Record<NodePortStat, number>> = {};
  for (const k of nodePortStats) if (now[k] !== before[k]) out[k] = now[k] - before[k];
  return out;
}

function attach(node: TopologyNode): NodePortDatapath {
  return attachNodePort({
    pinRoot: node.pinRoot,
    device: node.uplink,
    nodeIPv4: node.address,
    netns: node.netnsPath,
  });
}

beforeAll(async () => {
  topo = NodePortTopology.create(tag);
  for (const node of Object.values(topo.nodes)) {
    datapath[node.name] = attach(node);
    lb[node.name] = LbMaps.open({ pinRoot: node.pinRoot });
    lb[node.name]!.applyBackends(backends());
    datapath[node.name]!.maps.setLocalBackends(
      topo.pods.filter((p) => p.node === node.name).map((p) => p.address),
    );
  }
  const starting = [topo.peer(topo.client), ...topo.pods.map((p) => topo.peer(p.netns))];
  const [c, ...pods] = await Promise.all(starting);
  client = c!;
  for (const [i, p] of pods.entries()) podPeers.set(topo.pods[i]!.name, p!);
  await Promise.all(
    pods.map((p, i) =>
      p!.request({ op: 'serve', name: topo.pods[i]!.name, host: '0.0.0.0', port: BACKEND_PORT }),
    ),
  );
});

afterAll(async () => {
  try {
    for (const node of Object.values(datapath)) node?.close();
    for (const maps of Object.values(lb)) maps?.close();
  } finally {
    await topo?.destroy();
  }
});

describe('layouts', () => {
  it('every NodePort codec matches the size and member offsets of its C struct (BTF)', () => {
    const checker = BpfObject.open(bpfObjectPath('alignchecker.bpf.o'));
    try {
      for (const codec of nodePortLayoutCodecs) {
        const btf = checker.structLayout(codec.cName);
        expect(btf, `${codec.cName} missing from BTF`).toBeDefined();
        expect(btf!.size, codec.cName).toBe(codec.size);
        const named = codec.fields.filter((f) => !/^pad\d+$/.test(f.name));
        expect(named, codec.cName).toEqual(btf!.members.filter((m) => !/^pad/.test(m.name)));
      }
    } finally {
      checker.close();
    }
  });

  it('the TypeScript enums match the C enums (BTF)', () => {
    const dump = JSON.parse(
      execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', bpfObjectPath('alignchecker.bpf.o')], {
        encoding: 'utf8',
      }),
    ) as { types: Array<{ kind: string; name: string; values?: Array<{ name: string; val: number }> }> };
    const inC = new Map<string, number>();
    for (const t of dump.types) if (t.kind === 'ENUM') for (const v of t.values ?? []) inC.set(v.name, v.val);
    const inTs = new Map<string, number>([
      ['NP_CT_ORIGINAL', NpCtDir.original],
      ['NP_CT_REPLY', NpCtDir.reply],
      ['NP_CT_F_SNAT', NpCtFlag.snat],
      ['NP_CT_F_SEEN_REPLY', NpCtFlag.seenReply],
      ['NP_CT_F_CLIENT_FIN', NpCtFlag.clientFin],
      ['NP_CT_F_BACKEND_FIN', NpCtFlag.backendFin],
      ['NP_CT_F_CLOSING', NpCtFlag.closing],
      ...nodePortStats.map((name, i): [string, number] => [`NP_STAT_${name.toUpperCase()}`, i]),
      ['NP_STAT_MAX', nodePortStats.length],
    ]);
    for (const [name, value] of inTs) expect(inC.get(name), name).toBe(value);
    const cStats = [...inC.keys()].filter((n) => n.startsWith('NP_STAT_'));
    expect(cStats.sort()).toEqual([...inTs.keys()].filter((n) => n.startsWith('NP_STAT_')).sort());
  });
});

describe('NodePort', () => {
  it('a local backend sees the client address itself (no SNAT), over TCP and UDP', async () => {
    const node1 = nodeAddress('node1');
    frontend('node1', { address: node1, port: 30080, protocol: 'TCP', pods: ['pod-a'] });
    frontend('node1', { address: node1, port: 30080, protocol: 'UDP', pods: ['pod-a'] });
    const before = counters('node1');
    const [t] = answered(await tcp(node1, 30080));
    expect(t!.backend).toBe('pod-a');
    expect(t!.seenFrom).toBe(`${CLIENT_ADDRESS}:${t!.localPort}`);
    const [u] = answered(await udp(node1, 30080));
    expect(u!.backend).toBe('pod-a');
    expect(u!.seenFrom).toBe(`${CLIENT_ADDRESS}:${u!.localPort}`);
    const d = delta('node1', before);
    expect(d.fwd_local).toBe(2);
    expect(d.rev_local).toBeGreaterThanOrEqual(2);
    expect(d.fwd_snat).toBeUndefined();
  });
});

function inSnatRange(seenFrom: string, node: TopologyNode['name']): boolean {
  const [address, port] = seenFrom.split(':');
  return (
    address === nodeAddress(node) &&
    Number(port) >= defaultSnatPorts.min &&
    Number(port) <= defaultSnatPorts.max
  );
}

/** Connects until every one of `expected` answered (at most `limit` connections). */
async function tcpUntilAll(host: string, port: number, expected: string[], limit = 120, from: Peer = client) {
  const out: Array<Extract<Exchange, { ok: true }>> = [];
  while (out.length < limit && !expected.every((b) => out.some((r) => r.backend === b))) {
    out.push(...answered(await tcp(host, port, 20, from)));
  }
  return out;
}

describe('NodePort to remote backends', () => {
  it('a remote backend is reached through SNAT to the node address and a SNAT port, over TCP and UDP', async () => {
    const node1 = nodeAddress('node1');
    frontend('node1', { address: node1, port: 30081, protocol: 'TCP', pods: ['pod-c'] });
    frontend('node1', { address: node1, port: 30081, protocol: 'UDP', pods: ['pod-c'] });
    const before = counters('node1');
    const [t] = answered(await tcp(node1, 30081));
    const [u] = answered(await udp(node1, 30081));
    expect(t!.backend).toBe('pod-c');
    expect(u!.backend).toBe('pod-c');
    expect(inSnatRange(t!.seenFrom, 'node1'), t!.seenFrom).toBe(true);
    expect(inSnatRange(u!.seenFrom, 'node1'), u!.seenFrom).toBe(true);
    const d = delta('node1', before);
    expect(d.fwd_snat).toBe(2);
    expect(d.rev_snat).toBeGreaterThanOrEqual(2);
    expect(d.fwd_local).toBeUndefined();

    // The agent can show the flow: client, frontend, backend and the SNAT port it left with.
    const flow = datapath
      .node1!.maps.flows()
      .find((f) => f.protocol === 'UDP' && f.client.port === u!.localPort && f.frontend.port === 30081);
    expect(flow).toMatchObject({
      client: { address: CLIENT_ADDRESS, port: u!.localPort },
      frontend: { address: node1, port: 30081 },
      backend: { address: topo.pods[2]!.address, port: BACKEND_PORT, id: backendId('pod-c', 'UDP') },
      snat: { address: node1, port: Number(u!.seenFrom.split(':')[1]) },
      state: ['seen_reply'],
    });
  });

  it('spreads connections over every backend, local and remote, and keeps the client address for local ones', async () => {
    const node1 = nodeAddress('node1');
    frontend('node1', { address: node1, port: 30082, protocol: 'TCP', pods: ['pod-a', 'pod-b', 'pod-c'] });
    const results = await tcpUntilAll(node1, 30082, ['pod-a', 'pod-b', 'pod-c']);
    expect(new Set(results.map((r) => r.backend))).toEqual(new Set(['pod-a', 'pod-b', 'pod-c']));
    for (const r of results) {
      if (r.backend === 'pod-c') expect(inSnatRange(r.seenFrom, 'node1'), r.seenFrom).toBe(true);
      else expect(r.seenFrom).toBe(`${CLIENT_ADDRESS}:${r.localPort}`);
    }
  });

  it('a large TCP exchange (GSO segments, offloaded checksums) crosses the SNAT and the local path intact', async () => {
    const node1 = nodeAddress('node1');
    frontend('node1', { address: node1, port: 30088, protocol: 'TCP', pods: ['pod-c'] });
    frontend('node1', { address: node1, port: 30091, protocol: 'TCP', pods: ['pod-b'] });
    const text = 'x'.repeat(400_000);
    for (const [port, pod] of [
      [30088, 'pod-c'],
      [30091, 'pod-b'],
    ] as const) {
      const [r] = await client.request<Exchange[]>({ op: 'tcp', host: node1, port, count: 1, text });
      expect(r).toMatchObject({ ok: true, backend: pod, length: text.length });
    }
  });

  it('a UDP datagram larger than the MTU is balanced fragment by fragment, and so is its answer', async () => {
    const node1 = nodeAddress('node1');
    frontend('node1', { address: node1, port: 30089, protocol: 'UDP', pods: ['pod-c'] });
    frontend('node1', { address: node1, port: 30090, protocol: 'UDP', pods: ['pod-a'] });
    const [remote] = answered(await udp(node1, 30089, 1, 4000));
    const [local] = answered(await udp(node1, 30090, 1, 4000));
    expect(remote).toMatchObject({ backend: 'pod-c', length: 4000 });
    expect(local).toMatchObject({ backend: 'pod-a', length: 4000 });
    expect(local!.seenFrom).toBe(`${CLIENT_ADDRESS}:${local!.localPort}`);
  });
});

describe('traffic policy and refusal', () => {
  it('externalTrafficPolicy Local sends only to local backends; a node without local endpoints refuses at once', async () => {
    // Service 1 has endpoints on both nodes, service 2 only on node1.
    const local = { externalTrafficPolicy: 'Local' as const };
    for (const protocol of ['TCP', 'UDP'] as const) {
      frontend('node1', {
        address: nodeAddress('node1'),
        port: 30083,
        protocol,
        pods: ['pod-a', 'pod-b'],
        ...local,
        internalBackends: [1, 2, 3].map((i) => i + (protocol === 'UDP' ? 3 : 0)),
      });
      frontend('node2', {
        address: nodeAddress('node2'),
        port: 30083,
        protocol,
        pods: ['pod-c'],
        ...local,
        internalBackends: [1, 2, 3].map((i) => i + (protocol === 'UDP' ? 3 : 0)),
      });
      frontend('node2', {
        address: nodeAddress('node2'),
        port: 30084,
        protocol,
        pods: [],
        ...local,
        internalBackends: [1, 2].map((i) => i + (protocol === 'UDP' ? 3 : 0)),
      });
    }
    const viaNode1 = answered(await tcp(nodeAddress('node1'), 30083, 40));
    expect(new Set(viaNode1.map((r) => r.backend))).toEqual(new Set(['pod-a', 'pod-b']));
    for (const r of viaNode1) expect(r.seenFrom).toBe(`${CLIENT_ADDRESS}:${r.localPort}`);
    const viaNode2 = answered([
      ...(await tcp(nodeAddress('node2'), 30083, 5)),
      ...(await udp(nodeAddress('node2'), 30083, 5)),
    ]);
    expect(new Set(viaNode2.map((r) => r.backend))).toEqual(new Set(['pod-c']));

    const before = counters('node2');
    expect(await tcp(nodeAddress('node2'), 30084)).toEqual([{ ok: false, code: 'ECONNREFUSED' }]);
    expect(await udp(nodeAddress('node2'), 30084)).toEqual([{ ok: false, code: 'ECONNREFUSED' }]);
    expect(delta('node2', before)).toMatchObject({ refused_tcp_rst: 1, refused_icmp: 1 });
  });

  it('a frontend with no backends answers TCP with a RST and UDP with ICMP port unreachable', async () => {
    const node1 = nodeAddress('node1');
    frontend('node1', { address: node1, port: 30085, protocol: 'TCP', pods: [] });
    frontend('node1', { address: node1, port: 30085, protocol: 'UDP', pods: [] });
    const before = counters('node1');
    expect(await tcp(node1, 30085, 3)).toEqual(Array(3).fill({ ok: false, code: 'ECONNREFUSED' }));
    expect(await udp(node1, 30085, 3)).toEqual(Array(3).fill({ ok: false, code: 'ECONNREFUSED' }));
    expect(delta('node1', before)).toEqual({ ct_miss: 6, refused_tcp_rst: 3, refused_icmp: 3 });
  });
});

describe('flows', () => {
  it('an established connection keeps its backend when the backend set changes and across a re-attach (agent restart)', async () => {
    const node1 = nodeAddress('node1');
    const f = frontend('node1', { address: node1, port: 30086, protocol: 'TCP', pods: ['pod-a'] });
    const toLocal = await client.request<Exchange>({
      op: 'tcp-open',
      handle: 'local',
      host: node1,
      port: 30086,
    });
    lb.node1!.applyFrontends([{ ...f, backends: [backendId('pod-c', 'TCP')] }]);
    const toRemote = await client.request<Exchange>({
      op: 'tcp-open',
      handle: 'remote',
      host: node1,
      port: 30086,
    });
    try {
      expect(toLocal).toMatchObject({ ok: true, backend: 'pod-a' });
      expect(toRemote).toMatchObject({ ok: true, backend: 'pod-c' });
      lb.node1!.applyFrontends([{ ...f, backends: [backendId('pod-b', 'TCP')] }]);

      const check = async (when: string) => {
        const local = await client.request<Exchange>({ op: 'tcp-send', handle: 'local', text: when });
        const remote = await client.request<Exchange>({ op: 'tcp-send', handle: 'remote', text: when });
        expect(local, when).toMatchObject({
          ok: true,
          backend: 'pod-a',
          seenFrom: `${CLIENT_ADDRESS}:${(toLocal as { localPort: number }).localPort}`,
        });
        expect(remote, when).toMatchObject({
          ok: true,
          backend: 'pod-c',
          seenFrom: (toRemote as { seenFrom: string }).seenFrom,
        });
        expect(
          answered(await tcp(node1, 30086, 5)).map((r) => r.backend),
          when,
        ).toEqual(Array(5).fill('pod-b'));
      };
      await check('after the backend set changed');

      // An agent restart: the old process's handles go, a new load replaces both filters.
      const before = queryNodePort({ device: 'eth0', netns: topo.nodes.node1.netnsPath });
      datapath.node1!.close();
      datapath.node1 = undefined;
      datapath.node1 = attach(topo.nodes.node1);
      const after = queryNodePort({ device: 'eth0', netns: topo.nodes.node1.netnsPath });
      expect(after.ingress).toBeDefined();
      expect(after.ingress).not.toBe(before.ingress);
      expect(after.egress).not.toBe(before.egress);
      await check('after the programs were re-attached');
    } finally {
      await client.request({ op: 'tcp-close', handle: 'local' });
      await client.request({ op: 'tcp-close', handle: 'remote' });
    }
  });

  it('ClientIP affinity keeps one external client on one backend until the agent unpairs it', async () => {
    const node1 = nodeAddress('node1');
    const f = frontend('node1', {
      address: node1,
      port: 30087,
      protocol: 'TCP',
      pods: ['pod-a', 'pod-b', 'pod-c'],
      affinityTimeoutSeconds: 600,
    });
    const first = answered(await tcp(node1, 30087, 20));
    const chosen = first[0]!.backend;
    expect(first.map((r) => r.backend)).toEqual(Array(20).fill(chosen));
    expect(
      lb
        .node1!.affinityEntries()
        .some(
          ([k]) =>
            k.rev_nat_index === f.revNatIndex &&
            k.client.kind === 'address' &&
            k.client.address === CLIENT_ADDRESS,
        ),
    ).toBe(true);

    // The backend leaves the frontend: its affinity no longer holds, the client sticks to another.
    lb.node1!.applyFrontends([
      { ...f, backends: f.backends.filter((id) => id !== backendId(chosen as PodName, 'TCP')) },
    ]);
    const next = answered(await tcp(node1, 30087, 10));
    expect(next[0]!.backend).not.toBe(chosen);
    expect(next.map((r) => r.backend)).toEqual(Array(10).fill(next[0]!.backend));
  });
});

describe('ExternalIP and LoadBalancer', () => {
  it('frontends routed to the node are balanced like NodePort, local and remote, TCP and UDP', async () => {
    const external = '10.251.100.1';
    const ingress = '10.251.100.2';
    for (const protocol of ['TCP', 'UDP'] as const) {
      frontend('node1', {
        address: external,
        port: 80,
        protocol,
        type: 'ExternalIP',
        pods: ['pod-a', 'pod-c'],
      });
      frontend('node1', {
        address: ingress,
        port: 443,
        protocol,
        type: 'LoadBalancer',
        pods: ['pod-b', 'pod-c'],
      });
    }
    for (const [address, port, pods] of [
      [external, 80, ['pod-a', 'pod-c']],
      [ingress, 443, ['pod-b', 'pod-c']],
    ] as const) {
      const results = await tcpUntilAll(address, port, [...pods]);
      expect(new Set(results.map((r) => r.backend))).toEqual(new Set(pods));
      for (const r of results) {
        if (r.backend === 'pod-c') expect(inSnatRange(r.seenFrom, 'node1'), r.seenFrom).toBe(true);
        else expect(r.seenFrom).toBe(`${CLIENT_ADDRESS}:${r.localPort}`);
      }
      const datagrams = answered(await udp(address, port, 10));
      expect(pods).toEqual(expect.arrayContaining([...new Set(datagrams.map((r) => r.backend))]));
    }
  });
});

describe('clients inside the cluster', () => {
  it("a pod on another node reaching node1's NodePort is balanced like an external client, itself included", async () => {
    const node1 = nodeAddress('node1');
    const podC = topo.pods.find((p) => p.name === 'pod-c')!;
    frontend('node1', { address: node1, port: 30094, protocol: 'TCP', pods: ['pod-a', 'pod-c'] });
    const results = await tcpUntilAll(node1, 30094, ['pod-a', 'pod-c'], 120, podPeers.get('pod-c')!);
    for (const r of results) {
      // pod-c reaching itself goes out through node1's SNAT and back (hairpin through node1).
      if (r.backend === 'pod-c') expect(inSnatRange(r.seenFrom, 'node1'), r.seenFrom).toBe(true);
      else expect(r.seenFrom).toBe(`${podC.address}:${r.localPort}`);
    }
  });
});

describe('several uplinks', () => {
  it('balances on every uplink it is attached to, each with its own configuration', async () => {
    const node1 = topo.nodes.node1;
    const second = attachNodePort({
      pinRoot: node1.pinRoot,
      device: 'eth1',
      nodeIPv4: node1.address,
      netns: node1.netnsPath,
    });
    try {
      expect(second.maps.configs().map((c) => c.uplink_ifindex)).toEqual(
        [datapath.node1!.ifindex, second.ifindex].sort((a, b) => a - b),
      );
      frontend('node1', {
        address: NODE1_SECOND_ADDRESS,
        port: 30092,
        protocol: 'TCP',
        pods: ['pod-a', 'pod-c'],
      });
      const results = await tcpUntilAll(NODE1_SECOND_ADDRESS, 30092, ['pod-a', 'pod-c']);
      for (const r of results) {
        // pod-c answers node1's SNAT address on eth0; the reply is sent back to the client on eth1.
        if (r.backend === 'pod-c') expect(inSnatRange(r.seenFrom, 'node1'), r.seenFrom).toBe(true);
        else expect(r.seenFrom).toBe(`${CLIENT_SECOND_ADDRESS}:${r.localPort}`);
      }
      // The first uplink is still served.
      frontend('node1', { address: node1.address, port: 30093, protocol: 'TCP', pods: ['pod-b'] });
      expect(answered(await tcp(node1.address, 30093))[0]).toMatchObject({ backend: 'pod-b' });
    } finally {
      second.close();
      detachNodePort({ device: 'eth1', netns: node1.netnsPath });
    }
  });
});

describe('traffic that is not ours', () => {
  it('a ClusterIP frontend is not balanced on the uplink: the packet reaches whatever owns the address', async () => {
    const clusterIP = '10.251.200.1';
    topo.addLoopbackAddress(topo.nodes.node1.netns, clusterIP);
    const host = await topo.peer(topo.nodes.node1.netns);
    await host.request({ op: 'serve', name: 'node1-itself', host: clusterIP, port: 80 });
    frontend('node1', { address: clusterIP, port: 80, protocol: 'TCP', type: 'ClusterIP', pods: ['pod-a'] });
    frontend('node1', { address: clusterIP, port: 80, protocol: 'UDP', type: 'ClusterIP', pods: ['pod-a'] });
    const before = counters('node1');
    const [t] = answered(await tcp(clusterIP, 80));
    const [u] = answered(await udp(clusterIP, 80));
    expect(t).toMatchObject({ backend: 'node1-itself', seenFrom: `${CLIENT_ADDRESS}:${t!.localPort}` });
    expect(u).toMatchObject({ backend: 'node1-itself', seenFrom: `${CLIENT_ADDRESS}:${u!.localPort}` });
    expect(delta('node1', before)).toEqual({});
  });

  it("refuses a SNAT range that overlaps the node's ephemeral ports, or a bad node address, before attaching", () => {
    const node2 = topo.nodes.node2;
    const where = { device: 'eth0', netns: node2.netnsPath };
    const programs = queryNodePort(where);
    const attempt = (extra: { nodeIPv4?: string; snatPorts?: { min: number; max: number } }) => () =>
      attachNodePort({
        pinRoot: node2.pinRoot,
        device: 'eth0',
        nodeIPv4: node2.address,
        netns: node2.netnsPath,
        ...extra,
      });
    expect(attempt({ snatPorts: { min: 40_000, max: 40_999 } })).toThrowError(
      expect.objectContaining({
        code: 'WEFT_ERR_NODEPORT_CONFIG',
        message: expect.stringMatching(/overlap .*ip_local_port_range/),
      }),
    );
    expect(attempt({ nodeIPv4: '10.251.0.300' })).toThrowError(
      expect.objectContaining({ code: 'WEFT_ERR_NODEPORT_CONFIG' }),
    );
    expect(attempt({ snatPorts: { min: 65_000, max: 64_000 } })).toThrowError(
      expect.objectContaining({ code: 'WEFT_ERR_NODEPORT_CONFIG' }),
    );
    expect(queryNodePort(where)).toEqual(programs);
    expect(datapath.node2!.maps.readConfig(datapath.node2!.ifindex)).toMatchObject({
      snat_port_min: defaultSnatPorts.min,
    });
  });

  it('detaching removes both filters and leaves the maps pinned for the next attach', () => {
    const where = { device: 'eth0', netns: topo.nodes.node2.netnsPath };
    expect(detachNodePort(where)).toEqual({ ingress: true, egress: true });
    expect(queryNodePort(where)).toEqual({ ingress: undefined, egress: undefined });
    expect(detachNodePort(where)).toEqual({ ingress: false, egress: false });
    expect(datapath.node2!.maps.readConfig(datapath.node2!.ifindex)?.node_ipv4).toBe(nodeAddress('node2'));
  });
});
