import { describe, expect, it } from 'vitest';
import { type CacheEvent, ServiceCache } from '../../src/agent/services/cache.js';
import { node, service, slice } from './agent-fixtures.js';

function cacheWithEvents() {
  const cache = new ServiceCache();
  const events: CacheEvent[] = [];
  cache.onEvent = (e) => events.push(e);
  return { cache, events };
}

describe('the Service cache', () => {
  it('an event dirties only the Service it concerns', () => {
    const { cache } = cacheWithEvents();
    cache.upsert('Service', service('a'), 'add');
    cache.upsert('Service', service('b'), 'add');
    cache.takeDirty();
    cache.upsert('EndpointSlice', slice('b-1', 'b', [{ ip: '10.244.1.2' }]), 'add');
    expect([...cache.takeDirty()]).toEqual(['default/b']);
    cache.remove('EndpointSlice', slice('b-1', 'b', []));
    expect([...cache.takeDirty()]).toEqual(['default/b']);
    expect(cache.slicesOf('default/b')).toEqual([]);
  });

  it('an object delivered again unchanged (a relist, a new resourceVersion) dirties nothing', () => {
    const { cache, events } = cacheWithEvents();
    cache.upsert('Service', service('a'), 'add');
    cache.takeDirty();
    cache.upsert('Service', service('a', { resourceVersion: '9' }));
    expect(cache.dirtyCount).toBe(0);
    expect(events.map((e) => e.outcome)).toEqual(['added', 'unchanged']);
  });

  it('Node heartbeats dirty nothing; an InternalIP change dirties the NodePort Services only', () => {
    const { cache } = cacheWithEvents();
    cache.upsert('Service', service('cip'));
    cache.upsert('Service', service('np', { type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] }));
    cache.upsert('Node', node('n1', ['172.30.0.2']));
    cache.takeDirty();
    cache.upsert('Node', node('n1', ['172.30.0.2'], { conditions: [{ type: 'Ready', status: 'True' }] }));
    expect(cache.dirtyCount).toBe(0);
    cache.upsert('Node', node('n1', ['172.30.0.9']));
    expect([...cache.takeDirty()]).toEqual(['default/np']);
    cache.remove('Node', node('n1', []));
    expect([...cache.takeDirty()]).toEqual(['default/np']);
  });

  it('a slice that moves to another Service (label change) dirties both', () => {
    const { cache } = cacheWithEvents();
    cache.upsert('EndpointSlice', slice('s', 'a', [{ ip: '10.244.1.2' }]));
    cache.takeDirty();
    cache.upsert('EndpointSlice', slice('s', 'b', [{ ip: '10.244.1.2' }]));
    expect([...cache.takeDirty()].sort()).toEqual(['default/a', 'default/b']);
    expect(cache.slicesOf('default/a')).toEqual([]);
    expect(cache.slicesOf('default/b').map((s) => s.name)).toEqual(['s']);
  });

  it("a Service's slices come in name order, whatever order they arrive, updated and removed in place", () => {
    const { cache } = cacheWithEvents();
    cache.upsert('EndpointSlice', slice('web-c', 'web', [{ ip: '10.244.1.3' }]), 'add');
    cache.upsert('EndpointSlice', slice('web-a', 'web', [{ ip: '10.244.1.1' }]), 'add');
    cache.upsert('EndpointSlice', slice('web-b', 'web', [{ ip: '10.244.1.2' }]), 'add');
    const names = () => cache.slicesOf('default/web').map((s) => s.name);
    expect(names()).toEqual(['web-a', 'web-b', 'web-c']);
    cache.upsert('EndpointSlice', slice('web-b', 'web', [{ ip: '10.244.1.9' }]));
    expect(names()).toEqual(['web-a', 'web-b', 'web-c']);
    expect(cache.slicesOf('default/web')[1]!.endpoints.map((e) => e.address)).toEqual(['10.244.1.9']);
    cache.remove('EndpointSlice', slice('web-a', 'web', []));
    expect(names()).toEqual(['web-b', 'web-c']);
    cache.remove('EndpointSlice', slice('web-missing', 'web', []));
    expect(names()).toEqual(['web-b', 'web-c']);
    cache.remove('EndpointSlice', slice('web-c', 'web', []));
    cache.remove('EndpointSlice', slice('web-b', 'web', []));
    expect(cache.slicesOf('default/web')).toEqual([]);
  });

  it('a malformed update is reported and the last good version stays in use', () => {
    const { cache, events } = cacheWithEvents();
    cache.upsert('Service', service('a', { clusterIP: '10.96.0.5' }), 'add');
    cache.takeDirty();
    const bad = service('a');
    (bad.spec as { ports: unknown }).ports = [{ port: 'eighty' }];
    expect(cache.upsert('Service', bad)).toBe('invalid');
    expect(cache.dirtyCount).toBe(0);
    expect(cache.service('default/a')?.clusterIPs).toEqual(['10.96.0.5']);
    expect(cache.invalid()).toEqual([
      expect.objectContaining({
        kind: 'Service',
        name: 'default/a',
        reason: expect.stringMatching(/ports\[0\].port/),
      }),
    ]);
    expect(events.at(-1)).toMatchObject({ kind: 'Service', action: 'update', outcome: 'invalid' });
    // A good version clears the report.
    cache.upsert('Service', service('a', { clusterIP: '10.96.0.6' }));
    expect(cache.invalid()).toEqual([]);
    expect(cache.service('default/a')?.clusterIPs).toEqual(['10.96.0.6']);
  });

  it('an FQDN slice is ignored; one that becomes FQDN stops counting', () => {
    const { cache } = cacheWithEvents();
    cache.upsert('EndpointSlice', slice('s', 'a', [{ ip: '10.244.1.2' }]));
    expect(
      cache.upsert(
        'EndpointSlice',
        slice('s', 'a', [{ ip: 'x.example' }], undefined, { addressType: 'FQDN' }),
      ),
    ).toBe('deleted');
    expect(
      cache.upsert(
        'EndpointSlice',
        slice('t', 'a', [{ ip: 'x.example' }], undefined, { addressType: 'FQDN' }),
      ),
    ).toBe('ignored');
    expect(cache.counts().endpointSlices).toBe(0);
  });

  it('is synced once every kind has delivered its first list', () => {
    const { cache } = cacheWithEvents();
    cache.markSynced('Service');
    cache.markSynced('Node');
    expect(cache.isSynced()).toBe(false);
    cache.markSynced('EndpointSlice');
    expect(cache.isSynced()).toBe(true);
  });
});
