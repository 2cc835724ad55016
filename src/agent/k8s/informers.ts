/**
 * One client-node ListWatch per resource the load-balancer needs (Services, EndpointSlices,
 * Nodes), feeding the Service cache. client-node's ListWatch lists, watches from the list's
 * resourceVersion, re-watches when a watch ends and relists on 410 Gone, but stops for good on
 * any other error. This wraps it so the agent never stops watching:
 *
 * - on an error (API server gone, connection refused, 5xx) it logs, backs off (0.5 s doubling
 *   to 15 s, with jitter) and starts again with a fresh list, whose differences reach the
 *   cache as add/update/delete events; the datapath keeps serving the last state meanwhile;
 * - watches ask for bookmarks and end after 5–10 minutes (timeoutSeconds), as client-go's do,
 *   so a silently dead connection is noticed;
 * - objects are slimmed before ListWatch caches them (objects.ts) and listed as raw JSON, so a
 *   malformed object is one rejected object, not a failed list.
 */
import {
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  ListWatch,
  Watch,
} from '@kubernetes/client-node';
import { kubeListAll } from '../../shared/kube.js';
import type { Logger } from '../../shared/log.js';
import type { ResourceKind, ServiceCache } from '../services/cache.js';
import { SERVICE_NAME_LABEL, slimEndpointSlice, slimNode, slimService } from './objects.js';

interface ResourceSpec {
  kind: ResourceKind;
  path: string;
  labelSelector?: string;
  slim: (raw: unknown) => unknown;
}

/**
 * What the agent watches. Like kube-proxy, it leaves Services (and their slices) labelled for
 * another proxy (service.kubernetes.io/service-proxy-name) alone, and headless Services' slices
 * are not even listed.
 */
export const watchedResources: readonly ResourceSpec[] = [
  {
    kind: 'Service',
    path: '/api/v1/services',
    labelSelector: '!service.kubernetes.io/service-proxy-name',
    slim: slimService,
  },
  {
    kind: 'EndpointSlice',
    path: '/apis/discovery.k8s.io/v1/endpointslices',
    labelSelector: `${SERVICE_NAME_LABEL},!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name`,
    slim: slimEndpointSlice,
  },
  { kind: 'Node', path: '/api/v1/nodes', slim: slimNode },
];

export interface InformerStatus {
  kind: ResourceKind;
  path: string;
  /** The first list has reached the cache. */
  synced: boolean;
  /** The last list or watch request succeeded and no error came since. */
  connected: boolean;
  objects: number;
  /** Lists and watches re-established after an error. */
  reconnects: number;
  /** ms since the epoch. */
  lastListAt?: number;
  lastError?: string;
  lastErrorAt?: number;
}

type WatchPhase = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR' | string;

/**
 * The Watch ListWatch uses: slims objects before they are cached, asks for bookmarks and a
 * server-side timeout, reports whether the request got through, and answers the first request
 * after an error with 410 Gone, which makes ListWatch relist.
 */
class AgentWatch extends Watch {
  relistNext = false;
  /**
   * Set by stop(): ListWatch goes on from a list that was in flight when it was stopped and
   * opens a watch afterwards, which would then stay open for good. No watch starts once
   * stopped, and one that was starting is aborted.
   */
  stopped = false;
  /** A watch request is about to go out: whatever the list before it held is in the cache. */
  onWatchStart?: () => void;
  /** The watch request got through. */
  onConnected?: () => void;
  private readonly slim: (raw: unknown) => unknown;
  private readonly log: Logger;

  constructor(kc: KubeConfig, slim: (raw: unknown) => unknown, log: Logger) {
    super(kc);
    this.slim = slim;
    this.log = log;
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: WatchPhase, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    if (this.stopped) return new AbortController();
    if (this.relistNext) {
      this.relistNext = false;
      done(Object.assign(new Error('relisting after an error'), { statusCode: 410 }));
      return new AbortController();
    }
    this.onWatchStart?.();
    let failed = false;
    const params = {
      ...queryParams,
      allowWatchBookmarks: true,
      timeoutSeconds: 300 + Math.floor(Math.random() * 300),
    };
    const onEvent = (phase: WatchPhase, obj: unknown, raw?: unknown) => {
      if (phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED') {
        const slim = this.slim(obj) as { metadata?: { name?: unknown } } | undefined;
        if (!slim || typeof slim.metadata?.name !== 'string') {
          this.log.warn({ path, phase }, 'watch event without an object name; skipped');
          return;
        }
        callback(phase, slim, raw);
        return;
      }
      callback(phase, obj, raw);
    };
    const controller = await super.watch(path, params, onEvent, (err: unknown) => {
      if (err) failed = true;
      done(err);
    });
    if (this.stopped) controller.abort();
    else if (!failed) this.onConnected?.();
    return controller;
  }
}

/** One resource's ListWatch, kept alive across errors. */
export class ResourceInformer {
  readonly spec: ResourceSpec;
  readonly status: InformerStatus;
  private readonly lw: ListWatch<KubernetesObject>;
  private readonly watch: AgentWatch;
  private readonly log: Logger;
  private readonly onReconnect: () => void;
  private failures = 0;
  private timer?: NodeJS.Timeout;
  private stopped = true;
  private resolveSynced!: () => void;
  readonly synced: Promise<void>;

  constructor(opts: {
    kc: KubeConfig;
    spec: ResourceSpec;
    cache: ServiceCache;
    log: Logger;
    onReconnect: () => void;
  }) {
    this.spec = opts.spec;
    this.log = opts.log.child({ resource: opts.spec.kind });
    this.onReconnect = opts.onReconnect;
    this.status = {
      kind: opts.spec.kind,
      path: opts.spec.path,
      synced: false,
      connected: false,
      objects: 0,
      reconnects: 0,
    };
    this.synced = new Promise((r) => {
      this.resolveSynced = r;
    });
    const { kind } = opts.spec;
    const cache = opts.cache;
    this.watch = new AgentWatch(opts.kc, opts.spec.slim, this.log);
    this.watch.onWatchStart = () => this.markSynced();
    this.watch.onConnected = () => this.connected();
    const list = async (): Promise<KubernetesListObject<KubernetesObject>> => {
      // Slimmed page by page: the full objects of a large list are never all in memory at once.
      const raw = await kubeListAll(opts.kc, opts.spec.path, {
        labelSelector: opts.spec.labelSelector,
        item: (item) => {
          const slim = opts.spec.slim(item) as KubernetesObject | undefined;
          if (slim && typeof slim.metadata?.name === 'string') return slim;
          this.log.warn({ path: opts.spec.path }, 'listed object without a name; skipped');
          return undefined;
        },
      });
      this.status.lastListAt = Date.now();
      this.connected();
      return {
        apiVersion: raw.apiVersion,
        kind: raw.kind,
        metadata: raw.metadata,
        items: raw.items as KubernetesObject[],
      };
    };
    this.lw = new ListWatch<KubernetesObject>(
      opts.spec.path,
      this.watch,
      list,
      false,
      opts.spec.labelSelector,
    );
    const guard = (what: string, fn: (obj: KubernetesObject) => void) => (obj: KubernetesObject) => {
      try {
        fn(obj);
      } catch (err) {
        // Never into ListWatch: an exception there would end the informer.
        this.log.error(
          { err: err instanceof Error ? err.stack : String(err), event: what },
          'event handler failed',
        );
      }
    };
    this.lw.on(
      'add',
      guard('add', (o) => cache.upsert(kind, o, 'add')),
    );
    this.lw.on(
      'update',
      guard('update', (o) => cache.upsert(kind, o, 'update')),
    );
    this.lw.on(
      'delete',
      guard('delete', (o) => cache.remove(kind, o)),
    );
    this.lw.on('error', (err: unknown) => this.failed(err));
  }

  start(): void {
    this.stopped = false;
    this.watch.stopped = false;
    void this.lw.start().catch((err: unknown) => this.failed(err));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watch.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.lw.stop();
  }

  objects(): number {
    return this.lw.list().length;
  }

  /** ListWatch calls watch() only after the list's objects went through the handlers. */
  private markSynced(): void {
    if (this.status.synced) return;
    this.status.synced = true;
    this.resolveSynced();
  }

  private connected(): void {
    if (!this.status.connected) {
      if (this.failures > 0) {
        this.status.reconnects++;
        this.onReconnect();
        this.log.info({ after: this.failures }, 'connected to the API server again');
      }
      this.status.connected = true;
    }
    this.failures = 0;
    this.status.objects = this.objects();
  }

  private failed(err: unknown): void {
    if (this.stopped) return;
    this.failures++;
    this.status.connected = false;
    this.status.lastError = errorText(err);
    this.status.lastErrorAt = Date.now();
    const base = Math.min(500 * 2 ** Math.min(this.failures - 1, 5), 15_000);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.log.warn(
      { err: this.status.lastError, attempt: this.failures, retryInMs: delay },
      'lost the API server; the datapath keeps the last state, retrying with a fresh list',
    );
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.stopped) return;
      this.watch.relistNext = true;
      void this.lw.start().catch((e: unknown) => this.failed(e));
    }, delay);
  }
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    const cause = (err as { cause?: unknown }).cause;
    const causeCode = cause instanceof Error ? (cause as NodeJS.ErrnoException).code : undefined;
    return [err.message, code ?? causeCode].filter(Boolean).join(' ');
  }
  if (typeof err === 'object' && err !== null) return JSON.stringify(err).slice(0, 300);
  return String(err);
}

/** The three informers of the load-balancer, over one cache. */
export class ServiceInformers {
  readonly informers: ResourceInformer[];

  constructor(opts: {
    kc: KubeConfig;
    cache: ServiceCache;
    log: Logger;
    onReconnect: (kind: ResourceKind) => void;
  }) {
    this.informers = watchedResources.map(
      (spec) =>
        new ResourceInformer({
          kc: opts.kc,
          spec,
          cache: opts.cache,
          log: opts.log,
          onReconnect: () => opts.onReconnect(spec.kind),
        }),
    );
    for (const inf of this.informers) void inf.synced.then(() => opts.cache.markSynced(inf.spec.kind));
  }

  start(): void {
    for (const inf of this.informers) inf.start();
  }

  /** Resolves once every informer's first list is in the cache. */
  async synced(): Promise<void> {
    await Promise.all(this.informers.map((i) => i.synced));
  }

  async stop(): Promise<void> {
    await Promise.all(this.informers.map((i) => i.stop()));
  }

  status(): InformerStatus[] {
    return this.informers.map((i) => ({ ...i.status, objects: i.objects() }));
  }

  /** Connected: every informer's last request got through. */
  get connected(): boolean {
    return this.informers.every((i) => i.status.connected);
  }
}
