import { ApiError } from './api-status.js';
import { clone, deepEqual, isObject, type JsonObject, type JsonValue } from './json-value.js';
import { childSchema, type MergeSchema } from './merge-schema.js';

/**
 * Field ownership (metadata.managedFields, FieldsV1) and server-side apply, after
 * sigs.k8s.io/structured-merge-diff: each manager owns a set of field paths; an Apply merges the
 * applied configuration, removes the fields its manager applied before and no longer applies
 * (unless someone else owns them), and fails with 409 where another manager owns a field it
 * would change, unless forced. An Update takes ownership of what it changed, without conflicts.
 */
type Segment = string; // f:<field> | k:<json keys> | v:<json value>
const SEP = '\u0001';

export interface ManagedFieldsEntry {
  manager: string;
  operation: 'Apply' | 'Update';
  apiVersion: string;
  time: string;
  fieldsType: 'FieldsV1';
  fieldsV1: JsonObject;
  subresource?: string;
}

const untrackedMetadata = new Set([
  'name',
  'namespace',
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'managedFields',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'selfLink',
  'generateName',
]);

/**
 * Key fields the server defaults (a port's protocol is TCP unless said otherwise), so that an
 * applied element without them names the same list entry as the stored, defaulted one.
 */
const defaultedKeyFields: Record<string, JsonValue> = { protocol: 'TCP' };

function keyValue(element: JsonObject, k: string): JsonValue | undefined {
  return Object.hasOwn(element, k) ? element[k] : defaultedKeyFields[k];
}

function keySegment(element: JsonObject, keys: string[]): Segment {
  const picked: JsonObject = {};
  for (const k of [...keys].sort()) {
    const v = keyValue(element, k);
    if (v !== undefined) picked[k] = v;
  }
  return `k:${JSON.stringify(picked)}`;
}

/** Which part of an object a write covers: the main resource, or its status subresource. */
export type Scope = 'main' | 'status';

/** Every field path an object sets (intermediate maps and list elements included). */
export function fieldSetOf(
  obj: JsonObject,
  schema: MergeSchema,
  scope: Scope,
  statusIsSubresource: boolean,
): Set<string> {
  const out = new Set<string>();
  const walk = (value: JsonValue, s: MergeSchema | undefined, path: Segment[]) => {
    if (isObject(value)) {
      if (s?.atomic) return;
      for (const [k, v] of Object.entries(value)) {
        const p = [...path, `f:${k}`];
        out.add(p.join(SEP));
        walk(v, childSchema(s, k), p);
      }
    } else if (Array.isArray(value)) {
      const list = s?.list;
      if (list?.type === 'map') {
        for (const element of value) {
          if (!isObject(element)) continue;
          const p = [...path, keySegment(element, list.keys)];
          out.add(p.join(SEP));
          walk(element, s?.items, p);
        }
      } else if (list?.type === 'set') {
        for (const element of value) out.add([...path, `v:${JSON.stringify(element)}`].join(SEP));
      }
    }
  };
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'apiVersion' || k === 'kind') continue;
    if (scope === 'status' && k !== 'status') continue;
    if (scope === 'main' && k === 'status' && statusIsSubresource) continue;
    if (k === 'metadata' && isObject(v)) {
      for (const [mk, mv] of Object.entries(v)) {
        if (untrackedMetadata.has(mk)) continue;
        const p = ['f:metadata', `f:${mk}`];
        out.add('f:metadata');
        out.add(p.join(SEP));
        walk(mv, childSchema(childSchema(schema, 'metadata'), mk), p);
      }
      continue;
    }
    out.add(`f:${k}`);
    walk(v, childSchema(schema, k), [`f:${k}`]);
  }
  return out;
}

export function toFieldsV1(set: Set<string>): JsonObject {
  const root: JsonObject = {};
  const paths = [...set].map((p) => p.split(SEP));
  const hasChildren = new Set<string>();
  for (const p of paths) for (let i = 1; i < p.length; i++) hasChildren.add(p.slice(0, i).join(SEP));
  for (const p of paths) {
    let node = root;
    for (const seg of p) {
      if (!isObject(node[seg])) node[seg] = {};
      node = node[seg] as JsonObject;
    }
    if (hasChildren.has(p.join(SEP)) && p.length > 1) node['.'] = {};
  }
  return root;
}

export function fromFieldsV1(fields: unknown): Set<string> {
  const out = new Set<string>();
  const walk = (node: unknown, path: string[]) => {
    if (!isObject(node)) return;
    for (const [k, v] of Object.entries(node)) {
      if (k === '.') continue;
      const p = [...path, k];
      out.add(p.join(SEP));
      walk(v, p);
    }
  };
  walk(fields, []);
  return out;
}

function parseSegment(seg: Segment): {
  kind: 'f' | 'k' | 'v';
  name: string;
  keys?: JsonObject;
  value?: JsonValue;
} {
  const kind = seg.slice(0, 1) as 'f' | 'k' | 'v';
  const rest = seg.slice(2);
  if (kind === 'f') return { kind, name: rest };
  if (kind === 'k') return { kind, name: rest, keys: JSON.parse(rest) as JsonObject };
  return { kind, name: rest, value: JSON.parse(rest) as JsonValue };
}

function matchesKeys(element: JsonValue, keys: JsonObject): boolean {
  return isObject(element) && Object.entries(keys).every(([k, v]) => deepEqual(keyValue(element, k), v));
}

/** The value at a path, or undefined when the object does not have it. */
function valueAt(obj: JsonValue, path: string): JsonValue | undefined {
  let node: JsonValue | undefined = obj;
  for (const seg of path.split(SEP)) {
    const s = parseSegment(seg);
    if (s.kind === 'f') node = isObject(node) ? node[s.name] : undefined;
    else if (s.kind === 'k')
      node = Array.isArray(node) ? node.find((e) => matchesKeys(e, s.keys!)) : undefined;
    else node = Array.isArray(node) && node.some((e) => deepEqual(e, s.value)) ? s.value : undefined;
    if (node === undefined) return undefined;
  }
  return node;
}

function removeAt(obj: JsonObject, path: string): void {
  const segs = path.split(SEP);
  let node: JsonValue | undefined = obj;
  for (const seg of segs.slice(0, -1)) {
    const s = parseSegment(seg);
    if (s.kind === 'f') node = isObject(node) ? node[s.name] : undefined;
    else if (s.kind === 'k')
      node = Array.isArray(node) ? node.find((e) => matchesKeys(e, s.keys!)) : undefined;
    else return;
    if (node === undefined) return;
  }
  const last = parseSegment(segs[segs.length - 1]!);
  if (last.kind === 'f' && isObject(node)) delete node[last.name];
  else if (Array.isArray(node)) {
    const at = node.findIndex((e) =>
      last.kind === 'k' ? matchesKeys(e, last.keys!) : deepEqual(e, last.value),
    );
    if (at >= 0) node.splice(at, 1);
  }
}

/** ".spec.containers[name=\"c\"].image", as apply conflicts name fields. */
export function renderPath(path: string): string {
  return path
    .split(SEP)
    .map((seg) => {
      const s = parseSegment(seg);
      if (s.kind === 'f') return `.${s.name}`;
      if (s.kind === 'k') {
        return `[${Object.entries(s.keys!)
          .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
          .join(',')}]`;
      }
      return `[${JSON.stringify(s.value)}]`;
    })
    .join('');
}

function isLeaf(set: Set<string>, path: string): boolean {
  const prefix = path + SEP;
  for (const p of set) if (p.startsWith(prefix)) return false;
  return true;
}

function ownsAtOrBelow(set: Set<string>, path: string): boolean {
  if (set.has(path)) return true;
  const prefix = path + SEP;
  for (const p of set) if (p.startsWith(prefix)) return true;
  return false;
}

/** Merges an applied configuration into the live object (keyed lists by key, sets as unions). */
export function mergeApplied(
  live: JsonValue | undefined,
  applied: JsonValue,
  schema: MergeSchema | undefined,
): JsonValue {
  if (isObject(applied)) {
    if (schema?.atomic || !isObject(live)) return clone(applied);
    const out: JsonObject = { ...live };
    for (const [k, v] of Object.entries(applied)) out[k] = mergeApplied(live[k], v, childSchema(schema, k));
    return out;
  }
  if (Array.isArray(applied) && Array.isArray(live)) {
    const list = schema?.list;
    if (list?.type === 'map') {
      const out = [...live];
      for (const element of applied) {
        if (!isObject(element)) continue;
        const keys = JSON.parse(keySegment(element, list.keys).slice(2)) as JsonObject;
        const at = out.findIndex((e) => matchesKeys(e, keys));
        if (at >= 0) out[at] = mergeApplied(out[at], element, schema?.items);
        else out.push(clone(element));
      }
      return out;
    }
    if (list?.type === 'set') {
      const out = [...live];
      for (const v of applied) if (!out.some((e) => deepEqual(e, v))) out.push(v);
      return out;
    }
  }
  return clone(applied);
}

export function readManagedFields(obj: JsonObject): ManagedFieldsEntry[] {
  const meta = obj.metadata;
  const entries = isObject(meta) && Array.isArray(meta.managedFields) ? meta.managedFields : [];
  return entries.filter(isObject) as unknown as ManagedFieldsEntry[];
}

export function nowRfc3339(): string {
  return `${new Date().toISOString().slice(0, 19)}Z`;
}

interface ApplyInput {
  live: JsonObject | undefined;
  applied: JsonObject;
  manager: string;
  force: boolean;
  schema: MergeSchema;
  scope: Scope;
  statusIsSubresource: boolean;
  apiVersion: string;
}

/**
 * Server-side apply: the merged object and its new managedFields, or a 409 listing every field
 * another manager owns with a different value.
 */
export function serverSideApply(input: ApplyInput): JsonObject {
  const { live, applied, manager, force, schema, scope, statusIsSubresource, apiVersion } = input;
  const subresource = scope === 'status' ? 'status' : undefined;
  const newSet = fieldSetOf(applied, schema, scope, statusIsSubresource);
  const entries = live ? readManagedFields(live) : [];
  const isSelf = (e: ManagedFieldsEntry) =>
    e.manager === manager && e.operation === 'Apply' && e.subresource === subresource;
  const previous = entries.find(isSelf);
  const previousSet = previous ? fromFieldsV1(previous.fieldsV1) : new Set<string>();
  const others = entries.filter((e) => !isSelf(e)).map((e) => ({ entry: e, set: fromFieldsV1(e.fieldsV1) }));

  const conflicts: Array<{ manager: string; apiVersion: string; path: string }> = [];
  if (live) {
    for (const other of others) {
      if (other.entry.manager === manager) continue;
      for (const path of newSet) {
        if (!other.set.has(path) || !isLeaf(newSet, path)) continue;
        const liveValue = valueAt(live, path);
        if (liveValue === undefined) continue;
        if (!deepEqual(liveValue, valueAt(applied, path))) {
          conflicts.push({ manager: other.entry.manager, apiVersion: other.entry.apiVersion, path });
        }
      }
    }
  }
  if (conflicts.length > 0 && !force) throw applyConflict(conflicts);
  for (const other of others) {
    removePaths(
      other.set,
      conflicts.filter((c) => c.manager === other.entry.manager).map((c) => c.path),
    );
  }

  const merged = clone(live ? mergeApplied(live, stripUntracked(applied), schema) : applied) as JsonObject;
  // Shallowest first: a removed map or list entry takes its fields with it, unless another
  // manager still owns something inside it, in which case only this manager's fields go.
  const removed = [...previousSet]
    .filter((p) => !newSet.has(p))
    .sort((a, b) => a.split(SEP).length - b.split(SEP).length);
  const removedRoots: string[] = [];
  for (const path of removed) {
    if (removedRoots.some((r) => path.startsWith(r + SEP))) continue;
    if (others.some((o) => ownsAtOrBelow(o.set, path))) continue;
    removeAt(merged, path);
    removedRoots.push(path);
  }
  const nextEntries: ManagedFieldsEntry[] = [];
  for (const o of others) {
    if (o.set.size === 0) continue;
    nextEntries.push({ ...o.entry, fieldsV1: toFieldsV1(o.set) });
  }
  const mine: ManagedFieldsEntry = {
    manager,
    operation: 'Apply',
    apiVersion,
    time: nowRfc3339(),
    fieldsType: 'FieldsV1',
    fieldsV1: toFieldsV1(newSet),
  };
  if (subresource) mine.subresource = subresource;
  nextEntries.push(mine);
  const metadata = isObject(merged.metadata) ? { ...merged.metadata } : {};
  metadata.managedFields = nextEntries as unknown as JsonValue;
  return { ...merged, metadata };
}

/** The applied object without metadata the server owns (so applying never resets them). */
function stripUntracked(applied: JsonObject): JsonObject {
  const out = { ...applied };
  if (isObject(out.metadata)) {
    const meta = { ...out.metadata };
    for (const k of ['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields'])
      delete meta[k];
    out.metadata = meta;
  }
  return out;
}

function applyConflict(conflicts: Array<{ manager: string; apiVersion: string; path: string }>): ApiError {
  const n = conflicts.length;
  const head = `Apply failed with ${n} conflict${n === 1 ? '' : 's'}:`;
  let message: string;
  if (n === 1) {
    const c = conflicts[0]!;
    message = `${head} conflict with "${c.manager}" using ${c.apiVersion}: ${renderPath(c.path)}`;
  } else {
    message = `${head} ${conflicts.map((c) => `conflict with "${c.manager}" using ${c.apiVersion}: ${renderPath(c.path)}`).join('\n')}`;
  }
  return new ApiError(409, 'Conflict', message, {
    causes: conflicts.map((c) => ({
      reason: 'FieldManagerConflict',
      message: `conflict with "${c.manager}" using ${c.apiVersion}`,
      field: renderPath(c.path),
    })),
  });
}

interface UpdateInput {
  oldObj: JsonObject | undefined;
  newObj: JsonObject;
  manager: string;
  schema: MergeSchema;
  scope: Scope;
  statusIsSubresource: boolean;
  apiVersion: string;
}

/**
 * An Update (create, PUT, non-apply PATCH) takes ownership of every field whose value it set or
 * changed; fields it removed leave every manager's set.
 */
export function recordUpdate(input: UpdateInput): JsonObject {
  const { oldObj, newObj, manager, schema, scope, statusIsSubresource, apiVersion } = input;
  const subresource = scope === 'status' ? 'status' : undefined;
  const newSet = fieldSetOf(newObj, schema, scope, statusIsSubresource);
  const oldSet = oldObj ? fieldSetOf(oldObj, schema, scope, statusIsSubresource) : new Set<string>();
  const changed = new Set<string>();
  for (const path of newSet) {
    if (!isLeaf(newSet, path)) continue;
    if (oldObj && oldSet.has(path) && deepEqual(valueAt(oldObj, path), valueAt(newObj, path))) continue;
    const segs = path.split(SEP);
    for (let i = 1; i <= segs.length; i++) changed.add(segs.slice(0, i).join(SEP));
  }
  const gone = [...oldSet].filter((p) => !newSet.has(p));
  const entries = oldObj ? readManagedFields(oldObj) : [];
  const isSelf = (e: ManagedFieldsEntry) =>
    e.manager === manager && e.operation === 'Update' && e.subresource === subresource;
  const next: ManagedFieldsEntry[] = [];
  let mineSet = new Set<string>();
  for (const e of entries) {
    const set = fromFieldsV1(e.fieldsV1);
    removePaths(set, gone);
    if (isSelf(e)) {
      mineSet = set;
      continue;
    }
    removePaths(
      set,
      [...changed].filter((p) => isLeaf(newSet, p)),
    );
    if (set.size > 0) next.push({ ...e, fieldsV1: toFieldsV1(set) });
  }
  for (const p of changed) mineSet.add(p);
  if (mineSet.size > 0) {
    const entry: ManagedFieldsEntry = {
      manager,
      operation: 'Update',
      apiVersion,
      time: nowRfc3339(),
      fieldsType: 'FieldsV1',
      fieldsV1: toFieldsV1(mineSet),
    };
    if (subresource) entry.subresource = subresource;
    next.push(entry);
  }
  const metadata = isObject(newObj.metadata) ? { ...newObj.metadata } : {};
  if (next.length > 0) metadata.managedFields = next as unknown as JsonValue;
  else delete metadata.managedFields;
  return { ...newObj, metadata };
}

/**
 * Takes paths out of a manager's set, and with them the parents that only held them (a parent
 * that was itself a leaf, such as an atomic list, stays owned).
 */
function removePaths(set: Set<string>, paths: Iterable<string>): void {
  const originalLeaves = new Set([...set].filter((p) => isLeaf(set, p)));
  const parents = new Set<string>();
  for (const p of paths) {
    if (!set.delete(p)) continue;
    const segs = p.split(SEP);
    for (let i = 1; i < segs.length; i++) parents.add(segs.slice(0, i).join(SEP));
  }
  const deepestFirst = [...parents].sort((a, b) => b.split(SEP).length - a.split(SEP).length);
  for (const parent of deepestFirst) {
    if (set.has(parent) && !originalLeaves.has(parent) && isLeaf(set, parent)) set.delete(parent);
  }
}
