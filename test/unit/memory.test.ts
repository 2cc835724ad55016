import { describe, expect, it } from 'vitest';
import { collectGarbage } from '../../src/shared/memory.js';

describe('collectGarbage', () => {
  it('frees what nothing references any more, without --expose-gc', async () => {
    let ref: WeakRef<object> | undefined;
    (() => {
      ref = new WeakRef({ payload: new Array(100_000).fill(1) });
    })();
    // A WeakRef's target stays alive until the job that created (or last dereferenced) it ends.
    await new Promise((r) => setTimeout(r, 0));
    collectGarbage();
    expect(ref?.deref()).toBeUndefined();
    // And again (the collector is kept, not taken twice).
    expect(() => collectGarbage()).not.toThrow();
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
  });
});
