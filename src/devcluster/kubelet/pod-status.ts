/**
 * The status a kubelet reports for a pod, computed from what it knows about the pod's
 * sandbox and containers. Pure, so the phase and condition rules are unit-tested.
 */

export type RestartPolicy = 'Always' | 'OnFailure' | 'Never';

export interface WaitingState {
  kind: 'waiting';
  reason: string;
  message?: string;
}
export interface RunningState {
  kind: 'running';
  startedAt: string;
}
export interface TerminatedState {
  kind: 'terminated';
  exitCode: number;
  signal?: number;
  reason: string;
  message?: string;
  startedAt: string;
  finishedAt: string;
}
export type ContainerState = WaitingState | RunningState | TerminatedState;

export interface ContainerSnapshot {
  name: string;
  image: string;
  state: ContainerState;
  lastState?: TerminatedState;
  restartCount: number;
  ready: boolean;
  /** Passed its startup probe (or has none) while running. */
  started: boolean;
  containerID?: string;
}

export interface PodSnapshot {
  restartPolicy: RestartPolicy;
  sandboxReady: boolean;
  /** When the kubelet first acknowledged the pod. */
  startTime: string;
  hostIP: string;
  podIP?: string;
  initContainers: ContainerSnapshot[];
  containers: ContainerSnapshot[];
  /** A reason that fails the whole pod (e.g. an init container that will not be retried). */
  failure?: { reason: string; message: string };
  /** Previous condition transition times, so unchanged conditions keep theirs. */
  previousConditions?: PodConditionJson[];
  now: string;
}

export interface PodConditionJson {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  lastProbeTime: null;
  lastTransitionTime: string;
  reason?: string;
  message?: string;
}

export interface ContainerStatusJson {
  name: string;
  image: string;
  imageID: string;
  containerID?: string;
  state: Record<string, unknown>;
  lastState: Record<string, unknown>;
  ready: boolean;
  restartCount: number;
  started: boolean;
}

export interface PodStatusJson {
  phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  conditions: PodConditionJson[];
  hostIP: string;
  hostIPs: Array<{ ip: string }>;
  podIP?: string;
  podIPs?: Array<{ ip: string }>;
  startTime: string;
  initContainerStatuses?: ContainerStatusJson[];
  containerStatuses: ContainerStatusJson[];
  qosClass: 'BestEffort';
  reason?: string;
  message?: string;
}

/** Will this terminated container be started again under the pod's restart policy? */
export function willRestart(policy: RestartPolicy, exitCode: number): boolean {
  return policy === 'Always' || (policy === 'OnFailure' && exitCode !== 0);
}

export function initDone(s: PodSnapshot): boolean {
  return s.initContainers.every((c) => c.state.kind === 'terminated' && c.state.exitCode === 0);
}

/** Kubernetes' phase rules (pkg/kubelet/kubelet_pods.go getPhase), for regular containers. */
export function podPhase(s: PodSnapshot): PodStatusJson['phase'] {
  if (s.failure) return 'Failed';
  if (!s.sandboxReady || !initDone(s)) return 'Pending';
  let running = 0;
  let waiting = 0;
  let stopped = 0;
  let succeeded = 0;
  for (const c of s.containers) {
    if (c.state.kind === 'running') running++;
    else if (c.state.kind === 'terminated') {
      stopped++;
      if (c.state.exitCode === 0) succeeded++;
    } else if (c.lastState) {
      // Waiting to be restarted after having run: counts as running (CrashLoopBackOff).
      running++;
    } else waiting++;
  }
  if (waiting > 0) return 'Pending';
  if (running > 0) return 'Running';
  if (stopped > 0) {
    if (s.restartPolicy === 'Always') return 'Running';
    if (stopped === succeeded) return 'Succeeded';
    if (s.restartPolicy === 'Never') return 'Failed';
    return 'Running';
  }
  return 'Pending';
}

export function podStatus(s: PodSnapshot): PodStatusJson {
  const phase = podPhase(s);
  const allReady = s.containers.length > 0 && s.containers.every((c) => c.ready);
  const notReady = s.containers.filter((c) => !c.ready).map((c) => c.name);
  const containersReadyMessage = notReady.length
    ? `containers with unready status: [${notReady.join(' ')}]`
    : undefined;
  const initPending = s.initContainers.filter(
    (c) => !(c.state.kind === 'terminated' && c.state.exitCode === 0),
  );
  const terminal = phase === 'Succeeded' || phase === 'Failed';
  const conditions: Array<Omit<PodConditionJson, 'lastTransitionTime' | 'lastProbeTime'>> = [
    { type: 'PodReadyToStartContainers', status: s.sandboxReady ? 'True' : 'False' },
    initPending.length === 0
      ? {
          type: 'Initialized',
          status: 'True',
          ...(terminal && phase === 'Succeeded' ? { reason: 'PodCompleted' } : {}),
        }
      : {
          type: 'Initialized',
          status: 'False',
          reason: 'ContainersNotInitialized',
          message: `containers with incomplete status: [${initPending.map((c) => c.name).join(' ')}]`,
        },
    allReady && !terminal
      ? { type: 'Ready', status: 'True' }
      : {
          type: 'Ready',
          status: 'False',
          reason: terminal ? 'PodCompleted' : 'ContainersNotReady',
          ...(terminal ? {} : { message: containersReadyMessage }),
        },
    allReady && !terminal
      ? { type: 'ContainersReady', status: 'True' }
      : {
          type: 'ContainersReady',
          status: 'False',
          reason: terminal ? 'PodCompleted' : 'ContainersNotReady',
          ...(terminal ? {} : { message: containersReadyMessage }),
        },
    { type: 'PodScheduled', status: 'True' },
  ];
  const previous = new Map((s.previousConditions ?? []).map((c) => [c.type, c]));
  const status: PodStatusJson = {
    phase,
    conditions: conditions.map((c) => {
      const before = previous.get(c.type);
      return {
        ...c,
        lastProbeTime: null,
        lastTransitionTime: before && before.status === c.status ? before.lastTransitionTime : s.now,
      };
    }),
    hostIP: s.hostIP,
    hostIPs: [{ ip: s.hostIP }],
    startTime: s.startTime,
    containerStatuses: s.containers.map(containerStatus),
    qosClass: 'BestEffort',
  };
  if (s.podIP) {
    status.podIP = s.podIP;
    status.podIPs = [{ ip: s.podIP }];
  }
  if (s.initContainers.length > 0) status.initContainerStatuses = s.initContainers.map(containerStatus);
  if (s.failure) {
    status.reason = s.failure.reason;
    status.message = s.failure.message;
  }
  return status;
}

function containerStatus(c: ContainerSnapshot): ContainerStatusJson {
  const out: ContainerStatusJson = {
    name: c.name,
    image: c.image,
    imageID: '',
    state: stateJson(c.state),
    lastState: c.lastState ? stateJson(c.lastState) : {},
    ready: c.ready,
    restartCount: c.restartCount,
    started: c.started,
  };
  if (c.containerID) out.containerID = c.containerID;
  return out;
}

function stateJson(s: ContainerState): Record<string, unknown> {
  switch (s.kind) {
    case 'waiting':
      return { waiting: { reason: s.reason, ...(s.message ? { message: s.message } : {}) } };
    case 'running':
      return { running: { startedAt: s.startedAt } };
    case 'terminated':
      return {
        terminated: {
          exitCode: s.exitCode,
          ...(s.signal !== undefined ? { signal: s.signal } : {}),
          reason: s.reason,
          ...(s.message ? { message: s.message } : {}),
          startedAt: s.startedAt,
          finishedAt: s.finishedAt,
        },
      };
  }
}

/** Kubernetes timestamps: RFC 3339, whole seconds, UTC. */
export function k8sTime(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Crash-loop back-off: immediately the first time, then 10 s doubling up to 5 min. */
export function restartDelayMs(restartsSoFar: number): number {
  if (restartsSoFar <= 0) return 0;
  return Math.min(10_000 * 2 ** (restartsSoFar - 1), 300_000);
}
