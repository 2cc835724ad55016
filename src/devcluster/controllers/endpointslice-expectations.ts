import type { EndpointSliceInput } from './endpointslice-plan.js';

/**
 * What the EndpointSlice controller wrote and waits to see in its informer cache, per Service
 * (client-go's EndpointSliceTracker): a slice at a resourceVersion at least as new, or a slice
 * gone. Until then a sync would act on a cache that misses its own writes and could, say,
 * create a second slice for the same endpoints; so the controller waits (requeues) instead.
 */
export class SliceExpectations {
  private readonly byService = new Map<
    string,
    Map<string, { version?: string; deleted: boolean; until: number }>
  >();

  constructor(
    private readonly timeoutMs: number,
    private readonly clock: () => number = Date.now,
  ) {}

  expectVersion(serviceKey: string, slice: string, version: string | undefined): void {
    this.entry(serviceKey).set(slice, { version, deleted: false, until: this.clock() + this.timeoutMs });
  }

  expectDeletion(serviceKey: string, slice: string): void {
    this.entry(serviceKey).set(slice, { deleted: true, until: this.clock() + this.timeoutMs });
  }

  forget(serviceKey: string): void {
    this.byService.delete(serviceKey);
  }

  /** The slices whose expected state the cache does not show yet; met and expired ones are dropped. */
  unmet(serviceKey: string, cached: readonly EndpointSliceInput[]): string[] {
    const now = this.clock();
    const expected = this.byService.get(serviceKey);
    if (!expected) return [];
    const versions = new Map(cached.map((s) => [s.metadata?.name ?? '', s.metadata?.resourceVersion ?? '']));
    const unmet: string[] = [];
    for (const [slice, want] of expected) {
      const seen = versions.get(slice);
      const met = want.deleted
        ? seen === undefined
        : seen !== undefined && versionAtLeast(seen, want.version);
      if (met || now > want.until) expected.delete(slice);
      else unmet.push(slice);
    }
    if (expected.size === 0) this.byService.delete(serviceKey);
    return unmet;
  }

  private entry(serviceKey: string) {
    let entry = this.byService.get(serviceKey);
    if (!entry) {
      entry = new Map();
      this.byService.set(serviceKey, entry);
    }
    return entry;
  }
}

/** resourceVersions are opaque, but both etcd and the dev API server use increasing integers. */
function versionAtLeast(seen: string, wanted: string | undefined): boolean {
  if (wanted === undefined || wanted === '') return true;
  if (/^\d+$/.test(seen) && /^\d+$/.test(wanted)) return BigInt(seen) >= BigInt(wanted);
  return seen === wanted;
}
