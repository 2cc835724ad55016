import { constants } from 'node:os';

/**
 * Every error weft raises on purpose. Callers and tests match on `code` (stable, WEFT_ERR_*),
 * never on message text; the message says what happened and, where it can, what to do next.
 */
export class WeftError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WeftError';
    this.code = code;
  }
}

/** A failed kernel call: which call, on what, and the errno by name (ENOENT, E2BIG, EPERM...). */
export class KernelError extends WeftError {
  readonly call: string;
  readonly errno: number;
  readonly errnoName: string;

  constructor(call: string, errno: number, detail?: string) {
    const name = errnoName(errno);
    const hint = errnoHints[name];
    super(
      `WEFT_ERR_${name}`,
      `${call}${detail ? ` (${detail})` : ''}: ${name}: ${errnoText(errno)}${hint ? `; ${hint}` : ''}`,
    );
    this.name = 'KernelError';
    this.call = call;
    this.errno = errno;
    this.errnoName = name;
  }
}

const namesByNumber = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno)) {
  // Several names share a number (EWOULDBLOCK = EAGAIN, EDEADLOCK = EDEADLK); keep the first.
  if (!namesByNumber.has(value)) namesByNumber.set(value, name);
}
// Kernel-internal errnos that libbpf passes through and Node does not list.
namesByNumber.set(524, 'ENOTSUPP');
namesByNumber.set(4001, 'LIBBPF_ERRNO__LIBELF');
namesByNumber.set(4002, 'LIBBPF_ERRNO__FORMAT');
namesByNumber.set(4003, 'LIBBPF_ERRNO__KVERSION');
namesByNumber.set(4004, 'LIBBPF_ERRNO__ENDIAN');
namesByNumber.set(4005, 'LIBBPF_ERRNO__INTERNAL');
namesByNumber.set(4006, 'LIBBPF_ERRNO__RELOC');
namesByNumber.set(4007, 'LIBBPF_ERRNO__LOAD');
namesByNumber.set(4008, 'LIBBPF_ERRNO__VERIFY');
namesByNumber.set(4009, 'LIBBPF_ERRNO__PROG2BIG');
namesByNumber.set(4010, 'LIBBPF_ERRNO__KVER');
namesByNumber.set(4011, 'LIBBPF_ERRNO__PROGTYPE');
namesByNumber.set(4012, 'LIBBPF_ERRNO__WRNGPID');
namesByNumber.set(4013, 'LIBBPF_ERRNO__INVSEQ');
namesByNumber.set(4014, 'LIBBPF_ERRNO__NLPARSE');

/** errno number (positive or negative, as libbpf returns it) → its name, e.g. 2 → ENOENT. */
export function errnoName(errno: number): string {
  return namesByNumber.get(Math.abs(errno)) ?? `errno ${Math.abs(errno)}`;
}

const texts: Record<string, string> = {
  EPERM: 'operation not permitted',
  ENOENT: 'no such file or directory',
  ESRCH: 'no such process',
  EINTR: 'interrupted system call',
  EIO: 'input/output error',
  E2BIG: 'argument list too long (map full or value too large)',
  EBADF: 'bad file descriptor',
  EAGAIN: 'resource temporarily unavailable',
  ENOMEM: 'cannot allocate memory',
  EACCES: 'permission denied',
  EFAULT: 'bad address',
  EBUSY: 'device or resource busy',
  EEXIST: 'file exists',
  ENODEV: 'no such device',
  ENOTDIR: 'not a directory',
  EINVAL: 'invalid argument',
  ENOSPC: 'no space left on device',
  ENOSYS: 'function not implemented',
  EOPNOTSUPP: 'operation not supported',
  ENOTSUPP: 'operation not supported',
  ENOEXEC: 'exec format error',
  ELOOP: 'too many levels of symbolic links',
};

function errnoText(errno: number): string {
  const name = errnoName(errno);
  return texts[name] ?? name.toLowerCase();
}

const errnoHints: Record<string, string> = {
  EPERM: 'weft needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN)',
  EACCES: 'the kernel refused: run as root, or the verifier rejected the program',
  E2BIG: 'the map is full: raise its size or remove entries',
  ENOEXEC: 'the object file is not a BPF ELF object for this architecture; rebuild with make bpf',
};
