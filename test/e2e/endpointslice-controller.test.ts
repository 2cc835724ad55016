import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CoreV1Api,
  DiscoveryV1Api,
  KubeConfig,
  type V1EndpointSlice,
  type V1Pod,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type ApiServer, kubeconfigYaml, startApiServer } from '../../src/devcluster/apiserver/index.js';
import {
  type EndpointSliceController,
  startEndpointSliceController,
} from '../../src/devcluster/controllers/endpointslice.js';

/**
 * The EndpointSlice controller against the devcluster API server, through client-node like any
 * client: Services and Pods (with status) created over the API, slices watched appearing,
 * changing and going away. In-process server on a loopback ephemeral port, temporary dataDir.
 */

const NAMESPACE = 'eps-e2e';
const MAX_PER_SLICE = 3;

let dir: string;
let server: ApiServer;
let port = 0;
let kc: KubeConfig;
let core: CoreV1Api;
let discovery: DiscoveryV1Api;
let controller: EndpointSliceController | undefined;

async function startServer(): Promise<void> {
  server = await startApiServer({
    listen: [{ host: '127.0.0.1', port }],
    dataDir: join(dir, 'data'),
    serviceCIDR: '10.96.0.0/16',
    advertiseAddress: '127.0.0.1',
    advertisePort: 6443,
  });
  port = Number(new URL(server.url).port);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'weft-eps-e2e-'));
  await startServer();
  kc = new KubeConfig();
  kc.loadFromString(
    kubeconfigYaml({
      clusterName: 'weft-eps',
      server: server.url,
      caCertPem: server.caCertPem,
      token: server.adminToken,
    }),
  );
  core = kc.makeApiClient(CoreV1Api);
  discovery = kc.makeApiClient(DiscoveryV1Api);
  await core.createNamespace({ body: { metadata: { name: NAMESPACE } } });
  for (const [name, zone] of [
    ['eps-node-a', 'zone-a'],
    ['eps-node-b', 'zone-b'],
  ] as const) {
    await core.createNode({ body: { metadata: { name, labels: { 'topology.kubernetes.io/zone': zone } } } });
  }
  controller = startEndpointSliceController(kc, {
    maxEndpointsPerSlice: MAX_PER_SLICE,
    retryBackoff: { initialMs: 50, maxMs: 2000 },
  });
  await controller.synced;
});

afterAll(async () => {
  await controller?.stop();
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function slicesOf(service: string): Promise<V1EndpointSlice[]> {
  const list = await discovery.listNamespacedEndpointSlice({
    namespace: NAMESPACE,
    labelSelector: `kubernetes.io/service-name=${service}`,
  });
  return list.items;
}

/** Waits until the Service's slices satisfy `check` (an expect-based assertion) and returns them. */
async function eventually(
  service: string,
  check: (slices: V1EndpointSlice[]) => void,
): Promise<V1EndpointSlice[]> {
  let last: V1EndpointSlice[] = [];
  await vi.waitFor(
    async () => {
      last = await slicesOf(service);
      check(last);
    },
    { timeout: 60_000, interval: 100 },
  );
  return last;
}

const endpointsByPod = (slices: V1EndpointSlice[]) =>
  Object.fromEntries(slices.flatMap((s) => s.endpoints ?? []).map((e) => [e.targetRef?.name ?? '', e]));
const podCount = (slices: V1EndpointSlice[]) => slices.flatMap((s) => s.endpoints ?? []).length;

let ipCounter = 10;

async function createReadyPod(name: string, node: string, ready = true): Promise<void> {
  await core.createNamespacedPod({
    namespace: NAMESPACE,
    body: {
      metadata: { name, labels: { app: 'web' } },
      spec: {
        nodeName: node,
        containers: [
          {
            name: 'agnhost',
            image: 'registry.k8s.io/e2e-test-images/agnhost:2.53',
            args: ['netexec', '--http-port=8080'],
            ports: [{ name: 'http', containerPort: 8080 }],
          },
        ],
      },
    },
  });
  await setStatus(name, { ip: `10.244.7.${ipCounter++}`, ready });
}

async function setStatus(name: string, status: { ip?: string; ready: boolean }): Promise<void> {
  const pod: V1Pod = await core.readNamespacedPod({ name, namespace: NAMESPACE });
  const ip = status.ip ?? pod.status?.podIP;
  pod.status = {
    phase: 'Running',
    podIP: ip,
    podIPs: ip ? [{ ip }] : [],
    conditions: [{ type: 'Ready', status: status.ready ? 'True' : 'False' }],
  };
  await core.replaceNamespacedPodStatus({ name, namespace: NAMESPACE, body: pod });
}

describe('EndpointSlice controller against the devcluster API server', () => {
  let placeholderName = '';

  it('gives a Service that selects nothing yet one empty slice, owned and labelled', async () => {
    const service = await core.createNamespacedService({
      namespace: NAMESPACE,
      body: {
        metadata: { name: 'web', labels: { team: 'shop' } },
        spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
      },
    });
    const [slice] = await eventually('web', (slices) => expect(slices).toHaveLength(1));
    expect(slice?.endpoints ?? []).toEqual([]);
    expect(slice?.addressType).toBe('IPv4');
    expect(slice?.metadata?.labels).toMatchObject({
      team: 'shop',
      'kubernetes.io/service-name': 'web',
      'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
    });
    expect(slice?.metadata?.ownerReferences).toEqual([
      expect.objectContaining({ kind: 'Service', name: 'web', uid: service.metadata?.uid, controller: true }),
    ]);
    expect(slice?.metadata?.name).toMatch(/^web-/);
    placeholderName = slice?.metadata?.name ?? '';
  });

  it('turns ready pods into endpoints in that same slice, with named ports resolved', async () => {
    await createReadyPod('web-1', 'eps-node-a');
    await createReadyPod('web-2', 'eps-node-b');
    const slices = await eventually('web', (s) => expect(podCount(s)).toBe(2));
    expect(slices.map((s) => s.metadata?.name)).toEqual([placeholderName]);
    expect(slices[0]?.ports).toEqual([{ name: 'http', port: 8080, protocol: 'TCP' }]);
    expect(endpointsByPod(slices)['web-1']).toMatchObject({
      conditions: { ready: true, serving: true, terminating: false },
      nodeName: 'eps-node-a',
      zone: 'zone-a',
      targetRef: { kind: 'Pod', namespace: NAMESPACE, name: 'web-1' },
    });
  });

  it('follows a pod that stops being ready', async () => {
    await setStatus('web-1', { ready: false });
    await eventually('web', (s) =>
      expect(endpointsByPod(s)['web-1']?.conditions).toEqual({
        ready: false,
        serving: false,
        terminating: false,
      }),
    );
    await setStatus('web-1', { ready: true });
    await eventually('web', (s) => expect(endpointsByPod(s)['web-1']?.conditions?.ready).toBe(true));
  });

  it('spreads pods over slices of at most maxEndpointsPerSlice, each pod exactly once', async () => {
    for (let i = 3; i <= 7; i++) await createReadyPod(`web-${i}`, i % 2 ? 'eps-node-a' : 'eps-node-b');
    const slices = await eventually('web', (s) => expect(podCount(s)).toBe(7));
    expect(slices.every((s) => (s.endpoints ?? []).length <= MAX_PER_SLICE)).toBe(true);
    expect(slices).toHaveLength(3);
    const names = slices.flatMap((s) => s.endpoints ?? []).map((e) => e.targetRef?.name);
    expect(new Set(names).size).toBe(7);
  });

  it('shows a deleted pod as terminating during its grace period, then drops it', async () => {
    await core.deleteNamespacedPod({ name: 'web-2', namespace: NAMESPACE });
    await eventually('web', (s) =>
      expect(endpointsByPod(s)['web-2']?.conditions).toEqual({
        ready: false,
        serving: true,
        terminating: true,
      }),
    );
    await core.deleteNamespacedPod({ name: 'web-2', namespace: NAMESPACE, gracePeriodSeconds: 0 });
    await eventually('web', (s) => {
      expect(endpointsByPod(s)['web-2']).toBeUndefined();
      expect(podCount(s)).toBe(6);
    });
  });

  it('puts back a slice that someone else emptied', async () => {
    const [victim] = await slicesOf('web');
    const emptied = { ...victim, endpoints: [] } as V1EndpointSlice;
    await discovery.replaceNamespacedEndpointSlice({
      name: victim?.metadata?.name ?? '',
      namespace: NAMESPACE,
      body: emptied,
    });
    await eventually('web', (s) => expect(podCount(s)).toBe(6));
  });

  it('catches up with changes made while the API server was restarting', async () => {
    await server.close();
    await startServer();
    await createReadyPod('web-8', 'eps-node-b');
    await eventually('web', (s) => expect(endpointsByPod(s)['web-8']?.conditions?.ready).toBe(true));
    expect(podCount(await slicesOf('web'))).toBe(7);
  });

  it('removes the slices when the Service goes', async () => {
    await core.deleteNamespacedService({ name: 'web', namespace: NAMESPACE });
    await eventually('web', (s) => expect(s).toEqual([]));
  });
});
