import { spawn } from 'node:child_process';
import { accessSync, closeSync, constants, mkdirSync, openSync } from 'node:fs';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import { constants as osConstants } from 'node:os';
import { isRunning, type ProcessRecord, recordChild, signalRecorded } from '../process-record.js';
import { netnsPath, sandboxArgv } from '../sandbox-exec.js';
import { ContainerConfigError } from './container-command.js';
import { UNKNOWN_EXIT_CODE } from './sandbox-adoption.js';

/**
 * One run of a container: a host process started inside the pod's network namespace and
 * cgroup, detached from the daemon (its own session, output to a log file), so the daemon
 * can stop without taking pods down. Its exit code arrives through `onExit` while the daemon
 * lives.
 */
export interface ContainerProcess {
  record: ProcessRecord;
  startedAt: Date;
  signal(sig: NodeJS.Signals): void;
  /** Stop reporting its exit (the daemon is going; the process is left running). */
  release(): void;
}

export interface ContainerExit {
  exitCode: number;
  signal?: number;
  finishedAt: Date;
  /** Not our child: it ended, but its exit code cannot be known. */
  unknown?: boolean;
}

/** How often a taken-over container is checked for having exited. */
export const ADOPTED_POLL_MS = 500;

/**
 * A container process the previous daemon started and that still runs. It is not our child,
 * so its exit is noticed by polling its PID and start time, and its exit code is unknown.
 */
export function adoptContainerProcess(
  record: ProcessRecord,
  startedAt: Date,
  onExit: (exit: ContainerExit) => void,
): ContainerProcess {
  const timer = setInterval(() => {
    if (isRunning(record)) return;
    clearInterval(timer);
    onExit({ exitCode: UNKNOWN_EXIT_CODE, finishedAt: new Date(), unknown: true });
  }, ADOPTED_POLL_MS);
  timer.unref();
  return {
    record,
    startedAt,
    signal: (sig) => {
      signalRecorded(record, sig);
    },
    release: () => clearInterval(timer),
  };
}

export function startContainerProcess(opts: {
  argv: string[];
  env: Record<string, string>;
  workingDir?: string;
  cgroup: string;
  netns: string;
  logFile: string;
  role: string;
  onExit: (exit: ContainerExit) => void;
}): ContainerProcess {
  const program = opts.argv[0];
  if (program === undefined)
    throw new ContainerConfigError('RunContainerError', 'the container has no command');
  resolveExecutable(program, opts.env.PATH ?? '');
  mkdirSync(dirname(opts.logFile), { recursive: true });
  const logFd = openSync(opts.logFile, 'a');
  try {
    const argv = sandboxArgv(opts.cgroup, netnsPath(opts.netns), opts.argv);
    const child = spawn(argv[0] ?? 'sh', argv.slice(1), {
      detached: true,
      stdio: ['ignore', logFd, logFd],
      env: opts.env,
      cwd: opts.workingDir || '/',
    });
    const startedAt = new Date();
    const pid = child.pid;
    const record = pid === undefined ? undefined : recordChild(pid, opts.role);
    let released = false;
    child.on('exit', (code, signal) => {
      if (released) return;
      const signo = signal ? (osConstants.signals[signal] ?? 0) : undefined;
      opts.onExit({ exitCode: code ?? 128 + (signo ?? 0), signal: signo, finishedAt: new Date() });
    });
    child.on('error', () => {
      // spawn failures (sh missing) also emit 'exit' or leave pid undefined; reported below.
    });
    child.unref();
    if (!record || pid === undefined) {
      throw new ContainerConfigError('RunContainerError', `could not start ${program}`);
    }
    return {
      record,
      startedAt,
      signal: (sig) => {
        try {
          process.kill(pid, sig);
        } catch {
          // already exited
        }
      },
      release: () => {
        released = true;
      },
    };
  } finally {
    closeSync(logFd);
  }
}

/** Like exec.LookPath: the runtime's "executable file not found in $PATH" before starting. */
export function resolveExecutable(program: string, path: string): string {
  const candidates = program.includes('/')
    ? [program]
    : path
        .split(delimiter)
        .filter(Boolean)
        .map((d) => join(d, program));
  for (const c of candidates) {
    if (!isAbsolute(c) && !program.includes('/')) continue;
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // try the next one
    }
  }
  throw new ContainerConfigError(
    'RunContainerError',
    program.includes('/')
      ? `exec: "${program}": stat ${program}: no such file or directory`
      : `exec: "${program}": executable file not found in $PATH`,
  );
}
