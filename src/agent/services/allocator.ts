/**
 * Stable numeric ids for things the maps key by number: backend ids (per address:port:protocol)
 * and reverse-NAT indexes (per frontend). Pure: seeded from what the maps already hold, so an
 * agent that restarts gives every existing backend and frontend the id it had and rewrites
 * nothing; new keys get ids next-fit from a cursor that moves forward and wraps, so a freed id
 * is reused only after the rest of the range has been handed out (a backend that just went
 * away does not lend its id to an unrelated one while sockets and affinity entries may still
 * remember it).
 */
/**
 * The ids of one range and the cursor that hands them out. It counts the ids in use; which ones
 * are is the caller's to say (the reconciler's records hold the ids themselves, and it rejects
 * duplicate seeds before they get here).
 */
export class IdSpace {
  readonly min: number;
  readonly max: number;
  private cursor: number;
  private used = 0;

  /** Ids from `min` to `max` inclusive. */
  constructor(min: number, max: number) {
    if (!Number.isInteger(min) || !Number.isInteger(max) || min < 1 || max < min) {
      throw new RangeError(`id range ${min}..${max} is empty or not positive integers`);
    }
    this.min = min;
    this.max = max;
    this.cursor = min;
  }

  /** Whether `id` is one of this range's. */
  holds(id: number): boolean {
    return Number.isInteger(id) && id >= this.min && id <= this.max;
  }

  /**
   * Takes ids already in use (read back from the maps; each one held and not yet taken, which
   * the caller checked). The cursor moves past the highest of them.
   */
  seed(ids: readonly number[]): void {
    let highest = this.cursor - 1;
    for (const id of ids) if (id > highest) highest = id;
    this.used += ids.length;
    this.cursor = highest >= this.max ? this.min : highest + 1;
  }

  /**
   * The first id from the cursor on (wrapping) that is not `taken`, now in use; undefined: none
   * is free. When it gives an id, its last call of `taken` was with that id.
   */
  next(taken: (id: number) => boolean): number | undefined {
    if (this.used >= this.max - this.min + 1) return undefined;
    let id = this.cursor;
    while (taken(id)) id = id >= this.max ? this.min : id + 1;
    this.cursor = id >= this.max ? this.min : id + 1;
    this.used++;
    return id;
  }

  /** One id is free again. */
  release(): void {
    this.used--;
  }

  get size(): number {
    return this.used;
  }
}

/** Backend ids: any non-zero u32 (slot values; 0 reads as "missing" in the programs). */
export function backendIdSpace(): IdSpace {
  return new IdSpace(1, 0xffff_ffff);
}

/** Reverse-NAT indexes: a u16 shared by both families, 0 reserved. */
export function revNatSpace(): IdSpace {
  return new IdSpace(1, 0xffff);
}
