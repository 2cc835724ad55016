import type { V1Deployment, V1DeploymentStrategy, V1ReplicaSet } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  POD_TEMPLATE_HASH,
  planDeployment,
  podTemplateHash,
  REVISION_ANNOTATION,
  replicaSetFor,
  resolveFenceposts,
  templatesEqualIgnoringHash,
} from '../../src/devcluster/controllers/deployment-plan.js';

const NOW = new Date('2026-01-01T00:10:00Z');

function deployment(o: {
  replicas?: number;
  env?: string;
  strategy?: V1DeploymentStrategy;
  revisionHistoryLimit?: number;
}): V1Deployment {
  return {
    metadata: { name: 'web', namespace: 'ns', uid: 'd-uid', generation: 3 },
    spec: {
      replicas: o.replicas ?? 3,
      revisionHistoryLimit: o.revisionHistoryLimit,
      selector: { matchLabels: { app: 'web' } },
      strategy: o.strategy ?? {
        type: 'RollingUpdate',
        rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' },
      },
      template: {
        metadata: { labels: { app: 'web' } },
        spec: { containers: [{ name: 'c', image: 'agnhost', env: [{ name: 'V', value: o.env ?? '1' }] }] },
      },
    },
  };
}

/** A ReplicaSet of the deployment for template version `env`, with replicas all available. */
function replicaSet(
  d: V1Deployment,
  env: string,
  o: { spec: number; available?: number; current?: number; revision: number; created: string },
): V1ReplicaSet {
  const forEnv = deployment({ env, replicas: d.spec?.replicas });
  const hash = podTemplateHash(forEnv.spec?.template);
  const rs = replicaSetFor(forEnv, hash, o.spec, o.revision);
  rs.metadata!.uid = `rs-${env}`;
  rs.metadata!.creationTimestamp = new Date(o.created);
  rs.status = {
    replicas: o.current ?? o.spec,
    readyReplicas: o.available ?? o.spec,
    availableReplicas: o.available ?? o.spec,
  };
  return rs;
}

const replicasOf = (plan: ReturnType<typeof planDeployment>) =>
  Object.fromEntries(plan.update.map((rs) => [rs.metadata?.name, rs.spec?.replicas]));

describe('pod-template-hash', () => {
  it('is stable, independent of key order and of an existing hash label, and changes with the template', () => {
    const a = deployment({}).spec!.template;
    const reordered = { spec: a.spec, metadata: { labels: { app: 'web' } } };
    const labelled = { ...a, metadata: { labels: { app: 'web', [POD_TEMPLATE_HASH]: 'x' } } };
    expect(podTemplateHash(a)).toBe(podTemplateHash(reordered));
    expect(podTemplateHash(a)).toBe(podTemplateHash(labelled));
    expect(podTemplateHash(a)).toMatch(/^[bcdfghjklmnpqrstvwxz2456789]{1,10}$/);
    expect(podTemplateHash(a)).not.toBe(podTemplateHash(deployment({ env: '2' }).spec!.template));
    expect(podTemplateHash(a)).not.toBe(podTemplateHash(a, 1));
    expect(templatesEqualIgnoringHash(a, labelled)).toBe(true);
  });

  it('ignores empty values kubectl writes back on rollout undo (resources: {}, creationTimestamp: null)', () => {
    const a = deployment({}).spec!.template;
    const fromUndo = structuredClone(a) as unknown as Record<string, Record<string, unknown>>;
    (fromUndo.metadata as Record<string, unknown>).creationTimestamp = null;
    (
      (fromUndo.spec as { containers: Record<string, unknown>[] }).containers[0] as Record<string, unknown>
    ).resources = {};
    expect(templatesEqualIgnoringHash(a, fromUndo as never)).toBe(true);
    expect(podTemplateHash(fromUndo as never)).toBe(podTemplateHash(a));
  });

  it('names the ReplicaSet <deploy>-<hash> and adds the label to its selector and template', () => {
    const d = deployment({});
    const hash = podTemplateHash(d.spec?.template);
    const rs = replicaSetFor(d, hash, 3, 1);
    expect(rs.metadata?.name).toBe(`web-${hash}`);
    expect(rs.spec?.selector.matchLabels).toEqual({ app: 'web', [POD_TEMPLATE_HASH]: hash });
    expect(rs.spec?.template?.metadata?.labels).toEqual({ app: 'web', [POD_TEMPLATE_HASH]: hash });
    expect(rs.metadata?.annotations?.[REVISION_ANNOTATION]).toBe('1');
    expect(rs.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: 'Deployment',
      uid: 'd-uid',
      controller: true,
    });
  });
});

describe('maxSurge and maxUnavailable', () => {
  it.each([
    [3, '25%', '25%', 1, 0],
    [4, '25%', '25%', 1, 1],
    [10, '25%', '25%', 3, 2],
    [5, 0, 0, 0, 1],
    [5, 2, '50%', 2, 2],
  ])(
    'replicas %s, surge %s, unavailable %s → %s, %s',
    (replicas, surge, unavailable, wantSurge, wantUnavailable) => {
      const d = deployment({
        replicas,
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: surge, maxUnavailable: unavailable } },
      });
      expect(resolveFenceposts(d)).toEqual({ maxSurge: wantSurge, maxUnavailable: wantUnavailable });
    },
  );
});

describe('rollout steps', () => {
  it('a new Deployment gets one ReplicaSet with all its replicas, revision 1', () => {
    const plan = planDeployment(deployment({}), [], NOW);
    expect(plan.create?.spec?.replicas).toBe(3);
    expect(plan.revision).toBe('1');
    expect(plan.status.conditions?.find((c) => c.type === 'Progressing')?.reason).toBe(
      'NewReplicaSetCreated',
    );
  });

  it('scaling up or down with one ReplicaSet changes it directly', () => {
    const d = deployment({ replicas: 5 });
    const current = replicaSet(d, '1', { spec: 3, revision: 1, created: '2026-01-01T00:00:00Z' });
    expect(Object.values(replicasOf(planDeployment(d, [current], NOW)))).toEqual([5]);
    const down = deployment({ replicas: 1 });
    expect(Object.values(replicasOf(planDeployment(down, [current], NOW)))).toEqual([1]);
  });

  it('a template change surges a new ReplicaSet (maxSurge 1 of 3) and keeps the old at full strength', () => {
    const d = deployment({ env: '2' });
    const old = replicaSet(d, '1', { spec: 3, revision: 1, created: '2026-01-01T00:00:00Z' });
    const plan = planDeployment(d, [old], NOW);
    expect(plan.create?.spec?.replicas).toBe(1);
    expect(plan.create?.metadata?.annotations?.[REVISION_ANNOTATION]).toBe('2');
    expect(plan.revision).toBe('2');
    expect(plan.update).toEqual([]);
  });

  it('old replicas go down only as the new become available (maxUnavailable 0 of 3)', () => {
    const d = deployment({ env: '2' });
    const old = replicaSet(d, '1', { spec: 3, revision: 1, created: '2026-01-01T00:00:00Z' });
    const waiting = replicaSet(d, '2', {
      spec: 1,
      available: 0,
      revision: 2,
      created: '2026-01-01T00:01:00Z',
    });
    expect(planDeployment(d, [old, waiting], NOW).update).toEqual([]);
    const ready = replicaSet(d, '2', { spec: 1, revision: 2, created: '2026-01-01T00:01:00Z' });
    expect(replicasOf(planDeployment(d, [old, ready], NOW))).toEqual({ [old.metadata!.name!]: 2 });
  });

  it('unhealthy old replicas are scaled down first', () => {
    const d = deployment({ env: '2' });
    const old = replicaSet(d, '1', { spec: 3, available: 1, revision: 1, created: '2026-01-01T00:00:00Z' });
    const fresh = replicaSet(d, '2', { spec: 1, available: 0, revision: 2, created: '2026-01-01T00:01:00Z' });
    // Upstream's budget: 4 scheduled - 3 minimum available - 1 new unavailable = 0.
    expect(planDeployment(d, [old, fresh], NOW).update).toEqual([]);
    const moreRoom = deployment({
      env: '2',
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 1 } },
    });
    expect(replicasOf(planDeployment(moreRoom, [old, fresh], NOW))).toEqual({ [old.metadata!.name!]: 2 });
  });

  it('a finished rollout reports NewReplicaSetAvailable and the counts', () => {
    const d = deployment({ env: '2' });
    const old = replicaSet(d, '1', { spec: 0, revision: 1, created: '2026-01-01T00:00:00Z' });
    const done = replicaSet(d, '2', { spec: 3, revision: 2, created: '2026-01-01T00:01:00Z' });
    const plan = planDeployment(d, [old, done], NOW);
    expect(plan.update).toEqual([]);
    expect(plan.status).toMatchObject({
      observedGeneration: 3,
      replicas: 3,
      updatedReplicas: 3,
      readyReplicas: 3,
      availableReplicas: 3,
      unavailableReplicas: 0,
    });
    const conditions = Object.fromEntries((plan.status.conditions ?? []).map((c) => [c.type, c.reason]));
    expect(conditions).toEqual({
      Available: 'MinimumReplicasAvailable',
      Progressing: 'NewReplicaSetAvailable',
    });
  });

  it('Recreate scales the old to zero first and starts the new only when the old pods are gone', () => {
    const d = deployment({ env: '2', strategy: { type: 'Recreate' } });
    const old = replicaSet(d, '1', { spec: 3, revision: 1, created: '2026-01-01T00:00:00Z' });
    const first = planDeployment(d, [old], NOW);
    expect(replicasOf(first)).toEqual({ [old.metadata!.name!]: 0 });
    expect(first.create?.spec?.replicas).toBe(0);
    const draining = replicaSet(d, '1', {
      spec: 0,
      current: 2,
      revision: 1,
      created: '2026-01-01T00:00:00Z',
    });
    const idle = replicaSet(d, '2', { spec: 0, revision: 2, created: '2026-01-01T00:01:00Z' });
    expect(planDeployment(d, [draining, idle], NOW).update).toEqual([]);
    const drained = replicaSet(d, '1', { spec: 0, current: 0, revision: 1, created: '2026-01-01T00:00:00Z' });
    expect(replicasOf(planDeployment(d, [drained, idle], NOW))).toEqual({ [idle.metadata!.name!]: 3 });
  });

  it('a paused Deployment starts no rollout but still scales its one ReplicaSet', () => {
    const d = deployment({ env: '2', replicas: 5 });
    d.spec!.paused = true;
    const current = replicaSet(d, '1', { spec: 3, revision: 1, created: '2026-01-01T00:00:00Z' });
    const plan = planDeployment(d, [current], NOW);
    expect(plan.create).toBeUndefined();
    expect(plan.update).toEqual([]);
    const same = deployment({ env: '1', replicas: 5 });
    same.spec!.paused = true;
    expect(Object.values(replicasOf(planDeployment(same, [current], NOW)))).toEqual([5]);
  });

  it('rolling back to an old template makes its ReplicaSet the newest revision', () => {
    const d = deployment({ env: '1' });
    const first = replicaSet(d, '1', { spec: 0, revision: 1, created: '2026-01-01T00:00:00Z' });
    const second = replicaSet(d, '2', { spec: 3, revision: 2, created: '2026-01-01T00:01:00Z' });
    const plan = planDeployment(d, [first, second], NOW);
    const bumped = plan.update.find((rs) => rs.metadata?.name === first.metadata?.name);
    expect(bumped?.metadata?.annotations?.[REVISION_ANNOTATION]).toBe('3');
    expect(plan.revision).toBe('3');
  });

  it('old idle ReplicaSets beyond revisionHistoryLimit are deleted, oldest revision first', () => {
    const d = deployment({ env: '4', revisionHistoryLimit: 1 });
    const sets = ['1', '2', '3'].map((env, i) =>
      replicaSet(d, env, { spec: 0, revision: i + 1, created: `2026-01-01T00:0${i}:00Z` }),
    );
    const current = replicaSet(d, '4', { spec: 3, revision: 4, created: '2026-01-01T00:05:00Z' });
    expect(planDeployment(d, [...sets, current], NOW).delete).toEqual([
      sets[0]!.metadata!.name,
      sets[1]!.metadata!.name,
    ]);
  });
});
