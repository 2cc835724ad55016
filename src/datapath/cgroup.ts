import { existsSync, rmSync } from 'node:fs';
import { KernelError, WeftError } from '../shared/errors.js';
import { callInt, checkLibbpf, closeFd, DataType, NativeBuffer, openReadOnly } from './native.js';
import type { BpfProgram } from './object.js';

/**
 * A BPF link: the kernel's handle on "this program is attached there". A link pinned in bpffs
 * stays attached after the process that made it exits, which is how traffic keeps flowing
 * across an agent restart; bpf_link_update swaps the program atomically on the next start.
 */
export class BpfLink {
  readonly fd: number;
  private pinnedAt?: string;
  private closed = false;

  constructor(fd: number, pinnedAt?: string) {
    this.fd = fd;
    this.pinnedAt = pinnedAt;
  }

  /** The link pinned at `path`, or undefined when nothing is pinned there. */
  static openPinned(path: string): BpfLink | undefined {
    if (!existsSync(path)) return undefined;
    const fd = callInt('libbpf', 'bpf_obj_get', [DataType.String], [path]);
    if (fd < 0) throw new KernelError('bpf_obj_get', -fd, path);
    return new BpfLink(fd, path);
  }

  /** Atomically replaces the attached program (no moment without a program). */
  update(prog: BpfProgram): void {
    checkLibbpf(
      callInt('libbpf', 'bpf_link_update', [DataType.I32, DataType.I32, DataType.I64], [this.fd, prog.fd, 0]),
      'bpf_link_update',
      prog.name,
    );
  }

  pin(path: string): void {
    checkLibbpf(
      callInt('libbpf', 'bpf_obj_pin', [DataType.I32, DataType.String], [this.fd, path]),
      'bpf_obj_pin',
      path,
    );
    this.pinnedAt = path;
  }

  /** Removes the pin; the link then detaches when its last fd closes. */
  unpin(): void {
    if (this.pinnedAt) rmSync(this.pinnedAt, { force: true });
    this.pinnedAt = undefined;
  }

  /** Detaches the program now, whoever still holds the link. */
  detach(): void {
    const ret = callInt('libbpf', 'bpf_link_detach', [DataType.I32], [this.fd]);
    if (ret < 0 && ret !== -2 /* ENOENT: already detached */) throw new KernelError('bpf_link_detach', -ret);
  }

  /** Which program the link runs, asked of the kernel (for status and tests). */
  info(): { type: number; id: number; progId: number } {
    const info = new NativeBuffer(48);
    const len = new NativeBuffer(4);
    try {
      len.buffer.writeUInt32LE(48, 0);
      checkLibbpf(
        callInt(
          'libbpf',
          'bpf_obj_get_info_by_fd',
          [DataType.I32, DataType.I64, DataType.I64],
          [this.fd, info.address, len.address],
        ),
        'bpf_obj_get_info_by_fd',
        'link',
      );
      return {
        type: info.buffer.readUInt32LE(0),
        id: info.buffer.readUInt32LE(4),
        progId: info.buffer.readUInt32LE(8),
      };
    } finally {
      info.free();
      len.free();
    }
  }

  get pinPath(): string | undefined {
    return this.pinnedAt;
  }

  /** Closes our fd. A pinned link stays attached; an unpinned one detaches. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeFd(this.fd);
  }
}

/**
 * Attaches `prog` to the cgroup2 directory `cgroupPath` with a BPF link (multi-attach friendly:
 * other programs on the same hook keep running). With `pinPath`, the link is pinned there; if a
 * link is already pinned at that path (our previous run), its program is replaced atomically.
 */
export function attachCgroup(prog: BpfProgram, cgroupPath: string, opts: { pinPath?: string } = {}): BpfLink {
  if (opts.pinPath) {
    const existing = BpfLink.openPinned(opts.pinPath);
    if (existing) {
      try {
        existing.update(prog);
        return existing;
      } catch (err) {
        existing.close();
        throw err;
      }
    }
  }
  if (!existsSync(cgroupPath)) {
    throw new WeftError('WEFT_ERR_NO_CGROUP', `cgroup ${cgroupPath} does not exist`);
  }
  const cg = openReadOnly(cgroupPath, true);
  try {
    const fd = callInt(
      'libbpf',
      'bpf_link_create',
      [DataType.I32, DataType.I32, DataType.I32, DataType.I64],
      [prog.fd, cg, prog.expectedAttachType, 0],
    );
    if (fd < 0) throw new KernelError('bpf_link_create', -fd, `${prog.name} on ${cgroupPath}`);
    const link = new BpfLink(fd);
    if (opts.pinPath) {
      try {
        link.pin(opts.pinPath);
      } catch (err) {
        link.close();
        throw err;
      }
    }
    return link;
  } finally {
    closeFd(cg);
  }
}
