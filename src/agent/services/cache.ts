/**
 * The agent's input: every Service, EndpointSlice and Node it has been told about, validated,
 * indexed by the Service they concern, with the set of Services whose inputs changed since the
 * reconciler last looked ("dirty", as a client-go workqueue holds keys). The informers fill it;
 * tests fill it the same way, with the same raw objects.
 *
 * An event costs O(that object): an EndpointSlice change dirties one Service, a Node whose
 * InternalIPs changed dirties the NodePort Services, a Node heartbeat dirties nothing.
 */
import { objectRef, type Parsed, parseEndpointSlice, parseNode, parseService } from '../k8s/objects.js';
import { dependsOnNodes } from './desired.js';
import {
  type EndpointSliceInfo,
  type NodeInfo,
  type ServiceInfo,
  type ServiceKey,
  serviceKey,
} from './types.js';

export const resourceKinds = ['Service', 'EndpointSlice', 'Node'] as const;
export type ResourceKind = (typeof resourceKinds)[number];

/** What an event did to the cache. */
export type CacheOutcome = 'added' | 'updated' | 'deleted' | 'unchanged' | 'invalid' | 'ignored';

export interface InvalidObject {
  kind: ResourceKind;
  /** namespace/name, or name for Nodes. */
  name: string;
  reason: string;
  /** ms since the epoch. */
  since: number;
}

export interface CacheEvent {
  kind: ResourceKind;
  action: 'add' | 'update' | 'delete';
  outcome: CacheOutcome;
  name: string;
  reason?: string;
}

function same<T>(a: T | undefined, b: T): boolean {
  return a !== undefined && JSON.stringify(a) === JSON.stringify(b);
}

const noSlices: readonly EndpointSliceInfo[] = Object.freeze([]);

function sliceIndex(list: readonly EndpointSliceInfo[], name: string): number {
  for (let i = 0; i < list.length; i++) if (list[i]!.name === name) return i;
  return -1;
}

function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

export class ServiceCache {
  private readonly services = new Map<ServiceKey, ServiceInfo>();
  /**
   * A Service's EndpointSlices, sorted by name: nearly always one or two, so an array (a Map per
   * Service cost ≈180 bytes more each, and a copy per lookup).
   */
  private readonly slicesByService = new Map<ServiceKey, EndpointSliceInfo[]>();
  /** "namespace/slice" → the Service it was filed under. */
  private readonly sliceOwner = new Map<string, ServiceKey>();
  private readonly nodes = new Map<string, NodeInfo>();
  private nodeList: NodeInfo[] | undefined;
  private readonly nodeDependent = new Set<ServiceKey>();
  /** Handed over whole by takeDirty, which starts a new one. */
  private dirty = new Set<ServiceKey>();
  private readonly invalidObjects = new Map<string, InvalidObject>();
  private readonly syncedKinds = new Set<ResourceKind>();
  /** Called after every event that dirtied a Service (to schedule a sync). */
  onDirty?: () => void;
  /** Called for every event, whatever it did (metrics, logs). */
  onEvent?: (e: CacheEvent) => void;
  /** Called when a Node's InternalIPs change (the agent follows its own node's). */
  onNodeChange?: (name: string, node: NodeInfo | undefined) => void;

  upsert(kind: ResourceKind, raw: unknown, action: 'add' | 'update' = 'update'): CacheOutcome {
    let result: { outcome: CacheOutcome; reason?: string };
    switch (kind) {
      case 'Service':
        result = this.upsertService(raw);
        break;
      case 'EndpointSlice':
        result = this.upsertSlice(raw);
        break;
      case 'Node':
        result = this.upsertNode(raw);
        break;
    }
    this.emit(kind, action, raw, result);
    return result.outcome;
  }

  remove(kind: ResourceKind, raw: unknown): CacheOutcome {
    let outcome: CacheOutcome = 'unchanged';
    const name = objectRef(raw);
    this.invalidObjects.delete(`${kind}/${name}`);
    switch (kind) {
      case 'Service':
        if (this.services.delete(name)) {
          this.nodeDependent.delete(name);
          this.markDirty(name);
          outcome = 'deleted';
        }
        break;
      case 'EndpointSlice':
        if (this.dropSlice(name)) outcome = 'deleted';
        break;
      case 'Node':
        if (this.nodes.has(name)) {
          const had = this.nodes.get(name)!;
          this.nodes.delete(name);
          this.nodeList = undefined;
          if (had.internalIPs.length > 0) this.dirtyNodeDependents();
          this.onNodeChange?.(name, undefined);
          outcome = 'deleted';
        }
        break;
    }
    this.emit(kind, 'delete', raw, { outcome });
    return outcome;
  }

  /** The informer of `kind` has delivered its first full list. */
  markSynced(kind: ResourceKind): void {
    this.syncedKinds.add(kind);
  }

  isSynced(kind?: ResourceKind): boolean {
    return kind ? this.syncedKinds.has(kind) : resourceKinds.every((k) => this.syncedKinds.has(k));
  }

  markDirty(key: ServiceKey): void {
    const was = this.dirty.size;
    this.dirty.add(key);
    if (this.dirty.size !== was) this.onDirty?.();
  }

  /**
   * The dirty Services, forgetting them: the cache's own set, handed over (the caller may change
   * it), not a copy; on a start that is every Service.
   */
  takeDirty(): Set<ServiceKey> {
    const out = this.dirty;
    this.dirty = new Set();
    return out;
  }

  get dirtyCount(): number {
    return this.dirty.size;
  }

  /** Adds the key of every Service in the cache to `keys` (a full sync's). */
  addServiceKeysTo(keys: Set<ServiceKey>): void {
    // forEach, not for-of: the first sync runs cold, where an iterator allocates per step.
    this.services.forEach((_, key) => {
      keys.add(key);
    });
  }

  service(key: ServiceKey): ServiceInfo | undefined {
    return this.services.get(key);
  }

  /** The Service's EndpointSlices, sorted by name (the cache's own array: do not change it). */
  slicesOf(key: ServiceKey): readonly EndpointSliceInfo[] {
    return this.slicesByService.get(key) ?? noSlices;
  }

  node(name: string): NodeInfo | undefined {
    return this.nodes.get(name);
  }

  allNodes(): readonly NodeInfo[] {
    this.nodeList ??= [...this.nodes.values()].sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
    return this.nodeList;
  }

  invalid(): InvalidObject[] {
    return [...this.invalidObjects.values()];
  }

  counts(): { services: number; endpointSlices: number; nodes: number } {
    return { services: this.services.size, endpointSlices: this.sliceOwner.size, nodes: this.nodes.size };
  }

  // ---- internals --------------------------------------------------------------------------

  private upsertService(raw: unknown): { outcome: CacheOutcome; reason?: string } {
    const p = parseService(raw);
    if (!p.ok) return this.rejected('Service', raw, p);
    const svc = p.value;
    const key = serviceKey(svc.namespace, svc.name);
    this.invalidObjects.delete(`Service/${key}`);
    const had = this.services.get(key);
    if (same(had, svc)) return { outcome: 'unchanged' };
    this.services.set(key, svc);
    if (dependsOnNodes(svc)) this.nodeDependent.add(key);
    else this.nodeDependent.delete(key);
    this.markDirty(key);
    return { outcome: had ? 'updated' : 'added' };
  }

  private upsertSlice(raw: unknown): { outcome: CacheOutcome; reason?: string } {
    const p = parseEndpointSlice(raw);
    const ref = objectRef(raw);
    if (!p.ok) {
      if (p.invalid) return this.rejected('EndpointSlice', raw, p);
      // Not ours (any more): an FQDN slice, or one that lost its service-name label.
      return { outcome: this.dropSlice(ref) ? 'deleted' : 'ignored', reason: p.reason };
    }
    const slice = p.value;
    this.invalidObjects.delete(`EndpointSlice/${ref}`);
    const owner = serviceKey(slice.namespace, slice.serviceName);
    const previousOwner = this.sliceOwner.get(ref);
    if (previousOwner !== undefined && previousOwner !== owner) this.dropSlice(ref);
    const list = this.slicesByService.get(owner);
    const at = list ? sliceIndex(list, slice.name) : -1;
    const had = at >= 0 ? list![at] : undefined;
    if (same(had, slice)) return { outcome: 'unchanged' };
    if (!list) this.slicesByService.set(owner, [slice]);
    else if (had) list[at] = slice;
    else {
      list.push(slice);
      list.sort(byName);
    }
    this.sliceOwner.set(ref, owner);
    this.markDirty(owner);
    return { outcome: had ? 'updated' : 'added' };
  }

  private dropSlice(ref: string): boolean {
    const owner = this.sliceOwner.get(ref);
    if (owner === undefined) return false;
    this.sliceOwner.delete(ref);
    const list = this.slicesByService.get(owner);
    const at = list ? sliceIndex(list, ref.slice(ref.indexOf('/') + 1)) : -1;
    if (at >= 0) {
      if (list!.length === 1) this.slicesByService.delete(owner);
      else list!.splice(at, 1);
    }
    this.markDirty(owner);
    return true;
  }

  private upsertNode(raw: unknown): { outcome: CacheOutcome; reason?: string } {
    const p = parseNode(raw);
    if (!p.ok) return this.rejected('Node', raw, p);
    const node = p.value;
    this.invalidObjects.delete(`Node/${node.name}`);
    const had = this.nodes.get(node.name);
    if (same(had, node)) return { outcome: 'unchanged' };
    this.nodes.set(node.name, node);
    this.nodeList = undefined;
    if (JSON.stringify(had?.internalIPs ?? []) !== JSON.stringify(node.internalIPs)) {
      this.dirtyNodeDependents();
    }
    this.onNodeChange?.(node.name, node);
    return { outcome: had ? 'updated' : 'added' };
  }

  private dirtyNodeDependents(): void {
    for (const key of this.nodeDependent) this.markDirty(key);
  }

  private rejected(
    kind: ResourceKind,
    raw: unknown,
    p: Extract<Parsed<unknown>, { ok: false }>,
  ): { outcome: CacheOutcome; reason: string } {
    const name = objectRef(raw);
    // The last good version stays in place: a bad update never removes what works.
    this.invalidObjects.set(`${kind}/${name}`, { kind, name, reason: p.reason, since: Date.now() });
    return { outcome: 'invalid', reason: p.reason };
  }

  private emit(
    kind: ResourceKind,
    action: CacheEvent['action'],
    raw: unknown,
    r: { outcome: CacheOutcome; reason?: string },
  ) {
    if (!this.onEvent) return;
    const e: CacheEvent = { kind, action, outcome: r.outcome, name: objectRef(raw) };
    if (r.reason) e.reason = r.reason;
    this.onEvent(e);
  }
}
