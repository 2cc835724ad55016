import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { WeftError } from '../shared/errors.js';
import { bpfObjectPath } from '../shared/self.js';
import { be16, type Codec, canonicalCIDR, ipv4, struct, u8, u16, u32, u64 } from './codec.js';
import { type LbMapSizes, type LbProtocol, lbMaxEntries, protocolName } from './lbmap.js';
import { BpfMap } from './map.js';
import { inNetns } from './netns.js';
import { BpfObject, type BpfProgram } from './object.js';
import { attachTc, detachTc, ifindexOf, queryTc, type TcFilter } from './tc.js';

/**
 * The per-packet NodePort / ExternalIP / LoadBalancer load-balancer on the node's uplink
 * (bpf/nodeport.bpf.c): codecs for the layouts of bpf/include/weft/nodeport.h (checked against
 * BTF by a kernel test), the node configuration, attach/detach of its two tc programs, and
 * NodePortMaps, the typed view of its pinned maps for the agent and the CLI.
 *
 *   const np = attachNodePort({ pinRoot, device: 'eth0', nodeIPv4: '10.0.0.5' });
 *   np.maps.setLocalBackends(['10.244.1.7', ...]); np.close();   // filters stay attached
 *   detachNodePort({ device: 'eth0' });
 */

// ---- layouts (mirror bpf/include/weft/nodeport.h) ----------------------------------------

export interface NpConfig {
  node_ipv4: string;
  uplink_ifindex: number;
  snat_port_min: number;
  snat_port_max: number;
  flags: number;
}
export const npConfig = struct<NpConfig>('np_config', 16, [
  ['node_ipv4', ipv4],
  ['uplink_ifindex', u32],
  ['snat_port_min', u16],
  ['snat_port_max', u16],
  ['flags', u32],
]);

/** A flow as one hook sees it; the key of weft_np4_ct and (dir 0) of weft_np4_snat. */
export interface Np4Tuple {
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  proto: number;
  dir: number;
}
export const np4Tuple = struct<Np4Tuple>('np4_tuple', 16, [
  ['saddr', ipv4],
  ['daddr', ipv4],
  ['sport', be16],
  ['dport', be16],
  ['proto', u8],
  ['dir', u8],
  ['pad', 2],
]);

export interface Np4CtEntry {
  nat_addr: string;
  nat_port: number;
  rev_nat_index: number;
  backend_id: number;
  snat_port: number;
  flags: number;
  /** CLOCK_MONOTONIC seconds. */
  expires: number;
}
export const np4CtEntry = struct<Np4CtEntry>('np4_ct_entry', 20, [
  ['nat_addr', ipv4],
  ['nat_port', be16],
  ['rev_nat_index', u16],
  ['backend_id', u32],
  ['snat_port', be16],
  ['flags', u8],
  ['pad', 1],
  ['expires', u32],
]);

export interface Np4SnatEntry {
  client_addr: string;
  frontend_addr: string;
  client_port: number;
  frontend_port: number;
  rev_nat_index: number;
  expires: number;
}
export const np4SnatEntry = struct<Np4SnatEntry>('np4_snat_entry', 20, [
  ['client_addr', ipv4],
  ['frontend_addr', ipv4],
  ['client_port', be16],
  ['frontend_port', be16],
  ['rev_nat_index', u16],
  ['pad', 2],
  ['expires', u32],
]);

export interface Np4FragKey {
  saddr: string;
  daddr: string;
  id: number;
  proto: number;
}
export const np4FragKey = struct<Np4FragKey>('np4_frag_key', 12, [
  ['saddr', ipv4],
  ['daddr', ipv4],
  ['id', be16],
  ['proto', u8],
  ['pad', 1],
]);

export interface Np4FragPorts {
  sport: number;
  dport: number;
}
export const np4FragPorts = struct<Np4FragPorts>('np4_frag_ports', 4, [
  ['sport', be16],
  ['dport', be16],
]);

export interface Np4SourceRangeKey {
  /** 32 (rev_nat_index and pad) plus the range's prefix length. */
  prefixlen: number;
  rev_nat_index: number;
  address: string;
}
export const np4SourceRangeKey = struct<Np4SourceRangeKey>('np4_source_range_key', 12, [
  ['prefixlen', u32],
  ['rev_nat_index', u16],
  ['pad', 2],
  ['address', ipv4],
]);

/** Every struct codec of nodeport.h, for the test that compares them with BTF. */
export const nodePortLayoutCodecs = [
  npConfig,
  np4Tuple,
  np4CtEntry,
  np4SnatEntry,
  np4FragKey,
  np4FragPorts,
  np4SourceRangeKey,
];

// ---- enums (mirror nodeport.h; a kernel test compares them with BTF) -----------------------

/** enum np_ct_dir */
export const NpCtDir = { original: 0, reply: 1 } as const;

/** enum np_ct_flags */
export const NpCtFlag = {
  snat: 1 << 0,
  seenReply: 1 << 1,
  clientFin: 1 << 2,
  backendFin: 1 << 3,
  closing: 1 << 4,
} as const;

/** enum np_stat, in index order: the counters of weft_np_stats. */
export const nodePortStats = [
  'fwd_local',
  'fwd_snat',
  'ct_hit',
  'ct_miss',
  'rev_local',
  'rev_snat',
  'refused_tcp_rst',
  'refused_icmp',
  'refused_dropped',
  'inconsistent',
  'snat_port_exhausted',
  'fib_fail',
  'affinity_hit',
  'ct_backend_gone',
  'frag_untracked',
  'ct_update_failed',
  'ttl_exceeded',
  'rewrite_failed',
  'source_range_denied',
] as const;
export type NodePortStat = (typeof nodePortStats)[number];

// ---- maps, sizes, filters ----------------------------------------------------------------

export const nodePortMapNames = {
  config: 'weft_np_config',
  stats: 'weft_np_stats',
  conntrack: 'weft_np4_ct',
  snat: 'weft_np4_snat',
  fragments: 'weft_np4_frag',
  localBackends: 'weft_np4_local_backends',
  sourceRanges: 'weft_np4_source_ranges',
} as const;

export interface NodePortMapSizes {
  /** LRU: a flow to a local backend takes two entries, one to a remote backend one. */
  conntrack: number;
  /** LRU: flows to remote backends at once. */
  snat: number;
  /** LRU: fragmented datagrams in flight. */
  fragments: number;
  /** Addresses of this node's backends. */
  localBackends: number;
  /** loadBalancerSourceRanges of every frontend together. */
  sourceRanges: number;
}

/** The defaults compiled into bpf/include/weft/nodeport_maps.h. */
export const defaultNodePortMapSizes: Readonly<NodePortMapSizes> = {
  conntrack: 131_072,
  snat: 65_536,
  fragments: 8_192,
  localBackends: 65_536,
  sourceRanges: 16_384,
};

export const nodePortProgramNames = { ingress: 'weft_np_ingress', egress: 'weft_np_egress' } as const;

/**
 * The filters' fixed handle and priority on the uplink's clsact hook: a restart replaces
 * them in place (BPF_TC_F_REPLACE), and priority 1 puts NodePort translation before any later
 * filter there (policy sees backends, as on a pod's veth).
 */
export const nodePortTcFilter = { handle: 0x4e50, priority: 1 } as const;

/**
 * SNAT ports for flows to remote backends. Outside Linux's default ip_local_port_range
 * (32768–60999), so no port the node's own sockets pick is ever a SNAT port, and above the
 * Kubernetes NodePort range (30000–32767).
 */
export const defaultSnatPorts: Readonly<PortRange> = { min: 61_000, max: 65_535 };

export interface PortRange {
  min: number;
  max: number;
}

function nodePortMaxEntries(sizes: Partial<NodePortMapSizes>): Record<string, number> {
  const s = { ...defaultNodePortMapSizes, ...sizes };
  for (const [kind, n] of Object.entries(s)) {
    if (!Number.isInteger(n) || n < 1 || n > 16_777_216) {
      throw new WeftError(
        'WEFT_ERR_NODEPORT_CONFIG',
        `NodePort map size ${kind}=${n} must be an integer from 1 to 16777216`,
      );
    }
  }
  return {
    [nodePortMapNames.conntrack]: s.conntrack,
    [nodePortMapNames.snat]: s.snat,
    [nodePortMapNames.fragments]: s.fragments,
    [nodePortMapNames.localBackends]: s.localBackends,
    [nodePortMapNames.sourceRanges]: s.sourceRanges,
  };
}

// ---- attach / detach ---------------------------------------------------------------------

export interface AttachNodePortOptions {
  /** The node's pin root, shared with the LB maps (/sys/fs/bpf/weft/<node>). */
  pinRoot: string;
  /** The uplink: the device external clients reach the node through. Ethernet. */
  device: string;
  /** The node address remote flows are SNATed to; must be an address of `device`'s node. */
  nodeIPv4: string;
  snatPorts?: PortRange;
  /** The node's network namespace (/run/netns/<name>, /proc/<pid>/ns/net); default: ours. */
  netns?: string;
  /** Sizes the LB maps were created with (they are shared and must match). */
  lbSizes?: Partial<LbMapSizes>;
  sizes?: Partial<NodePortMapSizes>;
  objectPath?: string;
}

/** The loaded NodePort programs of one node and their maps. close() leaves the filters attached. */
export interface NodePortDatapath {
  readonly maps: NodePortMaps;
  readonly ingress: BpfProgram;
  readonly egress: BpfProgram;
  readonly ifindex: number;
  close(): void;
}

function inNamespace<T>(netns: string | undefined, fn: () => T): T {
  return netns ? inNetns(netns, fn) : fn();
}

function filters(device: string): { ingress: TcFilter; egress: TcFilter } {
  return {
    ingress: { ifname: device, direction: 'ingress', ...nodePortTcFilter },
    egress: { ifname: device, direction: 'egress', ...nodePortTcFilter },
  };
}

/** The kernel's ephemeral port range in the current network namespace. */
function localPortRange(): PortRange {
  const [min, max] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
    .trim()
    .split(/\s+/)
    .map(Number);
  return { min: min ?? 0, max: max ?? 0 };
}

/** Throws WEFT_ERR_NODEPORT_CONFIG naming the field, before anything is loaded. */
export function validateNodePortConfig(opts: {
  nodeIPv4: string;
  snatPorts: PortRange;
  device: string;
}): void {
  const bad = (why: string): never => {
    throw new WeftError('WEFT_ERR_NODEPORT_CONFIG', `NodePort on ${opts.device}: ${why}`);
  };
  if (typeof opts.nodeIPv4 !== 'string' || !isIPv4(opts.nodeIPv4) || opts.nodeIPv4 === '0.0.0.0') {
    bad(`node address ${String(opts.nodeIPv4)} is not a unicast IPv4 address`);
  }
  const { min, max } = opts.snatPorts;
  if (!Number.isInteger(min) || !Number.isInteger(max) || min < 1024 || max > 65_535 || min > max) {
    bad(`SNAT ports ${min}-${max} must be integers with 1024 <= min <= max <= 65535`);
  }
  if (opts.device.length === 0) bad('no uplink device given');
}

/**
 * Loads bpf/dist/nodeport.bpf.o with its maps (and the LB maps) pinned under `pinRoot`, writes
 * the node configuration, and attaches the programs to `device`'s tc egress, then ingress, in
 * the node's network namespace. Attaching again (an agent restart) replaces the filters in
 * place and keeps every tracked flow: the conntrack and SNAT maps are the pinned ones.
 */
export function attachNodePort(opts: AttachNodePortOptions): NodePortDatapath {
  const snatPorts = opts.snatPorts ?? defaultSnatPorts;
  validateNodePortConfig({ nodeIPv4: opts.nodeIPv4, snatPorts, device: opts.device });
  const { ifindex, ephemeral } = inNamespace(opts.netns, () => ({
    ifindex: ifindexOf(opts.device),
    ephemeral: localPortRange(),
  }));
  if (snatPorts.min <= ephemeral.max && ephemeral.min <= snatPorts.max) {
    throw new WeftError(
      'WEFT_ERR_NODEPORT_CONFIG',
      `NodePort on ${opts.device}: SNAT ports ${snatPorts.min}-${snatPorts.max} overlap the node's ephemeral ports ${ephemeral.min}-${ephemeral.max} (net.ipv4.ip_local_port_range); a reply to a local socket could be taken for a SNAT flow's. Choose SNAT ports outside it, or narrow ip_local_port_range`,
    );
  }

  const obj = BpfObject.open(opts.objectPath ?? bpfObjectPath('nodeport.bpf.o'), {
    pinRoot: opts.pinRoot,
    maxEntries: { ...lbMaxEntries(opts.lbSizes), ...nodePortMaxEntries(opts.sizes ?? {}) },
  });
  let maps: NodePortMaps | undefined;
  try {
    obj.load();
    maps = NodePortMaps.fromObject(obj);
    maps.writeConfig({
      node_ipv4: opts.nodeIPv4,
      uplink_ifindex: ifindex,
      snat_port_min: snatPorts.min,
      snat_port_max: snatPorts.max,
      flags: 0,
    });
    const ingress = obj.program(nodePortProgramNames.ingress);
    const egress = obj.program(nodePortProgramNames.egress);
    const f = filters(opts.device);
    // Egress first: once ingress translates a flow, its replies must already be handled.
    inNamespace(opts.netns, () => {
      attachTc({ ...f.egress, prog: egress });
      attachTc({ ...f.ingress, prog: ingress });
    });
    const opened = maps;
    return {
      maps: opened,
      ingress,
      egress,
      ifindex,
      close() {
        opened.close();
        obj.close();
      },
    };
  } catch (err) {
    maps?.close();
    obj.close();
    throw err;
  }
}

/**
 * Removes the NodePort filters from `device` (in `netns`). The pinned maps stay: remove the
 * pin root to forget every flow. Returns which filters were there.
 */
export function detachNodePort(opts: { device: string; netns?: string }): {
  ingress: boolean;
  egress: boolean;
} {
  const f = filters(opts.device);
  return inNamespace(opts.netns, () => ({
    // Ingress first: no new flow starts while its replies are still translated.
    ingress: detachTc(f.ingress),
    egress: detachTc(f.egress),
  }));
}

/** The program ids our filters on `device` run, or undefined where none is attached. */
export function queryNodePort(opts: { device: string; netns?: string }): {
  ingress: number | undefined;
  egress: number | undefined;
} {
  const f = filters(opts.device);
  return inNamespace(opts.netns, () => ({ ingress: queryTc(f.ingress), egress: queryTc(f.egress) }));
}

// ---- NodePortMaps --------------------------------------------------------------------------

export interface Endpoint {
  address: string;
  port: number;
}

/** A tracked external flow: client, frontend, backend, SNAT port, TCP state, time left. */
export interface NodePortFlow {
  protocol: LbProtocol;
  client: Endpoint;
  frontend: Endpoint;
  revNatIndex: number;
  backend: Endpoint & { id: number };
  /** The node address and port a flow to a remote backend leaves with. */
  snat?: Endpoint;
  state: Array<'seen_reply' | 'client_fin' | 'backend_fin' | 'closing'>;
  /** Seconds until the entry no longer counts (negative: expired, kept until evicted). */
  expiresInSeconds: number;
}

/** CLOCK_MONOTONIC in whole seconds: the clock of the programs' expiry fields. */
export function monotonicSeconds(): number {
  return Number(process.hrtime.bigint() / 1_000_000_000n);
}

/** The NodePort maps of one node, typed. */
export class NodePortMaps {
  readonly config: BpfMap<number, NpConfig>;
  readonly stats: BpfMap<number, bigint>;
  readonly conntrack: BpfMap<Np4Tuple, Np4CtEntry>;
  readonly snat: BpfMap<Np4Tuple, Np4SnatEntry>;
  readonly fragments: BpfMap<Np4FragKey, Np4FragPorts>;
  readonly localBackends: BpfMap<string, number>;
  readonly sourceRanges: BpfMap<Np4SourceRangeKey, number>;
  private readonly opened: Array<{ close(): void }> = [];

  private constructor(open: <K, V>(name: string, key: Codec<K>, value: Codec<V>) => BpfMap<K, V>) {
    const take = <K, V>(name: string, k: Codec<K>, v: Codec<V>): BpfMap<K, V> => {
      const m = open(name, k, v);
      this.opened.push(m);
      return m;
    };
    try {
      this.config = take(nodePortMapNames.config, u32, npConfig);
      this.stats = take(nodePortMapNames.stats, u32, u64);
      this.conntrack = take(nodePortMapNames.conntrack, np4Tuple, np4CtEntry);
      this.snat = take(nodePortMapNames.snat, np4Tuple, np4SnatEntry);
      this.fragments = take(nodePortMapNames.fragments, np4FragKey, np4FragPorts);
      this.localBackends = take(nodePortMapNames.localBackends, ipv4, u8);
      this.sourceRanges = take(nodePortMapNames.sourceRanges, np4SourceRangeKey, u8);
    } catch (err) {
      this.close();
      throw err;
    }
  }

  static fromObject(obj: BpfObject): NodePortMaps {
    return new NodePortMaps((name, k, v) => obj.typedMap(name, k, v));
  }

  /** The maps an agent pinned under `pinRoot` (this process or another). */
  static openPinned(pinRoot: string): NodePortMaps {
    return new NodePortMaps((name, k, v) => BpfMap.openPinned(`${pinRoot}/${name}`, k, v));
  }

  /** The configuration of the uplink with this ifindex, if the programs serve it. */
  readConfig(ifindex: number): NpConfig | undefined {
    const c = this.config.lookup(ifindex);
    return c && c.node_ipv4 !== '0.0.0.0' ? c : undefined;
  }

  /** Every uplink's configuration. */
  configs(): NpConfig[] {
    return this.config
      .entries()
      .map(([, c]) => c)
      .sort((a, b) => a.uplink_ifindex - b.uplink_ifindex);
  }

  /** Writes an uplink's configuration, under its ifindex (uplink_ifindex). */
  writeConfig(c: NpConfig): void {
    this.config.update(c.uplink_ifindex, c);
  }

  /**
   * Makes the local-backend set exactly `addresses` (this node's pod IPs, and its own IPs for
   * hostNetwork backends): adds first, then removes, so a backend that stays local never
   * reads as remote in between.
   */
  setLocalBackends(addresses: string[]): void {
    for (const a of addresses) {
      if (!isIPv4(a))
        throw new WeftError('WEFT_ERR_NODEPORT_CONFIG', `local backend ${a} is not an IPv4 address`);
    }
    const wanted = new Set(addresses);
    const present = new Set(this.localBackends.keys());
    this.localBackends.updateBatch([...wanted].filter((a) => !present.has(a)).map((a) => [a, 1] as const));
    this.localBackends.deleteBatch([...present].filter((a) => !wanted.has(a)));
  }

  localBackendAddresses(): string[] {
    return this.localBackends.keys().sort();
  }

  /**
   * Makes a frontend's loadBalancerSourceRanges exactly `cidrs` ("a.b.c.d/n"). They apply
   * while its master carries LB_SVC_F_SOURCE_RANGE, to flows that start from then on. Host bits
   * are cleared ("10.0.0.7/8" is 10.0.0.0/8).
   */
  setSourceRanges(revNatIndex: number, cidrs: string[]): { added: number; removed: number } {
    checkRevNatIndex(revNatIndex);
    return this.reconcileRanges(
      cidrs.map((c) => sourceRangeKey(revNatIndex, c)),
      (k) => k.rev_nat_index === revNatIndex,
    );
  }

  /**
   * Makes the whole source-range map exactly `byFrontend` (revNatIndex → IPv4 CIDRs), with one
   * walk of the map: the ranges of frontends not listed go, as do ranges no longer listed.
   */
  replaceSourceRanges(byFrontend: ReadonlyMap<number, readonly string[]>): {
    added: number;
    removed: number;
  } {
    const keys: Np4SourceRangeKey[] = [];
    for (const [revNatIndex, cidrs] of byFrontend) {
      checkRevNatIndex(revNatIndex);
      for (const c of cidrs) keys.push(sourceRangeKey(revNatIndex, c));
    }
    return this.reconcileRanges(keys, () => true);
  }

  /**
   * Makes the ranges `mine` selects exactly `wanted` (every CIDR was checked before: the map is
   * not touched on bad input): adds first, then removes. LPM tries have no batch calls: one
   * call per range.
   */
  private reconcileRanges(
    wanted: readonly Np4SourceRangeKey[],
    mine: (k: Np4SourceRangeKey) => boolean,
  ): { added: number; removed: number } {
    const want = new Map(wanted.map((k) => [rangeId(k), k] as const));
    const present = new Map(
      this.sourceRanges
        .keys()
        .filter(mine)
        .map((k) => [rangeId(k), k] as const),
    );
    let added = 0;
    let removed = 0;
    for (const [id, k] of want) {
      if (present.has(id)) continue;
      this.sourceRanges.update(k, 1);
      added++;
    }
    for (const [id, k] of present) {
      if (want.has(id)) continue;
      this.sourceRanges.delete(k);
      removed++;
    }
    return { added, removed };
  }

  /** Every frontend's ranges, as CIDRs by revNatIndex. */
  sourceRangesByFrontend(): Map<number, string[]> {
    const out = new Map<number, string[]>();
    for (const k of this.sourceRanges.keys()) {
      const list = out.get(k.rev_nat_index) ?? [];
      list.push(`${k.address}/${k.prefixlen - 32}`);
      out.set(k.rev_nat_index, list.sort());
    }
    return out;
  }

  /** The programs' counters (enum np_stat), summed since the maps were created. */
  counters(): Record<NodePortStat, number> {
    const out = {} as Record<NodePortStat, number>;
    nodePortStats.forEach((name, i) => {
      out[name] = Number(this.stats.lookup(i) ?? 0n);
    });
    return out;
  }

  /** Every tracked flow (its ORIGINAL entry), oldest expiry first. */
  flows(now = monotonicSeconds()): NodePortFlow[] {
    const nodeAddresses = [...new Set(this.configs().map((c) => c.node_ipv4))];
    const out: NodePortFlow[] = [];
    for (const [k, e] of this.conntrack.entries()) {
      if (k.dir !== NpCtDir.original) continue;
      const state: NodePortFlow['state'] = [];
      if (e.flags & NpCtFlag.seenReply) state.push('seen_reply');
      if (e.flags & NpCtFlag.clientFin) state.push('client_fin');
      if (e.flags & NpCtFlag.backendFin) state.push('backend_fin');
      if (e.flags & NpCtFlag.closing) state.push('closing');
      const flow: NodePortFlow = {
        protocol: protocolName(k.proto),
        client: { address: k.saddr, port: k.sport },
        frontend: { address: k.daddr, port: k.dport },
        revNatIndex: e.rev_nat_index,
        backend: { id: e.backend_id, address: e.nat_addr, port: e.nat_port },
        state,
        expiresInSeconds: e.expires - now,
      };
      if (e.flags & NpCtFlag.snat) {
        // The SNAT entry names the node address the flow left with (uplinks may differ).
        const address = nodeAddresses.find((node) =>
          this.snat.lookup({
            saddr: e.nat_addr,
            daddr: node,
            sport: e.nat_port,
            dport: e.snat_port,
            proto: k.proto,
            dir: 0,
          }),
        );
        flow.snat = { address: address ?? nodeAddresses[0] ?? '0.0.0.0', port: e.snat_port };
      }
      out.push(flow);
    }
    return out.sort((a, b) => a.expiresInSeconds - b.expiresInSeconds);
  }

  close(): void {
    for (const m of this.opened.splice(0)) m.close();
  }
}

function checkRevNatIndex(revNatIndex: number): void {
  if (!Number.isInteger(revNatIndex) || revNatIndex < 1 || revNatIndex > 0xffff) {
    throw new WeftError(
      'WEFT_ERR_NODEPORT_CONFIG',
      `revNatIndex ${revNatIndex} must be an integer from 1 to 65535`,
    );
  }
}

function sourceRangeKey(revNatIndex: number, cidr: string): Np4SourceRangeKey {
  const c = canonicalCIDR(cidr);
  if (c?.family !== 4) {
    throw new WeftError('WEFT_ERR_NODEPORT_CONFIG', `source range ${cidr} is not an IPv4 CIDR (a.b.c.d/n)`);
  }
  const slash = c.cidr.indexOf('/');
  return {
    prefixlen: 32 + Number(c.cidr.slice(slash + 1)),
    rev_nat_index: revNatIndex,
    address: c.cidr.slice(0, slash),
  };
}

function rangeId(k: Np4SourceRangeKey): string {
  return `${k.rev_nat_index}|${k.address}/${k.prefixlen}`;
}
