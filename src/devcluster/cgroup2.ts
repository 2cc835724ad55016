import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WeftError } from '../shared/errors.js';
import { sleep } from './process-record.js';

/**
 * The devcluster's cgroup2 directories: one per node, one child per pod. No controllers are
 * enabled, so a directory may hold processes and children at once (hostNetwork pods live in
 * the node's own directory), and membership is what counts: a BPF program attached to a
 * node's directory sees exactly the sockets of that node's pods.
 */

/** The cgroup2 mount point from the text of /proc/mounts (octal escapes decoded). */
export function cgroup2MountFrom(procMounts: string): string | undefined {
  for (const line of procMounts.split('\n')) {
    const [, target, fstype] = line.split(' ');
    if (fstype === 'cgroup2' && target) {
      return target.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
    }
  }
  return undefined;
}

export function cgroup2Mount(): string {
  const found = cgroup2MountFrom(readFileSync('/proc/mounts', 'utf8'));
  if (!found) {
    throw new WeftError(
      'WEFT_ERR_NO_CGROUP2',
      "no cgroup2 file system is mounted; mount one (mkdir -p /run/weft/cgroup2 && mount -t cgroup2 none /run/weft/cgroup2) or run 'make setup'",
    );
  }
  return found;
}

export function ensureCgroup(dir: string): void {
  for (let attempt = 0; ; attempt++) {
    try {
      mkdirSync(dir, { recursive: true });
      return;
    } catch (err) {
      // A `down` of the last other cluster may remove the shared parent between two mkdirs.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 3) throw err;
    }
  }
}

/** PIDs in `dir` and all its descendants. */
export function cgroupTreeProcs(dir: string): number[] {
  if (!existsSync(dir)) return [];
  const pids: number[] = [];
  const walk = (d: string): void => {
    let text = '';
    try {
      text = readFileSync(join(d, 'cgroup.procs'), 'utf8');
    } catch {
      return;
    }
    for (const line of text.split('\n')) if (line) pids.push(Number(line));
    let entries: string[] = [];
    try {
      entries = readdirSync(d, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name);
    } catch {
      return;
    }
    for (const e of entries) walk(join(d, e));
  };
  walk(dir);
  return pids;
}

/**
 * Ends every process in the tree, each by its PID: they are all ours, since only the
 * devcluster puts processes into these directories (and their children inherit them).
 */
export async function killCgroupTree(dir: string, graceMs: number): Promise<void> {
  const signalAll = (signal: NodeJS.Signals): number => {
    const pids = cgroupTreeProcs(dir);
    for (const pid of pids) {
      try {
        process.kill(pid, signal);
      } catch {
        // already gone
      }
    }
    return pids.length;
  };
  if (signalAll('SIGTERM') === 0) return;
  const deadline = Date.now() + graceMs;
  while (cgroupTreeProcs(dir).length > 0 && Date.now() < deadline) await sleep(50);
  const killDeadline = Date.now() + 10_000;
  while (signalAll('SIGKILL') > 0 && Date.now() < killDeadline) await sleep(50);
}

/** Removes `dir` and its descendants, deepest first (cgroupfs allows only rmdir of empty cgroups). */
export async function removeCgroupTree(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  for (let attempt = 0; ; attempt++) {
    try {
      removeDepthFirst(dir);
      return;
    } catch (err) {
      // A process that just exited may keep its cgroup busy for a moment.
      if ((err as NodeJS.ErrnoException).code !== 'EBUSY' || attempt >= 100) {
        throw new WeftError('WEFT_ERR_CGROUP', `cannot remove cgroup ${dir}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      await sleep(50);
    }
  }
}

function removeDepthFirst(dir: string): void {
  let children: string[] = [];
  try {
    children = readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const c of children) removeDepthFirst(join(dir, c));
  try {
    rmdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Moves a process into `dir` (used for the current process when there is no exec wrapper). */
export function moveToCgroup(dir: string, pid: number): void {
  writeFileSync(join(dir, 'cgroup.procs'), String(pid));
}

/** The cgroup2 path of a process relative to the mount ("/weft-devcluster/dev/dev-worker/pod..."). */
export function cgroupOf(pid: number): string | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
    const line = text.split('\n').find((l) => l.startsWith('0::'));
    return line?.slice(3);
  } catch {
    return undefined;
  }
}
