import { describe, expect, it } from 'vitest';
import type { JsonObject } from '../../../src/devcluster/apiserver/json-value.js';
import { ResourceRegistry } from '../../../src/devcluster/apiserver/resource-types.js';
import { validateCustomResource } from '../../../src/devcluster/apiserver/schema-validation.js';
import { evalJsonPath, humanDuration, toTable } from '../../../src/devcluster/apiserver/table.js';

describe('Table printing', () => {
  it.each([
    [5_000, '5s'],
    [119_000, '119s'],
    [125_000, '2m5s'],
    [600_000, '10m'],
    [3 * 3600_000 + 60_000, '3h1m'],
    [30 * 3600_000, '30h'],
    [3 * 86400_000 + 5 * 3600_000, '3d5h'],
    [40 * 86400_000, '40d'],
  ])('ages %d ms as %s, like kubectl', (ms, text) => {
    expect(humanDuration(ms)).toBe(text);
  });

  const registry = new ResourceRegistry();
  const pods = registry.lookup('', 'v1', 'pods')!;
  const services = registry.lookup('', 'v1', 'services')!;
  const now = new Date().toISOString();

  it('pods have NAME READY STATUS RESTARTS AGE and -o wide IP NODE', () => {
    const pod: JsonObject = {
      metadata: { name: 'p', creationTimestamp: now },
      spec: { nodeName: 'n1', containers: [{ name: 'a' }, { name: 'b' }] },
      status: {
        phase: 'Running',
        podIP: '10.244.1.2',
        containerStatuses: [
          { name: 'a', ready: true, restartCount: 2, state: { running: {} } },
          { name: 'b', ready: false, restartCount: 1, state: { waiting: { reason: 'CrashLoopBackOff' } } },
        ],
      },
    };
    const table = toTable(pods, 'v1', [pod], {}, 'None');
    const columns = (table.columnDefinitions as JsonObject[]).map((c) => `${c.name}${c.priority ? '*' : ''}`);
    expect(columns).toEqual([
      'Name',
      'Ready',
      'Status',
      'Restarts',
      'Age',
      'IP*',
      'Node*',
      'Nominated Node*',
      'Readiness Gates*',
    ]);
    expect(((table.rows as JsonObject[])[0]!.cells as unknown[]).slice(0, 7)).toEqual([
      'p',
      '1/2',
      'CrashLoopBackOff',
      '3',
      '0s',
      '10.244.1.2',
      'n1',
    ]);
  });

  it('services show TYPE CLUSTER-IP EXTERNAL-IP PORT(S)', () => {
    const lb: JsonObject = {
      metadata: { name: 'lb', creationTimestamp: now },
      spec: {
        type: 'LoadBalancer',
        clusterIP: '10.96.0.9',
        ports: [
          { port: 80, nodePort: 30080, protocol: 'TCP' },
          { port: 53, protocol: 'UDP', nodePort: 30053 },
        ],
      },
      status: { loadBalancer: {} },
    };
    const cells = (
      (toTable(services, 'v1', [lb], {}, 'None').rows as JsonObject[])[0]!.cells as unknown[]
    ).slice(0, 5);
    expect(cells).toEqual(['lb', 'LoadBalancer', '10.96.0.9', '<pending>', '80:30080/TCP,53:30053/UDP']);
  });

  it('evaluates printer-column JSONPath with filters', () => {
    const o = {
      status: {
        conditions: [
          { type: 'A', status: 'False' },
          { type: 'Ready', status: 'True' },
        ],
      },
      spec: { list: [{ n: 1 }, { n: 2 }] },
    };
    expect(evalJsonPath(o, '.status.conditions[?(@.type=="Ready")].status')).toEqual(['True']);
    expect(evalJsonPath(o, '.spec.list[*].n')).toEqual([1, 2]);
    expect(evalJsonPath(o, '.spec.list[-1].n')).toEqual([2]);
    expect(evalJsonPath(o, '.spec.missing')).toEqual([]);
  });
});

describe('custom resource schema validation', () => {
  const schema = {
    type: 'object',
    properties: {
      spec: {
        type: 'object',
        required: ['mode'],
        properties: {
          mode: { type: 'string', enum: ['a', 'b'] },
          port: { 'x-kubernetes-int-or-string': true },
          tags: { type: 'array', maxItems: 2, items: { type: 'string', pattern: '^[a-z]+$' } },
          free: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
        },
      },
    },
  };
  it.each([
    [{ mode: 'a', port: 'http', tags: ['x'], free: { anything: [1] } }, []],
    [{}, ['spec.mode:FieldValueRequired']],
    [{ mode: 'c' }, ['spec.mode:FieldValueNotSupported']],
    [{ mode: 'a', port: 1.5 }, ['spec.port:FieldValueTypeInvalid']],
    [{ mode: 'a', tags: ['x', 'y', 'z'] }, ['spec.tags:FieldValueTooLong']],
    [{ mode: 'a', tags: ['X'] }, ['spec.tags[0]:FieldValueInvalid']],
    [{ mode: 1 }, ['spec.mode:FieldValueTypeInvalid']],
  ])('%j → %j', (spec, expected) => {
    const result = validateCustomResource(
      { apiVersion: 'x/v1', kind: 'X', metadata: { name: 'n' }, spec },
      schema,
    );
    expect(result.errors.map((e) => `${e.field}:${e.type}`)).toEqual(expected);
  });

  it('prunes unknown fields and reports them, keeping preserved subtrees', () => {
    const result = validateCustomResource(
      {
        apiVersion: 'x/v1',
        kind: 'X',
        metadata: { name: 'n' },
        spec: { mode: 'a', bogus: 1, free: { kept: true } },
        top: 1,
      },
      schema,
    );
    expect(result.value).toEqual({
      apiVersion: 'x/v1',
      kind: 'X',
      metadata: { name: 'n' },
      spec: { mode: 'a', free: { kept: true } },
    });
    expect(result.unknownFields.sort()).toEqual(['spec.bogus', 'top']);
  });
});
