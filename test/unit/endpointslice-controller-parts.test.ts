import { describe, expect, it } from 'vitest';
import { SliceExpectations } from '../../src/devcluster/controllers/endpointslice-expectations.js';
import { WorkQueue } from '../../src/devcluster/controllers/endpointslice-workqueue.js';

/** The EndpointSlice controller's queue and write tracking, without an API server. */

const slice = (name: string, resourceVersion: string) => ({ metadata: { name, resourceVersion } });

describe('the work queue', () => {
  it('queues a key once however many events name it', async () => {
    const queue = new WorkQueue({ initialMs: 10, maxMs: 100 });
    queue.add('ns/a');
    queue.add('ns/a');
    queue.add('ns/b');
    expect(queue.length).toBe(2);
    expect(await queue.get()).toBe('ns/a');
    expect(await queue.get()).toBe('ns/b');
  });

  it('never hands out a key being processed, and processes it again if it changed meanwhile', async () => {
    const queue = new WorkQueue({ initialMs: 10, maxMs: 100 });
    queue.add('ns/a');
    const first = await queue.get();
    queue.add('ns/a');
    expect(queue.length).toBe(0);
    queue.done(first as string);
    expect(queue.length).toBe(1);
    expect(await queue.get()).toBe('ns/a');
  });

  it('wakes a waiting worker when a key arrives', async () => {
    const queue = new WorkQueue({ initialMs: 10, maxMs: 100 });
    const waiting = queue.get();
    queue.add('ns/late');
    expect(await waiting).toBe('ns/late');
  });

  it('doubles the retry delay per consecutive failure up to the maximum, and forgets on success', () => {
    const queue = new WorkQueue({ initialMs: 100, maxMs: 1000 });
    const delays = Array.from({ length: 6 }, () => queue.addRateLimited('ns/a'));
    expect(delays).toEqual([100, 200, 400, 800, 1000, 1000]);
    queue.forget('ns/a');
    expect(queue.addRateLimited('ns/a')).toBe(100);
    queue.shutDown();
  });

  it('brings a failed key back after its delay', async () => {
    const queue = new WorkQueue({ initialMs: 1, maxMs: 1 });
    queue.addRateLimited('ns/retry');
    expect(await queue.get()).toBe('ns/retry');
  });

  it('releases waiting workers on shutdown', async () => {
    const queue = new WorkQueue({ initialMs: 10, maxMs: 100 });
    const waiting = queue.get();
    queue.shutDown();
    expect(await waiting).toBeUndefined();
    queue.add('ns/a');
    expect(await queue.get()).toBeUndefined();
  });
});

describe('write expectations', () => {
  it.each([
    { name: 'a created slice not yet in the cache', cached: [], unmet: ['web-abc'] },
    { name: 'the cache at an older version', cached: [slice('web-abc', '41')], unmet: ['web-abc'] },
    { name: 'the cache at the written version', cached: [slice('web-abc', '42')], unmet: [] },
    { name: 'the cache at a newer version', cached: [slice('web-abc', '100')], unmet: [] },
  ])('after writing version 42: $name → unmet $unmet', ({ cached, unmet }) => {
    const expectations = new SliceExpectations(30_000);
    expectations.expectVersion('ns/web', 'web-abc', '42');
    expect(expectations.unmet('ns/web', cached)).toEqual(unmet);
  });

  it('waits for a deleted slice to leave the cache', () => {
    const expectations = new SliceExpectations(30_000);
    expectations.expectDeletion('ns/web', 'web-abc');
    expect(expectations.unmet('ns/web', [slice('web-abc', '7')])).toEqual(['web-abc']);
    expect(expectations.unmet('ns/web', [])).toEqual([]);
  });

  it('stops waiting after the timeout', () => {
    let now = 1_000;
    const expectations = new SliceExpectations(5_000, () => now);
    expectations.expectVersion('ns/web', 'web-abc', '42');
    expect(expectations.unmet('ns/web', [])).toEqual(['web-abc']);
    now += 5_001;
    expect(expectations.unmet('ns/web', [])).toEqual([]);
  });

  it('keeps Services apart', () => {
    const expectations = new SliceExpectations(30_000);
    expectations.expectVersion('ns/web', 'web-abc', '42');
    expect(expectations.unmet('ns/db', [])).toEqual([]);
  });

  it('compares opaque (non-numeric) versions for equality only', () => {
    const expectations = new SliceExpectations(30_000);
    expectations.expectVersion('ns/web', 'web-abc', 'v-b');
    expect(expectations.unmet('ns/web', [slice('web-abc', 'v-a')])).toEqual(['web-abc']);
    expect(expectations.unmet('ns/web', [slice('web-abc', 'v-b')])).toEqual([]);
  });
});
