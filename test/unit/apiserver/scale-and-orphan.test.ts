import { pino } from 'pino';
import { beforeEach, describe, expect, it } from 'vitest';
import { ApiCore } from '../../../src/devcluster/apiserver/api-core.js';
import { ApiError } from '../../../src/devcluster/apiserver/api-status.js';
import type { JsonObject } from '../../../src/devcluster/apiserver/json-value.js';
import { ObjectStore } from '../../../src/devcluster/apiserver/object-store.js';
import type { RequestContext } from '../../../src/devcluster/apiserver/request-context.js';
import { ResourceRegistry } from '../../../src/devcluster/apiserver/resource-types.js';
import {
  getScale,
  patchScale,
  selectorString,
  updateScale,
} from '../../../src/devcluster/apiserver/scale-subresource.js';
import {
  ClusterIPAllocator,
  NodePortAllocator,
} from '../../../src/devcluster/apiserver/service-allocator.js';

// The scale subresource (`kubectl scale`) and propagationPolicy=Orphan (`kubectl delete
// --cascade=orphan`), without HTTP.
let core: ApiCore;
let registry: ResourceRegistry;

function ctx(
  group: string,
  plural: string,
  o: { name?: string; sub?: string; query?: Record<string, string> } = {},
) {
  const version = 'v1';
  const type = registry.lookup(group, version, plural);
  if (!type) throw new Error(`no ${plural}`);
  return {
    type,
    version,
    namespace: 'demo',
    name: o.name,
    subresource: o.sub,
    query: new URLSearchParams(o.query ?? {}),
    userAgent: 'unit-test/1.0',
    identity: { kind: 'admin' },
    warnings: [],
  } as RequestContext;
}

const template = {
  metadata: { labels: { app: 'web' } },
  spec: { containers: [{ name: 'c', image: 'i' }] },
};

beforeEach(() => {
  registry = new ResourceRegistry();
  core = new ApiCore({
    registry,
    store: new ObjectStore(1000),
    clusterIPs: new ClusterIPAllocator('10.96.0.0/24'),
    nodePorts: new NodePortAllocator([30000, 30010]),
    log: pino({ level: 'silent' }),
  });
  core.create(
    { ...ctx('', 'namespaces'), namespace: undefined },
    {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: 'demo' },
    },
  );
  core.create(ctx('apps', 'deployments'), {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web' },
    spec: { replicas: 3, selector: { matchLabels: { app: 'web' } }, template },
  });
});

describe('the scale subresource', () => {
  it('shows spec.replicas, status.replicas and the selector as an autoscaling/v1 Scale', () => {
    const scale = getScale(core, ctx('apps', 'deployments', { name: 'web', sub: 'scale' }));
    expect(scale).toMatchObject({
      apiVersion: 'autoscaling/v1',
      kind: 'Scale',
      metadata: { name: 'web', namespace: 'demo' },
      spec: { replicas: 3 },
      status: { replicas: 0, selector: 'app=web' },
    });
  });

  it('a merge patch of spec.replicas (kubectl scale) changes the Deployment and its generation', () => {
    const c = ctx('apps', 'deployments', { name: 'web', sub: 'scale' });
    const scale = patchScale(core, c, 'application/merge-patch+json', { spec: { replicas: 5 } });
    expect((scale.spec as JsonObject).replicas).toBe(5);
    const d = core.get(ctx('apps', 'deployments', { name: 'web' }));
    expect((d.spec as JsonObject).replicas).toBe(5);
    expect((d.metadata as JsonObject).generation).toBe(2);
  });

  it('a PUT with a stale resourceVersion is a 409; a negative count a 422', () => {
    const c = ctx('apps', 'deployments', { name: 'web', sub: 'scale' });
    const stale = { metadata: { name: 'web', resourceVersion: '1' }, spec: { replicas: 2 } };
    expect(() => updateScale(core, c, stale)).toThrow(ApiError);
    try {
      updateScale(core, c, { metadata: { name: 'web' }, spec: { replicas: -1 } });
      expect.unreachable();
    } catch (err) {
      expect((err as ApiError).code).toBe(422);
    }
  });

  it.each([
    [{ matchLabels: { b: '2', a: '1' } }, 'a=1,b=2'],
    [{ matchExpressions: [{ key: 'tier', operator: 'In', values: ['x', 'y'] }] }, 'tier in (x,y)'],
    [{ matchExpressions: [{ key: 'k', operator: 'DoesNotExist' }] }, '!k'],
  ])('selector %j is written %s', (selector, text) => {
    expect(selectorString(selector)).toBe(text);
  });
});

describe('propagationPolicy=Orphan', () => {
  function replicaSetOwnedBy(owner: JsonObject): JsonObject {
    const m = owner.metadata as JsonObject;
    return core.create(ctx('apps', 'replicasets'), {
      apiVersion: 'apps/v1',
      kind: 'ReplicaSet',
      metadata: {
        name: 'web-abc',
        ownerReferences: [
          { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', uid: m.uid as string, controller: true },
        ],
      },
      spec: { replicas: 1, selector: { matchLabels: { app: 'web' } }, template },
    });
  }

  it('removes the ownerReferences to the deleted object from its dependents', () => {
    const d = core.get(ctx('apps', 'deployments', { name: 'web' }));
    replicaSetOwnedBy(d);
    core.delete(ctx('apps', 'deployments', { name: 'web' }), {
      kind: 'DeleteOptions',
      propagationPolicy: 'Orphan',
    });
    const rs = core.get(ctx('apps', 'replicasets', { name: 'web-abc' }));
    expect((rs.metadata as JsonObject).ownerReferences).toBeUndefined();
  });

  it('Background leaves them for the garbage collector', () => {
    const d = core.get(ctx('apps', 'deployments', { name: 'web' }));
    replicaSetOwnedBy(d);
    core.delete(ctx('apps', 'deployments', { name: 'web' }), undefined);
    const rs = core.get(ctx('apps', 'replicasets', { name: 'web-abc' }));
    expect((rs.metadata as JsonObject).ownerReferences).toHaveLength(1);
  });
});
