import { describe, expect, it } from 'vitest';
import { type Codec, u16 } from '../../src/datapath/codec.js';
import {
  type FrontendPlan,
  type IpFamily,
  frontendsFromEntries,
  type Lb4Key,
  type LbFrontend,
  type LbService,
  LbScope,
  LbServiceFlag,
  LbServiceFlag2,
  lb4Backend,
  lb4Key,
  lb4ReverseNat,
  lb4SockRevnat,
  lb4SockRevnatKey,
  lb6Backend,
  lb6Key,
  lb6ReverseNat,
  lb6SockRevnat,
  lb6SockRevnatKey,
  lbAffinity,
  lbAffinityKey,
  lbAffinityMatchKey,
  lbMaxEntries,
  lbService,
  NewFrontendEncoder,
  planFrontend,
  validateBackend,
  validateFrontend,
} from '../../src/datapath/lbmap.js';
import type { BatchEncoder } from '../../src/datapath/map.js';

function encode<T>(codec: Codec<T>, value: T): Buffer {
  const buf = Buffer.alloc(codec.size + 2, 0xee);
  codec.encode(value, buf, 1);
  return buf.subarray(1, 1 + codec.size);
}

function roundTrip<T>(codec: Codec<T>, value: T): T {
  return codec.decode(encode(codec, value), 0);
}

describe('LB codecs', () => {
  it.each([
    ['lb4_key', lb4Key, { address: '10.96.0.10', dport: 53, backend_slot: 3, proto: 17, scope: 1 }],
    ['lb6_key', lb6Key, { address: 'fd00:96::a', dport: 443, backend_slot: 0, proto: 6, scope: 0 }],
    [
      'lb_service',
      lbService,
      { backend_id: 0xfffffffe, count: 65535, rev_nat_index: 7, flags: 0x1b, flags2: 2 },
    ],
    [
      'lb4_backend',
      lb4Backend,
      { address: '10.244.1.5', port: 8080, proto: 6, flags: 1, cluster_id: 2, zone: 3 },
    ],
    [
      'lb6_backend',
      lb6Backend,
      { address: 'fd00:244::5', port: 8080, proto: 17, flags: 2, cluster_id: 0, zone: 9 },
    ],
    ['lb4_reverse_nat', lb4ReverseNat, { address: '10.96.0.10', port: 80 }],
    ['lb6_reverse_nat', lb6ReverseNat, { address: 'fd00:96::1', port: 80 }],
    ['lb4_sock_revnat_key', lb4SockRevnatKey, { cookie: 2n ** 63n + 5n, address: '10.244.1.5', port: 8080 }],
    ['lb4_sock_revnat', lb4SockRevnat, { address: '10.96.0.10', port: 80, rev_nat_index: 65535 }],
    ['lb6_sock_revnat_key', lb6SockRevnatKey, { cookie: 1n, address: '::1', port: 1 }],
    ['lb6_sock_revnat', lb6SockRevnat, { address: 'fd00::1', port: 65535, rev_nat_index: 1 }],
    [
      'lb_affinity_key (netns)',
      lbAffinityKey,
      { client: { kind: 'netns', netnsCookie: 4097n }, rev_nat_index: 9 },
    ],
    [
      'lb_affinity_key (IPv4)',
      lbAffinityKey,
      { client: { kind: 'address', address: '192.168.7.1' }, rev_nat_index: 9 },
    ],
    [
      'lb_affinity_key (IPv6)',
      lbAffinityKey,
      { client: { kind: 'address', address: 'fd00::7' }, rev_nat_index: 9 },
    ],
    ['lb_affinity', lbAffinity, { last_used: 2 ** 40, backend_id: 12 }],
    ['lb_affinity_match_key', lbAffinityMatchKey, { backend_id: 12, rev_nat_index: 9 }],
  ] as const)('%s decodes to what was encoded', (_name, codec, value) => {
    expect(roundTrip(codec as Codec<unknown>, value)).toEqual(value);
  });

  // Bytes as the BPF program builds the key on its stack: these must match for lookups to hit.
  it.each([
    [
      'a ClusterIP master: address and port in network order, slot in host order',
      lb4Key,
      { address: '10.96.0.10', dport: 80, backend_slot: 0, proto: 6, scope: 0 },
      '0a60000a' + '0050' + '0000' + '06' + '00' + '0000',
    ],
    [
      'slot 258 of the internal scope of a UDP frontend',
      lb4Key,
      { address: '10.96.0.10', dport: 53, backend_slot: 258, proto: 17, scope: 1 },
      '0a60000a' + '0035' + '0201' + '11' + '01' + '0000',
    ],
    [
      'an IPv6 frontend',
      lb6Key,
      { address: 'fd00::1', dport: 8443, backend_slot: 1, proto: 6, scope: 0 },
      'fd000000000000000000000000000001' + '20fb' + '0100' + '06' + '00' + '0000',
    ],
    [
      'a master entry with affinity timeout 10800 s and two scopes',
      lbService,
      { backend_id: 10800, count: 3, rev_nat_index: 0x0102, flags: LbServiceFlag.affinity, flags2: 2 },
      '302a0000' + '0300' + '0201' + '08' + '02' + '0000',
    ],
    [
      'a terminating backend',
      lb4Backend,
      { address: '10.244.0.7', port: 9376, proto: 6, flags: 1, cluster_id: 0, zone: 0 },
      '0af40007' + '24a0' + '06' + '01' + '0000' + '00' + '00',
    ],
    [
      'a socket reverse-NAT key: cookie in host order',
      lb4SockRevnatKey,
      { cookie: 0x0102030405060708n, address: '10.244.0.7', port: 9376 },
      '0807060504030201' + '0af40007' + '24a0' + '0000',
    ],
    [
      'an affinity key for a network namespace: cookie in host order, kind 1',
      lbAffinityKey,
      { client: { kind: 'netns', netnsCookie: 0x1234n }, rev_nat_index: 5 },
      '3412000000000000' + '0000000000000000' + '0500' + '01' + '0000000000',
    ],
    [
      'an affinity key for an IPv4 client: v4-mapped, kind 2',
      lbAffinityKey,
      { client: { kind: 'address', address: '10.1.2.3' }, rev_nat_index: 5 },
      '00000000000000000000ffff0a010203' + '0500' + '02' + '0000000000',
    ],
  ] as const)('%s is laid out as in C', (_name, codec, value, hex) => {
    expect(encode(codec as Codec<unknown>, value).toString('hex')).toBe(hex);
  });

  it('padding is written as zero whatever the buffer held', () => {
    const buf = Buffer.alloc(lb4Key.size, 0xff);
    lb4Key.encode({ address: '10.0.0.1', dport: 1, backend_slot: 0, proto: 6, scope: 0 }, buf, 0);
    expect(buf.subarray(10).toString('hex')).toBe('0000');
  });
});

describe('map sizes', () => {
  it('one size per kind sets both families', () => {
    const m = lbMaxEntries({ services: 1000, backends: 200 });
    expect(m).toMatchObject({
      weft_lb4_services: 1000,
      weft_lb6_services: 1000,
      weft_lb4_backends: 200,
      weft_lb6_backends: 200,
      weft_lb4_reverse_nat: 65536,
      weft_lb_affinity: 65536,
      weft_lb_aff_match: 65536,
    });
  });

  it.each([0, -1, 1.5, Number.NaN, 2 ** 25])('rejects size %s', (n) => {
    expect(() => lbMaxEntries({ backends: n })).toThrowError(/backends=.* must be an integer/);
  });
});

const clusterIP: LbFrontend = {
  address: '10.96.0.10',
  port: 80,
  protocol: 'TCP',
  type: 'ClusterIP',
  revNatIndex: 1,
  backends: [11, 12, 13],
  externalTrafficPolicy: 'Cluster',
  internalTrafficPolicy: 'Cluster',
};

describe('input validation', () => {
  it.each([
    ['a bad address', { address: '10.96.0' }, /address 10.96.0 is not an IP address/],
    ['a v4-mapped address', { address: '::ffff:10.96.0.1' }, /v4-mapped; give the IPv4 address/],
    ['port 0', { port: 0 }, /port 0 must be an integer from 1 to 65535/],
    ['port 70000', { port: 70000 }, /port 70000/],
    ['an unknown protocol', { protocol: 'ICMP' }, /protocol ICMP must be one of TCP, UDP, SCTP/],
    ['an unknown type', { type: 'Headless' }, /type Headless/],
    ['revNatIndex 0 (reserved)', { revNatIndex: 0 }, /revNatIndex 0 must be an integer from 1 to 65535/],
    ['revNatIndex 65536', { revNatIndex: 65536 }, /revNatIndex 65536/],
    ['backend id 0', { backends: [1, 0] }, /backends id 0/],
    ['a fractional backend id', { backends: [1.5] }, /backends id 1.5/],
    ['too many backends', { backends: Array.from({ length: 65536 }, (_, i) => i + 1) }, /at most 65535 fit/],
    ['internal backend id 2^32', { internalBackends: [2 ** 32] }, /internalBackends id/],
    ['affinity timeout 0', { affinityTimeoutSeconds: 0 }, /affinityTimeoutSeconds 0/],
    [
      'a bad traffic policy',
      { externalTrafficPolicy: 'local' },
      /externalTrafficPolicy must be Cluster or Local/,
    ],
    ['a source range past /32', { sourceRanges: ['10.0.0.0/33'] }, /source range 10.0.0.0\/33 is not a CIDR/],
    [
      'a source range without a prefix',
      { sourceRanges: ['10.0.0.0'] },
      /source range 10.0.0.0 is not a CIDR/,
    ],
  ])('a frontend with %s is refused with a clear error', (_name, change, message) => {
    const bad = { ...clusterIP, ...change } as LbFrontend;
    expect(() => validateFrontend(bad)).toThrowError(message);
    try {
      validateFrontend(bad);
    } catch (err) {
      expect((err as { code: string }).code).toBe('WEFT_ERR_LB_INVALID');
    }
  });

  it('a well-formed frontend of each type passes', () => {
    for (const type of ['ClusterIP', 'NodePort', 'ExternalIP', 'LoadBalancer'] as const) {
      expect(() =>
        validateFrontend({ ...clusterIP, type, internalBackends: [], affinityTimeoutSeconds: 10800 }),
      ).not.toThrow();
    }
  });

  it.each([
    ['id 0', { id: 0 }, /id 0/],
    ['a bad state', { state: 'draining' }, /state draining must be one of active, terminating, quarantined/],
    ['zone 256', { zone: 256 }, /zone 256/],
    ['cluster id -1', { clusterId: -1 }, /clusterId -1/],
  ])('a backend with %s is refused', (_name, change, message) => {
    const good = {
      id: 1,
      address: '10.244.0.1',
      port: 80,
      protocol: 'TCP',
      state: 'active',
      clusterId: 0,
      zone: 0,
    };
    expect(() => validateBackend(good as never)).not.toThrow();
    expect(() => validateBackend({ ...good, ...change } as never)).toThrowError(message);
  });
});

describe('new frontends encoded straight into batch buffers', () => {
  /** What an encoder writes through a BatchEncoder over plain buffers. */
  function written(keySize: number, valueSize: number, fill: (batch: BatchEncoder) => void): Buffer[] {
    const keys = Buffer.alloc(keySize * 1024, 0xee);
    const values = Buffer.alloc(valueSize * 1024, 0xee);
    let n = 0;
    fill({ keys, values, next: () => n++ });
    return [keys.subarray(0, n * keySize), values.subarray(0, n * valueSize)];
  }

  function encoded<K, V>(
    keyCodec: Codec<K>,
    valueCodec: Codec<V>,
    entries: Array<readonly [K, V]>,
  ): Buffer[] {
    return [
      Buffer.concat(entries.map(([k]) => encode(keyCodec, k))),
      Buffer.concat(entries.map(([, v]) => encode(valueCodec, v))),
    ];
  }

  const v4: LbFrontend[] = [
    clusterIP,
    {
      ...clusterIP,
      address: '192.168.7.250',
      port: 30080,
      protocol: 'UDP',
      type: 'NodePort',
      revNatIndex: 300,
      backends: [21],
      internalBackends: [21, 22],
      externalTrafficPolicy: 'Local',
      internalTrafficPolicy: 'Local',
      affinityTimeoutSeconds: 10800,
    },
    {
      ...clusterIP,
      address: '203.0.113.9',
      port: 443,
      type: 'LoadBalancer',
      revNatIndex: 65535,
      backends: [0xffff_fffe, 1],
      sourceRanges: ['10.0.0.0/8'],
    },
    { ...clusterIP, address: '10.96.0.11', revNatIndex: 2, backends: [] },
    {
      ...clusterIP,
      address: '10.96.0.12',
      revNatIndex: 3,
      backends: Array.from({ length: 300 }, (_, i) => i + 1),
    },
  ];
  const v6: LbFrontend[] = v4.map((f, i) => ({
    ...f,
    address: ['fd00:96::a', '2001:db8::1:0:0:7', 'fe80::1', '::1', 'fd00::12'][i]!,
  }));

  it.each([
    ['IPv4', 4, v4, lb4Key, lb4ReverseNat],
    ['IPv6', 6, v6, lb6Key, lb6ReverseNat],
  ] as const)(
    '%s: the same bytes as the struct codecs, in the order the planned path writes',
    (_name, family, frontends, keyCodec, revNatCodec) => {
      const encoder = new NewFrontendEncoder(family as IpFamily, frontends);
      const plans = frontends.map((f) => planFrontend(undefined, f));
      const serviceWrites = plans.flatMap((p) => p.serviceWrites);
      const slots = serviceWrites.filter(([k]) => k.backend_slot !== 0);
      const masters = (scope: number) =>
        serviceWrites.filter(([k]) => k.backend_slot === 0 && k.scope === scope);

      expect(written(2, revNatCodec.size, (b) => encoder.reverseNat(b))).toEqual(
        encoded(
          u16,
          revNatCodec,
          plans.flatMap((p) => p.reverseNatWrites),
        ),
      );
      expect(encoder.slotCount).toBe(slots.length);
      expect(written(keyCodec.size, lbService.size, (b) => encoder.slots(b))).toEqual(
        encoded(keyCodec, lbService, slots),
      );
      expect(encoder.internalCount).toBe(masters(LbScope.internal).length);
      for (const scope of [LbScope.internal, LbScope.external]) {
        expect(written(keyCodec.size, lbService.size, (b) => encoder.masters(b, scope))).toEqual(
          encoded(keyCodec, lbService, masters(scope)),
        );
      }
    },
  );
});

/**
 * A services map in memory that applies a plan one write or delete at a time and, after every
 * step, checks what the BPF program relies on: every master reaches existing slots, and a
 * two-scope EXT master has its INT run.
 */
class SimulatedServices {
  readonly entries = new Map<string, [Lb4Key, LbService]>();
  steps = 0;

  private id(k: Lb4Key): string {
    return `${k.address}|${k.dport}|${k.proto}|${k.scope}|${k.backend_slot}`;
  }

  apply(plan: FrontendPlan): void {
    for (const [k, v] of plan.serviceWrites) {
      this.entries.set(this.id(k), [k, v]);
      this.checkConsistent();
    }
    for (const k of plan.serviceDeletes) {
      this.entries.delete(this.id(k));
      this.checkConsistent();
    }
  }

  decode(): LbFrontend[] {
    return frontendsFromEntries([...this.entries.values()]);
  }

  private has(k: Lb4Key): LbService | undefined {
    return this.entries.get(this.id(k))?.[1];
  }

  private checkConsistent(): void {
    this.steps++;
    for (const [k, v] of this.entries.values()) {
      if (k.backend_slot !== 0) continue;
      let master = v;
      if (k.scope === LbScope.external && v.flags2 & LbServiceFlag2.twoScopes) {
        const internal = this.has({ ...k, scope: LbScope.internal });
        expect(internal, `INT run of ${k.address}:${k.dport} while EXT says two scopes`).toBeDefined();
        master = internal!;
      }
      for (let slot = 1; slot <= master.count; slot++) {
        const scope = master === v ? k.scope : LbScope.internal;
        expect(this.has({ ...k, scope, backend_slot: slot }), `slot ${slot} of ${k.address}`).toBeDefined();
      }
    }
  }
}

describe('planning frontend changes', () => {
  it('a new frontend writes its reverse NAT, its slots, then its master', () => {
    const plan = planFrontend(undefined, clusterIP);
    expect(plan.reverseNatWrites).toEqual([[1, { address: '10.96.0.10', port: 80 }]]);
    expect(plan.serviceWrites.map(([k]) => k.backend_slot)).toEqual([1, 2, 3, 0]);
    expect(plan.serviceWrites.at(-1)![1]).toEqual({
      backend_id: 0,
      count: 3,
      rev_nat_index: 1,
      flags: 0,
      flags2: 0,
    });
    expect(plan.serviceDeletes).toEqual([]);
  });

  it('applying the same frontend again rewrites no service entry', () => {
    const plan = planFrontend(clusterIP, clusterIP);
    expect(plan.serviceWrites).toEqual([]);
    expect(plan.serviceDeletes).toEqual([]);
    expect(plan.affinityMatchWrites).toEqual([]);
  });

  it('each frontend type sets its flag and the traffic policies theirs', () => {
    const cases = [
      [{ type: 'ClusterIP' }, 0, 0],
      [{ type: 'NodePort' }, LbServiceFlag.nodePort, 0],
      [{ type: 'ExternalIP' }, LbServiceFlag.externalIP, 0],
      [{ type: 'LoadBalancer' }, LbServiceFlag.loadBalancer, 0],
      [
        { type: 'NodePort', externalTrafficPolicy: 'Local' },
        LbServiceFlag.nodePort | LbServiceFlag.externalLocal,
        0,
      ],
      [{ internalTrafficPolicy: 'Local' }, 0, LbServiceFlag2.internalLocal],
      [{ affinityTimeoutSeconds: 60 }, LbServiceFlag.affinity, 0],
      [{ internalBackends: [11] }, 0, LbServiceFlag2.twoScopes],
    ] as const;
    for (const [change, flags, flags2] of cases) {
      const f = { ...clusterIP, ...change } as LbFrontend;
      const master = planFrontend(undefined, f).serviceWrites.at(-1)![1];
      expect({ change, flags: master.flags, flags2: master.flags2 }).toEqual({ change, flags, flags2 });
    }
  });

  const transitions: Array<[string, LbFrontend | undefined, LbFrontend | undefined]> = [
    ['a new frontend', undefined, clusterIP],
    ['a frontend losing backends', clusterIP, { ...clusterIP, backends: [13] }],
    [
      'a frontend gaining backends',
      { ...clusterIP, backends: [11] },
      { ...clusterIP, backends: [11, 14, 15, 16] },
    ],
    ['a frontend going to zero backends', clusterIP, { ...clusterIP, backends: [] }],
    ['a frontend coming back from zero', { ...clusterIP, backends: [] }, clusterIP],
    [
      'a frontend becoming two-scope',
      clusterIP,
      { ...clusterIP, type: 'NodePort', backends: [11], internalBackends: [11, 12, 13] },
    ],
    [
      'a frontend leaving two scopes',
      { ...clusterIP, backends: [11], internalBackends: [11, 12, 13] },
      clusterIP,
    ],
    [
      'a two-scope frontend changing both runs',
      { ...clusterIP, backends: [11], internalBackends: [11, 12] },
      { ...clusterIP, backends: [12, 13], internalBackends: [13] },
    ],
    ['a frontend gaining affinity', clusterIP, { ...clusterIP, affinityTimeoutSeconds: 10800 }],
    ['a frontend with a new reverse NAT index', clusterIP, { ...clusterIP, revNatIndex: 2 }],
    ['a removed frontend', clusterIP, undefined],
    ['a removed two-scope frontend', { ...clusterIP, backends: [11], internalBackends: [12, 13] }, undefined],
  ];

  it.each(transitions)(
    '%s: every intermediate map state is consistent and the end state is as asked',
    (_name, from, to) => {
      const sim = new SimulatedServices();
      if (from) sim.apply(planFrontend(undefined, from));
      expect(sim.decode()).toEqual(from ? [from] : []);
      sim.apply(planFrontend(from, to));
      expect(sim.decode()).toEqual(to ? [to] : []);
      expect(sim.steps).toBeGreaterThan(0);
    },
  );

  it('a two-scope frontend writes its INT master before its EXT master, and deletes EXT first', () => {
    const twoScopes: LbFrontend = {
      ...clusterIP,
      type: 'NodePort',
      backends: [11],
      internalBackends: [11, 12],
    };
    const up = planFrontend(undefined, twoScopes).serviceWrites.map(([k]) => `${k.scope}/${k.backend_slot}`);
    expect(up.slice(-2)).toEqual(['1/0', '0/0']);
    const down = planFrontend(twoScopes, undefined).serviceDeletes.map((k) => `${k.scope}/${k.backend_slot}`);
    expect(down.slice(0, 2)).toEqual(['0/0', '1/0']);
  });

  it('affinity match pairs follow the backends of an affinity frontend', () => {
    const sticky: LbFrontend = { ...clusterIP, affinityTimeoutSeconds: 60 };
    expect(planFrontend(undefined, sticky).affinityMatchWrites).toEqual([
      { backend_id: 11, rev_nat_index: 1 },
      { backend_id: 12, rev_nat_index: 1 },
      { backend_id: 13, rev_nat_index: 1 },
    ]);
    const moved = planFrontend(sticky, { ...sticky, backends: [12, 13, 14] });
    expect(moved.affinityMatchWrites).toEqual([{ backend_id: 14, rev_nat_index: 1 }]);
    expect(moved.affinityMatchDeletes).toEqual([{ backend_id: 11, rev_nat_index: 1 }]);
    const dropped = planFrontend(sticky, clusterIP);
    expect(dropped.affinityMatchDeletes).toHaveLength(3);
  });

  it('a new reverse NAT index rewrites every slot and retires the old index', () => {
    const plan = planFrontend(clusterIP, { ...clusterIP, revNatIndex: 9 });
    expect(plan.serviceWrites.every(([, v]) => v.rev_nat_index === 9)).toBe(true);
    expect(plan.serviceWrites).toHaveLength(4);
    expect(plan.reverseNatDeletes).toEqual([1]);
  });

  it('an IPv6 frontend plans the same way, keyed by its address', () => {
    const v6: LbFrontend = { ...clusterIP, address: 'fd00:96::a', backends: [21] };
    const sim = new SimulatedServices();
    sim.apply(planFrontend(undefined, v6));
    expect(sim.decode()).toEqual([v6]);
  });
});

describe('reading frontends back from service entries', () => {
  const twoScopes: LbFrontend = {
    address: '192.168.1.5',
    port: 30080,
    protocol: 'UDP',
    type: 'NodePort',
    revNatIndex: 9,
    backends: [4],
    internalBackends: [4, 5, 6],
    externalTrafficPolicy: 'Local',
    internalTrafficPolicy: 'Cluster',
    affinityTimeoutSeconds: 60,
  };
  const planned = (...fs: LbFrontend[]) => fs.flatMap((f) => planFrontend(undefined, f).serviceWrites);

  it('whatever order the map walk gives, each frontend comes back once, as written', () => {
    const entries = planned(clusterIP, twoScopes);
    for (const order of [entries, [...entries].reverse(), [...entries.slice(3), ...entries.slice(0, 3)]]) {
      const back = frontendsFromEntries(order.map(([k, v]) => [k, v] as [Lb4Key, LbService]));
      expect(back.sort((a, b) => a.revNatIndex - b.revNatIndex)).toEqual([clusterIP, twoScopes]);
    }
  });

  it('loadBalancerSourceRanges set the master flag; read back, the flag says "limited" and the ranges are the NodePort maps\' to give', () => {
    const limited: LbFrontend = {
      ...clusterIP,
      type: 'LoadBalancer',
      sourceRanges: ['203.0.113.0/24', '2001:db8::/32'],
    };
    const master = planned(limited).find(([k]) => k.backend_slot === 0)![1];
    expect(master.flags & LbServiceFlag.sourceRange).toBe(LbServiceFlag.sourceRange);
    expect(frontendsFromEntries(planned(limited))).toEqual([{ ...limited, sourceRanges: [] }]);
    // An empty list still limits (to nobody); no list: unrestricted, no flag.
    const none = planned({ ...limited, sourceRanges: [] }).find(([k]) => k.backend_slot === 0)![1];
    expect(none.flags & LbServiceFlag.sourceRange).toBe(LbServiceFlag.sourceRange);
    const open = planned({ ...clusterIP, type: 'LoadBalancer' }).find(([k]) => k.backend_slot === 0)![1];
    expect(open.flags & LbServiceFlag.sourceRange).toBe(0);
  });

  it('frontends that differ only by port or protocol stay apart', () => {
    const udp: LbFrontend = { ...clusterIP, protocol: 'UDP', revNatIndex: 2, backends: [7] };
    const otherPort: LbFrontend = { ...clusterIP, port: 81, revNatIndex: 3, backends: [8, 9] };
    const back = frontendsFromEntries(planned(clusterIP, udp, otherPort));
    expect(back.sort((a, b) => a.revNatIndex - b.revNatIndex)).toEqual([clusterIP, udp, otherPort]);
  });

  it('a missing slot reads as backend 0; slots and INT runs without an EXT master are no frontend', () => {
    const entries = planned(clusterIP).filter(([k]) => k.backend_slot !== 2);
    expect(frontendsFromEntries(entries)[0]!.backends).toEqual([
      clusterIP.backends[0],
      0,
      clusterIP.backends[2],
    ]);
    const orphans = planned(twoScopes).filter(
      ([k]) => !(k.backend_slot === 0 && k.scope === LbScope.external),
    );
    expect(frontendsFromEntries(orphans)).toEqual([]);
  });
});
