import { describe, expect, it } from 'vitest';
import {
  type EndpointSliceInput,
  type EndpointSlicePlan,
  type NodeInput,
  type PodInput,
  planEndpointSlices,
  type ServiceInput,
} from '../../src/devcluster/controllers/endpointslice-plan.js';

// --- fixtures -------------------------------------------------------------------------------

interface ServiceOptions {
  selector?: Record<string, string> | null;
  type?: string;
  clusterIP?: string;
  ipFamilies?: string[];
  publishNotReadyAddresses?: boolean;
  trafficDistribution?: string;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  ports?: NonNullable<NonNullable<ServiceInput['spec']>['ports']>;
  uid?: string;
  deleting?: boolean;
}

function service(options: ServiceOptions = {}): ServiceInput {
  return {
    metadata: {
      name: 'web',
      namespace: 'shop',
      uid: options.uid ?? 'svc-uid-1',
      labels: options.labels ?? { app: 'web', tier: 'front' },
      annotations: options.annotations ?? {},
      ...(options.deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}),
    },
    spec: {
      selector: options.selector === undefined ? { app: 'web' } : options.selector,
      type: options.type ?? 'ClusterIP',
      clusterIP: options.clusterIP ?? '10.96.0.10',
      ipFamilies: options.ipFamilies ?? ['IPv4'],
      publishNotReadyAddresses: options.publishNotReadyAddresses ?? false,
      trafficDistribution: options.trafficDistribution,
      ports: options.ports ?? [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }],
    },
  };
}

interface PodOptions {
  ip?: string | string[] | null;
  ready?: boolean;
  node?: string;
  labels?: Record<string, string>;
  namespace?: string;
  phase?: string;
  deleting?: boolean;
  containerPorts?: { name: string; containerPort: number; protocol?: string }[];
  hostname?: string;
  subdomain?: string;
}

/** Each pod name keeps one default IP, so a pod rebuilt by a later step is the same endpoint. */
const defaultIPs = new Map<string, string>();
function defaultIP(name: string): string {
  let ip = defaultIPs.get(name);
  if (ip === undefined) {
    const n = defaultIPs.size + 1;
    ip = `10.244.${100 + (n >> 8)}.${n & 255}`;
    defaultIPs.set(name, ip);
  }
  return ip;
}

function pod(name: string, options: PodOptions = {}): PodInput {
  const ips =
    options.ip === null ? [] : Array.isArray(options.ip) ? options.ip : [options.ip ?? defaultIP(name)];
  return {
    metadata: {
      name,
      namespace: options.namespace ?? 'shop',
      uid: `uid-${name}`,
      labels: options.labels ?? { app: 'web' },
      ...(options.deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}),
    },
    spec: {
      nodeName: options.node ?? 'node-a',
      hostname: options.hostname,
      subdomain: options.subdomain,
      containers: [{ ports: options.containerPorts ?? [] }],
    },
    status: {
      phase: options.phase ?? 'Running',
      podIP: ips[0],
      podIPs: ips.map((ip) => ({ ip })),
      conditions: [{ type: 'Ready', status: options.ready === false ? 'False' : 'True' }],
    },
  };
}

function nodes(...specs: [string, string?][]): Map<string, NodeInput> {
  return new Map(
    specs.map(([name, zone]): [string, NodeInput] => {
      const labels: Record<string, string> = zone ? { 'topology.kubernetes.io/zone': zone } : {};
      return [name, { metadata: { name, labels } }];
    }),
  );
}

const defaultNodes = nodes(['node-a', 'zone-1'], ['node-b', 'zone-2']);

function plan(
  svc: ServiceInput,
  pods: PodInput[],
  existing: EndpointSliceInput[] = [],
  extra: { nodes?: Map<string, NodeInput>; max?: number } = {},
): EndpointSlicePlan {
  return planEndpointSlices({
    service: svc,
    pods,
    nodes: extra.nodes ?? defaultNodes,
    existingSlices: existing,
    maxEndpointsPerSlice: extra.max,
  });
}

/** What the API server does with a plan: names created slices, bumps versions, over JSON. */
let nameCounter = 0;
function apply(existing: EndpointSliceInput[], changes: EndpointSlicePlan): EndpointSliceInput[] {
  const byName = new Map(existing.map((slice) => [slice.metadata?.name ?? '', slice]));
  for (const deletion of changes.delete) byName.delete(deletion.name);
  for (const update of changes.update) {
    const version = Number(update.metadata.resourceVersion ?? '0') + 1;
    byName.set(
      update.metadata.name ?? '',
      wire({ ...update, metadata: { ...update.metadata, resourceVersion: String(version) } }),
    );
  }
  for (const created of changes.create) {
    const name = `${created.metadata.generateName}${(nameCounter++).toString(36).padStart(5, 'x')}`;
    const { generateName: _g, ...metadata } = created.metadata;
    byName.set(
      name,
      wire({ ...created, metadata: { ...metadata, name, uid: `uid-${name}`, resourceVersion: '1' } }),
    );
  }
  return [...byName.values()];
}

function wire<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

function converge(svc: ServiceInput, pods: PodInput[], existing: EndpointSliceInput[] = [], extra = {}) {
  const first = plan(svc, pods, existing, extra);
  return apply(existing, first);
}

const endpointsOf = (slices: { endpoints?: unknown }[]) =>
  slices.flatMap((s) => (s.endpoints ?? []) as { addresses: string[]; targetRef: { name: string } }[]);
const podNamesOf = (slices: { endpoints?: unknown }[]) =>
  endpointsOf(slices)
    .map((e) => e.targetRef.name)
    .sort();

// --- which Services get slices ------------------------------------------------------------------

describe('which Services get EndpointSlices', () => {
  it.each([
    { name: 'no selector', svc: service({ selector: null }) },
    { name: 'an empty selector', svc: service({ selector: {} }) },
    { name: 'type ExternalName', svc: service({ type: 'ExternalName' }) },
  ])('a Service with $name gets none, and loses the ones it had', ({ svc }) => {
    const existing = converge(service(), [pod('a')]);
    expect(existing).toHaveLength(1);
    const changes = plan(svc, [pod('b')], existing);
    expect(changes.create).toEqual([]);
    expect(changes.update).toEqual([]);
    expect(changes.delete.map((d) => d.name)).toEqual(existing.map((s) => s.metadata?.name));
  });

  it('a Service whose selector matches no pod gets one empty placeholder slice', () => {
    const changes = plan(service(), [pod('other', { labels: { app: 'db' } })]);
    expect(changes.create).toHaveLength(1);
    expect(changes.create[0]).toMatchObject({ addressType: 'IPv4', endpoints: [], ports: [] });
  });
});

// --- the slice itself -----------------------------------------------------------------------

describe('a new EndpointSlice', () => {
  const [slice] = plan(service(), [pod('web-1', { ip: '10.244.1.10' })]).create;

  it('is named after the Service, owned by it and labelled like kube-controller-manager does', () => {
    expect(slice?.metadata).toEqual({
      generateName: 'web-',
      namespace: 'shop',
      labels: {
        app: 'web',
        tier: 'front',
        'kubernetes.io/service-name': 'web',
        'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
      },
      ownerReferences: [
        {
          apiVersion: 'v1',
          kind: 'Service',
          name: 'web',
          uid: 'svc-uid-1',
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    });
    expect(slice).toMatchObject({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      addressType: 'IPv4',
    });
  });

  it('carries the resolved target port', () => {
    expect(slice?.ports).toEqual([{ name: 'http', port: 8080, protocol: 'TCP' }]);
  });

  it('describes the pod: address, conditions, node, zone and a reference to it', () => {
    expect(slice?.endpoints).toEqual([
      {
        addresses: ['10.244.1.10'],
        conditions: { ready: true, serving: true, terminating: false },
        nodeName: 'node-a',
        zone: 'zone-1',
        targetRef: { kind: 'Pod', namespace: 'shop', name: 'web-1', uid: 'uid-web-1' },
      },
    ]);
  });

  it("marks a headless Service's slices, and allows it no ports", () => {
    const [headless] = plan(service({ clusterIP: 'None', ports: [] }), [pod('web-1')]).create;
    expect(headless?.metadata.labels['service.kubernetes.io/headless']).toBe('');
    expect(headless?.ports).toEqual([]);
    expect(headless?.endpoints).toHaveLength(1);
  });

  it('never copies reserved labels from the Service', () => {
    const svc = service({
      labels: { 'kubernetes.io/service-name': 'spoof', 'endpointslice.kubernetes.io/managed-by': 'me' },
    });
    const [created] = plan(svc, [pod('a')]).create;
    expect(created?.metadata.labels).toEqual({
      'kubernetes.io/service-name': 'web',
      'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
    });
  });
});

// --- which pods, with which conditions ----------------------------------------------------------

describe('endpoints and their conditions', () => {
  it.each([
    { name: 'ready', pod: { ready: true }, conditions: { ready: true, serving: true, terminating: false } },
    {
      name: 'not ready',
      pod: { ready: false },
      conditions: { ready: false, serving: false, terminating: false },
    },
    {
      name: 'ready and terminating',
      pod: { ready: true, deleting: true },
      conditions: { ready: false, serving: true, terminating: true },
    },
    {
      name: 'not ready and terminating',
      pod: { ready: false, deleting: true },
      conditions: { ready: false, serving: false, terminating: true },
    },
    {
      name: 'not ready, publishNotReadyAddresses',
      pod: { ready: false },
      publish: true,
      conditions: { ready: true, serving: false, terminating: false },
    },
    {
      name: 'terminating, publishNotReadyAddresses',
      pod: { ready: true, deleting: true },
      publish: true,
      conditions: { ready: true, serving: true, terminating: true },
    },
  ])('a $name pod', ({ pod: options, publish, conditions }) => {
    const [slice] = plan(service({ publishNotReadyAddresses: publish }), [pod('p', options)]).create;
    expect(slice?.endpoints[0]?.conditions).toEqual(conditions);
  });

  it.each([
    { name: 'without an IP', pod: pod('no-ip', { ip: null }) },
    { name: 'Succeeded', pod: pod('done', { phase: 'Succeeded' }) },
    { name: 'Failed', pod: pod('failed', { phase: 'Failed' }) },
    { name: 'in another namespace', pod: pod('elsewhere', { namespace: 'other' }) },
    { name: 'not selected', pod: pod('db', { labels: { app: 'db' } }) },
  ])('a pod $name is not an endpoint', ({ pod: excluded }) => {
    const changes = plan(service(), [pod('kept'), excluded]);
    expect(podNamesOf(changes.create)).toEqual(['kept']);
  });

  it('skips a pod whose Node is unknown, and asks to be retried', () => {
    const changes = plan(service(), [pod('kept'), pod('orphan', { node: 'node-gone' })]);
    expect(podNamesOf(changes.create)).toEqual(['kept']);
    expect(changes.problems).toEqual([
      { pod: 'shop/orphan', reason: 'Node "node-gone" not found', retry: true },
    ]);
  });

  it('publishes a pod whose Node is unknown when the Service publishes not-ready addresses', () => {
    const changes = plan(service({ publishNotReadyAddresses: true }), [pod('orphan', { node: 'node-gone' })]);
    expect(changes.create[0]?.endpoints[0]).toMatchObject({
      nodeName: 'node-gone',
      targetRef: { name: 'orphan' },
    });
    expect(changes.create[0]?.endpoints[0]?.zone).toBeUndefined();
    expect(changes.problems).toEqual([]);
  });

  it('reports a malformed pod IP instead of writing it', () => {
    const changes = plan(service(), [pod('bad', { ip: '10.244.1.999' })]);
    expect(changes.problems).toEqual([
      { pod: 'shop/bad', reason: 'invalid pod IP "10.244.1.999"', retry: false },
    ]);
    expect(endpointsOf(changes.create)).toEqual([]);
  });

  it('sets the hostname of a pod whose subdomain is the Service', () => {
    const [slice] = plan(service(), [
      pod('db-0', { hostname: 'db-0', subdomain: 'web' }),
      pod('x', { hostname: 'x' }),
    ]).create;
    expect(slice?.endpoints.map((e) => e.hostname)).toEqual(['db-0', undefined]);
  });

  it('leaves out the zone of a Node without the zone label', () => {
    const [slice] = plan(service(), [pod('a')], [], { nodes: nodes(['node-a']) }).create;
    expect(slice?.endpoints[0]?.zone).toBeUndefined();
  });
});

// --- address families ---------------------------------------------------------------------------

describe('address types', () => {
  it.each([
    {
      name: 'IPv4 only',
      svc: service({ ipFamilies: ['IPv4'] }),
      expected: { IPv4: [['10.244.1.5']] },
    },
    {
      name: 'IPv6 only',
      svc: service({ ipFamilies: ['IPv6'], clusterIP: 'fd00:10:96::a' }),
      expected: { IPv6: [['fd00:10:244::5']] },
    },
    {
      name: 'dual stack',
      svc: service({ ipFamilies: ['IPv4', 'IPv6'] }),
      expected: { IPv4: [['10.244.1.5']], IPv6: [['fd00:10:244::5']] },
    },
    {
      name: 'legacy: no ipFamilies, IPv6 ClusterIP',
      svc: service({ ipFamilies: [], clusterIP: 'fd00:10:96::a' }),
      expected: { IPv6: [['fd00:10:244::5']] },
    },
  ])('$name', ({ svc, expected }) => {
    const created = plan(svc, [pod('a', { ip: ['10.244.1.5', 'FD00:10:244:0:0:0:0:5'] })]).create;
    const byType: Record<string, string[][]> = {};
    for (const slice of created) byType[slice.addressType] = slice.endpoints.map((e) => e.addresses);
    expect(byType).toEqual(expected);
  });

  it('deletes slices of an address type the Service no longer has', () => {
    const dual = service({ ipFamilies: ['IPv4', 'IPv6'] });
    const existing = converge(dual, [pod('a', { ip: ['10.244.1.5', 'fd00::5'] })]);
    const changes = plan(
      service({ ipFamilies: ['IPv4'] }),
      [pod('a', { ip: ['10.244.1.5', 'fd00::5'] })],
      existing,
    );
    const ipv6 = existing.find((s) => s.addressType === 'IPv6');
    expect(changes.delete.map((d) => d.name)).toEqual([ipv6?.metadata?.name]);
    expect(changes.create).toEqual([]);
    expect(changes.update).toEqual([]);
  });
});

// --- ports ----------------------------------------------------------------------------------------

describe('ports resolved per pod', () => {
  const named = service({
    ports: [
      { name: 'http', port: 80, targetPort: 'web', protocol: 'TCP' },
      { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' },
    ],
  });

  it('groups pods by the ports their containers name, one slice per port set', () => {
    const created = plan(named, [
      pod('v1', { containerPorts: [{ name: 'web', containerPort: 8080 }] }),
      pod('v2', { containerPorts: [{ name: 'web', containerPort: 9090 }] }),
      pod('v1b', { containerPorts: [{ name: 'web', containerPort: 8080 }] }),
      pod('bare'),
    ]).create;
    const groups = created.map((s) => ({
      ports: s.ports,
      pods: s.endpoints.map((e) => e.targetRef.name).sort(),
    }));
    expect(groups).toEqual(
      expect.arrayContaining([
        {
          ports: [
            { name: 'dns', port: 5353, protocol: 'UDP' },
            { name: 'http', port: 8080, protocol: 'TCP' },
          ],
          pods: ['v1', 'v1b'],
        },
        {
          ports: [
            { name: 'dns', port: 5353, protocol: 'UDP' },
            { name: 'http', port: 9090, protocol: 'TCP' },
          ],
          pods: ['v2'],
        },
        // A pod without the named port gets a slice without that port, as upstream does.
        { ports: [{ name: 'dns', port: 5353, protocol: 'UDP' }], pods: ['bare'] },
      ]),
    );
    expect(created).toHaveLength(3);
  });

  it("matches a named port only with the Service port's protocol", () => {
    const svc = service({ ports: [{ name: 'dns', port: 53, targetPort: 'dns', protocol: 'UDP' }] });
    const [slice] = plan(svc, [
      pod('a', { containerPorts: [{ name: 'dns', containerPort: 5353, protocol: 'TCP' }] }),
    ]).create;
    expect(slice?.ports).toEqual([]);
  });

  it('keeps appProtocol, and uses the port when targetPort is unset', () => {
    const svc = service({
      ports: [{ name: 'grpc', port: 9000, protocol: 'TCP', appProtocol: 'kubernetes.io/h2c' }],
    });
    const [slice] = plan(svc, [pod('a')]).create;
    expect(slice?.ports).toEqual([
      { name: 'grpc', port: 9000, protocol: 'TCP', appProtocol: 'kubernetes.io/h2c' },
    ]);
  });
});

// --- size and churn -------------------------------------------------------------------------------

describe('slice size and churn', () => {
  const many = (count: number) =>
    Array.from({ length: count }, (_, i) =>
      pod(`p${String(i).padStart(3, '0')}`, { ip: `10.244.${i >> 8}.${i & 255}` }),
    );

  it.each([
    { pods: 100, max: undefined, sizes: [100] },
    { pods: 101, max: undefined, sizes: [100, 1] },
    { pods: 250, max: undefined, sizes: [100, 100, 50] },
    { pods: 5, max: 2, sizes: [2, 2, 1] },
  ])('$pods endpoints with at most $max per slice make slices of $sizes', ({ pods, max, sizes }) => {
    const created = plan(service(), many(pods), [], { max }).create;
    expect(created.map((s) => s.endpoints.length)).toEqual(sizes);
  });

  it('adds a new pod to the existing slice instead of creating one', () => {
    const existing = converge(service(), [pod('a'), pod('b')]);
    const changes = plan(service(), [pod('a'), pod('b'), pod('c')], existing);
    expect(changes.create).toEqual([]);
    expect(changes.delete).toEqual([]);
    expect(changes.update.map((s) => s.metadata.name)).toEqual([existing[0]?.metadata?.name]);
    expect(changes.update[0]?.metadata.resourceVersion).toBe(existing[0]?.metadata?.resourceVersion);
    expect(podNamesOf(changes.update)).toEqual(['a', 'b', 'c']);
  });

  it('rewrites only the slice holding a pod whose readiness changed', () => {
    const pods = many(150);
    const existing = converge(service(), pods);
    const changed = [...pods];
    changed[120] = pod('p120', { ip: '10.244.0.120', ready: false });
    const changes = plan(service(), changed, existing);
    expect(changes.create).toEqual([]);
    expect(changes.delete).toEqual([]);
    expect(changes.update).toHaveLength(1);
    const holder = existing.find((s) => podNamesOf([s]).includes('p120'));
    expect(changes.update[0]?.metadata.name).toBe(holder?.metadata?.name);
  });

  it('empties to a placeholder by rewriting the last slice, not by delete and create', () => {
    const existing = converge(service(), [pod('a')]);
    const changes = plan(service(), [], existing);
    expect(changes.create).toEqual([]);
    expect(changes.delete).toEqual([]);
    expect(changes.update).toHaveLength(1);
    expect(changes.update[0]).toMatchObject({
      endpoints: [],
      ports: [],
      metadata: { name: existing[0]?.metadata?.name },
    });
  });

  it('replaces the slices of a deleted and recreated Service of the same name', () => {
    const existing = converge(service({ uid: 'old-uid' }), [pod('a')]);
    const changes = plan(service({ uid: 'new-uid' }), [pod('a')], existing);
    expect(changes.delete.map((d) => d.name)).toEqual([existing[0]?.metadata?.name]);
    expect(changes.create).toHaveLength(1);
    expect(changes.create[0]?.metadata.ownerReferences?.[0]?.uid).toBe('new-uid');
  });

  it("updates labels when the Service's labels change", () => {
    const existing = converge(service(), [pod('a')]);
    const changes = plan(service({ labels: { app: 'web', tier: 'back' } }), [pod('a')], existing);
    expect(changes.update).toHaveLength(1);
    expect(changes.update[0]?.metadata.labels.tier).toBe('back');
  });

  it('ignores slices already being deleted', () => {
    const existing = converge(service(), [pod('a')]).map((s) => ({
      ...s,
      metadata: { ...s.metadata, deletionTimestamp: '2026-01-01T00:00:00Z' },
    }));
    const changes = plan(service(), [pod('a')], existing);
    expect(changes.create).toHaveLength(1);
    expect(changes.delete).toEqual([]);
  });

  it('creates nothing for a Service that is being deleted', () => {
    expect(plan(service({ deleting: true }), [pod('a')]).create).toEqual([]);
  });

  it('heals a slice whose endpoints were edited by someone else', () => {
    const existing = converge(service(), [pod('a')]);
    const tampered = existing.map((s) => ({
      ...s,
      endpoints: [...(s.endpoints ?? []), { addresses: ['10.9.9.9'], conditions: { ready: true } }],
    }));
    const changes = plan(service(), [pod('a')], tampered);
    expect(changes.update).toHaveLength(1);
    expect(podNamesOf(changes.update)).toEqual(['a']);
  });
});

// --- idempotence ------------------------------------------------------------------------------------

describe('planning is idempotent: applying a plan and planning again changes nothing', () => {
  const cases: { name: string; svc: ServiceInput; pods: PodInput[]; max?: number }[] = [
    { name: 'placeholder', svc: service(), pods: [] },
    {
      name: 'a few pods',
      svc: service(),
      pods: [pod('a'), pod('b', { ready: false }), pod('c', { deleting: true })],
    },
    {
      name: 'named ports and dual stack',
      svc: service({
        ipFamilies: ['IPv4', 'IPv6'],
        ports: [{ name: 'http', port: 80, targetPort: 'web', protocol: 'TCP' }],
      }),
      pods: [
        pod('a', { ip: ['10.244.1.1', 'fd00::1'], containerPorts: [{ name: 'web', containerPort: 8080 }] }),
        pod('b', { ip: ['10.244.1.2', 'fd00::2'] }),
      ],
    },
    {
      name: 'many pods across slices',
      svc: service(),
      pods: Array.from({ length: 23 }, (_, i) => pod(`m${i}`, { ip: `10.244.3.${i + 1}` })),
      max: 5,
    },
    {
      name: 'hints',
      svc: service({ trafficDistribution: 'PreferClose' }),
      pods: [pod('a', { node: 'node-a' }), pod('b', { node: 'node-b' })],
    },
  ];

  it.each(cases)('$name', ({ svc, pods, max }) => {
    const existing = converge(svc, pods, [], { max });
    expect(plan(svc, pods, existing, { max })).toEqual({ create: [], update: [], delete: [], problems: [] });
  });

  it('converges after pods come and go', () => {
    let existing = converge(service(), [pod('a'), pod('b'), pod('c')], [], { max: 2 });
    const later = [pod('b'), pod('d'), pod('e'), pod('f')];
    existing = apply(existing, plan(service(), later, existing, { max: 2 }));
    expect(podNamesOf(existing)).toEqual(['b', 'd', 'e', 'f']);
    expect(existing.every((s) => (s.endpoints ?? []).length <= 2)).toBe(true);
    expect(plan(service(), later, existing, { max: 2 })).toEqual({
      create: [],
      update: [],
      delete: [],
      problems: [],
    });
  });
});

// --- topology hints ---------------------------------------------------------------------------------

describe('topology hints', () => {
  const twoZones = [
    pod('a', { node: 'node-a' }),
    pod('b', { node: 'node-b' }),
    pod('c', { node: 'node-b', ready: false }),
  ];
  const hintsOf = (changes: EndpointSlicePlan) =>
    Object.fromEntries(
      endpointsOf([...changes.create, ...changes.update]).map((e) => [
        e.targetRef.name,
        (e as { hints?: unknown }).hints,
      ]),
    );

  it.each([
    {
      name: 'trafficDistribution: PreferClose',
      svc: service({ trafficDistribution: 'PreferClose' }),
      hints: { a: { forZones: [{ name: 'zone-1' }] }, b: { forZones: [{ name: 'zone-2' }] }, c: undefined },
    },
    {
      name: 'trafficDistribution: PreferSameNode',
      svc: service({ trafficDistribution: 'PreferSameNode' }),
      hints: {
        a: { forZones: [{ name: 'zone-1' }], forNodes: [{ name: 'node-a' }] },
        b: { forZones: [{ name: 'zone-2' }], forNodes: [{ name: 'node-b' }] },
        c: undefined,
      },
    },
    {
      name: 'topology-mode: Auto with every zone served',
      svc: service({ annotations: { 'service.kubernetes.io/topology-mode': 'Auto' } }),
      hints: { a: { forZones: [{ name: 'zone-1' }] }, b: { forZones: [{ name: 'zone-2' }] }, c: undefined },
    },
    {
      name: 'no request for hints',
      svc: service(),
      hints: { a: undefined, b: undefined, c: undefined },
    },
  ])('$name', ({ svc, hints }) => {
    expect(hintsOf(plan(svc, twoZones))).toEqual(hints);
  });

  it('topology-mode: Auto gives no hints while a zone has no ready endpoint', () => {
    const svc = service({ annotations: { 'service.kubernetes.io/topology-mode': 'Auto' } });
    const oneZone = [pod('a', { node: 'node-a' }), pod('c', { node: 'node-b', ready: false })];
    expect(hintsOf(plan(svc, oneZone))).toEqual({ a: undefined, c: undefined });
  });

  it('removes hints once the Service stops asking for them', () => {
    const existing = converge(service({ trafficDistribution: 'PreferClose' }), twoZones);
    const changes = plan(service(), twoZones, existing);
    expect(changes.update).toHaveLength(1);
    expect(hintsOf(changes)).toEqual({ a: undefined, b: undefined, c: undefined });
  });

  it('adds hints to unchanged slices when the Service starts asking for them', () => {
    const existing = converge(service(), twoZones);
    const changes = plan(service({ trafficDistribution: 'PreferClose' }), twoZones, existing);
    expect(changes.update).toHaveLength(1);
    expect(hintsOf(changes).a).toEqual({ forZones: [{ name: 'zone-1' }] });
  });
});
