import { describe, expect, it } from 'vitest';
import { planAddresses, usedRangesFromHost } from '../../src/devcluster/address-plan.js';
import { cidrsOverlap, formatCidr, nthSubnet, parseCidr, parseIPv4 } from '../../src/devcluster/ipv4.js';

const hostUplink = usedRangesFromHost(
  [
    { dst: 'default', dev: 'eth0' },
    { dst: '192.0.2.0/24', dev: 'eth0' },
    { dst: '127.0.0.0/8', type: 'local', dev: 'lo', table: 'local' },
    { dst: '192.0.2.2', type: 'local', dev: 'eth0', table: 'local' },
  ],
  [{ ifname: 'eth0', addr_info: [{ family: 'inet', local: '192.0.2.2', prefixlen: 24 }] }],
);

describe('CIDR arithmetic', () => {
  it.each([
    ['10.244.0.0/16', '10.244.0.0/16'],
    ['172.18.0.0/16', '172.18.0.0/16'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['255.255.255.255/32', '255.255.255.255/32'],
  ])('round-trips %s', (text, expected) => {
    expect(formatCidr(parseCidr(text))).toBe(expected);
  });

  it.each([
    '10.244.0.0',
    '10.244.0.0/33',
    '10.256.0.0/16',
    '10.244.0/16',
    'a.b.c.d/8',
    '10.244.0.0/-1',
    ' /16',
  ])('rejects %j', (text) => {
    expect(() => parseCidr(text)).toThrow(/invalid/);
  });

  it('rejects host bits in strict mode and names the network meant', () => {
    expect(() => parseCidr('10.244.1.0/16', { strict: true })).toThrow(/did you mean 10\.244\.0\.0\/16/);
  });

  it.each([
    ['10.0.0.0/8', '10.244.0.0/16', true],
    ['10.244.0.0/16', '10.245.0.0/16', false],
    ['172.18.0.0/16', '172.18.255.255/32', true],
    ['192.0.2.0/24', '192.0.3.0/24', false],
  ])('%s overlaps %s: %s', (a, b, overlap) => {
    expect(cidrsOverlap(parseCidr(a), parseCidr(b))).toBe(overlap);
  });

  it('splits a /16 into /24s in order and refuses the 257th', () => {
    const pod = parseCidr('10.244.0.0/16');
    expect(formatCidr(nthSubnet(pod, 24, 0))).toBe('10.244.0.0/24');
    expect(formatCidr(nthSubnet(pod, 24, 255))).toBe('10.244.255.0/24');
    expect(() => nthSubnet(pod, 24, 256)).toThrow(/holds only 256/);
  });

  it('parses dotted quads to unsigned numbers', () => {
    expect(parseIPv4('255.255.255.255')).toBe(0xffffffff);
    expect(parseIPv4('10.0.0.1')).toBe(0x0a000001);
  });
});

describe('planAddresses', () => {
  it('lays a 3-node cluster out like kind: bridge .1, nodes from .2, one /24 per node', () => {
    const plan = planAddresses({
      nodeCount: 3,
      podCIDR: '10.244.0.0/16',
      serviceCIDR: '10.96.0.0/12',
      used: hostUplink,
    });
    expect(plan.nodeCIDR).toBe('172.18.0.0/16');
    expect(plan.bridgeIP).toBe('172.18.0.1');
    expect(plan.nodes).toEqual([
      { index: 0, ip: '172.18.0.2', podCIDR: '10.244.0.0/24', routerIP: '10.244.0.1' },
      { index: 1, ip: '172.18.0.3', podCIDR: '10.244.1.0/24', routerIP: '10.244.1.1' },
      { index: 2, ip: '172.18.0.4', podCIDR: '10.244.2.0/24', routerIP: '10.244.2.1' },
    ]);
  });

  it('skips node networks that a host route, an address or another cluster uses', () => {
    const used = [
      ...hostUplink,
      ...usedRangesFromHost([{ dst: '172.18.0.0/16', dev: 'br-other' }], []),
      ...usedRangesFromHost(
        [],
        [{ ifname: 'x', addr_info: [{ family: 'inet', local: '172.19.4.1', prefixlen: 24 }] }],
      ),
      { cidr: parseCidr('172.20.0.0/16'), owner: 'devcluster "other"' },
    ];
    const plan = planAddresses({ nodeCount: 2, podCIDR: '10.244.0.0/16', serviceCIDR: '10.96.0.0/12', used });
    expect(plan.nodeCIDR).toBe('172.21.0.0/16');
  });

  it('fails, naming every candidate, when no node network is free', () => {
    const used = [{ cidr: parseCidr('172.16.0.0/12'), owner: 'host route 172.16.0.0/12 dev vpn0' }];
    expect(() =>
      planAddresses({ nodeCount: 2, podCIDR: '10.244.0.0/16', serviceCIDR: '10.96.0.0/12', used }),
    ).toThrow(/no free node network: every candidate \(172\.18\.0\.0\/16 to 172\.31\.0\.0\/16\)/);
  });

  it.each([
    [
      'a pod CIDR on the host uplink',
      { podCIDR: '192.0.0.0/16', serviceCIDR: '10.96.0.0/12' },
      /--pod-cidr 192\.0\.0\.0\/16 overlaps 192\.0\.2\.0\/24 \(host route 192\.0\.2\.0\/24 dev eth0\)/,
    ],
    [
      'a service CIDR covering loopback',
      { podCIDR: '10.244.0.0/16', serviceCIDR: '127.0.0.0/12' },
      /--service-cidr 127\.0\.0\.0\/12 overlaps 127\.0\.0\.0\/8/,
    ],
    [
      'pod and service CIDRs that overlap',
      { podCIDR: '10.96.0.0/16', serviceCIDR: '10.96.0.0/12' },
      /--pod-cidr 10\.96\.0\.0\/16 overlaps --service-cidr 10\.96\.0\.0\/12/,
    ],
    [
      'a pod CIDR with host bits',
      { podCIDR: '10.244.1.0/16', serviceCIDR: '10.96.0.0/12' },
      /--pod-cidr: .*did you mean/,
    ],
    [
      'a pod CIDR smaller than a node /24',
      { podCIDR: '10.244.0.0/25', serviceCIDR: '10.96.0.0/12' },
      /too small/,
    ],
    [
      'a pod CIDR with too few /24s',
      { podCIDR: '10.244.0.0/24', serviceCIDR: '10.96.0.0/12' },
      /holds 1 node \/24s, fewer than --nodes 2/,
    ],
    [
      'a service CIDR larger than /12',
      { podCIDR: '10.244.0.0/16', serviceCIDR: '10.0.0.0/8' },
      /mask must be \/12 or longer/,
    ],
    ['garbage', { podCIDR: 'ten/8', serviceCIDR: '10.96.0.0/12' }, /--pod-cidr: invalid CIDR/],
  ])('refuses %s', (_what, flags, message) => {
    expect(() => planAddresses({ nodeCount: 2, ...flags, used: hostUplink })).toThrow(message);
  });

  it('refuses a pod CIDR overlapping the node network it would otherwise choose', () => {
    const plan = planAddresses({
      nodeCount: 2,
      podCIDR: '172.18.0.0/16',
      serviceCIDR: '10.96.0.0/12',
      used: hostUplink,
    });
    expect(plan.nodeCIDR).toBe('172.19.0.0/16');
  });

  it.each([0, -1, 101, 1.5])('refuses --nodes %s', (n) => {
    expect(() =>
      planAddresses({ nodeCount: n, podCIDR: '10.244.0.0/16', serviceCIDR: '10.96.0.0/12', used: [] }),
    ).toThrow(/--nodes must be a whole number from 1 to 100/);
  });
});

describe('usedRangesFromHost', () => {
  it('keeps every route but defaults, host routes as /32, and addresses with their prefix', () => {
    const used = usedRangesFromHost(
      [
        { dst: 'default' },
        { dst: '0.0.0.0/0' },
        { dst: '10.1.2.3', type: 'local', table: 'local' },
        { dst: 'fe80::/64' },
      ],
      [
        {
          ifname: 'wg0',
          addr_info: [
            { family: 'inet6', local: 'fe80::1', prefixlen: 64 },
            { family: 'inet', local: '100.64.1.1', prefixlen: 10 },
          ],
        },
      ],
    );
    expect(used.map((u) => formatCidr(u.cidr))).toEqual(['10.1.2.3/32', '100.64.0.0/10']);
    expect(used[1]?.owner).toBe('address 100.64.1.1/10 on host interface wg0');
  });
});
