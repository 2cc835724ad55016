import {
  AppsV1Api,
  type KubeConfig,
  type KubernetesObject,
  PatchStrategy,
  setHeaderOptions,
  type V1Deployment,
  type V1DeploymentStatus,
  type V1ReplicaSet,
} from '@kubernetes/client-node';
import { type Logger, subsysLogger } from '../../shared/log.js';
import { clusterInformers } from '../resilient-informer.js';
import {
  type RunningController,
  DeferredSync,
  isNamespaceTerminating,
  keyOf,
  newQueue,
  runController,
  splitKey,
  statusCodeOf,
} from './controller-runtime.js';
import {
  REVISION_ANNOTATION,
  ownedReplicaSets,
  planDeployment,
  sameDeploymentStatus,
  templatesEqualIgnoringHash,
} from './deployment-plan.js';
import type { Backoff } from './endpointslice-workqueue.js';
import { controllerRefOf } from './replicaset-plan.js';

/**
 * The devcluster's Deployment controller: kube-controller-manager's loop around
 * planDeployment. Informers on Deployments and ReplicaSets feed a queue of Deployment keys; a
 * worker takes one rollout step from the caches and writes it. ReplicaSets are written with
 * the resourceVersion the cache holds, so a step computed from a stale cache fails with a 409
 * and is computed again, never applied twice.
 */

export interface DeploymentControllerOptions {
  workers?: number;
  retryBackoff?: Backoff;
  logger?: Logger;
}

export function startDeploymentController(
  kc: KubeConfig,
  options: DeploymentControllerOptions = {},
): RunningController {
  const log = options.logger ?? subsysLogger('deployment-controller');
  const apps = kc.makeApiClient(AppsV1Api);
  const queue = newQueue(options.retryBackoff);

  const deployments = clusterInformers.deployments(kc, log);
  const replicaSets = clusterInformers.replicaSets(kc, log);

  const onDeployment = (d: V1Deployment) => queue.add(keyOf(d));
  deployments.on('add', onDeployment);
  deployments.on('update', onDeployment);
  const onReplicaSet = (rs: V1ReplicaSet) => {
    const ref = controllerRefOf(rs);
    if (ref?.kind === 'Deployment') queue.add(`${rs.metadata?.namespace ?? ''}/${ref.name}`);
  };
  replicaSets.on('add', onReplicaSet);
  replicaSets.on('update', onReplicaSet);
  replicaSets.on('delete', onReplicaSet);

  async function sync(key: string): Promise<void> {
    const [namespace, name] = splitKey(key);
    const deployment = deployments.get(name, namespace);
    // A deleted Deployment's ReplicaSets are the garbage collector's.
    if (!deployment || deployment.metadata?.deletionTimestamp) return;
    const owned = ownedReplicaSets(deployment, replicaSets.list(namespace));
    const plan = planDeployment(deployment, owned, new Date());

    if (plan.create) {
      try {
        await apps.createNamespacedReplicaSet({ namespace, body: plan.create });
        log.info(
          { deployment: key, replicaSet: plan.create.metadata?.name, replicas: plan.create.spec?.replicas },
          'created ReplicaSet',
        );
      } catch (err) {
        if (isNamespaceTerminating(err)) return;
        if (statusCodeOf(err) !== 409) throw err;
        await resolveNameCollision(deployment, plan.create);
      }
    }
    for (const rs of plan.update) {
      await apps.replaceNamespacedReplicaSet({ name: rs.metadata?.name ?? '', namespace, body: rs });
      log.info(
        { deployment: key, replicaSet: rs.metadata?.name, replicas: rs.spec?.replicas },
        'scaled ReplicaSet',
      );
    }
    for (const rsName of plan.delete) {
      try {
        await apps.deleteNamespacedReplicaSet({ name: rsName, namespace, propagationPolicy: 'Background' });
        log.info(
          { deployment: key, replicaSet: rsName },
          'deleted old ReplicaSet beyond revisionHistoryLimit',
        );
      } catch (err) {
        if (statusCodeOf(err) !== 404) throw err;
      }
    }
    if (plan.revision !== undefined) {
      await apps.patchNamespacedDeployment(
        { name, namespace, body: { metadata: { annotations: { [REVISION_ANNOTATION]: plan.revision } } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    }
    if (!sameDeploymentStatus(deployment.status, plan.status)) {
      await apps.patchNamespacedDeploymentStatus(
        { name, namespace, body: { status: onTheWire(plan.status) } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    }
  }

  /**
   * The new ReplicaSet's name is taken. By our own earlier create (the cache has not shown it
   * yet): wait. By a ReplicaSet with another template: a hash collision, so count it in
   * status.collisionCount, which changes the hash, as upstream does.
   */
  async function resolveNameCollision(deployment: V1Deployment, wanted: V1ReplicaSet): Promise<never> {
    const namespace = deployment.metadata?.namespace ?? '';
    const existing = await apps.readNamespacedReplicaSet({ name: wanted.metadata?.name ?? '', namespace });
    const ours = controllerRefOf(existing)?.uid === deployment.metadata?.uid;
    if (ours && templatesEqualIgnoringHash(existing.spec?.template, deployment.spec?.template))
      throw new DeferredSync(`ReplicaSet ${existing.metadata?.name} not in the cache yet`);
    const collisionCount = (deployment.status?.collisionCount ?? 0) + 1;
    await apps.patchNamespacedDeploymentStatus(
      { name: deployment.metadata?.name ?? '', namespace, body: { status: { collisionCount } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    log.warn(
      { deployment: keyOf(deployment), replicaSet: existing.metadata?.name, collisionCount },
      'pod-template-hash collision',
    );
    throw new DeferredSync('pod-template-hash collision; retrying with a new hash');
  }

  return runController({
    name: 'Deployment controller',
    log,
    informers: [deployments, replicaSets],
    queue,
    sync,
    enqueueAll: () => {
      for (const d of deployments.list()) queue.add(keyOf(d as KubernetesObject));
    },
    workers: options.workers,
  });
}

/** Condition times as the API writes them (RFC 3339, whole seconds), not Date's milliseconds. */
function onTheWire(status: V1DeploymentStatus): unknown {
  const rfc3339 = (t: Date | undefined) => (t ? `${new Date(t).toISOString().slice(0, 19)}Z` : undefined);
  return {
    ...status,
    conditions: status.conditions?.map((c) => ({
      ...c,
      lastTransitionTime: rfc3339(c.lastTransitionTime),
      lastUpdateTime: rfc3339(c.lastUpdateTime),
    })),
  };
}
