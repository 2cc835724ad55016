import { createHash } from 'node:crypto';
import type { JsonObject } from './json-value.js';
import type { ResourceRegistry, ResourceType } from './resource-types.js';

/**
 * OpenAPI v3, as far as kubectl uses it: the per group-version documents list each resource's
 * PATCH operation with its x-kubernetes-group-version-kind and the fieldValidation parameter,
 * which is how kubectl 1.32 decides that the server validates fields itself
 * (--validate=strict sends fieldValidation=Strict instead of validating client-side). PATCH
 * operations deliberately declare no strategic-merge request body, so client-side apply
 * computes strategic merge patches from kubectl's compiled-in types, and JSON merge patches for
 * custom resources, exactly as it does when a server publishes no patch metadata. Custom
 * resources' schemas are published as components. OpenAPI v2 is not served (404): kubectl
 * 1.32 only falls back to it when v3 is missing.
 */
export interface OpenApiDocuments {
  v3Root(): JsonObject;
  v3(groupVersionPath: string): JsonObject | undefined;
  v2(): JsonObject;
}

function gvPath(group: string, version: string): string {
  return group ? `apis/${group}/${version}` : `api/${version}`;
}

const queryParameters = ['dryRun', 'fieldManager', 'fieldValidation', 'force', 'pretty'].map((name) => ({
  name,
  in: 'query',
  schema: { type: name === 'force' ? 'boolean' : 'string', uniqueItems: true },
}));

function schemaName(t: ResourceType, version: string): string {
  const group = t.group ? t.group.split('.').reverse().join('.') : 'io.k8s.api.core';
  return `${group}.${version}.${t.kind}`;
}

function resourcePaths(t: ResourceType, version: string): JsonObject {
  const base = `/${gvPath(t.group, version)}${t.namespaced ? '/namespaces/{namespace}' : ''}/${t.plural}`;
  const gvk = { group: t.group, version, kind: t.kind };
  const response = {
    '200': {
      description: 'OK',
      content: { 'application/json': { schema: { $ref: `#/components/schemas/${schemaName(t, version)}` } } },
    },
  };
  const op = (action: string, extra: JsonObject = {}): JsonObject => ({
    operationId: `${action}${t.kind}`,
    'x-kubernetes-action': action,
    'x-kubernetes-group-version-kind': gvk,
    parameters: action === 'patch' || action === 'put' || action === 'post' ? queryParameters : [],
    responses: response,
    ...extra,
  });
  const item: JsonObject = { get: op('get'), put: op('put'), patch: op('patch'), delete: op('delete') };
  const collection: JsonObject = { get: op('list'), post: op('post') };
  const paths: JsonObject = { [base]: collection, [`${base}/{name}`]: item };
  if (t.statusSubresource)
    paths[`${base}/{name}/status`] = { get: op('get'), put: op('put'), patch: op('patch') };
  return paths;
}

export function openApiDocuments(registry: ResourceRegistry): OpenApiDocuments {
  const groupVersions = (): Map<string, ResourceType[]> => {
    const out = new Map<string, ResourceType[]>();
    for (const t of registry.all()) {
      for (const v of t.versions) {
        const key = gvPath(t.group, v);
        out.set(key, [...(out.get(key) ?? []), t]);
      }
    }
    return out;
  };
  const document = (key: string, types: ResourceType[]): JsonObject => {
    const version = key.split('/').pop()!;
    const paths: JsonObject = {};
    const schemas: JsonObject = {};
    for (const t of types) {
      Object.assign(paths, resourcePaths(t, version));
      const custom = t.custom?.schemas[version];
      const schema: JsonObject =
        custom && typeof custom === 'object'
          ? { ...(custom as JsonObject) }
          : { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };
      schema['x-kubernetes-group-version-kind'] = [{ group: t.group, version, kind: t.kind }];
      schemas[schemaName(t, version)] = schema;
    }
    return {
      openapi: '3.0.0',
      info: { title: 'Kubernetes', version: 'v1.32.0' },
      paths,
      components: { schemas },
    };
  };
  return {
    v3Root() {
      const paths: JsonObject = {};
      for (const [key, types] of groupVersions()) {
        const hash = createHash('sha512')
          .update(JSON.stringify(document(key, types)))
          .digest('hex')
          .slice(0, 128)
          .toUpperCase();
        paths[key] = { serverRelativeURL: `/openapi/v3/${key}?hash=${hash}` };
      }
      return { paths };
    },
    v3(groupVersionPath: string) {
      const types = groupVersions().get(groupVersionPath);
      return types ? document(groupVersionPath, types) : undefined;
    },
    v2() {
      return {
        swagger: '2.0',
        info: { title: 'Kubernetes', version: 'v1.32.0' },
        paths: {},
        definitions: {},
      };
    },
  };
}
