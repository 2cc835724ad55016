import {
  type CoreV1Api,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1Node,
  type V1Pod,
} from '@kubernetes/client-node';
import type { Logger } from '../shared/log.js';
import { httpStatus } from './kubelet/pod-worker.js';
import { k8sTime } from './kubelet/pod-status.js';
import { chooseNode } from './node-selection.js';
import { clusterInformers, type ResilientInformer } from './resilient-informer.js';

/**
 * The cluster's one scheduler: binds pods that have no nodeName (and ask for the default
 * scheduler) to a fitting node with the fewest pods, through the pods/binding subresource
 * (falling back to setting spec.nodeName where the server has no binding). Pods that fit
 * nowhere get PodScheduled=False/Unschedulable and are retried when nodes change.
 */
export class Scheduler {
  private pods?: ResilientInformer<V1Pod>;
  private nodes?: ResilientInformer<V1Node>;
  private readonly queue = new Set<string>();
  private readonly unschedulable = new Set<string>();
  /** Bindings we made that the pod informer may not show yet (kube-scheduler's "assumed" pods). */
  private readonly assumed = new Map<string, string>();
  private draining = false;
  private turn = 0;
  private bindingSupported = true;
  private stopped = false;

  constructor(
    private readonly kc: KubeConfig,
    private readonly core: CoreV1Api,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    this.pods = clusterInformers.pods(this.kc, this.log);
    this.nodes = clusterInformers.nodes(this.kc, this.log);
    const consider = (pod: V1Pod) => {
      const key = podKey(pod);
      if (pod.spec?.nodeName) {
        this.assumed.delete(key);
        return;
      }
      if (needsScheduling(pod)) {
        this.queue.add(key);
        this.drain();
      }
    };
    this.pods.on('add', consider);
    this.pods.on('update', consider);
    this.pods.on('delete', (pod) => {
      this.assumed.delete(podKey(pod));
      this.unschedulable.delete(podKey(pod));
    });
    const retryUnschedulable = () => {
      for (const k of this.unschedulable) this.queue.add(k);
      this.drain();
    };
    this.nodes.on('add', retryUnschedulable);
    this.nodes.on('update', retryUnschedulable);
    await this.nodes.start();
    await this.pods.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.pods?.stop();
    await this.nodes?.stop();
  }

  private drain(): void {
    if (this.draining || this.stopped) return;
    this.draining = true;
    void (async () => {
      try {
        while (this.queue.size > 0 && !this.stopped) {
          const key = this.queue.values().next().value as string;
          this.queue.delete(key);
          await this.scheduleOne(key);
        }
      } finally {
        this.draining = false;
      }
    })();
  }

  private podsPerNode(): Map<string, number> {
    const counts = new Map<string, number>();
    const seen = new Set<string>();
    for (const p of this.pods?.list() ?? []) {
      const node = p.spec?.nodeName ?? this.assumed.get(podKey(p));
      if (!node || p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed') continue;
      seen.add(podKey(p));
      counts.set(node, (counts.get(node) ?? 0) + 1);
    }
    for (const [key, node] of this.assumed) if (!seen.has(key)) counts.set(node, (counts.get(node) ?? 0) + 1);
    return counts;
  }

  private async scheduleOne(key: string): Promise<void> {
    const [namespace = '', name = ''] = key.split('/');
    const pod = this.pods?.get(name, namespace);
    if (!pod || !needsScheduling(pod) || this.assumed.has(key)) return;
    const choice = chooseNode(pod, this.nodes?.list() ?? [], this.podsPerNode(), this.turn++);
    if ('unschedulable' in choice) {
      this.unschedulable.add(key);
      await this.markUnschedulable(pod, choice.unschedulable);
      return;
    }
    this.unschedulable.delete(key);
    try {
      await this.bind(pod, choice.node);
      this.assumed.set(key, choice.node);
      this.log.info({ pod: key, node: choice.node }, 'pod scheduled');
    } catch (err) {
      if (httpStatus(err) === 404) return; // deleted meanwhile
      this.log.warn({ pod: key, err: (err as Error).message }, 'binding failed; retrying');
      setTimeout(() => {
        this.queue.add(key);
        this.drain();
      }, 1_000).unref();
    }
  }

  private async bind(pod: V1Pod, node: string): Promise<void> {
    const name = pod.metadata?.name ?? '';
    const namespace = pod.metadata?.namespace ?? 'default';
    if (this.bindingSupported) {
      try {
        await this.core.createNamespacedPodBinding({
          name,
          namespace,
          body: {
            apiVersion: 'v1',
            kind: 'Binding',
            metadata: { name, namespace, uid: pod.metadata?.uid },
            target: { apiVersion: 'v1', kind: 'Node', name: node },
          },
        });
        return;
      } catch (err) {
        const code = httpStatus(err);
        if (code !== 404 && code !== 405) throw err;
        if (code === 404 && !(await this.podExists(name, namespace))) throw err;
        this.log.info('the API server has no pods/binding; scheduling by setting spec.nodeName');
        this.bindingSupported = false;
      }
    }
    await this.core.patchNamespacedPod(
      { name, namespace, body: { spec: { nodeName: node } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  private async podExists(name: string, namespace: string): Promise<boolean> {
    try {
      await this.core.readNamespacedPod({ name, namespace });
      return true;
    } catch {
      return false;
    }
  }

  private async markUnschedulable(pod: V1Pod, message: string): Promise<void> {
    const existing = pod.status?.conditions?.find((c) => c.type === 'PodScheduled');
    if (existing?.status === 'False' && existing.message === message) return;
    try {
      await this.core.patchNamespacedPodStatus(
        {
          name: pod.metadata?.name ?? '',
          namespace: pod.metadata?.namespace ?? 'default',
          body: {
            status: {
              phase: 'Pending',
              conditions: [
                {
                  type: 'PodScheduled',
                  status: 'False',
                  reason: 'Unschedulable',
                  message,
                  lastProbeTime: null,
                  lastTransitionTime: k8sTime(new Date()),
                },
              ],
            },
          },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'reporting an unschedulable pod failed');
    }
  }
}

function podKey(pod: V1Pod): string {
  return `${pod.metadata?.namespace ?? 'default'}/${pod.metadata?.name ?? ''}`;
}

function needsScheduling(pod: V1Pod): boolean {
  const scheduler = pod.spec?.schedulerName;
  return (
    !pod.spec?.nodeName &&
    pod.metadata?.deletionTimestamp == null &&
    (scheduler === undefined || scheduler === '' || scheduler === 'default-scheduler')
  );
}
