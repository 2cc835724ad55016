import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WeftError } from '../shared/errors.js';
import type { AddressPlan } from './address-plan.js';
import type { ContainerState, TerminatedState } from './kubelet/pod-status.js';
import { clusterStateDir, devclusterRoot } from './naming.js';
import type { ProcessRecord } from './process-record.js';

/**
 * What a cluster is made of, on disk under /var/lib/weft/devcluster/<name>/. `up` writes the
 * whole plan before it creates anything, so `down` can remove a half-made cluster; the kubelet
 * writes a pod's record before it creates the pod's sandbox and removes it after teardown.
 *
 *   cluster.json          the topology (ClusterRecord), written by `up`
 *   daemon.json           the running daemon: API endpoint, helper processes (DaemonRecord)
 *   pods/<uid>.json       one per pod sandbox (PodSandboxRecord)
 *   kubeconfig            for the host (127.0.0.1), kubeconfig-internal for nodes and pods
 *   logs/                 daemon.log, containers' logs
 *   apiserver/            the API server's data
 */

export interface NodeRecord {
  name: string;
  index: number;
  netns: string;
  /** Host-side end of the node's veth, enslaved to the bridge; eth0 inside the node. */
  uplink: string;
  ip: string;
  podCIDR: string;
  routerIP: string;
  cgroup: string;
  pinDir: string;
}

export interface ClusterRecord {
  version: 1;
  name: string;
  createdAt: string;
  /** 'creating' until every node is Ready; 'running' after. */
  phase: 'creating' | 'running';
  nodeCount: number;
  plan: AddressPlan;
  bridge: string;
  cgroup2Root: string;
  clusterCgroup: string;
  daemonCgroup: string;
  nodes: NodeRecord[];
  /** Whether each node runs a weft agent (`up --no-agent` leaves them out: then no Service works). */
  agents?: boolean;
  daemon?: ProcessRecord;
}

export interface DaemonRecord {
  pid: number;
  startTime: string;
  apiServer: { hostURL: string; internalURL: string; port: number };
  kubeconfig: string;
  internalKubeconfig: string;
  /** Processes the daemon started besides containers: probers, node daemons. */
  helpers: ProcessRecord[];
}

export interface PodSandboxRecord {
  uid: string;
  namespace: string;
  name: string;
  node: string;
  hostNetwork: boolean;
  /** Absent for hostNetwork pods. */
  netns?: string;
  veth?: string;
  ip?: string;
  cgroup: string;
  containers: string[];
  processes: ProcessRecord[];
  /**
   * The kubelet's view of each container when it last started or lost one, read back by a
   * restarted kubelet to take the pod over with the same status (as the real kubelet reads
   * restart counts back from its runtime's container labels). Absent in older records.
   */
  containerStates?: RecordedContainer[];
}

export interface RecordedContainer {
  name: string;
  restartCount: number;
  /** Runs started so far (restartCount + 1 once it ran; 0 before). */
  runs: number;
  containerID?: string;
  state: ContainerState;
  lastState?: TerminatedState;
}

export const recordPaths = (name: string) => {
  const dir = clusterStateDir(name);
  return {
    dir,
    cluster: join(dir, 'cluster.json'),
    daemon: join(dir, 'daemon.json'),
    pods: join(dir, 'pods'),
    kubeconfig: join(dir, 'kubeconfig'),
    internalKubeconfig: join(dir, 'kubeconfig-internal'),
    logs: join(dir, 'logs'),
    daemonLog: join(dir, 'logs', 'daemon.log'),
    apiserverData: join(dir, 'apiserver'),
  };
};

/** Writes JSON so that a reader (or a crash) never sees half a file. */
export function writeJsonAtomic(path: string, value: unknown): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(tmp, path);
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new WeftError('WEFT_ERR_STATE', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

export function readClusterRecord(name: string): ClusterRecord | undefined {
  const path = recordPaths(name).cluster;
  const raw = readJson(path);
  if (raw === undefined) return undefined;
  if (!isClusterRecord(raw)) {
    throw new WeftError(
      'WEFT_ERR_STATE',
      `${path} is not a devcluster record (corrupt or from another version)`,
    );
  }
  return raw;
}

export function writeClusterRecord(rec: ClusterRecord): void {
  const paths = recordPaths(rec.name);
  mkdirSync(paths.pods, { recursive: true });
  mkdirSync(paths.logs, { recursive: true });
  writeJsonAtomic(paths.cluster, rec);
}

export function readDaemonRecord(name: string): DaemonRecord | undefined {
  const raw = readJson(recordPaths(name).daemon);
  return isDaemonRecord(raw) ? raw : undefined;
}

export function writeDaemonRecord(name: string, rec: DaemonRecord): void {
  writeJsonAtomic(recordPaths(name).daemon, rec);
}

export function podRecordPath(cluster: string, uid: string): string {
  return join(recordPaths(cluster).pods, `${uid}.json`);
}

export function writePodRecord(cluster: string, rec: PodSandboxRecord): void {
  writeJsonAtomic(podRecordPath(cluster, rec.uid), rec);
}

export function removePodRecord(cluster: string, uid: string): void {
  rmSync(podRecordPath(cluster, uid), { force: true });
}

/** Every readable pod record; unreadable ones are reported, not fatal (down must go on). */
export function readPodRecords(cluster: string): { pods: PodSandboxRecord[]; unreadable: string[] } {
  const dir = recordPaths(cluster).pods;
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  } catch {
    return { pods: [], unreadable: [] };
  }
  const pods: PodSandboxRecord[] = [];
  const unreadable: string[] = [];
  for (const f of files) {
    try {
      const raw = readJson(join(dir, f));
      if (isPodSandboxRecord(raw)) pods.push(raw);
      else if (raw !== undefined) unreadable.push(join(dir, f));
    } catch {
      unreadable.push(join(dir, f));
    }
  }
  return { pods, unreadable };
}

/** Names of the clusters that have a record on this host. */
export function listClusterNames(): string[] {
  try {
    return readdirSync(devclusterRoot(), { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isProcessRecord(v: unknown): v is ProcessRecord {
  return (
    isObject(v) && typeof v.pid === 'number' && typeof v.startTime === 'string' && typeof v.role === 'string'
  );
}

function isNodeRecord(v: unknown): v is NodeRecord {
  return (
    isObject(v) &&
    typeof v.name === 'string' &&
    typeof v.index === 'number' &&
    typeof v.netns === 'string' &&
    typeof v.uplink === 'string' &&
    typeof v.ip === 'string' &&
    typeof v.podCIDR === 'string' &&
    typeof v.routerIP === 'string' &&
    typeof v.cgroup === 'string' &&
    typeof v.pinDir === 'string'
  );
}

export function isClusterRecord(v: unknown): v is ClusterRecord {
  return (
    isObject(v) &&
    v.version === 1 &&
    typeof v.name === 'string' &&
    (v.phase === 'creating' || v.phase === 'running') &&
    isObject(v.plan) &&
    typeof v.bridge === 'string' &&
    typeof v.cgroup2Root === 'string' &&
    typeof v.clusterCgroup === 'string' &&
    typeof v.daemonCgroup === 'string' &&
    Array.isArray(v.nodes) &&
    v.nodes.every(isNodeRecord) &&
    (v.agents === undefined || typeof v.agents === 'boolean') &&
    (v.daemon === undefined || isProcessRecord(v.daemon))
  );
}

function isDaemonRecord(v: unknown): v is DaemonRecord {
  return (
    isObject(v) &&
    typeof v.pid === 'number' &&
    typeof v.startTime === 'string' &&
    isObject(v.apiServer) &&
    typeof v.kubeconfig === 'string' &&
    Array.isArray(v.helpers) &&
    v.helpers.every(isProcessRecord)
  );
}

function isPodSandboxRecord(v: unknown): v is PodSandboxRecord {
  return (
    isObject(v) &&
    typeof v.uid === 'string' &&
    typeof v.namespace === 'string' &&
    typeof v.name === 'string' &&
    typeof v.node === 'string' &&
    typeof v.hostNetwork === 'boolean' &&
    typeof v.cgroup === 'string' &&
    Array.isArray(v.processes) &&
    v.processes.every(isProcessRecord)
  );
}
