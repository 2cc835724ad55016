import { badRequest } from './api-status.js';
import { clone, deepEqual, isObject, type JsonObject, type JsonValue } from './json-value.js';
import { childSchema, type MergeSchema } from './merge-schema.js';

/**
 * Strategic merge patch (k8s.io/apimachinery/pkg/util/strategicpatch), as kubectl apply and
 * kubectl patch send it for built-in kinds: keyed lists merge by their patchMergeKey, sets merge
 * as unions, other lists are replaced; the directives $patch (replace/delete/merge),
 * $retainKeys, $setElementOrder/<list> and $deleteFromPrimitiveList/<list> are honoured.
 */
const setElementOrderPrefix = '$setElementOrder/';
const deleteFromPrimitiveListPrefix = '$deleteFromPrimitiveList/';

function isDirectiveKey(key: string): boolean {
  return (
    key === '$patch' ||
    key === '$retainKeys' ||
    key.startsWith(setElementOrderPrefix) ||
    key.startsWith(deleteFromPrimitiveListPrefix)
  );
}

/** The patch as plain data: directives dropped (what a new object or replaced value holds). */
export function withoutDirectives(value: JsonValue): JsonValue {
  if (Array.isArray(value)) {
    return value.filter((v) => !(isObject(v) && v.$patch === 'delete')).map((v) => withoutDirectives(v));
  }
  if (!isObject(value)) return value;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(value)) {
    if (isDirectiveKey(k) || v === null) continue;
    out[k] = withoutDirectives(v);
  }
  return out;
}

export function applyStrategicMergePatch(
  original: JsonObject,
  patch: JsonValue,
  schema: MergeSchema,
): JsonObject {
  if (!isObject(patch)) throw badRequest('the strategic merge patch must be a JSON object');
  const merged = mergeMap(clone(original), patch, schema);
  if (merged === null) throw badRequest('the strategic merge patch may not delete the whole object');
  return merged;
}

function mergeMap(
  original: JsonObject | undefined,
  patch: JsonObject,
  schema: MergeSchema | undefined,
): JsonObject | null {
  const directive = patch.$patch;
  if (directive === 'delete') return null;
  if (directive === 'replace') return withoutDirectives(patch) as JsonObject;
  if (directive !== undefined && directive !== 'merge')
    throw badRequest(`Unknown patch type: ${String(directive)}`);
  const result: JsonObject = original ? { ...original } : {};

  const retainKeys = patch.$retainKeys;
  if (retainKeys !== undefined) {
    if (!Array.isArray(retainKeys)) throw badRequest('$retainKeys must be a list of field names');
    for (const key of Object.keys(result)) if (!retainKeys.includes(key)) delete result[key];
  }
  for (const [key, value] of Object.entries(patch)) {
    if (!key.startsWith(deleteFromPrimitiveListPrefix)) continue;
    const field = key.slice(deleteFromPrimitiveListPrefix.length);
    if (!Array.isArray(value)) throw badRequest(`${key} must be a list`);
    const current = result[field];
    if (Array.isArray(current)) result[field] = current.filter((v) => !value.some((d) => deepEqual(d, v)));
  }
  for (const [key, value] of Object.entries(patch)) {
    if (isDirectiveKey(key)) continue;
    if (value === null) {
      delete result[key];
      continue;
    }
    const sub = childSchema(schema, key);
    if (isObject(value)) {
      if (sub?.atomic) {
        result[key] = withoutDirectives(value);
      } else {
        const current = result[key];
        const merged = mergeMap(isObject(current) ? current : undefined, value, sub);
        if (merged === null) delete result[key];
        else result[key] = merged;
      }
    } else if (Array.isArray(value)) {
      result[key] = mergeList(result[key], value, sub);
    } else {
      result[key] = value;
    }
  }
  for (const [key, order] of Object.entries(patch)) {
    if (!key.startsWith(setElementOrderPrefix)) continue;
    const field = key.slice(setElementOrderPrefix.length);
    const list = result[field];
    if (!Array.isArray(order)) throw badRequest(`${key} must be a list`);
    if (Array.isArray(list)) result[field] = reorder(list, order, childSchema(schema, field));
  }
  return result;
}

function mergeKeyOf(schema: MergeSchema | undefined): string | undefined {
  return schema?.list?.type === 'map' ? schema.list.keys[0] : undefined;
}

function mergeList(
  original: JsonValue | undefined,
  patch: JsonValue[],
  schema: MergeSchema | undefined,
): JsonValue[] {
  const mergeKey = mergeKeyOf(schema);
  if (mergeKey !== undefined) {
    if (patch.some((e) => isObject(e) && e.$patch === 'replace')) {
      return patch.filter((e) => !(isObject(e) && e.$patch === 'replace')).map((e) => withoutDirectives(e));
    }
    let result: JsonValue[] = Array.isArray(original) ? [...original] : [];
    for (const element of patch) {
      if (!isObject(element)) {
        result.push(element);
        continue;
      }
      if (!Object.hasOwn(element, mergeKey)) {
        throw badRequest(`map: ${JSON.stringify(element)} does not contain declared merge key: ${mergeKey}`);
      }
      const keyValue = element[mergeKey];
      const same = (o: JsonValue) => isObject(o) && deepEqual(o[mergeKey], keyValue);
      if (element.$patch === 'delete') {
        result = result.filter((o) => !same(o));
        continue;
      }
      const at = result.findIndex(same);
      if (at >= 0) {
        const merged = mergeMap(result[at] as JsonObject, element, schema?.items);
        if (merged === null) result.splice(at, 1);
        else result[at] = merged;
      } else {
        result.push(withoutDirectives(element));
      }
    }
    return result;
  }
  if (schema?.list?.type === 'set') {
    const result: JsonValue[] = Array.isArray(original) ? [...original] : [];
    for (const v of patch) if (!result.some((o) => deepEqual(o, v))) result.push(v);
    return result;
  }
  return patch.map((e) => withoutDirectives(e));
}

/** $setElementOrder: listed elements in the listed order, the server's extra elements after them. */
function reorder(list: JsonValue[], order: JsonValue[], schema: MergeSchema | undefined): JsonValue[] {
  const mergeKey = mergeKeyOf(schema);
  const rank = (v: JsonValue): number => {
    const at = order.findIndex((o) =>
      mergeKey !== undefined && isObject(o) && isObject(v)
        ? deepEqual(o[mergeKey], v[mergeKey])
        : deepEqual(o, v),
    );
    return at < 0 ? order.length : at;
  };
  return list
    .map((v, i) => ({ v, i, r: rank(v) }))
    .sort((a, b) => a.r - b.r || a.i - b.i)
    .map((e) => e.v);
}
