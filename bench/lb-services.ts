// The Services of bench/lb.ts: N ClusterIP Services of 3 endpoints each, in three shapes (weft's
// LB model, kube-proxy's, Kubernetes objects), all from one list so every case balances the same
// set. Service N-1 is the target the load generator connects to: its endpoints are the three
// real backend pods; every other Service points at synthetic endpoints nobody serves. The
// target keeps one ClusterIP at every Service count (backends hold client ports in TIME_WAIT
// for 60 s, and TCP timestamps are offset per address pair: a new ClusterIP per count would
// make reused ports fail PAWS against the previous count's connections).
import type { LbBackend, LbFrontend } from '../src/datapath/lbmap.js';
import { formatIPv4, parseCidr, parseIPv4 } from '../src/devcluster/ipv4.js';
import type { KubeProxyService } from './lb-kube-proxy.js';
import { plan } from './lb-topology.js';

export const ENDPOINTS_PER_SERVICE = 3;
export const BENCH_NAMESPACE = 'bench';

export interface BenchService {
  index: number;
  name: string;
  clusterIP: string;
  endpoints: string[];
}

/** The target's ClusterIP; the i-th other Service gets the next addresses in order. */
export function clusterIPOf(i: number, target: boolean): string {
  const cidr = parseCidr(plan.serviceCIDR);
  return formatIPv4(cidr.base + 10 + (target ? 0 : 1 + i));
}

export function benchServices(count: number): BenchService[] {
  const synthetic = parseIPv4(plan.syntheticEndpointBase);
  const out: BenchService[] = [];
  for (let i = 0; i < count; i++) {
    const target = i === count - 1;
    out.push({
      index: i,
      name: target ? 'target' : `svc-${String(i).padStart(5, '0')}`,
      clusterIP: clusterIPOf(i, target),
      endpoints: target
        ? [...plan.backendIPs]
        : Array.from({ length: ENDPOINTS_PER_SERVICE }, (_, k) =>
            formatIPv4(synthetic + 1 + i * ENDPOINTS_PER_SERVICE + k),
          ),
    });
  }
  return out;
}

export function targetOf(services: BenchService[]): BenchService {
  return services[services.length - 1]!;
}

/** weft's LB model: backend ids 3i+1..3i+3, revNatIndex i+1, one ClusterIP frontend each. */
export function weftState(services: BenchService[]): { backends: LbBackend[]; frontends: LbFrontend[] } {
  const backends: LbBackend[] = [];
  const frontends: LbFrontend[] = [];
  for (const s of services) {
    const ids = s.endpoints.map((address, k) => {
      const id = s.index * ENDPOINTS_PER_SERVICE + k + 1;
      backends.push({
        id,
        address,
        port: plan.backendPort,
        protocol: 'TCP',
        state: 'active',
        clusterId: 0,
        zone: 0,
      });
      return id;
    });
    frontends.push({
      address: s.clusterIP,
      port: plan.servicePort,
      protocol: 'TCP',
      type: 'ClusterIP',
      revNatIndex: s.index + 1,
      backends: ids,
      externalTrafficPolicy: 'Cluster',
      internalTrafficPolicy: 'Cluster',
    });
  }
  return { backends, frontends };
}

export function kubeProxyServices(services: BenchService[]): KubeProxyService[] {
  return services.map((s) => ({
    namespace: BENCH_NAMESPACE,
    name: s.name,
    portName: 'http',
    clusterIP: s.clusterIP,
    port: plan.servicePort,
    protocol: 'TCP',
    endpoints: s.endpoints.map((ip) => ({ ip, port: plan.backendPort })),
  }));
}
