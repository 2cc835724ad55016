import type { RecordedContainer } from '../cluster-record.js';
import type { ContainerState, TerminatedState } from './pod-status.js';

/**
 * What a restarted kubelet does with a pod sandbox recorded by the previous daemon. Like a
 * real kubelet after a restart, it leaves running containers alone: a sandbox that is whole
 * and whose pod still exists is taken over with its processes; containers that died while
 * nobody watched are restarted (restartCount + 1); a half-made sandbox is removed and made
 * again; a sandbox whose pod is gone from the API is torn down. Pure: the kubelet gathers the
 * facts (netns, routes, cgroup, live PIDs) and acts on the answer.
 */

export interface RecordedSandboxFacts {
  /** The pod object (this UID) is in the API server and bound to this node. */
  podExists: boolean;
  /** The pod spec's container names, init containers first, in order. */
  specContainers: string[];
  /** The names of the pod spec's init containers. */
  initContainers: ReadonlySet<string>;
  /** The record's container names and the kubelet's recorded view of them. */
  recordedContainers: string[];
  containerStates?: RecordedContainer[];
  /** netns, the pod's routes and the cgroup are all there (what the sandbox script makes last). */
  sandboxIntact: boolean;
  /** Containers whose recorded main process (PID and start time) still runs. */
  running: ReadonlySet<string>;
  now: string;
}

export interface ContainerResumption {
  name: string;
  state: ContainerState;
  lastState?: TerminatedState;
  restartCount: number;
  runs: number;
  containerID?: string;
  /** Its process still runs: supervise it instead of starting one. */
  adoptProcess: boolean;
}

export type SandboxAdoption =
  | { action: 'teardown'; reason: string }
  | { action: 'recreate'; reason: string; containers: ContainerResumption[] }
  | { action: 'adopt'; containers: ContainerResumption[] }
  | { action: 'restart-containers'; containers: ContainerResumption[]; restarting: string[] };

/** Reason Kubernetes gives a container whose end the kubelet did not see. */
export const UNKNOWN_EXIT_REASON = 'ContainerStatusUnknown';
/** The exit code Kubernetes reports for it (as if SIGKILLed). */
export const UNKNOWN_EXIT_CODE = 137;

export function sandboxAdoption(f: RecordedSandboxFacts): SandboxAdoption {
  if (!f.podExists) return { action: 'teardown', reason: 'the pod no longer exists' };
  const fresh = () => f.specContainers.map((name) => freshContainer(name));
  if (!sameNames(f.recordedContainers, f.specContainers)) {
    return {
      action: 'recreate',
      reason: "the record's containers differ from the pod's",
      containers: fresh(),
    };
  }
  const states = f.containerStates;
  if (
    !states ||
    !sameNames(
      states.map((s) => s.name),
      f.specContainers,
    )
  ) {
    return { action: 'recreate', reason: 'no container states recorded', containers: fresh() };
  }
  // A process that runs while its container is recorded as not running is not ours to keep.
  const stray = states.find((s) => s.state.kind !== 'running' && f.running.has(s.name));
  if (stray) {
    return {
      action: 'recreate',
      reason: `container ${stray.name} runs but is recorded as ${stray.state.kind}`,
      containers: states.map((s) => lostContainer(s, f.now, f.initContainers.has(s.name))),
    };
  }
  if (!f.sandboxIntact) {
    // A new sandbox runs every container again, init containers included.
    return {
      action: 'recreate',
      reason: 'the sandbox is incomplete',
      containers: states.map((s) => lostContainer(s, f.now, f.initContainers.has(s.name))),
    };
  }
  const restarting: string[] = [];
  const containers = states.map((s): ContainerResumption => {
    if (s.state.kind !== 'running') return { ...copy(s), adoptProcess: false };
    if (f.running.has(s.name)) return { ...copy(s), adoptProcess: true };
    restarting.push(s.name);
    return { ...copy(s), state: unknownExit(s.state.startedAt, f.now), adoptProcess: false };
  });
  return restarting.length > 0
    ? { action: 'restart-containers', containers, restarting }
    : { action: 'adopt', containers };
}

/** The end of a container whose exit the kubelet could not see (it was not its child). */
export function unknownExit(startedAt: string, finishedAt: string): TerminatedState {
  return {
    kind: 'terminated',
    exitCode: UNKNOWN_EXIT_CODE,
    reason: UNKNOWN_EXIT_REASON,
    message: 'The container ended while the devcluster daemon was not watching it; its exit code is unknown',
    startedAt,
    finishedAt,
  };
}

function freshContainer(name: string): ContainerResumption {
  return {
    name,
    state: { kind: 'waiting', reason: 'ContainerCreating' },
    restartCount: 0,
    runs: 0,
    adoptProcess: false,
  };
}

/** A container whose sandbox is made again: its counts stay, its process does not. */
function lostContainer(s: RecordedContainer, now: string, init: boolean): ContainerResumption {
  const base = { ...copy(s), adoptProcess: false };
  if (s.state.kind === 'running') return { ...base, state: unknownExit(s.state.startedAt, now) };
  if (init && s.state.kind === 'terminated') {
    return { ...base, lastState: s.state, state: { kind: 'waiting', reason: 'PodInitializing' } };
  }
  return base;
}

function copy(s: RecordedContainer): Omit<ContainerResumption, 'adoptProcess'> {
  return {
    name: s.name,
    state: s.state,
    ...(s.lastState ? { lastState: s.lastState } : {}),
    restartCount: s.restartCount,
    runs: s.runs,
    ...(s.containerID ? { containerID: s.containerID } : {}),
  };
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((n, i) => n === b[i]);
}
