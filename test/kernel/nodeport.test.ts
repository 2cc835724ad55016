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
  NodePortTopology,
  type Peer,
  type TopologyNode,
} from './support/nodeport-topology.js';

const tag = `weft-kt-np-${process.pid}`;
const BACKEND_PORT = 8080;

let topo: NodePortTopology;
let client: Peer;
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

function tcp(host: string, port: number, count = 1): Promise<Exchange[]> {
  return client.request<Exchange[]>({ op: 'tcp', host, port, count });
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
