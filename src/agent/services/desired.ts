/**
 * Service + its EndpointSlices + the Nodes → the frontends and backends this node's maps should
 * hold for it. Pure: no I/O, no clock, no ids (allocator.ts gives those), same input → same
 * output, so replaying events or restarting yields the same maps.
 *
 * Kubernetes semantics, as kube-proxy (pkg/proxy: CategorizeEndpoints, endpointslicecache) and
 * Cilium implement them:
 * - a Service port matches EndpointSlice ports by name and protocol; the slice port carries the
 *   number a named targetPort resolved to, which may differ between slices;
 * - an endpoint is used when ready; when none is, serving+terminating ones are (the terminating
 *   fallback), separately for the cluster-wide and the node-local lists;
 * - ClusterIP frontends serve in-cluster clients: internalTrafficPolicy Local lists only this
 *   node's endpoints; none local → count 0 (refused at once);
 * - NodePort (this node's InternalIPs), externalIPs and LoadBalancer ingress IPs serve external
 *   clients (EXT scope: externalTrafficPolicy) and in-cluster ones (INT scope:
 *   internalTrafficPolicy); when the two policies differ the frontend has two scopes;
 * - headless, unset-ClusterIP and ExternalName Services have no frontends;
 * - frontends and endpoints are per IP family: an IPv4 frontend lists IPv4 endpoints only.
 */
import {
  type BackendKey,
  backendKey,
  compareBackendKeys,
  type DesiredBackend,
  type DesiredFrontend,
  type DesiredService,
  type EndpointPortInfo,
  type EndpointSliceInfo,
  type FrontendType,
  type IpFamily,
  type LbProtocol,
  type NodeInfo,
  type ServiceInfo,
  type ServiceKey,
  type ServicePortInfo,
  serviceKey,
  type TrafficPolicy,
} from './types.js';

function familyOf(address: string): IpFamily {
  return address.includes(':') ? 6 : 4;
}

/** How usable an endpoint is: ready beats serving+terminating beats neither. */
function usability(e: { ready: boolean; serving: boolean; terminating: boolean }): number {
  if (e.ready) return 2;
  if (e.serving && e.terminating) return 1;
  return 0;
}

interface Candidate {
  address: string;
  port: number;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  local: boolean;
}

/**
 * The endpoints of one Service port in one family, merged over its slices (by slice name, so
 * the result does not depend on event order) and de-duplicated by address:port: the more usable
 * copy wins, then the local one, then the first.
 */
export function endpointsForPort(
  port: ServicePortInfo,
  family: IpFamily,
  slices: readonly EndpointSliceInfo[],
  nodeName: string,
): Candidate[] {
  // In first-seen order of address:port; indexed by address (a string the cache already holds,
  // cheap to hash), and by "address|port" only for an address seen with two ports.
  const out: Candidate[] = [];
  // A few endpoints (the usual Service): a scan of `out`; more: a Map, built on the way.
  let byAddress: Map<string, number> | undefined;
  let byAddressPort: Map<string, number> | undefined;
  for (const slice of slices) {
    if (slice.family !== family) continue;
    const sp = slice.ports.find((p) => p.name === port.name && p.protocol === port.protocol);
    if (!sp) continue;
    for (const e of slice.endpoints) {
      const c: Candidate = {
        address: e.address,
        port: sp.port,
        ready: e.ready,
        serving: e.serving,
        terminating: e.terminating,
        local: e.nodeName !== undefined && e.nodeName === nodeName,
      };
      let at: number | undefined;
      if (byAddress) at = byAddress.get(c.address);
      else {
        // The first copy of the address, as the Map would give it.
        for (let i = 0; i < out.length; i++) {
          if (out[i]!.address === c.address) {
            at = i;
            break;
          }
        }
      }
      if (at === undefined) {
        if (byAddress) byAddress.set(c.address, out.length);
        else if (out.length >= 8) {
          byAddress = new Map();
          for (let i = 0; i < out.length; i++) {
            const a = out[i]!.address;
            if (!byAddress.has(a)) byAddress.set(a, i);
          }
          byAddress.set(c.address, out.length);
        }
        out.push(c);
        continue;
      }
      if (out[at]!.port !== c.port) {
        byAddressPort ??= new Map();
        const id = `${c.address}|${c.port}`;
        at = byAddressPort.get(id);
        if (at === undefined) {
          byAddressPort.set(id, out.length);
          out.push(c);
          continue;
        }
      }
      const have = out[at]!;
      if (usability(c) > usability(have) || (usability(c) === usability(have) && c.local && !have.local)) {
        out[at] = c;
      }
    }
  }
  return out;
}

/** kube-proxy's choice: the ready endpoints, or, when none is ready, the serving+terminating ones. */
export function usableEndpoints<T extends { ready: boolean; serving: boolean; terminating: boolean }>(
  endpoints: readonly T[],
): readonly T[] {
  // Every endpoint ready (the usual case): the list itself, not a copy.
  let ready = 0;
  for (let i = 0; i < endpoints.length; i++) if (endpoints[i]!.ready) ready++;
  if (ready === endpoints.length) return endpoints;
  if (ready > 0) return endpoints.filter((e) => e.ready);
  return endpoints.filter((e) => e.serving && e.terminating);
}

function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The frontends and backends of the Service being computed, and above a few backends, an index
 * of them by key (built on the way). Module state, reused from one Service to the next (the
 * Service gets exact-length copies): desiredService is synchronous and resets it on entry.
 */
const frontendsNow: Array<DesiredFrontend | undefined> = [];
let frontendCount = 0;
const backendsNow: Array<DesiredBackend | undefined> = [];
let backendCount = 0;
let backendIndex: Map<BackendKey, number> | undefined;

const none: readonly never[] = [];

/**
 * The index in backendsNow of the backend (address, port, protocol), recorded there if new: the
 * same pod under two Services (or ports) is one backend, and a terminating copy wins.
 */
function backendAt(
  address: string,
  port: number,
  protocol: LbProtocol,
  terminating: boolean,
  local: boolean,
): number {
  const key = backendKey(address, port, protocol);
  let at: number | undefined;
  if (backendIndex) at = backendIndex.get(key);
  else {
    for (let i = 0; i < backendCount; i++) {
      if (backendsNow[i]!.key === key) {
        at = i;
        break;
      }
    }
  }
  if (at === undefined) {
    at = backendCount++;
    backendsNow[at] = desiredBackend(key, address, port, protocol, terminating, local);
    if (backendIndex) backendIndex.set(key, at);
    else if (backendCount > 16) {
      backendIndex = new Map();
      for (let i = 0; i < backendCount; i++) backendIndex.set(backendsNow[i]!.key, i);
    }
  } else if (terminating && backendsNow[at]!.state !== 'terminating') {
    backendsNow[at] = desiredBackend(key, address, port, protocol, terminating, local);
  }
  return at;
}

function desiredBackend(
  key: BackendKey,
  address: string,
  port: number,
  protocol: LbProtocol,
  terminating: boolean,
  local: boolean,
): DesiredBackend {
  return { key, address, port, protocol, state: terminating ? 'terminating' : 'active', local };
}

/** `list` (indexes into backendsNow) in the order of their keys. */
function sortByKey(list: number[]): number[] {
  const backends = backendsNow;
  for (let i = 1; i < list.length; i++) {
    if (compareBackendKeys(backends[list[i - 1]!]!.key, backends[list[i]!]!.key) > 0) {
      return list.sort((a, b) => compareBackendKeys(backends[a]!.key, backends[b]!.key));
    }
  }
  return list;
}

/** The backends of `list` (recorded in backendsNow), as indexes in the order of their keys. */
function backendList(list: readonly Candidate[], protocol: LbProtocol): number[] {
  const out = new Array<number>(list.length);
  for (let i = 0; i < list.length; i++) {
    const c = list[i]!;
    out[i] = backendAt(c.address, c.port, protocol, c.terminating, c.local);
  }
  return sortByKey(out);
}

/**
 * As backendList(usableEndpoints(endpointsForPort(...))) for one slice whose endpoints are all
 * ready under distinct addresses (the usual Service), without the copies; `localOnly`: only
 * this node's. undefined: not such a slice.
 */
function readyBackendList(
  slice: EndpointSliceInfo,
  port: number,
  protocol: LbProtocol,
  nodeName: string,
  localOnly: boolean,
): number[] {
  const endpoints = slice.endpoints;
  let n = 0;
  for (let i = 0; i < endpoints.length; i++) {
    const e = endpoints[i]!;
    if (!localOnly || (e.nodeName !== undefined && e.nodeName === nodeName)) n++;
  }
  const out = new Array<number>(n);
  let j = 0;
  for (let i = 0; i < endpoints.length; i++) {
    const e = endpoints[i]!;
    const local = e.nodeName !== undefined && e.nodeName === nodeName;
    if (localOnly && !local) continue;
    out[j++] = backendAt(e.address, port, protocol, e.terminating, local);
  }
  return sortByKey(out);
}

/** Whether every endpoint of `slice` is ready and no two share an address. */
function allReadyAndDistinct(slice: EndpointSliceInfo): boolean {
  const endpoints = slice.endpoints;
  if (endpoints.length > 8) return false;
  for (let i = 0; i < endpoints.length; i++) {
    const e = endpoints[i]!;
    if (!e.ready) return false;
    for (let k = 0; k < i; k++) if (endpoints[k]!.address === e.address) return false;
  }
  return true;
}

/** The slice port matching a Service port (name and protocol). */
function slicePort(slice: EndpointSliceInfo, port: ServicePortInfo): EndpointPortInfo | undefined {
  const ports = slice.ports;
  for (let i = 0; i < ports.length; i++) {
    const p = ports[i]!;
    if (p.name === port.name && p.protocol === port.protocol) return p;
  }
  return undefined;
}

/**
 * The backend lists of one Service port in one family (cluster-wide, node-local), and whether
 * each went to a frontend yet: each list goes to its first user as it is, to every other as a
 * copy. Module state, as backendIndex; between Services both are noList (never handed out).
 */
const noList: number[] = [];
let clusterList = noList;
let localList = noList;
let clusterGiven = false;
let localGiven = false;

function listFor(policy: TrafficPolicy): number[] {
  const list = policy === 'Local' ? localList : clusterList;
  const given = list === clusterList ? clusterGiven : localGiven;
  if (list === clusterList) clusterGiven = true;
  if (list === localList) localGiven = true;
  return given ? list.slice() : list;
}

/** Adds the frontend (address, portNumber) of `port` to frontendsNow; false: it has it already. */
function addFrontend(
  svc: ServiceInfo,
  port: ServicePortInfo,
  family: IpFamily,
  address: string,
  portNumber: number,
  type: FrontendType,
): boolean {
  const name = `${family === 6 ? `[${address}]` : address}:${portNumber}/${port.protocol}`;
  // A handful per Service: a scan (a Set per Service costs more).
  for (let i = 0; i < frontendCount; i++) if (frontendsNow[i]!.name === name) return false;
  const f: DesiredFrontend = {
    name,
    address,
    port: portNumber,
    protocol: port.protocol,
    type,
    portName: port.name,
    backends: clusterList,
    externalTrafficPolicy: svc.externalTrafficPolicy,
    internalTrafficPolicy: svc.internalTrafficPolicy,
  };
  if (svc.affinityTimeoutSeconds !== undefined) f.affinityTimeoutSeconds = svc.affinityTimeoutSeconds;
  if (type === 'LoadBalancer' && svc.loadBalancerSourceRanges.length > 0) {
    // As kube-proxy: the ranges of the frontend's family; none of it → unrestricted.
    const ranges = svc.loadBalancerSourceRanges.filter(
      (c) => familyOf(c.slice(0, c.indexOf('/'))) === family,
    );
    if (ranges.length > 0) f.sourceRanges = ranges;
  }
  if (type === 'ClusterIP') {
    // Only in-cluster clients reach a ClusterIP: one scope, internalTrafficPolicy; the
    // external policy does not apply to it.
    f.externalTrafficPolicy = 'Cluster';
    f.backends = listFor(svc.internalTrafficPolicy);
  } else {
    f.backends = listFor(svc.externalTrafficPolicy);
    if (svc.externalTrafficPolicy !== svc.internalTrafficPolicy) {
      f.internalBackends = listFor(svc.internalTrafficPolicy);
    }
  }
  frontendsNow[frontendCount++] = f;
  return true;
}

/** The first `n` entries of `now`, as a new array of exactly that length; `now` lets go of them. */
function taken<T>(now: Array<T | undefined>, n: number): T[] {
  const out = now.slice(0, n) as T[];
  for (let i = 0; i < n; i++) now[i] = undefined;
  return out;
}

/**
 * desiredService for the usual Service, in one pass: a ClusterIP Service with one port and one
 * cluster IP, both traffic policies Cluster, no externalIPs, and one EndpointSlice, of the
 * cluster IP's family, with the port and at most 8 endpoints, all ready under distinct
 * addresses. Then every endpoint is a backend of its own (distinct addresses, one port:
 * distinct keys), in the slice's order, and the one frontend lists them all; no backendAt,
 * no frontend and backend lists to share. undefined: not such a Service. The objects and
 * arrays are made as the general path makes them (same properties in the same order, the
 * backends through backendsNow and taken), so the reconciler sees one shape of each.
 */
function usualService(
  svc: ServiceInfo,
  slices: readonly EndpointSliceInfo[],
  nodeName: string,
  key: ServiceKey,
): DesiredService | undefined {
  if (
    svc.type !== 'ClusterIP' ||
    slices.length !== 1 ||
    svc.ports.length !== 1 ||
    svc.clusterIPs.length !== 1 ||
    svc.externalIPs.length !== 0 ||
    svc.internalTrafficPolicy !== 'Cluster' ||
    svc.externalTrafficPolicy !== 'Cluster'
  ) {
    return undefined;
  }
  const port = svc.ports[0]!;
  const address = svc.clusterIPs[0]!;
  const family = familyOf(address);
  const slice = slices[0]!;
  if (slice.family !== family) return undefined;
  const sp = slicePort(slice, port);
  if (!sp || !allReadyAndDistinct(slice)) return undefined;

  const endpoints = slice.endpoints;
  const n = endpoints.length;
  const protocol = port.protocol;
  const backends = backendsNow;
  // Indexes in the order of the keys: an insertion sort (at most 8, nearly always in order
  // already). One family, so every key is a number or every key a string, and `>` orders them
  // as compareBackendKeys does.
  const list = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const e = endpoints[i]!;
    const k = backendKey(e.address, sp.port, protocol);
    const local = e.nodeName !== undefined && e.nodeName === nodeName;
    backends[i] = desiredBackend(k, e.address, sp.port, protocol, e.terminating, local);
    let j = i;
    while (j > 0 && backends[list[j - 1]!]!.key > k) {
      list[j] = list[j - 1]!;
      j--;
    }
    list[j] = i;
  }
  const f: DesiredFrontend = {
    name: `${family === 6 ? `[${address}]` : address}:${port.port}/${protocol}`,
    address,
    port: port.port,
    protocol,
    type: 'ClusterIP',
    portName: port.name,
    backends: list,
    externalTrafficPolicy: 'Cluster',
    internalTrafficPolicy: 'Cluster',
  };
  if (svc.affinityTimeoutSeconds !== undefined) f.affinityTimeoutSeconds = svc.affinityTimeoutSeconds;
  return { key, frontends: [f], backends: taken(backendsNow, n) };
}

export function desiredService(
  svc: ServiceInfo,
  slices: readonly EndpointSliceInfo[],
  nodes: readonly NodeInfo[],
  nodeName: string,
  key: ServiceKey = serviceKey(svc.namespace, svc.name),
): DesiredService {
  if (svc.type === 'ExternalName' || svc.headless || svc.clusterIPs.length === 0) {
    return { key, frontends: [], backends: [] };
  }
  const usual = usualService(svc, slices, nodeName, key);
  if (usual) return usual;
  frontendCount = 0;
  backendCount = 0;
  backendIndex = undefined;

  const sortedSlices = slices.length > 1 ? [...slices].sort((a, b) => compareKeys(a.name, b.name)) : slices;
  let ownNode: NodeInfo | undefined;
  // With one port in one family and no Local policy, only the cluster-wide list is ever listed:
  // the node-local one (a subset of the same candidates, or backends nothing lists) is skipped,
  // and so is the final pass that drops backends no frontend lists.
  const usesLocal =
    svc.internalTrafficPolicy === 'Local' ||
    svc.externalTrafficPolicy === 'Local' ||
    svc.ports.length * svc.clusterIPs.length > 1;
  let maybeUnlisted = usesLocal;

  const ports = svc.ports;
  const clusterIPs = svc.clusterIPs;
  // Indexed loops: the first sync runs this cold, where for-of allocates its iterator results.
  for (let pi = 0; pi < ports.length; pi++) {
    const port = ports[pi]!;
    for (let ci = 0; ci < clusterIPs.length; ci++) {
      const clusterIP = clusterIPs[ci]!;
      const family = familyOf(clusterIP);
      // The one slice of the family with the port, if all its endpoints are ready under
      // distinct addresses (then endpointsForPort would copy them as they are).
      let only: EndpointSliceInfo | undefined;
      let onlyPort: EndpointPortInfo | undefined;
      let matching = 0;
      for (let si = 0; si < sortedSlices.length; si++) {
        const slice = sortedSlices[si]!;
        if (slice.family !== family) continue;
        const sp = slicePort(slice, port);
        if (!sp) continue;
        matching++;
        only = slice;
        onlyPort = sp;
      }
      if (matching === 1 && allReadyAndDistinct(only!)) {
        const p = onlyPort!.port;
        clusterList = readyBackendList(only!, p, port.protocol, nodeName, false);
        localList = usesLocal ? readyBackendList(only!, p, port.protocol, nodeName, true) : clusterList;
      } else {
        const candidates = matching === 0 ? [] : endpointsForPort(port, family, sortedSlices, nodeName);
        clusterList = backendList(usableEndpoints(candidates), port.protocol);
        localList = usesLocal
          ? backendList(usableEndpoints(candidates.filter((c) => c.local)), port.protocol)
          : clusterList;
      }
      clusterGiven = false;
      localGiven = false;

      if (!addFrontend(svc, port, family, clusterIP, port.port, 'ClusterIP')) maybeUnlisted = true;
      if (port.nodePort !== undefined && (svc.type === 'NodePort' || svc.type === 'LoadBalancer')) {
        // Like kube-proxy and Cilium, a node serves NodePorts on its own addresses only: a client
        // of another node's address is that node's to balance, with that node's endpoints. (Every
        // node's addresses on every node would also cost each node a frontend and a u16
        // rev_nat_index per node per nodePort.)
        ownNode ??= nodes.find((n) => n.name === nodeName);
        const nodeIPs = ownNode?.internalIPs ?? none;
        for (let i = 0; i < nodeIPs.length; i++) {
          const nodeIP = nodeIPs[i]!;
          if (
            familyOf(nodeIP) === family &&
            !addFrontend(svc, port, family, nodeIP, port.nodePort, 'NodePort')
          )
            maybeUnlisted = true;
        }
      }
      const externalIPs = svc.externalIPs;
      for (let i = 0; i < externalIPs.length; i++) {
        const ip = externalIPs[i]!;
        if (familyOf(ip) === family && !addFrontend(svc, port, family, ip, port.port, 'ExternalIP'))
          maybeUnlisted = true;
      }
      if (svc.type === 'LoadBalancer') {
        const lbIPs = svc.loadBalancerIPs;
        for (let i = 0; i < lbIPs.length; i++) {
          const ip = lbIPs[i]!;
          if (familyOf(ip) === family && !addFrontend(svc, port, family, ip, port.port, 'LoadBalancer'))
            maybeUnlisted = true;
        }
      }
    }
  }
  clusterList = localList = noList;
  backendIndex = undefined;
  const out: DesiredService = {
    key,
    frontends: taken(frontendsNow, frontendCount),
    backends: taken(backendsNow, backendCount),
  };
  if (maybeUnlisted) dropUnlisted(out);
  return out;
}

/**
 * Drops the backends no frontend lists (a local-only list left some out), keeping the order of
 * the rest and renumbering the frontends' lists (each its own array).
 */
function dropUnlisted(out: DesiredService): void {
  const backends = out.backends;
  const renumbered = new Array<number>(backends.length).fill(-1);
  for (const f of out.frontends) {
    for (const i of f.backends) renumbered[i] = 0;
    for (const i of f.internalBackends ?? []) renumbered[i] = 0;
  }
  let n = 0;
  for (let i = 0; i < backends.length; i++) {
    if (renumbered[i] === -1) continue;
    renumbered[i] = n;
    backends[n++] = backends[i]!;
  }
  if (n === backends.length) return;
  backends.length = n;
  for (const f of out.frontends) {
    const ext = f.backends;
    for (let i = 0; i < ext.length; i++) ext[i] = renumbered[ext[i]!]!;
    const int = f.internalBackends;
    if (int) for (let i = 0; i < int.length; i++) int[i] = renumbered[int[i]!]!;
  }
}

/** Whether a Service's frontends depend on the Nodes (NodePort frontends on every node IP). */
export function dependsOnNodes(svc: ServiceInfo): boolean {
  return (svc.type === 'NodePort' || svc.type === 'LoadBalancer') && svc.ports.some((p) => p.nodePort);
}
