import { createExternalBuffer, createPointer, DataType, load, open, unwrapPointer } from 'ffi-rs';
import { KernelError, WeftError } from '../shared/errors.js';

/**
 * Native memory and libc, for the binding. ffi-rs passes every pointer as a plain number
 * (DataType.I64, NULL = 0); memory that C reads or writes is allocated here with calloc and
 * seen from JavaScript through a zero-copy Buffer over it (createExternalBuffer).
 */

let librariesOpen = false;

/** Opens libc and the system libbpf once; a missing libbpf is a clear error naming the fix. */
export function openLibraries(): void {
  if (librariesOpen) return;
  open({ library: 'libc', path: 'libc.so.6' });
  try {
    open({ library: 'libbpf', path: 'libbpf.so.1' });
  } catch (err) {
    throw new WeftError(
      'WEFT_ERR_NO_LIBBPF',
      "cannot load the system libbpf (libbpf.so.1); install it: apt-get install libbpf1 (or run 'make setup')",
      { cause: err },
    );
  }
  librariesOpen = true;
  // libbpf prints its warnings to stderr: on every ordinary tc attach ("Exclusivity flag on")
  // and query, interleaved with our JSON logs. Every failure we act on is reported through
  // KernelError (call, errno, verifier log), so silence it unless asked to debug.
  if (process.env.WEFT_LIBBPF_DEBUG !== '1') {
    load({
      library: 'libbpf',
      funcName: 'libbpf_set_print',
      retType: DataType.I64,
      paramsType: [DataType.I64],
      paramsValue: [0],
    });
  }
}

type Lib = 'libc' | 'libbpf';

/** Calls a C function whose arguments and result are all integers or pointers (I64/I32). */
export function callInt(lib: Lib, funcName: string, params: DataType[], values: unknown[]): number {
  openLibraries();
  return load({ library: lib, funcName, retType: DataType.I32, paramsType: params, paramsValue: values });
}

export function callPtr(lib: Lib, funcName: string, params: DataType[], values: unknown[]): number {
  openLibraries();
  return load({ library: lib, funcName, retType: DataType.I64, paramsType: params, paramsValue: values });
}

/** A call that reports failure through errno (NULL pointer, -1): returns the value and errno. */
export function callWithErrno(
  lib: Lib,
  funcName: string,
  ret: DataType.I32 | DataType.I64,
  params: DataType[],
  values: unknown[],
): { value: number; errno: number } {
  openLibraries();
  const r = load({
    library: lib,
    funcName,
    retType: ret,
    paramsType: params,
    paramsValue: values,
    errno: true,
  }) as unknown as { value: number; errnoCode: number };
  return { value: r.value, errno: r.errnoCode };
}

/** A zero-copy Buffer over `length` bytes of native memory at `address`. */
export function viewAt(address: number, length: number): Buffer {
  if (address === 0) throw new WeftError('WEFT_ERR_NULL_POINTER', 'view of a NULL pointer');
  const external = unwrapPointer(createPointer({ paramsType: [DataType.I64], paramsValue: [address] }))[0];
  if (!external) throw new WeftError('WEFT_ERR_NULL_POINTER', 'cannot wrap native pointer');
  return createExternalBuffer(external, length);
}

/**
 * calloc'd memory with a Buffer view. Free it explicitly: the GC does not know about it.
 * Long-lived scratch buffers (per map, per reader) are allocated once and reused.
 */
export class NativeBuffer {
  readonly address: number;
  readonly buffer: Buffer;
  readonly size: number;
  private freed = false;

  constructor(size: number) {
    this.size = Math.max(size, 1);
    this.address = callPtr('libc', 'calloc', [DataType.I64, DataType.I64], [1, this.size]);
    if (this.address === 0) throw new KernelError('calloc', 12, `${this.size} bytes`);
    this.buffer = viewAt(this.address, this.size);
  }

  /** A NUL-terminated copy of `text`. */
  static cString(text: string): NativeBuffer {
    const bytes = Buffer.from(`${text}\0`, 'utf8');
    const nb = new NativeBuffer(bytes.length);
    bytes.copy(nb.buffer);
    return nb;
  }

  free(): void {
    if (this.freed) return;
    this.freed = true;
    callInt('libc', 'free', [DataType.I64], [this.address]);
  }
}

/**
 * Returns the free memory of every malloc arena to the kernel (glibc's malloc_trim(0)); true
 * when some was released. glibc gives back only the top of an arena on free(): the pages
 * freed below it (V8's compiler zones, parser buffers, libbpf's ELF copies: ≈20-30 MiB after
 * the agent's first list and sync of 10,000 Services) stay resident until the arena shrinks,
 * which in a long-running daemon may be never. Costs a few milliseconds: call it after a
 * burst, not on a hot path.
 */
export function releaseFreeNativeMemory(): boolean {
  return callInt('libc', 'malloc_trim', [DataType.I64], [0]) === 1;
}

/** A C string at `address` (not freed). */
export function readCString(address: number, max = 4096): string {
  if (address === 0) return '';
  const len = callPtr('libc', 'strnlen', [DataType.I64, DataType.I64], [address, max]);
  return len === 0 ? '' : viewAt(address, len).toString('utf8');
}

/** Closes a file descriptor we own (map, program and link fds). */
export function closeFd(fd: number): void {
  if (fd >= 0) callInt('libc', 'close', [DataType.I32], [fd]);
}

/** dup(2) with close-on-exec, so a map handle can outlive the object it came from. */
export function dupFd(fd: number, what: string): number {
  const F_DUPFD_CLOEXEC = 1030;
  const r = callWithErrno(
    'libc',
    'fcntl',
    DataType.I32,
    [DataType.I32, DataType.I32, DataType.I32],
    [fd, F_DUPFD_CLOEXEC, 3],
  );
  if (r.value < 0) throw new KernelError('fcntl(F_DUPFD_CLOEXEC)', r.errno, what);
  return r.value;
}

/** open(2) read-only; returns the fd or throws KernelError naming the path. */
export function openReadOnly(path: string, directory = false): number {
  const O_RDONLY = 0;
  const O_DIRECTORY = 0o200000;
  const O_CLOEXEC = 0o2000000;
  const r = callWithErrno(
    'libc',
    'open',
    DataType.I32,
    [DataType.String, DataType.I32],
    [path, O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0)],
  );
  if (r.value < 0) throw new KernelError('open', r.errno, path);
  return r.value;
}

/** Throws KernelError when a libbpf int API returned -errno. */
export function checkLibbpf(ret: number, call: string, detail?: string): number {
  if (ret < 0) throw new KernelError(call, -ret, detail);
  return ret;
}

export { DataType };
