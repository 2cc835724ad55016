import { pino } from 'pino';
import { beforeEach, describe, expect, it } from 'vitest';
import { ApiCore } from '../../../src/devcluster/apiserver/api-core.js';
import { ApiError } from '../../../src/devcluster/apiserver/api-status.js';
import type { JsonObject, JsonValue } from '../../../src/devcluster/apiserver/json-value.js';
import { ObjectStore } from '../../../src/devcluster/apiserver/object-store.js';
import type { RequestContext } from '../../../src/devcluster/apiserver/request-context.js';
import { ResourceRegistry } from '../../../src/devcluster/apiserver/resource-types.js';
import {
  ClusterIPAllocator,
  NodePortAllocator,
} from '../../../src/devcluster/apiserver/service-allocator.js';

// The REST semantics without HTTP: what a client sees for each write, and that a refused
// write leaves nothing behind.
let core: ApiCore;
let store: ObjectStore;
let registry: ResourceRegistry;

function ctx(
  group: string,
  version: string,
  plural: string,
  o: { ns?: string; name?: string; sub?: string; query?: Record<string, string> } = {},
): RequestContext {
  const type = registry.lookup(group, version, plural);
  if (!type) throw new Error(`no ${plural}`);
  return {
    type,
    version,
    namespace: o.ns,
    name: o.name,
    subresource: o.sub,
    query: new URLSearchParams(o.query ?? {}),
    userAgent: 'unit-test/1.0',
    identity: { kind: 'admin' },
    warnings: [],
  };
}

function apiError(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
  throw new Error('expected an ApiError');
}

const meta = (o: JsonObject) => o.metadata as JsonObject;

beforeEach(() => {
  registry = new ResourceRegistry();
  store = new ObjectStore(1000);
  core = new ApiCore({
    registry,
    store,
    clusterIPs: new ClusterIPAllocator('10.96.0.0/24'),
    nodePorts: new NodePortAllocator([30000, 30010]),
    log: pino({ level: 'silent' }),
  });
  core.create(ctx('', 'v1', 'namespaces'), {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: 'demo' },
  });
});

function svc(name: string, spec: JsonObject): JsonValue {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name }, spec };
}

describe('validation errors are Kubernetes Status objects and store nothing', () => {
  it.each([
    [
      'missing name',
      { apiVersion: 'v1', kind: 'Pod', metadata: {}, spec: { containers: [{ name: 'c', image: 'i' }] } },
      422,
      'Pod "" is invalid: metadata.name: Required value: name or generateName is required',
    ],
    [
      'missing image and bad port',
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'p' },
        spec: { containers: [{ name: 'c', ports: [{ containerPort: 70000 }] }] },
      },
      422,
      'Pod "p" is invalid: [spec.containers[0].image: Required value, spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive]',
    ],
    [
      'upper-case name',
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'Pod1' },
        spec: { containers: [{ name: 'c', image: 'i' }] },
      },
      422,
      'metadata.name: Invalid value: "Pod1": a lowercase RFC 1123 subdomain',
    ],
    [
      'wrong kind for the URL',
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'p' } },
      400,
      'the kind in the body (Service) does not match the kind of the resource pods (Pod)',
    ],
    [
      'wrong apiVersion',
      { apiVersion: 'apps/v1', kind: 'Pod', metadata: { name: 'p' } },
      400,
      'the API version in the data (apps/v1) does not match the expected API version (v1)',
    ],
    ['not an object', [1, 2], 400, 'must be a JSON or YAML object'],
  ])('%s', (_name, body, code, message) => {
    const before = store.resourceVersion;
    const err = apiError(() => core.create(ctx('', 'v1', 'pods', { ns: 'demo' }), body as JsonValue));
    expect(err.code).toBe(code);
    expect(err.message).toContain(message);
    expect(err.toStatus()).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code });
    expect(store.resourceVersion).toBe(before);
    expect(store.count('/pods')).toBe(0);
  });

  it('lists every cause with its field, like kube-apiserver', () => {
    const err = apiError(() =>
      core.create(ctx('', 'v1', 'services', { ns: 'demo' }), svc('Bad_Name', { ports: [{ port: 0 }] })),
    );
    expect(err.details?.causes?.map((c) => c.field)).toEqual([
      'metadata.name',
      'spec.ports[0].port',
      'spec.ports[0].targetPort',
    ]);
  });

  it('NetworkPolicy selectors and CIDRs are validated', () => {
    const err = apiError(() =>
      core.create(ctx('networking.k8s.io', 'v1', 'networkpolicies', { ns: 'demo' }), {
        apiVersion: 'networking.k8s.io/v1',
        kind: 'NetworkPolicy',
        metadata: { name: 'np' },
        spec: {
          podSelector: { matchExpressions: [{ key: 'app', operator: 'Foo' }] },
          ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/33' } }] }],
        },
      }),
    );
    expect(err.code).toBe(422);
    expect(err.message).toContain('spec.podSelector.matchExpressions[0].operator: Invalid value: "Foo"');
    expect(err.message).toContain(
      'spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "10.0.0.0/33": must be a valid CIDR value',
    );
  });

  it('creating in a missing namespace is 404', () => {
    const err = apiError(() =>
      core.create(ctx('', 'v1', 'configmaps', { ns: 'nope' }), {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'c' },
      }),
    );
    expect(err.code).toBe(404);
    expect(err.message).toBe('namespaces "nope" not found');
  });
});

describe('lists', () => {
  beforeEach(() => {
    for (let i = 0; i < 5; i++) {
      core.create(ctx('', 'v1', 'pods', { ns: 'demo' }), {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `p${i}`, labels: { idx: String(i) } },
        spec: { containers: [{ name: 'c', image: 'i' }], ...(i % 2 === 0 ? { nodeName: 'n1' } : {}) },
      });
    }
  });

  it('pages with limit/continue over a consistent snapshot', () => {
    const first = core.list(ctx('', 'v1', 'pods', { ns: 'demo', query: { limit: '2' } }));
    expect(first.items.map((o) => meta(o).name)).toEqual(['p0', 'p1']);
    expect(first.metadata.remainingItemCount).toBe(3);
    core.delete(
      ctx('', 'v1', 'pods', { ns: 'demo', name: 'p2', query: { gracePeriodSeconds: '0' } }),
      undefined,
    );
    const second = core.list(
      ctx('', 'v1', 'pods', { ns: 'demo', query: { limit: '2', continue: String(first.metadata.continue) } }),
    );
    expect(second.items.map((o) => meta(o).name)).toEqual(['p2', 'p3']);
    expect(second.metadata.resourceVersion).toBe(first.metadata.resourceVersion);
  });

  it('a continue token older than the retained history is 410 Expired', () => {
    const first = core.list(ctx('', 'v1', 'pods', { ns: 'demo', query: { limit: '1' } }));
    for (let i = 0; i < 1300; i++) {
      core.patch(ctx('', 'v1', 'pods', { ns: 'demo', name: 'p1' }), 'application/merge-patch+json', {
        metadata: { labels: { n: String(i) } },
      });
    }
    const err = apiError(() =>
      core.list(
        ctx('', 'v1', 'pods', {
          ns: 'demo',
          query: { limit: '1', continue: String(first.metadata.continue) },
        }),
      ),
    );
    expect(err.toStatus()).toMatchObject({ code: 410, reason: 'Expired' });
    expect(err.message).toContain('The provided continue parameter is too old');
  });

  it.each([
    ['spec.nodeName=n1', ['p0', 'p2', 'p4']],
    ['spec.nodeName!=n1,metadata.name!=p1', ['p3']],
    ['status.phase=Pending', ['p0', 'p1', 'p2', 'p3', 'p4']],
  ])('field selector %s', (fieldSelector, names) => {
    const list = core.list(ctx('', 'v1', 'pods', { ns: 'demo', query: { fieldSelector } }));
    expect(list.items.map((o) => meta(o).name)).toEqual(names);
  });

  it('an unknown field selector or a bad label selector is 400', () => {
    expect(
      apiError(() => core.list(ctx('', 'v1', 'pods', { ns: 'demo', query: { fieldSelector: 'spec.foo=x' } })))
        .message,
    ).toBe('field label not supported: spec.foo');
    expect(
      apiError(() => core.list(ctx('', 'v1', 'pods', { ns: 'demo', query: { labelSelector: 'idx in (' } })))
        .code,
    ).toBe(400);
  });

  it('resourceVersionMatch=Exact lists the objects as they were', () => {
    const before = core.list(ctx('', 'v1', 'pods', { ns: 'demo' })).metadata.resourceVersion as string;
    core.delete(ctx('', 'v1', 'pods', { ns: 'demo', name: 'p1' }), undefined);
    const then = core.list(
      ctx('', 'v1', 'pods', {
        ns: 'demo',
        query: { resourceVersion: before, resourceVersionMatch: 'Exact' },
      }),
    );
    expect(then.items.map((o) => meta(o).name)).toContain('p1');
    const now = core.list(ctx('', 'v1', 'pods', { ns: 'demo' }));
    expect(now.items.map((o) => meta(o).name)).not.toContain('p1');
  });
});

describe('writes', () => {
  it('create sets uid, creationTimestamp, resourceVersion, generation, managedFields; duplicates are 409', () => {
    const c = ctx('networking.k8s.io', 'v1', 'networkpolicies', { ns: 'demo' });
    const body = {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'np' },
      spec: { podSelector: {} },
    };
    const o = core.create(c, body);
    expect(meta(o)).toMatchObject({ name: 'np', namespace: 'demo', generation: 1 });
    expect(meta(o).uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(Number(meta(o).resourceVersion)).toBe(store.resourceVersion);
    expect((meta(o).managedFields as JsonObject[])[0]).toMatchObject({
      manager: 'unit-test',
      operation: 'Update',
    });
    expect(apiError(() => core.create(c, body)).reason).toBe('AlreadyExists');
  });

  it('generateName gets a random suffix', () => {
    const o = core.create(ctx('', 'v1', 'configmaps', { ns: 'demo' }), {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { generateName: 'cm-' },
    });
    expect(meta(o).name).toMatch(/^cm-[a-z0-9]{5}$/);
  });

  it('generation moves on spec changes only; a stale resourceVersion is a 409 conflict', () => {
    const c = ctx('networking.k8s.io', 'v1', 'networkpolicies', { ns: 'demo', name: 'np' });
    const o = core.create(
      { ...c, name: undefined },
      {
        apiVersion: 'networking.k8s.io/v1',
        kind: 'NetworkPolicy',
        metadata: { name: 'np' },
        spec: { podSelector: {} },
      },
    );
    const labelled = core.patch(c, 'application/merge-patch+json', {
      metadata: { labels: { a: 'b' } },
    }).object;
    expect(meta(labelled).generation).toBe(1);
    const changed = core.patch(c, 'application/merge-patch+json', {
      spec: { policyTypes: ['Ingress'] },
    }).object;
    expect(meta(changed).generation).toBe(2);
    const stale = { ...o, spec: { podSelector: { matchLabels: { x: 'y' } } } };
    const err = apiError(() => core.update(c, stale));
    expect(err.code).toBe(409);
    expect(err.message).toBe(
      'Operation cannot be fulfilled on networkpolicies.networking.k8s.io "np": the object has been modified; please apply your changes to the latest version and try again',
    );
  });

  it('an update that changes nothing keeps the resourceVersion', () => {
    const c = ctx('', 'v1', 'configmaps', { ns: 'demo', name: 'c' });
    const o = core.create(
      { ...c, name: undefined },
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: { a: '1' } },
    );
    const again = core.patch(c, 'application/merge-patch+json', { data: { a: '1' } }).object;
    expect(meta(again).resourceVersion).toBe(meta(o).resourceVersion);
  });

  it('the main endpoint ignores status; /status changes only status', () => {
    const c = ctx('', 'v1', 'pods', { ns: 'demo', name: 'p' });
    core.create(
      { ...c, name: undefined },
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'p' },
        spec: { containers: [{ name: 'c', image: 'i' }] },
        status: { phase: 'Running' },
      },
    );
    expect((core.get(c).status as JsonObject).phase).toBe('Pending');
    core.patch(c, 'application/merge-patch+json', { status: { phase: 'Running' } });
    expect((core.get(c).status as JsonObject).phase).toBe('Pending');
    const updated = core.patch({ ...c, subresource: 'status' }, 'application/merge-patch+json', {
      metadata: { labels: { x: 'y' } },
      status: { phase: 'Running', podIP: '10.244.1.5' },
    }).object;
    expect(updated.status).toMatchObject({ phase: 'Running', podIP: '10.244.1.5' });
    expect(meta(updated).labels).toBeUndefined();
  });

  it('a pod sent back as read, with its keys in another order (kubectl replace), is not a spec change', () => {
    const c = ctx('', 'v1', 'pods', { ns: 'demo', name: 'p' });
    core.create(
      { ...c, name: undefined },
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'p' },
        spec: { containers: [{ name: 'c', image: 'i:1', args: ['x'] }] },
      },
    );
    const sortKeys = (v: unknown): unknown =>
      Array.isArray(v)
        ? v.map(sortKeys)
        : v && typeof v === 'object'
          ? Object.fromEntries(
              Object.entries(v)
                .sort(([a], [b]) => (a < b ? -1 : 1))
                .map(([k, x]) => [k, sortKeys(x)]),
            )
          : v;
    const read = sortKeys(core.get(c)) as JsonObject;
    (read.metadata as JsonObject).labels = { changed: 'yes' };
    expect(meta(core.update(c, read)).labels).toEqual({ changed: 'yes' });
  });

  it('pod specs are immutable except images', () => {
    const c = ctx('', 'v1', 'pods', { ns: 'demo', name: 'p' });
    core.create(
      { ...c, name: undefined },
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'p' },
        spec: { containers: [{ name: 'c', image: 'i:1' }] },
      },
    );
    core.patch(c, 'application/strategic-merge-patch+json', {
      spec: { containers: [{ name: 'c', image: 'i:2' }] },
    });
    const err = apiError(() =>
      core.patch(c, 'application/strategic-merge-patch+json', {
        spec: { containers: [{ name: 'c', args: ['x'] }] },
      }),
    );
    expect(err.code).toBe(422);
    expect(err.message).toContain('spec: Forbidden: pod updates may not change fields other than');
  });

  it('dryRun=All validates and answers without storing', () => {
    const before = store.resourceVersion;
    const o = core.create(
      ctx('', 'v1', 'services', { ns: 'demo', query: { dryRun: 'All' } }),
      svc('s', { ports: [{ port: 80 }] }),
    );
    expect((o.spec as JsonObject).clusterIP).toMatch(/^10\.96\.0\./);
    expect(store.resourceVersion).toBe(before);
  });
});

describe('Service defaults and allocation', () => {
  it('fills in the defaults the real server sets', () => {
    const o = core.create(
      ctx('', 'v1', 'services', { ns: 'demo' }),
      svc('web', { type: 'NodePort', ports: [{ port: 80 }] }),
    );
    expect(o.spec).toMatchObject({
      type: 'NodePort',
      sessionAffinity: 'None',
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
      internalTrafficPolicy: 'Cluster',
      externalTrafficPolicy: 'Cluster',
      ports: [{ port: 80, protocol: 'TCP', targetPort: 80, nodePort: 30000 }],
    });
  });

  it('headless gets None, ExternalName gets no ClusterIP', () => {
    const headless = core.create(
      ctx('', 'v1', 'services', { ns: 'demo' }),
      svc('h', { clusterIP: 'None', selector: { a: 'b' } }),
    );
    expect((headless.spec as JsonObject).clusterIPs).toEqual(['None']);
    const ext = core.create(
      ctx('', 'v1', 'services', { ns: 'demo' }),
      svc('e', { type: 'ExternalName', externalName: 'example.com' }),
    );
    expect((ext.spec as JsonObject).clusterIP).toBeUndefined();
  });

  it('a taken or out-of-range ClusterIP or NodePort is 422 and allocates nothing', () => {
    core.create(
      ctx('', 'v1', 'services', { ns: 'demo' }),
      svc('a', { clusterIP: '10.96.0.50', type: 'NodePort', ports: [{ port: 80, nodePort: 30005 }] }),
    );
    const cases: Array<[JsonObject, string]> = [
      [
        { clusterIP: '10.96.0.50', ports: [{ port: 80 }] },
        'spec.clusterIPs: Invalid value: []string{"10.96.0.50"}: failed to allocate IP 10.96.0.50: provided IP is already allocated',
      ],
      [
        { clusterIP: '10.1.0.1', ports: [{ port: 80 }] },
        'the provided IP (10.1.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/24',
      ],
      [
        { type: 'NodePort', ports: [{ port: 80, nodePort: 30005 }] },
        'spec.ports[0].nodePort: Invalid value: 30005: provided port is already allocated',
      ],
      [
        { type: 'NodePort', ports: [{ port: 80, nodePort: 31000 }] },
        'provided port is not in the valid range. The range of valid ports is 30000-30010',
      ],
    ];
    for (const [spec, message] of cases) {
      const err = apiError(() =>
        core.create(
          ctx('', 'v1', 'services', { ns: 'demo' }),
          svc('b', { clusterIP: '10.96.0.60', ...spec }),
        ),
      );
      expect(err.message).toContain(message);
    }
    // Nothing leaked: 10.96.0.60 is still free.
    const ok = core.create(
      ctx('', 'v1', 'services', { ns: 'demo' }),
      svc('c', { clusterIP: '10.96.0.60', ports: [{ port: 80 }] }),
    );
    expect((ok.spec as JsonObject).clusterIP).toBe('10.96.0.60');
  });

  it('releases allocations on delete and keeps them across an apply that omits them', () => {
    const c = ctx('', 'v1', 'services', { ns: 'demo', name: 'a' });
    const o = core.create(
      { ...c, name: undefined },
      svc('a', { type: 'NodePort', ports: [{ port: 80, nodePort: 30003 }] }),
    );
    const kept = core.patch(c, 'application/strategic-merge-patch+json', {
      spec: { ports: [{ port: 80, targetPort: 8080 }] },
    }).object;
    expect((kept.spec as JsonObject).clusterIP).toBe((o.spec as JsonObject).clusterIP);
    expect(((kept.spec as JsonObject).ports as JsonObject[])[0]!.nodePort).toBe(30003);
    core.delete(c, undefined);
    const again = core.create(
      { ...c, name: undefined },
      svc('b', {
        clusterIP: (o.spec as JsonObject).clusterIP as string,
        type: 'NodePort',
        ports: [{ port: 80, nodePort: 30003 }],
      }),
    );
    expect(((again.spec as JsonObject).ports as JsonObject[])[0]!.nodePort).toBe(30003);
  });
});

describe('deletion', () => {
  const podBody = (name: string, nodeName?: string): JsonValue => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name },
    spec: { containers: [{ name: 'c', image: 'i' }], ...(nodeName ? { nodeName } : {}) },
  });

  it('an unbound pod goes at once; a bound pod terminates gracefully until gracePeriodSeconds=0', () => {
    core.create(ctx('', 'v1', 'pods', { ns: 'demo' }), podBody('unbound'));
    core.delete(ctx('', 'v1', 'pods', { ns: 'demo', name: 'unbound' }), undefined);
    expect(store.get('/pods', 'demo/unbound')).toBeUndefined();

    core.create(ctx('', 'v1', 'pods', { ns: 'demo' }), podBody('bound', 'node-1'));
    const terminating = core.delete(ctx('', 'v1', 'pods', { ns: 'demo', name: 'bound' }), undefined);
    expect(meta(terminating).deletionGracePeriodSeconds).toBe(30);
    expect(meta(terminating).deletionTimestamp).toBeTruthy();
    expect(store.get('/pods', 'demo/bound')).toBeDefined();
    core.delete(
      ctx('', 'v1', 'pods', { ns: 'demo', name: 'bound', query: { gracePeriodSeconds: '0' } }),
      undefined,
    );
    expect(store.get('/pods', 'demo/bound')).toBeUndefined();
  });

  it('pods/binding assigns a node once, as the scheduler does', () => {
    core.create(ctx('', 'v1', 'pods', { ns: 'demo' }), podBody('to-bind'));
    const c = ctx('', 'v1', 'pods', { ns: 'demo', name: 'to-bind', sub: 'binding' });
    const status = core.bind(c, {
      apiVersion: 'v1',
      kind: 'Binding',
      metadata: { name: 'to-bind' },
      target: { kind: 'Node', name: 'node-1' },
    });
    expect(status).toMatchObject({ kind: 'Status', status: 'Success' });
    const pod = store.get('/pods', 'demo/to-bind')!;
    expect((pod.spec as JsonObject).nodeName).toBe('node-1');
    expect((pod.status as JsonObject).conditions).toContainEqual(
      expect.objectContaining({ type: 'PodScheduled', status: 'True' }),
    );
    const again = apiError(() => core.bind(c, { target: { kind: 'Node', name: 'node-2' } }));
    expect(again.code).toBe(409);
    expect(again.message).toContain('is already assigned to node "node-1"');
    expect(apiError(() => core.bind(c, { target: {} })).code).toBe(422);
  });

  it('a Service held by a finalizer releases its ClusterIP when the finalizer goes', () => {
    const c = ctx('', 'v1', 'services', { ns: 'demo', name: 'held' });
    core.create(
      { ...c, name: undefined },
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'held', finalizers: ['example.com/hold'] },
        spec: { clusterIP: '10.96.0.77', ports: [{ port: 80 }] },
      },
    );
    core.delete(c, undefined);
    expect(
      apiError(() =>
        core.create(
          { ...c, name: undefined },
          svc('other', { clusterIP: '10.96.0.77', ports: [{ port: 80 }] }),
        ),
      ).code,
    ).toBe(422);
    core.patch(c, 'application/merge-patch+json', { metadata: { finalizers: null } });
    expect(store.get('/services', 'demo/held')).toBeUndefined();
    const reused = core.create(
      { ...c, name: undefined },
      svc('other', { clusterIP: '10.96.0.77', ports: [{ port: 80 }] }),
    );
    expect((reused.spec as JsonObject).clusterIP).toBe('10.96.0.77');
  });

  it('finalizers hold an object until they are cleared', () => {
    const c = ctx('', 'v1', 'configmaps', { ns: 'demo', name: 'held' });
    core.create(
      { ...c, name: undefined },
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'held', finalizers: ['example.com/hold'] } },
    );
    core.delete(c, undefined);
    expect(meta(store.get('/configmaps', 'demo/held')!).deletionTimestamp).toBeTruthy();
    core.patch(c, 'application/merge-patch+json', { metadata: { finalizers: null } });
    expect(store.get('/configmaps', 'demo/held')).toBeUndefined();
  });

  it('deleting a namespace removes what it holds, then the namespace', async () => {
    core.create(ctx('', 'v1', 'configmaps', { ns: 'demo' }), {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'c' },
    });
    core.delete(ctx('', 'v1', 'namespaces', { name: 'demo' }), undefined);
    expect((store.get('/namespaces', 'demo')!.status as JsonObject).phase).toBe('Terminating');
    const refused = apiError(() =>
      core.create(ctx('', 'v1', 'configmaps', { ns: 'demo' }), {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'd' },
      }),
    );
    expect(refused.code).toBe(403);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(store.count('/configmaps')).toBe(0);
    expect(store.get('/namespaces', 'demo')).toBeUndefined();
  });

  it('deletecollection deletes what the selector matches', () => {
    const members: Array<[string, string]> = [
      ['a', 'x'],
      ['b', 'x'],
      ['c', 'y'],
    ];
    for (const [name, app] of members) {
      core.create(ctx('', 'v1', 'configmaps', { ns: 'demo' }), {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name, labels: { app } },
      });
    }
    const gone = core.deleteCollection(
      ctx('', 'v1', 'configmaps', { ns: 'demo', query: { labelSelector: 'app=x' } }),
      undefined,
    );
    expect(gone.items.map((o) => meta(o).name)).toEqual(['a', 'b']);
    expect(store.list('/configmaps').map((o) => meta(o).name)).toEqual(['c']);
  });
});

describe('custom resources', () => {
  const crd = {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: 'widgets.example.com' },
    spec: {
      group: 'example.com',
      scope: 'Namespaced',
      names: { plural: 'widgets', kind: 'Widget' },
      versions: [
        {
          name: 'v1',
          served: true,
          storage: true,
          subresources: { status: {} },
          schema: {
            openAPIV3Schema: {
              type: 'object',
              properties: {
                spec: {
                  type: 'object',
                  required: ['size'],
                  properties: {
                    size: { type: 'integer', minimum: 1 },
                    color: { type: 'string', enum: ['red', 'blue'] },
                  },
                },
                status: { type: 'object', properties: { ready: { type: 'boolean' } } },
              },
            },
          },
        },
      ],
    },
  };
  const widget = (name: string, spec: JsonObject): JsonValue => ({
    apiVersion: 'example.com/v1',
    kind: 'Widget',
    metadata: { name },
    spec,
  });

  it('a CRD serves its resource, validates against its schema, and takes its objects when deleted', () => {
    const created = core.create(ctx('apiextensions.k8s.io', 'v1', 'customresourcedefinitions'), crd);
    expect((created.status as JsonObject).conditions).toContainEqual(
      expect.objectContaining({ type: 'Established', status: 'True' }),
    );
    const c = ctx('example.com', 'v1', 'widgets', { ns: 'demo' });
    const w = core.create(c, widget('w', { size: 2, color: 'red', extra: 1 }));
    expect(w.spec).toEqual({ size: 2, color: 'red' });
    expect(c.warnings).toEqual(['unknown field "spec.extra"']);
    const err = apiError(() => core.create(c, widget('bad', { size: 0, color: 'pink' })));
    expect(err.code).toBe(422);
    expect(err.message).toBe(
      'Widget "bad" is invalid: [spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1, spec.color: Unsupported value: "pink": supported values: "red", "blue"]',
    );
    expect(
      apiError(() =>
        core.create(
          ctx('example.com', 'v1', 'widgets', { ns: 'demo', query: { fieldValidation: 'Strict' } }),
          widget('strict', { size: 1, x: 1 }),
        ),
      ).code,
    ).toBe(400);
    core.delete(
      ctx('apiextensions.k8s.io', 'v1', 'customresourcedefinitions', { name: 'widgets.example.com' }),
      undefined,
    );
    expect(store.count('example.com/widgets')).toBe(0);
    expect(registry.lookup('example.com', 'v1', 'widgets')).toBeUndefined();
  });

  it('strategic merge patch is refused for custom resources (415)', () => {
    core.create(ctx('apiextensions.k8s.io', 'v1', 'customresourcedefinitions'), crd);
    core.create(ctx('example.com', 'v1', 'widgets', { ns: 'demo' }), widget('w', { size: 2 }));
    const err = apiError(() =>
      core.patch(
        ctx('example.com', 'v1', 'widgets', { ns: 'demo', name: 'w' }),
        'application/strategic-merge-patch+json',
        { spec: { size: 3 } },
      ),
    );
    expect(err.code).toBe(415);
  });
});
