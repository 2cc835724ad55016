import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeApiError, kubeWatch } from '../../src/shared/kube.js';
import type { KubeClientConfig } from '../../src/shared/kubeconfig.js';

// A plain-HTTP API server whose answer each test scripts through `handler`.
let handler: (req: http.IncomingMessage, res: http.ServerResponse) => void = () => {};
const server = http.createServer((req, res) => handler(req, res));
let kc: KubeClientConfig;

beforeAll(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const server_ = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  kc = {
    getCurrentCluster: () => ({ name: 'test', server: server_ }),
    applyToHTTPSOptions: async () => {},
  };
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

function watch(signal?: AbortSignal) {
  const events: Array<[string, unknown]> = [];
  let answered = false;
  const done = new Promise<Error | null>((resolve) => {
    void kubeWatch(kc, '/api/v1/nodes', { resourceVersion: '7' }, (t, o) => events.push([t, o]), resolve, {
      signal,
    }).then(() => {
      answered = true;
    });
  });
  return { events, done, answered: () => answered };
}

describe('kubeWatch', () => {
  it('streams events split anywhere across chunks, in order, and ends with the response', async () => {
    let url = '';
    handler = (req, res) => {
      url = req.url ?? '';
      res.writeHead(200, { 'Content-Type': 'application/json' });
      const text = `${JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'n1' } } })}\n${JSON.stringify({ type: 'BOOKMARK', object: { metadata: { resourceVersion: '9' } } })}\n`;
      res.write(text.slice(0, 17));
      setTimeout(() => res.end(text.slice(17)), 20);
    };
    const w = watch();
    expect(await w.done).toBeNull();
    expect(url).toBe('/api/v1/nodes?watch=true&resourceVersion=7');
    expect(w.events).toEqual([
      ['ADDED', { metadata: { name: 'n1' } }],
      ['BOOKMARK', { metadata: { resourceVersion: '9' } }],
    ]);
  });

  it('an answer other than 200 is a KubeApiError with the status and the reason', async () => {
    handler = (_req, res) => {
      res.writeHead(410, { 'Content-Type': 'application/json' });
      res.end(
        JSON.stringify({
          kind: 'Status',
          status: 'Failure',
          message: 'too old resource version: 7 (12)',
          code: 410,
        }),
      );
    };
    const err = await watch().done;
    expect(err).toBeInstanceOf(KubeApiError);
    expect((err as KubeApiError).statusCode).toBe(410);
    expect(err!.message).toBe('GET /api/v1/nodes: 410 Gone: too old resource version: 7 (12)');
  });

  it('a line that is not a JSON event fails the watch, after the events before it', async () => {
    handler = (_req, res) => {
      res.writeHead(200);
      res.write(
        `${JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'a' } } })}\n{"type": "MODIFIED", "obj`,
      );
      res.write('\n');
    };
    const w = watch();
    const err = await w.done;
    expect(err?.message).toMatch(/an event is not JSON/);
    expect(w.events.map(([t]) => t)).toEqual(['ADDED']);
  });

  it('aborting ends it at once, also before the server has answered', async () => {
    let requests = 0;
    handler = () => {
      requests++; // never answers
    };
    const ac = new AbortController();
    const w = watch(ac.signal);
    while (requests === 0) await new Promise((r) => setTimeout(r, 5));
    ac.abort();
    expect(await w.done).toBeNull();
    await new Promise((r) => setTimeout(r, 5));
    expect(w.answered()).toBe(true);
  });

  it('a server that goes away mid-stream fails the watch', async () => {
    handler = (_req, res) => {
      res.writeHead(200);
      res.write(`${JSON.stringify({ type: 'ADDED', object: {} })}\n`);
      setTimeout(() => res.socket?.destroy(), 20);
    };
    const w = watch();
    const err = await w.done;
    expect(err).toBeInstanceOf(Error);
    expect(w.events).toHaveLength(1);
  });
});
