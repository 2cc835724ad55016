import { load } from 'ffi-rs';
import { KernelError } from '../shared/errors.js';
import { callInt, DataType, NativeBuffer, openLibraries } from './native.js';

/**
 * BPF_PROG_TEST_RUN: runs a loaded program in the kernel on a synthetic input, `repeat` times.
 * Used by tests (feed a packet to a tc program) and benchmarks (drive a program that emits
 * events). `runInThread` runs the blocking syscall off the JS thread.
 */
export interface TestRunOptions {
  data?: Buffer;
  repeat?: number;
}

export interface TestRunResult {
  retval: number;
  /** Average run time per repetition, in ns, as the kernel measured it. */
  durationNs: number;
  dataOut: Buffer;
}

function prepare(opts: TestRunOptions) {
  const dataIn = opts.data ?? Buffer.alloc(64);
  const input = new NativeBuffer(dataIn.length);
  dataIn.copy(input.buffer);
  const output = new NativeBuffer(dataIn.length + 256);
  const o = new NativeBuffer(80); // struct bpf_test_run_opts (libbpf 1.1), sizeof 80
  o.buffer.writeBigUInt64LE(80n, 0);
  o.buffer.writeBigUInt64LE(BigInt(input.address), 8);
  o.buffer.writeBigUInt64LE(BigInt(output.address), 16);
  o.buffer.writeUInt32LE(dataIn.length, 24);
  o.buffer.writeUInt32LE(output.size, 28);
  o.buffer.writeUInt32LE(opts.repeat ?? 1, 60);
  return { input, output, o };
}

function finish(ret: number, bufs: ReturnType<typeof prepare>): TestRunResult {
  try {
    if (ret < 0) throw new KernelError('bpf_prog_test_run_opts', -ret);
    const outLen = bufs.o.buffer.readUInt32LE(28);
    return {
      retval: bufs.o.buffer.readUInt32LE(56),
      durationNs: bufs.o.buffer.readUInt32LE(64),
      dataOut: Buffer.from(bufs.output.buffer.subarray(0, Math.min(outLen, bufs.output.size))),
    };
  } finally {
    bufs.input.free();
    bufs.output.free();
    bufs.o.free();
  }
}

export function testRun(prog: { fd: number }, opts: TestRunOptions = {}): TestRunResult {
  const bufs = prepare(opts);
  return finish(
    callInt('libbpf', 'bpf_prog_test_run_opts', [DataType.I32, DataType.I64], [prog.fd, bufs.o.address]),
    bufs,
  );
}

export async function testRunInThread(
  prog: { fd: number },
  opts: TestRunOptions = {},
): Promise<TestRunResult> {
  openLibraries();
  const bufs = prepare(opts);
  const ret = (await load({
    library: 'libbpf',
    funcName: 'bpf_prog_test_run_opts',
    retType: DataType.I32,
    paramsType: [DataType.I32, DataType.I64],
    paramsValue: [prog.fd, bufs.o.address],
    runInNewThread: true,
  })) as number;
  return finish(ret, bufs);
}

/** A program pinned in bpffs, opened by path (another process's program, a bench's producer). */
export function openPinnedProgram(path: string): { fd: number } {
  const fd = callInt('libbpf', 'bpf_obj_get', [DataType.String], [path]);
  if (fd < 0) throw new KernelError('bpf_obj_get', -fd, path);
  return { fd };
}
