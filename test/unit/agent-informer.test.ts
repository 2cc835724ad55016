// The agent's list-and-watch loop (src/agent/k8s/informers.ts) against a scripted HTTP server
// that answers the list and watch requests as the API server would, one answer per request:
// what reaches the Service cache, which resourceVersion each watch starts from, and how the loop
// gets over a watch that ends, a 410 Gone and an API server that fails.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ResourceInformer, watchedResources } from '../../src/agent/k8s/informers.js';
import { ServiceCache } from '../../src/agent/services/cache.js';
import { type KubeClientConfig, loadKubeClientConfig } from '../../src/shared/kubeconfig.js';
import { node } from './agent-fixtures.js';

type Answer = (req: IncomingMessage, res: ServerResponse, url: URL) => void;

const nodeSpec = watchedResources.find((r) => r.kind === 'Node')!;
const log = pino({ level: 'silent' });

function nodeAt(name: string, ip: string, resourceVersion: string) {
  const n = node(name, [ip]);
  n.metadata.resourceVersion = resourceVersion;
  return n;
}

function list(resourceVersion: string, items: unknown[]): Answer {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'NodeList', apiVersion: 'v1', metadata: { resourceVersion }, items }));
  };
}

/** A watch that sends `events` and then ends (as at timeoutSeconds), or stays open. */
function watch(events: Array<[string, unknown]>, end = true): Answer {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    // As the API server: the headers go out at once, before any event.
    res.flushHeaders();
    for (const [type, object] of events) res.write(`${JSON.stringify({ type, object })}\n`);
    if (end) res.end();
  };
}

function status(code: number, reason: string): Answer {
  return (_req, res) => {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason, code }));
  };
}

describe('the agent’s list-and-watch loop', () => {
  let server: Server;
  let dir: string;
  let kc: KubeClientConfig;
  let answers: Answer[];
  let requests: Array<{ watch: boolean; resourceVersion: string | null; bookmarks: string | null }>;
  let informer: ResourceInformer | undefined;
  const open = new Set<ServerResponse>();

  beforeEach(async () => {
    answers = [];
    requests = [];
    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      requests.push({
        watch: url.searchParams.get('watch') === 'true',
        resourceVersion: url.searchParams.get('resourceVersion'),
        bookmarks: url.searchParams.get('allowWatchBookmarks'),
      });
      open.add(res);
      res.on('close', () => open.delete(res));
      const answer = answers.shift();
      if (answer) answer(req, res, url);
      // Nothing scripted: a watch that stays open until the test ends.
      else res.writeHead(200, { 'content-type': 'application/json' }).flushHeaders();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    dir = mkdtempSync(join(tmpdir(), 'weft-informer-'));
    writeFileSync(
      join(dir, 'config'),
      JSON.stringify({
        'current-context': 'c',
        contexts: [{ name: 'c', context: { cluster: 'c' } }],
        clusters: [{ name: 'c', cluster: { server: `http://127.0.0.1:${port}` } }],
      }),
    );
    kc = (await loadKubeClientConfig({ kubeconfig: join(dir, 'config') })).kc;
  });

  afterEach(async () => {
    await informer?.stop();
    informer = undefined;
    for (const res of open) res.destroy();
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  function start(cache: ServiceCache, onReconnect = () => {}): ResourceInformer {
    informer = new ResourceInformer({ kc, spec: nodeSpec, cache, log, onReconnect });
    informer.start();
    return informer;
  }

  async function until(what: string, check: () => boolean, ms = 5_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!check()) {
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${what}: ${JSON.stringify(requests)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  const ips = (cache: ServiceCache, ...names: string[]) =>
    names.map((n) => cache.node(n)?.internalIPs[0] ?? '-').join(' ');

  it('lists, watches from the list’s resourceVersion, re-watches from the last event’s, and relists on 410 Gone with deletes for what went', async () => {
    const cache = new ServiceCache();
    answers.push(
      list('10', [nodeAt('a', '10.0.0.1', '5'), nodeAt('b', '10.0.0.2', '6')]),
      watch([
        ['MODIFIED', nodeAt('b', '10.0.0.3', '11')],
        ['BOOKMARK', { kind: 'Node', apiVersion: 'v1', metadata: { resourceVersion: '13' } }],
      ]),
      status(410, 'Expired'),
      list('20', [nodeAt('b', '10.0.0.3', '11'), nodeAt('c', '10.0.0.4', '19')]),
    );
    const inf = start(cache);
    await inf.synced;
    expect(ips(cache, 'a', 'b')).toBe('10.0.0.1 10.0.0.2');
    await until('the relist', () => cache.node('c') !== undefined);
    // a is gone (not in the relist), b kept its watched update, c came.
    expect(ips(cache, 'a', 'b', 'c')).toBe('- 10.0.0.3 10.0.0.4');
    await until('the watch after the relist', () => requests.length === 5);
    expect(requests).toEqual([
      { watch: false, resourceVersion: null, bookmarks: null },
      { watch: true, resourceVersion: '10', bookmarks: 'true' },
      // The first watch ended: again from the bookmark's resourceVersion.
      { watch: true, resourceVersion: '13', bookmarks: 'true' },
      { watch: false, resourceVersion: null, bookmarks: null },
      { watch: true, resourceVersion: '20', bookmarks: 'true' },
    ]);
    expect(inf.status).toMatchObject({ synced: true, connected: true, objects: 2, reconnects: 0 });
  });

  it('a relist delivers only what changed: the same resourceVersion is not delivered again', async () => {
    const cache = new ServiceCache();
    const events: string[] = [];
    cache.onEvent = (e) => events.push(`${e.action} ${e.name}`);
    answers.push(
      list('10', [nodeAt('a', '10.0.0.1', '5'), nodeAt('b', '10.0.0.2', '6')]),
      status(410, 'Expired'),
      list('20', [nodeAt('a', '10.0.0.1', '5'), nodeAt('b', '10.0.0.9', '18')]),
    );
    start(cache);
    await until('the relist', () => cache.node('b')?.internalIPs[0] === '10.0.0.9');
    expect(events).toEqual(['add a', 'add b', 'update b']);
  });

  it('an API server that fails: the loop says so, backs off, relists and counts the reconnect; the cache keeps the last state meanwhile', async () => {
    const cache = new ServiceCache();
    let reconnects = 0;
    answers.push(
      list('10', [nodeAt('a', '10.0.0.1', '5')]),
      status(500, 'InternalError'),
      status(503, 'ServiceUnavailable'),
      list('30', [nodeAt('a', '10.0.0.1', '5'), nodeAt('d', '10.0.0.5', '29')]),
    );
    const inf = start(cache, () => reconnects++);
    await inf.synced;
    await until('the failed watch', () => !inf.status.connected);
    expect(inf.status.lastError).toMatch(/Internal Server Error/);
    expect(ips(cache, 'a')).toBe('10.0.0.1');
    await until('the relist after the back-off', () => cache.node('d') !== undefined);
    await until('connected again', () => inf.status.connected);
    expect(reconnects).toBe(1);
    expect(inf.status).toMatchObject({ connected: true, reconnects: 1, objects: 2 });
    // watch failed (500) → list failed (503) → list → watch.
    await until('the watch after the relist', () => requests.length === 5);
    expect(requests.map((r) => (r.watch ? `watch ${r.resourceVersion}` : 'list'))).toEqual([
      'list',
      'watch 10',
      'list',
      'list',
      'watch 30',
    ]);
  });

  it('stop() ends the watch and starts nothing more', async () => {
    const cache = new ServiceCache();
    answers.push(list('10', [nodeAt('a', '10.0.0.1', '5')]), watch([], false));
    const inf = start(cache);
    await inf.synced;
    await until('the watch', () => open.size === 1);
    await inf.stop();
    await until('the watch to close', () => open.size === 0);
    await new Promise((r) => setTimeout(r, 300));
    expect(requests).toHaveLength(2);
  });
});
