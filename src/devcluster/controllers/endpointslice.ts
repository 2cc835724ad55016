import {
  DiscoveryV1Api,
  type KubeConfig,
  type V1EndpointSlice,
  type V1Node,
  type V1Pod,
  type V1Service,
} from '@kubernetes/client-node';
import { type Logger, subsysLogger } from '../../shared/log.js';
import { clusterInformers } from '../resilient-informer.js';
import {
  ENDPOINTSLICE_CONTROLLER_NAME,
  type EndpointSlice,
  type EndpointSliceInput,
  LABEL_MANAGED_BY,
  LABEL_SERVICE_NAME,
  LABEL_TOPOLOGY_ZONE,
  type NodeInput,
  planEndpointSlices,
  selectorMatches,
  serviceSelectsPods,
} from './endpointslice-plan.js';
import {
  DeferredSync,
  isNamespaceTerminating,
  keyOf,
  runController,
  splitKey,
  statusCodeOf,
} from './controller-runtime.js';
import { SliceExpectations } from './endpointslice-expectations.js';
import { type Backoff, WorkQueue } from './endpointslice-workqueue.js';

/**
 * The devcluster's EndpointSlice controller: kube-controller-manager's loop around
 * planEndpointSlices. Informers (client-node list+watch) on Services, Pods, Nodes and the
 * slices this controller manages feed a work queue of Service keys; a worker recomputes the
 * Service's slices from the caches (level-triggered: the event only says which Service to look
 * at) and writes the difference through the API. Failures, conflicts and a cache that has not
 * yet seen the controller's own writes requeue the Service with backoff; nothing is dropped.
 */

export interface EndpointSliceControllerOptions {
  maxEndpointsPerSlice?: number;
  /** Services reconciled concurrently (never the same Service twice at once). */
  workers?: number;
  /** Per-Service retry backoff after a failed sync. */
  retryBackoff?: Backoff;
  /**
   * How long a write of ours may stay invisible in the informer cache before the controller
   * stops waiting for it (client-go's expectations use 5 minutes; a dev cluster is smaller).
   */
  expectationTimeoutMs?: number;
  logger?: Logger;
}

export interface EndpointSliceController {
  /** Resolves once every informer has listed, and the first pass over all Services is queued. */
  readonly synced: Promise<void>;
  /** Stops the workers and the watches. In-flight API calls are awaited (bounded). */
  stop(): Promise<void>;
}

const SLICE_SELECTOR = `${LABEL_MANAGED_BY}=${ENDPOINTSLICE_CONTROLLER_NAME}`;

export function startEndpointSliceController(
  kc: KubeConfig,
  options: EndpointSliceControllerOptions = {},
): EndpointSliceController {
  const log = options.logger ?? subsysLogger('endpointslice-controller');
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  const queue = new WorkQueue(options.retryBackoff ?? { initialMs: 100, maxMs: 30_000 });
  const expectations = new SliceExpectations(options.expectationTimeoutMs ?? 30_000);

  // Informers that restart their list/watch after errors; a restart resumes from the last
  // resourceVersion or relists, and reports what changed meanwhile as events.
  const services = clusterInformers.services(kc, log);
  const pods = clusterInformers.pods(kc, log);
  const nodes = clusterInformers.nodes(kc, log);
  const slices = clusterInformers.endpointSlices(kc, log, SLICE_SELECTOR);

  const enqueueAll = () => {
    for (const service of services.list()) queue.add(keyOf(service));
    // Slices whose Service went away while nobody watched.
    for (const slice of slices.list()) {
      const serviceName = slice.metadata?.labels?.[LABEL_SERVICE_NAME];
      if (serviceName) queue.add(`${slice.metadata?.namespace ?? ''}/${serviceName}`);
    }
  };

  // --- event handlers: each names the Services to look at again -------------------------------
  const onService = (service: V1Service) => queue.add(keyOf(service));
  services.on('add', onService);
  services.on('update', onService);
  services.on('delete', onService);

  // Pods: the Services selecting the pod now and those that selected it before (the informer
  // does not hand us the old object, so remember what each pod matched and looked like).
  const podMemory = new Map<string, { services: Set<string>; fingerprint: string }>();
  const servicesSelecting = (pod: V1Pod): Set<string> => {
    const keys = new Set<string>();
    for (const service of services.list(pod.metadata?.namespace ?? '')) {
      if (serviceSelectsPods(service) && selectorMatches(service.spec?.selector, pod.metadata?.labels)) {
        keys.add(keyOf(service));
      }
    }
    return keys;
  };
  const onPod = (pod: V1Pod, deleted: boolean) => {
    const podKey = keyOf(pod);
    const before = podMemory.get(podKey);
    const now = servicesSelecting(pod);
    const fingerprint = podFingerprint(pod);
    // Status heartbeats that change nothing an endpoint shows cost nothing.
    const unchanged = !deleted && before?.fingerprint === fingerprint && sameSet(before.services, now);
    if (deleted) podMemory.delete(podKey);
    else podMemory.set(podKey, { services: now, fingerprint });
    if (unchanged) return;
    for (const key of new Set([...(before?.services ?? []), ...now])) queue.add(key);
  };
  pods.on('add', (pod) => onPod(pod, false));
  pods.on('update', (pod) => onPod(pod, false));
  pods.on('delete', (pod) => onPod(pod, true));

  // Nodes matter through their zone (endpoint zone, hints) and readiness (hints).
  const nodeMemory = new Map<string, string>();
  const onNode = (node: V1Node, deleted: boolean) => {
    const name = node.metadata?.name ?? '';
    const fingerprint = deleted ? undefined : nodeFingerprint(node);
    if (nodeMemory.get(name) === fingerprint) return;
    if (fingerprint === undefined) nodeMemory.delete(name);
    else nodeMemory.set(name, fingerprint);
    for (const service of services.list()) queue.add(keyOf(service));
  };
  nodes.on('add', (node) => onNode(node, false));
  nodes.on('update', (node) => onNode(node, false));
  nodes.on('delete', (node) => onNode(node, true));

  // Slices: ours changing (by us or by someone else) means their Service needs a look.
  const onSlice = (slice: V1EndpointSlice) => {
    const serviceName = slice.metadata?.labels?.[LABEL_SERVICE_NAME];
    if (serviceName) queue.add(`${slice.metadata?.namespace ?? ''}/${serviceName}`);
  };
  slices.on('add', onSlice);
  slices.on('update', onSlice);
  slices.on('delete', onSlice);

  // --- the reconcile of one Service ---------------------------------------------------------
  const maxEndpointsPerSlice = options.maxEndpointsPerSlice;

  async function syncService(key: string): Promise<void> {
    const [namespace = '', name = ''] = splitKey(key);
    const service = services.get(name, namespace);
    const owned = slices
      .list(namespace)
      .filter((slice) => slice.metadata?.labels?.[LABEL_SERVICE_NAME] === name) as EndpointSliceInput[];

    const stale = expectations.unmet(key, owned);
    if (stale.length > 0) throw new StaleCacheError(key, stale);

    if (!service) {
      // No garbage collector runs in a devcluster: a deleted Service's slices go with it.
      for (const slice of owned) await deleteSlice(key, namespace, slice.metadata?.name ?? '');
      if (owned.length === 0) expectations.forget(key);
      return;
    }

    const nodeMap = new Map<string, NodeInput>();
    for (const node of nodes.list()) nodeMap.set(node.metadata?.name ?? '', node as NodeInput);
    const plan = planEndpointSlices({
      service,
      pods: pods.list(namespace),
      nodes: nodeMap,
      existingSlices: owned,
      maxEndpointsPerSlice,
    });

    for (const slice of plan.create) {
      try {
        const created = await discovery.createNamespacedEndpointSlice({ namespace, body: toBody(slice) });
        expectations.expectVersion(key, created.metadata?.name ?? '', created.metadata?.resourceVersion);
        log.debug(
          { service: key, slice: created.metadata?.name, endpoints: slice.endpoints.length },
          'created EndpointSlice',
        );
      } catch (err) {
        // Creates into a terminating namespace keep failing; the namespace takes the Service away.
        if (isNamespaceTerminating(err)) return;
        throw err;
      }
    }
    for (const slice of plan.update) {
      const sliceName = slice.metadata.name ?? '';
      const updated = await discovery.replaceNamespacedEndpointSlice({
        name: sliceName,
        namespace,
        body: toBody(slice),
      });
      expectations.expectVersion(key, sliceName, updated.metadata?.resourceVersion);
      log.debug(
        { service: key, slice: sliceName, endpoints: slice.endpoints.length },
        'updated EndpointSlice',
      );
    }
    for (const deletion of plan.delete) await deleteSlice(key, namespace, deletion.name);

    const waiting = plan.problems.filter((p) => p.retry);
    for (const problem of plan.problems.filter((p) => !p.retry)) {
      log.warn({ service: key, pod: problem.pod, reason: problem.reason }, 'pod left out of EndpointSlices');
    }
    if (waiting.length > 0)
      throw new PodsPendingError(
        key,
        waiting.map((p) => `${p.pod}: ${p.reason}`),
      );
  }

  async function deleteSlice(key: string, namespace: string, name: string): Promise<void> {
    try {
      await discovery.deleteNamespacedEndpointSlice({ name, namespace });
      log.debug({ service: key, slice: name }, 'deleted EndpointSlice');
    } catch (err) {
      if (statusCodeOf(err) !== 404) throw err;
    }
    expectations.expectDeletion(key, name);
  }

  // --- workers ------------------------------------------------------------------------------------
  return runController({
    name: 'EndpointSlice controller',
    log,
    informers: [services, pods, nodes, slices],
    queue,
    sync: syncService,
    enqueueAll,
    workers: options.workers ?? 4,
  });
}

/** A write of ours the informer cache has not shown yet: acting now could duplicate slices. */
class StaleCacheError extends DeferredSync {
  override readonly name: string = 'StaleCacheError';
  constructor(key: string, slices: string[]) {
    super(`EndpointSlice cache for ${key} is behind our writes to ${slices.join(', ')}`);
  }
}

/** Pods that may become endpoints later (their Node is not known yet). */
class PodsPendingError extends DeferredSync {
  override readonly name: string = 'PodsPendingError';
  constructor(key: string, reasons: string[]) {
    super(`Service ${key}: pods waiting: ${reasons.join('; ')}`);
  }
}

/** What of a pod can change its endpoints: anything else (most status updates) is ignored. */
function podFingerprint(pod: V1Pod): string {
  return JSON.stringify([
    pod.metadata?.labels ?? {},
    pod.metadata?.uid,
    Boolean(pod.metadata?.deletionTimestamp),
    pod.spec?.nodeName,
    pod.spec?.hostname,
    pod.spec?.subdomain,
    (pod.spec?.containers ?? []).map((c) => c.ports ?? []),
    (pod.spec?.initContainers ?? []).map((c) => [c.restartPolicy, c.ports ?? []]),
    pod.status?.phase,
    pod.status?.podIP,
    (pod.status?.podIPs ?? []).map((p) => p.ip),
    (pod.status?.conditions ?? []).find((c) => c.type === 'Ready')?.status,
  ]);
}

function nodeFingerprint(node: V1Node): string {
  const ready = (node.status?.conditions ?? []).find((c) => c.type === 'Ready')?.status;
  return JSON.stringify([node.metadata?.labels?.[LABEL_TOPOLOGY_ZONE], ready]);
}

function sameSet(a: Set<string>, b: Set<string>): boolean {
  return a.size === b.size && [...a].every((x) => b.has(x));
}

/** The planned slice as an API body (client-node serialises it by the V1EndpointSlice model). */
function toBody(slice: EndpointSlice): V1EndpointSlice {
  return slice as unknown as V1EndpointSlice;
}
