import { rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  type CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1Container,
  type V1Pod,
} from '@kubernetes/client-node';
import type { Logger } from '../../shared/log.js';
import type { ClusterRecord, NodeRecord, PodSandboxRecord, RecordedContainer } from '../cluster-record.js';
import { removePodRecord, writePodRecord } from '../cluster-record.js';
import type { PodIPAllocator } from '../pod-ipam.js';
import { createSandbox, destroySandbox, sandboxIntact, sandboxRecordFor } from '../pod-sandbox.js';
import { isRunning, sleep } from '../process-record.js';
import { ContainerConfigError, containerArgv, containerEnv } from './container-command.js';
import {
  adoptContainerProcess,
  type ContainerExit,
  type ContainerProcess,
  startContainerProcess,
} from './container-process.js';
import type { NetworkProbe, ProbeResult } from './network-prober.js';
import {
  type ContainerSnapshot,
  type ContainerState,
  k8sTime,
  type PodConditionJson,
  podStatus,
  type RestartPolicy,
  restartDelayMs,
  type TerminatedState,
  willRestart,
} from './pod-status.js';
import { podAdmissionError } from './pod-admission.js';
import { ProbeWorker } from './probe-worker.js';
import { sandboxAdoption, unknownExit } from './sandbox-adoption.js';

/**
 * Everything the kubelet does for one pod, serialised: create the sandbox, run init
 * containers in order, run and restart containers, probe them, report status, and on
 * deletion stop everything within the grace period and remove the pod. Level-triggered:
 * every event just asks for a sync, and a sync looks at the whole current state.
 */

export interface PodWorkerContext {
  cluster: ClusterRecord;
  node: NodeRecord;
  core: CoreV1Api;
  log: Logger;
  ipam: PodIPAllocator;
  weft: string[];
  logsDir: string;
  kubernetesServiceIP: string;
  runNetworkProbe(p: NetworkProbe): Promise<ProbeResult>;
  /** The sandbox the previous daemon recorded for this pod, to take over (daemon restart). */
  recorded?: PodSandboxRecord;
  /** Called once the pod is gone from the node (sandbox removed, API object deleted). */
  onFinished(uid: string): void;
}

class ContainerRuntime {
  state: ContainerState = { kind: 'waiting', reason: 'ContainerCreating' };
  lastState?: TerminatedState;
  restartCount = 0;
  runs = 0;
  process?: ContainerProcess;
  probes: ProbeWorker[] = [];
  nextStartAt = 0;
  containerID?: string;

  constructor(
    readonly spec: V1Container,
    readonly init: boolean,
  ) {}

  get ready(): boolean {
    if (this.state.kind !== 'running' || !this.started) return false;
    const readiness = this.probes.find((p) => p.kind === 'readiness');
    return readiness ? readiness.healthy : true;
  }

  get started(): boolean {
    if (this.state.kind !== 'running') return false;
    const startup = this.probes.find((p) => p.kind === 'startup');
    return startup ? startup.healthy : true;
  }

  snapshot(): ContainerSnapshot {
    return {
      name: this.spec.name,
      image: this.spec.image ?? '',
      state: this.state,
      lastState: this.lastState,
      restartCount: this.restartCount,
      ready: this.init ? false : this.ready,
      started: this.started,
      containerID: this.containerID,
    };
  }

  stopProbes(): void {
    for (const p of this.probes) p.stop();
    this.probes = [];
  }

  recorded(): RecordedContainer {
    return {
      name: this.spec.name,
      restartCount: this.restartCount,
      runs: this.runs,
      ...(this.containerID ? { containerID: this.containerID } : {}),
      state: this.state,
      ...(this.lastState ? { lastState: this.lastState } : {}),
    };
  }
}

/** What the API server last heard from us about a container, to resume its probes with. */
interface ProbeResumption {
  ready: boolean;
  started: boolean;
  runningForMs: number;
}

export class PodWorker {
  private pod: V1Pod;
  private objectGone = false;
  private record?: PodSandboxRecord;
  /** The previous daemon's sandbox for this pod, until the first sync has taken it over. */
  private recorded?: PodSandboxRecord;
  private sandboxReady = false;
  private sandboxError?: string;
  private readonly startTime: string;
  private readonly initContainers: ContainerRuntime[];
  private readonly containers: ContainerRuntime[];
  private failure?: { reason: string; message: string };
  private terminating = false;
  private finished = false;
  private syncing = false;
  private dirty = false;
  private retryTimer?: NodeJS.Timeout;
  private lastReported?: string;
  private conditions?: PodConditionJson[];
  private readonly log: Logger;

  constructor(
    pod: V1Pod,
    private readonly ctx: PodWorkerContext,
  ) {
    this.pod = pod;
    this.log = ctx.log.child({ pod: `${pod.metadata?.namespace}/${pod.metadata?.name}` });
    this.initContainers = (pod.spec?.initContainers ?? []).map((c) => new ContainerRuntime(c, true));
    this.containers = (pod.spec?.containers ?? []).map((c) => new ContainerRuntime(c, false));
    this.recorded = ctx.recorded;
    // A pod we (or the previous daemon) reported on keeps its start time and the transition
    // times of conditions that do not change.
    const reported = pod.status;
    this.startTime = k8sTime(reported?.startTime ? new Date(reported.startTime) : new Date());
    if (this.recorded && reported?.conditions) {
      this.conditions = reported.conditions.map((c) => ({
        type: c.type,
        status: c.status as PodConditionJson['status'],
        lastProbeTime: null,
        lastTransitionTime: k8sTime(c.lastTransitionTime ? new Date(c.lastTransitionTime) : new Date()),
      }));
    }
  }

  get uid(): string {
    return this.pod.metadata?.uid ?? '';
  }

  /** A newer version of the pod from the informer. */
  update(pod: V1Pod): void {
    this.pod = pod;
    this.kick();
  }

  /** The pod object is gone (deleted with grace 0, or by us): stop at once. */
  objectDeleted(): void {
    this.objectGone = true;
    this.kick();
  }

  /** Stop probing and reporting, leave processes running (daemon shutdown). */
  detach(): void {
    this.finished = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    for (const c of [...this.initContainers, ...this.containers]) {
      c.stopProbes();
      c.process?.release();
    }
  }

  kick(): void {
    if (this.finished) return;
    if (this.syncing) {
      this.dirty = true;
      return;
    }
    this.syncing = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.dirty = false;
        try {
          await this.sync();
        } catch (err) {
          this.log.error({ err: (err as Error).message }, 'pod sync failed; retrying');
          this.retryIn(2_000);
        }
      } while (this.dirty && !this.finished);
    } finally {
      this.syncing = false;
    }
  }

  private retryIn(ms: number): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, ms);
  }

  private get restartPolicy(): RestartPolicy {
    const p = this.pod.spec?.restartPolicy;
    return p === 'Never' || p === 'OnFailure' ? p : 'Always';
  }

  private async sync(): Promise<void> {
    if (this.finished) return;
    // Before anything else, deletion included: the recorded sandbox is ours to stop or keep.
    if (this.recorded) await this.takeOver(this.recorded);
    if (this.objectGone || this.pod.metadata?.deletionTimestamp != null) {
      await this.terminate();
      return;
    }
    const rejection = podAdmissionError(this.pod);
    if (rejection) {
      if (!this.failure) this.log.warn({ reason: rejection }, 'pod rejected');
      this.failure = { reason: 'UnexpectedAdmissionError', message: `Pod was rejected: ${rejection}` };
      await this.report();
      return;
    }
    if (!this.record || !this.sandboxReady) {
      const ok = await this.ensureSandbox();
      if (!ok) {
        await this.report();
        this.retryIn(5_000);
        return;
      }
    }
    if (!this.failure) this.runContainers();
    await this.report();
  }

  /**
   * After a daemon restart: keep the recorded sandbox and the containers that still run,
   * restart those that ended meanwhile, or remove a half-made sandbox to make it again
   * (sandboxAdoption decides). Throws when the removal fails, so the sync is retried.
   */
  private async takeOver(rec: PodSandboxRecord): Promise<void> {
    const { node } = this.ctx;
    const all = [...this.initContainers, ...this.containers];
    const processOf = (c: ContainerRuntime) =>
      rec.processes.find((p) => p.role === `${rec.namespace}/${rec.name}/${c.spec.name}` && isRunning(p));
    const decision = sandboxAdoption({
      podExists: true,
      specContainers: all.map((c) => c.spec.name),
      initContainers: new Set(this.initContainers.map((c) => c.spec.name)),
      recordedContainers: rec.containers,
      containerStates: rec.containerStates,
      sandboxIntact: await sandboxIntact(node, rec),
      running: new Set(all.filter((c) => processOf(c) !== undefined).map((c) => c.spec.name)),
      now: k8sTime(new Date()),
    });
    if (decision.action === 'teardown') return; // not for a pod that exists
    this.log.info(
      {
        action: decision.action,
        ...('reason' in decision ? { reason: decision.reason } : {}),
        ...('restarting' in decision ? { restarting: decision.restarting } : {}),
      },
      'taking over the recorded pod sandbox',
    );
    if (decision.action === 'recreate') {
      await destroySandbox(node, rec, 2_000);
      this.record = { ...rec, processes: [] };
    } else {
      this.record = rec;
      this.sandboxReady = true;
    }
    this.recorded = undefined;
    const reported = this.pod.status?.containerStatuses ?? [];
    const adopted: ContainerRuntime[] = [];
    for (const r of decision.containers) {
      const c = all.find((x) => x.spec.name === r.name);
      if (!c) continue;
      c.state = r.state;
      c.lastState = r.lastState;
      c.restartCount = r.restartCount;
      c.runs = r.runs;
      c.containerID = r.containerID;
      const proc = r.adoptProcess ? processOf(c) : undefined;
      if (!proc || r.state.kind !== 'running') continue;
      const startedAt = new Date(r.state.startedAt);
      const taken: ContainerProcess = adoptContainerProcess(proc, startedAt, (exit) =>
        this.containerExited(c, taken, exit),
      );
      c.process = taken;
      adopted.push(c);
    }
    this.record.processes = adopted.flatMap((c) => (c.process ? [c.process.record] : []));
    this.saveRecord();
    for (const c of adopted) {
      if (c.init || c.state.kind !== 'running') continue;
      const before = reported.find((s) => s.name === c.spec.name && s.containerID === c.containerID);
      this.startProbes(c, this.envOf(c) ?? {}, {
        ready: before?.ready === true,
        started: before?.started === true,
        runningForMs: Date.now() - new Date(c.state.startedAt).getTime(),
      });
    }
  }

  /** The container's environment, or undefined when its configuration cannot give one. */
  private envOf(c: ContainerRuntime): Record<string, string> | undefined {
    try {
      return containerEnv(this.pod, c.spec, {
        podIP: this.record?.ip,
        hostIP: this.ctx.node.ip,
        nodeName: this.ctx.node.name,
        kubernetesServiceIP: this.ctx.kubernetesServiceIP,
        hostEnv: { PATH: process.env.PATH, HOME: process.env.HOME },
      });
    } catch {
      return undefined;
    }
  }

  /** Writes the sandbox record with the containers' current states (what a restart reads back). */
  private saveRecord(): void {
    const rec = this.record;
    if (!rec) return;
    rec.containerStates = [...this.initContainers, ...this.containers].map((c) => c.recorded());
    writePodRecord(this.ctx.cluster.name, rec);
  }

  private async ensureSandbox(): Promise<boolean> {
    const { cluster, node } = this.ctx;
    const hostNetwork = this.pod.spec?.hostNetwork === true;
    try {
      if (!this.record) {
        const ip = hostNetwork ? undefined : this.ctx.ipam.allocate(this.uid);
        this.record = sandboxRecordFor({
          cluster: cluster.name,
          node,
          uid: this.uid,
          namespace: this.pod.metadata?.namespace ?? 'default',
          name: this.pod.metadata?.name ?? '',
          hostNetwork,
          containers: [...this.initContainers, ...this.containers].map((c) => c.spec.name),
          ip,
        });
        // Recorded before it exists, so that `down` removes it even if we die half-way.
        this.saveRecord();
      }
      await createSandbox(node, this.record);
      this.sandboxReady = true;
      this.sandboxError = undefined;
      return true;
    } catch (err) {
      this.sandboxError = (err as Error).message;
      this.log.error({ err: this.sandboxError }, 'creating the pod sandbox failed');
      return false;
    }
  }

  /** Starts whatever should run now: the next init container, else the containers. */
  private runContainers(): void {
    for (const c of this.initContainers) {
      if (c.state.kind === 'terminated' && c.state.exitCode === 0) continue;
      if (c.state.kind === 'running') return;
      if (c.state.kind === 'terminated') {
        if (this.restartPolicy === 'Never') {
          this.failure = { reason: 'Failed', message: `init container ${c.spec.name} failed` };
          return;
        }
      }
      this.startWhenDue(c);
      return;
    }
    for (const c of this.containers) {
      if (c.state.kind === 'running') continue;
      if (c.state.kind === 'terminated' && !willRestart(this.restartPolicy, c.state.exitCode)) continue;
      this.startWhenDue(c);
    }
  }

  private startWhenDue(c: ContainerRuntime): void {
    const wait = c.nextStartAt - Date.now();
    if (wait > 0) {
      if (c.state.kind === 'terminated') {
        c.lastState = c.state;
        c.state = {
          kind: 'waiting',
          reason: 'CrashLoopBackOff',
          message: `back-off ${Math.round(restartDelayMs(c.restartCount) / 1000)}s restarting failed container=${c.spec.name} pod=${this.pod.metadata?.name}_${this.pod.metadata?.namespace}(${this.uid})`,
        };
      }
      this.retryIn(wait);
      return;
    }
    this.startContainer(c);
  }

  private startContainer(c: ContainerRuntime): void {
    const rec = this.record;
    if (!rec) return;
    const { node } = this.ctx;
    const podIP = rec.ip;
    const netns = rec.hostNetwork ? node.netns : (rec.netns ?? node.netns);
    const restart = c.runs > 0;
    let env: Record<string, string>;
    let argv: string[];
    try {
      env = containerEnv(this.pod, c.spec, {
        podIP,
        hostIP: node.ip,
        nodeName: node.name,
        kubernetesServiceIP: this.ctx.kubernetesServiceIP,
        hostEnv: { PATH: process.env.PATH, HOME: process.env.HOME },
      });
      argv = containerArgv(c.spec, env, this.ctx.weft);
    } catch (err) {
      this.containerFailedToStart(c, err);
      return;
    }
    const runIndex = restart ? c.restartCount + 1 : 0;
    const logFile = join(this.podLogDir(), c.spec.name, `${runIndex}.log`);
    let proc: ContainerProcess | undefined;
    try {
      proc = startContainerProcess({
        argv,
        env,
        workingDir: c.spec.workingDir,
        cgroup: rec.cgroup,
        netns,
        logFile,
        role: `${rec.namespace}/${rec.name}/${c.spec.name}`,
        onExit: (exit) => this.containerExited(c, proc, exit),
      });
    } catch (err) {
      this.containerFailedToStart(c, err);
      return;
    }
    if (restart) {
      c.restartCount++;
      if (c.state.kind === 'terminated') c.lastState = c.state;
    }
    c.runs++;
    c.process = proc;
    c.containerID = `weft://${this.uid}/${c.spec.name}/${c.runs}`;
    c.state = { kind: 'running', startedAt: k8sTime(proc.startedAt) };
    rec.processes = [...rec.processes.filter((p) => p.role !== proc.record.role), proc.record];
    this.saveRecord();
    this.log.info(
      { container: c.spec.name, pid: proc.record.pid, restartCount: c.restartCount },
      'container started',
    );
    if (!c.init) this.startProbes(c, env);
  }

  /** Like /var/log/pods/<namespace>_<name>_<uid>/<container>/<restart>.log. */
  private podLogDir(): string {
    return join(
      this.ctx.logsDir,
      'pods',
      `${this.pod.metadata?.namespace}_${this.pod.metadata?.name}_${this.uid}`,
    );
  }

  private containerFailedToStart(c: ContainerRuntime, err: unknown): void {
    const reason = err instanceof ContainerConfigError ? err.reason : 'RunContainerError';
    const message = (err as Error).message;
    this.log.warn({ container: c.spec.name, reason, err: message }, 'container cannot start');
    c.state = { kind: 'waiting', reason, message };
    c.nextStartAt = Date.now() + Math.max(10_000, restartDelayMs(c.restartCount + 1));
    this.retryIn(c.nextStartAt - Date.now());
  }

  private startProbes(c: ContainerRuntime, env: Record<string, string>, resume?: ProbeResumption): void {
    const rec = this.record;
    if (!rec) return;
    const target = {
      podIP: rec.ip ?? this.ctx.node.ip,
      netns: rec.hostNetwork ? this.ctx.node.netns : (rec.netns ?? this.ctx.node.netns),
      cgroup: rec.cgroup,
      env,
      runNetworkProbe: (p: NetworkProbe) => this.ctx.runNetworkProbe(p),
    };
    const onChange = (w: ProbeWorker) => {
      if (c.probes.indexOf(w) < 0) return;
      if ((w.kind === 'liveness' || w.kind === 'startup') && w.failed) {
        this.log.info(
          { container: c.spec.name, probe: w.kind, message: w.lastMessage },
          'probe failed; restarting container',
        );
        this.killContainer(c, this.pod.spec?.terminationGracePeriodSeconds ?? 30);
        return;
      }
      if (w.kind === 'startup' && w.healthy) {
        for (const p of c.probes) if (p.kind !== 'startup') p.start();
      }
      this.kick();
    };
    const startup = c.spec.startupProbe
      ? new ProbeWorker('startup', c.spec.startupProbe, c.spec, target, onChange)
      : undefined;
    if (startup) c.probes.push(startup);
    if (c.spec.readinessProbe)
      c.probes.push(new ProbeWorker('readiness', c.spec.readinessProbe, c.spec, target, onChange));
    if (c.spec.livenessProbe)
      c.probes.push(new ProbeWorker('liveness', c.spec.livenessProbe, c.spec, target, onChange));
    if (resume) {
      startup?.resume(resume.started, resume.runningForMs);
      for (const p of c.probes) {
        if (p.kind === 'readiness') p.resume(resume.ready, resume.runningForMs);
        else if (p.kind === 'liveness') p.resume(true, resume.runningForMs);
      }
    }
    // A startup probe that passed is done; the others then run at once.
    if (startup && !startup.healthy) startup.start();
    else for (const p of c.probes) if (p !== startup) p.start();
  }

  private killContainer(c: ContainerRuntime, graceSeconds: number): void {
    const proc = c.process;
    if (!proc) return;
    c.stopProbes();
    proc.signal('SIGTERM');
    const timer = setTimeout(() => {
      if (c.process === proc) proc.signal('SIGKILL');
    }, graceSeconds * 1000);
    timer.unref();
  }

  private containerExited(
    c: ContainerRuntime,
    proc: ContainerProcess | undefined,
    exit: ContainerExit,
  ): void {
    // `proc` is undefined when the process exited before spawn() returned (a failed start).
    if (!proc || c.process !== proc) return;
    c.process = undefined;
    c.stopProbes();
    const startedAt = c.state.kind === 'running' ? c.state.startedAt : k8sTime(proc.startedAt);
    c.state = exit.unknown
      ? unknownExit(startedAt, k8sTime(exit.finishedAt))
      : {
          kind: 'terminated',
          exitCode: exit.exitCode,
          ...(exit.signal !== undefined ? { signal: exit.signal } : {}),
          reason: exit.exitCode === 0 ? 'Completed' : 'Error',
          startedAt,
          finishedAt: k8sTime(exit.finishedAt),
        };
    // A container that ran for 10 minutes starts its back-off afresh, as the kubelet's does.
    const ranMs = exit.finishedAt.getTime() - proc.startedAt.getTime();
    c.nextStartAt = Date.now() + restartDelayMs(ranMs > 600_000 ? 0 : c.restartCount);
    if (this.record) {
      this.record.processes = this.record.processes.filter((p) => p.pid !== proc.record.pid);
      if (!this.terminating) this.saveRecord();
    }
    this.log.info(
      { container: c.spec.name, exitCode: exit.exitCode, signal: exit.signal },
      'container exited',
    );
    this.kick();
  }

  private snapshotStatus() {
    const node = this.ctx.node;
    return podStatus({
      restartPolicy: this.restartPolicy,
      sandboxReady: this.sandboxReady,
      startTime: this.startTime,
      hostIP: node.ip,
      podIP: this.sandboxReady ? this.record?.ip : undefined,
      initContainers: this.initContainers.map((c) => c.snapshot()),
      containers: this.containers.map((c) => {
        const s = c.snapshot();
        if (!this.sandboxReady && this.sandboxError && s.state.kind === 'waiting') {
          return {
            ...s,
            state: { kind: 'waiting', reason: 'ContainerCreating', message: this.sandboxError },
          };
        }
        if (!this.sandboxReady && s.state.kind === 'waiting') return s;
        // Containers behind init containers wait with PodInitializing.
        if (
          s.state.kind === 'waiting' &&
          s.state.reason === 'ContainerCreating' &&
          this.initContainers.length > 0
        ) {
          const initDone = this.initContainers.every(
            (i) => i.state.kind === 'terminated' && i.state.exitCode === 0,
          );
          if (!initDone) return { ...s, state: { kind: 'waiting', reason: 'PodInitializing' } };
        }
        return s;
      }),
      failure: this.failure,
      previousConditions: this.conditions,
      now: k8sTime(new Date()),
    });
  }

  /** Writes the pod's status when it changed since the last report. */
  private async report(): Promise<void> {
    if (this.terminating || this.finished || this.objectGone) return;
    const status = this.snapshotStatus();
    const text = JSON.stringify(status);
    if (text === this.lastReported) return;
    try {
      await this.ctx.core.patchNamespacedPodStatus(
        {
          name: this.pod.metadata?.name ?? '',
          namespace: this.pod.metadata?.namespace ?? 'default',
          // The UID makes the patch conditional, as the kubelet's status manager sends it: a
          // pod re-created under the same name is not given our status (where the server checks).
          body: { metadata: { uid: this.uid }, status },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      this.lastReported = text;
      this.conditions = status.conditions;
    } catch (err) {
      if (httpStatus(err) === 404) return; // deleted meanwhile; the informer will tell us
      this.log.warn({ err: (err as Error).message }, 'updating pod status failed; retrying');
      this.retryIn(1_000);
    }
  }

  /**
   * Graceful deletion: SIGTERM to every container's main process, up to the grace period for
   * them to exit, SIGKILL to whatever is left in the pod's cgroup, tear the sandbox down,
   * and finally remove the API object (grace period 0, preconditioned on our UID).
   */
  private async terminate(): Promise<void> {
    if (this.terminating) return;
    this.terminating = true;
    const graceSeconds = this.objectGone
      ? Math.min(this.pod.spec?.terminationGracePeriodSeconds ?? 30, 2)
      : (this.pod.metadata?.deletionGracePeriodSeconds ?? this.pod.spec?.terminationGracePeriodSeconds ?? 30);
    this.log.info({ graceSeconds }, 'stopping pod');
    const all = [...this.initContainers, ...this.containers];
    for (const c of all) {
      c.stopProbes();
      c.nextStartAt = Number.POSITIVE_INFINITY;
      c.process?.signal('SIGTERM');
    }
    const deadline = Date.now() + graceSeconds * 1000;
    while (Date.now() < deadline && (this.record?.processes ?? []).some(isRunning)) await sleep(100);
    const rec = this.record;
    if (rec) {
      try {
        await destroySandbox(this.ctx.node, rec, 0);
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'tearing down the sandbox failed; retrying');
        this.terminating = false;
        this.retryIn(2_000);
        return;
      }
      if (!rec.hostNetwork) this.ctx.ipam.release(this.uid);
      removePodRecord(this.ctx.cluster.name, this.uid);
      // Like the kubelet, a deleted pod's logs go with it.
      rmSync(this.podLogDir(), { recursive: true, force: true });
      this.record = undefined;
    }
    if (!this.objectGone) {
      try {
        await this.ctx.core.deleteNamespacedPod({
          name: this.pod.metadata?.name ?? '',
          namespace: this.pod.metadata?.namespace ?? 'default',
          gracePeriodSeconds: 0,
          body: { gracePeriodSeconds: 0, preconditions: { uid: this.uid } },
        });
      } catch (err) {
        const code = httpStatus(err);
        if (code !== 404 && code !== 409) {
          this.log.warn({ err: (err as Error).message }, 'removing the pod object failed; retrying');
          this.terminating = false;
          this.retryIn(1_000);
          return;
        }
      }
    }
    this.finished = true;
    this.log.info('pod stopped and removed');
    this.ctx.onFinished(this.uid);
  }
}

/** The HTTP status of a client-node ApiException, if that is what `err` is. */
export function httpStatus(err: unknown): number | undefined {
  if (
    typeof err === 'object' &&
    err !== null &&
    'code' in err &&
    typeof (err as { code: unknown }).code === 'number'
  ) {
    return (err as { code: number }).code;
  }
  return undefined;
}
