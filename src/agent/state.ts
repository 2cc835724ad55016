/**
 * What the agent keeps in its state directory (/var/run/weft/<node>): its API socket, and the
 * number of times it has started on this node (weft_agent_restarts survives restarts).
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { WeftError } from '../shared/errors.js';

export const AGENT_SOCKET = 'agent.sock';
const STARTS_FILE = 'agent-starts.json';

export function agentSocketPath(stateDir: string): string {
  return join(stateDir, AGENT_SOCKET);
}

/** Counts this start; returns how many starts came before it (0 on the first). */
export function recordStart(
  stateDir: string,
  now = new Date(),
): { restarts: number; previousStart?: string } {
  mkdirSync(stateDir, { recursive: true, mode: 0o755 });
  const path = join(stateDir, STARTS_FILE);
  let starts = 0;
  let previousStart: string | undefined;
  if (existsSync(path)) {
    try {
      const v = JSON.parse(readFileSync(path, 'utf8')) as { starts?: unknown; lastStart?: unknown };
      if (typeof v.starts === 'number' && Number.isInteger(v.starts) && v.starts >= 0) starts = v.starts;
      if (typeof v.lastStart === 'string') previousStart = v.lastStart;
    } catch {
      // A torn write (the agent killed mid-write is the only writer): start counting again.
    }
  }
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ starts: starts + 1, lastStart: now.toISOString() })}\n`);
  renameSync(tmp, path);
  return previousStart ? { restarts: starts, previousStart } : { restarts: starts };
}

/** Whether something answers on the unix socket. */
export function socketAnswers(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/**
 * Claims the agent socket of a state directory: refuses when another agent answers on it,
 * removes it when it is stale (an agent that was killed).
 */
export async function claimAgentSocket(stateDir: string, nodeName: string): Promise<string> {
  const path = agentSocketPath(stateDir);
  if (existsSync(path)) {
    if (await socketAnswers(path)) {
      throw new WeftError(
        'WEFT_ERR_AGENT_RUNNING',
        `an agent for node ${nodeName} is already running (it answers on ${path}); stop it first, or give this one another --state-dir`,
      );
    }
    rmSync(path, { force: true });
  }
  return path;
}
