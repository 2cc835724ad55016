import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kubeListAll } from '../../src/shared/kube.js';

/** Three pages of two items, continue tokens "2" and "4"; records every request's query. */
let server: Server;
let kc: KubeConfig;
const requests: URLSearchParams[] = [];

beforeAll(async () => {
  const items = Array.from({ length: 6 }, (_, i) => ({ metadata: { name: `o${i}` }, big: 'x'.repeat(100) }));
  server = createServer((req, res) => {
    const q = new URL(req.url!, 'http://x').searchParams;
    requests.push(q);
    const from = Number(q.get('continue') ?? 0);
    const page = items.slice(from, from + 2);
    const cont = from + 2 < items.length ? String(from + 2) : undefined;
    res.setHeader('content-type', 'application/json');
    res.end(
      JSON.stringify({
        kind: 'ThingList',
        apiVersion: 'v1',
        metadata: { resourceVersion: '42', continue: cont },
        items: page,
      }),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      // Plain HTTP: client-node allows it only with skipTLSVerify.
      {
        name: 'c',
        server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        skipTLSVerify: true,
      },
    ],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('kubeListAll', () => {
  it('follows continue tokens and keeps the first page’s resourceVersion', async () => {
    requests.length = 0;
    const list = await kubeListAll(kc, '/api/v1/things', { labelSelector: 'a=b', limit: 2 });
    expect(list.items.map((o) => (o as { metadata: { name: string } }).metadata.name)).toEqual([
      'o0',
      'o1',
      'o2',
      'o3',
      'o4',
      'o5',
    ]);
    expect(list.metadata.resourceVersion).toBe('42');
    expect(list.kind).toBe('ThingList');
    expect(requests.map((q) => [q.get('limit'), q.get('continue'), q.get('labelSelector')])).toEqual([
      ['2', null, 'a=b'],
      ['2', '2', 'a=b'],
      ['2', '4', 'a=b'],
    ]);
  });

  it('maps each item as its page arrives and drops those mapped to undefined', async () => {
    const seen: string[] = [];
    const list = await kubeListAll(kc, '/api/v1/things', {
      limit: 2,
      item: (raw) => {
        const name = (raw as { metadata: { name: string } }).metadata.name;
        seen.push(name);
        return name === 'o3' ? undefined : { name };
      },
    });
    expect(seen).toEqual(['o0', 'o1', 'o2', 'o3', 'o4', 'o5']);
    expect(list.items).toEqual([
      { name: 'o0' },
      { name: 'o1' },
      { name: 'o2' },
      { name: 'o4' },
      { name: 'o5' },
    ]);
  });
});
