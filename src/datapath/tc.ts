import { KernelError, WeftError } from '../shared/errors.js';
import { callInt, DataType, NativeBuffer } from './native.js';
import type { BpfProgram } from './object.js';

/**
 * tc (clsact) attachment with libbpf 1.1: netlink cls_bpf in direct-action mode. Unlike links,
 * these filters stay after the process dies, so every attach uses a fixed handle and priority
 * with BPF_TC_F_REPLACE (a restart replaces its own filter, never stacks a second one) and
 * detach is explicit. Acts in the calling thread's network namespace (see netns.ts).
 */

export type TcDirection = 'ingress' | 'egress';

export interface TcFilter {
  /** Interface name or index, in the current network namespace. */
  ifname?: string;
  ifindex?: number;
  direction: TcDirection;
  /** Our filters use handle 1 / priority 1 unless told otherwise. */
  handle?: number;
  priority?: number;
}

const BPF_TC_INGRESS = 1;
const BPF_TC_EGRESS = 2;
const BPF_TC_F_REPLACE = 1;
const EEXIST = 17;
const ENOENT = 2;

export function ifindexOf(ifname: string): number {
  const idx = callInt('libc', 'if_nametoindex', [DataType.String], [ifname]);
  if (idx === 0) throw new WeftError('WEFT_ERR_NO_INTERFACE', `network interface ${ifname} does not exist`);
  return idx;
}

function hookFor(f: TcFilter): { hook: NativeBuffer; ifindex: number } {
  const ifindex = f.ifindex ?? ifindexOf(f.ifname ?? '');
  const hook = new NativeBuffer(24); // struct bpf_tc_hook { sz; ifindex@8; attach_point@12; parent@16 }
  hook.buffer.writeBigUInt64LE(24n, 0);
  hook.buffer.writeInt32LE(ifindex, 8);
  hook.buffer.writeUInt32LE(f.direction === 'ingress' ? BPF_TC_INGRESS : BPF_TC_EGRESS, 12);
  return { hook, ifindex };
}

function optsFor(f: TcFilter, progFd: number, flags: number): NativeBuffer {
  const opts = new NativeBuffer(32); // struct bpf_tc_opts { sz; prog_fd@8; flags@12; prog_id@16; handle@20; priority@24 }
  opts.buffer.writeBigUInt64LE(32n, 0);
  opts.buffer.writeInt32LE(progFd, 8);
  opts.buffer.writeUInt32LE(flags, 12);
  opts.buffer.writeUInt32LE(f.handle ?? 1, 20);
  opts.buffer.writeUInt32LE(f.priority ?? 1, 24);
  return opts;
}

/** Attaches (or replaces) `prog` on the interface's clsact hook; creates clsact if missing. */
export function attachTc(f: TcFilter & { prog: BpfProgram }): void {
  const { hook, ifindex } = hookFor(f);
  const opts = optsFor(f, f.prog.fd, BPF_TC_F_REPLACE);
  try {
    const created = callInt('libbpf', 'bpf_tc_hook_create', [DataType.I64], [hook.address]);
    if (created < 0 && created !== -EEXIST) {
      throw new KernelError('bpf_tc_hook_create', -created, `clsact on ifindex ${ifindex}`);
    }
    const ret = callInt(
      'libbpf',
      'bpf_tc_attach',
      [DataType.I64, DataType.I64],
      [hook.address, opts.address],
    );
    if (ret < 0) {
      throw new KernelError('bpf_tc_attach', -ret, `${f.prog.name} on ${f.ifname ?? ifindex} ${f.direction}`);
    }
  } finally {
    hook.free();
    opts.free();
  }
}

/** Removes our filter; false when it was not there. */
export function detachTc(f: TcFilter): boolean {
  const { hook, ifindex } = hookFor(f);
  const opts = optsFor(f, 0, 0);
  try {
    const ret = callInt(
      'libbpf',
      'bpf_tc_detach',
      [DataType.I64, DataType.I64],
      [hook.address, opts.address],
    );
    if (ret === -ENOENT || ret === -22 /* EINVAL: no clsact */) return false;
    if (ret < 0) throw new KernelError('bpf_tc_detach', -ret, `${f.ifname ?? ifindex} ${f.direction}`);
    return true;
  } finally {
    hook.free();
    opts.free();
  }
}

/** The id of the program our filter runs, or undefined when no such filter exists. */
export function queryTc(f: TcFilter): number | undefined {
  const { hook } = hookFor(f);
  const opts = optsFor(f, 0, 0);
  try {
    const ret = callInt('libbpf', 'bpf_tc_query', [DataType.I64, DataType.I64], [hook.address, opts.address]);
    if (ret === -ENOENT || ret === -22) return undefined;
    if (ret < 0) throw new KernelError('bpf_tc_query', -ret, f.ifname ?? String(f.ifindex));
    return opts.buffer.readUInt32LE(16);
  } finally {
    hook.free();
    opts.free();
  }
}
