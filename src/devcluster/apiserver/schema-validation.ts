import type { FieldError } from './api-status.js';
import { deepEqual, isObject, type JsonObject, type JsonValue } from './json-value.js';

/**
 * Validation of custom resources against their CRD's structural openAPIV3Schema: types,
 * required fields, enums, bounds and patterns; unknown fields are pruned as kube-apiserver
 * prunes them (and reported, for fieldValidation=Strict/Warn).
 */
export interface OpenApiV3Schema {
  type?: string;
  properties?: Record<string, OpenApiV3Schema>;
  additionalProperties?: OpenApiV3Schema | boolean;
  items?: OpenApiV3Schema;
  required?: string[];
  enum?: JsonValue[];
  nullable?: boolean;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: boolean;
  exclusiveMaximum?: boolean;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  pattern?: string;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-int-or-string'?: boolean;
  'x-kubernetes-embedded-resource'?: boolean;
}

export interface SchemaResult {
  value: JsonObject;
  errors: FieldError[];
  unknownFields: string[];
}

function typeName(v: JsonValue): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function typeMatches(v: JsonValue, type: string): boolean {
  switch (type) {
    case 'object':
      return isObject(v);
    case 'array':
      return Array.isArray(v);
    case 'string':
      return typeof v === 'string';
    case 'integer':
      return typeof v === 'number' && Number.isInteger(v);
    case 'number':
      return typeof v === 'number';
    case 'boolean':
      return typeof v === 'boolean';
    default:
      return true;
  }
}

function walk(
  v: JsonValue,
  s: OpenApiV3Schema,
  path: string,
  out: { errors: FieldError[]; unknown: string[] },
): JsonValue {
  const { errors } = out;
  if (v === null) {
    if (!s.nullable && s.type) {
      errors.push({
        type: 'FieldValueTypeInvalid',
        field: path,
        value: 'null',
        detail: `${path} in body must be of type ${s.type}: "null"`,
      });
    }
    return v;
  }
  if (s['x-kubernetes-int-or-string']) {
    if (typeof v !== 'string' && !(typeof v === 'number' && Number.isInteger(v))) {
      errors.push({
        type: 'FieldValueTypeInvalid',
        field: path,
        value: typeName(v),
        detail: `${path} in body must be of type integer,string: "${typeName(v)}"`,
      });
    }
    return v;
  }
  if (s.type && !typeMatches(v, s.type)) {
    errors.push({
      type: 'FieldValueTypeInvalid',
      field: path,
      value: typeName(v),
      detail: `${path} in body must be of type ${s.type}: "${typeName(v)}"`,
    });
    return v;
  }
  if (s.enum && !s.enum.some((e) => deepEqual(e, v))) {
    errors.push({
      type: 'FieldValueNotSupported',
      field: path,
      value: v,
      supported: s.enum.map((e) => String(e)),
    });
  }
  if (typeof v === 'number') {
    if (s.minimum !== undefined && (s.exclusiveMinimum ? v <= s.minimum : v < s.minimum)) {
      errors.push({
        type: 'FieldValueInvalid',
        field: path,
        value: v,
        detail: `${path} in body should be greater than ${s.exclusiveMinimum ? '' : 'or equal to '}${s.minimum}`,
      });
    }
    if (s.maximum !== undefined && (s.exclusiveMaximum ? v >= s.maximum : v > s.maximum)) {
      errors.push({
        type: 'FieldValueInvalid',
        field: path,
        value: v,
        detail: `${path} in body should be less than ${s.exclusiveMaximum ? '' : 'or equal to '}${s.maximum}`,
      });
    }
  }
  if (typeof v === 'string') {
    if (s.minLength !== undefined && [...v].length < s.minLength) {
      errors.push({
        type: 'FieldValueInvalid',
        field: path,
        value: v,
        detail: `${path} in body should be at least ${s.minLength} chars long`,
      });
    }
    if (s.maxLength !== undefined && [...v].length > s.maxLength) {
      errors.push({
        type: 'FieldValueTooLong',
        field: path,
        value: v,
        detail: `may not be more than ${s.maxLength} bytes`,
      });
    }
    if (s.pattern !== undefined) {
      let re: RegExp | undefined;
      try {
        re = new RegExp(s.pattern, 'u');
      } catch {
        re = undefined;
      }
      if (re && !re.test(v)) {
        errors.push({
          type: 'FieldValueInvalid',
          field: path,
          value: v,
          detail: `${path} in body should match '${s.pattern}'`,
        });
      }
    }
  }
  if (Array.isArray(v)) {
    if (s.minItems !== undefined && v.length < s.minItems) {
      errors.push({
        type: 'FieldValueInvalid',
        field: path,
        value: v.length,
        detail: `${path} in body should have at least ${s.minItems} items`,
      });
    }
    if (s.maxItems !== undefined && v.length > s.maxItems) {
      errors.push({
        type: 'FieldValueTooLong',
        field: path,
        detail: `must have at most ${s.maxItems} items`,
      });
    }
    return s.items ? v.map((item, i) => walk(item, s.items!, `${path}[${i}]`, out)) : v;
  }
  if (isObject(v)) {
    if (s['x-kubernetes-embedded-resource']) return v;
    const result: JsonObject = {};
    const preserve = s['x-kubernetes-preserve-unknown-fields'] === true;
    for (const [k, child] of Object.entries(v)) {
      const childPath = path ? `${path}.${k}` : k;
      const prop = s.properties?.[k];
      if (prop) result[k] = walk(child, prop, childPath, out);
      else if (isObject(s.additionalProperties))
        result[k] = walk(child, s.additionalProperties, childPath, out);
      else if (preserve || s.additionalProperties === true) result[k] = child;
      else out.unknown.push(childPath);
    }
    for (const r of s.required ?? []) {
      if (!Object.hasOwn(v, r)) errors.push({ type: 'FieldValueRequired', field: path ? `${path}.${r}` : r });
    }
    return result;
  }
  return v;
}

/** Validates and prunes a custom resource; apiVersion, kind and metadata are never pruned. */
export function validateCustomResource(o: JsonObject, schema: OpenApiV3Schema | undefined): SchemaResult {
  if (!schema) return { value: o, errors: [], unknownFields: [] };
  const out = { errors: [] as FieldError[], unknown: [] as string[] };
  const { apiVersion, kind, metadata, ...rest } = o;
  const rootSchema: OpenApiV3Schema = {
    ...schema,
    required: (schema.required ?? []).filter((r) => r !== 'metadata' && r !== 'apiVersion' && r !== 'kind'),
  };
  const props = { ...(schema.properties ?? {}) };
  delete props.metadata;
  delete props.apiVersion;
  delete props.kind;
  rootSchema.properties = props;
  const pruned = walk(rest, rootSchema, '', out) as JsonObject;
  const value: JsonObject = {
    apiVersion: apiVersion ?? null,
    kind: kind ?? null,
    metadata: metadata ?? {},
    ...pruned,
  };
  return { value, errors: out.errors, unknownFields: out.unknown };
}
