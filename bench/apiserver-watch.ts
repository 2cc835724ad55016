/**
 * Watch fan-out and list latency of the devcluster API server.
 *
 *   npx tsx bench/apiserver-watch.ts [--objects 10000] [--watchers 10]
 *
 * Ten client-node watchers follow one namespace's ConfigMaps while one writer creates and then
 * updates `objects` of them over HTTPS (64 requests in flight). Measured twice:
 *  - live: the watchers are connected while the writer writes; delivery is bounded by how fast
 *    the writer can write, so the writer's own rate is reported next to it;
 *  - catch-up: ten watchers resume together from a resourceVersion before the whole burst, so
 *    the server replays every event from its history as fast as it and the clients can.
 * The peer is a plain fastify NDJSON stream on the same TLS certificate with no store, no
 * validation and no journal: the very event lines weft sent (recorded once, raw) are POSTed to
 * it by the same writer and broadcast as they arrive (live), or replayed from memory (catch-up),
 * to the same client-node watchers. It is the ceiling of the transport and the client. Then:
 * latency of listing all objects, raw over HTTPS (server and transfer) and through client-node's
 * listNamespacedConfigMap (which adds parsing), against the peer serving the same list as one
 * pre-serialized document.
 * Prints one JSON result on stdout, then a short table on stderr.
 */
import { Agent, request as httpsRequest } from 'node:https';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CoreV1Api, KubeConfig, Watch } from '@kubernetes/client-node';
import Fastify from 'fastify';
import { kubeconfigYaml, startApiServer } from '../src/devcluster/apiserver/index.js';

const { values } = parseArgs({
  options: { objects: { type: 'string', default: '10000' }, watchers: { type: 'string', default: '10' } },
});
const objects = Number(values.objects);
const watcherCount = Number(values.watchers);
if (!Number.isInteger(objects) || objects < 100 || !Number.isInteger(watcherCount) || watcherCount < 1) {
  process.stderr.write('Error: --objects must be an integer >= 100 and --watchers >= 1\n');
  process.exit(2);
}
const eventsPerRun = objects * 2;

interface Target {
  url: string;
  ca: string;
  token: string;
}

function kubeConfigFor(t: Target): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(kubeconfigYaml({ clusterName: 'bench', server: t.url, caCertPem: t.ca, token: t.token }));
  return kc;
}

function writerFor(t: Target) {
  const agent = new Agent({ keepAlive: true, maxSockets: 64, ca: t.ca });
  const base = new URL(t.url);
  return (method: string, path: string, body: unknown, contentType: string) =>
    new Promise<number>((resolve, reject) => {
      const data = Buffer.from(JSON.stringify(body));
      const req = httpsRequest(
        {
          agent,
          host: base.hostname,
          port: base.port,
          method,
          path,
          headers: {
            authorization: `Bearer ${t.token}`,
            'content-type': contentType,
            'content-length': data.length,
            accept: 'application/json',
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(data);
    });
}

/** The peer's writer: the same number of requests, each carrying one recorded weft event. */
async function runReplayWriter(t: Target, lines: string[], concurrency = 64): Promise<number> {
  const write = writerFor(t);
  const start = performance.now();
  let next = 0;
  let failures = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < lines.length) {
        const line = lines[next++]!;
        if ((await write('POST', '/events', JSON.parse(line), 'application/json')) >= 300) failures++;
      }
    }),
  );
  if (failures > 0) throw new Error(`${failures} peer writes failed`);
  return lines.length / ((performance.now() - start) / 1000);
}

/** Every watch line weft sends for the burst, read raw, so the peer can send the very same bytes. */
function recordWatchLines(
  t: Target,
  path: string,
  resourceVersion: string,
  expected: number,
): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const base = new URL(t.url);
    const lines: string[] = [];
    let rest = '';
    const req = httpsRequest(
      {
        host: base.hostname,
        port: base.port,
        path: `${path}?watch=true&resourceVersion=${resourceVersion}`,
        ca: t.ca,
        headers: { authorization: `Bearer ${t.token}` },
      },
      (res) => {
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          const parts = (rest + chunk).split('\n');
          rest = parts.pop() ?? '';
          lines.push(...parts.filter((l) => l !== ''));
          if (lines.length >= expected) {
            req.destroy();
            resolve(lines.slice(0, expected));
          }
        });
      },
    );
    req.on('error', (err) => (lines.length >= expected ? undefined : reject(err)));
    req.end();
  });
}

async function runWriter(t: Target, ns: string, concurrency = 64): Promise<number> {
  const write = writerFor(t);
  const start = performance.now();
  const ops: Array<() => Promise<number>> = [];
  for (let i = 0; i < objects; i++) {
    ops.push(() =>
      write(
        'POST',
        `/api/v1/namespaces/${ns}/configmaps`,
        {
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: { name: `cm-${i}`, namespace: ns, labels: { app: 'bench' } },
          data: { value: `v${i}`, payload: 'x'.repeat(200) },
        },
        'application/json',
      ),
    );
  }
  for (let i = 0; i < objects; i++) {
    ops.push(() =>
      write(
        'PATCH',
        `/api/v1/namespaces/${ns}/configmaps/cm-${i}`,
        { data: { value: `u${i}` } },
        'application/merge-patch+json',
      ),
    );
  }
  let next = 0;
  let failures = 0;
  // Creates of one object must come before its update: run creates, then updates.
  const runPhase = async (from: number, to: number) => {
    next = from;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < to) {
          const op = ops[next++]!;
          const code = await op();
          if (code >= 300) failures++;
        }
      }),
    );
  };
  await runPhase(0, objects);
  await runPhase(objects, ops.length);
  if (failures > 0) throw new Error(`${failures} writes failed`);
  return eventsPerRun / ((performance.now() - start) / 1000);
}

interface WatchResult {
  perWatcher: number[];
}

/** Starts the watchers; resolves with each one's events/s once all have seen every event. */
async function watchAll(
  t: Target,
  path: string,
  resourceVersion: string,
  expected: number,
): Promise<{ ready: Promise<void>; done: Promise<WatchResult>; start: () => void }> {
  const kc = kubeConfigFor(t);
  let startedAt = 0;
  const controllers: AbortController[] = [];
  const finished: Array<Promise<number>> = [];
  const connected: Array<Promise<void>> = [];
  for (let i = 0; i < watcherCount; i++) {
    let count = 0;
    let resolveDone: (rate: number) => void = () => {};
    let rejectDone: (err: Error) => void = () => {};
    finished.push(
      new Promise<number>((res, rej) => {
        resolveDone = res;
        rejectDone = rej;
      }),
    );
    connected.push(
      new Watch(kc)
        .watch(
          path,
          { resourceVersion },
          (type) => {
            if (type !== 'ADDED' && type !== 'MODIFIED') return;
            if (++count === expected) resolveDone(expected / ((performance.now() - startedAt) / 1000));
          },
          (err) => {
            if (count < expected)
              rejectDone(new Error(`watcher ${i} ended after ${count}/${expected} events: ${String(err)}`));
          },
        )
        .then((c) => {
          controllers.push(c);
        }),
    );
  }
  return {
    ready: Promise.all(connected).then(() => {}),
    start: () => {
      startedAt = performance.now();
    },
    done: Promise.all(finished).then((perWatcher) => {
      for (const c of controllers) c.abort();
      return { perWatcher };
    }),
  };
}

/** The peer: NDJSON broadcast and replay with fastify, nothing else. */
async function startPeer(cert: string, key: string, token: string) {
  const lines: string[] = [];
  const listeners = new Set<(line: string) => void>();
  let listBody = '';
  const app = Fastify({
    logger: false,
    forceCloseConnections: true,
    serverFactory: (handler) => createServer({ cert, key }, handler),
  });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_r, body, done) => done(null, body));
  app.post('/events', (req, reply) => {
    const line = `${(req.body as Buffer).toString('utf8')}\n`;
    lines.push(line);
    for (const l of listeners) l(line);
    return reply.code(201).header('content-type', 'application/json').send('{}');
  });
  app.get('/api/v1/namespaces/:ns/configmaps', (req, reply) => {
    const q = req.query as { watch?: string; resourceVersion?: string };
    if (q.watch !== 'true') return reply.header('content-type', 'application/json').send(listBody);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.flushHeaders();
    let pending: string[] = [];
    let scheduled = false;
    const push = (line: string) => {
      pending.push(line);
      if (!scheduled) {
        scheduled = true;
        setImmediate(() => {
          scheduled = false;
          res.write(pending.join(''));
          pending = [];
        });
      }
    };
    if (q.resourceVersion === '0') for (const l of lines) push(l);
    listeners.add(push);
    res.on('close', () => listeners.delete(push));
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    target: { url: `https://127.0.0.1:${port}`, ca: '', token } as Target,
    setList: (body: string) => {
      listBody = body;
    },
    close: () => app.close(),
    lineCount: () => lines.length,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function rawGet(t: Target, path: string, agent: Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    const base = new URL(t.url);
    const req = httpsRequest(
      {
        agent,
        host: base.hostname,
        port: base.port,
        path,
        headers: { authorization: `Bearer ${t.token}`, accept: 'application/json' },
      },
      (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => {
          bytes += c.length;
        });
        res.on('end', () => resolve(bytes));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function measureList(
  t: Target,
  ns: string,
  runs = 7,
): Promise<{ medianMs: number; rawMedianMs: number; items: number; bytes: number }> {
  const api = kubeConfigFor(t).makeApiClient(CoreV1Api);
  const agent = new Agent({ keepAlive: true, ca: t.ca });
  const times: number[] = [];
  const rawTimes: number[] = [];
  let items = 0;
  let bytes = 0;
  for (let i = 0; i < runs; i++) {
    let start = performance.now();
    bytes = await rawGet(t, `/api/v1/namespaces/${ns}/configmaps`, agent);
    rawTimes.push(performance.now() - start);
    start = performance.now();
    const list = await api.listNamespacedConfigMap({ namespace: ns });
    times.push(performance.now() - start);
    items = list.items.length;
  }
  agent.destroy();
  return { medianMs: median(times), rawMedianMs: median(rawTimes), items, bytes };
}

const dir = mkdtempSync(join(tmpdir(), 'weft-bench-apiserver-'));
const server = await startApiServer({
  listen: [{ host: '127.0.0.1', port: 0 }],
  dataDir: join(dir, 'data'),
  serviceCIDR: '10.96.0.0/16',
  advertiseAddress: '127.0.0.1',
  advertisePort: 6443,
  eventHistoryLimit: eventsPerRun * 2,
});
const weft: Target = { url: server.url, ca: server.caCertPem, token: server.adminToken };
const peer = await startPeer(
  readFileSync(join(dir, 'data/apiserver.crt'), 'utf8'),
  readFileSync(join(dir, 'data/apiserver.key'), 'utf8'),
  server.adminToken,
);
peer.target.ca = server.caCertPem;

try {
  const api = kubeConfigFor(weft).makeApiClient(CoreV1Api);
  await api.createNamespace({ body: { metadata: { name: 'bench' } } });
  const before = (await api.listNamespacedConfigMap({ namespace: 'bench' })).metadata?.resourceVersion ?? '0';
  const path = '/api/v1/namespaces/bench/configmaps';

  // Live, weft.
  const liveWeft = await watchAll(weft, path, before, eventsPerRun);
  await liveWeft.ready;
  liveWeft.start();
  const weftWriterRate = await runWriter(weft, 'bench');
  const liveWeftResult = await liveWeft.done;

  const recorded = await recordWatchLines(weft, path, before, eventsPerRun);
  // Live, peer: the same events, byte for byte, through a bare fastify broadcast.
  const livePeer = await watchAll(peer.target, path, 'now', eventsPerRun);
  await livePeer.ready;
  livePeer.start();
  const peerWriterRate = await runReplayWriter(peer.target, recorded);
  const livePeerResult = await livePeer.done;

  // Catch-up: everything from history / the peer's log, to all watchers at once.
  const catchWeft = await watchAll(weft, path, before, eventsPerRun);
  catchWeft.start();
  const catchWeftResult = await catchWeft.done;
  const catchPeer = await watchAll(peer.target, path, '0', eventsPerRun);
  catchPeer.start();
  const catchPeerResult = await catchPeer.done;

  // List latency.
  const listWeft = await measureList(weft, 'bench');
  const full = (await api.listNamespacedConfigMap({ namespace: 'bench' })) as unknown;
  peer.setList(JSON.stringify(full));
  const listPeer = await measureList(peer.target, 'bench');

  const summary = (r: WatchResult) => ({
    perWatcherEventsPerSec: r.perWatcher.map((x) => Math.round(x)),
    minPerWatcherEventsPerSec: Math.round(Math.min(...r.perWatcher)),
  });
  const result = {
    benchmark: 'apiserver-watch',
    watchers: watcherCount,
    objects,
    eventsPerWatcher: eventsPerRun,
    live: {
      weft: { ...summary(liveWeftResult), writerEventsPerSec: Math.round(weftWriterRate) },
      peer: { ...summary(livePeerResult), writerEventsPerSec: Math.round(peerWriterRate) },
      ratio: Number(
        (Math.min(...liveWeftResult.perWatcher) / Math.min(...livePeerResult.perWatcher)).toFixed(3),
      ),
    },
    catchUp: {
      weft: summary(catchWeftResult),
      peer: summary(catchPeerResult),
      ratio: Number(
        (Math.min(...catchWeftResult.perWatcher) / Math.min(...catchPeerResult.perWatcher)).toFixed(3),
      ),
    },
    list: {
      items: listWeft.items,
      bytes: listWeft.bytes,
      weft: {
        rawMedianMs: Number(listWeft.rawMedianMs.toFixed(1)),
        clientNodeMedianMs: Number(listWeft.medianMs.toFixed(1)),
      },
      peer: {
        rawMedianMs: Number(listPeer.rawMedianMs.toFixed(1)),
        clientNodeMedianMs: Number(listPeer.medianMs.toFixed(1)),
      },
      rawRatio: Number((listWeft.rawMedianMs / listPeer.rawMedianMs).toFixed(3)),
      clientNodeRatio: Number((listWeft.medianMs / listPeer.medianMs).toFixed(3)),
    },
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  const row = (name: string, w: string, p: string, r: number) =>
    `${name.padEnd(34)} ${w.padStart(14)} ${p.padStart(14)} ${r.toFixed(2).padStart(7)}`;
  process.stderr.write(
    [
      `${'apiserver-watch'.padEnd(34)} ${'weft'.padStart(14)} ${'peer (fastify)'.padStart(14)} ${'ratio'.padStart(7)}`,
      row(
        `live, min events/s of ${watcherCount} watchers`,
        String(result.live.weft.minPerWatcherEventsPerSec),
        String(result.live.peer.minPerWatcherEventsPerSec),
        result.live.ratio,
      ),
      row(
        'live, writer events/s',
        String(result.live.weft.writerEventsPerSec),
        String(result.live.peer.writerEventsPerSec),
        result.live.weft.writerEventsPerSec / result.live.peer.writerEventsPerSec,
      ),
      row(
        `catch-up, min events/s of ${watcherCount}`,
        String(result.catchUp.weft.minPerWatcherEventsPerSec),
        String(result.catchUp.peer.minPerWatcherEventsPerSec),
        result.catchUp.ratio,
      ),
      row(
        `list ${listWeft.items} objects raw, median ms`,
        String(result.list.weft.rawMedianMs),
        String(result.list.peer.rawMedianMs),
        result.list.rawRatio,
      ),
      row(
        '  same via client-node, median ms',
        String(result.list.weft.clientNodeMedianMs),
        String(result.list.peer.clientNodeMedianMs),
        result.list.clientNodeRatio,
      ),
      '',
    ].join('\n'),
  );
} finally {
  await peer.close();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
}
