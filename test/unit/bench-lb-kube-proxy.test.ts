// The peer of bench/lb.ts must be kube-proxy's iptables mode, not an approximation of it: chain
// names hash like kube-proxy's (checked against fixtures of pkg/proxy/iptables/proxier_test.go),
// each Service balances with kube-proxy's probabilities, and the target Service the benchmark
// connects to is the last Service rule in KUBE-SERVICES. (That the rules really spread
// connections over three backends in the kernel is checked by every benchmark run.)
import { describe, expect, it } from 'vitest';
import {
  endpointChain,
  type KubeProxyService,
  kubeProxyJumpsRestore,
  kubeProxyRestore,
  probability,
  serviceChain,
} from '../../bench/lb-kube-proxy.js';
import { benchServices, kubeProxyServices, targetOf } from '../../bench/lb-services.js';

const svc1: KubeProxyService = {
  namespace: 'ns1',
  name: 'svc1',
  portName: 'p80',
  clusterIP: '172.30.0.41',
  port: 80,
  protocol: 'TCP',
  endpoints: [
    { ip: '10.180.0.1', port: 80 },
    { ip: '10.180.0.2', port: 80 },
    { ip: '10.180.0.3', port: 80 },
  ],
};

describe("kube-proxy's iptables rules, as bench/lb generates them", () => {
  it('names chains exactly as kube-proxy does', () => {
    expect(serviceChain(svc1)).toBe('KUBE-SVC-XPGD46QRK7WJZT7O');
    expect(endpointChain(svc1, { ip: '10.180.0.1', port: 80 })).toBe('KUBE-SEP-SXIVWICOYRO3J4NJ');
  });

  it('spreads a Service over its endpoints with probabilities 1/3, 1/2 and the rest', () => {
    const rules = kubeProxyRestore([svc1], '10.0.0.0/8')
      .split('\n')
      .filter((l) => l.startsWith(`-A ${serviceChain(svc1)} `) && l.includes('KUBE-SEP-'));
    expect(rules).toHaveLength(3);
    expect(rules[0]).toContain(`--probability ${probability(3)}`);
    expect(rules[1]).toContain(`--probability ${probability(2)}`);
    expect(rules[2]).not.toContain('statistic');
    expect(probability(3)).toBe('0.3333333333');
    // Each endpoint chain masquerades hairpin traffic and DNATs to its endpoint.
    for (const e of svc1.endpoints) {
      const sep = endpointChain(svc1, e);
      expect(kubeProxyRestore([svc1], '10.0.0.0/8')).toContain(
        `-A ${sep} -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination ${e.ip}:${e.port}`,
      );
    }
  });

  it('puts the target Service last in KUBE-SERVICES, before only the KUBE-NODEPORTS rule', () => {
    const services = kubeProxyServices(benchServices(1000));
    const lines = kubeProxyRestore(services, '10.208.0.0/15')
      .split('\n')
      .filter((l) => l.startsWith('-A KUBE-SERVICES '));
    expect(lines).toHaveLength(1001);
    const target = targetOf(benchServices(1000));
    expect(lines[999]).toContain(`-d ${target.clusterIP} --dport 80 -j ${serviceChain(services[999]!)}`);
    expect(lines[1000]).toContain('-j KUBE-NODEPORTS');
  });

  it('inserts and deletes the same jumps', () => {
    const strip = (text: string) =>
      text
        .split('\n')
        .filter((l) => l.startsWith('-'))
        .map((l) => l.replace(/^-I (\S+) 1 /, '$1 ').replace(/^-D (\S+) /, '$1 '));
    expect(strip(kubeProxyJumpsRestore(true))).toEqual(strip(kubeProxyJumpsRestore(false)));
    expect(kubeProxyJumpsRestore(true)).toContain(
      '-I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    );
  });
});
