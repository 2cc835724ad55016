import type { ApiCore } from './api-core.js';
import { ApiError, badRequest, conflict } from './api-status.js';
import { applyJsonPatch } from './json-patch.js';
import { isObject, type JsonObject, type JsonValue } from './json-value.js';
import { applyMergePatch } from './merge-patch.js';
import type { RequestContext } from './request-context.js';
import type { ResourceType } from './resource-types.js';

/**
 * The `scale` subresource of Deployments, ReplicaSets and StatefulSets (autoscaling/v1 Scale),
 * which `kubectl scale` patches: a view of the parent's spec.replicas, status.replicas and
 * selector. Writes go through the parent's own patch, so they are validated, versioned and
 * recorded like any update of it.
 */

const scalableTypeIds = new Set(['apps/deployments', 'apps/replicasets', 'apps/statefulsets']);

export function hasScaleSubresource(t: ResourceType): boolean {
  return scalableTypeIds.has(t.id);
}

export const scaleResponseKind = { group: 'autoscaling', version: 'v1', kind: 'Scale' };

export function getScale(core: ApiCore, ctx: RequestContext): JsonObject {
  return scaleOf(core.get(parentContext(ctx)));
}

/** PUT …/scale: the body is a Scale; its resourceVersion, if any, must be the parent's. */
export function updateScale(core: ApiCore, ctx: RequestContext, body: JsonValue): JsonObject {
  if (!isObject(body)) throw badRequest('the request body must be a Scale object');
  return writeReplicas(core, ctx, getScale(core, ctx), body);
}

/** PATCH …/scale (`kubectl scale` sends a merge patch of spec.replicas). */
export function patchScale(
  core: ApiCore,
  ctx: RequestContext,
  contentType: string,
  body: JsonValue,
): JsonObject {
  const current = getScale(core, ctx);
  const mime = contentType.split(';')[0]!.trim().toLowerCase();
  let patched: JsonValue;
  if (mime === 'application/json-patch+json') patched = applyJsonPatch(current, body);
  else if (mime === 'application/merge-patch+json' || mime === 'application/strategic-merge-patch+json') {
    // A Scale has no lists, so a strategic merge patch is a merge patch.
    if (!isObject(body)) throw badRequest('the merge patch must be a JSON object');
    patched = applyMergePatch(current, body);
  } else {
    throw new ApiError(
      415,
      'UnsupportedMediaType',
      'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json',
    );
  }
  if (!isObject(patched)) throw badRequest('the patched object must be a JSON object');
  return writeReplicas(core, ctx, current, patched);
}

function writeReplicas(
  core: ApiCore,
  ctx: RequestContext,
  current: JsonObject,
  wanted: JsonObject,
): JsonObject {
  const spec = isObject(wanted.spec) ? wanted.spec : {};
  const replicas = spec.replicas ?? 0;
  if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0) {
    throw new ApiError(
      422,
      'Invalid',
      `Scale.autoscaling "${ctx.name}" is invalid: spec.replicas: Invalid value: ${JSON.stringify(replicas)}: must be greater than or equal to 0`,
    );
  }
  const version = isObject(wanted.metadata) ? wanted.metadata.resourceVersion : undefined;
  const currentVersion = isObject(current.metadata) ? current.metadata.resourceVersion : undefined;
  if (version !== undefined && version !== '' && version !== currentVersion) {
    throw conflict(
      { group: ctx.type.group, resource: ctx.type.plural, kind: ctx.type.kind },
      ctx.name!,
      'the object has been modified; please apply your changes to the latest version and try again',
    );
  }
  const { object } = core.patch(parentContext(ctx), 'application/merge-patch+json', {
    spec: { replicas },
  });
  return scaleOf(object);
}

function parentContext(ctx: RequestContext): RequestContext {
  return { ...ctx, subresource: undefined };
}

export function scaleOf(parent: JsonObject): JsonObject {
  const m = isObject(parent.metadata) ? parent.metadata : {};
  const spec = isObject(parent.spec) ? parent.spec : {};
  const status = isObject(parent.status) ? parent.status : {};
  const metadata: JsonObject = {};
  for (const k of ['name', 'namespace', 'uid', 'resourceVersion', 'creationTimestamp'])
    if (m[k] !== undefined) metadata[k] = m[k]!;
  return {
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata,
    spec: { replicas: typeof spec.replicas === 'number' ? spec.replicas : 0 },
    status: {
      replicas: typeof status.replicas === 'number' ? status.replicas : 0,
      selector: selectorString(spec.selector),
    },
  };
}

/** A LabelSelector in the string form of Scale.status.selector (`app=web,tier in (a,b)`). */
export function selectorString(selector: JsonValue | undefined): string {
  if (!isObject(selector)) return '';
  const parts: string[] = [];
  if (isObject(selector.matchLabels))
    for (const [k, v] of Object.entries(selector.matchLabels).sort(([a], [b]) => a.localeCompare(b)))
      parts.push(`${k}=${String(v)}`);
  if (Array.isArray(selector.matchExpressions)) {
    for (const e of selector.matchExpressions) {
      if (!isObject(e)) continue;
      const values = Array.isArray(e.values) ? e.values.map(String).join(',') : '';
      const key = String(e.key);
      if (e.operator === 'In') parts.push(`${key} in (${values})`);
      else if (e.operator === 'NotIn') parts.push(`${key} notin (${values})`);
      else if (e.operator === 'Exists') parts.push(key);
      else if (e.operator === 'DoesNotExist') parts.push(`!${key}`);
    }
  }
  return parts.join(',');
}
