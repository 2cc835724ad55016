import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { AGENT_NODE_FLAGS } from '../../src/agent/config.js';
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

describe('collectGarbage({ compact: true })', () => {
  // A heap like the agent's after its first sync: what lives on (a quarter of it) scattered over
  // pages that are otherwise garbage. Run in a child of its own with the agent's V8 flags, so
  // nothing else shares its heap.
  const script = (compact: boolean) => `
    const { getHeapSpaceStatistics } = await import('node:v8');
    const { collectGarbage } = await import(${JSON.stringify(new URL('../../src/shared/memory.ts', import.meta.url).href)});
    const keep = [];
    let junk = [];
    for (let i = 0; i < 600000; i++) {
      const o = { a: i, b: 'x' + i, c: [i, i + 1] };
      if (i % 4 === 0) keep.push(o); else junk.push(o);
      if (junk.length > 50000) junk = [];
    }
    junk = null;
    collectGarbage({ compact: ${compact} });
    const old = getHeapSpaceStatistics().find((s) => s.space_name === 'old_space');
    console.log(JSON.stringify({ committed: old.space_size, used: old.space_used_size, kept: keep.length }));`;
  const run = (compact: boolean) =>
    JSON.parse(
      execFileSync(
        process.execPath,
        [...AGENT_NODE_FLAGS, '--import', 'tsx', '--input-type=module', '-e', script(compact)],
        {
          encoding: 'utf8',
        },
      ),
    ) as { committed: number; used: number; kept: number };

  it('gives back the old-space pages the survivors shared with garbage', () => {
    const plain = run(false);
    const compacted = run(true);
    expect(compacted.kept).toBe(150_000);
    expect(compacted.committed).toBeLessThan(compacted.used * 1.25 + 2 ** 21);
    expect(plain.committed).toBeGreaterThan(compacted.committed * 1.5);
  });
});
