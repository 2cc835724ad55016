import { describe, expect, it } from 'vitest';
import type { RecordedContainer } from '../../src/devcluster/cluster-record.js';
import {
  type RecordedSandboxFacts,
  type SandboxAdoption,
  sandboxAdoption,
  UNKNOWN_EXIT_CODE,
  UNKNOWN_EXIT_REASON,
} from '../../src/devcluster/kubelet/sandbox-adoption.js';

const T0 = '2025-01-01T00:00:00Z';
const NOW = '2025-01-01T00:10:00Z';

const running = (name: string, restartCount = 0): RecordedContainer => ({
  name,
  restartCount,
  runs: restartCount + 1,
  containerID: `weft://uid/${name}/${restartCount + 1}`,
  state: { kind: 'running', startedAt: T0 },
});
const completed = (name: string): RecordedContainer => ({
  name,
  restartCount: 0,
  runs: 1,
  containerID: `weft://uid/${name}/1`,
  state: { kind: 'terminated', exitCode: 0, reason: 'Completed', startedAt: T0, finishedAt: T0 },
});
const notStarted = (name: string): RecordedContainer => ({
  name,
  restartCount: 0,
  runs: 0,
  state: { kind: 'waiting', reason: 'ContainerCreating' },
});

function facts(over: Partial<RecordedSandboxFacts> = {}): RecordedSandboxFacts {
  return {
    podExists: true,
    specContainers: ['app', 'side'],
    initContainers: new Set(),
    recordedContainers: ['app', 'side'],
    containerStates: [running('app', 2), running('side')],
    sandboxIntact: true,
    running: new Set(['app', 'side']),
    now: NOW,
    ...over,
  };
}

const summary = (d: SandboxAdoption) => ({
  action: d.action,
  containers:
    'containers' in d
      ? d.containers.map(
          (c) => `${c.name}:${c.state.kind}${c.adoptProcess ? ':adopt' : ''}:${c.restartCount}`,
        )
      : [],
});

describe('sandboxAdoption', () => {
  const cases: Array<{ name: string; facts: RecordedSandboxFacts; want: ReturnType<typeof summary> }> = [
    {
      name: 'adopts a whole sandbox whose containers all run, keeping restart counts',
      facts: facts(),
      want: { action: 'adopt', containers: ['app:running:adopt:2', 'side:running:adopt:0'] },
    },
    {
      name: 'tears down the sandbox of a pod deleted while nobody watched',
      facts: facts({ podExists: false }),
      want: { action: 'teardown', containers: [] },
    },
    {
      name: 'restarts the containers whose processes died meanwhile, adopting the others',
      facts: facts({ running: new Set(['side']) }),
      want: {
        action: 'restart-containers',
        containers: ['app:terminated:2', 'side:running:adopt:0'],
      },
    },
    {
      name: 'recreates a half-made sandbox, its running containers counted as ended',
      facts: facts({ sandboxIntact: false }),
      want: { action: 'recreate', containers: ['app:terminated:2', 'side:terminated:0'] },
    },
    {
      name: 'recreates a sandbox recorded before its containers were recorded (older daemon)',
      facts: facts({ containerStates: undefined }),
      want: { action: 'recreate', containers: ['app:waiting:0', 'side:waiting:0'] },
    },
    {
      name: "recreates when the record's containers are not the pod's",
      facts: facts({ recordedContainers: ['app'] }),
      want: { action: 'recreate', containers: ['app:waiting:0', 'side:waiting:0'] },
    },
    {
      name: 'recreates when a process runs for a container recorded as not running',
      facts: facts({ containerStates: [running('app', 2), completed('side')] }),
      want: { action: 'recreate', containers: ['app:terminated:2', 'side:terminated:0'] },
    },
    {
      name: 'keeps completed init containers and containers not started yet as recorded',
      facts: facts({
        specContainers: ['init', 'app'],
        initContainers: new Set(['init']),
        recordedContainers: ['init', 'app'],
        containerStates: [completed('init'), notStarted('app')],
        running: new Set(),
      }),
      want: { action: 'adopt', containers: ['init:terminated:0', 'app:waiting:0'] },
    },
    {
      name: 'runs init containers again in a recreated sandbox',
      facts: facts({
        specContainers: ['init', 'app'],
        initContainers: new Set(['init']),
        recordedContainers: ['init', 'app'],
        containerStates: [completed('init'), running('app')],
        sandboxIntact: false,
      }),
      want: { action: 'recreate', containers: ['init:waiting:0', 'app:terminated:0'] },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(summary(sandboxAdoption(c.facts))).toEqual(c.want);
    });
  }

  it('reports a container that ended unseen as Kubernetes does: ContainerStatusUnknown, 137', () => {
    const d = sandboxAdoption(facts({ running: new Set(['side']) }));
    if (d.action !== 'restart-containers') throw new Error(`got ${d.action}`);
    expect(d.restarting).toEqual(['app']);
    const app = d.containers.find((c) => c.name === 'app');
    expect(app?.state).toMatchObject({
      kind: 'terminated',
      exitCode: UNKNOWN_EXIT_CODE,
      reason: UNKNOWN_EXIT_REASON,
      startedAt: T0,
      finishedAt: NOW,
    });
    // Its run count stays, so the next start is a restart (restartCount + 1, a new log file).
    expect(app?.runs).toBe(3);
    expect(app?.containerID).toBe('weft://uid/app/3');
  });

  it('keeps an adopted container exactly as recorded (state, lastState, container ID)', () => {
    const lastState = {
      kind: 'terminated' as const,
      exitCode: 1,
      reason: 'Error',
      startedAt: T0,
      finishedAt: T0,
    };
    const app = { ...running('app', 1), lastState };
    const d = sandboxAdoption(facts({ containerStates: [app, running('side')] }));
    if (d.action !== 'adopt') throw new Error(`got ${d.action}`);
    expect(d.containers[0]).toEqual({ ...app, adoptProcess: true });
  });
});
