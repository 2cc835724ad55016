// The agent's reconciler against the real LB maps of sock_lb.bpf.o, pinned under a pin root of
// its own: objects go in through the Service cache (the interface the informers fill), the maps
// are read back through LbMaps, and a second reconciler on the same pins plays the restarted
// agent. Everything is under /sys/fs/bpf/weft-kt-agent-<pid>/ and removed in afterAll.
import { rmSync } from 'node:fs';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lbSizesFor } from '../../src/agent/datapath.js';
import { ServiceCache } from '../../src/agent/services/cache.js';
import { Reconciler } from '../../src/agent/services/reconciler.js';
import { checkEnvironment } from '../../src/datapath/environment.js';
import { frontendName, type LbMapOps, LbMaps } from '../../src/datapath/lbmap.js';
import { node, service, slice } from '../unit/agent-fixtures.js';

const root = `/sys/fs/bpf/weft-kt-agent-${process.pid}`;
const log = pino({ level: 'silent' });

/** A running "agent": maps on `pinRoot`, a cache, a reconciler that read the maps back. */
function agentOn(pinRoot: string, mapMax = 1024) {
  const lb = LbMaps.open({ pinRoot, sizes: lbSizesFor(mapMax) });
  const ops: LbMapOps[] = [];
  lb.onOps = (o) => ops.push(o);
  const cache = new ServiceCache();
  const reconciler = new Reconciler({ nodeName: 'node-a', cache, lb, log });
  reconciler.restore({
    frontends: lb.frontends(),
    backends: lb.backends(),
    reverseNatIndexes: lb.reverseNat().map((r) => r.revNatIndex),
  });
  return { lb, ops, cache, reconciler, close: () => lb.close() };
}

type Running = ReturnType<typeof agentOn>;

/** frontend → sorted backend address:port (INT scope after " | "), read from the real maps. */
function mapsView(lb: LbMaps): Record<string, string> {
  const backends = new Map(lb.backends().map((b) => [b.id, `${b.address}:${b.port}`]));
  const out: Record<string, string> = {};
  for (const f of lb.frontends()) {
    const list = (ids: number[]) =>
      ids
        .map((id) => backends.get(id) ?? `missing#${id}`)
        .sort()
        .join(' ');
    out[frontendName(f)] = f.internalBackends
      ? `${list(f.backends)} | ${list(f.internalBackends)}`
      : list(f.backends);
  }
  return out;
}

/** Entries that are no frontend's: slots past a count, masters' orphans, unused backends. */
function expectNoOrphans(lb: LbMaps): void {
  const frontends = lb.frontends();
  let expected = 0;
  const used = new Set<number>();
  const revNats = new Set<number>();
  for (const f of frontends) {
    expected += 1 + f.backends.length + (f.internalBackends ? 1 + f.internalBackends.length : 0);
    for (const id of [...f.backends, ...(f.internalBackends ?? [])]) used.add(id);
    revNats.add(f.revNatIndex);
  }
  expect(lb.v4.services.count() + lb.v6.services.count()).toBe(expected);
  expect(
    lb
      .backends()
      .map((b) => b.id)
      .sort(),
  ).toEqual([...used].sort());
  expect(
    lb
      .reverseNat()
      .map((r) => r.revNatIndex)
      .sort(),
  ).toEqual([...revNats].sort());
}

const ep = (ip: string, nodeName = 'node-b') => ({ ip, node: nodeName });

function feed(cache: ServiceCache): void {
  cache.upsert('Node', node('node-a', ['172.30.0.2']), 'add');
  cache.upsert('Node', node('node-b', ['172.30.0.3']), 'add');
  cache.upsert('Service', service('web', { clusterIP: '10.96.0.10' }), 'add');
  cache.upsert('EndpointSlice', slice('web-1', 'web', [ep('10.244.1.2'), ep('10.244.1.3', 'node-a')]), 'add');
  cache.upsert(
    'Service',
    service('np', {
      type: 'NodePort',
      clusterIP: '10.96.0.11',
      ports: [{ port: 80, nodePort: 30080 }],
      externalTrafficPolicy: 'Local',
      sessionAffinity: 'ClientIP',
      affinityTimeout: 30,
    }),
    'add',
  );
  cache.upsert('EndpointSlice', slice('np-1', 'np', [ep('10.244.2.2'), ep('10.244.2.3', 'node-a')]), 'add');
  cache.upsert(
    'Service',
    service('dns', {
      clusterIPs: ['10.96.0.12', 'fd00:96::12'],
      ports: [
        { name: 'dns', port: 53, protocol: 'UDP' },
        { name: 'dns-tcp', port: 53, protocol: 'TCP' },
      ],
    }),
    'add',
  );
  const dnsPorts = [
    { name: 'dns', port: 5353, protocol: 'UDP' },
    { name: 'dns-tcp', port: 5353, protocol: 'TCP' },
  ];
  cache.upsert('EndpointSlice', slice('dns-v4', 'dns', [ep('10.244.3.2')], dnsPorts), 'add');
  cache.upsert(
    'EndpointSlice',
    slice('dns-v6', 'dns', [ep('fd00:244::3:2')], dnsPorts, { addressType: 'IPv6' }),
    'add',
  );
}

const expected = {
  '10.96.0.10:80/TCP': '10.244.1.2:80 10.244.1.3:80',
  '10.96.0.11:80/TCP': '10.244.2.2:80 10.244.2.3:80',
  '172.30.0.2:30080/TCP': '10.244.2.3:80 | 10.244.2.2:80 10.244.2.3:80',
  '10.96.0.12:53/UDP': '10.244.3.2:5353',
  '10.96.0.12:53/TCP': '10.244.3.2:5353',
  '[fd00:96::12]:53/UDP': 'fd00:244::3:2:5353',
  '[fd00:96::12]:53/TCP': 'fd00:244::3:2:5353',
};

beforeAll(() => {
  checkEnvironment();
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

describe('the reconciler on real maps', () => {
  const pinRoot = `${root}/node`;
  let first: Running | undefined;
  let second: Running | undefined;

  afterAll(() => {
    first?.close();
    second?.close();
  });

  it('applies every Service: frontends, slots, two scopes, affinity, both families', () => {
    first = agentOn(pinRoot);
    feed(first.cache);
    const report = first.reconciler.sync(true);
    expect(report).toMatchObject({ services: 3, frontendsWritten: 7, failed: 0 });
    expect(mapsView(first.lb)).toEqual(expected);
    const np = first.lb.frontends().find((f) => f.address === '172.30.0.2');
    expect(np).toMatchObject({
      type: 'NodePort',
      externalTrafficPolicy: 'Local',
      affinityTimeoutSeconds: 30,
    });
    // ClientIP affinity: one match entry per (backend, frontend) pair the frontend lists.
    expect(first.lb.affinityMatch.count()).toBe(2 + 2);
    expectNoOrphans(first.lb);
  });

  it('a second reconciler on the same pins (a restart) reads them back and writes nothing', () => {
    first?.close();
    first = undefined;
    second = agentOn(pinRoot);
    const before = second.lb.frontends();
    feed(second.cache);
    const report = second.reconciler.sync(true);
    expect(second.ops).toEqual([]);
    expect(report).toMatchObject({
      frontendsWritten: 0,
      frontendsDeleted: 0,
      backendsWritten: 0,
      backendsDeleted: 0,
    });
    expect(second.lb.frontends()).toEqual(before);
  });

  it('after changes made while it was down, a restart applies only those', () => {
    second?.close();
    second = undefined;
    const third = agentOn(pinRoot);
    try {
      const idsBefore = new Map(third.lb.backends().map((b) => [`${b.address}:${b.port}`, b.id]));
      const revNatsBefore = new Map(third.lb.frontends().map((f) => [frontendName(f), f.revNatIndex]));
      feed(third.cache);
      // While the agent was down: web lost one endpoint and gained another; dns went away.
      third.cache.upsert('EndpointSlice', slice('web-1', 'web', [ep('10.244.1.2'), ep('10.244.1.9')]));
      third.cache.remove('Service', service('dns'));
      third.reconciler.sync(true);
      expect(mapsView(third.lb)).toEqual({
        '10.96.0.10:80/TCP': '10.244.1.2:80 10.244.1.9:80',
        '10.96.0.11:80/TCP': expected['10.96.0.11:80/TCP'],
        '172.30.0.2:30080/TCP': expected['172.30.0.2:30080/TCP'],
      });
      // Only what changed was written: one backend, one slot of web (in place: no master), the
      // four dns frontends removed, and the three backends nobody lists any more.
      const writes = third.ops.filter((o) => o.operation === 'update' && o.outcome === 'success');
      expect(writes).toEqual([
        { map: 'weft_lb4_backends', operation: 'update', outcome: 'success', count: 1 },
        { map: 'weft_lb4_reverse_nat', operation: 'update', outcome: 'success', count: 1 },
        { map: 'weft_lb4_services', operation: 'update', outcome: 'success', count: 1 },
      ]);
      // Every surviving backend and frontend kept its id.
      for (const b of third.lb.backends()) {
        const had = idsBefore.get(`${b.address}:${b.port}`);
        if (had !== undefined) expect(b.id).toBe(had);
      }
      for (const f of third.lb.frontends()) expect(f.revNatIndex).toBe(revNatsBefore.get(frontendName(f)));
      expectNoOrphans(third.lb);
    } finally {
      third.close();
    }
  });

  it('a deleted Service leaves nothing in any map', () => {
    const a = agentOn(pinRoot);
    try {
      feed(a.cache);
      a.reconciler.sync(true);
      for (const name of ['web', 'np', 'dns']) a.cache.remove('Service', service(name));
      a.reconciler.sync(false);
      expect(a.lb.v4.services.count() + a.lb.v6.services.count()).toBe(0);
      expect(a.lb.backends()).toEqual([]);
      expect(a.lb.reverseNat()).toEqual([]);
      expect(a.lb.affinityMatch.count()).toBe(0);
    } finally {
      a.close();
    }
  });
});

describe('a full map (small --bpf-lb-map-max)', () => {
  it('keeps existing entries, reports the Service that did not fit, and applies it once there is room', () => {
    // --bpf-lb-map-max 4: 16 service entries, 4 backends.
    const a = agentOn(`${root}/full`, 4);
    try {
      a.cache.upsert('Service', service('a', { clusterIP: '10.96.1.1' }));
      a.cache.upsert('EndpointSlice', slice('a-1', 'a', [ep('10.244.9.1'), ep('10.244.9.2')]));
      a.cache.upsert('Service', service('b', { clusterIP: '10.96.1.2', externalIPs: ['198.51.100.1'] }));
      a.cache.upsert('EndpointSlice', slice('b-1', 'b', [ep('10.244.9.3')]));
      expect(a.reconciler.sync(true).failed).toBe(0);
      const before = mapsView(a.lb);
      expect(Object.keys(before)).toHaveLength(3);

      // c wants two new backends: the backends map (4) has room for one.
      a.cache.upsert('Service', service('c', { clusterIP: '10.96.1.3' }));
      a.cache.upsert('EndpointSlice', slice('c-1', 'c', [ep('10.244.9.4'), ep('10.244.9.5')]));
      const report = a.reconciler.sync(false);
      expect(report.failed).toBe(1);
      expect(a.reconciler.failures()).toEqual([
        expect.objectContaining({
          service: 'default/c',
          code: 'WEFT_ERR_MAP_FULL',
          error: expect.stringMatching(/weft_lb4_backends is full \(max_entries 4\)/),
        }),
      ]);
      expect(a.ops.some((o) => o.map === 'weft_lb4_backends' && o.outcome === 'fail')).toBe(true);
      expect(mapsView(a.lb)).toEqual(before);
      expectNoOrphans(a.lb);

      // d needs more service entries than are left (16 - 7 = 9 < 10), on existing backends.
      a.cache.upsert('Service', service('d', { clusterIP: '10.96.1.4', externalIPs: ['198.51.100.4'] }));
      a.cache.upsert(
        'EndpointSlice',
        slice('d-1', 'd', [ep('10.244.9.1'), ep('10.244.9.2'), ep('10.244.9.3')], [{ name: '', port: 80 }]),
      );
      a.cache.upsert(
        'Service',
        service('d2', { clusterIP: '10.96.1.5', ports: [{ port: 80 }, { port: 81 }] }),
      );
      a.cache.upsert('EndpointSlice', slice('d2-1', 'd2', [ep('10.244.9.1')], [{ name: '', port: 80 }]));
      a.reconciler.sync(false);
      const failed = a.reconciler.failures().map((f) => f.service);
      expect(failed).toContain('default/c');
      // Whatever did not fit, every frontend in the maps is complete and no entry is stray.
      expectNoOrphans(a.lb);
      for (const [name, backends] of Object.entries(before)) expect(mapsView(a.lb)[name]).toBe(backends);
      for (const s of failed) {
        const ip = { 'default/c': '10.96.1.3', 'default/d': '10.96.1.4', 'default/d2': '10.96.1.5' }[s];
        expect(Object.keys(mapsView(a.lb)).some((k) => k.startsWith(`${ip}:`))).toBe(false);
      }

      // Room appears (b goes): the retry applies what failed.
      a.cache.remove('Service', service('b'));
      a.cache.remove('Service', service('d'));
      a.cache.remove('Service', service('d2'));
      a.reconciler.sync(false);
      a.reconciler.retryFailed();
      a.reconciler.sync(false);
      expect(a.reconciler.failures()).toEqual([]);
      expect(mapsView(a.lb)).toEqual({
        '10.96.1.1:80/TCP': '10.244.9.1:80 10.244.9.2:80',
        '10.96.1.3:80/TCP': '10.244.9.4:80 10.244.9.5:80',
      });
      expectNoOrphans(a.lb);
    } finally {
      a.close();
    }
  });
});
