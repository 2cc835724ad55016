/**
 * The agent API's responses (/v1/* on the unix socket), shared by the server and `weft`'s
 * commands. Field names are the JSON that `-o json` prints.
 */
import type { BackendState, FrontendType, LbProtocol, TrafficPolicy } from '../../datapath/lbmap.js';
import type { NodePortStatus, SocketLbStatus } from '../datapath.js';
import type { InformerStatus } from '../k8s/informers.js';
import type { InvalidObject } from '../services/cache.js';
import type { ServiceFailure, SyncReport } from '../services/reconciler.js';

export interface MapPressure {
  name: string;
  entries: number;
  capacity: number;
  /** entries / capacity, 0..1. */
  pressure: number;
}

export interface StatusResponse {
  node: string;
  version: string;
  pid: number;
  startedAt: string;
  uptimeSeconds: number;
  /** Starts after the first on this node (kept in the state directory). */
  restarts: number;
  /** The first full sync is done: every Service the API server had is in the maps. */
  ready: boolean;
  /** Ok: ready, connected, nothing failing. Degraded: serving, but something needs attention. */
  health: 'Ok' | 'Degraded' | 'Starting';
  problems: string[];
  kubernetes: {
    server: string;
    configSource: string;
    connected: boolean;
    resources: InformerStatus[];
  };
  sync: {
    count: number;
    last?: SyncReport;
    lastFull?: SyncReport;
    /** Services changed since the last sync, waiting for the next. */
    pending: number;
    failedServices: ServiceFailure[];
  };
  invalidObjects: InvalidObject[];
  maps: MapPressure[];
  socketLb: SocketLbStatus & { stats?: Record<string, number> };
  nodePort: NodePortStatus;
  paths: { pinRoot: string; stateDir: string; socket: string };
}

export interface BackendEntry {
  id: number;
  address: string;
  port: number;
  protocol: LbProtocol;
  /** "missing": a slot names an id the backend map does not hold (refused by the programs). */
  state: BackendState | 'missing';
}

export interface ServiceEntry {
  /** The frontend's reverse NAT index (Cilium's service ID). */
  id: number;
  frontend: { address: string; port: number; protocol: LbProtocol };
  type: FrontendType;
  /** The Service the frontend belongs to; absent for a frontend no Service claims (yet). */
  service?: { namespace: string; name: string; port: string };
  trafficPolicy: { external: TrafficPolicy; internal: TrafficPolicy };
  affinityTimeoutSeconds?: number;
  /** loadBalancerSourceRanges: the only clients from outside the cluster it accepts. */
  sourceRanges?: string[];
  /** External clients' backends (one-scope frontends: everyone's), in slot order. */
  backends: BackendEntry[];
  /** In-cluster clients' backends, for a two-scope frontend. */
  internalBackends?: BackendEntry[];
}

export interface BpfLbServiceEntry {
  key: { address: string; port: number; protocol: string; slot: number; scope: 'external' | 'internal' };
  value: { backendId: number; count: number; revNatIndex: number; flags: number; flags2: number };
}

export interface BpfLbResponse {
  services: BpfLbServiceEntry[];
  backends: Array<{ id: number; address: string; port: number; protocol: string; state: string }>;
  reverseNat: Array<{ index: number; address: string; port: number }>;
}

export interface ApiError {
  error: string;
  code: string;
}
