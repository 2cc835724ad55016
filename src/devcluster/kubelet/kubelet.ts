import { createHash } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { arch, cpus, release, totalmem } from 'node:os';
import {
  type CoordinationV1Api,
  type CoreV1Api,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1Lease,
  type V1Pod,
} from '@kubernetes/client-node';
import type { Logger } from '../../shared/log.js';
import type { ClusterRecord, NodeRecord, PodSandboxRecord } from '../cluster-record.js';
import { readPodRecords, removePodRecord } from '../cluster-record.js';
import { destroySandbox } from '../pod-sandbox.js';
import { PodIPAllocator } from '../pod-ipam.js';
import { clusterInformers, type ResilientInformer } from '../resilient-informer.js';
import type { NodeProber } from './network-prober.js';
import { type HostFacts, nodeObject, nodeStatus } from './node-object.js';
import { k8sTime } from './pod-status.js';
import { httpStatus, PodWorker } from './pod-worker.js';
import { sandboxAdoption } from './sandbox-adoption.js';

/**
 * One node's kubelet: registers the Node, heartbeats its status, watches the pods bound to
 * it (field selector spec.nodeName) and runs a PodWorker per pod. It talks to the API server
 * only through @kubernetes/client-node, like any other client.
 */
/** Like the kubelet: the node Lease is renewed every 10 s; the full status is posted every 5 min. */
export const LEASE_RENEW_MS = 10_000;
export const LEASE_DURATION_SECONDS = 40;
export const STATUS_REPORT_MS = 300_000;

export interface KubeletOptions {
  cluster: ClusterRecord;
  node: NodeRecord;
  kc: KubeConfig;
  core: CoreV1Api;
  coordination: CoordinationV1Api;
  log: Logger;
  weft: string[];
  logsDir: string;
  prober: NodeProber;
  kubernetesServiceIP: string;
}

export class Kubelet {
  private readonly workers = new Map<string, PodWorker>();
  /** namespace/name → uid of the pod we run under that name. */
  private readonly uidByName = new Map<string, string>();
  /** Sandboxes the previous daemon recorded on this node and no pod worker has taken over yet. */
  private readonly recorded = new Map<string, PodSandboxRecord>();
  private readonly ipam: PodIPAllocator;
  private readonly host: HostFacts;
  private informer?: ResilientInformer<V1Pod>;
  private heartbeat?: NodeJS.Timeout;
  private statusReport?: NodeJS.Timeout;
  private readySince = k8sTime(new Date());
  private stopped = false;
  private readonly log: Logger;

  constructor(private readonly opts: KubeletOptions) {
    this.log = opts.log.child({ node: opts.node.name });
    this.ipam = new PodIPAllocator(opts.node.podCIDR);
    this.host = hostFacts(opts.node.name);
    // IPs of sandboxes recorded earlier on this node stay taken.
    for (const p of readPodRecords(opts.cluster.name).pods) {
      if (p.node === opts.node.name) this.recorded.set(p.uid, p);
      if (p.node === opts.node.name && !p.hostNetwork && p.ip) {
        try {
          this.ipam.restore(p.uid, p.ip);
        } catch (err) {
          this.log.warn(
            { err: (err as Error).message, pod: `${p.namespace}/${p.name}` },
            'recorded pod IP ignored',
          );
        }
      }
    }
  }

  async start(): Promise<void> {
    await this.register();
    await this.renewLease();
    this.heartbeat = setInterval(() => void this.renewLease(), LEASE_RENEW_MS);
    this.statusReport = setInterval(() => void this.postStatus(), STATUS_REPORT_MS);
    const { node } = this.opts;
    this.informer = clusterInformers.pods(this.opts.kc, this.log, `spec.nodeName=${node.name}`);
    this.informer.on('add', (pod) => this.podChanged(pod));
    this.informer.on('update', (pod) => this.podChanged(pod));
    this.informer.on('delete', (pod) => this.podDeleted(pod));
    await this.informer.start();
    // Every pod bound here has been seen: recorded sandboxes left over are of pods deleted
    // while no kubelet watched.
    const left = [...this.recorded.values()];
    this.recorded.clear();
    void this.tearDownOrphans(left);
    this.log.info('kubelet started');
  }

  private async tearDownOrphans(records: PodSandboxRecord[]): Promise<void> {
    for (const rec of records) {
      const decision = sandboxAdoption({
        podExists: false,
        specContainers: [],
        initContainers: new Set(),
        recordedContainers: rec.containers,
        containerStates: rec.containerStates,
        sandboxIntact: false,
        running: new Set(),
        now: k8sTime(new Date()),
      });
      if (decision.action !== 'teardown') continue;
      const pod = `${rec.namespace}/${rec.name}`;
      this.log.info({ pod, uid: rec.uid, reason: decision.reason }, 'tearing down a recorded pod sandbox');
      try {
        await destroySandbox(this.opts.node, rec, 2_000);
        if (!rec.hostNetwork) this.ipam.release(rec.uid);
        removePodRecord(this.opts.cluster.name, rec.uid);
        rmSync(join(this.opts.logsDir, 'pods', `${rec.namespace}_${rec.name}_${rec.uid}`), {
          recursive: true,
          force: true,
        });
      } catch (err) {
        // Left recorded: `down` removes it, and the next daemon start tries again.
        this.log.error({ pod, err: (err as Error).message }, 'tearing down a recorded pod sandbox failed');
      }
    }
  }

  /** Stops watching and heartbeating; pods keep running (their processes are not ours to end here). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.statusReport) clearInterval(this.statusReport);
    await this.informer?.stop();
    for (const w of this.workers.values()) w.detach();
    this.opts.prober.close();
  }

  get podCount(): number {
    return this.workers.size;
  }

  private podChanged(pod: V1Pod): void {
    if (this.stopped) return;
    const uid = pod.metadata?.uid;
    if (!uid || pod.spec?.nodeName !== this.opts.node.name) return;
    const key = `${pod.metadata?.namespace}/${pod.metadata?.name}`;
    // A relist shows a pod re-created under the same name as an update: the old one is gone.
    const previous = this.uidByName.get(key);
    if (previous && previous !== uid) this.workers.get(previous)?.objectDeleted();
    this.uidByName.set(key, uid);
    let worker = this.workers.get(uid);
    if (!worker) {
      worker = new PodWorker(pod, {
        cluster: this.opts.cluster,
        node: this.opts.node,
        core: this.opts.core,
        log: this.log,
        ipam: this.ipam,
        weft: this.opts.weft,
        logsDir: this.opts.logsDir,
        kubernetesServiceIP: this.opts.kubernetesServiceIP,
        runNetworkProbe: (p) => this.opts.prober.probe(p),
        recorded: this.takeRecorded(uid),
        onFinished: (finishedUid) => {
          this.workers.delete(finishedUid);
          if (this.uidByName.get(key) === finishedUid) this.uidByName.delete(key);
        },
      });
      this.workers.set(uid, worker);
    }
    worker.update(pod);
  }

  private takeRecorded(uid: string): PodSandboxRecord | undefined {
    const rec = this.recorded.get(uid);
    this.recorded.delete(uid);
    return rec;
  }

  private podDeleted(pod: V1Pod): void {
    const uid = pod.metadata?.uid;
    if (uid) this.workers.get(uid)?.objectDeleted();
  }

  private async register(): Promise<void> {
    const { core, node } = this.opts;
    const body = nodeObject(node, this.host);
    for (let attempt = 0; ; attempt++) {
      try {
        try {
          await core.createNode({ body });
        } catch (err) {
          if (httpStatus(err) !== 409) throw err;
          // Registered before (daemon restart): bring labels and pod CIDR up to date.
          await core.patchNode(
            { name: node.name, body: { metadata: body.metadata, spec: body.spec } },
            setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
          );
        }
        await this.postStatus(true);
        return;
      } catch (err) {
        if (attempt >= 50) throw err;
        this.log.warn({ err: (err as Error).message }, 'registering the node failed; retrying');
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  private async renewLease(): Promise<void> {
    const { coordination, node } = this.opts;
    const lease = nodeLease(node.name, new Date());
    try {
      try {
        await coordination.replaceNamespacedLease({
          name: node.name,
          namespace: 'kube-node-lease',
          body: lease,
        });
      } catch (err) {
        if (httpStatus(err) !== 404) throw err;
        await coordination.createNamespacedLease({ namespace: 'kube-node-lease', body: lease });
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'renewing the node lease failed');
    }
  }

  private async postStatus(throwOnError = false): Promise<void> {
    const { core, node } = this.opts;
    const status = nodeStatus(node, this.host, k8sTime(new Date()), this.readySince);
    try {
      await core.patchNodeStatus(
        { name: node.name, body: { status } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    } catch (err) {
      if (throwOnError) throw err;
      if (httpStatus(err) === 404 && !this.stopped) {
        // Somebody deleted our Node: register again, as a kubelet does.
        this.log.warn('node object deleted; registering again');
        this.readySince = k8sTime(new Date());
        await this.register().catch(() => {});
        return;
      }
      this.log.warn({ err: (err as Error).message }, 'node heartbeat failed');
    }
  }
}

/** The node's heartbeat: kube-node-lease/<node>, as kubelets keep it since Kubernetes 1.17. */
export function nodeLease(node: string, renewTime: Date): V1Lease {
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name: node, namespace: 'kube-node-lease' },
    spec: { holderIdentity: node, leaseDurationSeconds: LEASE_DURATION_SECONDS, renewTime },
  };
}

function hostFacts(nodeName: string): HostFacts {
  const read = (path: string) => {
    try {
      return readFileSync(path, 'utf8').trim();
    } catch {
      return '';
    }
  };
  const osImage = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(read('/etc/os-release'))?.[1] ?? 'Linux';
  const machine = read('/etc/machine-id') || 'weft';
  const architecture = arch() === 'x64' ? 'amd64' : arch();
  return {
    cpus: cpus().length,
    memoryKi: Math.floor(totalmem() / 1024),
    kernelVersion: release(),
    osImage,
    architecture,
    bootID: read('/proc/sys/kernel/random/boot_id'),
    machineID: createHash('sha256').update(`${machine}/${nodeName}`).digest('hex').slice(0, 32),
  };
}
