// Part 1 of bench/lb.ts: new-connection rate and latency to a pod IP directly, to a ClusterIP
// through weft's socket LB, and to a ClusterIP through kube-proxy-style iptables rules, at each
// Service count, interleaved round by round in one topology.
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import { attachCgroup, type BpfLink } from '../src/datapath/cgroup.js';
import {
  type LbFrontend,
  LbMaps,
  frontendName,
  lbMaxEntries,
  sockLbPrograms,
} from '../src/datapath/lbmap.js';
import { BpfObject } from '../src/datapath/object.js';
import { bpfObjectPath } from '../src/shared/self.js';
import { kubeProxyJumpsRestore, kubeProxyRestore, serviceChain } from './lb-kube-proxy.js';
import { benchServices, kubeProxyServices, targetOf, weftState } from './lb-services.js';
import {
  type BenchEnv,
  cgroupCpuUsec,
  conntrackStats,
  machineBusyUsec,
  inNetns,
  plan,
  runIn,
  type Teardown,
  type Topology,
} from './lb-topology.js';
import { fmt, median, percentile } from './report.js';

export type CaseName = 'direct' | 'weft' | 'iptables';
export const CASES: readonly CaseName[] = ['direct', 'weft', 'iptables'];

export interface ConnectionOptions {
  counts: number[];
  rounds: number;
  seconds: number;
  warmupSeconds: number;
  concurrency: number;
  /** Generator threads (epoll loops); the concurrency is split between them. */
  threads: number;
  /** iptables-restore binary: iptables-restore (Debian: nft) or iptables-legacy-restore. */
  iptablesRestore: string;
}

/** One lb-load run, as it prints it. */
export interface LoadResult {
  connections: number;
  /** Warm-up included. */
  allConnections: number;
  seconds: number;
  rate: number;
  concurrency: number;
  threads: number;
  latencyUs: { mean: number; p50: number; p90: number; p99: number; p999: number; max: number };
  errors: Record<string, number>;
  backends: Record<string, number>;
  cpu: { userSeconds: number; sysSeconds: number; wallSeconds: number };
  /** Added here: CPU time of the client pod's and the backends' cgroups per connection, µs. */
  cgroupCpuUsPerConnection?: number;
  /** Added here: cores' worth of CPU that other work on the machine used during the run. */
  otherCores?: number;
}

export interface CaseSummary {
  /** Medians over rounds. */
  rate: number;
  p50Us: number;
  p99Us: number;
  /**
   * CPU time of our own processes per connection (client pod + backend cgroups, cpu.stat
   * usage_usec): the generator, both TCP stacks, the veth hops and netfilter in the node, which
   * run in softirq on the sending task. Unlike the rate, it hardly moves when other work on the
   * machine takes CPU away.
   */
  cpuUsPerConnection: number;
  /** Median cores' worth of CPU other work on the machine took during these runs (of 2). */
  otherCores: number;
  runs: Array<{
    round: number;
    rate: number;
    cpuUsPerConnection: number;
    otherCores: number;
    p50Us: number;
    p99Us: number;
    errors: number;
    backends: Record<string, number>;
  }>;
}

export interface CountResult {
  services: number;
  endpoints: number;
  /** Where the target's rule sits in KUBE-SERVICES (1-based, of all Service rules). */
  iptablesTargetPosition: number;
  iptablesRules: number;
  setupMs: { weftLbMapsApply: number; iptablesRestore: number };
  cases: Record<CaseName, CaseSummary>;
  /** Medians of the per-round ratios (each round measures all three cases back to back). */
  ratios: { weftOverDirect: number; iptablesOverDirect: number; weftOverIptables: number };
  /**
   * The same ratios from CPU per connection (direct's cost over the case's): the rate each path
   * would reach with the machine to itself, since every run is CPU-bound.
   */
  cpuRatios: { weftOverDirect: number; iptablesOverDirect: number; weftOverIptables: number };
  /** The middle half of the per-round ratios (25th-75th percentile): how much the rounds agree. */
  ratioIqr: { weftOverDirect: [number, number]; iptablesOverDirect: [number, number] };
  latencyRatios: { weftP99OverDirect: number; iptablesP99OverDirect: number };
  conntrack: { drop: number; insertFailed: number; earlyDrop: number };
  socketLbTranslated: number;
}

export interface GeneratorCheck {
  /** The generator's own (user-space) CPU per connection, µs. */
  userMicrosPerConnection: number;
  /**
   * All CPU per connection on the machine's cores (wall × cores / rate), µs: the generator's
   * user time is this small a share of it. Its sys time is the kernel's TCP and veth path
   * (softirq work runs on the sending thread), which any client pays.
   */
  machineMicrosPerConnection: number;
  userShareOfMachine: number;
  /** Medians over interleaved runs against the three pod IPs, same concurrency. */
  rate: number;
  /** Twice the threads: more parallelism in the generator would show up here. */
  rateDoubleThreads: number;
  /** wrk (HTTP/1.1, Connection: close, same threads and connections), for reference. */
  wrkRate: number | null;
  runs: number;
}

export interface ConnectionResult {
  mapsProgrammedBy: string;
  iptables: { restore: string; version: string; targetPosition: string; jumpsOnlyInIptablesCase: string };
  generator: GeneratorCheck;
  perCount: CountResult[];
}

interface Sockets {
  obj: BpfObject;
  lb: LbMaps;
  links: BpfLink[];
}

/** sock_lb.bpf.o loaded with its maps pinned under the run's pin root, attached to the node cgroup. */
function loadSocketLb(t: Topology, teardown: Teardown): Sockets {
  const obj = BpfObject.open(bpfObjectPath('sock_lb.bpf.o'), {
    pinRoot: t.pinRoot,
    maxEntries: lbMaxEntries(),
  });
  const links: BpfLink[] = [];
  let lb: LbMaps | undefined;
  teardown.add('socket LB', () => {
    for (const link of links.splice(0)) {
      try {
        link.detach();
      } finally {
        link.close();
      }
    }
    lb?.close();
    obj.close();
  });
  obj.load();
  lb = LbMaps.fromObject(obj);
  for (const name of sockLbPrograms) links.push(attachCgroup(obj.program(name), t.socklbNode));
  return { obj, lb, links };
}

function parseLoad(out: string): LoadResult {
  return JSON.parse(out.trim().split('\n').pop()!) as LoadResult;
}

function errorsOf(r: LoadResult): number {
  return Object.values(r.errors).reduce((a, b) => a + b, 0);
}

/** Every one of the three backends got a fair share (each at least 20%): balancing happened. */
function checkBalanced(what: string, r: LoadResult): void {
  const total = Object.values(r.backends).reduce((a, b) => a + b, 0);
  const names = Object.keys(r.backends).sort();
  const fair = names.length === 3 && names.every((n) => r.backends[n]! >= 0.2 * total);
  if (!fair || r.connections === 0) {
    throw new Error(
      `${what}: connections were not spread over the three backends: ${JSON.stringify(r.backends)}`,
    );
  }
}

export async function runConnections(
  opts: ConnectionOptions,
  env: BenchEnv,
  teardown: Teardown,
  log: (line: string) => void,
): Promise<ConnectionResult> {
  const { t, loadBin, restore } = env;
  const sock = loadSocketLb(t, teardown);

  const load = async (client: CaseName, targets: string[], threads = opts.threads) => {
    teardown.check();
    const cgroups = [t.clients[client].cgroup, t.backendCgroup];
    const before = cgroups.map(cgroupCpuUsec);
    const busyBefore = machineBusyUsec();
    const t0 = performance.now();
    const r = await runIn(
      t.clients[client].cgroup,
      t.clients[client].ns,
      [
        loadBin,
        '-d',
        String(opts.seconds),
        '-w',
        String(opts.warmupSeconds),
        '-c',
        String(opts.concurrency),
        '-t',
        String(threads),
        ...targets,
      ],
      (opts.seconds + opts.warmupSeconds) * 1000 + 30_000,
    ).then(parseLoad);
    const used = cgroups.reduce((sum, cg, i) => sum + cgroupCpuUsec(cg) - before[i]!, 0);
    r.cgroupCpuUsPerConnection = used / Math.max(1, r.allConnections);
    r.otherCores = Math.max(0, machineBusyUsec() - busyBefore - used) / ((performance.now() - t0) * 1000);
    return r;
  };
  const podTargets = plan.backendIPs.map((ip) => `${ip}:${plan.backendPort}`);

  let jumps = false;
  const setJumps = (on: boolean) => {
    if (jumps === on) return;
    restore(kubeProxyJumpsRestore(on), true);
    jumps = on;
  };

  // Is the generator the bottleneck? Its own CPU per connection, twice its threads, and wrk
  // against the same pods, interleaved.
  log('lb: checking the load generator (threads x1, x2, wrk)');
  const base: LoadResult[] = [];
  const doubled: LoadResult[] = [];
  const wrkRates: number[] = [];
  for (let i = 0; i < Math.max(1, Math.min(3, opts.rounds)); i++) {
    base.push(await load('direct', podTargets));
    doubled.push(await load('direct', podTargets, opts.threads * 2));
    try {
      const wrk = await runIn(
        t.clients.direct.cgroup,
        t.clients.direct.ns,
        [
          'wrk',
          `-t${opts.threads}`,
          `-c${opts.concurrency}`,
          `-d${Math.max(1, Math.round(opts.seconds))}s`,
          '-H',
          'Connection: close',
          `http://${podTargets[i % podTargets.length]}/`,
        ],
        opts.seconds * 1000 + 30_000,
      );
      const m = /Requests\/sec:\s+([\d.]+)/.exec(wrk);
      if (m) wrkRates.push(Number(m[1]));
    } catch (err) {
      log(`lb: wrk not usable (${(err as Error).message.split('\n')[0]}); generator check without it`);
    }
  }
  const cores = cpus().length;
  const userUs = median(base.map((r) => (r.cpu.userSeconds / r.connections) * 1e6));
  // Every core's time divided among the connections: an upper bound on what one costs.
  const machineUs = median(base.map((r) => (cores / r.rate) * 1e6));
  const generator: GeneratorCheck = {
    userMicrosPerConnection: userUs,
    machineMicrosPerConnection: machineUs,
    userShareOfMachine: userUs / machineUs,
    rate: median(base.map((r) => r.rate)),
    rateDoubleThreads: median(doubled.map((r) => r.rate)),
    wrkRate: wrkRates.length > 0 ? median(wrkRates) : null,
    runs: base.length,
  };
  log(
    `lb: generator: ${fmt(userUs)} µs user CPU per connection of ${fmt(machineUs, 0)} µs machine CPU; ${fmt(generator.rate, 0)} conn/s, ${fmt(generator.rateDoubleThreads, 0)} with twice the threads, wrk ${generator.wrkRate === null ? 'n/a' : fmt(generator.wrkRate, 0)}`,
  );

  const perCount: CountResult[] = [];
  let programmed: LbFrontend[] = [];
  for (const count of opts.counts) {
    const services = benchServices(count);
    const target = targetOf(services);
    const clusterTarget = [`${target.clusterIP}:${plan.servicePort}`];

    // weft: the same Services through LbMaps (what the agent's reconciler calls), stale ones out.
    const state = weftState(services);
    let t0 = performance.now();
    const wanted = new Set(state.frontends.map(frontendName));
    const stale = programmed.filter((f) => !wanted.has(frontendName(f)));
    if (stale.length > 0) sock.lb.deleteFrontends(stale);
    sock.lb.apply(state);
    const weftApplyMs = performance.now() - t0;
    programmed = state.frontends;

    // kube-proxy: a full restore of both tables, jumps re-inserted only for the iptables case.
    const kp = kubeProxyServices(services);
    t0 = performance.now();
    restore(kubeProxyRestore(kp, plan.clusterCIDR), false);
    const iptablesRestoreMs = performance.now() - t0;
    jumps = false;
    const serviceRules = inNetns(t.nodeNs, opts.iptablesRestore.replace('-restore', ''), [
      '-t',
      'nat',
      '-S',
      'KUBE-SERVICES',
    ])
      .split('\n')
      .filter((l) => l.startsWith('-A KUBE-SERVICES') && l.includes('KUBE-SVC-'));
    const position = serviceRules.findIndex((l) => l.includes(serviceChain(kp[kp.length - 1]!))) + 1;
    const natRules = inNetns(t.nodeNs, opts.iptablesRestore.replace('-restore', '-save'), ['-t', 'nat'])
      .split('\n')
      .filter((l) => l.startsWith('-A ')).length;
    log(
      `lb: ${count} Services: weft maps ${weftApplyMs.toFixed(0)} ms, iptables-restore ${iptablesRestoreMs.toFixed(0)} ms (${natRules} nat rules; target ${position}/${serviceRules.length} in KUBE-SERVICES)`,
    );

    const ctBefore = conntrackStats(t.nodeNs);
    const translatedBefore = sock.lb.sockLbStats().translated;
    const runs: Record<CaseName, Array<{ round: number; r: LoadResult }>> = {
      direct: [],
      weft: [],
      iptables: [],
    };
    for (let round = 0; round < opts.rounds; round++) {
      // Rotate the order each round, so no case always runs first (or right after another).
      const order = CASES.map((_, i) => CASES[(i + round) % CASES.length]!);
      for (const c of order) {
        setJumps(c === 'iptables');
        const r = await load(c, c === 'direct' ? podTargets : clusterTarget);
        checkBalanced(`${c} at ${count} Services`, r);
        runs[c].push({ round, r });
        log(
          `lb:   ${String(count).padStart(5)} svc  round ${round + 1}  ${c.padEnd(8)} ${r.rate.toFixed(0).padStart(6)} conn/s  ${r.cgroupCpuUsPerConnection!.toFixed(0)} µs CPU/conn  (others ${r.otherCores!.toFixed(1)} cores)  p50 ${r.latencyUs.p50.toFixed(0)} µs  p99 ${r.latencyUs.p99.toFixed(0)} µs${errorsOf(r) ? `  errors ${errorsOf(r)}` : ''}`,
        );
      }
    }
    setJumps(false);
    const ctAfter = conntrackStats(t.nodeNs);
    const summary = (c: CaseName): CaseSummary => ({
      rate: median(runs[c].map((x) => x.r.rate)),
      p50Us: median(runs[c].map((x) => x.r.latencyUs.p50)),
      p99Us: median(runs[c].map((x) => x.r.latencyUs.p99)),
      cpuUsPerConnection: median(runs[c].map((x) => x.r.cgroupCpuUsPerConnection!)),
      otherCores: median(runs[c].map((x) => x.r.otherCores!)),
      runs: runs[c].map(({ round, r }) => ({
        round,
        rate: r.rate,
        cpuUsPerConnection: r.cgroupCpuUsPerConnection!,
        otherCores: r.otherCores!,
        p50Us: r.latencyUs.p50,
        p99Us: r.latencyUs.p99,
        errors: errorsOf(r),
        backends: r.backends,
      })),
    });
    const perRound = (a: CaseName, b: CaseName, f: (r: LoadResult) => number) =>
      runs[a].map((x, i) => f(x.r) / f(runs[b][i]!.r));
    const paired = (a: CaseName, b: CaseName, f: (r: LoadResult) => number) => median(perRound(a, b, f));
    const iqr = (a: CaseName, b: CaseName): [number, number] => {
      const xs = perRound(a, b, (r) => r.rate);
      return [percentile(xs, 25), percentile(xs, 75)];
    };
    perCount.push({
      services: count,
      endpoints: count * 3,
      iptablesTargetPosition: position,
      iptablesRules: natRules,
      setupMs: { weftLbMapsApply: weftApplyMs, iptablesRestore: iptablesRestoreMs },
      cases: { direct: summary('direct'), weft: summary('weft'), iptables: summary('iptables') },
      ratios: {
        weftOverDirect: paired('weft', 'direct', (r) => r.rate),
        iptablesOverDirect: paired('iptables', 'direct', (r) => r.rate),
        weftOverIptables: paired('weft', 'iptables', (r) => r.rate),
      },
      cpuRatios: {
        weftOverDirect: paired('direct', 'weft', (r) => r.cgroupCpuUsPerConnection!),
        iptablesOverDirect: paired('direct', 'iptables', (r) => r.cgroupCpuUsPerConnection!),
        weftOverIptables: paired('iptables', 'weft', (r) => r.cgroupCpuUsPerConnection!),
      },
      ratioIqr: { weftOverDirect: iqr('weft', 'direct'), iptablesOverDirect: iqr('iptables', 'direct') },
      latencyRatios: {
        weftP99OverDirect: paired('weft', 'direct', (r) => r.latencyUs.p99),
        iptablesP99OverDirect: paired('iptables', 'direct', (r) => r.latencyUs.p99),
      },
      conntrack: {
        drop: (ctAfter.drop ?? 0) - (ctBefore.drop ?? 0),
        insertFailed: (ctAfter.insert_failed ?? 0) - (ctBefore.insert_failed ?? 0),
        earlyDrop: (ctAfter.early_drop ?? 0) - (ctBefore.early_drop ?? 0),
      },
      socketLbTranslated: sock.lb.sockLbStats().translated - translatedBefore,
    });
  }

  const version = execFileSync(opts.iptablesRestore.replace('-restore', ''), ['--version'], {
    encoding: 'utf8',
  }).trim();
  return {
    mapsProgrammedBy:
      'LbMaps.apply from the benchmark (the calls the agent reconciler makes), not the agent process',
    iptables: {
      restore: opts.iptablesRestore,
      version,
      targetPosition:
        'the target Service is the last Service rule in KUBE-SERVICES (N of N), followed only by the KUBE-NODEPORTS rule kube-proxy keeps last',
      jumpsOnlyInIptablesCase:
        "kube-proxy's jumps from PREROUTING/OUTPUT/POSTROUTING and filter INPUT/FORWARD/OUTPUT are inserted for the iptables case and removed for the others; the KUBE-* chains and the nat table (so conntrack) stay in every case",
    },
    generator,
    perCount,
  };
}
