import { ApiError, badRequest } from './api-status.js';
import type { JsonObject, JsonValue } from './json-value.js';

/**
 * kubectl's typed clients (`kubectl create namespace|configmap|secret|serviceaccount|service|
 * clusterrole|clusterrolebinding|role|rolebinding|deployment`) send bodies as
 * application/vnd.kubernetes.protobuf and never fall back to JSON. This decodes the
 * runtime.Unknown envelope and the fields of those kinds (field numbers from
 * k8s.io/api/.../generated.proto) into the JSON the rest of the server handles. A field this
 * table does not know, with a non-empty value, is refused (415) rather than dropped.
 */
type Scalar = 'string' | 'bytes' | 'int' | 'bool';
interface FieldSpec {
  name: string;
  kind: Scalar | 'message' | 'map' | 'intOrString' | 'time' | 'ignored';
  repeated?: boolean;
  message?: Schema;
  mapValue?: 'string' | 'bytes';
  /** Pointer fields (replicas): zero is a value, not "unset". */
  keepZero?: boolean;
}
type Schema = Record<number, FieldSpec>;

const str = (name: string): FieldSpec => ({ name, kind: 'string' });
const strs = (name: string): FieldSpec => ({ name, kind: 'string', repeated: true });
const int = (name: string, keepZero = false): FieldSpec => ({ name, kind: 'int', keepZero });
const bool = (name: string): FieldSpec => ({ name, kind: 'bool' });
const msg = (name: string, message: Schema, repeated = false): FieldSpec => ({
  name,
  kind: 'message',
  message,
  repeated,
});
const map = (name: string, mapValue: 'string' | 'bytes' = 'string'): FieldSpec => ({
  name,
  kind: 'map',
  mapValue,
});

const ownerReference: Schema = {
  1: str('kind'),
  3: str('name'),
  4: str('uid'),
  5: str('apiVersion'),
  6: bool('controller'),
  7: bool('blockOwnerDeletion'),
};
const objectMeta: Schema = {
  1: str('name'),
  2: str('generateName'),
  3: str('namespace'),
  4: str('selfLink'),
  5: str('uid'),
  6: str('resourceVersion'),
  7: int('generation'),
  8: { name: 'creationTimestamp', kind: 'time' },
  9: { name: 'deletionTimestamp', kind: 'time' },
  10: int('deletionGracePeriodSeconds'),
  11: map('labels'),
  12: map('annotations'),
  13: msg('ownerReferences', ownerReference, true),
  14: strs('finalizers'),
};
const labelSelector: Schema = { 1: map('matchLabels') };
const objectReference: Schema = {
  1: str('kind'),
  2: str('namespace'),
  3: str('name'),
  4: str('uid'),
  5: str('apiVersion'),
  6: str('resourceVersion'),
  7: str('fieldPath'),
};
const servicePort: Schema = {
  1: str('name'),
  2: str('protocol'),
  3: int('port'),
  4: { name: 'targetPort', kind: 'intOrString' },
  5: int('nodePort'),
  6: str('appProtocol'),
};
const serviceSpec: Schema = {
  1: msg('ports', servicePort, true),
  2: map('selector'),
  3: str('clusterIP'),
  4: str('type'),
  5: strs('externalIPs'),
  7: str('sessionAffinity'),
  8: str('loadBalancerIP'),
  9: strs('loadBalancerSourceRanges'),
  10: str('externalName'),
  11: str('externalTrafficPolicy'),
  12: int('healthCheckNodePort'),
  13: bool('publishNotReadyAddresses'),
  17: str('ipFamilyPolicy'),
  18: strs('clusterIPs'),
  19: strs('ipFamilies'),
  20: bool('allocateLoadBalancerNodePorts'),
  21: str('loadBalancerClass'),
  22: str('internalTrafficPolicy'),
};
const policyRule: Schema = {
  1: strs('verbs'),
  2: strs('apiGroups'),
  3: strs('resources'),
  4: strs('resourceNames'),
  5: strs('nonResourceURLs'),
};
const subject: Schema = { 1: str('kind'), 2: str('apiGroup'), 3: str('name'), 4: str('namespace') };
const roleRef: Schema = { 1: str('apiGroup'), 2: str('kind'), 3: str('name') };
const containerPort: Schema = {
  1: str('name'),
  2: int('hostPort'),
  3: int('containerPort'),
  4: str('protocol'),
  5: str('hostIP'),
};
const envVar: Schema = { 1: str('name'), 2: str('value') };
const container: Schema = {
  1: str('name'),
  2: str('image'),
  3: strs('command'),
  4: strs('args'),
  5: str('workingDir'),
  6: msg('ports', containerPort, true),
  7: msg('env', envVar, true),
  8: msg('resources', {}),
  13: str('terminationMessagePath'),
  14: str('imagePullPolicy'),
  16: bool('stdin'),
  17: bool('stdinOnce'),
  18: bool('tty'),
  20: str('terminationMessagePolicy'),
};
const podSpec: Schema = {
  2: msg('containers', container, true),
  3: str('restartPolicy'),
  6: str('dnsPolicy'),
  8: str('serviceAccountName'),
  9: str('serviceAccount'),
  10: str('nodeName'),
  11: bool('hostNetwork'),
  12: bool('hostPID'),
  13: bool('hostIPC'),
};
const podTemplateSpec: Schema = { 1: msg('metadata', objectMeta), 2: msg('spec', podSpec) };

const kinds: Record<string, Schema> = {
  'v1/Namespace': {
    1: msg('metadata', objectMeta),
    2: msg('spec', { 1: strs('finalizers') }),
    3: msg('status', { 1: str('phase') }),
  },
  'v1/ConfigMap': {
    1: msg('metadata', objectMeta),
    2: map('data'),
    3: map('binaryData', 'bytes'),
    4: bool('immutable'),
  },
  'v1/Secret': {
    1: msg('metadata', objectMeta),
    2: map('data', 'bytes'),
    3: str('type'),
    4: map('stringData'),
    5: bool('immutable'),
  },
  'v1/ServiceAccount': {
    1: msg('metadata', objectMeta),
    2: msg('secrets', objectReference, true),
    3: msg('imagePullSecrets', { 1: str('name') }, true),
    4: bool('automountServiceAccountToken'),
  },
  'v1/Service': {
    1: msg('metadata', objectMeta),
    2: msg('spec', serviceSpec),
    3: msg('status', { 1: msg('loadBalancer', {}) }),
  },
  'rbac.authorization.k8s.io/v1/ClusterRole': {
    1: msg('metadata', objectMeta),
    2: msg('rules', policyRule, true),
  },
  'rbac.authorization.k8s.io/v1/Role': { 1: msg('metadata', objectMeta), 2: msg('rules', policyRule, true) },
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': {
    1: msg('metadata', objectMeta),
    2: msg('subjects', subject, true),
    3: msg('roleRef', roleRef),
  },
  'rbac.authorization.k8s.io/v1/RoleBinding': {
    1: msg('metadata', objectMeta),
    2: msg('subjects', subject, true),
    3: msg('roleRef', roleRef),
  },
  'authorization.k8s.io/v1/SelfSubjectAccessReview': {
    1: msg('metadata', objectMeta),
    2: msg('spec', {
      1: msg('resourceAttributes', {
        1: str('namespace'),
        2: str('verb'),
        3: str('group'),
        4: str('version'),
        5: str('resource'),
        6: str('subresource'),
        7: str('name'),
      }),
      2: msg('nonResourceAttributes', { 1: str('path'), 2: str('verb') }),
    }),
    3: { name: 'status', kind: 'ignored' },
  },
  'authorization.k8s.io/v1/SelfSubjectRulesReview': {
    1: msg('metadata', objectMeta),
    2: msg('spec', { 1: str('namespace') }),
    3: { name: 'status', kind: 'ignored' },
  },
  // A review's status is the server's answer; whatever a client sends there is not read.
  'authentication.k8s.io/v1/SelfSubjectReview': {
    1: msg('metadata', objectMeta),
    2: { name: 'status', kind: 'ignored' },
  },
  'authentication.k8s.io/v1/TokenRequest': {
    1: msg('metadata', objectMeta),
    2: msg('spec', {
      1: strs('audiences'),
      3: msg('boundObjectRef', { 1: str('kind'), 2: str('apiVersion'), 3: str('name'), 4: str('uid') }),
      4: int('expirationSeconds'),
    }),
    3: { name: 'status', kind: 'ignored' },
  },
  'apps/v1/Deployment': {
    1: msg('metadata', objectMeta),
    2: msg('spec', {
      1: int('replicas', true),
      2: msg('selector', labelSelector),
      3: msg('template', podTemplateSpec),
      4: msg('strategy', { 1: str('type') }),
      5: int('minReadySeconds'),
      7: bool('paused'),
    }),
    3: msg('status', {}),
  },
};

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}
  varint(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (this.pos >= this.buf.length) throw badRequest('truncated protobuf body');
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
      if (shift > 63) throw badRequest('malformed protobuf varint');
    }
  }
  bytes(): Buffer {
    const len = this.varint();
    if (this.pos + len > this.buf.length) throw badRequest('truncated protobuf body');
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }
}

function toSigned(n: number): number {
  return n >= 2 ** 63 ? n - 2 ** 64 : n;
}

function decodeMessage(buf: Buffer, schema: Schema, path: string, depth: number): JsonObject {
  if (depth > 40) throw badRequest('protobuf body nested too deeply');
  const r = new Reader(buf);
  const out: JsonObject = {};
  while (r.pos < buf.length) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wire = key % 8;
    const spec = schema[field];
    let raw: number | Buffer;
    if (wire === 0) raw = r.varint();
    else if (wire === 2) raw = r.bytes();
    else throw badRequest(`unsupported protobuf wire type ${wire} at ${path}`);
    if (!spec) {
      const empty = typeof raw === 'number' ? raw === 0 : raw.length === 0;
      if (empty) continue;
      throw new ApiError(
        415,
        'UnsupportedMediaType',
        `protobuf field ${field} of ${path} is not supported by this server; send application/json instead`,
      );
    }
    const value = decodeField(raw, spec, `${path}.${spec.name}`, depth);
    if (value === undefined) {
      if (spec.repeated && !(spec.name in out)) continue;
      continue;
    }
    if (spec.kind === 'map') {
      const m = (out[spec.name] as JsonObject | undefined) ?? {};
      const [k, v] = value as [string, JsonValue];
      m[k] = v;
      out[spec.name] = m;
    } else if (spec.repeated) {
      const list = (out[spec.name] as JsonValue[] | undefined) ?? [];
      list.push(value as JsonValue);
      out[spec.name] = list;
    } else out[spec.name] = value as JsonValue;
  }
  return out;
}

function decodeField(
  raw: number | Buffer,
  spec: FieldSpec,
  path: string,
  depth: number,
): JsonValue | [string, JsonValue] | undefined {
  const wantBytes = (): Buffer => {
    if (typeof raw === 'number') throw badRequest(`protobuf field ${path} has the wrong wire type`);
    return raw;
  };
  switch (spec.kind) {
    case 'string': {
      const s = wantBytes().toString('utf8');
      return s === '' && !spec.repeated ? undefined : s;
    }
    case 'bytes':
      return wantBytes().toString('base64');
    case 'int': {
      if (typeof raw !== 'number') throw badRequest(`protobuf field ${path} has the wrong wire type`);
      const n = toSigned(raw);
      return n === 0 && !spec.keepZero ? undefined : n;
    }
    case 'bool':
      if (typeof raw !== 'number') throw badRequest(`protobuf field ${path} has the wrong wire type`);
      return raw === 0 ? undefined : true;
    case 'message': {
      const m = decodeMessage(wantBytes(), spec.message!, path, depth + 1);
      return Object.keys(m).length === 0 && !spec.repeated && path.split('.').length > 3 ? undefined : m;
    }
    case 'map': {
      const entry = decodeMessage(
        wantBytes(),
        {
          1: str('key'),
          2: spec.mapValue === 'bytes' ? { name: 'value', kind: 'bytes' } : { name: 'value', kind: 'string' },
        },
        path,
        depth + 1,
      );
      return [String(entry.key ?? ''), (entry.value as JsonValue) ?? ''];
    }
    case 'intOrString': {
      const v = decodeMessage(
        wantBytes(),
        { 1: int('type'), 2: int('intVal'), 3: str('strVal') },
        path,
        depth + 1,
      );
      if (v.type === 1) return (v.strVal as string | undefined) ?? '';
      return (v.intVal as number | undefined) ?? 0;
    }
    case 'ignored':
      return undefined;
    case 'time': {
      const v = decodeMessage(wantBytes(), { 1: int('seconds'), 2: int('nanos') }, path, depth + 1);
      return typeof v.seconds === 'number'
        ? `${new Date(v.seconds * 1000).toISOString().slice(0, 19)}Z`
        : undefined;
    }
  }
}

const magic = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

export function decodeProtobufObject(body: Buffer): JsonObject {
  if (body.length < 4 || !body.subarray(0, 4).equals(magic))
    throw badRequest('the protobuf body does not start with the k8s\\0 envelope');
  const envelope = decodeMessage(
    body.subarray(4),
    {
      1: msg('typeMeta', { 1: str('apiVersion'), 2: str('kind') }),
      2: { name: 'raw', kind: 'bytes' },
      3: str('contentEncoding'),
      4: str('contentType'),
    },
    'Unknown',
    0,
  );
  const typeMeta = (envelope.typeMeta ?? {}) as JsonObject;
  const apiVersion = String(typeMeta.apiVersion ?? '');
  const kind = String(typeMeta.kind ?? '');
  const schema = kinds[`${apiVersion}/${kind}`];
  if (!schema) {
    throw new ApiError(
      415,
      'UnsupportedMediaType',
      `protobuf bodies for ${kind || 'this kind'} (${apiVersion}) are not supported by this server; send application/json instead`,
    );
  }
  if (envelope.contentEncoding)
    throw new ApiError(
      415,
      'UnsupportedMediaType',
      `protobuf content encoding ${String(envelope.contentEncoding)} is not supported`,
    );
  const raw = Buffer.from(String(envelope.raw ?? ''), 'base64');
  const object = decodeMessage(raw, schema, kind, 0);
  return { apiVersion, kind, ...object };
}
