/**
 * Raw JSON GET, list and watch against the Kubernetes API with a kubeconfig's credentials (the
 * informers list with it so that one malformed object is one rejected object, not a failed
 * list: client-node's typed deserializer throws on the whole list). Loading the kubeconfig is
 * kubeconfig.ts. Plain node:http(s): client-node's Watch loads node-fetch (≈2 MiB of the
 * agent's heap) and cannot be aborted before the server has answered.
 */
import http, { STATUS_CODES } from 'node:http';
import https from 'node:https';
import { WeftError } from './errors.js';
import type { KubeClientConfig } from './kubeconfig.js';

export type { KubeClientConfig };

/** An API error with the HTTP status, shaped as client-node's Watch reports them (statusCode). */
export class KubeApiError extends WeftError {
  readonly statusCode: number;
  constructor(statusCode: number, message: string) {
    super('WEFT_ERR_KUBE_API', message);
    this.statusCode = statusCode;
  }
}

type Query = Record<string, string | number | boolean | undefined>;

/** The request of a GET of `path`: URL, options with the credentials, and http or https. */
async function prepareGet(kc: KubeClientConfig, path: string, query: Query) {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new WeftError('WEFT_ERR_KUBECONFIG', 'the kubeconfig has no current cluster');
  const url = new URL(cluster.server.replace(/\/+$/, '') + path);
  for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, String(v));
  const opts: https.RequestOptions = { method: 'GET', headers: { Accept: 'application/json' } };
  await kc.applyToHTTPSOptions(opts);
  return { url, opts, request: url.protocol === 'http:' ? http.request : https.request };
}

/**
 * The error of a response that is not 200: "GET /path: 503 Service Unavailable: <why>", the
 * why from the Status object (message, else reason) or the start of the body.
 */
function statusError(url: URL, status: number, text: string): KubeApiError {
  let why = text.slice(0, 300);
  try {
    const body = JSON.parse(text) as { message?: unknown; reason?: unknown };
    if (typeof body.message === 'string' && body.message !== '') why = body.message;
    else if (typeof body.reason === 'string') why = body.reason;
  } catch {
    // not a Status object
  }
  const line = `${status} ${STATUS_CODES[status] ?? 'Unknown'}`;
  return new KubeApiError(status, `GET ${url.pathname}: ${line}${why ? `: ${why}` : ''}`);
}

/** GET `path` as JSON, with the KubeConfig's credentials and TLS settings. */
export async function kubeGetJson(
  kc: KubeClientConfig,
  path: string,
  query: Query = {},
  timeoutMs = 60_000,
): Promise<unknown> {
  const { url, opts, request } = await prepareGet(kc, path, query);
  return new Promise((resolve, reject) => {
    const req = request(url, { ...opts, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const status = res.statusCode ?? 0;
        if (status !== 200) {
          reject(statusError(url, status, text));
          return;
        }
        try {
          resolve(JSON.parse(text));
        } catch (err) {
          reject(
            new WeftError('WEFT_ERR_KUBE_API', `GET ${url.pathname}: response is not JSON`, { cause: err }),
          );
        }
      });
    });
    req.on('timeout', () =>
      req.destroy(new WeftError('WEFT_ERR_KUBE_API', `GET ${url.pathname}: timed out`)),
    );
    req.on('error', reject);
    req.end();
  });
}

export interface RawList {
  apiVersion?: string;
  kind?: string;
  metadata: { resourceVersion?: string };
  items: unknown[];
}

/**
 * A full list, in pages of `limit` (as client-go's pager): the items of every page, and the
 * resourceVersion of the consistent snapshot they come from. `item`, when given, turns each
 * listed object into what the caller keeps (undefined: dropped) as its page arrives, so a
 * large list never holds every full object at once, only one page of them.
 */
export async function kubeListAll(
  kc: KubeClientConfig,
  path: string,
  opts: {
    labelSelector?: string;
    fieldSelector?: string;
    limit?: number;
    item?: (raw: unknown) => unknown;
  } = {},
): Promise<RawList> {
  const items: unknown[] = [];
  let resourceVersion: string | undefined;
  let cont: string | undefined;
  let kind: string | undefined;
  let apiVersion: string | undefined;
  do {
    const page = await kubeGetJson(kc, path, {
      labelSelector: opts.labelSelector,
      fieldSelector: opts.fieldSelector,
      limit: String(opts.limit ?? 500),
      continue: cont,
    });
    if (typeof page !== 'object' || page === null || !Array.isArray((page as RawList).items)) {
      throw new WeftError('WEFT_ERR_KUBE_API', `GET ${path}: not a list`);
    }
    const p = page as RawList & { metadata?: { continue?: string; resourceVersion?: string } };
    if (opts.item) {
      for (const raw of p.items) {
        const kept = opts.item(raw);
        if (kept !== undefined) items.push(kept);
      }
    } else {
      for (const raw of p.items) items.push(raw);
    }
    resourceVersion ??= p.metadata?.resourceVersion;
    kind ??= p.kind;
    apiVersion ??= p.apiVersion;
    cont = p.metadata?.continue || undefined;
  } while (cont);
  return { apiVersion, kind, metadata: { resourceVersion }, items };
}

/**
 * A watch: GET `path`?watch=true, one JSON event ({type, object}) per line, to `onEvent`, until
 * the server ends it (done(null)), it fails (done(error); a KubeApiError carries the HTTP
 * status, so 410 Gone can be told apart), or `signal` aborts it (done(null), also before the
 * response has started). Resolves once the server has answered 200, or once done() was called.
 * A line that is not a JSON event fails the watch: the caller relists rather than lose an event.
 * The connection is dropped after `idleMs` without a byte (the server ends a watch after its
 * timeoutSeconds, and sends bookmarks meanwhile): a dead peer is noticed.
 */
export async function kubeWatch(
  kc: KubeClientConfig,
  path: string,
  query: Query,
  onEvent: (type: string, object: unknown) => void,
  done: (err: Error | null) => void,
  opts: { signal?: AbortSignal; idleMs?: number } = {},
): Promise<void> {
  let finished = false;
  const finish = (err: Error | null) => {
    if (finished) return;
    finished = true;
    done(err);
  };
  if (opts.signal?.aborted) return finish(null);
  const { url, opts: reqOpts, request } = await prepareGet(kc, path, { watch: true, ...query });
  if (opts.signal?.aborted) return finish(null);
  await new Promise<void>((answered) => {
    const end = (err: Error | null) => {
      finish(err);
      answered();
    };
    const req = request(url, reqOpts, (res) => {
      res.setEncoding('utf8');
      const status = res.statusCode ?? 0;
      if (status !== 200) {
        let text = '';
        res.on('data', (c: string) => {
          if (text.length < 4096) text += c;
        });
        res.on('end', () => end(statusError(url, status, text)));
        res.on('error', end);
        return;
      }
      answered();
      const fail = (err: Error) => {
        req.destroy();
        end(err);
      };
      const deliver = (line: string) => {
        let event: { type?: unknown; object?: unknown };
        try {
          event = JSON.parse(line) as typeof event;
        } catch (err) {
          fail(
            new WeftError('WEFT_ERR_KUBE_API', `watch ${url.pathname}: an event is not JSON`, { cause: err }),
          );
          return;
        }
        if (typeof event?.type !== 'string') {
          fail(new WeftError('WEFT_ERR_KUBE_API', `watch ${url.pathname}: an event has no type`));
          return;
        }
        try {
          onEvent(event.type, event.object);
        } catch (err) {
          fail(err instanceof Error ? err : new Error(String(err)));
        }
      };
      let pending = '';
      res.on('data', (chunk: string) => {
        pending += chunk;
        let start = 0;
        for (let nl = pending.indexOf('\n'); nl >= 0 && !finished; nl = pending.indexOf('\n', start)) {
          const line = pending.slice(start, nl).trim();
          start = nl + 1;
          if (line !== '') deliver(line);
        }
        pending = pending.slice(start);
      });
      res.on('end', () => end(null));
      res.on('error', end);
      res.on('close', () =>
        end(
          res.complete
            ? null
            : new WeftError('WEFT_ERR_KUBE_API', `watch ${url.pathname}: connection closed`),
        ),
      );
    });
    const idleMs = opts.idleMs ?? 15 * 60_000;
    req.setTimeout(idleMs, () =>
      req.destroy(
        new WeftError(
          'WEFT_ERR_KUBE_API',
          `watch ${url.pathname}: no data for ${Math.round(idleMs / 1000)} s`,
        ),
      ),
    );
    req.on('socket', (socket) => socket.setKeepAlive(true, 30_000));
    req.on('error', end);
    opts.signal?.addEventListener(
      'abort',
      () => {
        end(null);
        req.destroy();
      },
      { once: true },
    );
    req.end();
  });
}
