import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApiError } from '../../../src/devcluster/apiserver/api-status.js';
import { Journal } from '../../../src/devcluster/apiserver/journal.js';
import type { JsonObject } from '../../../src/devcluster/apiserver/json-value.js';
import { ObjectStore } from '../../../src/devcluster/apiserver/object-store.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'weft-apiserver-journal-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const cm = (name: string, v: string): JsonObject => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace: 'default' },
  data: { v },
});

function storeWithJournal(path: string, history = 100): { store: ObjectStore; journal: Journal } {
  const store = new ObjectStore(history);
  store.load(Journal.replay(path).records);
  Journal.writeSnapshot(path, store.resourceVersion, store.entries());
  const journal = new Journal(path);
  store.attachJournal(journal);
  return { store, journal };
}

describe('journal replay', () => {
  it('a restart keeps objects, deletions, and resourceVersions that keep increasing', () => {
    const path = join(dir, 'journal.jsonl');
    const first = storeWithJournal(path);
    first.store.put('/configmaps', 'default/a', cm('a', '1'));
    first.store.put('/configmaps', 'default/b', cm('b', '1'));
    first.store.put('/configmaps', 'default/a', cm('a', '2'));
    first.store.delete('/configmaps', 'default/b');
    const lastRv = first.store.resourceVersion;
    first.journal.close();

    const second = storeWithJournal(path);
    expect(second.store.list('/configmaps').map((o) => (o.data as JsonObject).v)).toEqual(['2']);
    expect(second.store.resourceVersion).toBe(lastRv);
    const next = second.store.put('/configmaps', 'default/c', cm('c', '1'));
    expect(Number((next.metadata as JsonObject).resourceVersion)).toBe(lastRv + 1);
    second.journal.close();
  });

  it('the version of a deleted newest object is not reused after a restart', () => {
    const path = join(dir, 'journal.jsonl');
    const first = storeWithJournal(path);
    first.store.put('/configmaps', 'default/a', cm('a', '1'));
    first.store.delete('/configmaps', 'default/a');
    first.journal.close();
    const second = storeWithJournal(path);
    second.journal.close();
    const third = storeWithJournal(path);
    expect(third.store.resourceVersion).toBe(2);
    third.journal.close();
  });

  it('skips a torn last line (a crash mid-write) and keeps everything before it', () => {
    const path = join(dir, 'journal.jsonl');
    const first = storeWithJournal(path);
    first.store.put('/configmaps', 'default/a', cm('a', '1'));
    first.journal.close();
    appendFileSync(path, '{"rv":99,"t":"/configmaps","k":"default/b","o":{"metad');
    const replay = Journal.replay(path);
    expect(replay.skippedLines).toBe(1);
    const second = storeWithJournal(path);
    expect(second.store.list('/configmaps')).toHaveLength(1);
    expect(second.store.resourceVersion).toBe(1);
    second.journal.close();
  });

  it('batches writes but close() leaves every write on disk', () => {
    const path = join(dir, 'journal.jsonl');
    const { store, journal } = storeWithJournal(path);
    for (let i = 0; i < 500; i++) store.put('/configmaps', `default/c${i}`, cm(`c${i}`, String(i)));
    journal.close();
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(501);
  });
});

describe('a journal that cannot be written', () => {
  it('refuses further writes with a 500 Status instead of acknowledging what it cannot record', async () => {
    // /dev/full accepts the open and fails every write with ENOSPC, like a full disk.
    const store = new ObjectStore(100);
    const journal = new Journal('/dev/full');
    store.attachJournal(journal);
    store.put('/configmaps', 'default/a', cm('a', '1'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(journal.failure?.message).toContain('ENOSPC');
    let refused: ApiError | undefined;
    try {
      store.put('/configmaps', 'default/b', cm('b', '1'));
    } catch (err) {
      refused = err as ApiError;
    }
    expect(refused?.toStatus()).toMatchObject({ code: 500, reason: 'InternalError' });
    expect(refused?.message).toContain('the journal in the data directory cannot be written');
    expect(store.get('/configmaps', 'default/b')).toBeUndefined();
    expect(() => journal.close()).toThrow('ENOSPC');
  });
});

describe('object store history', () => {
  it('replays events after a version and answers 410 Expired once they are trimmed', () => {
    const store = new ObjectStore(10);
    for (let i = 0; i < 30; i++) store.put('/configmaps', `default/c${i % 3}`, cm(`c${i % 3}`, String(i)));
    const recent = store.eventsSince('/configmaps', 25);
    expect(recent.map((e) => e.rv)).toEqual([26, 27, 28, 29, 30]);
    expect(() => store.eventsSince('/configmaps', 2)).toThrow(ApiError);
    try {
      store.eventsSince('/configmaps', 2);
    } catch (err) {
      expect((err as ApiError).toStatus()).toMatchObject({ code: 410, reason: 'Expired' });
    }
  });

  it('dropping a collection sends DELETED for each object, then tells its watchers it is gone', () => {
    const store = new ObjectStore(100);
    store.put('example.com/widgets', 'default/a', cm('a', '1'));
    const seen: string[] = [];
    store.subscribe('example.com/widgets', (e) => seen.push(`${e.type} ${e.key}`));
    store.onDrop('example.com/widgets', () => seen.push('dropped'));
    expect(store.dropCollection('example.com/widgets')).toBe(1);
    expect(seen).toEqual(['DELETED default/a', 'dropped']);
  });

  it('reconstructs the objects as they were at an older version (consistent pages)', () => {
    const store = new ObjectStore(100);
    store.put('/configmaps', 'default/a', cm('a', '1'));
    store.put('/configmaps', 'default/b', cm('b', '1'));
    const at = store.resourceVersion;
    store.put('/configmaps', 'default/a', cm('a', '2'));
    store.delete('/configmaps', 'default/b');
    store.put('/configmaps', 'default/c', cm('c', '1'));
    const snapshot = store.snapshotAt('/configmaps', at);
    expect([...snapshot.keys()].sort()).toEqual(['default/a', 'default/b']);
    expect((snapshot.get('default/a')!.data as JsonObject).v).toBe('1');
  });
});
