import { describe, expect, it } from 'vitest';
import {
  parseEndpointSlice,
  parseNode,
  parseService,
  slimEndpointSlice,
  slimNode,
  slimService,
} from '../../src/agent/k8s/objects.js';
import { canonicalCIDR, canonicalIP } from '../../src/datapath/codec.js';
import { node, service, slice } from './agent-fixtures.js';

// biome-ignore lint/suspicious/noExplicitAny: the tests poke at raw API objects field by field
type Loose = any;

function mutate<T>(base: T, patch: (o: Loose) => void): T {
  const copy: Loose = structuredClone(base);
  patch(copy);
  return copy as T;
}

describe('malformed objects are rejected with the field at fault, never thrown', () => {
  const svc = service('web', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] });
  const serviceCases: Array<[string, unknown, RegExp]> = [
    ['not an object', 'web', /Service must be an object/],
    ['null', null, /Service must be an object/],
    ['no metadata', mutate(svc, (o) => delete o.metadata), /metadata must be an object/],
    ['no name', mutate(svc, (o) => delete o.metadata.name), /metadata.name must be a non-empty string/],
    ['no namespace', mutate(svc, (o) => delete o.metadata.namespace), /metadata.namespace/],
    ['no spec', mutate(svc, (o) => delete o.spec), /spec must be an object/],
    ['unknown type', mutate(svc, (o) => (o.spec.type = 'Magic')), /spec.type must be one of/],
    [
      'clusterIP not an IP',
      mutate(svc, (o) => (o.spec.clusterIPs = ['10.96.0.300'])),
      /clusterIPs\[0\].*not an IP/,
    ],
    [
      'two clusterIPs of one family',
      mutate(svc, (o) => (o.spec.clusterIPs = ['10.96.0.1', '10.96.0.2'])),
      /two IPv4 addresses/,
    ],
    ['ports not a list', mutate(svc, (o) => (o.spec.ports = 80)), /spec.ports must be a list/],
    [
      'a loadBalancerSourceRanges entry that is not a CIDR',
      mutate(svc, (o) => {
        o.spec.type = 'LoadBalancer';
        o.spec.loadBalancerSourceRanges = ['10.0.0.0/8', '10.0.0.300/8'];
      }),
      /spec.loadBalancerSourceRanges\[1\] "10.0.0.300\/8" is not a CIDR/,
    ],
    [
      'port out of range',
      mutate(svc, (o) => (o.spec.ports[0].port = 70000)),
      /ports\[0\].port must be an integer/,
    ],
    [
      'port a string',
      mutate(svc, (o) => (o.spec.ports[0].port = '80')),
      /ports\[0\].port must be an integer/,
    ],
    [
      'unknown protocol',
      mutate(svc, (o) => (o.spec.ports[0].protocol = 'ICMP')),
      /protocol must be TCP, UDP or SCTP/,
    ],
    [
      'nodePort out of range',
      mutate(svc, (o) => (o.spec.ports[0].nodePort = -1)),
      /nodePort must be an integer/,
    ],
    [
      'the same port twice',
      mutate(svc, (o) => o.spec.ports.push({ name: 'b', port: 80, protocol: 'TCP' })),
      /port 80\/TCP is listed twice/,
    ],
    ['externalIP not an IP', mutate(svc, (o) => (o.spec.externalIPs = ['example.com'])), /externalIPs\[0\]/],
    [
      'ingress IP not an IP',
      mutate(svc, (o) => {
        o.spec.type = 'LoadBalancer';
        o.status.loadBalancer.ingress = [{ ip: 'x' }];
      }),
      /ingress\[0\].ip/,
    ],
    [
      'bad affinity',
      mutate(svc, (o) => (o.spec.sessionAffinity = 'Cookie')),
      /sessionAffinity must be None or ClientIP/,
    ],
    [
      'affinity timeout out of range',
      mutate(svc, (o) => {
        o.spec.sessionAffinity = 'ClientIP';
        o.spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: 86401 } };
      }),
      /timeoutSeconds must be an integer from 1 to 86400/,
    ],
    [
      'bad traffic policy',
      mutate(svc, (o) => (o.spec.externalTrafficPolicy = 'Global')),
      /externalTrafficPolicy/,
    ],
    [
      'v4-mapped clusterIP',
      mutate(svc, (o) => (o.spec.clusterIPs = ['::ffff:10.96.0.1'])),
      /not an IP address/,
    ],
  ];
  it.each(serviceCases)('Service: %s', (_name, raw, reason) => {
    const p = parseService(raw);
    expect(p.ok).toBe(false);
    if (!p.ok) {
      expect(p.invalid).toBe(true);
      expect(p.reason).toMatch(reason);
    }
  });

  const es = slice('web-1', 'web', [{ ip: '10.244.1.2', node: 'node-a' }], [{ name: 'http', port: 8080 }]);
  const sliceCases: Array<[string, unknown, RegExp]> = [
    ['not an object', [], /EndpointSlice must be an object/],
    [
      'unknown addressType',
      mutate(es, (o) => (o.addressType = 'IPX')),
      /addressType must be IPv4, IPv6 or FQDN/,
    ],
    ['endpoints not a list', mutate(es, (o) => (o.endpoints = {})), /endpoints must be a list/],
    [
      'endpoint without addresses',
      mutate(es, (o) => (o.endpoints[0].addresses = [])),
      /at least one address/,
    ],
    [
      'address not an IP',
      mutate(es, (o) => (o.endpoints[0].addresses = ['pod-a'])),
      /addresses\[0\].*not an IP/,
    ],
    [
      'address of the other family',
      mutate(es, (o) => (o.endpoints[0].addresses = ['fd00::1'])),
      /is not an IPv4 address/,
    ],
    [
      'ready not a boolean',
      mutate(es, (o) => (o.endpoints[0].conditions.ready = 'yes')),
      /conditions.ready must be/,
    ],
    ['port out of range', mutate(es, (o) => (o.ports[0].port = 0)), /ports\[0\].port must be an integer/],
    ['nodeName not a string', mutate(es, (o) => (o.endpoints[0].nodeName = 7)), /nodeName must be a string/],
  ];
  it.each(sliceCases)('EndpointSlice: %s', (_name, raw, reason) => {
    const p = parseEndpointSlice(raw);
    expect(p).toMatchObject({ ok: false, invalid: true });
    if (!p.ok) expect(p.reason).toMatch(reason);
  });

  it('EndpointSlices the load-balancer has no use for are ignored, not invalid', () => {
    const fqdn = parseEndpointSlice(mutate(es, (o) => (o.addressType = 'FQDN')));
    expect(fqdn).toMatchObject({ ok: false, invalid: false, reason: 'addressType FQDN' });
    const unlabelled = parseEndpointSlice(mutate(es, (o) => (o.metadata.labels = {})));
    expect(unlabelled).toMatchObject({ ok: false, invalid: false });
  });

  const nodeCases: Array<[string, unknown, RegExp]> = [
    ['no name', mutate(node('n', ['172.30.0.2']), (o) => delete o.metadata.name), /metadata.name/],
    [
      'InternalIP not an IP',
      mutate(node('n', ['172.30.0.2']), (o) => (o.status.addresses[0].address = 'n.local')),
      /addresses\[0\].address/,
    ],
    [
      'addresses not a list',
      mutate(node('n', []), (o) => (o.status.addresses = 'x')),
      /status.addresses must be a list/,
    ],
  ];
  it.each(nodeCases)('Node: %s', (_name, raw, reason) => {
    const p = parseNode(raw);
    expect(p).toMatchObject({ ok: false, invalid: true });
    if (!p.ok) expect(p.reason).toMatch(reason);
  });
});

describe('well-formed objects', () => {
  it('a Service gets the API defaults for what it leaves out', () => {
    const p = parseService({
      metadata: { name: 'm', namespace: 'ns' },
      spec: { clusterIP: '10.96.0.1', ports: [{ port: 80 }] },
    });
    expect(p).toEqual({
      ok: true,
      value: {
        namespace: 'ns',
        name: 'm',
        type: 'ClusterIP',
        clusterIPs: ['10.96.0.1'],
        headless: false,
        ports: [{ name: '', port: 80, protocol: 'TCP' }],
        externalIPs: [],
        loadBalancerIPs: [],
        loadBalancerSourceRanges: [],
        externalTrafficPolicy: 'Cluster',
        internalTrafficPolicy: 'Cluster',
      },
    });
  });

  it('a LoadBalancer keeps its loadBalancerSourceRanges as networks: trimmed, host bits cleared, sorted, once', () => {
    const p = parseService(
      service('lb', {
        type: 'LoadBalancer',
        loadBalancerSourceRanges: [
          ' 203.0.113.77/24',
          '198.51.100.0/24',
          '203.0.113.0/24',
          '2001:DB8:0:0:1::7/64',
          '0.0.0.0/0',
        ],
      }),
    );
    expect(p.ok && p.value.loadBalancerSourceRanges).toEqual([
      '0.0.0.0/0',
      '198.51.100.0/24',
      '2001:db8::/64',
      '203.0.113.0/24',
    ]);
    expect(canonicalCIDR('10.1.2.3/32')).toEqual({ cidr: '10.1.2.3/32', family: 4 });
    expect(canonicalCIDR('10.255.255.255/9')).toEqual({ cidr: '10.128.0.0/9', family: 4 });
    expect(canonicalCIDR('fd00::1:2/112')).toEqual({ cidr: 'fd00::1:0/112', family: 6 });
    for (const bad of [
      '10.0.0.0',
      '10.0.0.0/33',
      '10.0.0.0/-1',
      '10.0.0/8',
      'fd00::/129',
      'x/8',
      '10.0.0.0/8/1',
    ]) {
      expect(canonicalCIDR(bad), bad).toBeUndefined();
    }
  });

  it('a Service of another type ignores loadBalancerSourceRanges, as kube-proxy does', () => {
    const p = parseService(service('np', { type: 'NodePort', loadBalancerSourceRanges: ['203.0.113.0/24'] }));
    expect(p.ok && p.value.loadBalancerSourceRanges).toEqual([]);
  });

  it('a ClusterIP Service ignores a nodePort it should not have', () => {
    const p = parseService(service('c', { ports: [{ port: 80, nodePort: 30001 }] }));
    expect(p.ok && p.value.ports).toEqual([{ name: '', port: 80, protocol: 'TCP' }]);
  });

  it('a Node keeps its InternalIPs in order, without duplicates or other address types', () => {
    const p = parseNode(node('n', ['172.30.0.2', 'fd00::2', '172.30.0.2']));
    expect(p).toEqual({ ok: true, value: { name: 'n', internalIPs: ['172.30.0.2', 'fd00::2'] } });
  });

  it.each([
    ['10.0.0.1', '10.0.0.1', 4],
    ['FD00:0:0::0001', 'fd00::1', 6],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1', 6],
  ] as const)('canonical address of %s is %s', (input, address, family) => {
    expect(canonicalIP(input)).toEqual({ address, family });
  });

  it.each(['::ffff:10.0.0.1', 'fe80::1%eth0', 'example.com', '10.0.0.256', ''])('%s is refused', (input) => {
    expect(canonicalIP(input)).toBeUndefined();
  });
});

describe('slim copies for the informer caches', () => {
  it('keep what validation reads, and drop managedFields, annotations and node images', () => {
    const svc = service('web', { type: 'LoadBalancer', ingress: [{ ip: '203.0.113.1' }] });
    const slim = slimService(svc) as Loose;
    expect(slim.metadata).toEqual({ name: 'web', namespace: 'default', resourceVersion: '1' });
    expect(parseService(slim)).toEqual(parseService(svc));

    const es = slice('s', 'web', [{ ip: '10.244.1.2', node: 'n' }]);
    const slimEs = slimEndpointSlice(es) as Loose;
    expect(slimEs.metadata.labels).toEqual({ 'kubernetes.io/service-name': 'web' });
    expect(parseEndpointSlice(slimEs)).toEqual(parseEndpointSlice(es));

    const n = node('n', ['172.30.0.2']);
    const slimN = slimNode(n) as Loose;
    expect(slimN.status).not.toHaveProperty('images');
    expect(parseNode(slimN)).toEqual(parseNode(n));
  });

  it('never throw on garbage: parse says what is wrong', () => {
    for (const garbage of [null, 7, 'x', [], { metadata: 'x' }, { spec: [] }]) {
      expect(() => slimService(garbage)).not.toThrow();
      expect(() => slimEndpointSlice(garbage)).not.toThrow();
      expect(() => slimNode(garbage)).not.toThrow();
      expect(parseService(slimService(garbage)).ok).toBe(false);
    }
  });
});
