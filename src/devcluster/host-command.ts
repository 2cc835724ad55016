import { execFile, type ExecFileException } from 'node:child_process';
import { WeftError } from '../shared/errors.js';

/**
 * Runs the host tools the devcluster is built with (ip, nsenter, iptables). A failure becomes
 * a WeftError naming the command line and carrying the tool's own message, e.g.
 * `ip link add ...: RTNETLINK answers: File exists`.
 */
export interface HostCommandOptions {
  input?: string;
  /** Exit codes that are not errors (the command's stdout is returned as usual). */
  okCodes?: number[];
  timeoutMs?: number;
}

export class HostCommandError extends WeftError {
  readonly exitCode: number | undefined;
  readonly stderr: string;

  constructor(commandLine: string, exitCode: number | undefined, stderr: string, cause?: unknown) {
    super(
      'WEFT_ERR_HOST_COMMAND',
      `${commandLine}: ${stderr.trim() || `exit code ${exitCode ?? 'unknown'}`}`,
      {
        cause,
      },
    );
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

export function runHost(file: string, args: string[], opts: HostCommandOptions = {}): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = execFile(
      file,
      args,
      { encoding: 'utf8', timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024 },
      (err: ExecFileException | null, stdout: string, stderr: string) => {
        if (!err) return resolvePromise(stdout);
        const code = typeof err.code === 'number' ? err.code : undefined;
        if (code !== undefined && opts.okCodes?.includes(code)) return resolvePromise(stdout);
        const shown = [file, ...args].join(' ');
        reject(
          new HostCommandError(
            shown.length > 300 ? `${shown.slice(0, 300)}...` : shown,
            code,
            stderr || err.message,
            err,
          ),
        );
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** `ip` with `-batch -`: many changes, one process, in `netns` (or the host when undefined). */
export async function ipBatch(netns: string | undefined, lines: string[]): Promise<void> {
  if (lines.length === 0) return;
  const args = netns === undefined ? ['-batch', '-'] : ['-n', netns, '-batch', '-'];
  await runHost('ip', args, { input: `${lines.join('\n')}\n` });
}

export function ip(args: string[], netns?: string): Promise<string> {
  return runHost('ip', netns === undefined ? args : ['-n', netns, ...args]);
}

/** Sets sysctls inside a network namespace (net.* sysctls are per namespace). */
export async function sysctlInNetns(netns: string, settings: Record<string, string | number>): Promise<void> {
  const assignments = Object.entries(settings).map(([k, v]) => `${k}=${v}`);
  await runHost('nsenter', [`--net=/run/netns/${netns}`, '--', 'sysctl', '-q', '-w', ...assignments]);
}

/** True when the error says the thing is already gone, which cleanup treats as success. */
export function isAlreadyGone(err: unknown): boolean {
  if (!(err instanceof HostCommandError)) return false;
  return /Cannot find device|No such file or directory|does not exist|No such process|Cannot open network namespace|not found/i.test(
    err.stderr,
  );
}
