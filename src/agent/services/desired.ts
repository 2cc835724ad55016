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
  backendKeyOf,
  compareBackendKeys,
  type DesiredBackend,
  type DesiredFrontend,
  type DesiredService,
  type EndpointSliceInfo,
  type FrontendType,
  type IpFamily,
  type NodeInfo,
  type ServiceInfo,
  type ServicePortInfo,
  serviceKey,
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
): T[] {
  const ready = endpoints.filter((e) => e.ready);
  return ready.length > 0 ? ready : endpoints.filter((e) => e.serving && e.terminating);
}

function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The sorted backend keys of `list`, each recorded in `backends`: the same pod under two
 * Services (or ports) is one backend, and a terminating copy wins.
 */
function backendKeys(
  list: readonly Candidate[],
  protocol: ServicePortInfo['protocol'],
  backends: Map<BackendKey, DesiredBackend>,
): BackendKey[] {
  const keys = new Array<BackendKey>(list.length);
  for (let i = 0; i < list.length; i++) {
    const c = list[i]!;
    const b: DesiredBackend = {
      address: c.address,
      port: c.port,
      protocol,
      state: c.terminating ? 'terminating' : 'active',
      local: c.local,
    };
    const key = backendKeyOf(b);
    const have = backends.get(key);
    if (!have || (b.state === 'terminating' && have.state !== 'terminating')) backends.set(key, b);
    keys[i] = key;
  }
  return keys.sort(compareBackendKeys);
}

export function desiredService(
  svc: ServiceInfo,
  slices: readonly EndpointSliceInfo[],
  nodes: readonly NodeInfo[],
  nodeName: string,
): DesiredService {
  const out: DesiredService = {
    key: serviceKey(svc.namespace, svc.name),
    frontends: [],
    backends: new Map(),
  };
  if (svc.type === 'ExternalName' || svc.headless || svc.clusterIPs.length === 0) return out;

  const sortedSlices = slices.length > 1 ? [...slices].sort((a, b) => compareKeys(a.name, b.name)) : slices;
  let ownNode: NodeInfo | undefined;
  // Frontend names so far: a handful per Service, so a list (a Set per Service costs more).
  const seenFrontends: string[] = [];
  // With one port in one family and no Local policy, only the cluster-wide list is ever listed:
  // the node-local one (a subset of the same candidates, or backends nothing lists) is skipped,
  // and so is the final pass that drops backends no frontend lists.
  const usesLocal =
    svc.internalTrafficPolicy === 'Local' ||
    svc.externalTrafficPolicy === 'Local' ||
    svc.ports.length * svc.clusterIPs.length > 1;
  let maybeUnlisted = usesLocal;

  for (const port of svc.ports) {
    for (const clusterIP of svc.clusterIPs) {
      const family = familyOf(clusterIP);
      const candidates = endpointsForPort(port, family, sortedSlices, nodeName);
      const clusterKeys = backendKeys(usableEndpoints(candidates), port.protocol, out.backends);
      const localKeys = usesLocal
        ? backendKeys(usableEndpoints(candidates.filter((c) => c.local)), port.protocol, out.backends)
        : clusterKeys;
      // Each list goes to its first user as it is, to every other as a copy.
      let clusterGiven = false;
      let localGiven = false;
      const listFor = (policy: 'Cluster' | 'Local'): BackendKey[] => {
        const list = policy === 'Local' ? localKeys : clusterKeys;
        const given = list === clusterKeys ? clusterGiven : localGiven;
        if (list === clusterKeys) clusterGiven = true;
        if (list === localKeys) localGiven = true;
        return given ? [...list] : list;
      };

      const add = (address: string, portNumber: number, type: FrontendType) => {
        const name = `${family === 6 ? `[${address}]` : address}:${portNumber}/${port.protocol}`;
        if (seenFrontends.includes(name)) {
          maybeUnlisted = true;
          return;
        }
        seenFrontends.push(name);
        const f: DesiredFrontend = {
          name,
          address,
          port: portNumber,
          protocol: port.protocol,
          type,
          portName: port.name,
          backends: [],
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
        out.frontends.push(f);
      };

      add(clusterIP, port.port, 'ClusterIP');
      if (port.nodePort !== undefined && (svc.type === 'NodePort' || svc.type === 'LoadBalancer')) {
        // Like kube-proxy and Cilium, a node serves NodePorts on its own addresses only: a client
        // of another node's address is that node's to balance, with that node's endpoints. (Every
        // node's addresses on every node would also cost each node a frontend and a u16
        // rev_nat_index per node per nodePort.)
        ownNode ??= nodes.find((n) => n.name === nodeName);
        for (const nodeIP of ownNode?.internalIPs ?? []) {
          if (familyOf(nodeIP) === family) add(nodeIP, port.nodePort, 'NodePort');
        }
      }
      for (const ip of svc.externalIPs) if (familyOf(ip) === family) add(ip, port.port, 'ExternalIP');
      if (svc.type === 'LoadBalancer') {
        for (const ip of svc.loadBalancerIPs) if (familyOf(ip) === family) add(ip, port.port, 'LoadBalancer');
      }
    }
  }
  if (!maybeUnlisted) return out;
  // Backends no frontend lists (a local-only list left some out) are not wanted.
  const listed = new Set<BackendKey>();
  for (const f of out.frontends) {
    for (const k of f.backends) listed.add(k);
    for (const k of f.internalBackends ?? []) listed.add(k);
  }
  for (const k of [...out.backends.keys()]) if (!listed.has(k)) out.backends.delete(k);
  return out;
}

/** Whether a Service's frontends depend on the Nodes (NodePort frontends on every node IP). */
export function dependsOnNodes(svc: ServiceInfo): boolean {
  return (svc.type === 'NodePort' || svc.type === 'LoadBalancer') && svc.ports.some((p) => p.nodePort);
}
