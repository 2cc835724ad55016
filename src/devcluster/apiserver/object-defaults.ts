import { isObject, type JsonObject, type JsonValue } from './json-value.js';
import type { ResourceType } from './resource-types.js';

/**
 * The defaults kube-apiserver fills in (SetDefaults_* in k8s.io/kubernetes/pkg/apis/core/v1 and
 * apps/v1, plus the admission plugins every cluster runs), so that objects read back look like
 * a real cluster's and kubectl's three-way apply diffs agree with the server.
 */
function obj(parent: JsonObject, key: string): JsonObject {
  const v = parent[key];
  if (isObject(v)) return v;
  const created: JsonObject = {};
  parent[key] = created;
  return created;
}

function setDefault(o: JsonObject, key: string, value: JsonValue): void {
  if (o[key] === undefined || o[key] === null || o[key] === '') o[key] = value;
}

function imagePullPolicyFor(image: string): string {
  const lastSegment = image.slice(image.lastIndexOf('/') + 1);
  if (lastSegment.includes('@')) return 'IfNotPresent';
  const colon = lastSegment.indexOf(':');
  const tag = colon >= 0 ? lastSegment.slice(colon + 1) : '';
  return tag === '' || tag === 'latest' ? 'Always' : 'IfNotPresent';
}

function defaultContainer(c: JsonValue): void {
  if (!isObject(c)) return;
  if (typeof c.image === 'string') setDefault(c, 'imagePullPolicy', imagePullPolicyFor(c.image));
  setDefault(c, 'terminationMessagePath', '/dev/termination-log');
  setDefault(c, 'terminationMessagePolicy', 'File');
  if (!isObject(c.resources)) c.resources = {};
  if (Array.isArray(c.ports)) for (const p of c.ports) if (isObject(p)) setDefault(p, 'protocol', 'TCP');
  for (const probe of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
    const pr = c[probe];
    if (!isObject(pr)) continue;
    setDefault(pr, 'timeoutSeconds', 1);
    setDefault(pr, 'periodSeconds', 10);
    setDefault(pr, 'successThreshold', 1);
    setDefault(pr, 'failureThreshold', 3);
  }
}

export function defaultPodSpec(spec: JsonObject): void {
  setDefault(spec, 'restartPolicy', 'Always');
  setDefault(spec, 'dnsPolicy', 'ClusterFirst');
  setDefault(spec, 'terminationGracePeriodSeconds', 30);
  setDefault(spec, 'schedulerName', 'default-scheduler');
  setDefault(spec, 'serviceAccountName', 'default');
  setDefault(spec, 'serviceAccount', spec.serviceAccountName as string);
  setDefault(spec, 'enableServiceLinks', true);
  setDefault(spec, 'preemptionPolicy', 'PreemptLowerPriority');
  setDefault(spec, 'priority', 0);
  if (!isObject(spec.securityContext)) spec.securityContext = {};
  for (const key of ['containers', 'initContainers']) {
    const list = spec[key];
    if (Array.isArray(list)) list.forEach(defaultContainer);
  }
}

/** The DefaultTolerationSeconds admission plugin's two tolerations. */
function addDefaultTolerations(spec: JsonObject): void {
  const tolerations = Array.isArray(spec.tolerations) ? spec.tolerations : [];
  for (const key of ['node.kubernetes.io/not-ready', 'node.kubernetes.io/unreachable']) {
    if (tolerations.some((t) => isObject(t) && t.key === key)) continue;
    tolerations.push({ key, operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 });
  }
  spec.tolerations = tolerations;
}

function defaultService(o: JsonObject): void {
  const spec = obj(o, 'spec');
  setDefault(spec, 'type', 'ClusterIP');
  const type = spec.type as string;
  setDefault(spec, 'sessionAffinity', 'None');
  if (Array.isArray(spec.ports)) {
    for (const p of spec.ports) {
      if (!isObject(p)) continue;
      setDefault(p, 'protocol', 'TCP');
      if (p.targetPort === undefined || p.targetPort === null || p.targetPort === 0 || p.targetPort === '') {
        if (p.port !== undefined) p.targetPort = p.port;
      }
    }
  }
  if (type !== 'ExternalName') {
    setDefault(spec, 'internalTrafficPolicy', 'Cluster');
    setDefault(spec, 'ipFamilies', ['IPv4']);
    setDefault(spec, 'ipFamilyPolicy', 'SingleStack');
  }
  if (type === 'NodePort' || type === 'LoadBalancer') setDefault(spec, 'externalTrafficPolicy', 'Cluster');
  if (type === 'LoadBalancer') setDefault(spec, 'allocateLoadBalancerNodePorts', true);
  if (spec.sessionAffinity === 'ClientIP') {
    const cfg = obj(spec, 'sessionAffinityConfig');
    const clientIP = obj(cfg, 'clientIP');
    setDefault(clientIP, 'timeoutSeconds', 10800);
  }
}

function defaultPodTemplate(spec: JsonObject): void {
  const template = spec.template;
  if (!isObject(template)) return;
  if (isObject(template.spec)) defaultPodSpec(template.spec);
}

/** Defaults for a new or updated object of a built-in kind (in place on a fresh copy). */
export function applyDefaults(t: ResourceType, o: JsonObject): void {
  switch (`${t.group}/${t.kind}`) {
    case '/Pod': {
      const spec = obj(o, 'spec');
      defaultPodSpec(spec);
      addDefaultTolerations(spec);
      break;
    }
    case '/Service':
      defaultService(o);
      break;
    case '/Namespace': {
      const meta = obj(o, 'metadata');
      const labels = obj(meta, 'labels');
      labels['kubernetes.io/metadata.name'] = meta.name as string;
      const spec = obj(o, 'spec');
      setDefault(spec, 'finalizers', ['kubernetes']);
      break;
    }
    case '/Secret': {
      setDefault(o, 'type', 'Opaque');
      const stringData = o.stringData;
      if (isObject(stringData)) {
        const data = obj(o, 'data');
        for (const [k, v] of Object.entries(stringData))
          data[k] = Buffer.from(String(v), 'utf8').toString('base64');
        delete o.stringData;
      }
      break;
    }
    case 'apps/Deployment': {
      const spec = obj(o, 'spec');
      setDefault(spec, 'replicas', 1);
      setDefault(spec, 'revisionHistoryLimit', 10);
      setDefault(spec, 'progressDeadlineSeconds', 600);
      const strategy = obj(spec, 'strategy');
      setDefault(strategy, 'type', 'RollingUpdate');
      if (strategy.type === 'RollingUpdate') {
        const ru = obj(strategy, 'rollingUpdate');
        setDefault(ru, 'maxUnavailable', '25%');
        setDefault(ru, 'maxSurge', '25%');
      }
      defaultPodTemplate(spec);
      break;
    }
    case 'apps/DaemonSet': {
      const spec = obj(o, 'spec');
      setDefault(spec, 'revisionHistoryLimit', 10);
      const strategy = obj(spec, 'updateStrategy');
      setDefault(strategy, 'type', 'RollingUpdate');
      if (strategy.type === 'RollingUpdate') {
        const ru = obj(strategy, 'rollingUpdate');
        setDefault(ru, 'maxUnavailable', 1);
        setDefault(ru, 'maxSurge', 0);
      }
      defaultPodTemplate(spec);
      break;
    }
    case 'apps/StatefulSet':
    case 'apps/ReplicaSet': {
      const spec = obj(o, 'spec');
      setDefault(spec, 'replicas', 1);
      defaultPodTemplate(spec);
      break;
    }
    default:
      break;
  }
}
