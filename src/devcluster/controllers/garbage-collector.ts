import {
  AppsV1Api,
  CoreV1Api,
  type KubeConfig,
  type KubernetesObject,
  type V1OwnerReference,
} from '@kubernetes/client-node';
import { type Logger, subsysLogger } from '../../shared/log.js';
import { clusterInformers, type ResilientInformer } from '../resilient-informer.js';
import {
  describeError,
  newQueue,
  runController,
  statusCodeOf,
  type RunningController,
} from './controller-runtime.js';
import type { Backoff } from './endpointslice-workqueue.js';

/**
 * The devcluster's garbage collector, for the owners its controllers create objects for:
 * ReplicaSets owned by a Deployment and Pods owned by a ReplicaSet. A dependent all of whose
 * owners are gone is deleted (background propagation, so a Deployment's pods go through its
 * ReplicaSets). An owner counts as gone only when a live read confirms it (404, or another
 * object under the name), never from the cache alone. `--cascade=orphan` is the API server's
 * part: it removes the ownerReferences before the owner goes. Foreground deletion is not
 * waited for: the owner goes at once and its dependents follow, as with Background.
 */

export interface GarbageCollectorOptions {
  retryBackoff?: Backoff;
  logger?: Logger;
}

type DependentKind = 'replicasets' | 'pods';

export function startGarbageCollector(
  kc: KubeConfig,
  options: GarbageCollectorOptions = {},
): RunningController {
  const log = options.logger ?? subsysLogger('garbage-collector');
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  const queue = newQueue(options.retryBackoff);

  const deployments: ResilientInformer<KubernetesObject> = clusterInformers.deployments(kc, log);
  const replicaSets: ResilientInformer<KubernetesObject> = clusterInformers.replicaSets(kc, log);
  const pods: ResilientInformer<KubernetesObject> = clusterInformers.pods(kc, log);

  /** The owner kinds collected here, with the cache and live read of each. */
  const owners: Record<
    string,
    {
      cache: ResilientInformer<KubernetesObject>;
      read: (name: string, namespace: string) => Promise<KubernetesObject>;
    }
  > = {
    Deployment: {
      cache: deployments,
      read: (name, namespace) => apps.readNamespacedDeployment({ name, namespace }),
    },
    ReplicaSet: {
      cache: replicaSets,
      read: (name, namespace) => apps.readNamespacedReplicaSet({ name, namespace }),
    },
  };
  const dependents: Record<DependentKind, ResilientInformer<KubernetesObject>> = {
    replicasets: replicaSets,
    pods,
  };
  const handledRefs = (o: KubernetesObject) =>
    (o.metadata?.ownerReferences ?? []).filter((r) => r.apiVersion === 'apps/v1' && r.kind in owners);
  const cachedOwner = (ref: V1OwnerReference, namespace: string) => {
    const owner = owners[ref.kind]?.cache.get(ref.name, namespace);
    return owner?.metadata?.uid === ref.uid ? owner : undefined;
  };
  const dependentKey = (kind: DependentKind, o: KubernetesObject) =>
    `${kind}|${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
  /** A dependent one of whose owners the cache does not hold is worth a look. */
  const maybeOrphaned = (kind: DependentKind, o: KubernetesObject) => {
    if (o.metadata?.deletionTimestamp) return;
    const namespace = o.metadata?.namespace ?? '';
    if (handledRefs(o).some((ref) => !cachedOwner(ref, namespace))) queue.add(dependentKey(kind, o));
  };
  for (const kind of ['replicasets', 'pods'] as const) {
    dependents[kind].on('add', (o) => maybeOrphaned(kind, o));
    dependents[kind].on('update', (o) => maybeOrphaned(kind, o));
  }
  // An owner gone: every dependent that names it.
  const onOwnerDeleted = (dependentKind: DependentKind) => (owner: KubernetesObject) => {
    const uid = owner.metadata?.uid;
    for (const o of dependents[dependentKind].list(owner.metadata?.namespace ?? ''))
      if ((o.metadata?.ownerReferences ?? []).some((r) => r.uid === uid))
        queue.add(dependentKey(dependentKind, o));
  };
  deployments.on('delete', onOwnerDeleted('replicasets'));
  replicaSets.on('delete', onOwnerDeleted('pods'));

  async function ownerExists(ref: V1OwnerReference, namespace: string): Promise<boolean> {
    if (cachedOwner(ref, namespace)) return true;
    try {
      const live = await owners[ref.kind]!.read(ref.name, namespace);
      return live.metadata?.uid === ref.uid;
    } catch (err) {
      if (statusCodeOf(err) === 404) return false;
      throw err;
    }
  }

  async function sync(key: string): Promise<void> {
    const bar = key.indexOf('|');
    const kind = key.slice(0, bar) as DependentKind;
    const rest = key.slice(bar + 1);
    const slash = rest.indexOf('/');
    const namespace = rest.slice(0, slash);
    const name = rest.slice(slash + 1);
    const o = dependents[kind].get(name, namespace);
    if (!o || o.metadata?.deletionTimestamp) return;
    const refs = o.metadata?.ownerReferences ?? [];
    const handled = handledRefs(o);
    // Owners of kinds not collected here are assumed to exist.
    if (handled.length === 0 || handled.length < refs.length) return;
    for (const ref of handled) if (await ownerExists(ref, namespace)) return;
    const uid = o.metadata?.uid;
    try {
      if (kind === 'pods')
        await core.deleteNamespacedPod({
          name,
          namespace,
          body: { preconditions: { uid }, propagationPolicy: 'Background' },
        });
      else
        await apps.deleteNamespacedReplicaSet({
          name,
          namespace,
          body: { preconditions: { uid }, propagationPolicy: 'Background' },
        });
      log.info(
        { kind, object: `${namespace}/${name}`, owners: handled.map((r) => `${r.kind}/${r.name}`) },
        'deleted object whose owners are gone',
      );
    } catch (err) {
      const code = statusCodeOf(err);
      if (code === 404 || code === 409) return; // gone, or another object under the name now
      log.debug({ key, err: describeError(err) }, 'garbage collection failed');
      throw err;
    }
  }

  return runController({
    name: 'garbage collector',
    log,
    informers: [deployments, replicaSets, pods],
    queue,
    sync,
    enqueueAll: () => {
      for (const kind of ['replicasets', 'pods'] as const)
        for (const o of dependents[kind].list()) maybeOrphaned(kind, o);
    },
    workers: 2,
  });
}
