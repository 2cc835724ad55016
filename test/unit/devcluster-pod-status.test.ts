import { describe, expect, it } from 'vitest';
import {
  type ContainerSnapshot,
  type PodSnapshot,
  podPhase,
  podStatus,
  restartDelayMs,
  willRestart,
} from '../../src/devcluster/kubelet/pod-status.js';

const T0 = '2025-01-01T00:00:00Z';
const T1 = '2025-01-01T00:00:05Z';

const running = (name = 'app', ready = true): ContainerSnapshot => ({
  name,
  image: 'img',
  state: { kind: 'running', startedAt: T0 },
  restartCount: 0,
  ready,
  started: true,
});
const exited = (code: number, name = 'app'): ContainerSnapshot => ({
  name,
  image: 'img',
  state: {
    kind: 'terminated',
    exitCode: code,
    reason: code === 0 ? 'Completed' : 'Error',
    startedAt: T0,
    finishedAt: T1,
  },
  restartCount: 0,
  ready: false,
  started: false,
});
const waiting = (name = 'app', reason = 'ContainerCreating'): ContainerSnapshot => ({
  name,
  image: 'img',
  state: { kind: 'waiting', reason },
  restartCount: 0,
  ready: false,
  started: false,
});
const crashLooping = (): ContainerSnapshot => ({
  ...waiting('app', 'CrashLoopBackOff'),
  lastState: { kind: 'terminated', exitCode: 3, reason: 'Error', startedAt: T0, finishedAt: T1 },
  restartCount: 2,
});

function snapshot(over: Partial<PodSnapshot>): PodSnapshot {
  return {
    restartPolicy: 'Always',
    sandboxReady: true,
    startTime: T0,
    hostIP: '172.18.0.2',
    podIP: '10.244.0.5',
    initContainers: [],
    containers: [running()],
    now: T1,
    ...over,
  };
}

describe('pod phase', () => {
  it.each<[string, Partial<PodSnapshot>, string]>([
    ['sandbox not ready yet', { sandboxReady: false, containers: [waiting()] }, 'Pending'],
    ['containers being created', { containers: [waiting()] }, 'Pending'],
    [
      'init container still running',
      { initContainers: [running('init')], containers: [waiting()] },
      'Pending',
    ],
    ['all containers running', { containers: [running('a'), running('b')] }, 'Running'],
    ['one running, one waiting for the first time', { containers: [running('a'), waiting('b')] }, 'Pending'],
    ['crash-looping under Always', { containers: [crashLooping()] }, 'Running'],
    ['exited 0 under Never', { restartPolicy: 'Never', containers: [exited(0)] }, 'Succeeded'],
    ['exited 1 under Never', { restartPolicy: 'Never', containers: [exited(1)] }, 'Failed'],
    ['exited 0 under OnFailure', { restartPolicy: 'OnFailure', containers: [exited(0)] }, 'Succeeded'],
    [
      'exited 1 under OnFailure (will restart)',
      { restartPolicy: 'OnFailure', containers: [exited(1)] },
      'Running',
    ],
    ['exited under Always (will restart)', { containers: [exited(0)] }, 'Running'],
    [
      'one of two still running under Never',
      { restartPolicy: 'Never', containers: [exited(1, 'a'), running('b')] },
      'Running',
    ],
    ['a pod-level failure', { failure: { reason: 'Failed', message: 'init failed' } }, 'Failed'],
  ])('%s → %s', (_what, over, phase) => {
    expect(podPhase(snapshot(over))).toBe(phase);
  });
});

describe('pod status', () => {
  it('reports a ready pod with IPs, conditions and container states', () => {
    const s = podStatus(snapshot({}));
    expect(s).toMatchObject({
      phase: 'Running',
      hostIP: '172.18.0.2',
      hostIPs: [{ ip: '172.18.0.2' }],
      podIP: '10.244.0.5',
      podIPs: [{ ip: '10.244.0.5' }],
      startTime: T0,
      containerStatuses: [
        { name: 'app', ready: true, restartCount: 0, started: true, state: { running: { startedAt: T0 } } },
      ],
    });
    const conditions = Object.fromEntries(s.conditions.map((c) => [c.type, c.status]));
    expect(conditions).toEqual({
      PodReadyToStartContainers: 'True',
      Initialized: 'True',
      Ready: 'True',
      ContainersReady: 'True',
      PodScheduled: 'True',
    });
  });

  it('names the containers that are not ready', () => {
    const s = podStatus(snapshot({ containers: [running('web', false), running('side', true)] }));
    const ready = s.conditions.find((c) => c.type === 'Ready');
    expect(ready).toMatchObject({
      status: 'False',
      reason: 'ContainersNotReady',
      message: 'containers with unready status: [web]',
    });
  });

  it('reports incomplete init containers', () => {
    const s = podStatus(
      snapshot({ initContainers: [running('setup')], containers: [waiting('app', 'PodInitializing')] }),
    );
    expect(s.conditions.find((c) => c.type === 'Initialized')).toMatchObject({
      status: 'False',
      reason: 'ContainersNotInitialized',
      message: 'containers with incomplete status: [setup]',
    });
    expect(s.initContainerStatuses?.[0]?.name).toBe('setup');
  });

  it('keeps a condition’s transition time while its status does not change', () => {
    const first = podStatus(snapshot({ now: T0 }));
    const second = podStatus(snapshot({ now: T1, previousConditions: first.conditions }));
    expect(second.conditions.find((c) => c.type === 'Ready')?.lastTransitionTime).toBe(T0);
    const third = podStatus(
      snapshot({ now: T1, previousConditions: first.conditions, containers: [running('app', false)] }),
    );
    expect(third.conditions.find((c) => c.type === 'Ready')?.lastTransitionTime).toBe(T1);
  });

  it('shows the last termination of a crash-looping container', () => {
    const s = podStatus(snapshot({ containers: [crashLooping()] }));
    expect(s.containerStatuses[0]).toMatchObject({
      restartCount: 2,
      state: { waiting: { reason: 'CrashLoopBackOff' } },
      lastState: { terminated: { exitCode: 3, reason: 'Error' } },
    });
  });

  it('has no pod IP before the sandbox exists', () => {
    const s = podStatus(snapshot({ sandboxReady: false, podIP: undefined, containers: [waiting()] }));
    expect(s.podIP).toBeUndefined();
    expect(s.phase).toBe('Pending');
  });
});

describe('restarts', () => {
  it.each<['Always' | 'OnFailure' | 'Never', number, boolean]>([
    ['Always', 0, true],
    ['Always', 1, true],
    ['OnFailure', 0, false],
    ['OnFailure', 2, true],
    ['Never', 1, false],
  ])('restartPolicy %s, exit %i: restart %s', (policy, code, expected) => {
    expect(willRestart(policy, code)).toBe(expected);
  });

  it('backs off like the kubelet: at once, then 10 s doubling to 5 min', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 10].map(restartDelayMs)).toEqual([
      0, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000,
    ]);
  });
});
