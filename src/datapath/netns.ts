import { KernelError } from '../shared/errors.js';
import { callWithErrno, closeFd, DataType, openReadOnly } from './native.js';

const CLONE_NEWNET = 0x40000000;

/**
 * Runs `fn` with the calling thread inside another network namespace, then moves back.
 * Netlink-based calls (tc attach, if_nametoindex) act in the caller's namespace; since ffi-rs
 * calls run on the JS thread, a synchronous `fn` makes them act in `nsPath`
 * (/run/netns/<name> or /proc/<pid>/ns/net). Nothing asynchronous may run inside.
 */
export function inNetns<T>(nsPath: string, fn: () => T): T {
  const target = openReadOnly(nsPath);
  const home = openReadOnly('/proc/thread-self/ns/net');
  try {
    enter(target, nsPath);
    try {
      return fn();
    } finally {
      enter(home, 'the original network namespace');
    }
  } finally {
    closeFd(target);
    closeFd(home);
  }
}

function enter(fd: number, what: string): void {
  const r = callWithErrno('libc', 'setns', DataType.I32, [DataType.I32, DataType.I32], [fd, CLONE_NEWNET]);
  if (r.value < 0) throw new KernelError('setns', r.errno, what);
}
