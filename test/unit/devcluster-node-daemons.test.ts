import { describe, expect, it } from 'vitest';
import {
  nextRestart,
  nodeDaemonHoldFile,
  nodeDaemonRole,
  STABLE_RUN_MS,
  takeOverPlan,
} from '../../src/devcluster/node-daemons.js';
import type { ProcessRecord } from '../../src/devcluster/process-record.js';

describe('node daemon restart back-off', () => {
  it.each([
    // previous exits, how long the run lasted, exits counted now, delay
    [0, 1_000, 1, 2_000],
    [1, 1_000, 2, 4_000],
    [2, 5_000, 3, 8_000],
    [5, 1_000, 6, 60_000],
    [6, 1_000, 7, 60_000],
    [40, 1_000, 41, 60_000],
  ])('after %i quick exits, a run of %i ms: exit %i, restart in %i ms', (prev, ran, exits, delay) => {
    expect(nextRestart(prev, ran)).toEqual({ exits, delayMs: delay });
  });

  it('starts over at 2 s after a run that lasted STABLE_RUN_MS', () => {
    expect(nextRestart(6, STABLE_RUN_MS)).toEqual({ exits: 1, delayMs: 2_000 });
    expect(nextRestart(6, STABLE_RUN_MS - 1)).toEqual({ exits: 7, delayMs: 60_000 });
  });
});

describe('taking over node daemons from a previous daemon', () => {
  const agentA: ProcessRecord = { pid: 100, startTime: '5', role: 'agent dev-control-plane' };
  const agentB: ProcessRecord = { pid: 101, startTime: '6', role: 'agent dev-worker' };
  const prober: ProcessRecord = { pid: 102, startTime: '7', role: 'prober dev-worker' };
  const roles = ['agent dev-control-plane', 'agent dev-worker'];

  it('adopts the ones that still run and launches the others', () => {
    const plan = takeOverPlan(roles, [agentA, agentB, prober], {
      alive: (r) => r.pid !== 101,
      apiEndpointChanged: false,
    });
    expect(Object.fromEntries(plan)).toEqual({
      'agent dev-control-plane': { action: 'adopt', rec: agentA },
      'agent dev-worker': { action: 'launch' },
    });
  });

  it('replaces running ones when the API server moved (their kubeconfig names the old port)', () => {
    const plan = takeOverPlan(roles, [agentA, agentB], { alive: () => true, apiEndpointChanged: true });
    expect(Object.fromEntries(plan)).toEqual({
      'agent dev-control-plane': { action: 'replace', rec: agentA },
      'agent dev-worker': { action: 'replace', rec: agentB },
    });
  });

  it('launches everything on a first start (nothing recorded)', () => {
    const plan = takeOverPlan(roles, [], { alive: () => true, apiEndpointChanged: false });
    expect([...plan.values()]).toEqual([{ action: 'launch' }, { action: 'launch' }]);
  });

  it('ignores records of other roles, and a dead record next to a live one of the same role', () => {
    const stale: ProcessRecord = { ...agentA, pid: 90, startTime: '1' };
    const plan = takeOverPlan(['agent dev-control-plane'], [prober, stale, agentA], {
      alive: (r) => r.pid !== 90,
      apiEndpointChanged: false,
    });
    expect(plan.get('agent dev-control-plane')).toEqual({ action: 'adopt', rec: agentA });
  });
});

describe('node daemon names', () => {
  it('records a node daemon as "<daemon> <node>" and holds it with a file under nodes/<node>/', () => {
    expect(nodeDaemonRole({ name: 'dev-worker' }, { name: 'agent' })).toBe('agent dev-worker');
    expect(nodeDaemonHoldFile('/var/lib/weft/devcluster/dev', 'dev-worker', 'agent')).toBe(
      '/var/lib/weft/devcluster/dev/nodes/dev-worker/agent.hold',
    );
  });
});
