// The network of bench/lb.ts, made entirely of namespaces, veths and cgroups it creates and
// removes again (also on failure and Ctrl-C):
//
//   client pod netns (one per case) ──veth── node netns ──veth── backend pod netns b1, b2, b3
//   10.209.{10,11,12}.2                      router, iptables      10.209.{1,2,3}.2:8080
//
// Each client "pod" runs in a pod cgroup under one of two "node" cgroups: `socklb-node` (weft's
// socket LB attached to the node directory, as the agent attaches it; pods inherit it) or
// `plain-node` (nothing attached: the direct and the kube-proxy cases). Pod traffic is routed
// through the node namespace, where kube-proxy-style rules act in nat PREROUTING, exactly as on
// a real node.
//
// Why one client pod per case: the backends close first, so they hold every connection in
// TIME_WAIT for 60 s, and Linux offsets TCP timestamps per (source, destination) address pair. A
// client that connects to a ClusterIP through iptables (its socket sees the ClusterIP) and then
// to the pod IP (direct, or weft, which rewrites the address before connect) sends timestamps
// from two clocks; a reused port then fails PAWS against the backend's TIME_WAIT entry and the
// SYN is retransmitted. That is an artifact of sharing one client between cases, not a cost of
// either datapath, so each case has its own client address.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { cgroup2Root } from '../src/datapath/environment.js';
import { cidrsOverlap, formatCidr, parseCidr } from '../src/devcluster/ipv4.js';
import { netnsPath, sandboxArgv } from '../src/devcluster/sandbox-exec.js';
import { projectRoot } from '../src/shared/self.js';
import { kubeProxyRestore } from './lb-kube-proxy.js';

export const BENCH_PREFIX = 'weft-bench-lb-';

/** Address plan: nothing here may be routed or addressed on the host (checked at start). */
export const plan = {
  /** The cluster's pod network (kube-proxy's --cluster-cidr): real pods and synthetic endpoints. */
  clusterCIDR: '10.208.0.0/15',
  /** Synthetic endpoints of the Services nobody connects to: 10.208.0.1 onwards. */
  syntheticEndpointBase: '10.208.0.0',
  /** One client pod per case (see above); each on its own /24 behind the node. */
  clients: {
    direct: { ip: '10.209.10.2', gateway: '10.209.10.1' },
    weft: { ip: '10.209.11.2', gateway: '10.209.11.1' },
    iptables: { ip: '10.209.12.2', gateway: '10.209.12.1' },
  },
  backendIPs: ['10.209.1.2', '10.209.2.2', '10.209.3.2'],
  backendGateways: ['10.209.1.1', '10.209.2.1', '10.209.3.1'],
  backendPort: 8080,
  serviceCIDR: '10.210.0.0/16',
  servicePort: 80,
} as const;

export function run(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, {
    encoding: 'utf8',
    input,
    stdio: ['pipe', 'pipe', 'pipe'],
    maxBuffer: 256 * 1024 * 1024,
  });
}

/** Runs `cmd` inside a network namespace (nsenter keeps /sys as it is; ip netns exec remounts). */
export function inNetns(netns: string, cmd: string, args: string[], input?: string): string {
  return run('nsenter', [`--net=${netnsPath(netns)}`, '--', cmd, ...args], input);
}

/** Refuses to start when a range the plan uses is routed or addressed on the host. */
export function checkHostRanges(): void {
  const routes = JSON.parse(run('ip', ['-j', '-4', 'route', 'show', 'table', 'all'])) as Array<{
    dst?: string;
    type?: string;
  }>;
  const addrs = JSON.parse(run('ip', ['-j', '-4', 'address', 'show'])) as Array<{
    addr_info?: Array<{ local?: string; prefixlen?: number }>;
  }>;
  const used: string[] = [];
  for (const r of routes) {
    if (!r.dst || r.dst === 'default') continue;
    used.push(r.dst.includes('/') ? r.dst : `${r.dst}/32`);
  }
  for (const a of addrs) for (const i of a.addr_info ?? []) if (i.local) used.push(`${i.local}/32`);
  const mine = [plan.clusterCIDR, plan.serviceCIDR].map((c) => parseCidr(c));
  for (const u of used) {
    let c: ReturnType<typeof parseCidr>;
    try {
      c = parseCidr(u);
    } catch {
      continue;
    }
    if (c.base === 0x7f000000 || c.prefix === 0) continue;
    for (const m of mine) {
      if (cidrsOverlap(c, m)) {
        throw new Error(
          `the host routes or holds ${u}, which overlaps the benchmark's ${formatCidr(m)}; free it or change plan in bench/lb-topology.ts`,
        );
      }
    }
  }
}

/**
 * Undo steps, run last-in first-out; each one is tried even when an earlier one failed. run() may
 * be called from a signal handler and from the failing main flow at once: both wait for the same
 * cleanup. Whatever the main flow still makes once cleanup has begun is undone as it is added.
 */
export class Teardown {
  private readonly steps: Array<{ what: string; undo: () => void | Promise<void> }> = [];
  private running?: Promise<void>;
  private readonly late: Array<Promise<void>> = [];
  private readonly problems: string[] = [];

  add(what: string, undo: () => void | Promise<void>): void {
    if (this.running) {
      this.late.push(this.attempt({ what, undo }));
      return;
    }
    this.steps.push({ what, undo });
  }

  /** Throws once cleanup has begun: the main flow calls it before it starts anything new. */
  check(): void {
    if (this.running) throw new Error('cleaning up: not starting anything new');
  }

  run(): Promise<void> {
    this.running ??= (async () => {
      for (const step of this.steps.splice(0).reverse()) await this.attempt(step);
      await Promise.all(this.late);
      if (this.problems.length > 0) {
        process.stderr.write(`lb: cleanup problems: ${this.problems.join('; ')}\n`);
      }
    })();
    return this.running;
  }

  private async attempt(step: { what: string; undo: () => void | Promise<void> }): Promise<void> {
    try {
      await step.undo();
    } catch (err) {
      this.problems.push(`${step.what}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
}

export type ClientName = keyof typeof plan.clients;
export const clientNames: readonly ClientName[] = ['direct', 'weft', 'iptables'];

export interface ClientPod {
  ns: string;
  ip: string;
  /** The pod's cgroup: under socklb-node for weft, under plain-node otherwise. */
  cgroup: string;
}

export interface Topology {
  tag: string;
  nodeNs: string;
  clients: Record<ClientName, ClientPod>;
  backendNs: string[];
  /** Root of every cgroup this run made. */
  cgroupRoot: string;
  /** The node cgroup the socket LB attaches to. */
  socklbNode: string;
  /** The node cgroup with nothing attached. */
  plainNode: string;
  backendCgroup: string;
  pinRoot: string;
}

export function topologyNames(tag: string): Topology {
  const cgroupRoot = join(cgroup2Root(), tag);
  const socklbNode = join(cgroupRoot, 'socklb-node');
  const plainNode = join(cgroupRoot, 'plain-node');
  const client = (name: ClientName): ClientPod => ({
    ns: `${tag}-client-${name}`,
    ip: plan.clients[name].ip,
    cgroup: join(name === 'weft' ? socklbNode : plainNode, `client-${name}`),
  });
  return {
    tag,
    nodeNs: `${tag}-node`,
    clients: { direct: client('direct'), weft: client('weft'), iptables: client('iptables') },
    backendNs: [1, 2, 3].map((i) => `${tag}-b${i}`),
    cgroupRoot,
    socklbNode,
    plainNode,
    backendCgroup: join(cgroupRoot, 'backend-pods'),
    pinRoot: `/sys/fs/bpf/${tag}`,
  };
}

/** Creates namespaces, veths, addresses, routes, sysctls and cgroups; registers their removal. */
export function createTopology(tag: string, teardown: Teardown): Topology {
  const t = topologyNames(tag);
  const clients = clientNames.map((n) => t.clients[n]);
  const all = [t.nodeNs, ...clients.map((c) => c.ns), ...t.backendNs];
  teardown.add('network namespaces', () => deleteNamespaces(all));
  for (const ns of all) {
    run('ip', ['netns', 'add', ns]);
    run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  }
  // Both ends of every veth are created inside namespaces: nothing ever appears on the host.
  const pods: Array<{ ns: string; nodeDev: string; ip: string; gw: string }> = [
    ...clientNames.map((n) => ({
      ns: t.clients[n].ns,
      nodeDev: `client-${n}`,
      ip: plan.clients[n].ip,
      gw: plan.clients[n].gateway,
    })),
    ...t.backendNs.map((ns, i) => ({
      ns,
      nodeDev: `backend${i + 1}`,
      ip: plan.backendIPs[i]!,
      gw: plan.backendGateways[i]!,
    })),
  ];
  for (const p of pods) {
    run('ip', [
      '-n',
      t.nodeNs,
      'link',
      'add',
      p.nodeDev,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      p.ns,
    ]);
    run('ip', ['-n', t.nodeNs, 'addr', 'add', `${p.gw}/24`, 'dev', p.nodeDev]);
    run('ip', ['-n', t.nodeNs, 'link', 'set', p.nodeDev, 'up']);
    run('ip', ['-n', p.ns, 'addr', 'add', `${p.ip}/24`, 'dev', 'eth0']);
    run('ip', ['-n', p.ns, 'link', 'set', 'eth0', 'up']);
    run('ip', ['-n', p.ns, 'route', 'add', 'default', 'via', p.gw]);
  }
  // An untranslated ClusterIP fails at once instead of wandering (there is no uplink anyway).
  run('ip', ['-n', t.nodeNs, 'route', 'add', 'unreachable', plan.serviceCIDR]);
  inNetns(t.nodeNs, 'sysctl', [
    '-q',
    '-w',
    'net.ipv4.ip_forward=1',
    'net.ipv4.conf.all.rp_filter=0',
    'net.ipv4.conf.default.rp_filter=0',
  ]);
  // The client makes tens of thousands of connections a second: every ephemeral port helps.
  for (const c of clients) inNetns(c.ns, 'sysctl', ['-q', '-w', 'net.ipv4.ip_local_port_range=1024 65535']);
  for (const ns of t.backendNs) inNetns(ns, 'sysctl', ['-q', '-w', 'net.core.somaxconn=4096']);

  teardown.add(`cgroups under ${t.cgroupRoot}`, () => removeCgroupTree(t.cgroupRoot));
  for (const dir of [...clients.map((c) => c.cgroup), t.backendCgroup]) mkdirSync(dir, { recursive: true });
  teardown.add(`pins ${t.pinRoot}`, () => rmSync(t.pinRoot, { recursive: true, force: true }));
  mkdirSync(t.pinRoot, { recursive: true });
  return t;
}

/**
 * Conntrack in the node namespace: the nat table (kube-proxy's rules, present in every case)
 * makes the kernel track every connection there. The table is shared by the whole host
 * (nf_conntrack_max), and a closed connection would sit in it for 120 s in TIME_WAIT: at tens of
 * thousands of connections a second that fills it for everyone. Closed connections leave after
 * 1 s here instead; per-connection cost is unchanged.
 */
export function shortenConntrackTimeouts(nodeNs: string): void {
  inNetns(nodeNs, 'sysctl', [
    '-q',
    '-w',
    'net.netfilter.nf_conntrack_tcp_timeout_time_wait=1',
    'net.netfilter.nf_conntrack_tcp_timeout_close=1',
    'net.netfilter.nf_conntrack_tcp_timeout_close_wait=1',
    'net.netfilter.nf_conntrack_tcp_timeout_last_ack=1',
    'net.netfilter.nf_conntrack_tcp_timeout_fin_wait=1',
    'net.netfilter.nf_conntrack_tcp_timeout_syn_sent=5',
    'net.netfilter.nf_conntrack_tcp_timeout_syn_recv=5',
  ]);
}

/** usage_usec of a cgroup2 directory: CPU time of everything in it (precise, not sampled). */
export function cgroupCpuUsec(dir: string): number {
  const m = /^usage_usec (\d+)$/m.exec(readFileSync(join(dir, 'cpu.stat'), 'utf8'));
  if (!m) throw new Error(`${dir}/cpu.stat has no usage_usec`);
  return Number(m[1]);
}

/** Busy CPU time of the whole machine so far, µs (/proc/stat: all but idle and iowait). */
export function machineBusyUsec(): number {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
  // USER_HZ is 100 on every Linux architecture weft runs on.
  return (user + nice + system + irq + softirq + steal) * 10_000;
}

/** Conntrack's per-CPU counters in a namespace (drops, failed inserts): should stay 0. */
export function conntrackStats(ns: string): Record<string, number> {
  const text = inNetns(ns, 'cat', ['/proc/net/stat/nf_conntrack']).trim().split('\n');
  const header = text[0]!.trim().split(/\s+/);
  const sums: Record<string, number> = {};
  for (const line of text.slice(1)) {
    line
      .trim()
      .split(/\s+/)
      .forEach((hex, i) => {
        const k = header[i]!;
        sums[k] = (sums[k] ?? 0) + Number.parseInt(hex, 16);
      });
  }
  // `entries` is the same global count on every line, not per CPU.
  if (sums.entries !== undefined) sums.entries = Number.parseInt(text[1]!.trim().split(/\s+/)[0]!, 16);
  return sums;
}

function deleteNamespaces(names: string[]): void {
  const present = new Set(existsSync('/run/netns') ? readdirSync('/run/netns') : []);
  for (const n of names) if (present.has(n)) run('ip', ['netns', 'del', n]);
}

/** Ends every process left in our cgroups (all started by this run) and removes the tree. */
async function removeCgroupTree(root: string): Promise<void> {
  if (!existsSync(root)) return;
  const dirs: string[] = [];
  const walk = (d: string) => {
    dirs.push(d);
    for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
  };
  walk(root);
  for (const d of dirs) {
    if (readFileSync(join(d, 'cgroup.procs'), 'utf8').trim() !== '')
      writeFileSync(join(d, 'cgroup.kill'), '1');
  }
  for (const d of dirs.reverse()) {
    for (let attempt = 0; ; attempt++) {
      try {
        rmdirSync(d);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EBUSY' || attempt >= 100) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }
}

/** Starts argv inside `netns` and `cgroup` (the cgroup entered before anything runs). */
export function spawnIn(cgroup: string, netns: string, argv: string[]): ChildProcess {
  const [cmd, ...args] = sandboxArgv(cgroup, netnsPath(netns), argv);
  return spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs argv to completion inside `netns` and `cgroup`; resolves with its stdout. */
export function runIn(cgroup: string, netns: string, argv: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawnIn(cgroup, netns, argv);
    let out = '';
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      out += c;
    });
    child.stderr!.setEncoding('utf8').on('data', (c: string) => {
      err = (err + c).slice(-4000);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${argv.join(' ')} exited ${signal ?? code}: ${err.trim()}`));
    });
  });
}

/** Compiles a C peer from bench/peers into a temporary directory. */
export function buildPeer(source: string, out: string, libs: string[] = []): void {
  run('gcc', ['-O2', '-Wall', '-o', out, source, ...libs]);
}

export async function startBackends(
  t: Topology,
  server: string,
  teardown: Teardown,
): Promise<ChildProcess[]> {
  const procs: ChildProcess[] = [];
  teardown.add('backend servers', () => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  });
  for (const [i, ns] of t.backendNs.entries()) {
    const p = spawnIn(t.backendCgroup, ns, [
      server,
      plan.backendIPs[i]!,
      String(plan.backendPort),
      `b${i + 1}`,
    ]);
    procs.push(p);
    await new Promise<void>((resolve, reject) => {
      const lines = createInterface({ input: p.stdout! });
      lines.once('line', () => resolve());
      p.once('exit', (code) => reject(new Error(`backend b${i + 1} exited (${code}) before it was ready`)));
    });
  }
  return procs;
}

/** Everything the parts share: the topology, the compiled peers, iptables in the node. */
export interface BenchEnv {
  t: Topology;
  scratch: string;
  loadBin: string;
  /** iptables-restore (or the legacy one) inside the node namespace. */
  restore(text: string, noflush: boolean): void;
  iptablesRestore: string;
}

/**
 * Builds the peers, the topology and the node's (empty) kube-proxy tables, and starts the three
 * backends. The nat table exists from here on in every case, so conntrack runs for every
 * connection through the node whichever case is measured: only the jumps into KUBE-SERVICES
 * differ between cases.
 */
export async function prepareBench(
  tag: string,
  iptablesRestore: string,
  teardown: Teardown,
): Promise<BenchEnv> {
  const scratch = mkdtempSync(join(tmpdir(), `${tag}-`));
  teardown.add(`scratch ${scratch}`, () => rmSync(scratch, { recursive: true, force: true }));
  const loadBin = join(scratch, 'lb-load');
  const serverBin = join(scratch, 'lb-backend');
  buildPeer(join(projectRoot, 'bench/peers/lb-load.c'), loadBin, ['-lpthread']);
  buildPeer(join(projectRoot, 'bench/peers/lb-backend.c'), serverBin);
  const t = createTopology(tag, teardown);
  const restore = (text: string, noflush: boolean) => {
    inNetns(t.nodeNs, iptablesRestore, noflush ? ['--noflush'] : [], text);
  };
  restore(kubeProxyRestore([], plan.clusterCIDR), false);
  shortenConntrackTimeouts(t.nodeNs);
  await startBackends(t, serverBin, teardown);
  return { t, scratch, loadBin, restore, iptablesRestore };
}
