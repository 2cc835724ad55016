import { isIPv4, isIPv6 } from 'node:net';
import { WeftError } from '../shared/errors.js';
import { bpfObjectPath } from '../shared/self.js';
import {
  be16,
  bytes,
  canonicalCIDR,
  type Codec,
  ipv4,
  ipv6,
  parseIPv6,
  type StructCodec,
  struct,
  u8,
  u16,
  u32,
  u64,
  u64n,
} from './codec.js';
import { type BatchEncoder, BatchError, BpfMap } from './map.js';
import { BpfObject } from './object.js';

/**
 * The load-balancing maps of bpf/include/weft/lb.h, in TypeScript: one codec per C struct
 * (field names as in C, checked against the object's BTF by a kernel test), the constants of
 * its enums, and LbMaps, which reads and writes whole frontends (master, slots, reverse NAT,
 * affinity match) and backends in batches, in the order that keeps every reader consistent.
 */

// ---- layouts (mirror bpf/include/weft/lb.h) ------------------------------------------------

/** The socket-LB programs of sock_lb.bpf.o, each attached to its cgroup hook, in this order. */
export const sockLbPrograms = [
  'weft_sock4_connect',
  'weft_sock4_sendmsg',
  'weft_sock4_recvmsg',
  'weft_sock4_getpeername',
  'weft_sock6_connect',
  'weft_sock6_sendmsg',
  'weft_sock6_recvmsg',
  'weft_sock6_getpeername',
] as const;

export interface Lb4Key {
  address: string;
  dport: number;
  backend_slot: number;
  proto: number;
  scope: number;
}
export const lb4Key = struct<Lb4Key>('lb4_key', 12, [
  ['address', ipv4],
  ['dport', be16],
  ['backend_slot', u16],
  ['proto', u8],
  ['scope', u8],
  ['pad', 2],
]);

export type Lb6Key = Lb4Key;
export const lb6Key = struct<Lb6Key>('lb6_key', 24, [
  ['address', ipv6],
  ['dport', be16],
  ['backend_slot', u16],
  ['proto', u8],
  ['scope', u8],
  ['pad', 2],
]);

export interface LbService {
  /** Slot > 0: the backend id. Slot 0 (master): the affinity timeout in seconds. */
  backend_id: number;
  count: number;
  rev_nat_index: number;
  flags: number;
  flags2: number;
}
export const lbService = struct<LbService>('lb_service', 12, [
  ['backend_id', u32],
  ['count', u16],
  ['rev_nat_index', u16],
  ['flags', u8],
  ['flags2', u8],
  ['pad', 2],
]);

export interface Lb4Backend {
  address: string;
  port: number;
  proto: number;
  flags: number;
  cluster_id: number;
  zone: number;
}
export const lb4Backend = struct<Lb4Backend>('lb4_backend', 12, [
  ['address', ipv4],
  ['port', be16],
  ['proto', u8],
  ['flags', u8],
  ['cluster_id', u16],
  ['zone', u8],
  ['pad', 1],
]);

export type Lb6Backend = Lb4Backend;
export const lb6Backend = struct<Lb6Backend>('lb6_backend', 24, [
  ['address', ipv6],
  ['port', be16],
  ['proto', u8],
  ['flags', u8],
  ['cluster_id', u16],
  ['zone', u8],
  ['pad', 1],
]);

export interface LbReverseNat {
  address: string;
  port: number;
}
export const lb4ReverseNat = struct<LbReverseNat>('lb4_reverse_nat', 8, [
  ['address', ipv4],
  ['port', be16],
  ['pad', 2],
]);
export const lb6ReverseNat = struct<LbReverseNat>('lb6_reverse_nat', 20, [
  ['address', ipv6],
  ['port', be16],
  ['pad', 2],
]);

export interface LbSockRevnatKey {
  cookie: bigint;
  address: string;
  port: number;
}
export const lb4SockRevnatKey = struct<LbSockRevnatKey>('lb4_sock_revnat_key', 16, [
  ['cookie', u64],
  ['address', ipv4],
  ['port', be16],
  ['pad', 2],
]);
export const lb6SockRevnatKey = struct<LbSockRevnatKey>('lb6_sock_revnat_key', 32, [
  ['cookie', u64],
  ['address', ipv6],
  ['port', be16],
  ['pad', 6],
]);

export interface LbSockRevnat {
  address: string;
  port: number;
  rev_nat_index: number;
}
export const lb4SockRevnat = struct<LbSockRevnat>('lb4_sock_revnat', 8, [
  ['address', ipv4],
  ['port', be16],
  ['rev_nat_index', u16],
]);
export const lb6SockRevnat = struct<LbSockRevnat>('lb6_sock_revnat', 20, [
  ['address', ipv6],
  ['port', be16],
  ['rev_nat_index', u16],
]);

/** Who a ClientIP affinity entry is for: a network namespace (socket LB) or an address (tc). */
export type AffinityClient = { kind: 'netns'; netnsCookie: bigint } | { kind: 'address'; address: string };

export interface LbAffinityKey {
  client: AffinityClient;
  rev_nat_index: number;
}

interface LbAffinityKeyRaw {
  client: Uint8Array;
  rev_nat_index: number;
  client_kind: number;
}
const lbAffinityKeyRaw = struct<LbAffinityKeyRaw>('lb_affinity_key', 24, [
  ['client', bytes(16)],
  ['rev_nat_index', u16],
  ['client_kind', u8],
  ['pad', 5],
]);

/** enum lb_affinity_client_kind */
export const AffinityClientKind = { netns: 1, address: 2 } as const;

export const lbAffinityKey: StructCodec<LbAffinityKey> = mapStruct(
  lbAffinityKeyRaw,
  (k) => {
    const client = new Uint8Array(16);
    if (k.client.kind === 'netns') {
      new DataView(client.buffer).setBigUint64(0, k.client.netnsCookie, true);
    } else {
      const text = isIPv4(k.client.address) ? `::ffff:${k.client.address}` : k.client.address;
      const parsed = parseIPv6(text);
      if (!parsed) throw new WeftError('WEFT_ERR_CODEC', `"${k.client.address}" is not an IP address`);
      client.set(parsed);
    }
    return { client, rev_nat_index: k.rev_nat_index, client_kind: AffinityClientKind[k.client.kind] };
  },
  (raw) => {
    if (raw.client_kind === AffinityClientKind.netns) {
      const netnsCookie = new DataView(raw.client.buffer, raw.client.byteOffset, 16).getBigUint64(0, true);
      return { client: { kind: 'netns', netnsCookie }, rev_nat_index: raw.rev_nat_index };
    }
    const text = ipv6.decode(Buffer.from(raw.client), 0);
    const v4 = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(text);
    const address = v4
      ? [v4[1]!, v4[2]!]
          .flatMap((g) => [Number.parseInt(g, 16) >> 8, Number.parseInt(g, 16) & 0xff])
          .join('.')
      : text;
    return { client: { kind: 'address', address }, rev_nat_index: raw.rev_nat_index };
  },
);

export interface LbAffinity {
  /** Seconds of CLOCK_MONOTONIC when the client last used the backend. */
  last_used: number;
  backend_id: number;
}
export const lbAffinity = struct<LbAffinity>('lb_affinity', 16, [
  ['last_used', u64n],
  ['backend_id', u32],
  ['pad', 4],
]);

export interface LbAffinityMatchKey {
  backend_id: number;
  rev_nat_index: number;
}
export const lbAffinityMatchKey = struct<LbAffinityMatchKey>('lb_affinity_match_key', 8, [
  ['backend_id', u32],
  ['rev_nat_index', u16],
  ['pad', 2],
]);

/** Every struct codec of lb.h, for the test that compares them with BTF. */
export const lbLayoutCodecs: readonly StructCodec<object>[] = [
  lb4Key,
  lb6Key,
  lbService,
  lb4Backend,
  lb6Backend,
  lb4ReverseNat,
  lb6ReverseNat,
  lb4SockRevnatKey,
  lb4SockRevnat,
  lb6SockRevnatKey,
  lb6SockRevnat,
  lbAffinityKey,
  lbAffinity,
  lbAffinityMatchKey,
];

// ---- enums (mirror lb.h; a kernel test compares them with the object's BTF) ---------------

/** enum lb_lookup_scope */
export const LbScope = { external: 0, internal: 1 } as const;

/** enum lb_svc_flags */
export const LbServiceFlag = {
  externalIP: 1 << 0,
  nodePort: 1 << 1,
  loadBalancer: 1 << 2,
  affinity: 1 << 3,
  externalLocal: 1 << 4,
  sourceRange: 1 << 5,
} as const;

/** enum lb_svc_flags2 */
export const LbServiceFlag2 = { internalLocal: 1 << 0, twoScopes: 1 << 1, maglev: 1 << 2 } as const;

/** enum lb_backend_state, in the low bits of lb{4,6}_backend.flags */
export const backendStates = ['active', 'terminating', 'quarantined'] as const;
export type BackendState = (typeof backendStates)[number];
const BACKEND_STATE_MASK = 0x3;

/** enum sock_lb_stat, in index order: the counters of weft_sock_lb_stats. */
export const sockLbStats = [
  'translated',
  'refused_no_backend',
  'refused_inconsistent',
  'affinity_hit',
  'revnat_rewritten',
  'revnat_update_failed',
] as const;
export type SockLbStat = (typeof sockLbStats)[number];

export const lbProtocols = { TCP: 6, UDP: 17, SCTP: 132 } as const;
export type LbProtocol = keyof typeof lbProtocols;

// ---- map names and sizes -----------------------------------------------------------------

export const lbMapNames = {
  services4: 'weft_lb4_services',
  services6: 'weft_lb6_services',
  backends4: 'weft_lb4_backends',
  backends6: 'weft_lb6_backends',
  reverseNat4: 'weft_lb4_reverse_nat',
  reverseNat6: 'weft_lb6_reverse_nat',
  sockRevnat4: 'weft_lb4_sock_revnat',
  sockRevnat6: 'weft_lb6_sock_revnat',
  affinity: 'weft_lb_affinity',
  affinityMatch: 'weft_lb_aff_match',
  sockLbStats: 'weft_sock_lb_stats',
} as const;

/** max_entries per kind of map; each applies to both families. */
export interface LbMapSizes {
  /** Masters plus slots: frontends × (1 + backends). */
  services: number;
  backends: number;
  reverseNat: number;
  /** LRU: sockets translated at the same time. */
  sockRevnat: number;
  /** LRU: ClientIP affinity entries (clients × affinity frontends); also sizes the match map. */
  affinity: number;
}

/** The defaults compiled into bpf/include/weft/lb_maps.h. */
export const defaultLbMapSizes: Readonly<LbMapSizes> = {
  services: 262_144,
  backends: 65_536,
  reverseNat: 65_536,
  sockRevnat: 65_536,
  affinity: 65_536,
};

/** The maxEntries option of BpfObject.open for every LB map, from sizes. */
export function lbMaxEntries(sizes: Partial<LbMapSizes> = {}): Record<string, number> {
  const s = { ...defaultLbMapSizes, ...sizes };
  for (const [kind, n] of Object.entries(s)) {
    if (!Number.isInteger(n) || n < 1 || n > 16_777_216) {
      throw new WeftError(
        'WEFT_ERR_LB_INVALID',
        `LB map size ${kind}=${n} must be an integer from 1 to 16777216`,
      );
    }
  }
  return {
    [lbMapNames.services4]: s.services,
    [lbMapNames.services6]: s.services,
    [lbMapNames.backends4]: s.backends,
    [lbMapNames.backends6]: s.backends,
    [lbMapNames.reverseNat4]: s.reverseNat,
    [lbMapNames.reverseNat6]: s.reverseNat,
    [lbMapNames.sockRevnat4]: s.sockRevnat,
    [lbMapNames.sockRevnat6]: s.sockRevnat,
    [lbMapNames.affinity]: s.affinity,
    [lbMapNames.affinityMatch]: s.affinity,
  };
}

// ---- the model the agent works with ------------------------------------------------------

export type FrontendType = 'ClusterIP' | 'NodePort' | 'ExternalIP' | 'LoadBalancer';
export type TrafficPolicy = 'Cluster' | 'Local';

/** Where clients connect: one frontend of a Service (its ClusterIP, a node IP:nodePort, ...). */
export interface FrontendAddress {
  address: string;
  port: number;
  protocol: LbProtocol;
}

/** One frontend and what it balances to: the master entry, its slots and its reverse NAT. */
export interface LbFrontend extends FrontendAddress {
  type: FrontendType;
  /** 1..65535, unique per frontend across both families. */
  revNatIndex: number;
  /** Backend ids, in slot order, that external clients get; the only list of a one-scope frontend. */
  backends: number[];
  /**
   * Backend ids in-cluster clients get, when they differ from `backends` (two scopes:
   * externalTrafficPolicy Local, or internalTrafficPolicy Local on an externally reachable
   * frontend). The socket LB always uses this list when present.
   */
  internalBackends?: number[];
  /** sessionAffinity ClientIP: seconds a client keeps its backend after its last connection. */
  affinityTimeoutSeconds?: number;
  externalTrafficPolicy: TrafficPolicy;
  internalTrafficPolicy: TrafficPolicy;
  /**
   * loadBalancerSourceRanges: when set, new flows from outside the cluster are accepted only
   * from these CIDRs (the master carries LB_SVC_F_SOURCE_RANGE; the ranges themselves are
   * NodePortMaps.replaceSourceRanges' to write); [] accepts nobody from outside. Read back from
   * these maps alone it is [] (the flag is here, the ranges are not). Unset: everyone.
   */
  sourceRanges?: string[];
}

export interface LbBackend {
  /** 1..2^32-1, unique across both families. */
  id: number;
  address: string;
  port: number;
  protocol: LbProtocol;
  state: BackendState;
  /** 0: this cluster. */
  clusterId: number;
  /** 0: unknown. */
  zone: number;
}

export type IpFamily = 4 | 6;

export function familyOf(address: string): IpFamily {
  if (isIPv4(address)) return 4;
  if (isIPv6(address)) return 6;
  throw new WeftError('WEFT_ERR_LB_INVALID', `"${address}" is not an IP address`);
}

export function frontendName(f: FrontendAddress): string {
  return `${knownFamily(f.address) === 6 ? `[${f.address}]` : f.address}:${f.port}/${f.protocol}`;
}

// ---- validation at the edge ---------------------------------------------------------------

function invalid(what: string, why: string): never {
  throw new WeftError('WEFT_ERR_LB_INVALID', `${what}: ${why}`);
}

/**
 * An IP family for an address already validated or decoded (a colon means IPv6): the hot paths
 * of a bulk write call this per entry, where familyOf's full parse shows in the profile.
 */
function knownFamily(address: string): IpFamily {
  return address.includes(':') ? 6 : 4;
}

// Each *Fault function says what is wrong with one field, or returns undefined: the name of the
// item at fault is built only when something is (validation runs per entry of a bulk write).

function isIntegerIn(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

function integerFault(field: string, v: unknown, min: number, max: number): string | undefined {
  if (isIntegerIn(v, min, max)) return undefined;
  return `${field} ${String(v)} must be an integer from ${min} to ${max}`;
}

function protocolFault(p: unknown): string | undefined {
  if (typeof p === 'string' && Object.hasOwn(lbProtocols, p)) return undefined;
  return `protocol ${String(p)} must be one of ${Object.keys(lbProtocols).join(', ')}`;
}

function oneOfFault<T>(field: string, v: T, allowed: readonly T[]): string | undefined {
  if (allowed.includes(v)) return undefined;
  return `${field} ${String(v)} must be one of ${allowed.join(', ')}`;
}

function addressFault(a: unknown): string | undefined {
  if (typeof a === 'string' && isIPv4(a)) return undefined;
  if (typeof a !== 'string' || !isIPv6(a)) return `address ${String(a)} is not an IP address`;
  if (/^::ffff:/i.test(a)) return `address ${a} is v4-mapped; give the IPv4 address`;
  return undefined;
}

function checkInteger(what: string, field: string, v: unknown, min: number, max: number): void {
  const fault = integerFault(field, v, min, max);
  if (fault !== undefined) invalid(what, fault);
}

const frontendTypes: readonly FrontendType[] = ['ClusterIP', 'NodePort', 'ExternalIP', 'LoadBalancer'];
const MAX_BACKENDS_PER_FRONTEND = 0xffff;

function backendListFault(field: string, list: unknown): string | undefined {
  if (!Array.isArray(list)) return `${field} must be a list of backend ids`;
  if (list.length > MAX_BACKENDS_PER_FRONTEND) {
    return `${field} lists ${list.length} backends; at most ${MAX_BACKENDS_PER_FRONTEND} fit`;
  }
  for (let i = 0; i < list.length; i++) {
    if (!isIntegerIn(list[i], 1, 0xffff_ffff)) return integerFault(`${field} id`, list[i], 1, 0xffff_ffff);
  }
  return undefined;
}

function trafficPolicyFault(field: string, policy: unknown): string | undefined {
  return policy === 'Cluster' || policy === 'Local' ? undefined : `${field} must be Cluster or Local`;
}

function sourceRangesFault(ranges: unknown): string | undefined {
  if (!Array.isArray(ranges)) return 'sourceRanges must be a list of CIDRs';
  for (const c of ranges) {
    if (typeof c !== 'string' || !canonicalCIDR(c)) return `source range ${String(c)} is not a CIDR`;
  }
  return undefined;
}

/** Throws WEFT_ERR_LB_INVALID naming the frontend and the field, before any map is touched. */
export function validateFrontend(f: LbFrontend): void {
  const fault = frontendFault(f);
  if (fault !== undefined) invalid(`frontend ${f.address}:${f.port}/${f.protocol}`, fault);
}

function frontendFault(f: LbFrontend): string | undefined {
  return (
    addressFault(f.address) ??
    integerFault('port', f.port, 1, 0xffff) ??
    protocolFault(f.protocol) ??
    oneOfFault('type', f.type, frontendTypes) ??
    integerFault('revNatIndex', f.revNatIndex, 1, 0xffff) ??
    backendListFault('backends', f.backends) ??
    (f.internalBackends === undefined
      ? undefined
      : backendListFault('internalBackends', f.internalBackends)) ??
    (f.affinityTimeoutSeconds === undefined
      ? undefined
      : integerFault('affinityTimeoutSeconds', f.affinityTimeoutSeconds, 1, 0xffff_ffff)) ??
    trafficPolicyFault('externalTrafficPolicy', f.externalTrafficPolicy) ??
    trafficPolicyFault('internalTrafficPolicy', f.internalTrafficPolicy) ??
    (f.sourceRanges === undefined ? undefined : sourceRangesFault(f.sourceRanges))
  );
}

export function validateBackend(b: LbBackend): void {
  const fault =
    integerFault('id', b.id, 1, 0xffff_ffff) ??
    addressFault(b.address) ??
    integerFault('port', b.port, 1, 0xffff) ??
    protocolFault(b.protocol) ??
    oneOfFault('state', b.state, backendStates) ??
    integerFault('clusterId', b.clusterId, 0, 0xffff) ??
    integerFault('zone', b.zone, 0, 0xff);
  if (fault !== undefined) invalid(`backend ${String(b.id)}`, fault);
}

// ---- model ↔ entries (pure) ------------------------------------------------------------

function frontendFlags1(f: LbFrontend): number {
  let flags = 0;
  if (f.type === 'ExternalIP') flags |= LbServiceFlag.externalIP;
  if (f.type === 'NodePort') flags |= LbServiceFlag.nodePort;
  if (f.type === 'LoadBalancer') flags |= LbServiceFlag.loadBalancer;
  if (f.affinityTimeoutSeconds !== undefined) flags |= LbServiceFlag.affinity;
  if (f.externalTrafficPolicy === 'Local') flags |= LbServiceFlag.externalLocal;
  if (f.sourceRanges !== undefined) flags |= LbServiceFlag.sourceRange;
  return flags;
}

function frontendFlags2(f: LbFrontend): number {
  let flags2 = 0;
  if (f.internalTrafficPolicy === 'Local') flags2 |= LbServiceFlag2.internalLocal;
  if (f.internalBackends !== undefined) flags2 |= LbServiceFlag2.twoScopes;
  return flags2;
}

function frontendTypeOf(flags: number): FrontendType {
  if (flags & LbServiceFlag.nodePort) return 'NodePort';
  if (flags & LbServiceFlag.loadBalancer) return 'LoadBalancer';
  if (flags & LbServiceFlag.externalIP) return 'ExternalIP';
  return 'ClusterIP';
}

export function protocolName(proto: number): LbProtocol {
  // A switch, not a search of lbProtocols: map read-back calls this per frontend and backend.
  switch (proto) {
    case lbProtocols.TCP:
      return 'TCP';
    case lbProtocols.UDP:
      return 'UDP';
    case lbProtocols.SCTP:
      return 'SCTP';
  }
  throw new WeftError('WEFT_ERR_CODEC', `IP protocol ${proto} is not one weft balances`);
}

// Each of these fills `into` when given (a bulk writer reuses one object for every entry) and
// returns it, or a new object.

export function serviceKey(f: FrontendAddress, scope: number, slot: number, into?: Lb4Key): Lb4Key {
  const k = into ?? ({} as Lb4Key);
  k.address = f.address;
  k.dport = f.port;
  k.backend_slot = slot;
  k.proto = lbProtocols[f.protocol];
  k.scope = scope;
  return k;
}

/** The master entry of one scope. */
export function masterEntry(f: LbFrontend, scope: number, into?: LbService): LbService {
  const v = into ?? ({} as LbService);
  v.backend_id = f.affinityTimeoutSeconds ?? 0;
  v.count = scope === LbScope.internal ? (f.internalBackends?.length ?? 0) : f.backends.length;
  v.rev_nat_index = f.revNatIndex;
  v.flags = frontendFlags1(f);
  v.flags2 = frontendFlags2(f);
  return v;
}

export function slotEntry(f: LbFrontend, backendId: number, into?: LbService): LbService {
  const v = into ?? ({} as LbService);
  v.backend_id = backendId;
  v.count = 0;
  v.rev_nat_index = f.revNatIndex;
  v.flags = 0;
  v.flags2 = 0;
  return v;
}

export function backendEntry(b: LbBackend, into?: Lb4Backend): Lb4Backend {
  const v = into ?? ({} as Lb4Backend);
  v.address = b.address;
  v.port = b.port;
  v.proto = lbProtocols[b.protocol];
  v.flags = backendStates.indexOf(b.state);
  v.cluster_id = b.clusterId;
  v.zone = b.zone;
  return v;
}

export function backendFromEntry(id: number, e: Lb4Backend): LbBackend {
  return {
    id,
    address: e.address,
    port: e.port,
    protocol: protocolName(e.proto),
    state: backendStates[e.flags & BACKEND_STATE_MASK] ?? 'quarantined',
    clusterId: e.cluster_id,
    zone: e.zone,
  };
}

/**
 * A frontend as the maps hold it, from its master entries and a slot reader. A slot the
 * reader cannot find reads as backend id 0 (an inconsistency the program refuses on).
 */
export function frontendFromEntries(
  key: FrontendAddress,
  external: LbService,
  internal: LbService | undefined,
  slot: (scope: number, slot: number) => LbService | undefined,
): LbFrontend {
  const ids = (scope: number, master: LbService) => {
    const out = new Array<number>(master.count);
    for (let i = 0; i < master.count; i++) out[i] = slot(scope, i + 1)?.backend_id ?? 0;
    return out;
  };
  const f: LbFrontend = {
    address: key.address,
    port: key.port,
    protocol: key.protocol,
    type: frontendTypeOf(external.flags),
    revNatIndex: external.rev_nat_index,
    backends: ids(LbScope.external, external),
    externalTrafficPolicy: external.flags & LbServiceFlag.externalLocal ? 'Local' : 'Cluster',
    internalTrafficPolicy: external.flags2 & LbServiceFlag2.internalLocal ? 'Local' : 'Cluster',
  };
  if (external.flags2 & LbServiceFlag2.twoScopes)
    f.internalBackends = internal ? ids(LbScope.internal, internal) : [];
  if (external.flags & LbServiceFlag.affinity) f.affinityTimeoutSeconds = external.backend_id;
  if (external.flags & LbServiceFlag.sourceRange) f.sourceRanges = [];
  return f;
}

/** What one frontend change writes and deletes, in the order it must happen. */
export interface FrontendPlan {
  /** Written before `serviceWrites`: the tc path reverse-translates with it. */
  reverseNatWrites: Array<[number, LbReverseNat]>;
  affinityMatchWrites: LbAffinityMatchKey[];
  /** Slots first, then the INT master, then the EXT master: a reader never finds a master
   *  whose slots are missing. */
  serviceWrites: Array<[Lb4Key, LbService]>;
  /** EXT master first, then INT master, then slots. */
  serviceDeletes: Lb4Key[];
  affinityMatchDeletes: LbAffinityMatchKey[];
  reverseNatDeletes: number[];
}

function sameService(a: LbService | undefined, b: LbService): boolean {
  return (
    a !== undefined &&
    a.backend_id === b.backend_id &&
    a.count === b.count &&
    a.rev_nat_index === b.rev_nat_index &&
    a.flags === b.flags &&
    a.flags2 === b.flags2
  );
}

const noPairs: ReadonlyMap<string, LbAffinityMatchKey> = new Map();

function affinityPairs(f: LbFrontend | undefined): ReadonlyMap<string, LbAffinityMatchKey> {
  if (!f || f.affinityTimeoutSeconds === undefined) return noPairs;
  const pairs = new Map<string, LbAffinityMatchKey>();
  for (const id of [...f.backends, ...(f.internalBackends ?? [])]) {
    pairs.set(`${id}/${f.revNatIndex}`, { backend_id: id, rev_nat_index: f.revNatIndex });
  }
  return pairs;
}

/**
 * The writes and deletes that turn `previous` (what the maps hold, or undefined) into `next`
 * (or undefined: remove the frontend). Only slots and masters that differ are written, so
 * re-applying the same state, as an agent does on restart, rewrites nothing a program reads
 * on the connect path (only the frontend's reverse NAT entry, with the same value).
 */
const planScopes = [LbScope.internal, LbScope.external] as const;

export function planFrontend(previous: LbFrontend | undefined, next: LbFrontend | undefined): FrontendPlan {
  const plan: FrontendPlan = {
    reverseNatWrites: [],
    affinityMatchWrites: [],
    serviceWrites: [],
    serviceDeletes: [],
    affinityMatchDeletes: [],
    reverseNatDeletes: [],
  };
  const key = next ?? previous;
  if (!key) return plan;

  // Always (re)written: one entry per frontend, and the slots say nothing about whether it is there.
  if (next) plan.reverseNatWrites.push([next.revNatIndex, { address: next.address, port: next.port }]);
  if (previous && (!next || previous.revNatIndex !== next.revNatIndex)) {
    plan.reverseNatDeletes.push(previous.revNatIndex);
  }

  const masterWrites: Array<[Lb4Key, LbService]> = [];
  const masterDeletes: Lb4Key[] = [];
  const slotDeletes: Lb4Key[] = [];
  for (const scope of planScopes) {
    const before = scope === LbScope.internal ? previous?.internalBackends : previous?.backends;
    const after = scope === LbScope.internal ? next?.internalBackends : next?.backends;
    if (next && after) {
      const revNatChanged = previous?.revNatIndex !== next.revNatIndex;
      for (let i = 0; i < after.length; i++) {
        const id = after[i]!;
        if (revNatChanged || before?.[i] !== id) {
          plan.serviceWrites.push([serviceKey(key, scope, i + 1), slotEntry(next, id)]);
        }
      }
      const master = masterEntry(next, scope);
      const oldMaster = previous && before ? masterEntry(previous, scope) : undefined;
      if (!sameService(oldMaster, master)) masterWrites.push([serviceKey(key, scope, 0), master]);
    } else if (before) {
      masterDeletes.push(serviceKey(key, scope, 0));
    }
    for (let slot = (after?.length ?? 0) + 1; slot <= (before?.length ?? 0); slot++) {
      slotDeletes.push(serviceKey(key, scope, slot));
    }
  }
  // masterWrites is [INT, EXT] (scopes order); deletes go EXT first.
  plan.serviceWrites.push(...masterWrites);
  plan.serviceDeletes.push(...masterDeletes.reverse(), ...slotDeletes);

  const pairsBefore = affinityPairs(previous);
  const pairsAfter = affinityPairs(next);
  for (const [k, v] of pairsAfter) if (!pairsBefore.has(k)) plan.affinityMatchWrites.push(v);
  for (const [k, v] of pairsBefore) if (!pairsAfter.has(k)) plan.affinityMatchDeletes.push(v);
  return plan;
}

// ---- LbMaps: the typed map set -----------------------------------------------------------

/** A full LB map: what was applied is in the maps, what was not left the old state in place. */
export class LbMapFullError extends WeftError {
  readonly map: string;
  constructor(map: { name: string; maxEntries: number }, detail: string, cause: unknown) {
    super(
      'WEFT_ERR_MAP_FULL',
      `LB map ${map.name} is full (max_entries ${map.maxEntries}): ${detail}; raise its size or remove frontends`,
      { cause },
    );
    this.map = map.name;
  }
}

interface FamilyMaps {
  family: IpFamily;
  services: BpfMap<Lb4Key, LbService>;
  backends: BpfMap<number, Lb4Backend>;
  reverseNat: BpfMap<number, LbReverseNat>;
  sockRevnat: BpfMap<LbSockRevnatKey, LbSockRevnat>;
}

/** One batch of writes or deletes on one map, as LbMaps reports it (for metrics). */
export interface LbMapOps {
  map: string;
  operation: 'update' | 'delete';
  outcome: 'success' | 'fail';
  /** Entries: on failure, the applied ones are reported as a separate success. */
  count: number;
}

/** One frontend's change: where it stands now and what turns it into what was asked. */
interface FrontendChange {
  frontend: FrontendAddress;
  previous: LbFrontend | undefined;
  next: LbFrontend | undefined;
  plan: FrontendPlan;
}

/** Above this many items, state is read with one batch walk of the map instead of lookups. */
const BULK_READ_THRESHOLD = 64;

function isMapFull(err: unknown): err is BatchError {
  return err instanceof BatchError && err.errnoName === 'E2BIG';
}

/**
 * The LB maps of one node, typed. Writes go in batches, ordered so that the programs (which
 * read concurrently) always find a consistent frontend: backends and reverse NAT first, then
 * slots, then masters; removals the other way round. Inputs are validated before any map is
 * touched (WEFT_ERR_LB_INVALID); a full map raises LbMapFullError (WEFT_ERR_MAP_FULL) with every
 * frontend either as it was or as asked.
 *
 *   const lb = LbMaps.open({ pinRoot: '/sys/fs/bpf/weft/node-a' });
 *   lb.apply({ backends: [...], frontends: [...] });
 *   lb.frontends(); lb.close();
 */
export class LbMaps {
  readonly v4: FamilyMaps;
  readonly v6: FamilyMaps;
  readonly affinity: BpfMap<LbAffinityKey, LbAffinity>;
  readonly affinityMatch: BpfMap<LbAffinityMatchKey, number>;
  readonly stats: BpfMap<number, bigint>;
  /** Called after every batch write or delete this class makes (metrics). Must not throw. */
  onOps?: (ops: LbMapOps) => void;
  private readonly opened: Array<{ close(): void }>;

  private constructor(open: <K, V>(name: string, key: Codec<K>, value: Codec<V>) => BpfMap<K, V>) {
    const opened: Array<{ close(): void }> = [];
    const take = <K, V>(name: string, k: Codec<K>, v: Codec<V>): BpfMap<K, V> => {
      const m = open(name, k, v);
      opened.push(m);
      return m;
    };
    try {
      this.v4 = {
        family: 4,
        services: take(lbMapNames.services4, lb4Key, lbService),
        backends: take(lbMapNames.backends4, u32, lb4Backend),
        reverseNat: take(lbMapNames.reverseNat4, u16, lb4ReverseNat),
        sockRevnat: take(lbMapNames.sockRevnat4, lb4SockRevnatKey, lb4SockRevnat),
      };
      this.v6 = {
        family: 6,
        services: take(lbMapNames.services6, lb6Key, lbService),
        backends: take(lbMapNames.backends6, u32, lb6Backend),
        reverseNat: take(lbMapNames.reverseNat6, u16, lb6ReverseNat),
        sockRevnat: take(lbMapNames.sockRevnat6, lb6SockRevnatKey, lb6SockRevnat),
      };
      this.affinity = take(lbMapNames.affinity, lbAffinityKey, lbAffinity);
      this.affinityMatch = take(lbMapNames.affinityMatch, lbAffinityMatchKey, u8);
      this.stats = take(lbMapNames.sockLbStats, u32, u64);
    } catch (err) {
      for (const m of opened) m.close();
      throw err;
    }
    this.opened = opened;
  }

  /** The maps of a loaded object (sock_lb.bpf.o, or any object that includes lb_maps.h). */
  static fromObject(obj: BpfObject): LbMaps {
    return new LbMaps((name, k, v) => obj.typedMap(name, k, v));
  }

  /** The maps pinned under `pinRoot` by an agent (this process or another). */
  static openPinned(pinRoot: string): LbMaps {
    return new LbMaps((name, k, v) => BpfMap.openPinned(`${pinRoot}/${name}`, k, v));
  }

  /**
   * Creates the maps pinned under `pinRoot` with `sizes`, or reuses those already pinned there
   * (whose sizes must then match: WEFT_ERR_PINNED_MAP_MISMATCH otherwise), by loading
   * sock_lb.bpf.o; its programs are not attached and go away when this returns.
   */
  static open(opts: { pinRoot: string; sizes?: Partial<LbMapSizes>; objectPath?: string }): LbMaps {
    const obj = BpfObject.open(opts.objectPath ?? bpfObjectPath('sock_lb.bpf.o'), {
      pinRoot: opts.pinRoot,
      maxEntries: lbMaxEntries(opts.sizes),
    });
    try {
      obj.load();
      return LbMaps.fromObject(obj);
    } finally {
      obj.close();
    }
  }

  /** Backends and frontends together (a whole Service): backends first, then frontends. */
  apply(state: { backends?: LbBackend[]; frontends?: LbFrontend[] }): void {
    const backends = state.backends ?? [];
    const frontends = state.frontends ?? [];
    this.validate(frontends, backends);
    this.writeBackends(backends);
    this.writeFrontends(frontends);
  }

  /** Adds or replaces backends (by id). */
  applyBackends(backends: LbBackend[]): void {
    this.apply({ backends });
  }

  /** Adds or replaces frontends; every backend they list must be in the maps already. */
  applyFrontends(frontends: LbFrontend[]): void {
    this.apply({ frontends });
  }

  // ---- for a writer that mirrors the maps (the agent) -------------------------------------
  // These trust the caller's knowledge of what the maps hold (it read them back on start and
  // is their only writer), so they touch only the entries that change: no map walks, no
  // read-back. Each item is still validated before any map is touched.

  /**
   * Adds or replaces backends by id. A full map raises LbMapFullError after writing a prefix
   * of them (no frontend lists them yet, so that is harmless).
   */
  upsertBackends(backends: LbBackend[]): void {
    backends.forEach(validateBackend);
    this.writeBackends(backends);
  }

  /** Removes backends by id, in both families, without asking whether a frontend lists them. */
  removeBackends(ids: number[]): void {
    for (const id of ids) checkInteger(`backend ${String(id)}`, 'id', id, 1, 0xffff_ffff);
    for (const maps of [this.v4, this.v6]) this.deleteEntries(maps.backends, ids);
  }

  /**
   * Turns each frontend from `previous` (what the maps hold, as the caller knows it; undefined:
   * absent) into `next` (undefined: remove it), in one ordered batch per family. Every backend
   * a `next` lists must be in the maps. On a full map (LbMapFullError) every frontend is exactly
   * as before or exactly as asked: entries that need new room are written first, so the map
   * fills up before any existing entry has been touched.
   */
  updateFrontends(changes: Array<{ previous: LbFrontend | undefined; next: LbFrontend | undefined }>): void {
    const names = new Set<string>();
    const revNats = new Map<number, string>();
    const planned: FrontendChange[] = [];
    let fresh = 0;
    // Indexed: a cold sync runs this loop before it is optimized, where for-of costs an
    // iterator step per change.
    for (let i = 0; i < changes.length; i++) {
      const { previous, next } = changes[i]!;
      const key = next ?? previous;
      if (!key) continue;
      const name = frontendName(key);
      if (next) {
        validateFrontend(next);
        const other = revNats.get(next.revNatIndex);
        if (other) invalid(`frontend ${name}`, `revNatIndex ${next.revNatIndex} is also given to ${other}`);
        revNats.set(next.revNatIndex, name);
      }
      if (previous && next && frontendName(previous) !== name) {
        invalid(`frontend ${name}`, `its previous state is that of ${frontendName(previous)}`);
      }
      if (names.has(name)) invalid(`frontend ${name}`, 'listed twice');
      names.add(name);
      if (!previous && next && next.affinityTimeoutSeconds === undefined) fresh++;
    }
    // Only new frontends (an agent's first sync, new Services): written straight from the
    // model, in the order below, without a plan per frontend.
    if (fresh === changes.length && this.writeNew(changes.map((c) => c.next as LbFrontend))) return;
    for (const { previous, next } of changes) {
      const key = next ?? previous;
      if (key) planned.push({ frontend: key, previous, next, plan: planFrontend(previous, next) });
    }
    this.execute(planned);
  }

  /** Removes reverse NAT entries by index, in both families (orphans no frontend uses). */
  removeReverseNat(indexes: number[]): void {
    for (const i of indexes) checkInteger(`reverse NAT ${String(i)}`, 'index', i, 1, 0xffff);
    for (const maps of [this.v4, this.v6]) this.deleteEntries(maps.reverseNat, indexes);
  }

  /** One backend by id, from whichever family holds it. */
  backend(id: number): LbBackend | undefined {
    for (const maps of [this.v4, this.v6]) {
      const e = maps.backends.lookup(id);
      if (e) return backendFromEntry(id, e);
    }
    return undefined;
  }

  /** Removes frontends: masters first, so no reader finds a master without its slots. */
  deleteFrontends(frontends: FrontendAddress[]): void {
    for (const f of frontends) {
      const what = `frontend ${String(f.address)}:${String(f.port)}/${String(f.protocol)}`;
      const fault =
        addressFault(f.address) ?? integerFault('port', f.port, 1, 0xffff) ?? protocolFault(f.protocol);
      if (fault !== undefined) invalid(what, fault);
    }
    const previous = this.readFrontends(frontends);
    const changes: FrontendChange[] = [];
    for (const f of frontends) {
      const old = previous.get(frontendName(f));
      if (old)
        changes.push({ frontend: f, previous: old, next: undefined, plan: planFrontend(old, undefined) });
    }
    this.execute(changes);
  }

  /** Removes backends no frontend lists; WEFT_ERR_BACKEND_IN_USE (nothing removed) otherwise. */
  deleteBackends(ids: number[]): void {
    for (const id of ids) checkInteger(`backend ${String(id)}`, 'id', id, 1, 0xffff_ffff);
    const wanted = new Set(ids);
    const users = this.frontends()
      .filter((f) => [...f.backends, ...(f.internalBackends ?? [])].some((id) => wanted.has(id)))
      .map(frontendName);
    if (users.length > 0) {
      throw new WeftError(
        'WEFT_ERR_BACKEND_IN_USE',
        `backends ${ids.join(', ')} are still listed by ${users.join(', ')}; update those frontends first`,
      );
    }
    this.deleteEntries(this.v4.backends, ids);
    this.deleteEntries(this.v6.backends, ids);
  }

  /** Every frontend in the maps, both families, sorted by address, port and protocol. */
  frontends(): LbFrontend[] {
    return sortFrontends([
      ...frontendsFromEntries(this.v4.services.entries()),
      ...frontendsFromEntries(this.v6.services.entries()),
    ]);
  }

  /** One frontend as the maps hold it, or undefined. */
  frontend(f: FrontendAddress): LbFrontend | undefined {
    const services = this.familyMaps(f.address).services;
    const external = services.lookup(serviceKey(f, LbScope.external, 0));
    if (!external) return undefined;
    const internal =
      external.flags2 & LbServiceFlag2.twoScopes
        ? services.lookup(serviceKey(f, LbScope.internal, 0))
        : undefined;
    return frontendFromEntries(f, external, internal, (scope, slot) =>
      services.lookup(serviceKey(f, scope, slot)),
    );
  }

  backends(): LbBackend[] {
    const out: LbBackend[] = [];
    for (const fam of [this.v4, this.v6]) {
      for (const [id, e] of fam.backends.entries()) out.push(backendFromEntry(id, e));
    }
    return out.sort((a, b) => a.id - b.id);
  }

  reverseNat(): Array<{ revNatIndex: number } & LbReverseNat> {
    const out: Array<{ revNatIndex: number } & LbReverseNat> = [];
    for (const fam of [this.v4, this.v6]) {
      for (const [i, e] of fam.reverseNat.entries()) out.push({ revNatIndex: i, ...e });
    }
    return out.sort((a, b) => a.revNatIndex - b.revNatIndex);
  }

  /** ClientIP affinity entries: which client uses which backend of which frontend. */
  affinityEntries(): Array<[LbAffinityKey, LbAffinity]> {
    return this.affinity.entries();
  }

  /** The socket LB's counters (enum sock_lb_stat), summed since the maps were created. */
  sockLbStats(): Record<SockLbStat, number> {
    const out = {} as Record<SockLbStat, number>;
    sockLbStats.forEach((name, i) => {
      out[name] = Number(this.stats.lookup(i) ?? 0n);
    });
    return out;
  }

  close(): void {
    for (const m of this.opened) m.close();
  }

  // ---- internals ------------------------------------------------------------------------

  private familyMaps(address: string): FamilyMaps {
    return familyOf(address) === 4 ? this.v4 : this.v6;
  }

  /**
   * Everything that can be checked before a write: each item on its own, no frontend or
   * revNatIndex twice, every backend a frontend lists exists (in this call or in the maps)
   * with the frontend's family, and no backend id in both families.
   */
  private validate(frontends: LbFrontend[], backends: LbBackend[]): void {
    backends.forEach(validateBackend);
    frontends.forEach(validateFrontend);
    const names = new Set<string>();
    const revNats = new Map<number, string>();
    for (const f of frontends) {
      const name = frontendName(f);
      if (names.has(name)) invalid(`frontend ${name}`, 'listed twice');
      const other = revNats.get(f.revNatIndex);
      if (other) invalid(`frontend ${name}`, `revNatIndex ${f.revNatIndex} is also given to ${other}`);
      names.add(name);
      revNats.set(f.revNatIndex, name);
    }

    const incoming = new Map<number, IpFamily>();
    for (const b of backends) {
      const family = familyOf(b.address);
      if ((incoming.get(b.id) ?? family) !== family)
        invalid(`backend ${b.id}`, 'listed for both IPv4 and IPv6');
      incoming.set(b.id, family);
    }
    const stored = {
      4: this.backendIndex(this.v4, incoming.size),
      6: this.backendIndex(this.v6, incoming.size),
    };
    for (const [id, family] of incoming) {
      if (stored[family === 4 ? 6 : 4](id)) {
        invalid(
          `backend ${id}`,
          `already used by an IPv${family === 4 ? 6 : 4} backend; ids are shared by both families`,
        );
      }
    }
    const referenced = frontends.reduce(
      (n, f) => n + f.backends.length + (f.internalBackends?.length ?? 0),
      0,
    );
    const inMaps = { 4: this.backendIndex(this.v4, referenced), 6: this.backendIndex(this.v6, referenced) };
    for (const f of frontends) {
      const family = familyOf(f.address);
      for (const id of new Set([...f.backends, ...(f.internalBackends ?? [])])) {
        const other: IpFamily = family === 4 ? 6 : 4;
        let known = incoming.get(id);
        if (known === undefined && inMaps[family](id)) known = family;
        if (known === undefined && inMaps[other](id)) known = other;
        if (known === undefined) {
          invalid(`frontend ${frontendName(f)}`, `backend ${id} does not exist; apply it first`);
        }
        if (known !== family) {
          invalid(`frontend ${frontendName(f)}`, `backend ${id} is IPv${known}, the frontend IPv${family}`);
        }
      }
    }
  }

  /** Membership test for backend ids in one family's map: lookups for a few, one walk for many. */
  private backendIndex(maps: FamilyMaps, expectedQueries: number): (id: number) => boolean {
    if (expectedQueries > BULK_READ_THRESHOLD) {
      const ids = new Set(maps.backends.keys());
      return (id) => ids.has(id);
    }
    const seen = new Map<number, boolean>();
    return (id) => {
      let found = seen.get(id);
      if (found === undefined) {
        found = maps.backends.lookup(id) !== undefined;
        seen.set(id, found);
      }
      return found;
    };
  }

  private writeBackends(backends: LbBackend[]): void {
    const value: Lb4Backend = { address: '', port: 0, proto: 0, flags: 0, cluster_id: 0, zone: 0 };
    // Split by family in one pass, and not at all when every backend has the same one.
    let v6 = 0;
    for (let i = 0; i < backends.length; i++) if (knownFamily(backends[i]!.address) === 6) v6++;
    for (const maps of [this.v4, this.v6]) {
      const count = maps.family === 6 ? v6 : backends.length - v6;
      if (count === 0) continue;
      const mine =
        count === backends.length ? backends : backends.filter((b) => knownFamily(b.address) === maps.family);
      try {
        // Encoded straight from the model: no entry object per backend.
        this.updateEntriesWith(maps.backends, mine.length, value, (i, v) => {
          const b = mine[i]!;
          backendEntry(b, v);
          return b.id;
        });
      } catch (err) {
        if (!isMapFull(err)) throw err;
        throw new LbMapFullError(
          maps.backends,
          `${err.applied} of ${mine.length} backends written (unreferenced until a frontend lists them); no frontend was changed`,
          err,
        );
      }
    }
  }

  private writeFrontends(frontends: LbFrontend[]): void {
    const previous = this.readFrontends(frontends);
    this.execute(
      frontends.map((f) => {
        const old = previous.get(frontendName(f));
        return { frontend: f, previous: old, next: f, plan: planFrontend(old, f) };
      }),
    );
  }

  /** What the maps hold for these frontends now (absent: not in the maps). */
  private readFrontends(frontends: FrontendAddress[]): Map<string, LbFrontend> {
    const out = new Map<string, LbFrontend>();
    if (frontends.length > BULK_READ_THRESHOLD) {
      const wanted = new Set(frontends.map(frontendName));
      for (const f of this.frontends()) if (wanted.has(frontendName(f))) out.set(frontendName(f), f);
      return out;
    }
    for (const f of frontends) {
      const current = this.frontend(f);
      if (current) out.set(frontendName(f), current);
    }
    return out;
  }

  /** Applies the plans of many frontends at once, family by family, in the safe order. */
  private execute(changes: FrontendChange[]): void {
    const byFamily: Record<IpFamily, FrontendChange[]> = { 4: [], 6: [] };
    for (const c of changes) byFamily[knownFamily(c.frontend.address)].push(c);
    for (const maps of [this.v4, this.v6]) {
      const mine = byFamily[maps.family];
      if (mine.length === 0) continue;
      const plans = mine.map((c) => c.plan);
      const revNatWrites = plans.flatMap((p) => p.reverseNatWrites);
      const matchWrites = plans.flatMap((p) => p.affinityMatchWrites);
      let revNatWritten = false;
      try {
        this.updateEntries(maps.reverseNat, revNatWrites);
        revNatWritten = true;
        this.updateEntries(
          this.affinityMatch,
          matchWrites.map((k): [LbAffinityMatchKey, number] => [k, 1]),
        );
      } catch (err) {
        if (!isMapFull(err)) throw err;
        this.dropUncommitted(maps, mine, new Set(mine.keys()));
        throw new LbMapFullError(
          revNatWritten ? this.affinityMatch : maps.reverseNat,
          'no frontend was changed',
          err,
        );
      }
      this.writeServices(maps.services, mine, (uncommitted) => this.dropUncommitted(maps, mine, uncommitted));
      this.deleteEntries(
        maps.services,
        plans.flatMap((p) => p.serviceDeletes),
      );
      this.deleteEntries(
        this.affinityMatch,
        plans.flatMap((p) => p.affinityMatchDeletes),
      );
      // An index one frontend gives up may be the one another frontend takes in this batch.
      const rewritten = new Set(revNatWrites.map(([i]) => i));
      this.deleteEntries(
        maps.reverseNat,
        plans.flatMap((p) => p.reverseNatDeletes).filter((i) => !rewritten.has(i)),
      );
    }
  }

  /**
   * Writes frontends the maps do not hold (validated, without affinity), in execute's order:
   * reverse NAT, then every slot, then the INT masters, then the EXT masters; each entry is
   * encoded straight from the frontend into the batch buffers. Every entry is new, so when a
   * map fills up nothing that was there has been touched: what this wrote is removed again and
   * false returned, for execute's path to apply what fits, frontend by frontend.
   */
  private writeNew(frontends: LbFrontend[]): boolean {
    const byFamily: Record<IpFamily, LbFrontend[]> = { 4: [], 6: [] };
    for (let i = 0; i < frontends.length; i++)
      byFamily[knownFamily(frontends[i]!.address)].push(frontends[i]!);
    const written: Array<{ maps: FamilyMaps; frontends: LbFrontend[] }> = [];
    try {
      for (const maps of [this.v4, this.v6]) {
        const mine = byFamily[maps.family];
        if (mine.length === 0) continue;
        written.push({ maps, frontends: mine });
        this.writeNewFamily(maps, mine);
      }
      return true;
    } catch (err) {
      if (!isMapFull(err)) throw err;
      for (const { maps, frontends: mine } of written) {
        const keys: Lb4Key[] = [];
        for (const f of mine) {
          keys.push(serviceKey(f, LbScope.external, 0));
          if (f.internalBackends) keys.push(serviceKey(f, LbScope.internal, 0));
          for (let s = 1; s <= f.backends.length; s++) keys.push(serviceKey(f, LbScope.external, s));
          for (let s = 1; s <= (f.internalBackends?.length ?? 0); s++)
            keys.push(serviceKey(f, LbScope.internal, s));
        }
        this.deleteEntries(maps.services, keys);
        this.deleteEntries(
          maps.reverseNat,
          mine.map((f) => f.revNatIndex),
        );
      }
      return false;
    }
  }

  private writeNewFamily(maps: FamilyMaps, mine: LbFrontend[]): void {
    const encoder = new NewFrontendEncoder(maps.family, mine);
    this.updateEntriesEncoded(maps.reverseNat, mine.length, (batch) => encoder.reverseNat(batch));
    this.updateEntriesEncoded(maps.services, encoder.slotCount, (batch) => encoder.slots(batch));
    this.updateEntriesEncoded(maps.services, encoder.internalCount, (batch) =>
      encoder.masters(batch, LbScope.internal),
    );
    this.updateEntriesEncoded(maps.services, mine.length, (batch) =>
      encoder.masters(batch, LbScope.external),
    );
  }

  /**
   * One ordered batch: first every entry that needs new room (slots past a run's old count,
   * then masters of runs that did not exist: INT before EXT), then entries rewritten in place
   * (slots, INT masters, EXT masters). A hash map only runs out of room on a new key, so when it
   * fills up no existing entry has been touched yet: each frontend whose last master write was
   * not reached loses the new entries it got (nothing reaches them) and stays exactly as it
   * was; the others are exactly as asked.
   */
  private writeServices(
    services: BpfMap<Lb4Key, LbService>,
    changes: FrontendChange[],
    onFull: (uncommitted: Set<number>) => void,
  ): void {
    // Entries as written ([key, value], shared with the plans) and, alongside, their change's index.
    const groups: Array<Array<readonly [Lb4Key, LbService]>> = [[], [], [], [], [], []];
    const owners: number[][] = [[], [], [], [], [], []];
    const NEW_SLOT = 0;
    const NEW_INT = 1;
    const NEW_EXT = 2;
    const OLD_SLOT = 3;
    const OLD_INT = 4;
    const OLD_EXT = 5;
    for (let i = 0; i < changes.length; i++) {
      const { previous, plan } = changes[i]!;
      const oldExt = previous?.backends.length;
      const oldInt = previous?.internalBackends?.length;
      const writes = plan.serviceWrites;
      for (let w = 0; w < writes.length; w++) {
        const entry = writes[w]!;
        const k = entry[0];
        const had = k.scope === LbScope.internal ? oldInt : oldExt;
        const exists = had !== undefined && k.backend_slot <= had;
        const group =
          k.backend_slot !== 0
            ? exists
              ? OLD_SLOT
              : NEW_SLOT
            : k.scope === LbScope.internal
              ? exists
                ? OLD_INT
                : NEW_INT
              : exists
                ? OLD_EXT
                : NEW_EXT;
        groups[group]!.push(entry);
        owners[group]!.push(i);
      }
    }
    const ordered = groups.flat();
    const ownerOf = owners.flat();
    if (ordered.length === 0) return;
    try {
      this.updateEntries(services, ordered);
    } catch (err) {
      if (!isMapFull(err)) throw err;
      // Where each frontend's last master write sits in the batch: reached means "as asked".
      const commitAt = new Map<number, number>();
      ordered.forEach(([k], at) => {
        if (k.backend_slot === 0) commitAt.set(ownerOf[at]!, at);
      });
      const undo: Lb4Key[] = [];
      const newKeys = groups[NEW_SLOT]!.length + groups[NEW_INT]!.length + groups[NEW_EXT]!.length;
      for (let at = 0; at < Math.min(err.applied, newKeys); at++) {
        const k = ordered[at]![0];
        if ((commitAt.get(ownerOf[at]!) ?? -1) >= err.applied) undo.push(k);
      }
      // Masters before slots, so nothing reaches a slot that is going away.
      undo.sort((a, b) => (a.backend_slot === 0 ? -1 : 0) - (b.backend_slot === 0 ? -1 : 0));
      this.deleteEntries(services, undo);
      const uncommitted = new Set<number>();
      changes.forEach((_, i) => {
        if ((commitAt.get(i) ?? Number.POSITIVE_INFINITY) >= err.applied) uncommitted.add(i);
      });
      onFull(uncommitted);
      throw new LbMapFullError(
        services,
        `${err.applied} of ${ordered.length} entries written; frontends that did not fit keep their previous state`,
        err,
      );
    }
  }

  /**
   * After a full map: removes the reverse NAT and affinity-match entries written ahead of the
   * services batch for frontends that did not get there (`uncommitted`, by index in `changes`),
   * unless a frontend still in its previous state, or one that did change, uses them.
   */
  private dropUncommitted(maps: FamilyMaps, changes: FrontendChange[], uncommitted: Set<number>): void {
    const neededRevNat = new Set<number>();
    const neededPairs = new Set<string>();
    const pairId = (k: LbAffinityMatchKey) => `${k.backend_id}/${k.rev_nat_index}`;
    changes.forEach((c, i) => {
      const kept = uncommitted.has(i) ? c.previous : c.next;
      if (!kept) return;
      neededRevNat.add(kept.revNatIndex);
      for (const k of affinityPairs(kept).keys()) neededPairs.add(k);
    });
    const revNats: number[] = [];
    const pairs: LbAffinityMatchKey[] = [];
    for (const i of uncommitted) {
      const c = changes[i]!;
      for (const [index] of c.plan.reverseNatWrites) if (!neededRevNat.has(index)) revNats.push(index);
      for (const k of c.plan.affinityMatchWrites) if (!neededPairs.has(pairId(k))) pairs.push(k);
    }
    this.deleteEntries(maps.reverseNat, revNats);
    this.deleteEntries(this.affinityMatch, pairs);
  }

  /** updateBatch, reported to onOps. */
  private updateEntries<K, V>(map: BpfMap<K, V>, entries: ReadonlyArray<readonly [K, V]>): void {
    if (entries.length === 0) return;
    try {
      map.updateBatch(entries);
      this.report(map.name, 'update', 'success', entries.length);
    } catch (err) {
      const applied = err instanceof BatchError ? err.applied : 0;
      this.report(map.name, 'update', 'success', applied);
      this.report(map.name, 'update', 'fail', entries.length - applied);
      throw err;
    }
  }

  /** updateBatchWith, reported to onOps. */
  private updateEntriesWith<K, V>(
    map: BpfMap<K, V>,
    count: number,
    value: V,
    entry: (i: number, value: V) => K,
  ): void {
    if (count === 0) return;
    try {
      map.updateBatchWith(count, value, entry);
      this.report(map.name, 'update', 'success', count);
    } catch (err) {
      const applied = err instanceof BatchError ? err.applied : 0;
      this.report(map.name, 'update', 'success', applied);
      this.report(map.name, 'update', 'fail', count - applied);
      throw err;
    }
  }

  /** updateBatchEncoded of `count` entries, reported to onOps. */
  private updateEntriesEncoded<K, V>(
    map: BpfMap<K, V>,
    count: number,
    fill: (batch: BatchEncoder) => void,
  ): void {
    if (count === 0) return;
    try {
      map.updateBatchEncoded(fill);
      this.report(map.name, 'update', 'success', count);
    } catch (err) {
      const applied = err instanceof BatchError ? err.applied : 0;
      this.report(map.name, 'update', 'success', applied);
      this.report(map.name, 'update', 'fail', count - applied);
      throw err;
    }
  }

  /** deleteBatch (absent keys skipped), reported to onOps. */
  private deleteEntries<K, V>(map: BpfMap<K, V>, keys: readonly K[]): number {
    if (keys.length === 0) return 0;
    try {
      const n = map.deleteBatch(keys);
      this.report(map.name, 'delete', 'success', n);
      return n;
    } catch (err) {
      const applied = err instanceof BatchError ? err.applied : 0;
      this.report(map.name, 'delete', 'success', applied);
      this.report(map.name, 'delete', 'fail', keys.length - applied);
      throw err;
    }
  }

  private report(map: string, operation: LbMapOps['operation'], outcome: LbMapOps['outcome'], count: number) {
    if (count <= 0 || !this.onOps) return;
    try {
      this.onOps({ map, operation, outcome, count });
    } catch {
      // A metrics callback never breaks a map write.
    }
  }
}

/**
 * The entries of frontends new to the maps (no affinity), written into batch buffers in
 * LbMaps.writeNew's order as 16-bit words in host order (little endian, as the u16 codec
 * assumes; every field of these structs is one or more whole words). Each frontend's address
 * is parsed once, by the address codec, and every entry is a few word stores, where the struct
 * codecs would parse the address again for each slot and master. Words, not 32-bit ones: they
 * stay small integers, which unoptimized code (a cold sync) reads and writes without
 * allocating. The layouts are lb.h's (lb{4,6}_key, lb_service, lb{4,6}_reverse_nat); a unit
 * test checks that the bytes are the codecs'.
 */
export class NewFrontendEncoder {
  /** Slot entries, both scopes. */
  readonly slotCount: number;
  /** Frontends with two scopes: INT masters. */
  readonly internalCount: number;
  /** Words per address: 2 (IPv4) or 8 (IPv6). */
  private readonly addressWords: number;
  /** Each frontend's address, in network byte order, as words. */
  private readonly addresses: Uint16Array;
  private readonly master: LbService = { backend_id: 0, count: 0, rev_nat_index: 0, flags: 0, flags2: 0 };

  constructor(
    family: IpFamily,
    private readonly frontends: readonly LbFrontend[],
  ) {
    const address = family === 4 ? ipv4 : ipv6;
    this.addressWords = address.size / 2;
    this.addresses = new Uint16Array(frontends.length * this.addressWords);
    const bytes = Buffer.from(this.addresses.buffer);
    let slots = 0;
    let internal = 0;
    for (let i = 0; i < frontends.length; i++) {
      const f = frontends[i]!;
      address.encode(f.address, bytes, i * address.size);
      slots += f.backends.length + (f.internalBackends?.length ?? 0);
      if (f.internalBackends) internal++;
    }
    this.slotCount = slots;
    this.internalCount = internal;
  }

  /** One reverse NAT entry per frontend: key u16 index; value address, __be16 port, pad. */
  reverseNat(batch: BatchEncoder): void {
    const keys = words(batch.keys);
    const values = words(batch.values);
    const valueWords = this.addressWords + 2;
    for (let i = 0; i < this.frontends.length; i++) {
      const f = this.frontends[i]!;
      const at = batch.next();
      keys[at] = f.revNatIndex;
      const w = this.address(values, at * valueWords, i);
      values[w] = be16Word(f.port);
      values[w + 1] = 0;
    }
  }

  /** Every slot: each frontend's INT run, then its EXT run (planFrontend's order). */
  slots(batch: BatchEncoder): void {
    const keys = words(batch.keys);
    const values = words(batch.values);
    for (let i = 0; i < this.frontends.length; i++) {
      const f = this.frontends[i]!;
      if (f.internalBackends) this.run(batch, keys, values, i, LbScope.internal, f.internalBackends);
      this.run(batch, keys, values, i, LbScope.external, f.backends);
    }
  }

  /** The masters of one scope: every frontend's EXT master, or the INT masters of two-scope ones. */
  masters(batch: BatchEncoder, scope: number): void {
    const keys = words(batch.keys);
    const values = words(batch.values);
    for (let i = 0; i < this.frontends.length; i++) {
      const f = this.frontends[i]!;
      if (scope === LbScope.internal && !f.internalBackends) continue;
      const at = batch.next();
      const m = masterEntry(f, scope, this.master);
      this.key(keys, at, i, scope, 0);
      this.service(values, at, m.backend_id, m.count, m.flags, m.flags2, f.revNatIndex);
    }
  }

  private run(
    batch: BatchEncoder,
    keys: Uint16Array,
    values: Uint16Array,
    i: number,
    scope: number,
    backends: readonly number[],
  ): void {
    const revNatIndex = this.frontends[i]!.revNatIndex;
    for (let s = 0; s < backends.length; s++) {
      const at = batch.next();
      this.key(keys, at, i, scope, s + 1);
      this.service(values, at, backends[s]!, 0, 0, 0, revNatIndex);
    }
  }

  /** lb{4,6}_key: address, __be16 dport, u16 backend_slot, u8 proto, u8 scope, pad. */
  private key(keys: Uint16Array, at: number, i: number, scope: number, slot: number): void {
    const f = this.frontends[i]!;
    const w = this.address(keys, at * (this.addressWords + 4), i);
    keys[w] = be16Word(f.port);
    keys[w + 1] = slot;
    keys[w + 2] = lbProtocols[f.protocol] | (scope << 8);
    keys[w + 3] = 0;
  }

  /** lb_service: u32 backend_id, u16 count, u16 rev_nat_index, u8 flags, u8 flags2, pad. */
  private service(
    values: Uint16Array,
    at: number,
    backendId: number,
    count: number,
    flags: number,
    flags2: number,
    revNatIndex: number,
  ): void {
    const w = at * 6;
    values[w] = backendId & 0xffff;
    values[w + 1] = backendId >>> 16;
    values[w + 2] = count;
    values[w + 3] = revNatIndex;
    values[w + 4] = flags | (flags2 << 8);
    values[w + 5] = 0;
  }

  /** Frontend i's address at word `w` of `out`; returns the word after it. */
  private address(out: Uint16Array, w: number, i: number): number {
    const n = this.addressWords;
    for (let k = 0; k < n; k++) out[w + k] = this.addresses[i * n + k]!;
    return w + n;
  }
}

/** A batch buffer as host-order 16-bit words (its entries' sizes are even). */
function words(b: Buffer): Uint16Array {
  return new Uint16Array(b.buffer, b.byteOffset, b.length >>> 1);
}

/** A __be16 as a host-order (little endian) word. */
function be16Word(v: number): number {
  return ((v >>> 8) | (v << 8)) & 0xffff;
}

/**
 * The frontends a services map holds, from its entries (in any order). Entries are grouped per
 * frontend with one string key each, and each scope's slots sit in an array by slot number, so
 * reading back tens of thousands of entries builds no key per lookup.
 */
export function frontendsFromEntries(entries: Array<[Lb4Key, LbService]>): LbFrontend[] {
  /** Per frontend: its external master's key and, per scope, entries by slot (0: master). */
  interface Group {
    key: Lb4Key | undefined;
    scopes: [Array<LbService | undefined>, Array<LbService | undefined>];
  }
  const groups = new Map<string, Group>();
  for (const [k, v] of entries) {
    if (k.scope !== LbScope.external && k.scope !== LbScope.internal) continue;
    const id = `${k.address}|${k.dport}|${k.proto}`;
    let g = groups.get(id);
    if (!g) {
      g = { key: undefined, scopes: [[], []] };
      groups.set(id, g);
    }
    g.scopes[k.scope]![k.backend_slot] = v;
    if (k.backend_slot === 0 && k.scope === LbScope.external) g.key = k;
  }
  const out: LbFrontend[] = [];
  for (const [k] of entries) {
    // In the entries' order, once per frontend: at its external master.
    if (k.backend_slot !== 0 || k.scope !== LbScope.external) continue;
    const g = groups.get(`${k.address}|${k.dport}|${k.proto}`)!;
    if (g.key !== k) continue;
    const key: FrontendAddress = { address: k.address, port: k.dport, protocol: protocolName(k.proto) };
    out.push(
      frontendFromEntries(
        key,
        g.scopes[LbScope.external][0]!,
        g.scopes[LbScope.internal][0],
        (scope, slot) => g.scopes[scope as 0 | 1]?.[slot],
      ),
    );
  }
  return out;
}

/** By family, address (as bytes), port, protocol; one sort key per frontend, not per comparison. */
function sortFrontends<T extends FrontendAddress>(list: T[]): T[] {
  const keyed = list.map((f) => {
    const fam = knownFamily(f.address);
    const bytes = (fam === 4 ? ipv4Bytes(f.address) : parseIPv6(f.address)) ?? new Uint8Array(16);
    const key = `${fam}${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('hex')}${f.port
      .toString(16)
      .padStart(4, '0')}${(lbProtocols[f.protocol] ?? 0).toString(16).padStart(2, '0')}`;
    return { key, f };
  });
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return keyed.map((x) => x.f);
}

function ipv4Bytes(address: string): Uint8Array {
  return Uint8Array.from(address.split('.').map(Number));
}

/** A struct codec over another one's bytes, with a friendlier TypeScript shape. */
function mapStruct<R extends object, T extends object>(
  raw: StructCodec<R>,
  toRaw: (value: T) => R,
  fromRaw: (raw: R) => T,
): StructCodec<T> {
  return {
    cName: raw.cName,
    size: raw.size,
    align: raw.align,
    fields: raw.fields,
    encode: (v, buf, offset) => raw.encode(toRaw(v), buf, offset),
    decode: (buf, offset) => fromRaw(raw.decode(buf, offset)),
  };
}
