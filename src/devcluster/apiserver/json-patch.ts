import { ApiError, badRequest } from './api-status.js';
import { clone, deepEqual, isObject, type JsonValue } from './json-value.js';

/** RFC 6902 JSON patch (add, remove, replace, move, copy, test) over a JSON document. */
interface Operation {
  op: string;
  path: string;
  from?: string;
  value?: JsonValue;
}

function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw badRequest(`the JSON pointer "${pointer}" must start with "/"`);
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function arrayIndex(list: JsonValue[], token: string, forInsert: boolean): number {
  if (token === '-' && forInsert) return list.length;
  if (!/^(0|[1-9]\d*)$/.test(token)) throw badRequest(`invalid array index "${token}"`);
  const i = Number(token);
  if (i > list.length || (!forInsert && i === list.length))
    throw badRequest(`array index ${i} out of bounds`);
  return i;
}

function parentOf(doc: JsonValue, tokens: string[], path: string): JsonValue {
  let node = doc;
  for (const t of tokens.slice(0, -1)) {
    if (Array.isArray(node)) node = node[arrayIndex(node, t, false)]!;
    else if (isObject(node) && Object.hasOwn(node, t)) node = node[t]!;
    else throw badRequest(`doc is missing path: "${path}": missing value`);
  }
  return node;
}

function get(doc: JsonValue, path: string): JsonValue {
  let node = doc;
  for (const t of parsePointer(path)) {
    if (Array.isArray(node)) node = node[arrayIndex(node, t, false)]!;
    else if (isObject(node) && Object.hasOwn(node, t)) node = node[t]!;
    else throw badRequest(`doc is missing path: "${path}": missing value`);
  }
  return node;
}

function add(doc: JsonValue, path: string, value: JsonValue): JsonValue {
  const tokens = parsePointer(path);
  if (tokens.length === 0) return value;
  const parent = parentOf(doc, tokens, path);
  const last = tokens[tokens.length - 1]!;
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, true), 0, value);
  else if (isObject(parent)) parent[last] = value;
  else throw badRequest(`doc is missing path: "${path}": missing value`);
  return doc;
}

function remove(doc: JsonValue, path: string): JsonValue {
  const tokens = parsePointer(path);
  if (tokens.length === 0) throw badRequest('cannot remove the whole document');
  const parent = parentOf(doc, tokens, path);
  const last = tokens[tokens.length - 1]!;
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, false), 1);
  else if (isObject(parent) && Object.hasOwn(parent, last)) delete parent[last];
  else throw badRequest(`Unable to remove nonexistent key: ${last}: missing value`);
  return doc;
}

export function applyJsonPatch(document: JsonValue, patch: unknown): JsonValue {
  if (!Array.isArray(patch))
    throw badRequest('json: cannot unmarshal object into Go value of type jsonpatch.Patch');
  let doc = clone(document);
  for (const raw of patch) {
    if (!isObject(raw) || typeof raw.op !== 'string' || typeof raw.path !== 'string') {
      throw badRequest('the JSON patch operation must have "op" and "path" strings');
    }
    const op = raw as unknown as Operation;
    switch (op.op) {
      case 'add':
        if (!('value' in op))
          throw badRequest(`the JSON patch "add" operation at "${op.path}" needs a value`);
        doc = add(doc, op.path, clone(op.value as JsonValue));
        break;
      case 'remove':
        doc = remove(doc, op.path);
        break;
      case 'replace':
        if (!('value' in op))
          throw badRequest(`the JSON patch "replace" operation at "${op.path}" needs a value`);
        get(doc, op.path);
        if (op.path === '') doc = clone(op.value as JsonValue);
        else doc = add(remove(doc, op.path), op.path, clone(op.value as JsonValue));
        break;
      case 'move': {
        if (typeof op.from !== 'string') throw badRequest('the JSON patch "move" operation needs "from"');
        const value = get(doc, op.from);
        doc = add(remove(doc, op.from), op.path, value);
        break;
      }
      case 'copy': {
        if (typeof op.from !== 'string') throw badRequest('the JSON patch "copy" operation needs "from"');
        doc = add(doc, op.path, clone(get(doc, op.from)));
        break;
      }
      case 'test':
        if (!deepEqual(get(doc, op.path), op.value)) {
          throw new ApiError(422, 'Invalid', `testing value ${op.path} failed: test failed`);
        }
        break;
      default:
        throw badRequest(`Unexpected kind: ${op.op}`);
    }
  }
  return doc;
}
