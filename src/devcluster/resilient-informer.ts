import {
  AppsV1Api,
  CoreV1Api,
  DiscoveryV1Api,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  ListWatch,
  type V1Deployment,
  type V1EndpointSlice,
  type V1Node,
  type V1Pod,
  type V1ReplicaSet,
  type V1Service,
  Watch,
} from '@kubernetes/client-node';
import type { Logger } from '../shared/log.js';

/**
 * A client-node informer (list + watch from the last resourceVersion, relist on 410 Gone) that
 * outlives a lost API connection: client-node's ListWatch stops on an error, so this one
 * starts it again with back-off until stop() is called. Supports field selectors, which
 * makeInformer does not pass on.
 */
export interface ResilientInformer<T extends KubernetesObject> {
  on(verb: 'add' | 'update' | 'delete', cb: (obj: T) => void): void;
  list(namespace?: string): readonly T[];
  get(name: string, namespace?: string): T | undefined;
  /** Resolves after the first successful list (handlers have seen every existing object). */
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function resilientInformer<T extends KubernetesObject>(opts: {
  kc: KubeConfig;
  path: string;
  list: (selectors: { fieldSelector?: string; labelSelector?: string }) => Promise<KubernetesListObject<T>>;
  fieldSelector?: string;
  labelSelector?: string;
  log: Logger;
}): ResilientInformer<T> {
  const selectors = { fieldSelector: opts.fieldSelector, labelSelector: opts.labelSelector };
  let synced = false;
  let resolveSynced: () => void = () => {};
  const syncedPromise = new Promise<void>((r) => {
    resolveSynced = r;
  });
  const listFn = async () => {
    const result = await opts.list(selectors);
    if (!synced) {
      // Handlers run for the listed items right after this returns; mark synced a tick later.
      setImmediate(() => {
        synced = true;
        resolveSynced();
      });
    }
    return result;
  };
  const lw = new ListWatch<T>(
    opts.path,
    new Watch(opts.kc),
    listFn,
    false,
    opts.labelSelector,
    opts.fieldSelector,
  );
  let stopped = false;
  let failures = 0;
  let timer: NodeJS.Timeout | undefined;
  lw.on('connect', () => {
    if (failures > 0) opts.log.info({ path: opts.path }, 'watch re-established');
    failures = 0;
  });
  lw.on('error', (err: unknown) => {
    if (stopped) return;
    failures++;
    const delay = Math.min(200 * 2 ** Math.min(failures, 6), 10_000);
    opts.log.warn({ path: opts.path, err: errorText(err), retryInMs: delay }, 'watch failed; retrying');
    timer = setTimeout(() => {
      timer = undefined;
      if (!stopped) lw.start().catch(() => {});
    }, delay);
  });
  return {
    on: (verb, cb) => lw.on(verb, cb),
    list: (ns) => lw.list(ns),
    get: (name, ns) => lw.get(name, ns),
    async start() {
      stopped = false;
      void lw.start();
      await syncedPromise;
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await lw.stop();
    },
  };
}

function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === 'object' && err !== null) return JSON.stringify(err).slice(0, 300);
  return String(err);
}

/**
 * The cluster-wide informers the devcluster's controllers and scheduler watch, one per
 * resource: the path and the list call written once.
 */
export const clusterInformers = {
  pods(kc: KubeConfig, log: Logger, fieldSelector?: string): ResilientInformer<V1Pod> {
    const core = kc.makeApiClient(CoreV1Api);
    return resilientInformer<V1Pod>({
      kc,
      path: '/api/v1/pods',
      list: (s) => core.listPodForAllNamespaces(s),
      ...(fieldSelector !== undefined ? { fieldSelector } : {}),
      log,
    });
  },
  nodes(kc: KubeConfig, log: Logger): ResilientInformer<V1Node> {
    const core = kc.makeApiClient(CoreV1Api);
    return resilientInformer<V1Node>({ kc, path: '/api/v1/nodes', list: () => core.listNode(), log });
  },
  services(kc: KubeConfig, log: Logger): ResilientInformer<V1Service> {
    const core = kc.makeApiClient(CoreV1Api);
    return resilientInformer<V1Service>({
      kc,
      path: '/api/v1/services',
      list: () => core.listServiceForAllNamespaces(),
      log,
    });
  },
  endpointSlices(kc: KubeConfig, log: Logger, labelSelector: string): ResilientInformer<V1EndpointSlice> {
    const discovery = kc.makeApiClient(DiscoveryV1Api);
    return resilientInformer<V1EndpointSlice>({
      kc,
      path: '/apis/discovery.k8s.io/v1/endpointslices',
      list: (s) => discovery.listEndpointSliceForAllNamespaces({ labelSelector: s.labelSelector }),
      labelSelector,
      log,
    });
  },
  replicaSets(kc: KubeConfig, log: Logger): ResilientInformer<V1ReplicaSet> {
    const apps = kc.makeApiClient(AppsV1Api);
    return resilientInformer<V1ReplicaSet>({
      kc,
      path: '/apis/apps/v1/replicasets',
      list: () => apps.listReplicaSetForAllNamespaces(),
      log,
    });
  },
  deployments(kc: KubeConfig, log: Logger): ResilientInformer<V1Deployment> {
    const apps = kc.makeApiClient(AppsV1Api);
    return resilientInformer<V1Deployment>({
      kc,
      path: '/apis/apps/v1/deployments',
      list: () => apps.listDeploymentForAllNamespaces(),
      log,
    });
  },
};
