import { existsSync, readdirSync, rmdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { DEFAULT_RUN_DIR } from '../agent/config.js';
import { cgroup2Mount, killCgroupTree, removeCgroupTree } from './cgroup2.js';
import {
  type ClusterRecord,
  readClusterRecord,
  readDaemonRecord,
  readPodRecords,
  recordPaths,
} from './cluster-record.js';
import {
  bridgeName,
  clusterCgroupDir,
  clusterStateDir,
  isHostLinkOf,
  isNodeNetnsOf,
  isPodNetnsOf,
  nodePinDir,
} from './naming.js';
import { agentStateDir } from './node-daemons.js';
import { type ProcessRecord, terminateRecorded } from './process-record.js';
import { deleteHostLinks, deleteNetns, listHostLinks, listNetns } from './topology.js';

/**
 * `weft devcluster down`: removes everything a cluster made, from its record and from the
 * naming scheme, so that a crashed `up`, a killed daemon or a lost record still leave nothing
 * behind. Every step tolerates things that are already gone; the record is removed last, and
 * only when every step succeeded, so a failed `down` can simply be run again.
 */

export interface TeardownReport {
  /** False when neither a record nor anything named like the cluster was found. */
  existed: boolean;
  removed: string[];
  /** What could not be read; cleanup went on by the naming scheme. */
  warnings: string[];
  /** What could not be removed; the record is kept so that `down` can be run again. */
  errors: string[];
}

export interface TeardownOptions {
  /** How long processes get between SIGTERM and SIGKILL. */
  graceMs?: number;
  bpffs?: string;
  onStep?: (step: string) => void;
}

export async function teardownCluster(name: string, opts: TeardownOptions = {}): Promise<TeardownReport> {
  const graceMs = opts.graceMs ?? 2_000;
  const step = opts.onStep ?? (() => {});
  const errors: string[] = [];
  const warnings: string[] = [];
  const removed: string[] = [];

  const record: ClusterRecord | undefined = safe(() => readClusterRecord(name), warnings);
  const daemon = safe(() => readDaemonRecord(name), warnings);
  const { pods, unreadable } = readPodRecords(name);
  for (const u of unreadable) warnings.push(`unreadable pod record ${u}; its pod is found by name instead`);

  const cg2 = record?.cgroup2Root ?? safe(cgroup2Mount, errors);
  const clusterCgroup = record?.clusterCgroup ?? (cg2 ? clusterCgroupDir(cg2, name) : undefined);
  const netnsNow = listNetns();
  const nodeNetns = new Set<string>([...(record?.nodes.map((n) => n.netns) ?? [])]);
  const podNetns = new Set<string>(pods.map((p) => p.netns).filter((n): n is string => n !== undefined));
  for (const ns of netnsNow) {
    if (isNodeNetnsOf(name, ns)) nodeNetns.add(ns);
    if (isPodNetnsOf(name, ns)) podNetns.add(ns);
  }
  const hostLinks = await listHostLinks().catch((err: unknown) => {
    errors.push(`cannot list links: ${(err as Error).message}`);
    return new Set<string>();
  });
  const links = new Set<string>([...hostLinks].filter((l) => isHostLinkOf(name, l)));
  if (record) {
    if (hostLinks.has(record.bridge)) links.add(record.bridge);
    for (const n of record.nodes) if (hostLinks.has(n.uplink)) links.add(n.uplink);
  }
  const bpffs = opts.bpffs ?? '/sys/fs/bpf';
  const pinDirs = new Set<string>(record?.nodes.map((n) => n.pinDir) ?? []);
  for (const d of listDir(join(bpffs, 'weft'))) if (isNodeNetnsOf(name, d)) pinDirs.add(nodePinDir(d, bpffs));
  const stateDir = clusterStateDir(name);
  // Each node's agent keeps its API socket in /var/run/weft/<node>.
  const agentDirs = new Set<string>((record?.nodes ?? []).map((n) => agentStateDir(n.name)));
  for (const d of listDir(DEFAULT_RUN_DIR)) if (isNodeNetnsOf(name, d)) agentDirs.add(agentStateDir(d));

  const existed =
    record !== undefined ||
    existsSync(stateDir) ||
    nodeNetns.size > 0 ||
    podNetns.size > 0 ||
    links.size > 0 ||
    (clusterCgroup !== undefined && existsSync(clusterCgroup)) ||
    [...pinDirs].some((d) => existsSync(d)) ||
    [...agentDirs].some((d) => existsSync(d));
  if (!existed) return { existed, removed, warnings, errors };

  // Processes first: the daemon (so its kubelets stop restarting containers), then every
  // recorded process, then anything still inside the cluster's cgroups (children of containers).
  step('Stopping processes');
  const recorded: ProcessRecord[] = [];
  if (record?.daemon) recorded.push(record.daemon);
  if (daemon) recorded.push({ pid: daemon.pid, startTime: daemon.startTime, role: 'daemon' });
  await terminateRecorded(recorded, 10_000);
  const others = [...(daemon?.helpers ?? []), ...pods.flatMap((p) => p.processes)];
  await terminateRecorded(others, graceMs);
  if (clusterCgroup) {
    try {
      await killCgroupTree(clusterCgroup, graceMs);
    } catch (err) {
      errors.push(`processes in ${clusterCgroup}: ${(err as Error).message}`);
    }
  }
  if (recorded.length + others.length > 0)
    removed.push(`${recorded.length + others.length} recorded processes`);

  step('Deleting pods');
  errors.push(...(await deleteNetns([...podNetns])));
  if (podNetns.size) removed.push(`${podNetns.size} pod network namespaces`);

  step('Deleting nodes');
  // A node's namespace takes its pods' host-side veths and its own eth0 with it.
  errors.push(...(await deleteNetns([...nodeNetns])));
  if (nodeNetns.size) removed.push(`network namespaces ${[...nodeNetns].join(', ')}`);
  const linkList = [...links].sort((a, b) => (a === bridgeName(name) ? 1 : b === bridgeName(name) ? -1 : 0));
  errors.push(...(await deleteHostLinks(linkList)));
  if (links.size) removed.push(`links ${linkList.join(', ')}`);

  if (clusterCgroup && existsSync(clusterCgroup)) {
    try {
      await removeCgroupTree(clusterCgroup);
      removed.push(`cgroup ${clusterCgroup}`);
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  // The shared parent goes with the last cluster (another `up` recreates it as needed).
  if (clusterCgroup) removeIfEmpty(dirname(clusterCgroup));
  // BPF pins, then each node agent's state directory (its API socket).
  const dirs = [
    ...[...pinDirs].map((dir) => ({ dir, what: 'BPF pins' })),
    ...[...agentDirs].map((dir) => ({ dir, what: 'agent state' })),
  ];
  for (const { dir, what } of dirs) {
    if (!existsSync(dir)) continue;
    try {
      rmSync(dir, { recursive: true, force: true });
      removed.push(`${what} ${dir}`);
    } catch (err) {
      errors.push(`${what} ${dir}: ${(err as Error).message}`);
    }
  }

  if (errors.length === 0) {
    rmSync(recordPaths(name).dir, { recursive: true, force: true });
  }
  return { existed, removed, warnings, errors };
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function safe<T>(fn: () => T, errors: string[]): T | undefined {
  try {
    return fn();
  } catch (err) {
    errors.push((err as Error).message);
    return undefined;
  }
}

function removeIfEmpty(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // not empty (another cluster), busy or gone: all fine
  }
}
