import { type ChildProcess, spawn } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import type { Logger } from '../../shared/log.js';
import { weftCommand } from '../../shared/self.js';
import { type ProcessRecord, recordChild } from '../process-record.js';
import { netnsPath, sandboxArgv } from '../sandbox-exec.js';

/**
 * httpGet and tcpSocket probes must come from the node, as a real kubelet's do: pod IPs are
 * routed only inside the node's network namespace. The daemon lives on the host, so each node
 * gets a small helper process in its namespace (`weft devcluster prober`) that runs probes
 * sent as JSON lines on stdin and answers on stdout. It exits when its stdin closes, so it
 * never outlives the daemon.
 */

export interface NetworkProbe {
  kind: 'tcp' | 'http';
  host: string;
  port: number;
  timeoutMs: number;
  path?: string;
  scheme?: 'HTTP' | 'HTTPS';
  headers?: Array<{ name: string; value: string }>;
}

export interface ProbeResult {
  ok: boolean;
  message: string;
}

interface ProbeRequest extends NetworkProbe {
  id: number;
}

/** The helper's side: runs in the node's netns. */
export async function runProberHelper(): Promise<number> {
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    let req: ProbeRequest;
    try {
      req = parseRequest(JSON.parse(line));
    } catch (err) {
      process.stderr.write(`prober: bad request: ${(err as Error).message}\n`);
      continue;
    }
    runProbe(req).then(
      (res) => process.stdout.write(`${JSON.stringify({ id: req.id, ...res })}\n`),
      (err: unknown) =>
        process.stdout.write(`${JSON.stringify({ id: req.id, ok: false, message: String(err) })}\n`),
    );
  }
  return 0;
}

function parseRequest(v: unknown): ProbeRequest {
  if (typeof v !== 'object' || v === null) throw new Error('not an object');
  const o = v as Record<string, unknown>;
  if (typeof o.id !== 'number' || (o.kind !== 'tcp' && o.kind !== 'http'))
    throw new Error('missing id or kind');
  if (typeof o.host !== 'string' || typeof o.port !== 'number' || typeof o.timeoutMs !== 'number') {
    throw new Error('missing host, port or timeoutMs');
  }
  return o as unknown as ProbeRequest;
}

export function runProbe(p: NetworkProbe): Promise<ProbeResult> {
  return p.kind === 'tcp' ? tcpProbe(p) : httpProbe(p);
}

function tcpProbe(p: NetworkProbe): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const sock = connect({ host: p.host, port: p.port, timeout: p.timeoutMs });
    sock.once('connect', () => {
      sock.destroy();
      resolve({ ok: true, message: '' });
    });
    sock.once('timeout', () => {
      sock.destroy();
      resolve({ ok: false, message: `dial tcp ${p.host}:${p.port}: i/o timeout` });
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      resolve({ ok: false, message: `dial tcp ${p.host}:${p.port}: ${err.code ?? err.message}` });
    });
  });
}

/** Like the kubelet: any status from 200 to 399 succeeds; certificates are not verified. */
function httpProbe(p: NetworkProbe): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const https = p.scheme === 'HTTPS';
    const headers: Record<string, string> = { 'User-Agent': 'kube-probe/1.32', Accept: '*/*' };
    for (const h of p.headers ?? []) headers[h.name] = h.value;
    const url = `${https ? 'https' : 'http'}://${p.host}:${p.port}${p.path ?? '/'}`;
    const req = (https ? httpsRequest : httpRequest)(
      {
        host: p.host,
        port: p.port,
        path: p.path ?? '/',
        method: 'GET',
        headers,
        timeout: p.timeoutMs,
        ...(https ? { rejectUnauthorized: false } : {}),
      },
      (res) => {
        res.resume();
        const code = res.statusCode ?? 0;
        resolve(
          code >= 200 && code < 400
            ? { ok: true, message: '' }
            : { ok: false, message: `HTTP probe failed with statuscode: ${code}` },
        );
      },
    );
    req.on('timeout', () => {
      req.destroy();
      resolve({ ok: false, message: `Get "${url}": context deadline exceeded` });
    });
    req.on('error', (err: NodeJS.ErrnoException) =>
      resolve({ ok: false, message: `Get "${url}": ${err.code ?? err.message}` }),
    );
    req.end();
  });
}

/** The daemon's side: one helper per node, started lazily, restarted if it dies. */
export class NodeProber {
  private child?: ChildProcess;
  private nextId = 1;
  private readonly pending = new Map<number, (r: ProbeResult) => void>();
  private closed = false;

  constructor(
    private readonly opts: {
      node: string;
      netns: string;
      cgroup: string;
      log: Logger;
      onProcess: (rec: ProcessRecord) => void;
    },
  ) {}

  probe(p: NetworkProbe): Promise<ProbeResult> {
    if (this.closed) return Promise.resolve({ ok: false, message: 'prober stopped' });
    const child = this.ensureChild();
    const id = this.nextId++;
    return new Promise((resolve) => {
      // The helper applies the timeout; this one only guards against a stuck helper.
      const guard = setTimeout(() => {
        this.pending.delete(id);
        resolve({ ok: false, message: 'probe timed out in the prober' });
      }, p.timeoutMs + 5_000);
      this.pending.set(id, (r) => {
        clearTimeout(guard);
        resolve(r);
      });
      child.stdin?.write(`${JSON.stringify({ id, ...p })}\n`);
    });
  }

  close(): void {
    this.closed = true;
    this.child?.stdin?.end();
    this.child = undefined;
    for (const [, done] of this.pending) done({ ok: false, message: 'prober stopped' });
    this.pending.clear();
  }

  private ensureChild(): ChildProcess {
    if (this.child) return this.child;
    const argv = sandboxArgv(this.opts.cgroup, netnsPath(this.opts.netns), [
      ...weftCommand(),
      'devcluster',
      'prober',
    ]);
    const child = spawn(argv[0] ?? 'sh', argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
    this.child = child;
    if (child.pid !== undefined) {
      const rec = recordChild(child.pid, `prober ${this.opts.node}`);
      if (rec) this.opts.onProcess(rec);
    }
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      try {
        const res = JSON.parse(line) as { id: number; ok: boolean; message: string };
        const done = this.pending.get(res.id);
        this.pending.delete(res.id);
        done?.({ ok: res.ok, message: res.message });
      } catch {
        this.opts.log.warn({ line }, 'prober printed something that is not a result');
      }
    });
    child.on('exit', (code, signal) => {
      if (this.child === child) this.child = undefined;
      if (!this.closed)
        this.opts.log.warn({ node: this.opts.node, code, signal }, 'prober exited; restarting on next probe');
      for (const [, done] of this.pending) done({ ok: false, message: 'prober exited' });
      this.pending.clear();
    });
    child.stdin?.on('error', () => {});
    return child;
  }
}
