/**
 * Stable numeric ids for things the maps key by number: backend ids (per address:port:protocol)
 * and reverse-NAT indexes (per frontend). Pure: seeded from what the maps already hold, so an
 * agent that restarts gives every existing backend and frontend the id it had and rewrites
 * nothing; new keys get ids next-fit from a cursor that moves forward and wraps, so a freed id
 * is reused only after the rest of the range has been handed out (a backend that just went
 * away does not lend its id to an unrelated one while sockets and affinity entries may still
 * remember it).
 */
import type { BackendKey } from './types.js';
export class IdAllocator<K extends string | number = string> {
  readonly min: number;
  readonly max: number;
  private readonly byKey = new Map<K, number>();
  private readonly byId = new Map<number, K>();
  private cursor: number;

  /** Ids from `min` to `max` inclusive. */
  constructor(min: number, max: number) {
    if (!Number.isInteger(min) || !Number.isInteger(max) || min < 1 || max < min) {
      throw new RangeError(`id range ${min}..${max} is empty or not positive integers`);
    }
    this.min = min;
    this.max = max;
    this.cursor = min;
  }

  /**
   * Takes ids already in use (read back from the maps). A key seen twice keeps its first id and
   * an id seen twice its first key: the rejected pairs come back, for the caller to clean up.
   * The cursor moves past the highest seeded id.
   */
  seed(pairs: Iterable<readonly [K, number]>): Array<[K, number]> {
    const rejected: Array<[K, number]> = [];
    let highest = this.cursor - 1;
    for (const [key, id] of pairs) {
      if (
        !Number.isInteger(id) ||
        id < this.min ||
        id > this.max ||
        this.byKey.has(key) ||
        this.byId.has(id)
      ) {
        rejected.push([key, id]);
        continue;
      }
      this.byKey.set(key, id);
      this.byId.set(id, key);
      if (id > highest) highest = id;
    }
    this.cursor = highest >= this.max ? this.min : highest + 1;
    return rejected;
  }

  get(key: K): number | undefined {
    return this.byKey.get(key);
  }

  keyOf(id: number): K | undefined {
    return this.byId.get(id);
  }

  /** The key's id, allocating one if it has none; undefined when every id is taken. */
  allocate(key: K): number | undefined {
    const have = this.byKey.get(key);
    if (have !== undefined) return have;
    if (this.byId.size >= this.max - this.min + 1) return undefined;
    let id = this.cursor;
    while (this.byId.has(id)) id = id >= this.max ? this.min : id + 1;
    this.byKey.set(key, id);
    this.byId.set(id, key);
    this.cursor = id >= this.max ? this.min : id + 1;
    return id;
  }

  /** Frees the key's id (no-op when it has none). */
  release(key: K): void {
    const id = this.byKey.get(key);
    if (id === undefined) return;
    this.byKey.delete(key);
    this.byId.delete(id);
  }

  get size(): number {
    return this.byKey.size;
  }

  entries(): IterableIterator<[K, number]> {
    return this.byKey.entries();
  }
}

/** Backend ids: any non-zero u32 (slot values; 0 reads as "missing" in the programs). */
export function backendIdAllocator(): IdAllocator<BackendKey> {
  return new IdAllocator<BackendKey>(1, 0xffff_ffff);
}

/** Reverse-NAT indexes: a u16 shared by both families, 0 reserved. */
export function revNatAllocator(): IdAllocator {
  return new IdAllocator(1, 0xffff);
}
