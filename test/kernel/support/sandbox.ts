// A sandbox for kernel tests: a network namespace and cgroups that the test creates, processes
// it starts inside them, and pinned BPF objects under its own bpffs directory; destroy()
// removes all of it, also after a failure. Every name carries the sandbox's tag (weft-kt-...),
// so concurrent test runs and other engineers' tests never collide with it.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { cgroup2Root, checkEnvironment } from '../../../src/datapath/environment.js';
import { projectRoot } from '../../../src/shared/self.js';
import { RequestChannel } from './request-channel.js';
import type { WorkloadRequest } from './workload-protocol.js';

const WORKLOAD = resolve(projectRoot, 'test/kernel/support/workload.ts');

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A failed workload request: `code` is the errno name the system call gave (ECONNREFUSED...). */
export class WorkloadError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

/** A workload process (workload.ts) and its request channel. */
export class Workload extends RequestChannel<WorkloadRequest> {
  constructor(child: ChildProcess, ready: (pid: number) => void, failed: (err: Error) => void) {
    super(child, {
      what: 'workload',
      ready: (result) => ready((result as { pid: number }).pid),
      failed,
      error: (code, message) => new WorkloadError(code, message),
    });
  }
}

export interface SandboxOptions {
  /** Addresses given to the namespace's loopback (backends listen on them). */
  addresses: string[];
}

export class Sandbox {
  readonly tag: string;
  readonly netns: string;
  /** The test's cgroup, under the cgroup2 root found in /proc/mounts. */
  readonly cgroup: string;
  /** bpffs directory for this sandbox's pinned maps and links. */
  readonly pinRoot: string;
  private readonly cgroups: string[] = [];
  private readonly workloads: Workload[] = [];

  private constructor(tag: string) {
    this.tag = tag;
    this.netns = tag;
    this.cgroup = join(cgroup2Root(), tag);
    this.pinRoot = `/sys/fs/bpf/${tag}`;
  }

  /**
   * Creates the namespace (loopback up, with `addresses`), the cgroup and the pin directory.
   * Whatever was made before a failure is removed before the error propagates.
   */
  static create(tag: string, opts: SandboxOptions): Sandbox {
    if (!tag.startsWith('weft-kt-')) throw new Error(`sandbox tag ${tag} must start with weft-kt-`);
    checkEnvironment();
    const box = new Sandbox(tag);
    try {
      run('ip', ['netns', 'add', box.netns]);
      run('ip', ['-n', box.netns, 'link', 'set', 'lo', 'up']);
      for (const a of opts.addresses) {
        const v6 = a.includes(':');
        run('ip', [
          '-n',
          box.netns,
          'addr',
          'add',
          `${a}/${v6 ? 128 : 32}`,
          'dev',
          'lo',
          ...(v6 ? ['nodad'] : []),
        ]);
      }
      box.addCgroup(tag);
      mkdirSync(box.pinRoot, { recursive: true });
    } catch (err) {
      box.destroySync();
      throw err;
    }
    return box;
  }

  /** Another cgroup of this sandbox (name must carry the tag); removed by destroy(). */
  addCgroup(name: string): string {
    if (!name.startsWith(this.tag)) throw new Error(`cgroup ${name} must start with ${this.tag}`);
    const dir = join(cgroup2Root(), name);
    mkdirSync(dir, { recursive: true });
    this.cgroups.push(dir);
    return dir;
  }

  /**
   * Starts `argv` inside the namespace and, when `cgroup` is given, inside that cgroup: the
   * shell moves itself into the cgroup first, then execs (same PID), so the process makes
   * every socket from inside it.
   */
  spawn(argv: string[], opts: { cgroup?: string } = {}): ChildProcess {
    const script =
      'cg="$1"; ns="$2"; shift 2; if [ -n "$cg" ]; then echo $$ > "$cg/cgroup.procs" || exit 97; fi; exec ip netns exec "$ns" "$@"';
    return spawn('sh', ['-c', script, 'sh', opts.cgroup ?? '', this.netns, ...argv], {
      stdio: ['pipe', 'pipe', 'pipe'],
      cwd: projectRoot,
    });
  }

  /** A workload process in the namespace (and in `cgroup`, if given), ready for requests. */
  async workload(opts: { cgroup?: string } = {}): Promise<Workload> {
    const child = this.spawn([process.execPath, '--import', 'tsx', WORKLOAD], opts);
    let workload: Workload | undefined;
    await new Promise<void>((ready, failed) => {
      workload = new Workload(child, () => ready(), failed);
    });
    this.workloads.push(workload!);
    return workload!;
  }

  /** Stops every process, removes cgroups, the namespace and pinned objects. Never throws. */
  async destroy(): Promise<void> {
    await Promise.allSettled(this.workloads.map((w) => w.stop()));
    this.destroySync();
  }

  private destroySync(): void {
    const problems: string[] = [];
    for (const w of this.workloads) {
      if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    }
    for (const dir of [...this.cgroups].reverse()) {
      if (!existsSync(dir)) continue;
      try {
        // Anything still inside is ours (we made the cgroup): cgroup.kill ends it.
        if (readFileSync(join(dir, 'cgroup.procs'), 'utf8').trim() !== '')
          writeFileSync(join(dir, 'cgroup.kill'), '1');
        rmdirWhenEmpty(dir);
      } catch (err) {
        problems.push(`cgroup ${dir}: ${(err as Error).message}`);
      }
    }
    try {
      if (
        run('ip', ['netns', 'list'])
          .split('\n')
          .some((l) => l.split(' ')[0] === this.netns)
      ) {
        run('ip', ['netns', 'del', this.netns]);
      }
    } catch (err) {
      problems.push(`netns ${this.netns}: ${(err as Error).message}`);
    }
    try {
      rmSync(this.pinRoot, { recursive: true, force: true });
    } catch (err) {
      problems.push(`pins ${this.pinRoot}: ${(err as Error).message}`);
    }
    if (problems.length > 0) process.stderr.write(`sandbox ${this.tag} cleanup: ${problems.join('; ')}\n`);
  }
}

/** rmdir of a cgroup fails with EBUSY until its killed processes are gone: retry briefly. */
function rmdirWhenEmpty(dir: string): void {
  for (let attempt = 0; ; attempt++) {
    try {
      rmdirSync(dir);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EBUSY' || attempt >= 50) throw err;
      execFileSync('sleep', ['0.1']);
    }
  }
}
