import { describe, expect, it } from 'vitest';
import { parseEndpointSlice, parseNode, parseService } from '../../src/agent/k8s/objects.js';
import { desiredService, endpointsForPort } from '../../src/agent/services/desired.js';
import {
  backendKeyOf,
  type DesiredService,
  type EndpointSliceInfo,
  type NodeInfo,
} from '../../src/agent/services/types.js';
import { node, service, slice } from './agent-fixtures.js';

const THIS_NODE = 'node-a';
const nodes = [node('node-a', ['172.30.0.2']), node('node-b', ['172.30.0.3'])];

function desired(svc: unknown, slices: unknown[] = [], nodeObjects: unknown[] = nodes): DesiredService {
  const s = parseService(svc);
  if (!s.ok) throw new Error(`service: ${s.reason}`);
  const parsedSlices = slices
    .map((x) => parseEndpointSlice(x))
    .flatMap((p) => {
      if (!p.ok && p.invalid) throw new Error(`slice: ${p.reason}`);
      return p.ok ? [p.value] : [];
    }) as EndpointSliceInfo[];
  const parsedNodes = nodeObjects.map((n) => {
    const p = parseNode(n);
    if (!p.ok) throw new Error(`node: ${p.reason}`);
    return p.value;
  }) as NodeInfo[];
  return desiredService(s.value, parsedSlices, parsedNodes, THIS_NODE);
}

/** frontend "addr:port/proto type" → backends ("addr:port"), with "int:" lists for two scopes. */
function summary(d: DesiredService): Record<string, string> {
  const out: Record<string, string> = {};
  const b = (list: number[]) =>
    list
      .map((i) => {
        const e = d.backends[i]!;
        return `${e.address}:${e.port}`;
      })
      .join(' ') || '-';
  for (const f of d.frontends) {
    const name = `${f.address.includes(':') ? `[${f.address}]` : f.address}:${f.port}/${f.protocol} ${f.type}`;
    out[name] = f.internalBackends ? `ext: ${b(f.backends)} | int: ${b(f.internalBackends)}` : b(f.backends);
  }
  return out;
}

const ep = (ip: string, node = 'node-b', more: Record<string, boolean | null> = {}) => ({
  ip,
  node,
  ...more,
});

describe('Service → frontends and backends (Kubernetes semantics)', () => {
  const cases: Array<{
    name: string;
    svc: unknown;
    slices?: unknown[];
    nodes?: unknown[];
    want: Record<string, string>;
  }> = [
    {
      name: 'ClusterIP: one frontend, every ready endpoint',
      svc: service('web'),
      slices: [slice('web-1', 'web', [ep('10.244.1.2'), ep('10.244.2.3', 'node-a')])],
      want: { '10.96.0.10:80/TCP ClusterIP': '10.244.1.2:80 10.244.2.3:80' },
    },
    {
      name: 'multi-port TCP and UDP: one frontend per port, endpoints by port name and protocol',
      svc: service('dns', {
        ports: [
          { name: 'dns', port: 53, protocol: 'UDP' },
          { name: 'dns-tcp', port: 53, protocol: 'TCP' },
          { name: 'metrics', port: 9153 },
        ],
      }),
      slices: [
        slice(
          'dns-1',
          'dns',
          [ep('10.244.1.5')],
          [
            { name: 'dns', port: 5353, protocol: 'UDP' },
            { name: 'dns-tcp', port: 5353, protocol: 'TCP' },
            { name: 'metrics', port: 9153 },
          ],
        ),
      ],
      want: {
        '10.96.0.10:53/UDP ClusterIP': '10.244.1.5:5353',
        '10.96.0.10:53/TCP ClusterIP': '10.244.1.5:5353',
        '10.96.0.10:9153/TCP ClusterIP': '10.244.1.5:9153',
      },
    },
    {
      name: 'named targetPort: each slice carries the number it resolved to',
      svc: service('app', { ports: [{ name: 'http', port: 80, targetPort: 'http' }] }),
      slices: [
        slice('app-v1', 'app', [ep('10.244.1.2'), ep('10.244.1.3')], [{ name: 'http', port: 8080 }]),
        slice('app-v2', 'app', [ep('10.244.2.2')], [{ name: 'http', port: 9090 }]),
      ],
      want: { '10.96.0.10:80/TCP ClusterIP': '10.244.1.2:8080 10.244.1.3:8080 10.244.2.2:9090' },
    },
    {
      name: 'a slice port of another name or protocol does not match',
      svc: service('app', { ports: [{ name: 'http', port: 80 }] }),
      slices: [
        slice('a', 'app', [ep('10.244.1.2')], [{ name: 'https', port: 8443 }]),
        slice('b', 'app', [ep('10.244.1.3')], [{ name: 'http', port: 8080, protocol: 'UDP' }]),
        slice('c', 'app', [ep('10.244.1.4')], [{ name: 'http', port: null }]),
      ],
      want: { '10.96.0.10:80/TCP ClusterIP': '-' },
    },
    {
      name: 'SCTP ports are balanced like TCP and UDP',
      svc: service('sig', { ports: [{ port: 3868, protocol: 'SCTP' }] }),
      slices: [slice('s', 'sig', [ep('10.244.1.2')], [{ name: '', port: 3868, protocol: 'SCTP' }])],
      want: { '10.96.0.10:3868/SCTP ClusterIP': '10.244.1.2:3868' },
    },
    {
      name: 'NodePort: one frontend per nodePort on this node’s InternalIP; other nodes’ addresses are theirs',
      svc: service('np', { type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] }),
      slices: [slice('np-1', 'np', [ep('10.244.1.2')])],
      want: {
        '10.96.0.10:80/TCP ClusterIP': '10.244.1.2:80',
        '172.30.0.2:30080/TCP NodePort': '10.244.1.2:80',
      },
    },
    {
      name: 'NodePort: no frontend on node addresses while this node’s Node is unknown',
      svc: service('np', { type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] }),
      nodes: [node('node-b', ['172.30.0.3'])],
      slices: [slice('np-1', 'np', [ep('10.244.1.2')])],
      want: { '10.96.0.10:80/TCP ClusterIP': '10.244.1.2:80' },
    },
    {
      name: 'NodePort: a node with two InternalIPs gets two frontends; other address types none',
      svc: service('np', { type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] }),
      nodes: [node('node-a', ['172.30.0.2', '172.31.0.2'], {})],
      slices: [slice('np-1', 'np', [ep('10.244.1.2')])],
      want: {
        '10.96.0.10:80/TCP ClusterIP': '10.244.1.2:80',
        '172.30.0.2:30080/TCP NodePort': '10.244.1.2:80',
        '172.31.0.2:30080/TCP NodePort': '10.244.1.2:80',
      },
    },
    {
      name: 'externalIPs: one frontend each, on the Service port',
      svc: service('ext', { externalIPs: ['198.51.100.7', '198.51.100.8'] }),
      slices: [slice('ext-1', 'ext', [ep('10.244.1.2')])],
      want: {
        '10.96.0.10:80/TCP ClusterIP': '10.244.1.2:80',
        '198.51.100.7:80/TCP ExternalIP': '10.244.1.2:80',
        '198.51.100.8:80/TCP ExternalIP': '10.244.1.2:80',
      },
    },
    {
      name: 'LoadBalancer: ingress IPs (not hostnames, not ipMode Proxy) and NodePorts',
      svc: service('lb', {
        type: 'LoadBalancer',
        ports: [{ port: 443, nodePort: 31443 }],
        ingress: [
          { ip: '203.0.113.10' },
          { hostname: 'lb.example.com' },
          { ip: '203.0.113.11', ipMode: 'Proxy' },
        ],
      }),
      slices: [slice('lb-1', 'lb', [ep('10.244.1.2')], [{ name: '', port: 8443 }])],
      want: {
        '10.96.0.10:443/TCP ClusterIP': '10.244.1.2:8443',
        '172.30.0.2:31443/TCP NodePort': '10.244.1.2:8443',
        '203.0.113.10:443/TCP LoadBalancer': '10.244.1.2:8443',
      },
    },
    {
      name: 'LoadBalancer without node ports (allocateLoadBalancerNodePorts false)',
      svc: service('lb', { type: 'LoadBalancer', ports: [{ port: 443 }], ingress: [{ ip: '203.0.113.10' }] }),
      slices: [slice('lb-1', 'lb', [ep('10.244.1.2')], [{ name: '', port: 443 }])],
      want: {
        '10.96.0.10:443/TCP ClusterIP': '10.244.1.2:443',
        '203.0.113.10:443/TCP LoadBalancer': '10.244.1.2:443',
      },
    },
    {
      name: 'externalTrafficPolicy Local: EXT scope this node only, INT scope everyone; ClusterIP unaffected',
      svc: service('local', {
        type: 'NodePort',
        ports: [{ port: 80, nodePort: 30080 }],
        externalTrafficPolicy: 'Local',
        externalIPs: ['198.51.100.7'],
      }),
      slices: [slice('l', 'local', [ep('10.244.1.2', 'node-a'), ep('10.244.2.2', 'node-b')])],
      want: {
        '10.96.0.10:80/TCP ClusterIP': '10.244.1.2:80 10.244.2.2:80',
        '172.30.0.2:30080/TCP NodePort': 'ext: 10.244.1.2:80 | int: 10.244.1.2:80 10.244.2.2:80',
        '198.51.100.7:80/TCP ExternalIP': 'ext: 10.244.1.2:80 | int: 10.244.1.2:80 10.244.2.2:80',
      },
    },
    {
      name: 'externalTrafficPolicy Local on a node without endpoints: EXT refuses, INT serves',
      svc: service('local', {
        type: 'NodePort',
        ports: [{ port: 80, nodePort: 30080 }],
        externalTrafficPolicy: 'Local',
      }),
      nodes: [node('node-a', ['172.30.0.2'])],
      slices: [slice('l', 'local', [ep('10.244.2.2', 'node-b')])],
      want: {
        '10.96.0.10:80/TCP ClusterIP': '10.244.2.2:80',
        '172.30.0.2:30080/TCP NodePort': 'ext: - | int: 10.244.2.2:80',
      },
    },
    {
      name: 'internalTrafficPolicy Local: in-cluster clients get only this node’s endpoints',
      svc: service('itp', {
        type: 'NodePort',
        ports: [{ port: 80, nodePort: 30080 }],
        internalTrafficPolicy: 'Local',
      }),
      nodes: [node('node-a', ['172.30.0.2'])],
      slices: [slice('i', 'itp', [ep('10.244.1.2', 'node-a'), ep('10.244.2.2', 'node-b')])],
      want: {
        '10.96.0.10:80/TCP ClusterIP': '10.244.1.2:80',
        '172.30.0.2:30080/TCP NodePort': 'ext: 10.244.1.2:80 10.244.2.2:80 | int: 10.244.1.2:80',
      },
    },
    {
      name: 'internalTrafficPolicy Local without a local endpoint: refuse (count 0)',
      svc: service('itp', { internalTrafficPolicy: 'Local' }),
      slices: [slice('i', 'itp', [ep('10.244.2.2', 'node-b')])],
      want: { '10.96.0.10:80/TCP ClusterIP': '-' },
    },
    {
      name: 'both policies Local: one scope, local endpoints',
      svc: service('both', {
        type: 'NodePort',
        ports: [{ port: 80, nodePort: 30080 }],
        externalTrafficPolicy: 'Local',
        internalTrafficPolicy: 'Local',
      }),
      nodes: [node('node-a', ['172.30.0.2'])],
      slices: [slice('b', 'both', [ep('10.244.1.2', 'node-a'), ep('10.244.2.2', 'node-b')])],
      want: {
        '10.96.0.10:80/TCP ClusterIP': '10.244.1.2:80',
        '172.30.0.2:30080/TCP NodePort': '10.244.1.2:80',
      },
    },
    {
      name: 'not-ready endpoints are left out while a ready one exists',
      svc: service('web'),
      slices: [
        slice('w', 'web', [
          ep('10.244.1.2'),
          ep('10.244.1.3', 'node-b', { ready: false, serving: false }),
          ep('10.244.1.4', 'node-b', { ready: false, serving: true, terminating: true }),
        ]),
      ],
      want: { '10.96.0.10:80/TCP ClusterIP': '10.244.1.2:80' },
    },
    {
      name: 'no ready endpoint: serving+terminating ones are used (terminating fallback)',
      svc: service('web'),
      slices: [
        slice('w', 'web', [
          ep('10.244.1.3', 'node-b', { ready: false, serving: false, terminating: true }),
          ep('10.244.1.4', 'node-b', { ready: false, serving: true, terminating: true }),
          ep('10.244.1.5', 'node-b', { ready: false, serving: false, terminating: false }),
        ]),
      ],
      want: { '10.96.0.10:80/TCP ClusterIP': '10.244.1.4:80' },
    },
    {
      name: 'terminating fallback per locality: a local terminating endpoint serves EXT of Local',
      svc: service('t', {
        type: 'NodePort',
        ports: [{ port: 80, nodePort: 30080 }],
        externalTrafficPolicy: 'Local',
      }),
      nodes: [node('node-a', ['172.30.0.2'])],
      slices: [
        slice('t', 't', [
          ep('10.244.1.4', 'node-a', { ready: false, serving: true, terminating: true }),
          ep('10.244.2.2', 'node-b'),
        ]),
      ],
      want: {
        '10.96.0.10:80/TCP ClusterIP': '10.244.2.2:80',
        '172.30.0.2:30080/TCP NodePort': 'ext: 10.244.1.4:80 | int: 10.244.2.2:80',
      },
    },
    {
      name: 'nil conditions read as ready and serving, not terminating',
      svc: service('web'),
      slices: [slice('w', 'web', [{ ip: '10.244.1.2', ready: null, serving: null, terminating: null }])],
      want: { '10.96.0.10:80/TCP ClusterIP': '10.244.1.2:80' },
    },
    {
      name: 'no endpoints at all: the frontend exists with no backends (refuses at once)',
      svc: service('empty', { type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] }),
      nodes: [node('node-a', ['172.30.0.2'])],
      want: { '10.96.0.10:80/TCP ClusterIP': '-', '172.30.0.2:30080/TCP NodePort': '-' },
    },
    {
      name: 'headless: nothing',
      svc: service('hl', { clusterIP: 'None' }),
      slices: [slice('h', 'hl', [ep('10.244.1.2')])],
      want: {},
    },
    {
      name: 'ExternalName: nothing',
      svc: service('en', { type: 'ExternalName' }),
      want: {},
    },
    {
      name: 'no ClusterIP allocated yet: nothing (kube-proxy skips it too)',
      svc: service('pending', { clusterIPs: [] }),
      slices: [slice('p', 'pending', [ep('10.244.1.2')])],
      want: {},
    },
    {
      name: 'the same endpoint in two slices is one backend; the ready copy wins',
      svc: service('dup'),
      slices: [
        slice('dup-a', 'dup', [ep('10.244.1.2', 'node-b', { ready: false, serving: false })]),
        slice('dup-b', 'dup', [ep('10.244.1.2'), ep('10.244.1.3')]),
      ],
      want: { '10.96.0.10:80/TCP ClusterIP': '10.244.1.2:80 10.244.1.3:80' },
    },
    {
      name: 'dual-stack: each family its own frontends and endpoints; NodePorts on matching node IPs',
      svc: service('ds', {
        type: 'NodePort',
        clusterIPs: ['10.96.0.20', 'fd00:96::20'],
        ports: [{ port: 80, nodePort: 30080 }],
      }),
      nodes: [node('node-a', ['172.30.0.2', 'fd00:30::2'])],
      slices: [
        slice('ds-v4', 'ds', [ep('10.244.1.2')]),
        slice('ds-v6', 'ds', [ep('fd00:244::2')], [{ name: '', port: 80 }], { addressType: 'IPv6' }),
      ],
      want: {
        '10.96.0.20:80/TCP ClusterIP': '10.244.1.2:80',
        '172.30.0.2:30080/TCP NodePort': '10.244.1.2:80',
        '[fd00:96::20]:80/TCP ClusterIP': 'fd00:244::2:80',
        '[fd00:30::2]:30080/TCP NodePort': 'fd00:244::2:80',
      },
    },
    {
      name: 'single-stack IPv6 ignores IPv4 slices and node IPs; addresses are canonical',
      svc: service('v6', {
        type: 'NodePort',
        clusterIPs: ['FD00:96:0::0030'],
        ports: [{ port: 80, nodePort: 30080 }],
      }),
      nodes: [node('node-a', ['172.30.0.2', 'fd00:30::2'])],
      slices: [
        slice('v4', 'v6', [ep('10.244.1.2')]),
        slice('v6', 'v6', [ep('FD00:244:0:0::5')], [{ name: '', port: 80 }], { addressType: 'IPv6' }),
      ],
      want: {
        '[fd00:96::30]:80/TCP ClusterIP': 'fd00:244::5:80',
        '[fd00:30::2]:30080/TCP NodePort': 'fd00:244::5:80',
      },
    },
    {
      name: 'FQDN slices are not endpoints',
      svc: service('f'),
      slices: [slice('f', 'f', [{ ip: 'example.com' }], [{ name: '', port: 80 }], { addressType: 'FQDN' })],
      want: { '10.96.0.10:80/TCP ClusterIP': '-' },
    },
  ];

  it.each(cases)('$name', ({ svc, slices, nodes: n, want }) => {
    expect(summary(desired(svc, slices, n))).toEqual(want);
  });

  it('sessionAffinity ClientIP: the default timeout is 10800 s, a configured one is kept', () => {
    const dflt = desired(service('a', { sessionAffinity: 'ClientIP' }));
    expect(dflt.frontends.map((f) => f.affinityTimeoutSeconds)).toEqual([10800]);
    const custom = desired(service('a', { sessionAffinity: 'ClientIP', affinityTimeout: 60 }));
    expect(custom.frontends.map((f) => f.affinityTimeoutSeconds)).toEqual([60]);
    const none = desired(service('a'));
    expect(none.frontends[0]).not.toHaveProperty('affinityTimeoutSeconds');
  });

  it('frontends carry the traffic policies that apply to them and the Service port name', () => {
    const d = desired(
      service('p', {
        type: 'NodePort',
        ports: [{ name: 'http', port: 80, nodePort: 30080 }],
        externalTrafficPolicy: 'Local',
      }),
      [],
      [node('node-a', ['172.30.0.2'])],
    );
    expect(
      d.frontends.map((f) => [f.type, f.portName, f.externalTrafficPolicy, f.internalTrafficPolicy]),
    ).toEqual([
      ['ClusterIP', 'http', 'Cluster', 'Cluster'],
      ['NodePort', 'http', 'Local', 'Cluster'],
    ]);
  });

  it('loadBalancerSourceRanges limit the LoadBalancer frontends only, with the ranges of their family', () => {
    const svc = (ranges: string[]) =>
      service('lb', {
        type: 'LoadBalancer',
        ports: [{ port: 443, nodePort: 31443 }],
        ingress: [{ ip: '203.0.113.10' }],
        loadBalancerSourceRanges: ranges,
      });
    const slices = [slice('lb-1', 'lb', [ep('10.244.1.2')], [{ name: '', port: 443 }])];
    const ranges = (d: DesiredService) =>
      Object.fromEntries(d.frontends.map((f) => [`${f.address} ${f.type}`, f.sourceRanges]));
    expect(ranges(desired(svc(['198.51.100.0/24', '2001:db8::/32', '192.0.2.0/28']), slices))).toEqual({
      '10.96.0.10 ClusterIP': undefined,
      '172.30.0.2 NodePort': undefined,
      '203.0.113.10 LoadBalancer': ['192.0.2.0/28', '198.51.100.0/24'],
    });
    // Only IPv6 ranges: nothing limits the IPv4 frontend (kube-proxy filters ranges by family).
    expect(ranges(desired(svc(['2001:db8::/32']), slices))['203.0.113.10 LoadBalancer']).toBeUndefined();
  });

  it('backends record their state and whether they run on this node', () => {
    const d = desired(service('web'), [
      slice('w', 'web', [
        ep('10.244.1.2', 'node-a', { ready: false, serving: true, terminating: true }),
        ep('10.244.2.2', 'node-b', { ready: false, serving: true, terminating: true }),
      ]),
    ]);
    expect(d.backends).toEqual([
      {
        key: backendKeyOf({ address: '10.244.1.2', port: 80, protocol: 'TCP' }),
        address: '10.244.1.2',
        port: 80,
        protocol: 'TCP',
        state: 'terminating',
        local: true,
      },
      {
        key: backendKeyOf({ address: '10.244.2.2', port: 80, protocol: 'TCP' }),
        address: '10.244.2.2',
        port: 80,
        protocol: 'TCP',
        state: 'terminating',
        local: false,
      },
    ]);
  });

  it('one slice of ready endpoints: backends in the slice order, the frontend lists them in key order', () => {
    const table: Array<{ family: 4 | 6; clusterIP: string; ips: string[]; name: string }> = [
      {
        family: 4,
        clusterIP: '10.96.0.10',
        ips: ['10.244.3.1', '10.244.1.9', '10.244.2.5'],
        name: '10.96.0.10:80/TCP',
      },
      { family: 6, clusterIP: 'fd00::10', ips: ['fd01::3', 'fd01::1', 'fd01::2'], name: '[fd00::10]:80/TCP' },
    ];
    for (const t of table) {
      const d = desired(service('web', { clusterIPs: [t.clusterIP] }), [
        slice('w', 'web', [
          ep(t.ips[0]!, 'node-a'),
          ep(t.ips[1]!, 'node-b', { ready: true, serving: true, terminating: true }),
          ep(t.ips[2]!),
        ]),
      ]);
      expect(d.backends.map((b) => [b.address, b.state, b.local])).toEqual([
        [t.ips[0], 'active', true],
        [t.ips[1], 'terminating', false],
        [t.ips[2], 'active', false],
      ]);
      expect(d.frontends.map((f) => [f.name, f.backends])).toEqual([[t.name, [1, 2, 0]]]);
    }
  });

  it('one pod behind two Service ports on the same target port is one backend; a terminating copy wins', () => {
    const svc = service('two', {
      ports: [
        { name: 'a', port: 80 },
        { name: 'b', port: 81 },
      ],
    });
    const slices = [
      slice('two-1', 'two', [ep('10.244.1.2'), ep('10.244.1.3')], [{ name: 'a', port: 8080 }]),
      slice(
        'two-2',
        'two',
        [ep('10.244.1.2', 'node-b', { terminating: true }), ep('10.244.1.4')],
        [{ name: 'b', port: 8080 }],
      ),
    ];
    const d = desired(svc, slices);
    expect(summary(d)).toEqual({
      '10.96.0.10:80/TCP ClusterIP': '10.244.1.2:8080 10.244.1.3:8080',
      '10.96.0.10:81/TCP ClusterIP': '10.244.1.2:8080 10.244.1.4:8080',
    });
    expect(d.backends.map((b) => `${b.address}:${b.port} ${b.state}`)).toEqual([
      '10.244.1.2:8080 terminating',
      '10.244.1.3:8080 active',
      '10.244.1.4:8080 active',
    ]);
    for (const b of d.backends) expect(b.key).toBe(backendKeyOf(b));
  });

  it('many endpoints under two ports: each backend once, lists in key order', () => {
    const ips = Array.from({ length: 20 }, (_, i) => `10.244.1.${40 - i}`);
    const svc = service('many', {
      internalTrafficPolicy: 'Local',
      ports: [
        { name: 'a', port: 80 },
        { name: 'b', port: 81 },
      ],
    });
    const slices = [
      slice(
        'many-1',
        'many',
        ips.map((ip, i) => ep(ip, i % 2 === 0 ? 'node-a' : 'node-b')),
        [
          { name: 'a', port: 8080 },
          { name: 'b', port: 8080 },
        ],
      ),
    ];
    const d = desired(svc, slices);
    // Local: only this node's endpoints are listed, and only those are wanted.
    const local = ips
      .filter((_, i) => i % 2 === 0)
      .sort(
        (x, y) =>
          (backendKeyOf({ address: x, port: 8080, protocol: 'TCP' }) as number) -
          (backendKeyOf({ address: y, port: 8080, protocol: 'TCP' }) as number),
      );
    const want = local.map((ip) => `${ip}:8080`).join(' ');
    expect(summary(d)).toEqual({ '10.96.0.10:80/TCP ClusterIP': want, '10.96.0.10:81/TCP ClusterIP': want });
    expect(d.backends.map((b) => b.address).sort()).toEqual([...local].sort());
    expect(new Set(d.backends.map((b) => b.key)).size).toBe(d.backends.length);
  });

  it('the result does not depend on the order slices and nodes arrive in', () => {
    const svc = service('o', { type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] });
    const slices = [
      slice('o-b', 'o', [ep('10.244.1.3'), ep('10.244.1.2', 'node-a')]),
      slice('o-a', 'o', [ep('10.244.1.2', 'node-b', { ready: false, serving: false }), ep('10.244.1.9')]),
    ];
    const a = desired(svc, slices, nodes);
    const b = desired(svc, [...slices].reverse(), [...nodes].reverse());
    expect(a.frontends).toEqual(b.frontends);
    expect(a.backends).toEqual(b.backends);
  });
});

describe('endpointsForPort', () => {
  const port = { name: 'http', port: 80, protocol: 'TCP' as const };
  const sliceOf = (
    name: string,
    slicePort: number,
    endpoints: Array<[string, { ready?: boolean; terminating?: boolean; node?: string }]>,
  ): EndpointSliceInfo => ({
    namespace: 'default',
    name,
    serviceName: 'web',
    family: 4,
    ports: [{ name: 'http', port: slicePort, protocol: 'TCP' }],
    endpoints: endpoints.map(([address, e]) => ({
      address,
      ready: e.ready ?? true,
      serving: true,
      terminating: e.terminating ?? false,
      ...(e.node ? { nodeName: e.node } : {}),
    })),
  });
  const view = (slices: EndpointSliceInfo[]) =>
    endpointsForPort(port, 4, slices, THIS_NODE).map(
      (c) => `${c.address}:${c.port}${c.ready ? '' : ' not-ready'}${c.local ? ' local' : ''}`,
    );

  it('one address:port in two slices is one endpoint, the more usable copy, in first-seen order', () => {
    expect(
      view([
        sliceOf('a', 8080, [
          ['10.0.0.1', { ready: false, terminating: true }],
          ['10.0.0.2', {}],
        ]),
        sliceOf('b', 8080, [
          ['10.0.0.3', {}],
          ['10.0.0.1', {}],
        ]),
      ]),
    ).toEqual(['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080']);
  });

  it('the same address on two target ports is two endpoints, each merged on its own', () => {
    expect(
      view([
        sliceOf('a', 8080, [['10.0.0.1', {}]]),
        sliceOf('b', 9090, [
          ['10.0.0.1', { ready: false }],
          ['10.0.0.2', {}],
        ]),
        sliceOf('c', 9090, [['10.0.0.1', { node: THIS_NODE, ready: false }]]),
        sliceOf('d', 8080, [['10.0.0.1', { node: THIS_NODE }]]),
      ]),
    ).toEqual(['10.0.0.1:8080 local', '10.0.0.1:9090 not-ready local', '10.0.0.2:9090']);
  });
});
