// The request channel the kernel tests keep with a helper process they start in a namespace
// (workload.ts, nodeport-peer.ts): one JSON request per stdin line, one JSON reply per stdout
// line, matched by `seq`; seq 0 is the process saying it is ready.
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

/** Distributes `Omit` over a union, so each request keeps its own fields. */
export type WithoutSeq<T> = T extends unknown ? Omit<T, 'seq'> : never;

type Reply =
  | { seq: number; ok: true; result: unknown }
  | { seq: number; ok: false; error: { code: string; message: string } };

export class RequestChannel<Request extends { seq: number }> {
  readonly child: ChildProcess;
  private seq = 0;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private readonly exited: Promise<void>;
  private stderr = '';

  constructor(
    child: ChildProcess,
    opts: {
      /** "workload", "peer": names the process in errors. */
      what: string;
      ready(result: unknown): void;
      failed(err: Error): void;
      /** The error a failed request rejects with. */
      error(code: string, message: string): Error;
    },
  ) {
    this.child = child;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-4000);
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let r: Reply;
      try {
        r = JSON.parse(line) as Reply;
      } catch {
        return; // not ours (a library printing to stdout)
      }
      if (r.seq === 0 && r.ok) {
        opts.ready(r.result);
        return;
      }
      const waiter = this.pending.get(r.seq);
      if (!waiter) return;
      this.pending.delete(r.seq);
      if (r.ok) waiter.resolve(r.result);
      else waiter.reject(opts.error(r.error.code, r.error.message));
    });
    this.exited = new Promise((resolveExit) => {
      child.once('exit', (code, signal) => {
        const err = new Error(`${opts.what} exited (${signal ?? code}); stderr: ${this.stderr.trim()}`);
        opts.failed(err);
        for (const w of this.pending.values()) w.reject(err);
        this.pending.clear();
        resolveExit();
      });
    });
  }

  request<T>(req: WithoutSeq<Request>): Promise<T> {
    const seq = ++this.seq;
    return new Promise<T>((resolveReq, reject) => {
      this.pending.set(seq, { resolve: resolveReq as (v: unknown) => void, reject });
      this.child.stdin!.write(`${JSON.stringify({ ...req, seq })}\n`);
    });
  }

  /** Asks the process to exit (closing its stdin); kills it by PID if it does not. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.stdin?.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * The helper process's side: answers each request line with `handle`'s result (or its errno
 * name), says it is ready, and calls `close` then exits when the test closes its stdin.
 */
export function serveRequests<Request extends { seq: number }>(
  handle: (req: Request) => Promise<unknown>,
  close: () => void,
): void {
  const reply = (r: Reply) => process.stdout.write(`${JSON.stringify(r)}\n`);
  const input = createInterface({ input: process.stdin });
  input.on('line', (line) => {
    let req: Request;
    try {
      req = JSON.parse(line) as Request;
    } catch {
      reply({ seq: -1, ok: false, error: { code: 'BAD_REQUEST', message: `not JSON: ${line}` } });
      return;
    }
    handle(req).then(
      (result) => reply({ seq: req.seq, ok: true, result }),
      (err: NodeJS.ErrnoException) =>
        reply({ seq: req.seq, ok: false, error: { code: err.code ?? 'ERROR', message: err.message } }),
    );
  });
  // The test closing our stdin is the signal to stop.
  input.on('close', () => {
    close();
    process.exit(0);
  });
  reply({ seq: 0, ok: true, result: { ready: true, pid: process.pid } });
}
