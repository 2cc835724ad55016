import { spawn } from 'node:child_process';
import { cpSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { cgroup2Mount } from '../../src/devcluster/cgroup2.js';
import {
  bridgeName,
  clusterCgroupDir,
  clusterStateDir,
  isHostLinkOf,
  isNodeNetnsOf,
  isPodNetnsOf,
} from '../../src/devcluster/naming.js';
import { isRunning, type ProcessRecord, processStartTime } from '../../src/devcluster/process-record.js';
import { weftCommand } from '../../src/shared/self.js';
import { afterAll, afterEach, expect } from 'vitest';

/**
 * What the devcluster e2e tests share: running the built CLI, waiting for a condition, and
 * listing everything a cluster may have left on the host (which must be nothing after down).
 */

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `weft <args>` (the built CLI, as a user would) and collects its output. */
export function weft(
  args: string[],
  opts: { input?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  const [node, main] = weftCommand();
  return run(node, [main, ...args], opts.input, opts.env);
}

/** Runs a command and fails with its output when it does not exit 0. */
export async function weftOk(args: string[], opts: { input?: string } = {}): Promise<string> {
  const r = await weft(args, opts);
  if (r.code !== 0)
    throw new Error(`weft ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** Polls until `fn` returns a value (not undefined/false); the error names what never happened. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

export function kubeconfigPath(cluster: string): string {
  return join(clusterStateDir(cluster), 'kubeconfig');
}

export function coreApi(cluster: string): CoreV1Api {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath(cluster));
  return kc.makeApiClient(CoreV1Api);
}

/** kubectl against the cluster, as a user would run it. */
export function kubectl(cluster: string, args: string[], input?: string): Promise<RunResult> {
  return run('kubectl', args, input, { KUBECONFIG: kubeconfigPath(cluster) });
}

/** A test-unique cluster name (tests of several engineers share this host). */
export function uniqueClusterName(purpose: string): string {
  return `e2e-${purpose}-${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;
}

/** Every process recorded for the cluster right now (daemon, helpers, containers). */
export function recordedProcesses(cluster: string): ProcessRecord[] {
  const dir = clusterStateDir(cluster);
  const procs: ProcessRecord[] = [];
  const read = (path: string) => {
    try {
      return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  };
  const c = read(join(dir, 'cluster.json'));
  if (c?.daemon) procs.push(c.daemon as ProcessRecord);
  const d = read(join(dir, 'daemon.json'));
  if (d) procs.push(...((d.helpers as ProcessRecord[]) ?? []));
  for (const f of listDir(join(dir, 'pods'))) {
    const p = read(join(dir, 'pods', f));
    if (p) procs.push(...((p.processes as ProcessRecord[]) ?? []));
  }
  return procs;
}

/**
 * Everything on the host that belongs to `cluster`: network namespaces, links, routes to its
 * node network, cgroups, BPF pins, record, processes in its cgroups, and the still-running
 * processes from `processes` (recorded before `down`). Empty means nothing was left behind.
 */
export async function leftovers(
  cluster: string,
  processes: ProcessRecord[] = [],
  nodeCIDR?: string,
): Promise<string[]> {
  const found: string[] = [];
  for (const ns of listDir('/run/netns')) {
    if (isNodeNetnsOf(cluster, ns) || isPodNetnsOf(cluster, ns)) found.push(`netns ${ns}`);
  }
  const links = JSON.parse((await run('ip', ['-j', 'link', 'show'])).stdout) as Array<{ ifname: string }>;
  for (const l of links) if (isHostLinkOf(cluster, l.ifname)) found.push(`link ${l.ifname}`);
  const routes = (await run('ip', ['-4', 'route', 'show', 'table', 'all'])).stdout;
  for (const line of routes.split('\n')) {
    if (line.includes(bridgeName(cluster)) || (nodeCIDR && line.startsWith(`${nodeCIDR} `)))
      found.push(`route ${line}`);
  }
  const cg = clusterCgroupDir(cgroup2Mount(), cluster);
  if (existsSync(cg)) found.push(`cgroup ${cg}`);
  for (const d of listDir('/sys/fs/bpf/weft'))
    if (isNodeNetnsOf(cluster, d)) found.push(`pin dir /sys/fs/bpf/weft/${d}`);
  if (existsSync(clusterStateDir(cluster))) found.push(`state ${clusterStateDir(cluster)}`);
  for (const d of listDir('/var/run/weft'))
    if (isNodeNetnsOf(cluster, d)) found.push(`agent state /var/run/weft/${d}`);
  for (const p of processes) if (isRunning(p)) found.push(`process ${p.pid} (${p.role})`);
  for (const pid of listDir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const cgroup = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
      if (!cgroup.includes(`::/weft-devcluster/${cluster}/`)) continue;
      // A zombie has ended; only its parent (or init, for orphans) has yet to reap it.
      if (processStartTime(Number(pid)) === undefined) continue;
      found.push(`process ${pid} in cgroup ${cgroup.split('\n').find((l) => l.startsWith('0::'))}`);
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

/**
 * Removes the cluster (afterAll); returns what `down` printed, for failure messages. When a
 * test failed, the cluster's logs (daemon, containers) are copied out first, since `down`
 * removes them: /tmp/weft-e2e-logs/<cluster>/.
 */
export async function downCluster(cluster: string, opts: { keepLogs?: boolean } = {}): Promise<RunResult> {
  if (opts.keepLogs) {
    const to = join('/tmp/weft-e2e-logs', cluster);
    try {
      cpSync(join(clusterStateDir(cluster), 'logs'), to, { recursive: true });
      process.stderr.write(`devcluster logs of ${cluster} kept in ${to}\n`);
    } catch {
      // no logs to keep
    }
  }
  return weft(['devcluster', 'down', '--name', cluster]);
}

/** The agnhost image the e2e pods run (weft's kubelet runs agnhost itself). */
export const AGNHOST = 'registry.k8s.io/e2e-test-images/agnhost:2.53';

/** `weft devcluster exec --name <cluster> <pod> -- <argv>`. */
export function podExec(cluster: string, pod: string, argv: string[]): Promise<RunResult> {
  return weft(['devcluster', 'exec', '--name', cluster, pod, '--', ...argv]);
}

/**
 * The end of a devcluster test file: notes whether any test failed (the cluster's logs are then
 * kept), and after all tests runs `before`, brings the cluster down, runs `cleanup` (the file's
 * own scratch), checks that `down` succeeded and left nothing behind (with routes into
 * `nodeCIDR()`, when given), then runs `after` (the file's own checks).
 */
export function removeClusterAfterAll(
  cluster: string,
  opts: {
    nodeCIDR?: () => string | undefined;
    before?: () => unknown;
    cleanup?: () => void;
    after?: () => unknown;
    timeoutMs?: number;
  } = {},
): void {
  const failures = failureTracker();
  afterEach((ctx) => failures.note(ctx));
  afterAll(async () => {
    const procs = recordedProcesses(cluster);
    await opts.before?.();
    const down = await downCluster(cluster, { keepLogs: failures.failed });
    opts.cleanup?.();
    expect(down.code, down.stderr).toBe(0);
    expect(await leftovers(cluster, procs, opts.nodeCIDR?.())).toEqual([]);
    await opts.after?.();
  }, opts.timeoutMs);
}

/** Tracks whether any test of the file failed (for keeping logs): call from afterEach. */
export function failureTracker(): {
  note(ctx: { task: { result?: { state?: string } } }): void;
  readonly failed: boolean;
} {
  let failed = false;
  return {
    note(ctx) {
      if (ctx.task.result?.state === 'fail') failed = true;
    },
    get failed() {
      return failed;
    },
  };
}

/** Runs a command with `input` on its stdin (and `env` over ours) and collects its output. */
export function run(
  file: string,
  args: string[],
  input?: string,
  env?: NodeJS.ProcessEnv,
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
    child.stdin.on('error', () => {}); // the command may exit without reading its input
    child.stdin.end(input ?? '');
  });
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
