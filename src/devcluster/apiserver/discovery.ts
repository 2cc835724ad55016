import type { JsonObject } from './json-value.js';
import type { ResourceRegistry, ResourceType } from './resource-types.js';
import { hasScaleSubresource, scaleResponseKind } from './scale-subresource.js';

/**
 * Discovery documents: the legacy ones (/api, /apis, /api/v1, /apis/<group>/<version>) that
 * client-node and older kubectl read, and the aggregated v2 form (apidiscovery.k8s.io/v2) that
 * kubectl 1.32 asks for first, which saves it one request per group version.
 */
export const serverVersion = {
  major: '1',
  minor: '32',
  gitVersion: 'v1.32.0-weft',
  gitCommit: '0000000000000000000000000000000000000000',
  gitTreeState: 'clean',
  buildDate: '2025-01-01T00:00:00Z',
  goVersion: 'go1.23.4',
  compiler: 'gc',
  platform: 'linux/amd64',
};

function sortedVersions(versions: string[]): string[] {
  const rank = (v: string) => {
    const m = /^v(\d+)(?:(alpha|beta)(\d+))?$/.exec(v);
    if (!m) return [3, 0, 0, v] as const;
    const stability = m[2] === undefined ? 0 : m[2] === 'beta' ? 1 : 2;
    return [stability, -Number(m[1]), -Number(m[3] ?? 0), v] as const;
  };
  return [...versions].sort((a, b) => {
    const x = rank(a);
    const y = rank(b);
    for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return (x[i] as number) - (y[i] as number);
    return a < b ? -1 : 1;
  });
}

function typesIn(registry: ResourceRegistry, group: string, version: string): ResourceType[] {
  return registry
    .all()
    .filter((t) => t.group === group && t.versions.includes(version))
    .sort((a, b) => (a.plural < b.plural ? -1 : 1));
}

export function apiVersions(serverAddress: string): JsonObject {
  return {
    kind: 'APIVersions',
    versions: ['v1'],
    serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }],
  };
}

function groupEntry(name: string, versions: string[]): JsonObject {
  const sorted = sortedVersions(versions);
  return {
    name,
    versions: sorted.map((v) => ({ groupVersion: `${name}/${v}`, version: v })),
    preferredVersion: { groupVersion: `${name}/${sorted[0]}`, version: sorted[0]! },
  };
}

export function apiGroupList(registry: ResourceRegistry): JsonObject {
  const groups = [...registry.groups()]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([name, versions]) => groupEntry(name, versions));
  return { kind: 'APIGroupList', apiVersion: 'v1', groups };
}

export function apiGroup(registry: ResourceRegistry, group: string): JsonObject | undefined {
  const versions = registry.groups().get(group);
  if (!versions) return undefined;
  return { kind: 'APIGroup', apiVersion: 'v1', ...groupEntry(group, versions) };
}

export function apiResourceList(
  registry: ResourceRegistry,
  group: string,
  version: string,
): JsonObject | undefined {
  const types = typesIn(registry, group, version);
  if (types.length === 0) return undefined;
  const resources: JsonObject[] = [];
  for (const t of types) {
    const r: JsonObject = {
      name: t.plural,
      singularName: t.singular,
      namespaced: t.namespaced,
      kind: t.kind,
      verbs: t.verbs,
    };
    if (t.shortNames.length > 0) r.shortNames = t.shortNames;
    if (t.categories.length > 0) r.categories = t.categories;
    resources.push(r);
    if (t.statusSubresource) {
      resources.push({
        name: `${t.plural}/status`,
        singularName: '',
        namespaced: t.namespaced,
        kind: t.kind,
        verbs: ['get', 'patch', 'update'],
      });
    }
    if (hasScaleSubresource(t)) {
      resources.push({
        name: `${t.plural}/scale`,
        singularName: '',
        namespaced: t.namespaced,
        group: scaleResponseKind.group,
        version: scaleResponseKind.version,
        kind: scaleResponseKind.kind,
        verbs: ['get', 'patch', 'update'],
      });
    }
    if (t.id === '/pods') {
      resources.push({
        name: 'pods/binding',
        singularName: '',
        namespaced: true,
        kind: 'Binding',
        verbs: ['create'],
      });
    }
    if (t.id === '/serviceaccounts') {
      resources.push({
        name: 'serviceaccounts/token',
        singularName: '',
        namespaced: true,
        group: 'authentication.k8s.io',
        version: 'v1',
        kind: 'TokenRequest',
        verbs: ['create'],
      });
    }
  }
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion: group ? `${group}/${version}` : version,
    resources,
  };
}

function discoveryResource(t: ResourceType, version: string): JsonObject {
  const r: JsonObject = {
    resource: t.plural,
    responseKind: { group: t.group, version, kind: t.kind },
    scope: t.namespaced ? 'Namespaced' : 'Cluster',
    singularResource: t.singular,
    verbs: t.verbs,
  };
  if (t.shortNames.length > 0) r.shortNames = t.shortNames;
  if (t.categories.length > 0) r.categories = t.categories;
  const subresources: JsonObject[] = [];
  if (t.statusSubresource) {
    subresources.push({
      subresource: 'status',
      responseKind: { group: t.group, version, kind: t.kind },
      verbs: ['get', 'patch', 'update'],
    });
  }
  if (hasScaleSubresource(t))
    subresources.push({
      subresource: 'scale',
      responseKind: { ...scaleResponseKind },
      verbs: ['get', 'patch', 'update'],
    });
  if (t.id === '/pods')
    subresources.push({
      subresource: 'binding',
      responseKind: { group: '', version: 'v1', kind: 'Binding' },
      verbs: ['create'],
    });
  if (t.id === '/serviceaccounts')
    subresources.push({
      subresource: 'token',
      responseKind: { group: 'authentication.k8s.io', version: 'v1', kind: 'TokenRequest' },
      verbs: ['create'],
    });
  if (subresources.length > 0) r.subresources = subresources;
  return r;
}

/** APIGroupDiscoveryList for /api (legacy=true) or /apis. */
export function aggregatedDiscovery(
  registry: ResourceRegistry,
  legacy: boolean,
  apiVersion: 'v2' | 'v2beta1',
): JsonObject {
  const items: JsonObject[] = [];
  const groups = legacy
    ? [['', ['v1']] as const]
    : [...registry.groups()].sort(([a], [b]) => (a < b ? -1 : 1));
  for (const [group, versions] of groups) {
    items.push({
      metadata: { name: group, creationTimestamp: null },
      versions: sortedVersions([...versions]).map((v) => ({
        version: v,
        resources: typesIn(registry, group, v).map((t) => discoveryResource(t, v)),
        freshness: 'Current',
      })),
    });
  }
  return {
    kind: 'APIGroupDiscoveryList',
    apiVersion: `apidiscovery.k8s.io/${apiVersion}`,
    metadata: {},
    items,
  };
}
