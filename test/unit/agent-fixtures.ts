// Builders for raw Kubernetes objects, shaped as the API server sends them (JSON), for the agent's
// unit and kernel tests. Only what a test sets is present; everything else is the API default.

export interface PortSpec {
  name?: string;
  port: number;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  nodePort?: number;
  targetPort?: number | string;
}

export interface ServiceSpec {
  namespace?: string;
  type?: 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
  clusterIP?: string;
  clusterIPs?: string[];
  ports?: PortSpec[];
  externalIPs?: string[];
  ingress?: Array<{ ip?: string; hostname?: string; ipMode?: 'VIP' | 'Proxy' }>;
  loadBalancerSourceRanges?: string[];
  sessionAffinity?: 'None' | 'ClientIP';
  affinityTimeout?: number;
  externalTrafficPolicy?: 'Cluster' | 'Local';
  internalTrafficPolicy?: 'Cluster' | 'Local';
  resourceVersion?: string;
}

export function service(name: string, s: ServiceSpec = {}): Record<string, unknown> {
  const spec: Record<string, unknown> = {
    type: s.type ?? 'ClusterIP',
    ports: (s.ports ?? [{ port: 80 }]).map((p) => ({
      protocol: 'TCP',
      targetPort: p.port,
      ...p,
    })),
  };
  if (s.type !== 'ExternalName') {
    const ips = s.clusterIPs ?? [s.clusterIP ?? '10.96.0.10'];
    spec.clusterIP = ips[0];
    spec.clusterIPs = ips;
  } else {
    spec.externalName = 'example.com';
  }
  if (s.externalIPs) spec.externalIPs = s.externalIPs;
  if (s.loadBalancerSourceRanges) spec.loadBalancerSourceRanges = s.loadBalancerSourceRanges;
  spec.sessionAffinity = s.sessionAffinity ?? 'None';
  if (s.affinityTimeout !== undefined) {
    spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: s.affinityTimeout } };
  }
  if (s.externalTrafficPolicy) spec.externalTrafficPolicy = s.externalTrafficPolicy;
  spec.internalTrafficPolicy = s.internalTrafficPolicy ?? 'Cluster';
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name,
      namespace: s.namespace ?? 'default',
      resourceVersion: s.resourceVersion ?? '1',
      managedFields: [{ manager: 'kubectl' }],
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}' },
    },
    spec,
    status: { loadBalancer: s.ingress ? { ingress: s.ingress } : {} },
  };
}

export interface EndpointSpec {
  ip: string;
  node?: string;
  ready?: boolean | null;
  serving?: boolean | null;
  terminating?: boolean | null;
}

export function slice(
  name: string,
  serviceName: string,
  endpoints: EndpointSpec[],
  ports: Array<{ name?: string; port: number | null; protocol?: string }> = [{ name: '', port: 80 }],
  opts: { namespace?: string; addressType?: 'IPv4' | 'IPv6' | 'FQDN' } = {},
): Record<string, unknown> {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name,
      namespace: opts.namespace ?? 'default',
      resourceVersion: '1',
      labels: { 'kubernetes.io/service-name': serviceName, 'endpointslice.kubernetes.io/managed-by': 'x' },
    },
    addressType: opts.addressType ?? (endpoints[0]?.ip.includes(':') ? 'IPv6' : 'IPv4'),
    endpoints: endpoints.map((e) => {
      const conditions: Record<string, unknown> = {};
      if (e.ready !== null) conditions.ready = e.ready ?? true;
      if (e.serving !== null) conditions.serving = e.serving ?? e.ready ?? true;
      if (e.terminating !== null) conditions.terminating = e.terminating ?? false;
      const out: Record<string, unknown> = { addresses: [e.ip], conditions };
      if (e.node) out.nodeName = e.node;
      return out;
    }),
    ports: ports.map((p) => ({ protocol: 'TCP', ...p })),
  };
}

export function node(name: string, internalIPs: string[], extra: Record<string, unknown> = {}) {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, resourceVersion: '1' },
    status: {
      addresses: [
        ...internalIPs.map((address) => ({ type: 'InternalIP', address })),
        { type: 'Hostname', address: name },
      ],
      images: [{ names: ['registry/image:tag'], sizeBytes: 1 }],
      ...extra,
    },
  };
}
