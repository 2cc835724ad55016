// Agent full sync, in process: 10,000 ClusterIP Services × 3 endpoints go into the agent's
// Service cache through its real code path (the raw objects the informers deliver, validated by
// ServiceCache.upsert), then the reconciler's full sync runs against real pinned maps of
// sock_lb.bpf.o in a pin dir of its own. Reported per round: the cold full sync (empty maps),
// the read-back and the full sync of a second reconciler over the same pins (a restart, which
// must write nothing), and a split per phase (desired state, planning, each LbMaps call, GC).
// No API server, no informers: this is the JavaScript cost of a sync alone.
//
//   node --import tsx bench/agent-sync.ts [--services N] [--rounds R] [--cpu-prof DIR]
//
// --cpu-prof DIR writes a CPU profile of each round's cold sync (and of nothing else) to
// DIR/agent-sync-cold-<round>.cpuprofile, sampled every 100 µs through the inspector. Node's own
// --cpu-prof profiles the whole process, and its sampling signals make loading the BPF object
// fail (EAGAIN from the verifier's retries) at intervals below ≈2 ms. Profiled syncs run slower.
//
// mainThreadCpuMs is the main thread's time on a CPU during the sync (schedstat): unlike the
// wall time it hardly moves when other processes take the machine's cores, so compare it first.
//
// Everything it makes is under /sys/fs/bpf/weft-bench-agent-sync-<pid>/ and removed at the end.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { PerformanceObserver } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { lbSizesFor } from '../src/agent/datapath.js';
import { ServiceCache } from '../src/agent/services/cache.js';
import { type LbWriter, Reconciler, type SyncReport } from '../src/agent/services/reconciler.js';
import { checkEnvironment } from '../src/datapath/environment.js';
import { LbMaps } from '../src/datapath/lbmap.js';
import { fmt, median, report } from './report.js';

const { values: args } = parseArgs({
  options: {
    services: { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '5' },
    'cpu-prof': { type: 'string' },
  },
});
const SERVICES = Number(args.services);
const ROUNDS = Number(args.rounds);
const NODE = 'bench-node';
const root = `/sys/fs/bpf/weft-bench-agent-sync-${process.pid}`;
const log = pino({ level: 'silent' });

const ipOf = (base: number, i: number) =>
  `${(base >>> 24) & 255}.${((base >>> 16) & 255) | ((i >>> 16) & 15)}.${(i >>> 8) & 255}.${i & 255}`;

/** The raw objects, as the API server lists them (the shapes of test/unit/agent-fixtures.ts). */
function rawObjects(): { services: unknown[]; slices: unknown[]; nodes: unknown[] } {
  const services: unknown[] = [];
  const slices: unknown[] = [];
  for (let i = 0; i < SERVICES; i++) {
    const name = `svc-${i}`;
    services.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace: 'bench', resourceVersion: '1' },
      spec: {
        type: 'ClusterIP',
        clusterIP: ipOf(0x0a600000, i),
        clusterIPs: [ipOf(0x0a600000, i)],
        ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }],
        sessionAffinity: 'None',
        internalTrafficPolicy: 'Cluster',
      },
      status: { loadBalancer: {} },
    });
    slices.push({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: `${name}-abcde`,
        namespace: 'bench',
        resourceVersion: '1',
        labels: { 'kubernetes.io/service-name': name },
      },
      addressType: 'IPv4',
      endpoints: [0, 1, 2].map((k) => ({
        addresses: [ipOf(0x0af40000, i * 3 + k)],
        conditions: { ready: true, serving: true, terminating: false },
        nodeName: k === 0 ? NODE : `node-${k}`,
      })),
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    });
  }
  const nodes = [NODE, 'node-1', 'node-2'].map((name, k) => ({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, resourceVersion: '1' },
    status: { addresses: [{ type: 'InternalIP', address: `192.168.0.${k + 1}` }] },
  }));
  return { services, slices, nodes };
}

function filledCache(raw: ReturnType<typeof rawObjects>): ServiceCache {
  const cache = new ServiceCache();
  for (const n of raw.nodes) cache.upsert('Node', n, 'add');
  for (const s of raw.services) cache.upsert('Service', s, 'add');
  for (const s of raw.slices) cache.upsert('EndpointSlice', s, 'add');
  for (const k of ['Service', 'EndpointSlice', 'Node'] as const) cache.markSynced(k);
  return cache;
}

/** ms spent in each LbWriter call, and in GC, while `fn` runs. */
interface Phases {
  totalMs: number;
  /** CPU time (user + system, all threads: GC and compiler threads too) of the sync. */
  cpuMs: number;
  /** The main thread's time on a CPU during the sync (/proc/self/task/<pid>/schedstat). */
  mainThreadCpuMs: number;
  desiredMs: number;
  upsertBackendsMs: number;
  updateFrontendsMs: number;
  removeBackendsMs: number;
  otherWritesMs: number;
  /** total minus the above: planning, diffing, bookkeeping. */
  planMs: number;
  gcMs: number;
}

function timedWriter(lb: LbMaps, t: Record<string, number>): LbWriter {
  const timed =
    <A extends unknown[], R>(name: string, fn: (...a: A) => R) =>
    (...a: A): R => {
      const t0 = performance.now();
      try {
        return fn(...a);
      } finally {
        t[name] = (t[name] ?? 0) + performance.now() - t0;
      }
    };
  return {
    upsertBackends: timed('upsertBackends', (b) => lb.upsertBackends(b)),
    removeBackends: timed('removeBackends', (ids) => lb.removeBackends(ids)),
    updateFrontends: timed('updateFrontends', (c) => lb.updateFrontends(c)),
    removeReverseNat: timed('other', (i) => lb.removeReverseNat(i)),
    frontend: timed('other', (f) => lb.frontend(f)),
    backend: timed('other', (id) => lb.backend(id)),
  };
}

let gcMs = 0;
const gcObserver = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcMs += e.duration;
});
gcObserver.observe({ entryTypes: ['gc'] });

/** The reconciler's private desired-state step, timed (the bench's only look inside). */
function timeDesired(t: Record<string, number>): () => void {
  const proto = Reconciler.prototype as unknown as { recompute: (...a: unknown[]) => unknown };
  const original = proto.recompute;
  proto.recompute = function (this: unknown, ...a: unknown[]) {
    const t0 = performance.now();
    try {
      return original.apply(this, a);
    } finally {
      t.desired = (t.desired ?? 0) + performance.now() - t0;
    }
  };
  return () => {
    proto.recompute = original;
  };
}

/** ns the main thread has spent on a CPU (schedstat's first field). */
function mainThreadCpuNs(): number {
  return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]);
}

let profiler: Session | undefined;

async function fullSync(
  pinRoot: string,
  raw: ReturnType<typeof rawObjects>,
  profileTo?: string,
): Promise<{ report: SyncReport; phases: Phases; readBackMs: number }> {
  const lb = LbMaps.open({ pinRoot, sizes: lbSizesFor(65536) });
  try {
    const cache = filledCache(raw);
    const t: Record<string, number> = {};
    const reconciler = new Reconciler({ nodeName: NODE, cache, lb: timedWriter(lb, t), log });
    const r0 = performance.now();
    reconciler.restore({
      frontends: lb.frontends(),
      backends: lb.backends(),
      reverseNatIndexes: lb.reverseNat().map((r) => r.revNatIndex),
    });
    const readBackMs = performance.now() - r0;
    // Let the garbage of filling the cache go first, as the agent's event loop would.
    await new Promise((r) => setTimeout(r, 50));
    const untime = timeDesired(t);
    if (profileTo) {
      profiler ??= new Session();
      profiler.connect();
      await profiler.post('Profiler.enable');
      await profiler.post('Profiler.setSamplingInterval', { interval: 100 });
      await profiler.post('Profiler.start');
    }
    gcMs = 0;
    const c0 = process.cpuUsage();
    const m0 = mainThreadCpuNs();
    const t0 = performance.now();
    const rep = reconciler.sync(true);
    const totalMs = performance.now() - t0;
    const mainThreadCpuMs = (mainThreadCpuNs() - m0) / 1e6;
    const cpu = process.cpuUsage(c0);
    untime();
    if (profiler && profileTo) {
      const { profile } = await profiler.post('Profiler.stop');
      writeFileSync(profileTo, JSON.stringify(profile));
      profiler.disconnect();
    }
    await new Promise((r) => setTimeout(r, 20)); // the GC observer reports asynchronously
    const phases: Phases = {
      totalMs,
      cpuMs: (cpu.user + cpu.system) / 1000,
      mainThreadCpuMs,
      desiredMs: t.desired ?? 0,
      upsertBackendsMs: t.upsertBackends ?? 0,
      updateFrontendsMs: t.updateFrontends ?? 0,
      removeBackendsMs: t.removeBackends ?? 0,
      otherWritesMs: t.other ?? 0,
      planMs: 0,
      gcMs,
    };
    phases.planMs =
      totalMs -
      phases.desiredMs -
      phases.upsertBackendsMs -
      phases.updateFrontendsMs -
      phases.removeBackendsMs -
      phases.otherWritesMs;
    return { report: rep, phases, readBackMs };
  } finally {
    lb.close();
  }
}

async function main() {
  checkEnvironment();
  const raw = rawObjects();
  const cold: Array<{ report: SyncReport; phases: Phases }> = [];
  const restart: Array<{ report: SyncReport; phases: Phases; readBackMs: number }> = [];
  const onExit = () => rmSync(root, { recursive: true, force: true });
  process.on('SIGINT', () => {
    onExit();
    process.exit(130);
  });
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const pinRoot = `${root}/r${round}`;
      const profileDir = args['cpu-prof'];
      if (profileDir) mkdirSync(profileDir, { recursive: true });
      const c = await fullSync(
        pinRoot,
        raw,
        profileDir ? `${profileDir}/agent-sync-cold-${round + 1}.cpuprofile` : undefined,
      );
      const w = await fullSync(pinRoot, raw);
      if (c.report.frontendsWritten !== SERVICES || c.report.failed !== 0) {
        throw new Error(`cold sync wrote ${c.report.frontendsWritten} frontends, ${c.report.failed} failed`);
      }
      if (w.report.frontendsWritten + w.report.backendsWritten + w.report.frontendsDeleted !== 0) {
        throw new Error(`restart sync wrote something: ${JSON.stringify(w.report)}`);
      }
      cold.push(c);
      restart.push(w);
      rmSync(pinRoot, { recursive: true, force: true });
      process.stderr.write(
        `round ${round + 1}: cold ${fmt(c.phases.totalMs, 0)} ms, restart ${fmt(w.phases.totalMs, 0)} ms\n`,
      );
    }
  } finally {
    onExit();
    gcObserver.disconnect();
  }
  const keys = Object.keys(cold[0]!.phases) as Array<keyof Phases>;
  const med = (runs: Array<{ phases: Phases }>) =>
    Object.fromEntries(keys.map((k) => [k, Math.round(median(runs.map((r) => r.phases[k])) * 10) / 10]));
  const coldMed = med(cold);
  const restartMed = med(restart);
  report(
    'agent-sync',
    {
      services: SERVICES,
      endpoints: SERVICES * 3,
      rounds: ROUNDS,
      rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20),
      cold: { medianMs: coldMed, runs: cold.map((c) => c.phases) },
      restart: {
        medianMs: restartMed,
        readBackMs: restart.map((r) => Math.round(r.readBackMs)),
        runs: restart.map((r) => r.phases),
      },
    },
    {
      headers: ['phase (median ms)', 'cold', 'restart'],
      rows: keys.map((k) => [k, fmt(coldMed[k]!, 1), fmt(restartMed[k]!, 1)]),
    },
  );
}

await main();
