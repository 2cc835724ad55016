import { readFileSync } from 'node:fs';

/**
 * A process the cluster started, identified by PID and start time so that cleanup never
 * signals a recycled PID that now belongs to somebody else.
 */
export interface ProcessRecord {
  pid: number;
  /** Field 22 of /proc/<pid>/stat: clock ticks after boot; unique together with the PID. */
  startTime: string;
  /** What it is, for logs and `down` output: "daemon", "default/web/server", "prober dev-worker". */
  role: string;
}

/** Start time of a live process, or undefined when the PID does not exist (or is a zombie). */
export function processStartTime(pid: number): string | undefined {
  const stat = readStat(pid);
  return stat && stat.state !== 'Z' && stat.state !== 'X' ? stat.startTime : undefined;
}

function readStat(pid: number): { state: string; startTime: string } | undefined {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Parses /proc/<pid>/stat; the command name may hold spaces and parentheses. */
export function parseStat(stat: string): { state: string; startTime: string } | undefined {
  const close = stat.lastIndexOf(')');
  if (close < 0) return undefined;
  const fields = stat.slice(close + 2).split(' ');
  // fields[0] is field 3 (state); field 22 (starttime) is fields[19].
  const state = fields[0];
  const startTime = fields[19];
  if (state === undefined || startTime === undefined) return undefined;
  return { state, startTime };
}

/** A record of a live process (ourselves, typically). */
export function recordProcess(pid: number, role: string): ProcessRecord | undefined {
  const startTime = processStartTime(pid);
  return startTime === undefined ? undefined : { pid, startTime, role };
}

/**
 * A record of a child we just spawned. Its PID stays ours until we reap it, so a child that
 * has already exited (a zombie: a container that failed at once) still gets a record, and
 * its exit is reported as the container's, not as a failure to start.
 */
export function recordChild(pid: number, role: string): ProcessRecord | undefined {
  const stat = readStat(pid);
  return stat === undefined ? undefined : { pid, startTime: stat.startTime, role };
}

/** True while the recorded process is still the same live process. */
export function isRunning(rec: ProcessRecord): boolean {
  return processStartTime(rec.pid) === rec.startTime;
}

/** Signals the recorded process if, and only if, it is still that process. */
export function signalRecorded(rec: ProcessRecord, signal: NodeJS.Signals): boolean {
  if (!isRunning(rec)) return false;
  try {
    process.kill(rec.pid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * SIGTERM, up to `graceMs` for the processes to exit, then SIGKILL. Resolves once none of
 * them runs any more (or after a bounded wait for the kernel to reap them).
 */
export async function terminateRecorded(recs: ProcessRecord[], graceMs: number): Promise<void> {
  const live = recs.filter((r) => signalRecorded(r, 'SIGTERM'));
  const deadline = Date.now() + graceMs;
  while (live.some(isRunning) && Date.now() < deadline) await sleep(50);
  for (const r of live) {
    if (!isRunning(r)) continue;
    // Containers are started as session leaders: their process group holds the children
    // they forked (which, for hostNetwork pods, no pod cgroup gathers). While the leader is
    // alive, no other group can carry its PID as id, so this reaches only its own.
    try {
      process.kill(-r.pid, 'SIGKILL');
    } catch {
      // not a group leader: the process alone
    }
    signalRecorded(r, 'SIGKILL');
  }
  const reapDeadline = Date.now() + 5_000;
  while (live.some(isRunning) && Date.now() < reapDeadline) await sleep(20);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
