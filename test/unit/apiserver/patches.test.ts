import { describe, expect, it } from 'vitest';
import { ApiError } from '../../../src/devcluster/apiserver/api-status.js';
import { applyJsonPatch } from '../../../src/devcluster/apiserver/json-patch.js';
import type { JsonObject } from '../../../src/devcluster/apiserver/json-value.js';
import { applyMergePatch } from '../../../src/devcluster/apiserver/merge-patch.js';
import { builtinMergeSchemas } from '../../../src/devcluster/apiserver/merge-schema.js';
import { applyStrategicMergePatch } from '../../../src/devcluster/apiserver/strategic-merge-patch.js';

const podSchema = builtinMergeSchemas['/Pod']!;
const serviceSchema = builtinMergeSchemas['/Service']!;

function pod(): JsonObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p', labels: { app: 'a', tier: 'x' }, finalizers: ['a/one'] },
    spec: {
      containers: [
        {
          name: 'main',
          image: 'img:1',
          ports: [{ containerPort: 80, protocol: 'TCP' }],
          env: [{ name: 'A', value: '1' }],
        },
        { name: 'side', image: 'side:1' },
      ],
      volumes: [{ name: 'data', emptyDir: {} }],
      tolerations: [{ key: 'k', operator: 'Exists' }],
    },
  };
}

describe('JSON merge patch (RFC 7386)', () => {
  it.each([
    [
      'replaces scalars and merges maps',
      { a: 1, m: { x: 1, y: 2 } },
      { a: 2, m: { y: 3 } },
      { a: 2, m: { x: 1, y: 3 } },
    ],
    ['null deletes', { a: 1, b: 2 }, { b: null }, { a: 1 }],
    ['lists are replaced whole', { l: [1, 2, 3] }, { l: [4] }, { l: [4] }],
    ['a non-object patch replaces the document', { a: 1 }, [1], [1]],
  ])('%s', (_name, doc, patch, expected) => {
    expect(applyMergePatch(doc as JsonObject, patch as JsonObject)).toEqual(expected);
  });
});

describe('JSON patch (RFC 6902)', () => {
  const doc = { metadata: { labels: { a: '1' } }, list: [1, 2, 3] };
  it.each([
    [
      'add to a map',
      [{ op: 'add', path: '/metadata/labels/b', value: '2' }],
      { metadata: { labels: { a: '1', b: '2' } }, list: [1, 2, 3] },
    ],
    ['add at list end with -', [{ op: 'add', path: '/list/-', value: 4 }], { ...doc, list: [1, 2, 3, 4] }],
    ['insert into a list', [{ op: 'add', path: '/list/0', value: 0 }], { ...doc, list: [0, 1, 2, 3] }],
    ['remove', [{ op: 'remove', path: '/list/1' }], { ...doc, list: [1, 3] }],
    [
      'replace',
      [{ op: 'replace', path: '/metadata/labels/a', value: 'x' }],
      { ...doc, metadata: { labels: { a: 'x' } } },
    ],
    ['move', [{ op: 'move', from: '/list/0', path: '/first' }], { ...doc, list: [2, 3], first: 1 }],
    ['copy', [{ op: 'copy', from: '/list/0', path: '/first' }], { ...doc, first: 1 }],
    [
      'escaped keys',
      [{ op: 'add', path: '/metadata/labels/example.com~1role', value: 'x' }],
      { ...doc, metadata: { labels: { a: '1', 'example.com/role': 'x' } } },
    ],
  ])('%s', (_name, patch, expected) => {
    expect(applyJsonPatch(doc, patch)).toEqual(expected);
  });

  it('leaves the input untouched and fails whole when one operation fails', () => {
    const input = { a: { b: 1 } };
    expect(() =>
      applyJsonPatch(input, [
        { op: 'add', path: '/a/c', value: 1 },
        { op: 'remove', path: '/nope' },
      ]),
    ).toThrow(ApiError);
    expect(input).toEqual({ a: { b: 1 } });
  });

  it('a failed test operation is 422', () => {
    try {
      applyJsonPatch({ a: 1 }, [{ op: 'test', path: '/a', value: 2 }]);
      expect.unreachable();
    } catch (err) {
      expect((err as ApiError).code).toBe(422);
    }
  });
});

describe('strategic merge patch as kubectl sends it', () => {
  it('merges containers by name and their ports by containerPort', () => {
    const out = applyStrategicMergePatch(
      pod(),
      { spec: { containers: [{ name: 'main', image: 'img:2', ports: [{ containerPort: 8080 }] }] } },
      podSchema,
    );
    const containers = (out.spec as JsonObject).containers as JsonObject[];
    expect(containers.map((c) => c.name)).toEqual(['main', 'side']);
    expect(containers[0]!.image).toBe('img:2');
    expect(containers[0]!.ports).toEqual([{ containerPort: 80, protocol: 'TCP' }, { containerPort: 8080 }]);
    expect(containers[0]!.env).toEqual([{ name: 'A', value: '1' }]);
  });

  it('deletes list elements with $patch: delete and maps with null', () => {
    const out = applyStrategicMergePatch(
      pod(),
      { metadata: { labels: { tier: null } }, spec: { containers: [{ name: 'side', $patch: 'delete' }] } },
      podSchema,
    );
    expect((out.metadata as JsonObject).labels).toEqual({ app: 'a' });
    expect(((out.spec as JsonObject).containers as JsonObject[]).map((c) => c.name)).toEqual(['main']);
  });

  it('replaces lists without a merge key (tolerations) and keeps the rest', () => {
    const out = applyStrategicMergePatch(
      pod(),
      { spec: { tolerations: [{ key: 'z', operator: 'Exists' }] } },
      podSchema,
    );
    expect((out.spec as JsonObject).tolerations).toEqual([{ key: 'z', operator: 'Exists' }]);
    expect(((out.spec as JsonObject).volumes as JsonObject[]).length).toBe(1);
  });

  it('honours $setElementOrder, $deleteFromPrimitiveList and set-merging of finalizers', () => {
    const out = applyStrategicMergePatch(
      pod(),
      {
        metadata: { finalizers: ['b/two'], '$deleteFromPrimitiveList/finalizers': ['a/one'] },
        spec: {
          '$setElementOrder/containers': [{ name: 'side' }, { name: 'main' }],
          containers: [{ name: 'side', image: 'side:2' }],
        },
      },
      podSchema,
    );
    expect((out.metadata as JsonObject).finalizers).toEqual(['b/two']);
    const containers = (out.spec as JsonObject).containers as JsonObject[];
    expect(containers.map((c) => `${c.name}=${c.image}`)).toEqual(['side=side:2', 'main=img:1']);
  });

  it('$patch: replace replaces a map, $retainKeys drops the keys not listed', () => {
    const replaced = applyStrategicMergePatch(
      pod(),
      { metadata: { labels: { $patch: 'replace', only: 'this' } } },
      podSchema,
    );
    expect((replaced.metadata as JsonObject).labels).toEqual({ only: 'this' });
    const retained = applyStrategicMergePatch(
      pod(),
      { spec: { volumes: [{ name: 'data', $retainKeys: ['name', 'hostPath'], hostPath: { path: '/x' } }] } },
      podSchema,
    );
    expect((retained.spec as JsonObject).volumes).toEqual([{ name: 'data', hostPath: { path: '/x' } }]);
  });

  it('merges Service ports by port, as client-side apply of a changed manifest needs', () => {
    const svc: JsonObject = {
      spec: {
        ports: [
          { name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 },
          { name: 'udp', port: 81, protocol: 'UDP', targetPort: 81 },
        ],
      },
    };
    const out = applyStrategicMergePatch(
      svc,
      {
        spec: {
          '$setElementOrder/ports': [{ port: 80 }],
          ports: [
            { port: 80, targetPort: 9090 },
            { port: 81, $patch: 'delete' },
          ],
        },
      },
      serviceSchema,
    );
    expect((out.spec as JsonObject).ports).toEqual([
      { name: 'http', port: 80, protocol: 'TCP', targetPort: 9090 },
    ]);
  });

  it('rejects a list element without its merge key', () => {
    expect(() =>
      applyStrategicMergePatch(pod(), { spec: { containers: [{ image: 'x' }] } }, podSchema),
    ).toThrow('does not contain declared merge key: name');
  });
});
