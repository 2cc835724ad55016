import { ApiError, gone } from './api-status.js';
import type { Journal, JournalRecord } from './journal.js';
import type { JsonObject } from './json-value.js';

/**
 * Objects in memory, one collection per resource type, under one global resourceVersion counter
 * (like etcd's revision). Every write gets the next version, goes to the journal, and becomes a
 * watch event kept in a bounded history; watches and paginated lists older than that history
 * get 410 Expired. Objects held here are never mutated: a write stores a new object.
 */
export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoreEvent {
  rv: number;
  type: EventType;
  typeId: string;
  key: string;
  namespace: string;
  object: JsonObject;
  /** The object before this write (undefined for ADDED). */
  previous: JsonObject | undefined;
  /** `object` as JSON, serialized once for the journal and every watcher. */
  objectJson: string;
  /** The whole watch line for watchers that see the event as it is, built by the first of them. */
  watchLine?: string;
}

export type EventListener = (event: StoreEvent) => void;

export function objectKey(namespace: string | undefined, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

/** JSON of stored objects, which never change once stored: serialized once, reused by lists. */
const serialized = new WeakMap<JsonObject, string>();

export function jsonOf(o: JsonObject): string {
  let text = serialized.get(o);
  if (text === undefined) {
    text = JSON.stringify(o);
    serialized.set(o, text);
  }
  return text;
}

export class ObjectStore {
  private readonly collections = new Map<string, Map<string, JsonObject>>();
  private readonly sortedKeys = new Map<string, string[]>();
  private readonly listeners = new Map<string, Set<EventListener>>();
  private history: StoreEvent[] = [];
  private rv = 0;
  /** Every event with rv > this is still in `history`. */
  private historyStartRv = 0;
  private journal: Journal | undefined;

  constructor(private readonly historyLimit: number) {}

  get resourceVersion(): number {
    return this.rv;
  }

  get oldestRetainedVersion(): number {
    return this.historyStartRv;
  }

  /** Rebuilds the collections from journal records; returns how many objects were loaded. */
  load(records: JournalRecord[]): number {
    for (const r of records) {
      if (r.rv > this.rv) this.rv = r.rv;
      if (r.t === '@rv') continue;
      const rec = r as { t: string; k: string; o?: JsonObject; d?: 1 };
      const coll = this.collection(rec.t);
      if (rec.d) coll.delete(rec.k);
      else if (rec.o) coll.set(rec.k, rec.o);
    }
    this.sortedKeys.clear();
    this.historyStartRv = this.rv;
    let n = 0;
    for (const c of this.collections.values()) n += c.size;
    return n;
  }

  attachJournal(journal: Journal): void {
    this.journal = journal;
  }

  *entries(): Generator<{ t: string; k: string; o: JsonObject }> {
    for (const [t, coll] of this.collections) for (const [k, o] of coll) yield { t, k, o };
  }

  private collection(typeId: string): Map<string, JsonObject> {
    let c = this.collections.get(typeId);
    if (!c) {
      c = new Map();
      this.collections.set(typeId, c);
    }
    return c;
  }

  get(typeId: string, key: string): JsonObject | undefined {
    return this.collections.get(typeId)?.get(key);
  }

  /** Objects of a type in key order (namespace/name), optionally in one namespace. */
  list(typeId: string, namespace?: string): JsonObject[] {
    const coll = this.collections.get(typeId);
    if (!coll) return [];
    const out: JsonObject[] = [];
    for (const key of this.keysOf(typeId)) {
      if (namespace && !key.startsWith(`${namespace}/`)) continue;
      out.push(coll.get(key)!);
    }
    return out;
  }

  keysOf(typeId: string): string[] {
    let keys = this.sortedKeys.get(typeId);
    if (!keys) {
      keys = [...(this.collections.get(typeId)?.keys() ?? [])].sort();
      this.sortedKeys.set(typeId, keys);
    }
    return keys;
  }

  count(typeId: string): number {
    return this.collections.get(typeId)?.size ?? 0;
  }

  /** Writes are refused (500) while the journal cannot be written: nothing unrecorded is acknowledged. */
  private checkWritable(): void {
    const failure = this.journal?.failure;
    if (failure) {
      throw new ApiError(
        500,
        'InternalError',
        `Internal error occurred: the journal in the data directory cannot be written: ${failure.message}`,
      );
    }
  }

  /** Stores an object under the next resourceVersion and returns it as stored. */
  put(typeId: string, key: string, object: JsonObject): JsonObject {
    this.checkWritable();
    const coll = this.collection(typeId);
    const previous = coll.get(key);
    const rv = ++this.rv;
    const stored: JsonObject = {
      ...object,
      metadata: { ...(object.metadata as JsonObject), resourceVersion: String(rv) },
    };
    coll.set(key, stored);
    if (!previous) this.sortedKeys.delete(typeId);
    this.record(previous ? 'MODIFIED' : 'ADDED', typeId, key, stored, previous, rv);
    return stored;
  }

  /** Removes an object; the DELETED event carries it with a new resourceVersion. */
  delete(typeId: string, key: string): JsonObject | undefined {
    const coll = this.collections.get(typeId);
    const previous = coll?.get(key);
    if (!coll || !previous) return undefined;
    this.checkWritable();
    coll.delete(key);
    this.sortedKeys.delete(typeId);
    const rv = ++this.rv;
    const last: JsonObject = {
      ...previous,
      metadata: { ...(previous.metadata as JsonObject), resourceVersion: String(rv) },
    };
    this.record('DELETED', typeId, key, last, previous, rv);
    return last;
  }

  private record(
    type: EventType,
    typeId: string,
    key: string,
    object: JsonObject,
    previous: JsonObject | undefined,
    rv: number,
  ): void {
    const objectJson = jsonOf(object);
    const slash = key.indexOf('/');
    const event: StoreEvent = {
      rv,
      type,
      typeId,
      key,
      namespace: slash >= 0 ? key.slice(0, slash) : '',
      object,
      previous,
      objectJson,
    };
    if (this.journal) {
      const head = `{"rv":${rv},"t":${JSON.stringify(typeId)},"k":${JSON.stringify(key)}`;
      this.journal.appendLine(type === 'DELETED' ? `${head},"d":1}` : `${head},"o":${objectJson}}`);
    }
    this.history.push(event);
    if (this.history.length > this.historyLimit * 1.25) {
      const drop = this.history.length - this.historyLimit;
      this.historyStartRv = this.history[drop - 1]!.rv;
      this.history = this.history.slice(drop);
    }
    const listeners = this.listeners.get(typeId);
    if (listeners) for (const l of listeners) l(event);
  }

  subscribe(typeId: string, listener: EventListener): () => void {
    let set = this.listeners.get(typeId);
    if (!set) {
      set = new Set();
      this.listeners.set(typeId, set);
    }
    set.add(listener);
    return () => set!.delete(listener);
  }

  /** Events of a type after `rv`, or 410 when they are no longer retained. */
  eventsSince(typeId: string, rv: number): StoreEvent[] {
    if (rv < this.historyStartRv) {
      throw gone(`too old resource version: ${rv} (${this.historyStartRv + 1})`);
    }
    const out: StoreEvent[] = [];
    // history is ordered by rv: binary search the first event after rv.
    let lo = 0;
    let hi = this.history.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.history[mid]!.rv <= rv) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.history.length; i++) {
      const e = this.history[i]!;
      if (e.typeId === typeId) out.push(e);
    }
    return out;
  }

  /**
   * The objects of a type as they were at `rv` (consistent paginated lists, resourceVersionMatch
   * Exact): current objects with every later change undone from the retained history.
   */
  snapshotAt(typeId: string, rv: number): Map<string, JsonObject> {
    const later = this.eventsSince(typeId, rv);
    const snapshot = new Map(this.collections.get(typeId) ?? []);
    for (let i = later.length - 1; i >= 0; i--) {
      const e = later[i]!;
      if (e.previous) snapshot.set(e.key, e.previous);
      else snapshot.delete(e.key);
    }
    return snapshot;
  }

  /** Drops a whole collection (a deleted CRD's objects), emitting DELETED for each, then ends its watches. */
  dropCollection(typeId: string): number {
    const keys = [...this.keysOf(typeId)];
    for (const k of keys) this.delete(typeId, k);
    const ends = this.dropListeners.get(typeId);
    this.dropListeners.delete(typeId);
    for (const end of ends ?? []) end();
    return keys.length;
  }

  private readonly dropListeners = new Map<string, Set<() => void>>();

  /** Called when a type's collection is dropped (its CRD deleted); returns the unsubscribe. */
  onDrop(typeId: string, listener: () => void): () => void {
    let set = this.dropListeners.get(typeId);
    if (!set) {
      set = new Set();
      this.dropListeners.set(typeId, set);
    }
    set.add(listener);
    return () => set!.delete(listener);
  }
}
