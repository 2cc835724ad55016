import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { WeftError } from '../shared/errors.js';
import { weftCommand } from '../shared/self.js';
import { planAddresses, type UsedRange } from './address-plan.js';
import { cgroup2Mount } from './cgroup2.js';
import {
  type ClusterRecord,
  listClusterNames,
  readClusterRecord,
  readDaemonRecord,
  recordPaths,
  writeClusterRecord,
} from './cluster-record.js';
import { withHostLock } from './host-lock.js';
import { AGENT_METRICS_PORT } from './node-daemons.js';
import { parseCidr } from './ipv4.js';
import { validateClusterName } from './naming.js';
import { isRunning, type ProcessRecord, recordChild, sleep } from './process-record.js';
import { teardownCluster } from './teardown.js';
import {
  clusterRecordFor,
  conflictingNames,
  createBridge,
  createClusterCgroups,
  createNode,
  hostUsedRanges,
  listHostLinks,
  listNetns,
} from './topology.js';

/**
 * `weft devcluster up`: plan addresses, record the plan, build the network, start the daemon
 * (API server, controllers, kubelets) and wait until every node is Ready. On failure the
 * half-made cluster is removed again, like `kind create cluster` does (unless --retain).
 */

export interface UpOptions {
  name: string;
  nodes: number;
  podCIDR: string;
  serviceCIDR: string;
  waitMs: number;
  retain: boolean;
  /** Start a weft agent on every node (default true). */
  agents?: boolean;
}

export interface Progress {
  step<T>(title: string, fn: () => Promise<T>): Promise<T>;
  line(text: string): void;
}

export async function createCluster(opts: UpOptions, progress: Progress): Promise<ClusterRecord> {
  validateClusterName(opts.name);
  if (process.getuid?.() !== 0) {
    throw new WeftError(
      'WEFT_ERR_PRIVILEGES',
      'weft devcluster needs root (network namespaces, veths, cgroups); run it with sudo',
    );
  }
  weftCommand(); // fails early, with the fix, when the CLI is not built
  if (existsSync(recordPaths(opts.name).dir)) throw clusterExists(opts.name);
  progress.line(`Creating cluster "${opts.name}" ...`);
  let record: ClusterRecord | undefined;
  /** Set once our record is on disk: from then on a failure is ours to clean up. */
  let recordWritten = false;
  try {
    record = await withHostLock(`weft devcluster up --name ${opts.name}`, async () => {
      // Another `up` of the same name may have won the race to the lock.
      if (existsSync(recordPaths(opts.name).dir)) throw clusterExists(opts.name);
      const rec = await progress.step('Planning addresses', async () => {
        const used = [...(await hostUsedRanges()), ...otherClustersRanges(opts.name)];
        const plan = planAddresses({
          nodeCount: opts.nodes,
          podCIDR: opts.podCIDR,
          serviceCIDR: opts.serviceCIDR,
          used,
        });
        const planned = clusterRecordFor(opts.name, plan, cgroup2Mount(), new Date());
        planned.agents = opts.agents !== false;
        const conflicts = conflictingNames(planned, { netns: listNetns(), links: await listHostLinks() });
        if (conflicts.length > 0) {
          throw new WeftError(
            'WEFT_ERR_NAME_TAKEN',
            `cannot create cluster "${opts.name}": ${conflicts.join(', ')} already exist${conflicts.length === 1 ? 's' : ''} on this host (not made by a devcluster of this name); remove them or choose another --name`,
          );
        }
        // The record exists before anything else does: from here on `down` can clean up.
        writeClusterRecord(planned);
        recordWritten = true;
        return planned;
      });
      // Still under the lock: once the bridge's route exists, the next `up` sees the range taken.
      await createClusterCgroups(rec);
      await createBridge(rec);
      return rec;
    });
    const rec = record;
    await progress.step(`Preparing nodes (${rec.nodes.map((n) => n.name).join(', ')})`, async () => {
      await Promise.all(rec.nodes.map((n) => createNode(rec, n)));
    });
    await runDaemonUntilReady(rec, opts.waitMs, progress);
    rec.phase = 'running';
    writeClusterRecord(rec);
    return rec;
  } catch (err) {
    if (!recordWritten) throw err;
    if (opts.retain) {
      progress.line(
        `The half-made cluster is kept (--retain); remove it with 'weft devcluster down --name ${opts.name}'`,
      );
      throw err;
    }
    const report = await teardownCluster(opts.name);
    if (report.errors.length > 0) {
      progress.line(
        `Cleanup after the failure was incomplete (${report.errors.join('; ')}); run 'weft devcluster down --name ${opts.name}'`,
      );
    }
    throw err;
  }
}

/**
 * `weft devcluster start`: starts the daemon of a cluster whose daemon is not running (stopped
 * with SIGTERM, killed, crashed) and waits, as `up` does, for the nodes and agents. Pods and
 * agents that kept running are the new daemon's to look after; nothing is torn down here.
 */
export async function startClusterDaemon(name: string, waitMs: number, progress: Progress): Promise<void> {
  validateClusterName(name);
  if (process.getuid?.() !== 0) {
    throw new WeftError(
      'WEFT_ERR_PRIVILEGES',
      'weft devcluster needs root (network namespaces, cgroups); run it with sudo',
    );
  }
  const rec = readClusterRecord(name);
  if (!rec) {
    throw new WeftError(
      'WEFT_ERR_NOT_FOUND',
      `no devcluster named "${name}"; create one with 'weft devcluster up --name ${name}'`,
    );
  }
  const previous = readDaemonRecord(name);
  if (previous && isRunning({ pid: previous.pid, startTime: previous.startTime, role: 'daemon' })) {
    throw new WeftError(
      'WEFT_ERR_DAEMON',
      `the daemon of cluster "${name}" is already running (pid ${previous.pid}); nothing to start`,
    );
  }
  progress.line(`Starting cluster "${name}" ...`);
  await runDaemonUntilReady(rec, waitMs, progress);
}

/** Starts the cluster's daemon and waits until it answers, every node is Ready and every agent is ready. */
async function runDaemonUntilReady(rec: ClusterRecord, waitMs: number, progress: Progress): Promise<void> {
  const daemon = await progress.step(
    'Starting control plane (API server, controllers, kubelets)',
    async () => {
      const proc = startDaemon(rec);
      rec.daemon = proc;
      writeClusterRecord(rec);
      return waitForDaemon(rec, proc, waitMs);
    },
  );
  await progress.step(
    `Waiting for ${rec.nodes.length} node${rec.nodes.length === 1 ? '' : 's'} to be Ready`,
    () => waitForNodesReady(rec, daemon.kubeconfig, waitMs),
  );
  if (rec.agents) {
    await progress.step(`Waiting for the weft agent${rec.nodes.length === 1 ? '' : 's'} to be ready`, () =>
      waitForAgentsReady(rec, waitMs),
    );
  }
}

/** Node networks of other clusters recorded on this host, even ones still being created. */
function otherClustersRanges(self: string): UsedRange[] {
  const used: UsedRange[] = [];
  for (const name of listClusterNames()) {
    if (name === self) continue;
    try {
      const rec = readClusterRecord(name);
      if (rec) used.push({ cidr: parseCidr(rec.plan.nodeCIDR), owner: `devcluster "${name}"` });
    } catch {
      // An unreadable record does not block other clusters; its bridge route (if any) still counts.
    }
  }
  return used;
}

/**
 * The daemon runs detached (its own session; stdio to its log file), inside the cluster's
 * daemon cgroup from its first instruction, so `down` finds it even if `up` dies right now.
 */
function startDaemon(rec: ClusterRecord): ProcessRecord {
  const [node, main] = weftCommand();
  const paths = recordPaths(rec.name);
  const logFd = openSync(paths.daemonLog, 'a');
  try {
    const child = spawn(
      'sh',
      [
        '-c',
        'echo $$ > "$1/cgroup.procs" || exit 126; shift; exec "$@"',
        'weft-devcluster-daemon',
        rec.daemonCgroup,
        node,
        main,
        'devcluster',
        'serve',
        '--name',
        rec.name,
      ],
      { detached: true, stdio: ['ignore', logFd, logFd] },
    );
    const pid = child.pid;
    child.unref();
    const proc = pid === undefined ? undefined : recordChild(pid, 'daemon');
    if (!proc) throw new WeftError('WEFT_ERR_DAEMON', `the daemon did not start; see ${paths.daemonLog}`);
    return proc;
  } finally {
    closeSync(logFd);
  }
}

async function waitForDaemon(
  rec: ClusterRecord,
  proc: ProcessRecord,
  waitMs: number,
): Promise<{ kubeconfig: string }> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const d = readDaemonRecord(rec.name);
    if (d && d.pid === proc.pid) return { kubeconfig: d.kubeconfig };
    if (!isRunning(proc)) throw daemonFailed(rec, 'the daemon exited while starting');
    if (Date.now() > deadline) throw daemonFailed(rec, `the daemon did not come up within ${waitMs / 1000}s`);
    await sleep(100);
  }
}

/** Every node's agent answers /readyz with 200: its maps hold every Service and its programs are attached. */
async function waitForAgentsReady(rec: ClusterRecord, waitMs: number): Promise<void> {
  const deadline = Date.now() + waitMs;
  const last = new Map<string, string>();
  for (;;) {
    const pending: string[] = [];
    await Promise.all(
      rec.nodes.map(async (n) => {
        try {
          const res = await fetch(`http://${n.ip}:${AGENT_METRICS_PORT}/readyz`, {
            signal: AbortSignal.timeout(2_000),
          });
          const body = (await res.json().catch(() => ({}))) as { reason?: string };
          if (res.status === 200) return;
          last.set(n.name, body.reason ?? `HTTP ${res.status}`);
        } catch (err) {
          last.set(n.name, `not answering (${(err as Error).message})`);
        }
        pending.push(n.name);
      }),
    );
    if (pending.length === 0) return;
    if (Date.now() > deadline) {
      const logs = recordPaths(rec.name).logs;
      throw new WeftError(
        'WEFT_ERR_TIMEOUT',
        `weft agent not ready after ${waitMs / 1000}s on ${pending
          .map((n) => `${n}: ${last.get(n)}`)
          .join('; ')}; see ${logs}/nodes/<node>/agent.log`,
      );
    }
    await sleep(200);
  }
}

async function waitForNodesReady(rec: ClusterRecord, kubeconfig: string, waitMs: number): Promise<void> {
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(kubeconfig);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const deadline = Date.now() + waitMs;
  let missing: string[] = rec.nodes.map((n) => n.name);
  for (;;) {
    try {
      const list = await core.listNode();
      const ready = new Set(
        list.items
          .filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
          .map((n) => n.metadata?.name),
      );
      missing = rec.nodes.map((n) => n.name).filter((n) => !ready.has(n));
      if (missing.length === 0) return;
    } catch {
      // The API server may still be warming up; the deadline decides.
    }
    if (rec.daemon && !isRunning(rec.daemon)) throw daemonFailed(rec, 'the daemon exited');
    if (Date.now() > deadline) {
      throw daemonFailed(
        rec,
        `node${missing.length === 1 ? '' : 's'} ${missing.join(', ')} not Ready after ${waitMs / 1000}s`,
      );
    }
    await sleep(200);
  }
}

function daemonFailed(rec: ClusterRecord, what: string): WeftError {
  const log = recordPaths(rec.name).daemonLog;
  let tail = '';
  try {
    tail = readFileSync(log, 'utf8').trimEnd().split('\n').slice(-15).join('\n');
  } catch {
    // no log yet
  }
  return new WeftError('WEFT_ERR_DAEMON', `${what}; daemon log ${log}${tail ? `:\n${tail}` : ''}`);
}

function clusterExists(name: string): WeftError {
  return new WeftError(
    'WEFT_ERR_CLUSTER_EXISTS',
    `a devcluster named "${name}" already exists; delete it first with 'weft devcluster down --name ${name}'`,
  );
}
