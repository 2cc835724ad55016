/**
 * The edge: Kubernetes objects as they come off the wire (unknown) → the agent's validated,
 * compact shapes (services/types.ts). Everything the agent reads from the API server passes
 * through here once; a malformed object yields a reason, never an exception.
 *
 * The API server validates objects already, so a rejection here means a bug or a version skew
 * somewhere; the agent then logs it and keeps the object's last good version.
 */
import { canonicalCIDR, canonicalIP } from '../../datapath/codec.js';
import type {
  EndpointInfo,
  EndpointPortInfo,
  EndpointSliceInfo,
  IpFamily,
  LbProtocol,
  NodeInfo,
  ServiceInfo,
  ServicePortInfo,
  ServiceType,
  TrafficPolicy,
} from '../services/types.js';

/** The label that ties an EndpointSlice to its Service (discovery.k8s.io/v1). */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/** Default sessionAffinityConfig.clientIP.timeoutSeconds (3 hours), as the API server sets it. */
export const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10_800;
const MAX_AFFINITY_TIMEOUT_SECONDS = 86_400;

export type Parsed<T> =
  | { ok: true; value: T }
  /** Malformed: `reason` says which field and why. */
  | { ok: false; invalid: true; reason: string }
  /** Well-formed but nothing the load-balancer uses (an FQDN EndpointSlice, ...). */
  | { ok: false; invalid: false; reason: string };

class Invalid extends Error {}

function fail(reason: string): never {
  throw new Invalid(reason);
}

function guard<T>(parse: () => T): Parsed<T> {
  try {
    return { ok: true, value: parse() };
  } catch (err) {
    if (err instanceof Invalid) return { ok: false, invalid: true, reason: err.message };
    throw err;
  }
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function obj(v: unknown, field: string): Obj {
  if (!isObj(v)) fail(`${field} must be an object`);
  return v;
}

function optObj(v: unknown, field: string): Obj | undefined {
  return v === undefined || v === null ? undefined : obj(v, field);
}

function optArray(v: unknown, field: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) fail(`${field} must be a list`);
  return v;
}

function str(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '') fail(`${field} must be a non-empty string`);
  return v;
}

function optStr(v: unknown, field: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') fail(`${field} must be a string`);
  return v;
}

function optBool(v: unknown, field: string): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') fail(`${field} must be true or false`);
  return v;
}

function int(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    fail(`${field} must be an integer from ${min} to ${max}, not ${JSON.stringify(v)}`);
  }
  return v;
}

function protocol(v: unknown, field: string): LbProtocol {
  if (v === undefined || v === null) return 'TCP';
  if (v === 'TCP' || v === 'UDP' || v === 'SCTP') return v;
  fail(`${field} must be TCP, UDP or SCTP, not ${JSON.stringify(v)}`);
}

function policy(v: unknown, field: string): TrafficPolicy {
  if (v === undefined || v === null || v === '') return 'Cluster';
  if (v === 'Cluster' || v === 'Local') return v;
  fail(`${field} must be Cluster or Local, not ${JSON.stringify(v)}`);
}

function ip(v: unknown, field: string): { address: string; family: IpFamily } {
  if (typeof v !== 'string') fail(`${field} must be an IP address`);
  const c = canonicalIP(v);
  if (!c) fail(`${field} "${v}" is not an IP address`);
  return c;
}

function meta(raw: Obj, namespaced: boolean): { name: string; namespace: string } {
  const m = obj(raw.metadata, 'metadata');
  const name = str(m.name, 'metadata.name');
  const namespace = namespaced ? str(m.namespace, 'metadata.namespace') : '';
  return { name, namespace };
}

/** "namespace/name" of any object, for log lines about objects that failed validation. */
export function objectRef(raw: unknown): string {
  const m = isObj(raw) && isObj(raw.metadata) ? raw.metadata : {};
  const name = typeof m.name === 'string' ? m.name : '?';
  return typeof m.namespace === 'string' ? `${m.namespace}/${name}` : name;
}

const serviceTypes: readonly ServiceType[] = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'];

export function parseService(raw: unknown): Parsed<ServiceInfo> {
  return guard(() => {
    const o = obj(raw, 'Service');
    const { name, namespace } = meta(o, true);
    const spec = obj(o.spec, 'spec');
    const type = (spec.type ?? 'ClusterIP') as ServiceType;
    if (!serviceTypes.includes(type)) fail(`spec.type must be one of ${serviceTypes.join(', ')}`);
    const base: ServiceInfo = {
      namespace,
      name,
      type,
      clusterIPs: [],
      headless: false,
      ports: [],
      externalIPs: [],
      loadBalancerIPs: [],
      loadBalancerSourceRanges: [],
      externalTrafficPolicy: 'Cluster',
      internalTrafficPolicy: 'Cluster',
    };
    if (type === 'ExternalName') return base; // a DNS alias: no datapath state at all

    const listed = optArray(spec.clusterIPs, 'spec.clusterIPs');
    const ips = listed.length > 0 ? listed : spec.clusterIP ? [spec.clusterIP] : [];
    if (ips.includes('None')) {
      base.headless = true;
      return base;
    }
    // Arrays are built at their final length (map, not push): a pushed-to array keeps spare
    // capacity (17 slots for one element), which 10,000 cached Services pay for several times.
    const families = new Set<IpFamily>();
    base.clusterIPs = ips.map((v, i) => {
      const c = ip(v, `spec.clusterIPs[${i}]`);
      if (families.has(c.family)) fail(`spec.clusterIPs lists two IPv${c.family} addresses`);
      families.add(c.family);
      return c.address;
    });

    const seen = new Set<string>();
    base.ports = optArray(spec.ports, 'spec.ports').map((p, i) => {
      const field = `spec.ports[${i}]`;
      const po = obj(p, field);
      const port: ServicePortInfo = {
        name: optStr(po.name, `${field}.name`) ?? '',
        port: int(po.port, `${field}.port`, 1, 65_535),
        protocol: protocol(po.protocol, `${field}.protocol`),
      };
      if (po.nodePort !== undefined && po.nodePort !== null && po.nodePort !== 0 && type !== 'ClusterIP') {
        port.nodePort = int(po.nodePort, `${field}.nodePort`, 1, 65_535);
      }
      const id = `${port.port}/${port.protocol}`;
      if (seen.has(id)) fail(`${field}: port ${id} is listed twice`);
      seen.add(id);
      return port;
    });

    base.externalIPs = optArray(spec.externalIPs, 'spec.externalIPs').map(
      (v, i) => ip(v, `spec.externalIPs[${i}]`).address,
    );

    if (type === 'LoadBalancer') {
      const status = optObj(o.status, 'status');
      const lb = optObj(status?.loadBalancer, 'status.loadBalancer');
      optArray(lb?.ingress, 'status.loadBalancer.ingress').forEach((v, i) => {
        const field = `status.loadBalancer.ingress[${i}]`;
        const ing = obj(v, field);
        // ipMode Proxy: the load balancer proxies to the nodes; the IP is not ours to take over.
        if (ing.ipMode === 'Proxy') return;
        if (ing.ip === undefined || ing.ip === null || ing.ip === '') return; // hostname only
        base.loadBalancerIPs.push(ip(ing.ip, `${field}.ip`).address);
      });
      // The API server validates these as CIDRs; kube-proxy also trims spaces around them.
      const ranges = new Set<string>();
      optArray(spec.loadBalancerSourceRanges, 'spec.loadBalancerSourceRanges').forEach((v, i) => {
        const field = `spec.loadBalancerSourceRanges[${i}]`;
        if (typeof v !== 'string') fail(`${field} must be a CIDR`);
        const c = canonicalCIDR(v.trim());
        if (!c) fail(`${field} "${v}" is not a CIDR (like 203.0.113.0/24)`);
        ranges.add(c.cidr);
      });
      base.loadBalancerSourceRanges = [...ranges].sort();
    }

    const affinity = spec.sessionAffinity ?? 'None';
    if (affinity !== 'None' && affinity !== 'ClientIP') fail('spec.sessionAffinity must be None or ClientIP');
    if (affinity === 'ClientIP') {
      const cfg = optObj(spec.sessionAffinityConfig, 'spec.sessionAffinityConfig');
      const client = optObj(cfg?.clientIP, 'spec.sessionAffinityConfig.clientIP');
      const t = client?.timeoutSeconds;
      base.affinityTimeoutSeconds =
        t === undefined || t === null
          ? DEFAULT_AFFINITY_TIMEOUT_SECONDS
          : int(t, 'spec.sessionAffinityConfig.clientIP.timeoutSeconds', 1, MAX_AFFINITY_TIMEOUT_SECONDS);
    }
    base.externalTrafficPolicy = policy(spec.externalTrafficPolicy, 'spec.externalTrafficPolicy');
    base.internalTrafficPolicy = policy(spec.internalTrafficPolicy, 'spec.internalTrafficPolicy');
    return base;
  });
}

/** The Service an EndpointSlice belongs to, from its label; undefined when it has none. */
export function endpointSliceServiceName(raw: unknown): string | undefined {
  if (!isObj(raw) || !isObj(raw.metadata) || !isObj(raw.metadata.labels)) return undefined;
  const v = raw.metadata.labels[SERVICE_NAME_LABEL];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

export function parseEndpointSlice(raw: unknown): Parsed<EndpointSliceInfo> {
  const parsed = guard((): EndpointSliceInfo | string => {
    const o = obj(raw, 'EndpointSlice');
    const { name, namespace } = meta(o, true);
    const serviceName = endpointSliceServiceName(o);
    if (!serviceName) return `no ${SERVICE_NAME_LABEL} label`;
    if (o.addressType === 'FQDN') return 'addressType FQDN';
    if (o.addressType !== 'IPv4' && o.addressType !== 'IPv6') fail('addressType must be IPv4, IPv6 or FQDN');
    const family: IpFamily = o.addressType === 'IPv4' ? 4 : 6;

    // Built at their final length, as a Service's arrays (see parseService).
    const listed = optArray(o.ports, 'ports').map((p, i): EndpointPortInfo | undefined => {
      const field = `ports[${i}]`;
      const po = obj(p, field);
      // A nil port means "all ports" in the API; a load-balancer can do nothing with it.
      if (po.port === undefined || po.port === null) return undefined;
      return {
        name: optStr(po.name, `${field}.name`) ?? '',
        port: int(po.port, `${field}.port`, 1, 65_535),
        protocol: protocol(po.protocol, `${field}.protocol`),
      };
    });
    const ports = listed.includes(undefined)
      ? listed.filter((p): p is EndpointPortInfo => p !== undefined)
      : (listed as EndpointPortInfo[]);

    const endpoints = optArray(o.endpoints, 'endpoints').map((e, i): EndpointInfo => {
      const field = `endpoints[${i}]`;
      const eo = obj(e, field);
      const addresses = optArray(eo.addresses, `${field}.addresses`);
      if (addresses.length === 0) fail(`${field}.addresses must list at least one address`);
      const a = ip(addresses[0], `${field}.addresses[0]`);
      if (a.family !== family) fail(`${field}.addresses[0] ${a.address} is not an ${o.addressType} address`);
      const c = optObj(eo.conditions, `${field}.conditions`) ?? {};
      // Every endpoint has the same fields (nodeName undefined when unset): one object shape,
      // no out-of-object property store added later.
      return {
        address: a.address,
        ready: optBool(c.ready, `${field}.conditions.ready`) ?? true,
        serving: optBool(c.serving, `${field}.conditions.serving`) ?? true,
        terminating: optBool(c.terminating, `${field}.conditions.terminating`) ?? false,
        nodeName: optStr(eo.nodeName, `${field}.nodeName`) || undefined,
      };
    });
    return { namespace, name, serviceName, family, ports, endpoints };
  });
  if (parsed.ok && typeof parsed.value === 'string')
    return { ok: false, invalid: false, reason: parsed.value };
  return parsed as Parsed<EndpointSliceInfo>;
}

export function parseNode(raw: unknown): Parsed<NodeInfo> {
  return guard(() => {
    const o = obj(raw, 'Node');
    const { name } = meta(o, false);
    const status = optObj(o.status, 'status');
    const internalIPs: string[] = [];
    optArray(status?.addresses, 'status.addresses').forEach((a, i) => {
      const field = `status.addresses[${i}]`;
      const ao = obj(a, field);
      if (ao.type !== 'InternalIP') return;
      const { address } = ip(ao.address, `${field}.address`);
      if (!internalIPs.includes(address)) internalIPs.push(address);
    });
    return { name, internalIPs };
  });
}

// ---- slim copies for the informer caches ----------------------------------------------------
// The informers keep every object in memory; these keep only what parse*() reads (and what
// ListWatch needs: name, namespace, resourceVersion), so 10,000 Services cost what their
// load-balancing needs, not their managedFields and annotations. Never throw: garbage in,
// garbage out, and parse*() says what is wrong with it.

function pick(from: unknown, keys: readonly string[]): Obj | undefined {
  if (!isObj(from)) return undefined;
  const out: Obj = {};
  for (const k of keys) if (from[k] !== undefined) out[k] = from[k];
  return out;
}

function slimMeta(raw: Obj, labels: readonly string[] = []): Obj {
  const m = isObj(raw.metadata) ? raw.metadata : {};
  const out: Obj = { name: m.name, namespace: m.namespace, resourceVersion: m.resourceVersion };
  if (labels.length > 0 && isObj(m.labels)) out.labels = pick(m.labels, labels);
  return out;
}

const serviceSpecFields = [
  'type',
  'clusterIP',
  'clusterIPs',
  'ports',
  'externalIPs',
  'loadBalancerSourceRanges',
  'sessionAffinity',
  'sessionAffinityConfig',
  'externalTrafficPolicy',
  'internalTrafficPolicy',
] as const;

export function slimService(raw: unknown): unknown {
  if (!isObj(raw)) return raw;
  const status = isObj(raw.status) ? pick(raw.status, ['loadBalancer']) : undefined;
  return { metadata: slimMeta(raw), spec: pick(raw.spec, serviceSpecFields) ?? raw.spec, status };
}

export function slimEndpointSlice(raw: unknown): unknown {
  if (!isObj(raw)) return raw;
  const endpoints = Array.isArray(raw.endpoints)
    ? raw.endpoints.map((e) => pick(e, ['addresses', 'conditions', 'nodeName']) ?? e)
    : raw.endpoints;
  return {
    metadata: slimMeta(raw, [SERVICE_NAME_LABEL]),
    addressType: raw.addressType,
    ports: raw.ports,
    endpoints,
  };
}

export function slimNode(raw: unknown): unknown {
  if (!isObj(raw)) return raw;
  const status = isObj(raw.status) ? pick(raw.status, ['addresses']) : raw.status;
  return { metadata: slimMeta(raw), status };
}
