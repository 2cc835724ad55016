/**
 * One list-and-watch loop per resource the load-balancer needs (Services, EndpointSlices,
 * Nodes), feeding the Service cache: the reflector of client-go.
 *
 * - A list (raw JSON, in pages, each object slimmed as its page arrives: objects.ts) goes to the
 *   cache as adds and updates, and as deletes for what the previous list or watch knew and this
 *   list no longer has; then a watch from the list's resourceVersion, with bookmarks, ending
 *   after 5–10 minutes (timeoutSeconds, as client-go's) so a silently dead connection is noticed.
 *   A watch that ends is opened again from the last resourceVersion; 410 Gone means a relist.
 * - On any other error (API server gone, connection refused, 5xx) it logs, backs off (0.5 s
 *   doubling to 15 s, with jitter) and relists; the datapath keeps serving the last state.
 * - A malformed object is one rejected object (the cache says why), never a failed list.
 *
 * It keeps no copy of the objects, only each one's resourceVersion by namespace/name: the
 * cache holds what the agent needs of them. client-node's ListWatch, which this replaces, kept
 * a second copy of every object, and importing it loaded client-node's models (docs/agent.md,
 * Memory). The watch is kube.ts's own, which stop() ends even before the server answers.
 */
import { type KubeClientConfig, kubeListAll, kubeWatch } from '../../shared/kube.js';
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

interface Meta {
  metadata?: { name?: unknown; namespace?: unknown; resourceVersion?: unknown };
}

function keyOf(obj: Meta): string | undefined {
  const m = obj.metadata;
  if (typeof m?.name !== 'string') return undefined;
  return typeof m.namespace === 'string' && m.namespace !== '' ? `${m.namespace}/${m.name}` : m.name;
}

function versionOf(obj: Meta): string {
  const rv = obj.metadata?.resourceVersion;
  return typeof rv === 'string' ? rv : '';
}

/** The object `remove` needs for a key: its namespace and name. */
function stub(key: string): Meta {
  const at = key.indexOf('/');
  return at < 0
    ? { metadata: { name: key } }
    : { metadata: { namespace: key.slice(0, at), name: key.slice(at + 1) } };
}

/** One resource's list-and-watch loop, kept alive across errors. */
export class ResourceInformer {
  readonly spec: ResourceSpec;
  readonly status: InformerStatus;
  private readonly kc: KubeClientConfig;
  private readonly cache: ServiceCache;
  private readonly log: Logger;
  private readonly onReconnect: () => void;
  /** namespace/name → resourceVersion of every object the cache was given. */
  private readonly known = new Map<string, string>();
  private resourceVersion = '';
  private failures = 0;
  private timer?: NodeJS.Timeout;
  private request?: AbortController;
  private stopped = true;
  /** Bumped by stop() and by every error: a loop that sees another value gives up. */
  private generation = 0;
  private resolveSynced!: () => void;
  readonly synced: Promise<void>;

  constructor(opts: {
    kc: KubeClientConfig;
    spec: ResourceSpec;
    cache: ServiceCache;
    log: Logger;
    onReconnect: () => void;
  }) {
    this.spec = opts.spec;
    this.kc = opts.kc;
    this.cache = opts.cache;
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
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.resourceVersion = '';
    this.run(++this.generation);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.generation++;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.request?.abort();
    this.request = undefined;
  }

  objects(): number {
    return this.known.size;
  }

  /** List when there is no resourceVersion to watch from, then watch. */
  private run(generation: number): void {
    void this.listAndWatch(generation).catch((err: unknown) => this.failed(generation, err));
  }

  private async listAndWatch(generation: number): Promise<void> {
    if (this.resourceVersion === '') {
      const list = await kubeListAll(this.kc, this.spec.path, {
        labelSelector: this.spec.labelSelector,
        item: (item) => {
          const slim = this.spec.slim(item) as Meta | undefined;
          if (slim && keyOf(slim) !== undefined) return slim;
          this.log.warn({ path: this.spec.path }, 'listed object without a name; skipped');
          return undefined;
        },
      });
      if (generation !== this.generation) return;
      this.status.lastListAt = Date.now();
      this.replace(list.items as Meta[]);
      this.connected();
      this.resourceVersion = list.metadata.resourceVersion ?? '';
      this.markSynced();
    }
    const params = {
      resourceVersion: this.resourceVersion,
      labelSelector: this.spec.labelSelector,
      allowWatchBookmarks: true,
      timeoutSeconds: 300 + Math.floor(Math.random() * 300),
    };
    let outcome: Error | null | undefined;
    // Set before the request, so that stop() and errors end it even before it is answered.
    const request = new AbortController();
    this.request = request;
    await kubeWatch(
      this.kc,
      this.spec.path,
      params,
      (phase, obj) => {
        if (generation === this.generation) this.onEvent(phase, obj);
      },
      (err) => {
        outcome ??= err;
        if (generation !== this.generation) return;
        if (this.request === request) this.request = undefined;
        if (err) this.failed(generation, err);
        else this.run(generation);
      },
      { signal: request.signal, idleMs: (params.timeoutSeconds + 60) * 1000 },
    );
    if (generation === this.generation && outcome === undefined) this.connected();
  }

  /** A full list: adds and updates for what it holds, deletes for what it no longer does. */
  private replace(items: Meta[]): void {
    const seen = new Set<string>();
    for (const obj of items) {
      const key = keyOf(obj)!;
      seen.add(key);
      const had = this.known.get(key);
      const rv = versionOf(obj);
      if (had !== undefined && had === rv && rv !== '') continue;
      this.known.set(key, rv);
      this.deliver(had === undefined ? 'add' : 'update', obj);
    }
    for (const key of [...this.known.keys()]) {
      if (seen.has(key)) continue;
      this.known.delete(key);
      this.deliver('delete', stub(key));
    }
  }

  private onEvent(phase: string, obj: unknown): void {
    const o = (obj ?? {}) as Meta & { code?: unknown };
    switch (phase) {
      case 'ADDED':
      case 'MODIFIED': {
        const slim = this.spec.slim(obj) as Meta | undefined;
        const key = slim ? keyOf(slim) : undefined;
        if (!slim || key === undefined) {
          this.log.warn({ phase }, 'watch event without an object name; skipped');
          break;
        }
        const had = this.known.get(key);
        this.known.set(key, versionOf(slim));
        this.deliver(had === undefined ? 'add' : 'update', slim);
        break;
      }
      case 'DELETED': {
        const key = keyOf(o);
        if (key === undefined) break;
        this.known.delete(key);
        this.deliver('delete', this.spec.slim(obj) ?? stub(key));
        break;
      }
      case 'BOOKMARK':
        break;
      case 'ERROR':
        // A Status object; 410 (the resourceVersion is too old) means a relist. The server
        // ends the watch after it, and done() follows.
        if (o.code === 410) this.resourceVersion = '';
        else this.log.warn({ status: obj }, 'watch error event');
        return;
      default:
        return;
    }
    const rv = versionOf(o);
    if (rv !== '') this.resourceVersion = rv;
  }

  private deliver(action: 'add' | 'update' | 'delete', obj: unknown): void {
    this.status.objects = this.known.size;
    try {
      if (action === 'delete') this.cache.remove(this.spec.kind, obj);
      else this.cache.upsert(this.spec.kind, obj, action);
    } catch (err) {
      // One bad object never ends the informer.
      this.log.error(
        { err: err instanceof Error ? err.stack : String(err), event: action },
        'event handler failed',
      );
    }
  }

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
    this.status.objects = this.known.size;
  }

  private failed(generation: number, err: unknown): void {
    if (this.stopped || generation !== this.generation) return;
    const g = ++this.generation;
    this.request?.abort();
    this.request = undefined;
    this.resourceVersion = '';
    if ((err as { statusCode?: unknown }).statusCode === 410) {
      // Not an error: the watch's resourceVersion is too old; relist at once.
      this.run(g);
      return;
    }
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
      if (!this.stopped && g === this.generation) this.run(g);
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
    kc: KubeClientConfig;
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
