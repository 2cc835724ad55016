/**
 * The agent's compact view of the Kubernetes objects the load-balancer needs, after validation
 * at the edge (src/agent/k8s/objects.ts), and of what it wants in the maps. Nothing here holds
 * a client-node type: the pure functions of this directory see only these shapes.
 */
import type { BackendState, FrontendType, LbProtocol, TrafficPolicy } from '../../datapath/lbmap.js';

export type { BackendState, FrontendType, LbProtocol, TrafficPolicy };
export type IpFamily = 4 | 6;

/** "namespace/name", as client-go's MetaNamespaceKeyFunc. */
export type ServiceKey = string;

export function serviceKey(namespace: string, name: string): ServiceKey {
  // join makes one flat string; a template literal makes a rope (V8's cons string) of its parts
  // that every comparison walks again, and a full sync sorts and compares 10,000s of these.
  return [namespace, name].join('/');
}

export interface ServicePortInfo {
  /** "" for a Service's only, unnamed port. */
  name: string;
  port: number;
  protocol: LbProtocol;
  /** Set for NodePort and LoadBalancer Services (unless allocateLoadBalancerNodePorts is false). */
  nodePort?: number;
}

export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';

export interface ServiceInfo {
  namespace: string;
  name: string;
  type: ServiceType;
  /** spec.clusterIPs (or spec.clusterIP), canonical text; empty when headless or unset. */
  clusterIPs: string[];
  /** clusterIP None: DNS-only, the datapath leaves it alone. */
  headless: boolean;
  ports: ServicePortInfo[];
  externalIPs: string[];
  /** status.loadBalancer.ingress[].ip, without ingress points in ipMode Proxy. */
  loadBalancerIPs: string[];
  /**
   * spec.loadBalancerSourceRanges of a LoadBalancer Service: canonical CIDRs (host bits
   * cleared), both families, sorted, no duplicates; empty when unrestricted.
   */
  loadBalancerSourceRanges: string[];
  /** sessionAffinity ClientIP: its timeout (default 10800 s); undefined for None. */
  affinityTimeoutSeconds?: number;
  externalTrafficPolicy: TrafficPolicy;
  internalTrafficPolicy: TrafficPolicy;
}

export interface EndpointInfo {
  /** addresses[0], canonical text (consumers use the first address, as kube-proxy does). */
  address: string;
  /** conditions.ready; nil means true. */
  ready: boolean;
  /** conditions.serving; nil means true. */
  serving: boolean;
  /** conditions.terminating; nil means false. */
  terminating: boolean;
  nodeName?: string;
}

export interface EndpointPortInfo {
  name: string;
  port: number;
  protocol: LbProtocol;
}

export interface EndpointSliceInfo {
  namespace: string;
  name: string;
  /** The kubernetes.io/service-name label. */
  serviceName: string;
  family: IpFamily;
  ports: EndpointPortInfo[];
  endpoints: EndpointInfo[];
}

export interface NodeInfo {
  name: string;
  /** status.addresses of type InternalIP, canonical text, in the Node's order. */
  internalIPs: string[];
}

/** A backend as a frontend wants it; the allocator gives it an id. */
export interface DesiredBackend {
  /** backendKeyOf(this). */
  key: BackendKey;
  address: string;
  port: number;
  protocol: LbProtocol;
  state: Exclude<BackendState, 'quarantined'>;
  /** The endpoint's node is this node (externalTrafficPolicy/internalTrafficPolicy Local). */
  local: boolean;
}

/**
 * What a backend id stands for: address, port and protocol. An IPv4 backend's is one number
 * (address · 2^18 + port · 4 + protocol, below 2^50), which a Map hashes without building and
 * hashing a string; an IPv6 backend's is "address|port|protocol".
 */
export type BackendKey = number | string;

const protocolIndex: Record<LbProtocol, number> = { TCP: 0, UDP: 1, SCTP: 2 };

export function backendKeyOf(b: { address: string; port: number; protocol: LbProtocol }): BackendKey {
  return backendKey(b.address, b.port, b.protocol);
}

/** backendKeyOf({ address, port, protocol }), without the object. */
export function backendKey(a: string, port: number, protocol: LbProtocol): BackendKey {
  if (a.includes(':')) return `${a}|${port}|${protocol}`;
  let v = 0;
  let octet = 0;
  for (let i = 0; i < a.length; i++) {
    const c = a.charCodeAt(i);
    if (c === 46) {
      v = v * 256 + octet;
      octet = 0;
    } else octet = octet * 10 + (c - 48);
  }
  v = v * 256 + octet;
  return v * 262_144 + port * 4 + protocolIndex[protocol];
}

/** Sort order of backend keys: IPv4 by address, port, protocol; IPv6 as text; IPv4 first. */
export function compareBackendKeys(a: BackendKey, b: BackendKey): number {
  if (typeof a === 'number') return typeof b === 'number' ? a - b : -1;
  if (typeof b === 'number') return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** One frontend of a Service, with its backends by key (ids come later). */
export interface DesiredFrontend {
  /** "address:port/PROTOCOL" (IPv6 in brackets): the frontend's identity in the maps. */
  name: string;
  address: string;
  port: number;
  protocol: LbProtocol;
  type: FrontendType;
  /** The Service port this frontend serves (its name; "" when unnamed). */
  portName: string;
  /**
   * What external clients get (one-scope frontends: what everyone gets): indexes into the
   * Service's `backends`, in the order of their keys (compareBackendKeys).
   */
  backends: number[];
  /** What in-cluster clients get when it differs by policy from `backends` (two scopes). */
  internalBackends?: number[];
  affinityTimeoutSeconds?: number;
  externalTrafficPolicy: TrafficPolicy;
  internalTrafficPolicy: TrafficPolicy;
  /** LoadBalancer frontends: the clients (CIDRs of the frontend's family) allowed from outside. */
  sourceRanges?: string[];
}

/** Everything one Service wants in the maps. */
export interface DesiredService {
  key: ServiceKey;
  frontends: DesiredFrontend[];
  /** Every backend the frontends list, each key once (indexes of DesiredFrontend.backends). */
  backends: DesiredBackend[];
}
