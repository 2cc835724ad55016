/**
 * The agent's HTTP servers (fastify). On TCP (--prometheus-serve-addr, default :9962): /metrics,
 * /healthz, /readyz, for Prometheus and the kubelet's probes. On the unix socket in the state
 * directory, like Cilium's API: the same plus /v1/status, /v1/services and /v1/bpf/lb, which
 * only someone with access to the node (root) reaches.
 */
import { chmodSync } from 'node:fs';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { WeftError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import type { AgentMetrics } from '../metrics.js';
import type { ApiError, BpfLbResponse, ServiceEntry, StatusResponse } from './types.js';

/** What the servers show. */
export interface AgentView {
  /** Undefined when ready; otherwise why not. */
  notReadyReason(): string | undefined;
  status(): StatusResponse;
  services(): ServiceEntry[];
  bpfLb(): BpfLbResponse;
  metrics: AgentMetrics;
}

export interface ListenAddress {
  host: string;
  port: number;
}

/** --prometheus-serve-addr: ":9962", "127.0.0.1:9962", "[::1]:9962"; "" disables. */
export function parseServeAddress(value: string): ListenAddress | undefined {
  if (value === '') return undefined;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value);
  const port = Number(m?.[3]);
  if (!m || !Number.isInteger(port) || port > 65_535) {
    throw new WeftError(
      'WEFT_ERR_USAGE',
      `--prometheus-serve-addr "${value}" is not [host]:port (for example :9962 or 127.0.0.1:9962; "" disables it)`,
    );
  }
  const host = m[1] ?? (m[2] || '0.0.0.0');
  return { host, port };
}

function sendError(reply: FastifyReply, status: number, err: unknown): FastifyReply {
  const body: ApiError = {
    error: err instanceof Error ? err.message : String(err),
    code: err instanceof WeftError ? err.code : 'WEFT_ERR_INTERNAL',
  };
  return reply.code(status).send(body);
}

function probes(app: FastifyInstance, view: AgentView): void {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const reason = view.notReadyReason();
    if (reason) return reply.code(503).send({ status: 'not ready', reason });
    return { status: 'ready' };
  });
  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', view.metrics.contentType);
    return view.metrics.text();
  });
}

function build(view: AgentView, log: Logger, api: boolean): FastifyInstance {
  const app = Fastify({ logger: false });
  app.setErrorHandler((err: unknown, req, reply) => {
    log.error(
      {
        err: err instanceof Error ? err.message : String(err),
        url: req.url,
        code: err instanceof WeftError ? err.code : undefined,
      },
      'API request failed',
    );
    return sendError(reply, 500, err);
  });
  app.setNotFoundHandler((req, reply) =>
    sendError(reply, 404, new WeftError('WEFT_ERR_NOT_FOUND', `no such endpoint: ${req.method} ${req.url}`)),
  );
  probes(app, view);
  if (api) {
    app.get('/v1/status', async () => view.status());
    app.get('/v1/services', async () => view.services());
    app.get('/v1/bpf/lb', async () => view.bpfLb());
  }
  return app;
}

export interface ApiServers {
  /** host:port the metrics server listens on, when enabled. */
  metricsAddress?: string;
  close(): Promise<void>;
}

export async function startApiServers(opts: {
  view: AgentView;
  socketPath: string;
  metricsAddress?: ListenAddress;
  log: Logger;
}): Promise<ApiServers> {
  const started: FastifyInstance[] = [];
  const close = async () => {
    await Promise.allSettled(started.map((a) => a.close()));
  };
  try {
    const unix = build(opts.view, opts.log, true);
    await unix.listen({ path: opts.socketPath });
    started.push(unix);
    chmodSync(opts.socketPath, 0o660);
    let metricsAddress: string | undefined;
    if (opts.metricsAddress) {
      const tcp = build(opts.view, opts.log, false);
      try {
        await tcp.listen({ host: opts.metricsAddress.host, port: opts.metricsAddress.port });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const where = `${opts.metricsAddress.host}:${opts.metricsAddress.port}`;
        throw new WeftError(
          'WEFT_ERR_LISTEN',
          code === 'EADDRINUSE'
            ? `--prometheus-serve-addr ${where} is in use (another agent on this host?); choose another port, or "" to disable`
            : `cannot listen on ${where} for metrics: ${err instanceof Error ? err.message : String(err)}`,
          { cause: err },
        );
      }
      started.push(tcp);
      const a = tcp.server.address();
      metricsAddress =
        typeof a === 'object' && a
          ? `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`
          : `${opts.metricsAddress.host}:${opts.metricsAddress.port}`;
    }
    return metricsAddress ? { metricsAddress, close } : { close };
  } catch (err) {
    await close();
    throw err;
  }
}
