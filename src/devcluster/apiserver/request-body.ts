import yaml from 'js-yaml';
import { ApiError, badRequest } from './api-status.js';
import type { JsonValue } from './json-value.js';

/**
 * Request bodies are outside input: checked once here (size, UTF-8, nesting depth, YAML alias
 * blow-up) and turned into JSON values; everything past this point trusts their shape only as
 * far as validation proves it.
 */
export const maxBodyBytes = 3 * 1024 * 1024;
const maxDepth = 100;
const maxNodes = 2_000_000;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Nesting depth of JSON text, counted without parsing (so deep input never reaches the parser). */
function jsonDepthExceeds(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++;
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++depth > limit) return true;
    } else if (c === 125 || c === 93) depth--;
  }
  return false;
}

/** Depth and total size of a parsed value, counting shared (aliased) nodes every time. */
function checkShape(value: unknown): void {
  let nodes = 0;
  const walk = (v: unknown, depth: number) => {
    if (++nodes > maxNodes) throw badRequest('the request body expands to too many values');
    if (depth > maxDepth) throw badRequest(`the request body is nested more than ${maxDepth} levels deep`);
    if (Array.isArray(v)) for (const x of v) walk(x, depth + 1);
    else if (v !== null && typeof v === 'object') for (const x of Object.values(v)) walk(x, depth + 1);
  };
  walk(value, 0);
}

export type BodyFormat = 'json' | 'yaml';

export function bodyFormat(contentType: string | undefined): BodyFormat | undefined {
  const mime = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  // No Content-Type at all: kube-apiserver decodes with its default, JSON.
  if (mime === '') return 'json';
  if (
    mime === 'application/json' ||
    mime === 'application/json-patch+json' ||
    mime === 'application/merge-patch+json' ||
    mime === 'application/strategic-merge-patch+json'
  )
    return 'json';
  if (mime === 'application/yaml' || mime === 'application/apply-patch+yaml') return 'yaml';
  return undefined;
}

export function parseBody(raw: Buffer, format: BodyFormat): JsonValue {
  if (raw.length > maxBodyBytes) {
    throw new ApiError(413, 'RequestEntityTooLarge', `the request body is larger than ${maxBodyBytes} bytes`);
  }
  let text: string;
  try {
    text = utf8.decode(raw);
  } catch {
    throw badRequest('the request body is not valid UTF-8');
  }
  if (text.trim() === '') throw badRequest('the request body is empty');
  if (jsonDepthExceeds(text, maxDepth))
    throw badRequest(`the request body is nested more than ${maxDepth} levels deep`);
  if (format === 'json') {
    try {
      return JSON.parse(text) as JsonValue;
    } catch (err) {
      throw badRequest(`couldn't get version/kind; json parse error: ${(err as Error).message}`);
    }
  }
  let value: unknown;
  try {
    value = yaml.load(text, { schema: yaml.JSON_SCHEMA, json: true });
  } catch (err) {
    const message = err instanceof yaml.YAMLException ? err.message.split('\n')[0] : String(err);
    throw badRequest(`error converting YAML to JSON: ${message}`);
  }
  checkShape(value);
  return value as JsonValue;
}
