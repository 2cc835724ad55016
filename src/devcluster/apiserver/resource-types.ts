import { isObject, type JsonObject } from './json-value.js';
import {
  builtinMergeSchemas,
  genericSchema,
  type MergeSchema,
  mergeSchemaFromOpenApi,
} from './merge-schema.js';

/** One REST resource the server serves: pods, services, widgets.example.com... */
export interface ResourceType {
  /** Unique and version-independent: "/pods", "apps/deployments", "example.com/widgets". */
  id: string;
  group: string;
  version: string;
  /** Every version served (CRDs may serve several; objects are stored once). */
  versions: string[];
  kind: string;
  listKind: string;
  plural: string;
  singular: string;
  namespaced: boolean;
  shortNames: string[];
  categories: string[];
  verbs: string[];
  statusSubresource: boolean;
  /** A review (access or identity): answered on create, never stored, no other verb. */
  review?: boolean;
  /** metadata.generation is set and bumped on spec changes. */
  tracksGeneration: boolean;
  /** Field selector fields beyond metadata.name and metadata.namespace. */
  selectableFields: Record<string, (obj: JsonObject) => string>;
  mergeSchema: MergeSchema;
  custom?: CustomResourceInfo;
}

export interface PrinterColumn {
  name: string;
  type: string;
  jsonPath: string;
  description?: string;
  priority?: number;
  format?: string;
}

export interface CustomResourceInfo {
  crdName: string;
  schemas: Record<string, unknown>;
  printerColumns: Record<string, PrinterColumn[]>;
}

export function apiVersionOf(t: ResourceType, version = t.version): string {
  return t.group ? `${t.group}/${version}` : version;
}

const allVerbs = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

function path(obj: JsonObject, ...keys: string[]): string {
  let node: unknown = obj;
  for (const k of keys) node = isObject(node) ? node[k] : undefined;
  if (node === undefined || node === null) return '';
  return typeof node === 'string' ? node : String(node);
}

interface BuiltinSpec {
  group: string;
  version: string;
  kind: string;
  plural: string;
  namespaced: boolean;
  shortNames?: string[];
  categories?: string[];
  status?: boolean;
  generation?: boolean;
  fields?: Record<string, (obj: JsonObject) => string>;
  review?: boolean;
}

const builtinSpecs: BuiltinSpec[] = [
  {
    group: '',
    version: 'v1',
    kind: 'Namespace',
    plural: 'namespaces',
    namespaced: false,
    shortNames: ['ns'],
    status: true,
    fields: { 'status.phase': (o) => path(o, 'status', 'phase') },
  },
  {
    group: '',
    version: 'v1',
    kind: 'Node',
    plural: 'nodes',
    namespaced: false,
    shortNames: ['no'],
    status: true,
    fields: { 'spec.unschedulable': (o) => String(path(o, 'spec', 'unschedulable') === 'true') },
  },
  {
    group: '',
    version: 'v1',
    kind: 'Pod',
    plural: 'pods',
    namespaced: true,
    shortNames: ['po'],
    categories: ['all'],
    status: true,
    fields: {
      'spec.nodeName': (o) => path(o, 'spec', 'nodeName'),
      'spec.restartPolicy': (o) => path(o, 'spec', 'restartPolicy'),
      'spec.schedulerName': (o) => path(o, 'spec', 'schedulerName'),
      'spec.serviceAccountName': (o) => path(o, 'spec', 'serviceAccountName'),
      'spec.hostNetwork': (o) => String(path(o, 'spec', 'hostNetwork') === 'true'),
      'status.phase': (o) => path(o, 'status', 'phase'),
      'status.podIP': (o) => path(o, 'status', 'podIP'),
      'status.nominatedNodeName': (o) => path(o, 'status', 'nominatedNodeName'),
    },
  },
  {
    group: '',
    version: 'v1',
    kind: 'Service',
    plural: 'services',
    namespaced: true,
    shortNames: ['svc'],
    categories: ['all'],
    status: true,
    fields: {
      'spec.clusterIP': (o) => path(o, 'spec', 'clusterIP'),
      'spec.type': (o) => path(o, 'spec', 'type'),
    },
  },
  {
    group: '',
    version: 'v1',
    kind: 'ServiceAccount',
    plural: 'serviceaccounts',
    namespaced: true,
    shortNames: ['sa'],
  },
  { group: '', version: 'v1', kind: 'ConfigMap', plural: 'configmaps', namespaced: true, shortNames: ['cm'] },
  {
    group: '',
    version: 'v1',
    kind: 'Secret',
    plural: 'secrets',
    namespaced: true,
    fields: { type: (o) => path(o, 'type') },
  },
  {
    group: '',
    version: 'v1',
    kind: 'Event',
    plural: 'events',
    namespaced: true,
    shortNames: ['ev'],
    fields: Object.fromEntries([
      ...['kind', 'namespace', 'name', 'uid', 'apiVersion', 'resourceVersion', 'fieldPath'].map(
        (f) => [`involvedObject.${f}`, (o: JsonObject) => path(o, 'involvedObject', f)] as const,
      ),
      ['reason', (o: JsonObject) => path(o, 'reason')] as const,
      ['reportingComponent', (o: JsonObject) => path(o, 'reportingComponent')] as const,
      ['source', (o: JsonObject) => path(o, 'source', 'component')] as const,
      ['type', (o: JsonObject) => path(o, 'type')] as const,
    ]),
  },
  {
    group: 'discovery.k8s.io',
    version: 'v1',
    kind: 'EndpointSlice',
    plural: 'endpointslices',
    namespaced: true,
    generation: true,
    fields: { addressType: (o) => path(o, 'addressType') },
  },
  {
    group: 'networking.k8s.io',
    version: 'v1',
    kind: 'NetworkPolicy',
    plural: 'networkpolicies',
    namespaced: true,
    shortNames: ['netpol'],
    generation: true,
  },
  {
    group: 'apiextensions.k8s.io',
    version: 'v1',
    kind: 'CustomResourceDefinition',
    plural: 'customresourcedefinitions',
    namespaced: false,
    shortNames: ['crd', 'crds'],
    categories: ['api-extensions'],
    status: true,
    generation: true,
  },
  {
    group: 'apps',
    version: 'v1',
    kind: 'Deployment',
    plural: 'deployments',
    namespaced: true,
    shortNames: ['deploy'],
    categories: ['all'],
    status: true,
    generation: true,
  },
  {
    group: 'apps',
    version: 'v1',
    kind: 'DaemonSet',
    plural: 'daemonsets',
    namespaced: true,
    shortNames: ['ds'],
    categories: ['all'],
    status: true,
    generation: true,
  },
  {
    group: 'apps',
    version: 'v1',
    kind: 'StatefulSet',
    plural: 'statefulsets',
    namespaced: true,
    shortNames: ['sts'],
    categories: ['all'],
    status: true,
    generation: true,
  },
  {
    group: 'apps',
    version: 'v1',
    kind: 'ReplicaSet',
    plural: 'replicasets',
    namespaced: true,
    shortNames: ['rs'],
    categories: ['all'],
    status: true,
    generation: true,
  },
  {
    group: 'rbac.authorization.k8s.io',
    version: 'v1',
    kind: 'ClusterRole',
    plural: 'clusterroles',
    namespaced: false,
  },
  {
    group: 'rbac.authorization.k8s.io',
    version: 'v1',
    kind: 'ClusterRoleBinding',
    plural: 'clusterrolebindings',
    namespaced: false,
  },
  { group: 'rbac.authorization.k8s.io', version: 'v1', kind: 'Role', plural: 'roles', namespaced: true },
  {
    group: 'rbac.authorization.k8s.io',
    version: 'v1',
    kind: 'RoleBinding',
    plural: 'rolebindings',
    namespaced: true,
  },
  {
    group: 'authorization.k8s.io',
    version: 'v1',
    kind: 'SelfSubjectAccessReview',
    plural: 'selfsubjectaccessreviews',
    namespaced: false,
    review: true,
  },
  {
    group: 'authorization.k8s.io',
    version: 'v1',
    kind: 'SelfSubjectRulesReview',
    plural: 'selfsubjectrulesreviews',
    namespaced: false,
    review: true,
  },
  {
    group: 'authentication.k8s.io',
    version: 'v1',
    kind: 'SelfSubjectReview',
    plural: 'selfsubjectreviews',
    namespaced: false,
    review: true,
  },
  {
    group: 'coordination.k8s.io',
    version: 'v1',
    kind: 'Lease',
    plural: 'leases',
    namespaced: true,
  },
];

function builtinType(s: BuiltinSpec): ResourceType {
  return {
    id: `${s.group}/${s.plural}`,
    group: s.group,
    version: s.version,
    versions: [s.version],
    kind: s.kind,
    listKind: `${s.kind}List`,
    plural: s.plural,
    singular: s.kind.toLowerCase(),
    namespaced: s.namespaced,
    shortNames: s.shortNames ?? [],
    categories: s.categories ?? [],
    verbs: s.review ? ['create'] : allVerbs,
    statusSubresource: s.status ?? false,
    review: s.review ?? false,
    tracksGeneration: s.generation ?? false,
    selectableFields: s.fields ?? {},
    mergeSchema: builtinMergeSchemas[`${s.group}/${s.kind}`] ?? genericSchema,
  };
}

interface CrdVersion {
  name: string;
  served?: boolean;
  storage?: boolean;
  schema?: { openAPIV3Schema?: unknown };
  subresources?: { status?: unknown };
  additionalPrinterColumns?: PrinterColumn[];
  selectableFields?: Array<{ jsonPath: string }>;
}

/** The resource a (validated) CRD defines. */
export function customResourceType(crd: JsonObject): ResourceType {
  const spec = crd.spec as JsonObject;
  const names = spec.names as JsonObject;
  const versions = (spec.versions as unknown as CrdVersion[]).filter((v) => v.served !== false);
  const storage = versions.find((v) => v.storage) ?? versions[0]!;
  const group = spec.group as string;
  const plural = names.plural as string;
  const kind = names.kind as string;
  const schemas: Record<string, unknown> = {};
  const printerColumns: Record<string, PrinterColumn[]> = {};
  for (const v of versions) {
    schemas[v.name] = v.schema?.openAPIV3Schema;
    printerColumns[v.name] = v.additionalPrinterColumns ?? [];
  }
  const selectableFields: Record<string, (obj: JsonObject) => string> = {};
  for (const f of storage.selectableFields ?? []) {
    const keys = f.jsonPath.replace(/^\./, '').split('.');
    selectableFields[keys.join('.')] = (o) => path(o, ...keys);
  }
  return {
    id: `${group}/${plural}`,
    group,
    version: storage.name,
    versions: versions.map((v) => v.name),
    kind,
    listKind: (names.listKind as string | undefined) ?? `${kind}List`,
    plural,
    singular: (names.singular as string | undefined) ?? kind.toLowerCase(),
    namespaced: spec.scope === 'Namespaced',
    shortNames: (names.shortNames as string[] | undefined) ?? [],
    categories: (names.categories as string[] | undefined) ?? [],
    verbs: allVerbs,
    statusSubresource: storage.subresources?.status !== undefined,
    tracksGeneration: true,
    selectableFields,
    mergeSchema: mergeSchemaFromOpenApi(storage.schema?.openAPIV3Schema),
    custom: { crdName: (crd.metadata as JsonObject).name as string, schemas, printerColumns },
  };
}

/** Every resource served, looked up the ways URLs and manifests name them. */
export class ResourceRegistry {
  private readonly byId = new Map<string, ResourceType>();

  constructor() {
    for (const s of builtinSpecs) this.add(builtinType(s));
  }

  add(t: ResourceType): void {
    this.byId.set(t.id, t);
  }

  remove(id: string): void {
    this.byId.delete(id);
  }

  all(): ResourceType[] {
    return [...this.byId.values()];
  }

  byGroupResource(group: string, plural: string): ResourceType | undefined {
    return this.byId.get(`${group}/${plural}`);
  }

  /** The type served at /api[s]/<group>/<version>/<plural>, if that version is served. */
  lookup(group: string, version: string, plural: string): ResourceType | undefined {
    const t = this.byId.get(`${group}/${plural}`);
    return t?.versions.includes(version) ? t : undefined;
  }

  byKind(group: string, kind: string): ResourceType | undefined {
    for (const t of this.byId.values()) if (t.group === group && t.kind === kind) return t;
    return undefined;
  }

  groups(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const t of this.byId.values()) {
      if (!t.group) continue;
      const versions = out.get(t.group) ?? [];
      for (const v of t.versions) if (!versions.includes(v)) versions.push(v);
      out.set(t.group, versions);
    }
    return out;
  }
}
