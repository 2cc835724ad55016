import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { WeftError } from '../shared/errors.js';
import { devclusterRoot } from './naming.js';
import { isRunning, type ProcessRecord, recordProcess, sleep } from './process-record.js';

/**
 * One `up` at a time chooses addresses and claims names on this host, so two clusters created
 * at once never pick the same node network. The lock file holds its owner's PID and start
 * time; a lock left by a process that died is taken over.
 */
export async function withHostLock<T>(what: string, fn: () => Promise<T>, waitMs = 120_000): Promise<T> {
  const root = devclusterRoot();
  mkdirSync(root, { recursive: true });
  const path = join(root, '.lock');
  const me = recordProcess(process.pid, what);
  if (!me) throw new WeftError('WEFT_ERR_STATE', 'cannot read our own /proc entry');
  const deadline = Date.now() + waitMs;
  for (;;) {
    if (tryCreate(path, me)) break;
    const holder = readHolder(path);
    if ((holder && !isRunning(holder)) || (!holder && ageMs(path) > 5_000)) {
      rmSync(path, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new WeftError(
        'WEFT_ERR_LOCKED',
        `another devcluster operation holds ${path}${holder ? ` (${holder.role}, pid ${holder.pid})` : ''}; try again when it has finished`,
      );
    }
    await sleep(100);
  }
  try {
    return await fn();
  } finally {
    const holder = readHolder(path);
    if (holder?.pid === me.pid && holder.startTime === me.startTime) rmSync(path, { force: true });
  }
}

function tryCreate(path: string, me: ProcessRecord): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    writeSync(fd, JSON.stringify(me));
  } finally {
    closeSync(fd);
  }
  return true;
}

function readHolder(path: string): ProcessRecord | undefined {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as Partial<ProcessRecord>;
    if (typeof v.pid === 'number' && typeof v.startTime === 'string') {
      return { pid: v.pid, startTime: v.startTime, role: String(v.role ?? 'unknown') };
    }
    // Written but not yet filled (we raced its creator): treat as held.
    return undefined;
  } catch {
    return undefined;
  }
}

function ageMs(path: string): number {
  try {
    return Date.now() - statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}
