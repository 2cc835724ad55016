import { pino } from 'pino';
import { beforeEach, describe, expect, it } from 'vitest';
import type { FrontendAddress, LbBackend, LbFrontend } from '../../src/datapath/lbmap.js';
import { ServiceCache } from '../../src/agent/services/cache.js';
import { frontendId } from '../../src/agent/services/plan.js';
import { type LbWriter, Reconciler } from '../../src/agent/services/reconciler.js';
import { WeftError } from '../../src/shared/errors.js';
import { node, service, slice } from './agent-fixtures.js';

/**
 * The maps as a writer sees them, in memory, recording every call. `capacity` limits the
 * service entries (masters + slots), like a full weft_lb4_services: a change that does not fit
 * leaves its frontend as it was (LbMaps' contract) and the call throws WEFT_ERR_MAP_FULL.
 */
class MemoryMaps implements LbWriter {
  frontends = new Map<string, LbFrontend>();
  backends = new Map<number, LbBackend>();
  revNats = new Set<number>();
  calls: string[] = [];
  capacity = Number.POSITIVE_INFINITY;

  private entries(f: LbFrontend | undefined): number {
    if (!f) return 0;
    return 1 + f.backends.length + (f.internalBackends ? 1 + f.internalBackends.length : 0);
  }
  private used(): number {
    let n = 0;
    for (const f of this.frontends.values()) n += this.entries(f);
    return n;
  }

  upsertBackends(backends: LbBackend[]): void {
    this.calls.push(`upsertBackends ${backends.map((b) => b.id).join(',')}`);
    for (const b of backends) this.backends.set(b.id, b);
  }
  removeBackends(ids: number[]): void {
    this.calls.push(`removeBackends ${ids.join(',')}`);
    for (const id of ids) this.backends.delete(id);
  }
  updateFrontends(changes: Array<{ previous: LbFrontend | undefined; next: LbFrontend | undefined }>): void {
    const names = changes.map((c) => `${c.next ? '' : '-'}${frontendId((c.next ?? c.previous)!)}`);
    this.calls.push(`updateFrontends ${names.join(',')}`);
    let full = false;
    for (const { previous, next } of changes) {
      const name = frontendId((next ?? previous)!);
      expect(this.frontends.get(name)).toEqual(previous); // the caller's mirror is right
      const delta = this.entries(next) - this.entries(previous);
      if (this.used() + delta > this.capacity) {
        full = true;
        continue;
      }
      if (next) {
        for (const id of [...next.backends, ...(next.internalBackends ?? [])]) {
          expect(this.backends.has(id), `backend ${id} of ${name} exists`).toBe(true);
        }
        this.frontends.set(name, next);
        this.revNats.add(next.revNatIndex);
      } else {
        this.frontends.delete(name);
        this.revNats.delete(previous!.revNatIndex);
      }
    }
    if (full) throw new WeftError('WEFT_ERR_MAP_FULL', 'LB map weft_lb4_services is full (max_entries 8)');
  }
  removeReverseNat(indexes: number[]): void {
    this.calls.push(`removeReverseNat ${indexes.join(',')}`);
    for (const i of indexes) this.revNats.delete(i);
  }
  frontend(f: FrontendAddress): LbFrontend | undefined {
    return this.frontends.get(frontendId(f));
  }
  backend(id: number): LbBackend | undefined {
    return this.backends.get(id);
  }
  readBack() {
    return {
      frontends: [...this.frontends.values()],
      backends: [...this.backends.values()],
      reverseNatIndexes: [...this.revNats],
    };
  }
  /** frontend → backend addresses, for assertions. */
  view(): Record<string, string> {
    const out: Record<string, string> = {};
    const addr = (id: number) => {
      const b = this.backends.get(id);
      return b ? `${b.address}:${b.port}` : `missing#${id}`;
    };
    for (const [name, f] of [...this.frontends].sort()) {
      out[name] = [f.backends.map(addr).sort().join(' '), f.internalBackends?.map(addr).sort().join(' ')]
        .filter((x) => x !== undefined)
        .join(' | ');
    }
    return out;
  }
}

const log = pino({ level: 'silent' });

function agent(maps: MemoryMaps, nodeName = 'node-a') {
  const cache = new ServiceCache();
  const r = new Reconciler({ nodeName, cache, lb: maps, log });
  r.restore(maps.readBack());
  return { cache, r };
}

const ep = (ip: string, nodeName = 'node-b') => ({ ip, node: nodeName });

describe('the reconciler', () => {
  let maps: MemoryMaps;
  let cache: ServiceCache;
  let r: Reconciler;

  beforeEach(() => {
    maps = new MemoryMaps();
    ({ cache, r } = agent(maps));
    cache.upsert('Node', node('node-a', ['172.30.0.2']));
    cache.upsert('Service', service('web', { clusterIP: '10.96.0.10' }));
    cache.upsert('EndpointSlice', slice('web-1', 'web', [ep('10.244.1.2'), ep('10.244.1.3')]));
    cache.upsert('Service', service('api', { clusterIP: '10.96.0.11' }));
    cache.upsert('EndpointSlice', slice('api-1', 'api', [ep('10.244.2.2')]));
  });

  it('first sync: backends, then frontends, one batch each', () => {
    const report = r.sync(true);
    expect(maps.calls).toEqual([
      'upsertBackends 1,2,3',
      'updateFrontends 10.96.0.11:80/TCP,10.96.0.10:80/TCP',
    ]);
    expect(maps.view()).toEqual({
      '10.96.0.10:80/TCP': '10.244.1.2:80 10.244.1.3:80',
      '10.96.0.11:80/TCP': '10.244.2.2:80',
    });
    expect(report).toMatchObject({
      kind: 'full',
      services: 2,
      frontendsWritten: 2,
      backendsWritten: 3,
      failed: 0,
    });
  });

  it('a sync with nothing changed writes nothing, full or not', () => {
    r.sync(true);
    maps.calls = [];
    r.sync(true);
    r.sync(false);
    cache.upsert('Service', service('web', { clusterIP: '10.96.0.10', resourceVersion: '2' }));
    r.sync(false);
    expect(maps.calls).toEqual([]);
  });

  it('restart: a second reconciler reads the maps back and writes nothing; ids stay', () => {
    r.sync(true);
    const before = structuredClone(maps.readBack());
    maps.calls = [];
    const second = agent(maps);
    second.cache.upsert('Node', node('node-a', ['172.30.0.2']));
    second.cache.upsert('Service', service('api', { clusterIP: '10.96.0.11' }));
    second.cache.upsert('EndpointSlice', slice('api-1', 'api', [ep('10.244.2.2')]));
    second.cache.upsert('Service', service('web', { clusterIP: '10.96.0.10' }));
    second.cache.upsert('EndpointSlice', slice('web-1', 'web', [ep('10.244.1.3'), ep('10.244.1.2')]));
    second.r.sync(true);
    expect(maps.calls).toEqual([]);
    expect(maps.readBack()).toEqual(before);
  });

  it('restart after changes made while down: only those are applied', () => {
    r.sync(true);
    maps.calls = [];
    const second = agent(maps);
    second.cache.upsert('Node', node('node-a', ['172.30.0.2']));
    // web lost 10.244.1.2 and gained 10.244.1.9; api was deleted; new Service db.
    second.cache.upsert('Service', service('web', { clusterIP: '10.96.0.10' }));
    second.cache.upsert('EndpointSlice', slice('web-1', 'web', [ep('10.244.1.3'), ep('10.244.1.9')]));
    second.cache.upsert('Service', service('db', { clusterIP: '10.96.0.12', ports: [{ port: 5432 }] }));
    second.cache.upsert('EndpointSlice', slice('db-1', 'db', [ep('10.244.3.2')], [{ name: '', port: 5432 }]));
    const report = second.r.sync(true);
    expect(maps.calls).toEqual([
      'updateFrontends -10.96.0.11:80/TCP',
      'upsertBackends 4,5',
      'updateFrontends 10.96.0.12:5432/TCP,10.96.0.10:80/TCP',
      'removeBackends 1,2',
    ]);
    expect(maps.view()).toEqual({
      '10.96.0.10:80/TCP': '10.244.1.3:80 10.244.1.9:80',
      '10.96.0.12:5432/TCP': '10.244.3.2:5432',
    });
    expect(report).toMatchObject({
      frontendsWritten: 2,
      frontendsDeleted: 1,
      backendsWritten: 2,
      backendsDeleted: 2,
    });
    // The surviving backend kept its id.
    expect(maps.frontends.get('10.96.0.10:80/TCP')?.backends).toContain(3);
  });

  it('an endpoint change touches only its Service: its frontend and that backend', () => {
    r.sync(true);
    maps.calls = [];
    cache.upsert(
      'EndpointSlice',
      slice('web-1', 'web', [ep('10.244.1.2'), ep('10.244.1.3'), ep('10.244.1.4')]),
    );
    const report = r.sync(false);
    expect(report.services).toBe(1);
    expect(maps.calls).toEqual(['upsertBackends 4', 'updateFrontends 10.96.0.10:80/TCP']);
    maps.calls = [];
    cache.upsert('EndpointSlice', slice('web-1', 'web', [ep('10.244.1.3'), ep('10.244.1.4')]));
    r.sync(false);
    // The frontend stops listing the backend before the backend goes.
    expect(maps.calls).toEqual(['updateFrontends 10.96.0.10:80/TCP', 'removeBackends 2']);
  });

  it('a deleted Service leaves nothing: frontends first, then backends, then its ids are free', () => {
    r.sync(true);
    maps.calls = [];
    cache.remove('Service', service('web'));
    cache.remove('EndpointSlice', slice('web-1', 'web', []));
    r.sync(false);
    expect(maps.calls).toEqual(['updateFrontends -10.96.0.10:80/TCP', 'removeBackends 2,3']);
    expect(Object.keys(maps.view())).toEqual(['10.96.0.11:80/TCP']);
    expect([...maps.backends.keys()]).toEqual([1]);
  });

  it('a backend two Services share stays until the last one lets it go', () => {
    cache.upsert('EndpointSlice', slice('api-1', 'api', [ep('10.244.1.2')]));
    r.sync(true);
    expect(maps.frontends.get('10.96.0.11:80/TCP')?.backends).toEqual(
      maps.frontends.get('10.96.0.10:80/TCP')?.backends.slice(0, 1),
    );
    maps.calls = [];
    cache.remove('Service', service('api'));
    r.sync(false);
    expect(maps.calls).toEqual(['updateFrontends -10.96.0.11:80/TCP']);
  });

  it('orphans in the maps (a Service deleted while the agent was down) go at the first full sync', () => {
    r.sync(true);
    const second = agent(maps);
    second.cache.upsert('Service', service('web', { clusterIP: '10.96.0.10' }));
    second.cache.upsert('EndpointSlice', slice('web-1', 'web', [ep('10.244.1.2'), ep('10.244.1.3')]));
    maps.calls = [];
    second.r.sync(true);
    expect(maps.calls).toEqual(['updateFrontends -10.96.0.11:80/TCP', 'removeBackends 1']);
  });

  it('NodePort frontends follow this node’s addresses; other nodes’ addresses are theirs', () => {
    cache.upsert(
      'Service',
      service('np', { type: 'NodePort', clusterIP: '10.96.0.20', ports: [{ port: 80, nodePort: 30080 }] }),
    );
    cache.upsert('Node', node('node-b', ['172.30.0.3']));
    r.sync(true);
    expect(Object.keys(maps.view())).toContain('172.30.0.2:30080/TCP');
    expect(Object.keys(maps.view())).not.toContain('172.30.0.3:30080/TCP');
    maps.calls = [];
    cache.upsert('Node', node('node-a', ['172.30.0.2'], { conditions: [{ type: 'Ready', status: 'True' }] }));
    expect(r.sync(false).services).toBe(0); // a heartbeat changes nothing
    cache.upsert('Node', node('node-b', ['172.30.0.4']));
    r.sync(false);
    expect(maps.calls).toEqual([]);
    cache.upsert('Node', node('node-a', ['172.30.0.5']));
    r.sync(false);
    expect(maps.calls).toEqual([
      'updateFrontends -172.30.0.2:30080/TCP',
      'updateFrontends 172.30.0.5:30080/TCP',
    ]);
  });

  it('two Services claiming one frontend: the first by namespace/name owns it, the other takes over after', () => {
    cache.upsert('Service', service('b-ext', { clusterIP: '10.96.0.31', externalIPs: ['198.51.100.7'] }));
    cache.upsert('EndpointSlice', slice('b-ext-1', 'b-ext', [ep('10.244.5.2')]));
    cache.upsert('Service', service('a-ext', { clusterIP: '10.96.0.30', externalIPs: ['198.51.100.7'] }));
    cache.upsert('EndpointSlice', slice('a-ext-1', 'a-ext', [ep('10.244.4.2')]));
    r.sync(true);
    expect(maps.view()['198.51.100.7:80/TCP']).toBe('10.244.4.2:80');
    const owner = r.programmed().find((p) => p.frontend.address === '198.51.100.7');
    expect(owner?.service).toBe('default/a-ext');
    cache.remove('Service', service('a-ext'));
    r.sync(false);
    expect(maps.view()['198.51.100.7:80/TCP']).toBe('10.244.5.2:80');
    expect(r.programmed().find((p) => p.frontend.address === '198.51.100.7')?.service).toBe('default/b-ext');
  });

  it('a full map: the Service that does not fit keeps its previous state, the rest apply, a retry succeeds', () => {
    r.sync(true); // 2 + 3 entries
    maps.capacity = 8;
    maps.calls = [];
    // db needs 1 + 2 entries (fits: 8); web grows by 2 (does not fit after db).
    cache.upsert('Service', service('db', { clusterIP: '10.96.0.12', ports: [{ port: 5432 }] }));
    cache.upsert(
      'EndpointSlice',
      slice('db-1', 'db', [ep('10.244.3.2'), ep('10.244.3.3')], [{ name: '', port: 5432 }]),
    );
    cache.upsert(
      'EndpointSlice',
      slice('web-1', 'web', [ep('10.244.1.2'), ep('10.244.1.3'), ep('10.244.1.4'), ep('10.244.1.5')]),
    );
    const before = maps.view()['10.96.0.10:80/TCP'];
    const report = r.sync(false);
    expect(report.failed).toBe(1);
    expect(maps.view()['10.96.0.12:5432/TCP']).toBe('10.244.3.2:5432 10.244.3.3:5432');
    expect(maps.view()['10.96.0.10:80/TCP']).toBe(before);
    expect(r.failures()).toEqual([
      expect.objectContaining({ service: 'default/web', code: 'WEFT_ERR_MAP_FULL', attempts: 1 }),
    ]);
    // The backends web wanted are not left behind unused.
    expect([...maps.backends.values()].map((b) => b.address).sort()).toEqual([
      '10.244.1.2',
      '10.244.1.3',
      '10.244.2.2',
      '10.244.3.2',
      '10.244.3.3',
    ]);
    // Still full: a retry fails again, and says so.
    r.retryFailed();
    r.sync(false);
    expect(r.failures()[0]?.attempts).toBe(2);
    // Room appears: the retry applies it.
    maps.capacity = 100;
    expect(r.retryFailed()).toBe(1);
    expect(r.sync(false).failed).toBe(0);
    expect(r.failures()).toEqual([]);
    expect(maps.view()['10.96.0.10:80/TCP']).toBe('10.244.1.2:80 10.244.1.3:80 10.244.1.4:80 10.244.1.5:80');
  });

  it('a Service with several frontends goes all or nothing when the map is full', () => {
    r.sync(true); // 5 entries
    maps.capacity = 8;
    cache.upsert('Service', service('ext', { clusterIP: '10.96.0.40', externalIPs: ['198.51.100.9'] }));
    cache.upsert('EndpointSlice', slice('ext-1', 'ext', [ep('10.244.6.2')]));
    r.sync(false); // needs 4 entries: only one of its two frontends fits
    expect(Object.keys(maps.view())).toEqual(['10.96.0.10:80/TCP', '10.96.0.11:80/TCP']);
    expect(r.failures().map((f) => f.service)).toEqual(['default/ext']);
  });

  it('stats count what the maps hold, from the mirror', () => {
    cache.upsert('Service', service('aff', { clusterIP: '10.96.0.50', sessionAffinity: 'ClientIP' }));
    cache.upsert('EndpointSlice', slice('aff-1', 'aff', [ep('10.244.7.2'), ep('10.244.7.3')]));
    r.sync(true);
    expect(r.stats()).toEqual({
      services: 3,
      frontends: { 4: 3, 6: 0 },
      serviceEntries: { 4: 8, 6: 0 },
      backends: { 4: 5, 6: 0 },
      affinityMatch: 2,
    });
  });

  it('local backends (IPv4) are tracked for the NodePort programs', () => {
    cache.upsert('EndpointSlice', slice('web-1', 'web', [ep('10.244.1.2', 'node-a'), ep('10.244.1.3')]));
    r.sync(true);
    expect(r.localIPv4Backends()).toEqual({ addresses: ['10.244.1.2'], changed: true });
    expect(r.localIPv4Backends().changed).toBe(false);
    cache.remove('EndpointSlice', slice('web-1', 'web', []));
    r.sync(false);
    expect(r.localIPv4Backends()).toEqual({ addresses: [], changed: true });
  });

  it('loadBalancerSourceRanges of IPv4 LoadBalancer frontends are tracked for the NodePort programs', () => {
    const lb = (ranges: string[]) =>
      service('lb', {
        type: 'LoadBalancer',
        clusterIP: '10.96.0.20',
        ports: [{ port: 80 }],
        ingress: [{ ip: '203.0.113.10' }],
        loadBalancerSourceRanges: ranges,
      });
    cache.upsert('Service', lb(['198.51.100.0/24']));
    cache.upsert('EndpointSlice', slice('lb-1', 'lb', [ep('10.244.3.2')]));
    r.sync(true);
    const revNat = maps.frontends.get('203.0.113.10:80/TCP')!.revNatIndex;
    expect(maps.frontends.get('203.0.113.10:80/TCP')!.sourceRanges).toEqual(['198.51.100.0/24']);
    expect(maps.frontends.get('10.96.0.20:80/TCP')!.sourceRanges).toBeUndefined();
    expect(r.sourceRanges4()).toEqual({ byRevNat: new Map([[revNat, ['198.51.100.0/24']]]), changed: true });
    expect(r.sourceRanges4().changed).toBe(false);

    // A restart that reads the same ranges back writes nothing and has them.
    const again = agent(maps);
    again.cache.upsert('Node', node('node-a', ['172.30.0.2']));
    for (const s of ['web', 'api'])
      again.cache.upsert('Service', service(s, { clusterIP: s === 'web' ? '10.96.0.10' : '10.96.0.11' }));
    again.cache.upsert('EndpointSlice', slice('web-1', 'web', [ep('10.244.1.2'), ep('10.244.1.3')]));
    again.cache.upsert('EndpointSlice', slice('api-1', 'api', [ep('10.244.2.2')]));
    again.cache.upsert('Service', lb(['198.51.100.0/24']));
    again.cache.upsert('EndpointSlice', slice('lb-1', 'lb', [ep('10.244.3.2')]));
    expect(again.r.sync(true).frontendsWritten).toBe(0);
    expect(again.r.sourceRanges4().byRevNat).toEqual(new Map([[revNat, ['198.51.100.0/24']]]));

    cache.upsert('Service', lb(['198.51.100.0/24', '192.0.2.0/28']));
    r.sync(false);
    expect(r.sourceRanges4()).toEqual({
      byRevNat: new Map([[revNat, ['192.0.2.0/28', '198.51.100.0/24']]]),
      changed: true,
    });
    cache.upsert('Service', lb([]));
    r.sync(false);
    expect(maps.frontends.get('203.0.113.10:80/TCP')!.sourceRanges).toBeUndefined();
    expect(r.sourceRanges4()).toEqual({ byRevNat: new Map(), changed: true });
  });

  it('a freed backend id goes to no other backend before the rest of the range', () => {
    r.sync(true);
    cache.upsert('EndpointSlice', slice('web-1', 'web', [ep('10.244.1.3')]));
    r.sync(false);
    expect([...maps.backends.keys()]).toEqual([1, 3]);
    cache.upsert('EndpointSlice', slice('web-1', 'web', [ep('10.244.1.3'), ep('10.244.1.7')]));
    r.sync(false);
    expect(maps.frontends.get('10.96.0.10:80/TCP')?.backends).toEqual([3, 4]);
    // A restart continues after the highest id in the maps: for reverse NAT indexes, the top
    // of the u16, after which it wraps.
    const api = maps.frontends.get('10.96.0.11:80/TCP')!;
    maps.frontends.set('10.96.0.11:80/TCP', { ...api, revNatIndex: 0xffff });
    maps.revNats.delete(api.revNatIndex);
    maps.revNats.add(0xffff);
    const second = agent(maps);
    for (const s of [
      service('web', { clusterIP: '10.96.0.10' }),
      service('api', { clusterIP: '10.96.0.11' }),
    ])
      second.cache.upsert('Service', s);
    second.cache.upsert('EndpointSlice', slice('web-1', 'web', [ep('10.244.1.3'), ep('10.244.1.7')]));
    second.cache.upsert('EndpointSlice', slice('api-1', 'api', [ep('10.244.2.2'), ep('10.244.2.3')]));
    second.cache.upsert('Service', service('db', { clusterIP: '10.96.0.12', ports: [{ port: 5432 }] }));
    maps.calls = [];
    second.r.sync(true);
    expect(maps.calls).toEqual(['upsertBackends 5', 'updateFrontends 10.96.0.11:80/TCP,10.96.0.12:5432/TCP']);
    expect(maps.frontends.get('10.96.0.12:5432/TCP')?.revNatIndex).toBe(api.revNatIndex);
  });

  it('maps holding a backend twice, or a frontend listing a missing one: the first full sync sets them right', () => {
    r.sync(true);
    const web = maps.frontends.get('10.96.0.10:80/TCP')!;
    // Backend 2 (10.244.1.2) a second time as 9, listed by web instead of 3, which is gone; api
    // lists 8, which is not there. 9 does not move the cursor: 10.244.1.3 gets 3 again.
    maps.backends.set(9, { ...maps.backends.get(2)!, id: 9 });
    maps.frontends.set('10.96.0.10:80/TCP', { ...web, backends: [2, 9] });
    const api = maps.frontends.get('10.96.0.11:80/TCP')!;
    maps.frontends.set('10.96.0.11:80/TCP', { ...api, backends: [1, 8] });
    maps.backends.delete(3);
    const second = agent(maps);
    second.cache.upsert('Service', service('web', { clusterIP: '10.96.0.10' }));
    second.cache.upsert('EndpointSlice', slice('web-1', 'web', [ep('10.244.1.2'), ep('10.244.1.3')]));
    second.cache.upsert('Service', service('api', { clusterIP: '10.96.0.11' }));
    second.cache.upsert('EndpointSlice', slice('api-1', 'api', [ep('10.244.2.2')]));
    maps.calls = [];
    second.r.sync(true);
    expect(maps.calls).toEqual([
      'upsertBackends 3',
      'updateFrontends 10.96.0.11:80/TCP,10.96.0.10:80/TCP',
      'removeBackends 9',
    ]);
    expect(maps.view()).toEqual({
      '10.96.0.10:80/TCP': '10.244.1.2:80 10.244.1.3:80',
      '10.96.0.11:80/TCP': '10.244.2.2:80',
    });
    expect(second.r.stats().backends).toEqual({ 4: 3, 6: 0 });
    maps.calls = [];
    expect(second.r.sync(true).backendsWritten).toBe(0);
    expect(maps.calls).toEqual([]);
  });

  it('orphan reverse NAT entries found on start are removed by the first full sync', () => {
    maps.revNats.add(777);
    const fresh = agent(maps);
    fresh.r.sync(true);
    expect(maps.calls[0]).toBe('removeReverseNat 777');
  });
});
