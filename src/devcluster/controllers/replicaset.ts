import {
  AppsV1Api,
  CoreV1Api,
  type KubeConfig,
  type KubernetesObject,
  PatchStrategy,
  setHeaderOptions,
  type V1Pod,
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
import type { Backoff } from './endpointslice-workqueue.js';
import {
  controllerRefOf,
  isPodAvailable,
  isPodReady,
  labelSelectorMatches,
  ownerReferenceTo,
  planReplicaSet,
  podFromTemplate,
  sameReplicaSetStatus,
} from './replicaset-plan.js';
import { WriteExpectations } from './write-expectations.js';

/**
 * The devcluster's ReplicaSet controller: kube-controller-manager's loop around
 * planReplicaSet. Informers on ReplicaSets and Pods feed a queue of ReplicaSet keys; a worker
 * recomputes the ReplicaSet from the caches (adopt/release, create/delete pods, status). Pods
 * it created or deleted are expected in the cache before the next count, so a slow watch never
 * makes it create or delete twice.
 */

export interface ReplicaSetControllerOptions {
  workers?: number;
  retryBackoff?: Backoff;
  expectationTimeoutMs?: number;
  /** Pods created per ReplicaSet per sync at most (upstream's burst is 500). */
  burst?: number;
  logger?: Logger;
}

export function startReplicaSetController(
  kc: KubeConfig,
  options: ReplicaSetControllerOptions = {},
): RunningController {
  const log = options.logger ?? subsysLogger('replicaset-controller');
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  const queue = newQueue(options.retryBackoff);
  const expectations = new WriteExpectations(options.expectationTimeoutMs ?? 30_000);
  const burst = options.burst ?? 500;

  const replicaSets = clusterInformers.replicaSets(kc, log);
  const pods = clusterInformers.pods(kc, log);

  const onReplicaSet = (rs: V1ReplicaSet) => queue.add(keyOf(rs));
  replicaSets.on('add', onReplicaSet);
  replicaSets.on('update', onReplicaSet);
  replicaSets.on('delete', (rs) => {
    expectations.forget(keyOf(rs));
  });

  // A pod concerns its controller, or, as an orphan, every ReplicaSet whose selector matches it.
  // Remember each pod's controller: the informer does not hand over the old object, and a pod
  // released or deleted must still wake the ReplicaSet it belonged to.
  const podOwner = new Map<string, string>();
  const podReadiness = new Map<string, string>();
  const onPod = (pod: V1Pod, deleted: boolean) => {
    const podKey = keyOf(pod);
    const namespace = pod.metadata?.namespace ?? '';
    const keys = new Set<string>();
    const before = podOwner.get(podKey);
    if (before) keys.add(before);
    const ref = controllerRefOf(pod);
    if (ref?.kind === 'ReplicaSet') keys.add(`${namespace}/${ref.name}`);
    if (!ref && !deleted) {
      for (const rs of replicaSets.list(namespace))
        if (labelSelectorMatches(rs.spec?.selector, pod.metadata?.labels)) keys.add(keyOf(rs));
    }
    if (deleted || !ref) podOwner.delete(podKey);
    else podOwner.set(podKey, `${namespace}/${ref.name}`);
    // Status heartbeats that change neither counts nor readiness cost nothing.
    const fingerprint = JSON.stringify([
      pod.metadata?.labels,
      ref?.uid,
      Boolean(pod.metadata?.deletionTimestamp),
      pod.spec?.nodeName,
      pod.status?.phase,
      isPodReady(pod),
      isPodAvailable(pod, 0, Date.now()),
    ]);
    if (!deleted && before !== undefined && podReadiness.get(podKey) === fingerprint) return;
    if (deleted) podReadiness.delete(podKey);
    else podReadiness.set(podKey, fingerprint);
    for (const key of keys) queue.add(key);
  };
  pods.on('add', (pod) => onPod(pod, false));
  pods.on('update', (pod) => onPod(pod, false));
  pods.on('delete', (pod) => onPod(pod, true));

  async function sync(key: string): Promise<void> {
    const [namespace, name] = splitKey(key);
    const rs = replicaSets.get(name, namespace);
    if (!rs) {
      expectations.forget(key);
      return; // its pods are the garbage collector's
    }
    const stale = expectations.unmet(key, (podName) => pods.get(podName, namespace));
    if (stale.length > 0)
      throw new DeferredSync(`pods of ReplicaSet ${key} not in the cache yet: ${stale.join(', ')}`);

    const now = Date.now();
    const plan = planReplicaSet(rs, pods.list(namespace), now);
    for (const pod of plan.adopt) await setControllerRef(pod, rs, 'adopt');
    for (const pod of plan.release) await setControllerRef(pod, rs, 'release');

    const toCreate = Math.min(plan.create, burst);
    for (let i = 0; i < toCreate; i++) {
      try {
        const created = await core.createNamespacedPod({ namespace, body: podFromTemplate(rs) });
        expectations.expectCreation(key, created.metadata?.name ?? '');
        log.debug({ replicaSet: key, pod: created.metadata?.name }, 'created pod');
      } catch (err) {
        if (isNamespaceTerminating(err)) return;
        throw err;
      }
    }
    for (const pod of plan.delete) {
      const podName = pod.metadata?.name ?? '';
      try {
        await core.deleteNamespacedPod({ name: podName, namespace });
        log.debug({ replicaSet: key, pod: podName }, 'deleted pod');
      } catch (err) {
        if (statusCodeOf(err) !== 404) throw err;
      }
      expectations.expectDeletion(key, podName);
    }

    if (!sameReplicaSetStatus(rs.status, plan.status)) {
      await apps.replaceNamespacedReplicaSetStatus({
        name,
        namespace,
        body: { ...rs, status: { ...(rs.status ?? {}), ...plan.status } },
      });
    }
    // Pods that are ready but not yet available (minReadySeconds) need a look once they are.
    const minReadySeconds = rs.spec?.minReadySeconds ?? 0;
    if (minReadySeconds > 0 && (plan.status.readyReplicas ?? 0) > (plan.status.availableReplicas ?? 0))
      queue.addAfter(key, minReadySeconds * 1000);
    if (plan.create > toCreate) queue.add(key);
  }

  /** Adopts or releases a pod, preconditioned on its resourceVersion (a JSON patch test). */
  async function setControllerRef(pod: V1Pod, rs: V1ReplicaSet, action: 'adopt' | 'release') {
    const refs = pod.metadata?.ownerReferences ?? [];
    const next =
      action === 'adopt' ? [...refs, ownerReferenceTo(rs)] : refs.filter((r) => r.uid !== rs.metadata?.uid);
    const patch = [
      { op: 'test', path: '/metadata/resourceVersion', value: pod.metadata?.resourceVersion },
      next.length > 0
        ? { op: 'add', path: '/metadata/ownerReferences', value: next }
        : { op: 'remove', path: '/metadata/ownerReferences' },
    ];
    try {
      await core.patchNamespacedPod(
        { name: pod.metadata?.name ?? '', namespace: pod.metadata?.namespace ?? '', body: patch },
        setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
      );
      log.info(
        { replicaSet: keyOf(rs), pod: pod.metadata?.name },
        action === 'adopt' ? 'adopted pod' : 'released pod',
      );
    } catch (err) {
      if (statusCodeOf(err) === 404) return;
      throw err;
    }
  }

  return runController({
    name: 'ReplicaSet controller',
    log,
    informers: [replicaSets, pods],
    queue,
    sync,
    enqueueAll: () => {
      for (const rs of replicaSets.list()) queue.add(keyOf(rs as KubernetesObject));
    },
    workers: options.workers,
  });
}
