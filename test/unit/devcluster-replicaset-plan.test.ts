import type { V1Pod, V1ReplicaSet } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  classifyPods,
  labelSelectorMatches,
  planReplicaSet,
  podFromTemplate,
  podsToDelete,
  replicaSetStatus,
} from '../../src/devcluster/controllers/replicaset-plan.js';

const NOW = Date.parse('2026-01-01T00:10:00Z');

function rs(replicas: number, extra: Partial<V1ReplicaSet['metadata']> = {}): V1ReplicaSet {
  return {
    metadata: { name: 'web-abc', namespace: 'ns', uid: 'rs-uid', generation: 2, ...extra },
    spec: {
      replicas,
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels: { app: 'web', tier: 'front' }, annotations: { a: 'b' } },
        spec: { containers: [{ name: 'c', image: 'agnhost' }] },
      },
    },
  };
}

interface PodOpts {
  owner?: string | null;
  labels?: Record<string, string>;
  node?: string;
  phase?: string;
  ready?: boolean;
  readySince?: string;
  created?: string;
  restarts?: number;
  deleting?: boolean;
}

function pod(name: string, o: PodOpts = {}): V1Pod {
  return {
    metadata: {
      name,
      namespace: 'ns',
      uid: `${name}-uid`,
      labels: o.labels ?? { app: 'web', tier: 'front' },
      creationTimestamp: new Date(o.created ?? '2026-01-01T00:00:00Z'),
      ...(o.deleting ? { deletionTimestamp: new Date(NOW) } : {}),
      ownerReferences:
        o.owner === null
          ? undefined
          : [
              {
                apiVersion: 'apps/v1',
                kind: 'ReplicaSet',
                name: 'x',
                uid: o.owner ?? 'rs-uid',
                controller: true,
              },
            ],
    },
    spec: { nodeName: o.node ?? 'n1', containers: [] },
    status: {
      phase: o.phase ?? 'Running',
      conditions: [
        {
          type: 'Ready',
          status: (o.ready ?? true) ? 'True' : 'False',
          lastTransitionTime: new Date(o.readySince ?? '2026-01-01T00:01:00Z'),
        },
      ],
      containerStatuses: [{ name: 'c', image: '', imageID: '', ready: true, restartCount: o.restarts ?? 0 }],
    },
  };
}

const names = (pods: V1Pod[]) => pods.map((p) => p.metadata?.name);

describe('label selectors', () => {
  it.each([
    [{ matchLabels: { app: 'web' } }, { app: 'web', x: '1' }, true],
    [{ matchLabels: { app: 'web' } }, { app: 'db' }, false],
    [{ matchExpressions: [{ key: 'tier', operator: 'In', values: ['a', 'b'] }] }, { tier: 'b' }, true],
    [{ matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['a'] }] }, { tier: 'a' }, false],
    [{ matchExpressions: [{ key: 'tier', operator: 'Exists' }] }, {}, false],
    [{ matchExpressions: [{ key: 'tier', operator: 'DoesNotExist' }] }, {}, true],
  ])('%j selects %j: %s', (selector, labels, want) => {
    expect(labelSelectorMatches(selector, labels)).toBe(want);
  });
});

describe('ownership', () => {
  it('owns its pods, adopts matching orphans, ignores pods of other controllers, releases non-matching', () => {
    const got = classifyPods(rs(3), [
      pod('mine'),
      pod('orphan', { owner: null }),
      pod('other', { owner: 'someone-else' }),
      pod('relabelled', { labels: { app: 'db' } }),
      pod('orphan-other-app', { owner: null, labels: { app: 'db' } }),
      pod('orphan-finished', { owner: null, phase: 'Succeeded' }),
    ]);
    expect(names(got.owned)).toEqual(['mine']);
    expect(names(got.adopt)).toEqual(['orphan']);
    expect(names(got.release)).toEqual(['relabelled']);
  });

  it('a ReplicaSet being deleted adopts nothing and creates nothing', () => {
    const plan = planReplicaSet(
      rs(3, { deletionTimestamp: new Date(NOW) }),
      [pod('orphan', { owner: null })],
      NOW,
    );
    expect(plan.adopt).toEqual([]);
    expect(plan.create).toBe(0);
  });
});

describe('the pod made from the template', () => {
  it('has generateName <rs>-, the template labels and annotations and a controller ownerReference', () => {
    const p = podFromTemplate(rs(1));
    expect(p.metadata).toMatchObject({
      generateName: 'web-abc-',
      namespace: 'ns',
      labels: { app: 'web', tier: 'front' },
      annotations: { a: 'b' },
      ownerReferences: [
        {
          apiVersion: 'apps/v1',
          kind: 'ReplicaSet',
          name: 'web-abc',
          uid: 'rs-uid',
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    });
    expect(p.spec?.containers[0]?.name).toBe('c');
  });
});

describe('how many pods to create or delete', () => {
  it.each([
    ['creates what is missing', 3, [pod('a')], 2, 0],
    ['replaces failed pods', 2, [pod('a'), pod('b', { phase: 'Failed' })], 1, 0],
    ['replaces pods being deleted', 2, [pod('a'), pod('b', { deleting: true })], 1, 0],
    ['counts adopted orphans', 2, [pod('a'), pod('b', { owner: null })], 0, 0],
    ['deletes the surplus', 1, [pod('a'), pod('b'), pod('c')], 0, 2],
    ['scales to zero', 0, [pod('a'), pod('b')], 0, 2],
  ])('%s', (_what, replicas, pods, create, del) => {
    const plan = planReplicaSet(rs(replicas), pods, NOW);
    expect(plan.create).toBe(create);
    expect(plan.delete).toHaveLength(del);
  });
});

describe('which pods go first when scaling down', () => {
  it.each([
    ['unscheduled before scheduled', [pod('sched'), pod('unsched', { node: '' })], 'unsched'],
    ['pending before running', [pod('running'), pod('pending', { phase: 'Pending' })], 'pending'],
    ['not ready before ready', [pod('ready'), pod('notready', { ready: false })], 'notready'],
    [
      'ready for less time before longer',
      [
        pod('old', { readySince: '2026-01-01T00:01:00Z' }),
        pod('recent', { readySince: '2026-01-01T00:05:00Z' }),
      ],
      'recent',
    ],
    ['more restarts first', [pod('calm'), pod('crashy', { restarts: 4 })], 'crashy'],
    [
      'newest first',
      [pod('older', { created: '2026-01-01T00:00:00Z' }), pod('newer', { created: '2026-01-01T00:02:00Z' })],
      'newer',
    ],
  ])('%s', (_what, pods, first) => {
    expect(names(podsToDelete(pods, 1))).toEqual([first]);
  });
});

describe('status', () => {
  it('counts active, fully labelled, ready and available pods, and the observed generation', () => {
    const set = rs(4);
    set.spec!.minReadySeconds = 60;
    const status = replicaSetStatus(
      set,
      [
        pod('long-ready'),
        pod('just-ready', { readySince: '2026-01-01T00:09:30Z' }),
        pod('not-ready', { ready: false }),
        pod('partly-labelled', { labels: { app: 'web' } }),
        pod('gone', { deleting: true }),
      ],
      NOW,
    );
    expect(status).toEqual({
      replicas: 4,
      fullyLabeledReplicas: 3,
      readyReplicas: 3,
      availableReplicas: 2,
      observedGeneration: 2,
    });
  });
});
