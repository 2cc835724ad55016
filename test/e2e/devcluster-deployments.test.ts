import {
  AppsV1Api,
  type CoreV1Api,
  DiscoveryV1Api,
  KubeConfig,
  type V1Pod,
  type V1ReplicaSet,
} from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  coreApi,
  kubeconfigPath,
  kubectl,
  uniqueClusterName,
  waitFor,
  weftOk,
  AGNHOST,
  removeClusterAfterAll,
  podExec,
} from './devcluster-harness.js';

/**
 * Deployments on a 2-node devcluster, as a user applies them: the Deployment and ReplicaSet
 * controllers make the pods, the scheduler spreads them, the EndpointSlice controller and the
 * weft agents put them behind the Service; scaling, a rolling update that never leaves the
 * Service without a ready endpoint, a deleted pod replaced, and the Deployment's deletion
 * taking its ReplicaSets and pods with it.
 */

const cluster = uniqueClusterName('deploy');
let core: CoreV1Api;
let apps: AppsV1Api;
let discovery: DiscoveryV1Api;
let nodeCIDR: string;
let serviceIP: string;

const manifest = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: netexec
        image: ${AGNHOST}
        args: [netexec, --http-port=8080]
        env: [{name: VERSION, value: "1"}]
        readinessProbe:
          httpGet: {path: /healthz, port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`;

const isReady = (p: V1Pod) =>
  (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

/** The Deployment's pods that are not being deleted. */
async function webPods(): Promise<V1Pod[]> {
  const pods = await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=web' });
  return pods.items.filter((p) => !p.metadata?.deletionTimestamp);
}

async function readyWebPods(count: number): Promise<V1Pod[]> {
  return waitFor(
    `${count} Ready web pods and no others`,
    async () => {
      const all = await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=web' });
      const live = all.items.filter((p) => !p.metadata?.deletionTimestamp);
      return all.items.length === count && live.every(isReady) ? live : undefined;
    },
    120_000,
  );
}

async function webReplicaSets(): Promise<V1ReplicaSet[]> {
  return (await apps.listNamespacedReplicaSet({ namespace: 'default', labelSelector: 'app=web' })).items;
}

async function curlService(): Promise<string> {
  const r = await podExec(cluster, 'default/client', [
    'curl',
    '-sS',
    '--max-time',
    '3',
    `http://${serviceIP}:80/hostname`,
  ]);
  if (r.code !== 0) throw new Error(`curl exited ${r.code}: ${r.stderr}`);
  return r.stdout.trim();
}

/** Curls the Service until every one of `pods` has answered. */
async function serviceReachesAll(pods: V1Pod[]): Promise<void> {
  const want = new Set(pods.map((p) => p.metadata?.name ?? ''));
  const seen = new Set<string>();
  await waitFor(
    `the Service to answer from ${[...want].join(', ')}`,
    async () => {
      const name = await curlService();
      if (want.has(name)) seen.add(name);
      return seen.size === want.size ? true : undefined;
    },
    90_000,
  );
}

async function readyEndpoints(): Promise<number> {
  const slices = await discovery.listNamespacedEndpointSlice({
    namespace: 'default',
    labelSelector: 'kubernetes.io/service-name=web',
  });
  return slices.items
    .flatMap((s) => s.endpoints ?? [])
    .filter((e) => e.conditions?.ready === true && e.conditions?.terminating !== true).length;
}

beforeAll(async () => {
  await weftOk(['devcluster', 'up', '--name', cluster, '--nodes', '2']);
  core = coreApi(cluster);
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath(cluster));
  apps = kc.makeApiClient(AppsV1Api);
  discovery = kc.makeApiClient(DiscoveryV1Api);
  const status = JSON.parse(await weftOk(['devcluster', 'status', '--name', cluster, '-o', 'json']));
  nodeCIDR = status.networks.nodes;
  await core.createNamespacedPod({
    namespace: 'default',
    body: {
      metadata: { name: 'client' },
      spec: { containers: [{ name: 'client', image: AGNHOST, args: ['pause'] }] },
    },
  });
  const applied = await kubectl(cluster, ['apply', '-f', '-'], manifest);
  expect(applied.stderr).toBe('');
  expect(applied.stdout).toContain('deployment.apps/web created');
  serviceIP = (await core.readNamespacedService({ name: 'web', namespace: 'default' })).spec?.clusterIP ?? '';
  await waitFor('the client pod to be Ready', async () =>
    isReady(await core.readNamespacedPod({ name: 'client', namespace: 'default' })),
  );
});

removeClusterAfterAll(cluster, { nodeCIDR: () => nodeCIDR });

describe('Deployments on a devcluster', () => {
  it('rolls out three Ready pods of one ReplicaSet, spread over both nodes', async () => {
    const rollout = await kubectl(cluster, ['rollout', 'status', 'deployment/web', '--timeout=120s']);
    expect(rollout.code, rollout.stderr).toBe(0);
    expect(rollout.stdout).toContain('deployment "web" successfully rolled out');

    const pods = await readyWebPods(3);
    expect(new Set(pods.map((p) => p.spec?.nodeName))).toEqual(
      new Set([`${cluster}-control-plane`, `${cluster}-worker`]),
    );
    const [rs, ...others] = await webReplicaSets();
    expect(others).toEqual([]);
    const hash = rs?.metadata?.labels?.['pod-template-hash'] ?? '';
    expect(rs?.metadata?.name).toBe(`web-${hash}`);
    expect(rs?.spec?.selector.matchLabels).toEqual({ app: 'web', 'pod-template-hash': hash });
    expect(rs?.metadata?.annotations?.['deployment.kubernetes.io/revision']).toBe('1');
    for (const pod of pods) {
      expect(pod.metadata?.name?.startsWith(`web-${hash}-`)).toBe(true);
      expect(pod.metadata?.ownerReferences).toEqual([
        {
          apiVersion: 'apps/v1',
          kind: 'ReplicaSet',
          name: rs?.metadata?.name,
          uid: rs?.metadata?.uid,
          controller: true,
          blockOwnerDeletion: true,
        },
      ]);
    }
    const deployment = await apps.readNamespacedDeployment({ name: 'web', namespace: 'default' });
    expect(deployment.status).toMatchObject({
      replicas: 3,
      updatedReplicas: 3,
      readyReplicas: 3,
      availableReplicas: 3,
    });
    expect(deployment.status?.observedGeneration).toBe(deployment.metadata?.generation);

    const get = await kubectl(cluster, ['get', 'deploy,rs,pods']);
    expect(get.code, get.stderr).toBe(0);
    expect(get.stdout).toMatch(/deployment\.apps\/web\s+3\/3\s+3\s+3/);
    expect(get.stdout).toMatch(new RegExp(`replicaset\\.apps/web-${hash}\\s+3\\s+3\\s+3`));
  });

  it('the Service reaches all three pods through weft', async () => {
    await serviceReachesAll(await readyWebPods(3));
  });

  it('kubectl scale takes it to 5 and to 1 (and back to 3)', async () => {
    for (const replicas of [5, 1, 3]) {
      const scaled = await kubectl(cluster, ['scale', 'deployment/web', `--replicas=${replicas}`]);
      expect(scaled.code, scaled.stderr).toBe(0);
      await readyWebPods(replicas);
      const rollout = await kubectl(cluster, ['rollout', 'status', 'deployment/web', '--timeout=60s']);
      expect(rollout.code, rollout.stderr).toBe(0);
      expect((await webReplicaSets()).map((rs) => rs.spec?.replicas)).toEqual([replicas]);
    }
  });

  it('a template change rolls out to a new ReplicaSet without leaving the Service without a ready endpoint', async () => {
    const before = await webReplicaSets();
    const counts: number[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        counts.push(await readyEndpoints());
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      const set = await kubectl(cluster, ['set', 'env', 'deployment/web', 'VERSION=2']);
      expect(set.code, set.stderr).toBe(0);
      const rollout = await kubectl(cluster, ['rollout', 'status', 'deployment/web', '--timeout=120s']);
      expect(rollout.code, rollout.stderr).toBe(0);
      expect(rollout.stdout).toContain('deployment "web" successfully rolled out');
      await readyWebPods(3);
    } finally {
      watching = false;
      await watcher;
    }
    expect(counts.length).toBeGreaterThan(10);
    expect(Math.min(...counts)).toBeGreaterThanOrEqual(1);

    const after = await webReplicaSets();
    expect(after).toHaveLength(2);
    const old = after.find((rs) => rs.metadata?.uid === before[0]?.metadata?.uid);
    const fresh = after.find((rs) => rs.metadata?.uid !== before[0]?.metadata?.uid);
    expect(old?.spec?.replicas).toBe(0);
    expect(fresh?.spec?.replicas).toBe(3);
    expect(fresh?.metadata?.annotations?.['deployment.kubernetes.io/revision']).toBe('2');
    const pods = await readyWebPods(3);
    for (const pod of pods) {
      expect(pod.metadata?.ownerReferences?.[0]?.uid).toBe(fresh?.metadata?.uid);
      expect(pod.spec?.containers[0]?.env).toEqual([{ name: 'VERSION', value: '2' }]);
    }
    await serviceReachesAll(pods);
  });

  it('a deleted pod is replaced', async () => {
    const [victim] = await readyWebPods(3);
    const name = victim?.metadata?.name ?? '';
    const deleted = await kubectl(cluster, ['delete', 'pod', name]);
    expect(deleted.code, deleted.stderr).toBe(0);
    const pods = await readyWebPods(3);
    expect(pods.map((p) => p.metadata?.name)).not.toContain(name);
  });

  it('--cascade=orphan leaves the ReplicaSet and its pods; deleting that ReplicaSet takes its pods', async () => {
    const created = await kubectl(cluster, [
      'create',
      'deployment',
      'keep',
      `--image=${AGNHOST}`,
      '--replicas=2',
      '--',
      '/agnhost',
      'pause',
    ]);
    expect(created.code, created.stderr).toBe(0);
    const rollout = await kubectl(cluster, ['rollout', 'status', 'deployment/keep', '--timeout=60s']);
    expect(rollout.code, rollout.stderr).toBe(0);
    const orphaned = await kubectl(cluster, ['delete', 'deployment', 'keep', '--cascade=orphan']);
    expect(orphaned.code, orphaned.stderr).toBe(0);
    const keepSets = async () =>
      (await apps.listNamespacedReplicaSet({ namespace: 'default', labelSelector: 'app=keep' })).items;
    const keepPods = async () =>
      (await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=keep' })).items;
    // Give the garbage collector time to (wrongly) act.
    await new Promise((r) => setTimeout(r, 2000));
    const [rs, ...more] = await keepSets();
    expect(more).toEqual([]);
    expect(rs?.metadata?.ownerReferences).toBeUndefined();
    expect((await keepPods()).filter((p) => !p.metadata?.deletionTimestamp)).toHaveLength(2);

    const deleted = await kubectl(cluster, ['delete', 'rs', rs?.metadata?.name ?? '']);
    expect(deleted.code, deleted.stderr).toBe(0);
    await waitFor(
      'the orphaned ReplicaSet’s pods to be gone',
      async () => (await keepPods()).length === 0,
      60_000,
    );
  });

  it('deleting the Deployment deletes its ReplicaSets and their pods', async () => {
    const deleted = await kubectl(cluster, ['delete', 'deployment', 'web']);
    expect(deleted.code, deleted.stderr).toBe(0);
    await waitFor(
      'the ReplicaSets and pods of web to be gone',
      async () => (await webReplicaSets()).length === 0 && (await webPods()).length === 0,
      90_000,
    );
    await waitFor('the terminating pods to be gone too', async () => {
      const all = await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=web' });
      return all.items.length === 0;
    });
  });
});
