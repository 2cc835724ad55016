/**
 * The writes a controller made for one key (a ReplicaSet) that its informer cache does not
 * show yet, as client-go's ControllerExpectations: created objects by name, deleted ones by
 * name. While any is unmet, a sync would count from a cache missing its own writes and create
 * or delete twice, so the controller waits (requeues) instead. Expectations expire.
 */
export interface CachedObject {
  metadata?: { name?: string; deletionTimestamp?: Date | string };
}

export class WriteExpectations {
  private readonly byKey = new Map<string, Map<string, { deleted: boolean; until: number }>>();

  constructor(
    private readonly timeoutMs: number,
    private readonly clock: () => number = Date.now,
  ) {}

  expectCreation(key: string, name: string): void {
    this.entry(key).set(name, { deleted: false, until: this.clock() + this.timeoutMs });
  }

  /** Met when the object is gone from the cache or marked for deletion there. */
  expectDeletion(key: string, name: string): void {
    this.entry(key).set(name, { deleted: true, until: this.clock() + this.timeoutMs });
  }

  forget(key: string): void {
    this.byKey.delete(key);
  }

  /** Names whose expected state the cache does not show yet; met and expired ones are dropped. */
  unmet(key: string, lookup: (name: string) => CachedObject | undefined): string[] {
    const expected = this.byKey.get(key);
    if (!expected) return [];
    const now = this.clock();
    const unmet: string[] = [];
    for (const [name, want] of expected) {
      const seen = lookup(name);
      const met = want.deleted ? !seen || Boolean(seen.metadata?.deletionTimestamp) : seen !== undefined;
      if (met || now > want.until) expected.delete(name);
      else unmet.push(name);
    }
    if (expected.size === 0) this.byKey.delete(key);
    return unmet;
  }

  private entry(key: string) {
    let entry = this.byKey.get(key);
    if (!entry) {
      entry = new Map();
      this.byKey.set(key, entry);
    }
    return entry;
  }
}
