import type { V1Node, V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { chooseNode, whyNotFits } from '../../src/devcluster/node-selection.js';

function node(
  name: string,
  over: {
    ready?: boolean;
    labels?: Record<string, string>;
    unschedulable?: boolean;
    taints?: V1Node['spec'];
  } = {},
): V1Node {
  return {
    metadata: { name, labels: { 'kubernetes.io/hostname': name, ...over.labels } },
    spec: { unschedulable: over.unschedulable, ...over.taints },
    status: { conditions: [{ type: 'Ready', status: over.ready === false ? 'False' : 'True' }] },
  };
}
function pod(spec: Partial<V1Pod['spec']> = {}): V1Pod {
  return { metadata: { name: 'p', namespace: 'default' }, spec: { containers: [], ...spec } };
}

const nodes = [
  node('dev-control-plane', { labels: { 'node-role.kubernetes.io/control-plane': '' } }),
  node('dev-worker'),
  node('dev-worker2'),
];

describe('chooseNode', () => {
  it('picks the node with the fewest pods', () => {
    const counts = new Map([
      ['dev-control-plane', 3],
      ['dev-worker', 1],
      ['dev-worker2', 2],
    ]);
    expect(chooseNode(pod(), nodes, counts, 0)).toEqual({ node: 'dev-worker' });
  });

  it('spreads pods over equal nodes in turn', () => {
    const picks = [0, 1, 2, 3].map((turn) => chooseNode(pod(), nodes, new Map(), turn));
    expect(picks.map((p) => ('node' in p ? p.node : ''))).toEqual([
      'dev-control-plane',
      'dev-worker',
      'dev-worker2',
      'dev-control-plane',
    ]);
  });

  it('honours nodeSelector', () => {
    expect(
      chooseNode(pod({ nodeSelector: { 'kubernetes.io/hostname': 'dev-worker2' } }), nodes, new Map(), 0),
    ).toEqual({ node: 'dev-worker2' });
  });

  it('honours required node affinity', () => {
    const p = pod({
      affinity: {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [
              {
                matchExpressions: [
                  { key: 'node-role.kubernetes.io/control-plane', operator: 'DoesNotExist' },
                ],
              },
            ],
          },
        },
      },
    });
    const picks = [0, 1, 2].map((turn) => chooseNode(p, nodes, new Map(), turn));
    expect(picks).toEqual([{ node: 'dev-worker' }, { node: 'dev-worker2' }, { node: 'dev-worker' }]);
  });

  it('explains why nothing fits, like kube-scheduler', () => {
    const choice = chooseNode(
      pod({ nodeSelector: { disk: 'ssd' } }),
      [...nodes, node('dev-worker3', { ready: false })],
      new Map(),
      0,
    );
    expect(choice).toEqual({
      unschedulable:
        "0/4 nodes are available: 3 node(s) didn't match Pod's node affinity/selector, 1 node(s) were not ready.",
    });
  });

  it.each<[string, V1Node, Partial<V1Pod['spec']>, boolean]>([
    ['an unschedulable (cordoned) node', node('n', { unschedulable: true }), {}, false],
    [
      'a NoSchedule taint',
      node('n', { taints: { taints: [{ key: 'dedicated', value: 'db', effect: 'NoSchedule' }] } }),
      {},
      false,
    ],
    [
      'a NoSchedule taint the pod tolerates',
      node('n', { taints: { taints: [{ key: 'dedicated', value: 'db', effect: 'NoSchedule' }] } }),
      { tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'db', effect: 'NoSchedule' }] },
      true,
    ],
    [
      'a taint tolerated by an Exists toleration without key',
      node('n', { taints: { taints: [{ key: 'x', effect: 'NoExecute' }] } }),
      { tolerations: [{ operator: 'Exists' }] },
      true,
    ],
    [
      'a PreferNoSchedule taint',
      node('n', { taints: { taints: [{ key: 'x', effect: 'PreferNoSchedule' }] } }),
      {},
      true,
    ],
  ])('%s: fits %s', (_what, n, spec, fits) => {
    expect(whyNotFits(pod(spec), n) === undefined).toBe(fits);
  });
});
