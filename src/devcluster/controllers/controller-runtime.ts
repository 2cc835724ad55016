import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '../../shared/log.js';
import type { ResilientInformer } from '../resilient-informer.js';
import { type Backoff, WorkQueue } from './endpointslice-workqueue.js';

/**
 * The loop the workload controllers (ReplicaSet, Deployment, garbage collector) share, as the
 * EndpointSlice controller runs it: informers → a work queue of "namespace/name" keys → workers
 * that call an idempotent sync. A failed sync requeues its key with per-key backoff; errors a
 * controller expects (its cache is behind its writes, a 409) are logged at debug.
 */

export interface RunningController {
  readonly synced: Promise<void>;
  stop(): Promise<void>;
}

export class DeferredSync extends Error {
  override readonly name: string = 'DeferredSync';
}

export function runController(opts: {
  name: string;
  log: Logger;
  informers: ReadonlyArray<Pick<ResilientInformer<KubernetesObject>, 'start' | 'stop'>>;
  queue: WorkQueue;
  sync: (key: string) => Promise<void>;
  /** Queues every key once the informers have listed. */
  enqueueAll: () => void;
  workers?: number;
}): RunningController {
  const { log, queue } = opts;
  let stopping = false;
  const workers: Promise<void>[] = [];
  const work = async () => {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      try {
        await opts.sync(key);
        queue.forget(key);
      } catch (err) {
        if (stopping) return;
        const retryInMs = queue.addRateLimited(key);
        const expected = err instanceof DeferredSync || statusCodeOf(err) === 409;
        const fields = { key, retryInMs, attempt: queue.failureCount(key), err: describeError(err) };
        if (expected) log.debug(fields, `${opts.name} sync deferred`);
        else log.warn(fields, `${opts.name} sync failed; will retry`);
      } finally {
        queue.done(key);
      }
    }
  };
  const workerCount = Math.max(1, opts.workers ?? 2);
  const synced = Promise.all(opts.informers.map((i) => i.start())).then(() => {
    if (stopping) return;
    opts.enqueueAll();
    for (let i = 0; i < workerCount; i++) workers.push(work());
    log.info({ workers: workerCount }, `${opts.name} synced`);
  });
  return {
    synced,
    async stop() {
      stopping = true;
      queue.shutDown();
      await Promise.all(opts.informers.map((i) => i.stop()));
      // A hung API call must not hang shutdown.
      await Promise.race([
        Promise.all(workers),
        new Promise((resolve) => setTimeout(resolve, 10_000).unref()),
      ]);
    },
  };
}

export function newQueue(backoff?: Backoff): WorkQueue {
  return new WorkQueue(backoff ?? { initialMs: 100, maxMs: 30_000 });
}

export function keyOf(object: KubernetesObject): string {
  return `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
}

export function splitKey(key: string): [string, string] {
  const slash = key.indexOf('/');
  return [key.slice(0, slash), key.slice(slash + 1)];
}

export function statusCodeOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'number' ? code : undefined;
}

export function isNamespaceTerminating(err: unknown): boolean {
  if (statusCodeOf(err) !== 403) return false;
  const body = (err as { body?: unknown }).body;
  const text = typeof body === 'string' ? body : JSON.stringify(body ?? '');
  return text.includes('NamespaceTerminating') || text.includes('being terminated');
}

export function describeError(err: unknown): string {
  const code = statusCodeOf(err);
  if (code !== undefined) {
    const body = (err as { body?: unknown }).body;
    let message: string | undefined;
    try {
      const parsed =
        typeof body === 'string'
          ? (JSON.parse(body) as { message?: string })
          : (body as { message?: string });
      message = parsed?.message;
    } catch {
      message = typeof body === 'string' ? body.slice(0, 200) : undefined;
    }
    return `HTTP ${code}${message ? `: ${message}` : ''}`;
  }
  return err instanceof Error ? err.message : String(err);
}
