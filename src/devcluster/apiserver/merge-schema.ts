/**
 * How each field of an object merges: which lists are keyed maps (containers by name, ports by
 * port), which are sets (finalizers), which are replaced whole. Strategic merge patch and
 * server-side apply both read it. Built-in kinds are described here by hand, following the
 * patchMergeKey / listType tags of k8s.io/api; custom resources get theirs from the CRD's
 * openAPIV3Schema (x-kubernetes-list-type, x-kubernetes-list-map-keys, x-kubernetes-map-type).
 */
export type ListKind = { type: 'map'; keys: string[] } | { type: 'set' } | { type: 'atomic' };

export interface MergeSchema {
  fields?: Record<string, MergeSchema>;
  /** Schema of every value of a map with free keys (labels, data, additionalProperties). */
  values?: MergeSchema;
  items?: MergeSchema;
  list?: ListKind;
  /** The object is replaced whole (x-kubernetes-map-type: atomic). */
  atomic?: boolean;
  /** Strategic merge patch's retainKeys strategy (volumes, deployment strategy). */
  retainKeys?: boolean;
}

export function childSchema(schema: MergeSchema | undefined, key: string): MergeSchema | undefined {
  if (!schema) return undefined;
  return schema.fields?.[key] ?? schema.values;
}

const keyed = (keys: string[], items?: MergeSchema): MergeSchema => ({
  list: { type: 'map', keys },
  items: items ?? {},
});
const set: MergeSchema = { list: { type: 'set' } };
const conditions = keyed(['type']);

export const objectMetaSchema: MergeSchema = {
  fields: {
    labels: { values: {} },
    annotations: { values: {} },
    finalizers: set,
    ownerReferences: keyed(['uid']),
    managedFields: { list: { type: 'atomic' } },
  },
};

const containerSchema: MergeSchema = {
  fields: {
    ports: keyed(['containerPort', 'protocol']),
    env: keyed(['name']),
    volumeMounts: keyed(['mountPath']),
    volumeDevices: keyed(['devicePath']),
    resizePolicy: { list: { type: 'atomic' } },
  },
};

export const podSpecSchema: MergeSchema = {
  fields: {
    containers: keyed(['name'], containerSchema),
    initContainers: keyed(['name'], containerSchema),
    ephemeralContainers: keyed(['name'], containerSchema),
    volumes: keyed(['name'], { retainKeys: true }),
    imagePullSecrets: keyed(['name']),
    hostAliases: keyed(['ip']),
    topologySpreadConstraints: keyed(['topologyKey', 'whenUnsatisfiable']),
    schedulingGates: keyed(['name']),
    resourceClaims: keyed(['name']),
    readinessGates: { list: { type: 'atomic' } },
    tolerations: { list: { type: 'atomic' } },
  },
};

const podTemplateSchema: MergeSchema = { fields: { metadata: objectMetaSchema, spec: podSpecSchema } };

const withMeta = (rest: Record<string, MergeSchema>): MergeSchema => ({
  fields: { metadata: objectMetaSchema, ...rest },
});

const workloadStatus: MergeSchema = { fields: { conditions } };

/** Schemas of the built-in kinds that have keyed lists; other kinds merge maps and replace lists. */
export const builtinMergeSchemas: Record<string, MergeSchema> = {
  '/Pod': withMeta({
    spec: podSpecSchema,
    status: { fields: { conditions, podIPs: keyed(['ip']), hostIPs: keyed(['ip']) } },
  }),
  '/Service': withMeta({
    spec: { fields: { ports: keyed(['port', 'protocol']) } },
    status: { fields: { conditions } },
  }),
  '/Node': withMeta({
    spec: { fields: { podCIDRs: set } },
    status: { fields: { conditions, addresses: keyed(['type']) } },
  }),
  '/Namespace': withMeta({ status: { fields: { conditions } } }),
  'apps/Deployment': withMeta({
    spec: { fields: { template: podTemplateSchema, strategy: { retainKeys: true } } },
    status: workloadStatus,
  }),
  'apps/DaemonSet': withMeta({ spec: { fields: { template: podTemplateSchema } }, status: workloadStatus }),
  'apps/StatefulSet': withMeta({ spec: { fields: { template: podTemplateSchema } }, status: workloadStatus }),
  'apps/ReplicaSet': withMeta({ spec: { fields: { template: podTemplateSchema } }, status: workloadStatus }),
  'apiextensions.k8s.io/CustomResourceDefinition': withMeta({
    spec: { fields: { versions: keyed(['name']) } },
    status: { fields: { conditions } },
  }),
};

export const genericSchema: MergeSchema = withMeta({});

interface OpenApiSchema {
  type?: string;
  properties?: Record<string, OpenApiSchema>;
  additionalProperties?: OpenApiSchema | boolean;
  items?: OpenApiSchema;
  'x-kubernetes-list-type'?: string;
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-map-type'?: string;
}

/** A CRD version's openAPIV3Schema → merge schema (metadata always standard). */
export function mergeSchemaFromOpenApi(schema: unknown): MergeSchema {
  const convert = (s: OpenApiSchema | undefined, depth: number): MergeSchema => {
    if (!s || typeof s !== 'object' || depth > 64) return {};
    const out: MergeSchema = {};
    if (s.properties) {
      out.fields = {};
      for (const [k, v] of Object.entries(s.properties)) out.fields[k] = convert(v, depth + 1);
    }
    if (s.additionalProperties && typeof s.additionalProperties === 'object') {
      out.values = convert(s.additionalProperties, depth + 1);
    }
    if (s.items) out.items = convert(s.items, depth + 1);
    if (s.type === 'array') {
      const lt = s['x-kubernetes-list-type'];
      if (lt === 'map') out.list = { type: 'map', keys: s['x-kubernetes-list-map-keys'] ?? [] };
      else if (lt === 'set') out.list = { type: 'set' };
      else out.list = { type: 'atomic' };
    }
    if (s['x-kubernetes-map-type'] === 'atomic') out.atomic = true;
    return out;
  };
  const root = convert(schema as OpenApiSchema, 0);
  root.fields = { ...(root.fields ?? {}), metadata: objectMetaSchema };
  return root;
}
