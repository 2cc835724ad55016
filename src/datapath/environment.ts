import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { WeftError } from '../shared/errors.js';

/**
 * What the kernel side needs before anything loads: root, a recent kernel, bpffs and cgroup2.
 * Each check fails with an error that names what is missing and how to fix it.
 */

export const MIN_KERNEL: readonly [number, number] = [5, 10];

interface Mount {
  source: string;
  target: string;
  fstype: string;
}

function mounts(): Mount[] {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [source = '', target = '', fstype = ''] = line.split(' ');
      // /proc/mounts escapes spaces and tabs in paths as octal.
      return {
        source,
        target: target.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))),
        fstype,
      };
    });
}

/** The cgroup2 mount point, from /proc/mounts (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts). */
export function cgroup2Root(): string {
  const m = mounts().find((x) => x.fstype === 'cgroup2');
  if (!m) {
    throw new WeftError(
      'WEFT_ERR_NO_CGROUP2',
      "no cgroup2 file system is mounted (socket load-balancing attaches to cgroup2); mount one: mkdir -p /run/weft/cgroup2 && mount -t cgroup2 none /run/weft/cgroup2 (or run 'make setup')",
    );
  }
  return m.target;
}

/** True when a bpf file system is mounted exactly at `path`. */
export function bpffsMounted(path = '/sys/fs/bpf'): boolean {
  return mounts().some((m) => m.fstype === 'bpf' && m.target === path);
}

/** Mounts bpffs at `path` when it is not there, so pinned maps and links survive restarts. */
export function ensureBpffs(path = '/sys/fs/bpf'): void {
  if (bpffsMounted(path)) return;
  try {
    if (!existsSync(path)) mkdirSync(path, { recursive: true });
    execFileSync('mount', ['-t', 'bpf', 'bpf', path], { stdio: 'pipe' });
  } catch (err) {
    throw new WeftError(
      'WEFT_ERR_NO_BPFFS',
      `bpffs is not mounted at ${path} and mounting it failed; run as root: mount -t bpf bpf ${path}`,
      { cause: err },
    );
  }
}

/** Throws unless the running kernel is at least `min` (weft needs bpf links, ringbuf, set_retval). */
export function checkKernel(version = release(), min = MIN_KERNEL): void {
  const m = /^(\d+)\.(\d+)/.exec(version);
  const major = Number(m?.[1] ?? 0);
  const minor = Number(m?.[2] ?? 0);
  if (major < min[0] || (major === min[0] && minor < min[1])) {
    throw new WeftError(
      'WEFT_ERR_KERNEL_TOO_OLD',
      `kernel ${version} is too old: weft needs Linux ${min[0]}.${min[1]} or newer (BPF links, ring buffers, sock_addr hooks)`,
    );
  }
}

/** Throws unless we can load BPF programs: effective uid 0 or CAP_BPF+CAP_NET_ADMIN+CAP_SYS_ADMIN. */
export function checkPrivileges(): void {
  const status = readFileSync('/proc/self/status', 'utf8');
  const capEff = BigInt(`0x${/CapEff:\s*([0-9a-f]+)/.exec(status)?.[1] ?? '0'}`);
  const CAP_NET_ADMIN = 12n;
  const CAP_SYS_ADMIN = 21n;
  const CAP_BPF = 39n;
  const has = (cap: bigint) => (capEff >> cap) & 1n;
  if (!has(CAP_NET_ADMIN) || !(has(CAP_BPF) || has(CAP_SYS_ADMIN))) {
    throw new WeftError(
      'WEFT_ERR_PRIVILEGES',
      'weft needs root (or CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN) to load BPF programs; run it with sudo',
    );
  }
}

/** All checks, in the order a user would fix them. Returns the cgroup2 root. */
export function checkEnvironment(opts: { bpffs?: string } = {}): { cgroup2Root: string; bpffs: string } {
  checkPrivileges();
  checkKernel();
  const bpffs = opts.bpffs ?? '/sys/fs/bpf';
  ensureBpffs(bpffs);
  return { cgroup2Root: cgroup2Root(), bpffs };
}
