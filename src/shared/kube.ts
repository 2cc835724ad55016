/**
 * Raw JSON GET and list against the Kubernetes API with a kubeconfig's credentials (the
 * informers list with it so that one malformed object is one rejected object, not a failed
 * list: client-node's typed deserializer throws on the whole list). Loading the kubeconfig is
 * kubeconfig.ts.
 */
import http from 'node:http';
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

/** GET `path` as JSON, with the KubeConfig's credentials and TLS settings. */
export async function kubeGetJson(
  kc: KubeClientConfig,
  path: string,
  query: Record<string, string | undefined> = {},
  timeoutMs = 60_000,
): Promise<unknown> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new WeftError('WEFT_ERR_KUBECONFIG', 'the kubeconfig has no current cluster');
  const url = new URL(cluster.server.replace(/\/+$/, '') + path);
  for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
  const opts: https.RequestOptions = { method: 'GET', headers: { Accept: 'application/json' } };
  await kc.applyToHTTPSOptions(opts);
  const request = url.protocol === 'http:' ? http.request : https.request;
  return new Promise((resolve, reject) => {
    const req = request(url, { ...opts, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const status = res.statusCode ?? 0;
        if (status !== 200) {
          let message = text.slice(0, 300);
          try {
            const body = JSON.parse(text) as { message?: unknown };
            if (typeof body.message === 'string') message = body.message;
          } catch {
            // not a Status object
          }
          reject(new KubeApiError(status, `GET ${url.pathname}: ${status} ${message}`));
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
