// The LB maps as the agent will use them: C and TS layouts agree (BTF), LbMaps reads back what
// it writes, refuses bad input without touching a map, fails cleanly on a full map, and pinned
// maps and links outlive the process that made them.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BpfLink } from '../../src/datapath/cgroup.js';
import {
  AffinityClientKind,
  backendStates,
  defaultLbMapSizes,
  type LbBackend,
  type LbFrontend,
  LbMaps,
  LbScope,
  LbServiceFlag,
  LbServiceFlag2,
  type LbService,
  lbLayoutCodecs,
  lbMapNames,
  sockLbStats,
} from '../../src/datapath/lbmap.js';
import { BpfObject } from '../../src/datapath/object.js';
import { WeftError } from '../../src/shared/errors.js';
import { bpfObjectPath, projectRoot } from '../../src/shared/self.js';
import { Sandbox, type Workload, type WorkloadError } from './support/sandbox.js';
import { sockLbPrograms } from './support/socklb.js';
import type { TcpResult } from './support/workload-protocol.js';

const tag = `weft-kt-socklbmaps-${process.pid}`;
const PEER = resolve(projectRoot, 'test/kernel/support/lb-peer.ts');
const backendAddresses = ['10.249.0.1', '10.249.0.2', '10.249.0.3'];

let box: Sandbox;
let backendsProcess: Workload;

function backend(id: number, address = backendAddresses[(id - 1) % 3]!): LbBackend {
  return { id, address, port: 8080, protocol: 'TCP', state: 'active', clusterId: 0, zone: 0 };
}

function clusterIP(i: number, backends: number[], extra: Partial<LbFrontend> = {}): LbFrontend {
  return {
    address: `10.250.${Math.floor(i / 250)}.${(i % 250) + 1}`,
    port: 80,
    protocol: 'TCP',
    type: 'ClusterIP',
    revNatIndex: i + 1,
    backends,
    externalTrafficPolicy: 'Cluster',
    internalTrafficPolicy: 'Cluster',
    ...extra,
  };
}

/** Runs lb-peer.ts in a separate node process (the same binding, another process). */
function peer(...args: string[]): string {
  const r = spawnSync(process.execPath, ['--import', 'tsx', PEER, ...args], {
    cwd: projectRoot,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`lb-peer ${args[0]} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** Every service entry of both families, as [key, value] sorted, for before/after comparisons. */
function snapshot(lb: LbMaps): string {
  const rows = [...lb.v4.services.entries(), ...lb.v6.services.entries()]
    .map((e) => JSON.stringify(e))
    .sort();
  return JSON.stringify({
    rows,
    backends: lb.backends(),
    revNat: lb.reverseNat(),
    match: lb.affinityMatch.entries(),
  });
}

/** What the program relies on: every master's slots exist, and each slot names a backend. */
function expectConsistent(lb: LbMaps): void {
  const services = new Map(lb.v4.services.entries().map(([k, v]) => [JSON.stringify(k), v] as const));
  const backendIds = new Set(lb.v4.backends.keys());
  let reachable = 0;
  for (const [key, v] of services) {
    const k = JSON.parse(key) as { backend_slot: number; scope: number };
    if (k.backend_slot !== 0) continue;
    reachable++;
    for (let slot = 1; slot <= v.count; slot++) {
      const s: LbService | undefined = services.get(JSON.stringify({ ...k, backend_slot: slot }));
      expect(s, `slot ${slot} of ${key}`).toBeDefined();
      expect(backendIds.has(s!.backend_id), `backend ${s!.backend_id} of ${key}`).toBe(true);
      reachable++;
    }
  }
  expect(services.size, 'entries no master reaches').toBe(reachable);
}

beforeAll(async () => {
  box = Sandbox.create(tag, { addresses: backendAddresses });
  backendsProcess = await box.workload();
  for (const [i, host] of backendAddresses.entries()) {
    await backendsProcess.request({ op: 'serve', protocol: 'tcp', name: `b${i + 1}`, host, port: 8080 });
  }
});

afterAll(async () => {
  await box?.destroy();
});

describe('layouts', () => {
  it.each(['sock_lb.bpf.o', 'alignchecker.bpf.o'])(
    'every LB codec has the size and member offsets of its C struct in the BTF of %s',
    (object) => {
      const obj = BpfObject.open(bpfObjectPath(object));
      try {
        for (const codec of lbLayoutCodecs) {
          const btf = obj.structLayout(codec.cName);
          expect(btf, `${codec.cName} missing from the BTF of ${object}`).toBeDefined();
          expect(btf!.size, codec.cName).toBe(codec.size);
          const named = codec.fields.filter((f) => !/^pad\d+$/.test(f.name));
          expect(named, codec.cName).toEqual(btf!.members.filter((m) => !/^pad/.test(m.name)));
        }
      } finally {
        obj.close();
      }
    },
  );

  it('the TypeScript constants have the values of the C enums', () => {
    const dump = JSON.parse(
      execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', bpfObjectPath('alignchecker.bpf.o')], {
        encoding: 'utf8',
      }),
    ) as { types: Array<{ kind: string; name: string; values?: Array<{ name: string; val: number }> }> };
    const inC = new Map<string, number>();
    for (const t of dump.types) {
      if (t.kind === 'ENUM') for (const v of t.values ?? []) inC.set(v.name, v.val);
    }
    const inTs: Array<[string, number]> = [
      ['LB_LOOKUP_SCOPE_EXT', LbScope.external],
      ['LB_LOOKUP_SCOPE_INT', LbScope.internal],
      ['LB_SVC_F_EXTERNAL_IP', LbServiceFlag.externalIP],
      ['LB_SVC_F_NODEPORT', LbServiceFlag.nodePort],
      ['LB_SVC_F_LOADBALANCER', LbServiceFlag.loadBalancer],
      ['LB_SVC_F_AFFINITY', LbServiceFlag.affinity],
      ['LB_SVC_F_EXT_LOCAL', LbServiceFlag.externalLocal],
      ['LB_SVC_F_SOURCE_RANGE', LbServiceFlag.sourceRange],
      ['LB_SVC_F2_INT_LOCAL', LbServiceFlag2.internalLocal],
      ['LB_SVC_F2_TWO_SCOPES', LbServiceFlag2.twoScopes],
      ['LB_SVC_F2_MAGLEV', LbServiceFlag2.maglev],
      ['LB_BACKEND_ACTIVE', backendStates.indexOf('active')],
      ['LB_BACKEND_TERMINATING', backendStates.indexOf('terminating')],
      ['LB_BACKEND_QUARANTINED', backendStates.indexOf('quarantined')],
      ['LB_AFFINITY_CLIENT_NETNS', AffinityClientKind.netns],
      ['LB_AFFINITY_CLIENT_ADDR', AffinityClientKind.address],
      ...sockLbStats.map((s, i): [string, number] => [`SOCK_LB_STAT_${s.toUpperCase()}`, i]),
      ['SOCK_LB_STAT_MAX', sockLbStats.length],
    ];
    expect(inTs.map(([name]) => [name, inC.get(name)])).toEqual(inTs);
  });

  it('the object declares every LB map, pinned by name, with the default sizes', () => {
    const pinRoot = `${box.pinRoot}/defaults`;
    const obj = BpfObject.open(bpfObjectPath('sock_lb.bpf.o'), { pinRoot });
    try {
      obj.load();
      const lb = LbMaps.fromObject(obj); // throws if a codec's size differs from the map's
      lb.close();
      const sizes = {
        [lbMapNames.services4]: ['hash', defaultLbMapSizes.services],
        [lbMapNames.backends6]: ['hash', defaultLbMapSizes.backends],
        [lbMapNames.reverseNat4]: ['hash', defaultLbMapSizes.reverseNat],
        [lbMapNames.sockRevnat6]: ['lru_hash', defaultLbMapSizes.sockRevnat],
        [lbMapNames.affinity]: ['lru_hash', defaultLbMapSizes.affinity],
        [lbMapNames.affinityMatch]: ['hash', defaultLbMapSizes.affinity],
      };
      for (const [name, [type, max]] of Object.entries(sizes)) {
        expect([name, obj.map(name).type, obj.map(name).maxEntries]).toEqual([name, type, max]);
      }
      for (const name of Object.values(lbMapNames)) expect(existsSync(`${pinRoot}/${name}`), name).toBe(true);
      expect(obj.programNames()).toEqual([...sockLbPrograms]);
    } finally {
      obj.close();
    }
  });
});

describe('LbMaps', () => {
  let lb: LbMaps;
  const pinRoot = () => `${box.pinRoot}/lbmaps`;

  beforeAll(() => {
    lb = LbMaps.open({ pinRoot: pinRoot(), sizes: { services: 4096 } });
  });
  afterAll(() => {
    lb?.close();
  });

  it('reads back every frontend and backend it wrote, in both families', () => {
    const backends = [1, 2, 3].map((id) => backend(id));
    const v6: LbBackend = { ...backend(40), address: 'fd77:249::1' };
    // More than the bulk threshold, so previous state is read with one batch walk.
    const frontends = Array.from({ length: 300 }, (_, i) =>
      clusterIP(i, [1, 2, 3].slice(0, (i % 3) + 1), i % 7 === 0 ? { affinityTimeoutSeconds: 60 } : {}),
    );
    const sixth: LbFrontend = { ...clusterIP(400, [40]), address: 'fd77:250::1', type: 'LoadBalancer' };
    lb.apply({ backends: [...backends, v6], frontends: [...frontends, sixth] });
    expect(lb.frontends()).toEqual([...frontends, sixth]);
    expect(lb.backends()).toEqual([...backends, v6]);
    expect(lb.reverseNat()).toHaveLength(301);
    expect(lb.affinityMatch.count()).toBe(countPairs(frontends));
    expectConsistent(lb);
  });

  it('applying the same state again changes nothing', () => {
    const before = snapshot(lb);
    lb.apply({ backends: lb.backends(), frontends: lb.frontends() });
    expect(snapshot(lb)).toBe(before);
  });

  it('changes and removals leave exactly the asked state, with no orphan entries', () => {
    const all = lb.frontends();
    const changed = all.slice(0, 100).map((f, i) => ({ ...f, backends: i % 2 ? [3] : [3, 2, 1] }));
    lb.applyFrontends(changed);
    lb.deleteFrontends(all.slice(100, 200));
    expect(lb.frontends()).toEqual([...changed, ...all.slice(200)]);
    expect(lb.reverseNat()).toHaveLength(all.length - 100);
    expectConsistent(lb);
  });

  it.each([
    [
      'a frontend listing a backend that does not exist',
      () => lb.applyFrontends([clusterIP(900, [77])]),
      /backend 77 does not exist/,
    ],
    [
      'a frontend listing a backend of the other family',
      () => lb.applyFrontends([clusterIP(901, [40])]),
      /backend 40 is IPv6/,
    ],
    [
      'a backend id reused across families',
      () => lb.applyBackends([{ ...backend(40), address: '10.249.0.9' }]),
      /already used by an IPv6 backend/,
    ],
    [
      'two frontends with one reverse NAT index',
      () => lb.applyFrontends([clusterIP(902, [1]), { ...clusterIP(903, [1]), revNatIndex: 903 }]),
      /revNatIndex 903 is also given/,
    ],
    [
      'a malformed frontend in a batch of good ones',
      () => lb.applyFrontends([clusterIP(904, [1]), { ...clusterIP(905, [1]), port: 0 }]),
      /port 0/,
    ],
    [
      'a frontend listed twice in one update',
      () =>
        lb.updateFrontends([
          { previous: undefined, next: clusterIP(906, [1]) },
          { previous: undefined, next: { ...clusterIP(906, [1]), revNatIndex: 1907 } },
        ]),
      /^frontend 10\.250\.3\.157:80\/TCP: listed twice$/,
    ],
    [
      'an IPv6 frontend listed twice in one update',
      () =>
        lb.updateFrontends([
          { previous: undefined, next: { ...clusterIP(906, [40]), address: 'fd77:250::9' } },
          { previous: undefined, next: { ...clusterIP(907, [40]), address: 'fd77:250::9' } },
        ]),
      /^frontend \[fd77:250::9\]:80\/TCP: listed twice$/,
    ],
    [
      'a frontend removed and added in one update',
      () =>
        lb.updateFrontends([
          { previous: clusterIP(911, [1]), next: undefined },
          { previous: undefined, next: clusterIP(911, [1]) },
        ]),
      /^frontend 10\.250\.3\.162:80\/TCP: listed twice$/,
    ],
    [
      'an update whose previous state is that of another frontend',
      () =>
        lb.updateFrontends([{ previous: clusterIP(908, [1]), next: { ...clusterIP(908, [1]), port: 81 } }]),
      /^frontend 10\.250\.3\.159:81\/TCP: its previous state is that of 10\.250\.3\.159:80\/TCP$/,
    ],
    [
      'two frontends with one reverse NAT index in one update',
      () =>
        lb.updateFrontends([
          { previous: undefined, next: clusterIP(909, [1]) },
          { previous: undefined, next: { ...clusterIP(910, [1]), revNatIndex: 910 } },
        ]),
      /^frontend 10\.250\.3\.161:80\/TCP: revNatIndex 910 is also given to 10\.250\.3\.160:80\/TCP$/,
    ],
    ['removing a backend a frontend still lists', () => lb.deleteBackends([1]), /still listed by/],
  ])('%s is refused with a clear error and no map changes', (_name, act, message) => {
    const before = snapshot(lb);
    expect(act).toThrowError(message);
    try {
      act();
    } catch (err) {
      expect(err).toBeInstanceOf(WeftError);
      expect((err as WeftError).code).toMatch(/^WEFT_ERR_(LB_INVALID|BACKEND_IN_USE)$/);
    }
    expect(snapshot(lb)).toBe(before);
  });

  it('reopening the pin root with other sizes is a clear error, not a silent resize', () => {
    expect(() => LbMaps.open({ pinRoot: pinRoot(), sizes: { services: 8192 } })).toThrowError(
      /map weft_lb4_services pinned at .* does not match .*maxEntries 4096 pinned vs 8192 wanted/,
    );
  });
});

describe('a full map', () => {
  it('raises WEFT_ERR_MAP_FULL, keeps the frontends it could not apply as they were, and leaves no orphan slots', () => {
    const lb = LbMaps.open({ pinRoot: `${box.pinRoot}/full`, sizes: { services: 10 } });
    try {
      lb.apply({
        backends: [1, 2, 3].map((id) => backend(id)),
        frontends: [clusterIP(0, [1, 2, 3]), clusterIP(1, [1])],
      });
      const before = lb.frontends();
      let error: unknown;
      try {
        // 6 entries used; growing the first frontend and adding two more needs 1 + 2·4 more.
        lb.applyFrontends([clusterIP(0, [1, 2, 3, 1, 2]), clusterIP(2, [1, 2, 3]), clusterIP(3, [3])]);
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(WeftError);
      expect((error as WeftError).code).toBe('WEFT_ERR_MAP_FULL');
      expect((error as Error).message).toMatch(/weft_lb4_services is full \(max_entries 10\)/);
      const after = lb.frontends();
      // Each frontend is either exactly as before or exactly as asked.
      for (const f of after) {
        const old = before.find((b) => b.address === f.address);
        const asked = [clusterIP(0, [1, 2, 3, 1, 2]), clusterIP(2, [1, 2, 3]), clusterIP(3, [3])].find(
          (a) => a.address === f.address,
        );
        expect([old, asked]).toContainEqual(f);
      }
      expect(after.find((f) => f.address === clusterIP(1, []).address)).toEqual(before[1]);
      expectConsistent(lb);
    } finally {
      lb.close();
    }
  });
});

describe('new frontends written straight from the model (an agent’s first sync)', () => {
  const fresh = () => [
    clusterIP(0, [1, 2, 3]),
    clusterIP(1, [2], { type: 'NodePort', internalBackends: [1, 2, 3], externalTrafficPolicy: 'Local' }),
    clusterIP(2, [3], { type: 'LoadBalancer', internalBackends: [], sourceRanges: [] }),
  ];

  it('hold exactly what was asked, with their reverse NAT entries, as the planned path writes them', () => {
    const lb = LbMaps.open({ pinRoot: `${box.pinRoot}/fresh` });
    const planned = LbMaps.open({ pinRoot: `${box.pinRoot}/planned` });
    try {
      for (const maps of [lb, planned]) maps.upsertBackends([1, 2, 3].map((id) => backend(id)));
      lb.updateFrontends(fresh().map((next) => ({ previous: undefined, next })));
      // The same frontends through the planned path: one of them with affinity takes it.
      planned.updateFrontends([
        { previous: undefined, next: clusterIP(9, [1], { affinityTimeoutSeconds: 60 }) },
        ...fresh().map((next) => ({ previous: undefined, next })),
      ]);
      expect(lb.frontends()).toEqual(fresh());
      const entries = (m: LbMaps) =>
        m.v4.services
          .entries()
          .filter(([k]) => k.address !== clusterIP(9, []).address)
          .map((e) => JSON.stringify(e))
          .sort();
      expect(entries(lb)).toEqual(entries(planned));
      expect(lb.reverseNat().map((r) => r.revNatIndex)).toEqual([1, 2, 3]);
      expectConsistent(lb);
    } finally {
      lb.close();
      planned.close();
    }
  });

  it('that do not all fit: each is absent or as asked, nothing half-written, WEFT_ERR_MAP_FULL', () => {
    // 3 + 1 + 4 + 1 + 2 = 11 entries (slots and masters) against 10.
    const lb = LbMaps.open({ pinRoot: `${box.pinRoot}/fresh-full`, sizes: { services: 10 } });
    try {
      lb.upsertBackends([1, 2, 3].map((id) => backend(id)));
      let error: unknown;
      try {
        lb.updateFrontends(fresh().map((next) => ({ previous: undefined, next })));
      } catch (err) {
        error = err;
      }
      expect((error as WeftError).code).toBe('WEFT_ERR_MAP_FULL');
      // New slots go first and a frontend counts once its EXT master is in: here none got there.
      const after = lb.frontends();
      for (const f of after) expect(fresh()).toContainEqual(f);
      expect(lb.reverseNat().map((r) => r.revNatIndex)).toEqual(after.map((f) => f.revNatIndex));
      expectConsistent(lb);
      // What the reconciler does next: Service by Service, the ones that fit go in.
      lb.updateFrontends([{ previous: undefined, next: fresh()[0]! }]);
      lb.updateFrontends([{ previous: undefined, next: fresh()[2]! }]);
      expect(lb.frontends()).toEqual([fresh()[0], fresh()[2]]);
      expect(lb.reverseNat().map((r) => r.revNatIndex)).toEqual([1, 3]);
      expectConsistent(lb);
    } finally {
      lb.close();
    }
  });
});

describe('pinned maps and links', () => {
  let client: Workload | undefined;
  const pinRoot = () => `${box.pinRoot}/node`;

  it('maps pinned by this process are read, and written, by another process', () => {
    const lb = LbMaps.open({ pinRoot: pinRoot() });
    try {
      lb.apply({ backends: [1, 2, 3].map((id) => backend(id)), frontends: [clusterIP(0, [1, 2, 3])] });
      const seen = JSON.parse(peer('dump', pinRoot())) as { frontends: LbFrontend[]; backends: LbBackend[] };
      expect(seen).toEqual({ frontends: lb.frontends(), backends: lb.backends() });
      peer('add', pinRoot(), JSON.stringify(clusterIP(1, [2])));
      expect(lb.frontend(clusterIP(1, []))).toEqual(clusterIP(1, [2]));
    } finally {
      lb.close();
    }
    // And a later open (an agent restart) finds them full.
    const again = LbMaps.open({ pinRoot: pinRoot() });
    try {
      expect(again.frontends()).toEqual([clusterIP(0, [1, 2, 3]), clusterIP(1, [2])]);
    } finally {
      again.close();
    }
  });

  it('links pinned by a process that has exited keep balancing, until detached', async () => {
    const cgroup = box.addCgroup(`${tag}-pinned`);
    peer('attach', pinRoot(), cgroup); // exits after pinning its links
    const links = sockLbPrograms.map((name) => `${pinRoot()}/links/${name}`);
    expect(links.filter((p) => !existsSync(p))).toEqual([]);

    client = await box.workload({ cgroup });
    const results = await client.request<TcpResult[]>({
      op: 'tcp-connect',
      host: clusterIP(1, []).address,
      port: 80,
      count: 5,
    });
    expect(results.map((r) => r.backend)).toEqual(['b2', 'b2', 'b2', 'b2', 'b2']);
    expect(results[0]!.remoteAddress).toBe(clusterIP(1, []).address);

    for (const path of links) {
      const link = BpfLink.openPinned(path)!;
      link.detach();
      link.unpin();
      link.close();
    }
    const code = await client.request({ op: 'tcp-connect', host: clusterIP(1, []).address, port: 80 }).then(
      () => 'connected',
      (err: WorkloadError) => err.code,
    );
    expect(code).toBe('ENETUNREACH');
  });
});

function countPairs(frontends: LbFrontend[]): number {
  const pairs = new Set<string>();
  for (const f of frontends) {
    if (f.affinityTimeoutSeconds === undefined) continue;
    for (const id of f.backends) pairs.add(`${id}/${f.revNatIndex}`);
  }
  return pairs.size;
}
