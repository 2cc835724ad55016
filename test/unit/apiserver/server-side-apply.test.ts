import { describe, expect, it } from 'vitest';
import { ApiError } from '../../../src/devcluster/apiserver/api-status.js';
import type { JsonObject } from '../../../src/devcluster/apiserver/json-value.js';
import {
  fieldSetOf,
  fromFieldsV1,
  recordUpdate,
  serverSideApply,
  toFieldsV1,
} from '../../../src/devcluster/apiserver/managed-fields.js';
import { builtinMergeSchemas } from '../../../src/devcluster/apiserver/merge-schema.js';

const schema = builtinMergeSchemas['/Service']!;
const base = { schema, scope: 'main' as const, statusIsSubresource: true, apiVersion: 'v1' };

function service(spec: JsonObject, labels: Record<string, string> = { app: 'a' }): JsonObject {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name: 's', namespace: 'default', labels }, spec };
}

function managers(o: JsonObject): string[] {
  return ((o.metadata as JsonObject).managedFields as JsonObject[]).map((e) => `${e.manager}/${e.operation}`);
}

describe('managedFields (FieldsV1)', () => {
  it('round-trips field sets through the FieldsV1 wire form with "." for owned parents', () => {
    const set = fieldSetOf(
      service({ ports: [{ port: 80, name: 'http' }], selector: { app: 'a' } }),
      schema,
      'main',
      true,
    );
    const wire = toFieldsV1(set);
    expect(wire).toMatchObject({
      'f:spec': {
        'f:ports': { '.': {}, 'k:{"port":80,"protocol":"TCP"}': { '.': {}, 'f:name': {}, 'f:port': {} } },
      },
    });
    expect(fromFieldsV1(wire)).toEqual(set);
  });
});

describe('server-side apply', () => {
  const first = service(
    {
      ports: [
        { port: 80, name: 'http' },
        { port: 81, name: 'metrics' },
      ],
      selector: { app: 'a' },
    },
    { app: 'a', team: 't' },
  );

  it('creates ownership for the applier on first apply', () => {
    const out = serverSideApply({
      live: undefined,
      applied: first,
      manager: 'kubectl',
      force: false,
      ...base,
    });
    expect(managers(out)).toEqual(['kubectl/Apply']);
  });

  it('re-applying with a field removed removes it (label and list entry)', () => {
    const live = serverSideApply({
      live: undefined,
      applied: first,
      manager: 'kubectl',
      force: false,
      ...base,
    });
    const second = service({ ports: [{ port: 80, name: 'http' }], selector: { app: 'a' } }, { app: 'a' });
    const out = serverSideApply({ live, applied: second, manager: 'kubectl', force: false, ...base });
    expect((out.metadata as JsonObject).labels).toEqual({ app: 'a' });
    expect((out.spec as JsonObject).ports).toEqual([{ port: 80, name: 'http' }]);
  });

  it('keeps a removed field that another manager also owns', () => {
    let live = serverSideApply({
      live: undefined,
      applied: first,
      manager: 'kubectl',
      force: false,
      ...base,
    });
    const edited = JSON.parse(JSON.stringify(live)) as JsonObject;
    ((edited.metadata as JsonObject).labels as JsonObject).team = 't';
    ((edited.metadata as JsonObject).labels as JsonObject).owner = 'ops';
    live = recordUpdate({ oldObj: live, newObj: edited, manager: 'ops-tool', ...base });
    const out = serverSideApply({
      live,
      applied: service({ ports: [{ port: 80, name: 'http' }], selector: { app: 'a' } }, { app: 'a' }),
      manager: 'kubectl',
      force: false,
      ...base,
    });
    expect((out.metadata as JsonObject).labels).toEqual({ app: 'a', owner: 'ops' });
  });

  it('conflicts (409) when another manager set a field to a different value, unless forced', () => {
    let live = serverSideApply({
      live: undefined,
      applied: first,
      manager: 'kubectl',
      force: false,
      ...base,
    });
    const edited = JSON.parse(JSON.stringify(live)) as JsonObject;
    ((edited.spec as JsonObject).selector as JsonObject).app = 'b';
    live = recordUpdate({ oldObj: live, newObj: edited, manager: 'kubectl-edit', ...base });
    const attempt = () =>
      serverSideApply({ live, applied: first, manager: 'kubectl', force: false, ...base });
    expect(attempt).toThrow(ApiError);
    try {
      attempt();
    } catch (err) {
      expect((err as ApiError).code).toBe(409);
      expect((err as ApiError).message).toBe(
        'Apply failed with 1 conflict: conflict with "kubectl-edit" using v1: .spec.selector.app',
      );
    }
    const forced = serverSideApply({ live, applied: first, manager: 'kubectl', force: true, ...base });
    expect(((forced.spec as JsonObject).selector as JsonObject).app).toBe('a');
    expect(managers(forced)).toEqual(['kubectl/Apply']);
  });

  it('does not conflict when the other manager holds the same value', () => {
    const live = recordUpdate({ oldObj: undefined, newObj: first, manager: 'kubectl-create', ...base });
    const out = serverSideApply({ live, applied: first, manager: 'kubectl', force: false, ...base });
    expect(managers(out).sort()).toEqual(['kubectl-create/Update', 'kubectl/Apply']);
  });
});
