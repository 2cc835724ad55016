// Parts 2-4 of bench/lb.ts, through the real agent (`weft agent`, the compiled CLI) against the
// devcluster API server holding N Services / 3N endpoints:
//   2. full sync: informers synced → maps programmed, from the agent's own report (its first
//      full sync, /v1/status sync.lastFull), on cold starts (no pinned maps); the peer in the same
//      run is iptables-restore of kube-proxy's rules for the same Services;
//   3. EndpointSlice change written to the API server → the change visible in the pinned maps
//      (polled from this process every millisecond), one change at a time;
//   4. the agent's VmRSS after the full sync and after the change run.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import type { StatusResponse } from '../src/agent/api/types.js';
import { AGENT_NODE_FLAGS } from '../src/agent/config.js';
import { removeNodePins } from '../src/agent/datapath.js';
import { LbMaps } from '../src/datapath/lbmap.js';
import { kubeconfigYaml } from '../src/devcluster/apiserver/index.js';
import { formatIPv4, parseIPv4 } from '../src/devcluster/ipv4.js';
import { projectRoot } from '../src/shared/self.js';
import { kubeProxyRestore } from './lb-kube-proxy.js';
import {
  BENCH_NAMESPACE,
  type BenchService,
  benchServices,
  kubeProxyServices,
  targetOf,
} from './lb-services.js';
import { type BenchEnv, cgroupCpuUsec, machineBusyUsec, plan, runIn, type Teardown } from './lb-topology.js';
import { median, percentile } from './report.js';

export interface AgentOptions {
  services: number;
  /** Cold starts of the agent, each a full sync into empty maps. */
  coldStarts: number;
  changes: number;
  concurrency: number;
  threads: number;
}

export interface AgentResult {
  services: number;
  endpoints: number;
  /** Services the agent programs: ours plus default/kubernetes. */
  servicesInApi: number;
  agent: string;
  apiServer: { objects: number; createSeconds: number };
  fullSync: {
    /** The agent's first full sync (informers synced → maps programmed), per cold start. */
    agentSeconds: number[];
    medianSeconds: number;
    /** Agent start (its "waiting for the informers" log line) → first full sync done. */
    listAndSyncSeconds: number[];
    /** Process spawn → ready (includes Node start-up and loading the BPF object). */
    spawnToReadySeconds: number[];
    serviceMapEntries: number;
    expectedServiceMapEntries: number;
    /** A restart with the maps already programmed: the full sync finds nothing to write. */
    warmRestart: { agentSeconds: number; spawnToReadySeconds: number; frontendsWritten: number };
  };
  iptablesRestorePeer: { seconds: number[]; medianSeconds: number; rules: number };
  endpointChange: {
    changes: number;
    timedOut: number;
    p50Ms: number;
    p90Ms: number;
    p99Ms: number;
    maxMs: number;
    /** The API server's answer to the write, for scale: the rest is watch → sync → map write. */
    apiWriteP50Ms: number;
    /** Cores' worth of CPU that work outside this benchmark took during the change run (of 2). */
    otherCores: number;
    kinds: Record<string, number>;
  };
  rss: {
    /** VmRSS 0.5 s after each cold full sync, and VmHWM (the peak) at that moment. */
    afterColdSyncMiB: number[];
    peakColdMiB: number[];
    /** The agent that then ran the change run: after its (warm) sync, after the changes. */
    afterWarmSyncMiB: number;
    afterChangesMiB: number;
    peakMiB: number;
  };
  /** Connections through the agent-programmed maps really reach the three backends. */
  datapathCheck: { connections: number; backends: Record<string, number> };
}

/** This process's CPU time (the poller), µs. */
function cpuUsageUsec(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Builds dist/ when any source is newer than the last build, as scripts/setup.sh does. */
function ensureBuilt(log: (l: string) => void): string {
  const main = join(projectRoot, 'dist/src/cli/weft.js');
  const stamp = join(projectRoot, 'dist/.build-stamp');
  const stale =
    !existsSync(main) ||
    !existsSync(stamp) ||
    execFileSync('find', ['src', '-name', '*.ts', '-newer', stamp, '-print', '-quit'], {
      cwd: projectRoot,
      encoding: 'utf8',
    }).trim() !== '';
  if (stale) {
    log('lb: building dist/ (sources are newer than the last build)');
    try {
      execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: projectRoot, stdio: 'inherit' });
      writeFileSync(stamp, '');
    } catch (err) {
      // tsc still emits on type errors (someone's work in progress): run what it built.
      if (!existsSync(main)) throw err;
      log('lb: tsc reported errors; measuring the JavaScript it emitted');
    }
  }
  return main;
}

/** argv that enters `cgroup` first, then execs: the PID stays the command's. */
function inCgroup(cgroup: string, argv: string[]): [string, string[]] {
  return ['sh', ['-c', 'echo $$ > "$1/cgroup.procs" || exit 126; shift; exec "$@"', 'sh', cgroup, ...argv]];
}

async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

interface ApiHandle {
  url: string;
  caCertPem: string;
  adminToken: string;
  child: ChildProcess;
}

async function startApiServerChild(dir: string, cgroup: string, teardown: Teardown): Promise<ApiHandle> {
  teardown.check();
  const [cmd, args] = inCgroup(cgroup, [
    process.execPath,
    '--import',
    'tsx',
    join(projectRoot, 'bench/lb-apiserver.ts'),
    dir,
    plan.serviceCIDR,
  ]);
  const child = spawn(cmd, args, {
    cwd: projectRoot,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, WEFT_LOG_LEVEL: 'warn' },
  });
  teardown.add('API server', () => stopChild(child));
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => {
    stderr = (stderr + c).slice(-4000);
  });
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.includes('lbBenchApiServer')) return;
      const { lbBenchApiServer: a } = JSON.parse(line) as { lbBenchApiServer: Omit<ApiHandle, 'child'> };
      resolve({ ...a, child });
    });
    child.once('exit', (code) => reject(new Error(`API server exited (${code}): ${stderr.trim()}`)));
  });
}

/** A small client for the API server: keep-alive HTTPS, JSON in and out. */
class Kube {
  private readonly agent: HttpsAgent;
  constructor(private readonly api: ApiHandle) {
    this.agent = new HttpsAgent({ keepAlive: true, maxSockets: 32, ca: api.caCertPem });
  }
  request(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<unknown> {
    const url = new URL(path, this.api.url);
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        url,
        {
          method,
          agent: this.agent,
          headers: {
            authorization: `Bearer ${this.api.adminToken}`,
            accept: 'application/json',
            ...(data ? { 'content-type': contentType, 'content-length': data.length } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            if ((res.statusCode ?? 0) >= 300) {
              reject(new Error(`${method} ${path}: ${res.statusCode} ${text.slice(0, 300)}`));
            } else {
              resolve(text ? JSON.parse(text) : undefined);
            }
          });
        },
      );
      req.on('error', reject);
      req.end(data);
    });
  }
  close(): void {
    this.agent.destroy();
  }
}

interface SliceEndpoint {
  ip: string;
  ready: boolean;
}

function serviceObject(s: BenchService): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: s.name, namespace: BENCH_NAMESPACE },
    spec: {
      type: 'ClusterIP',
      clusterIP: s.clusterIP,
      ports: [{ name: 'http', port: plan.servicePort, targetPort: plan.backendPort, protocol: 'TCP' }],
    },
  };
}

function sliceEndpoints(endpoints: SliceEndpoint[]): unknown[] {
  return endpoints.map((e) => ({
    addresses: [e.ip],
    conditions: { ready: e.ready, serving: e.ready, terminating: false },
  }));
}

function sliceObject(s: BenchService, endpoints: SliceEndpoint[]): unknown {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `${s.name}-abcde`,
      namespace: BENCH_NAMESPACE,
      labels: {
        'kubernetes.io/service-name': s.name,
        'endpointslice.kubernetes.io/managed-by': 'weft-bench-lb',
      },
    },
    addressType: 'IPv4',
    endpoints: sliceEndpoints(endpoints),
    ports: [{ name: 'http', port: plan.backendPort, protocol: 'TCP' }],
  };
}

async function inParallel<T>(items: T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

interface RunningAgent {
  child: ChildProcess;
  pid: number;
  spawnedAt: number;
  /** Resolves with the "first full sync done; ready" log record. */
  ready: Promise<{ at: number; startedLogTime: number; readyLogTime: number }>;
  stderrTail(): string;
}

function startAgent(
  weftMain: string,
  args: { node: string; kubeconfig: string; cgroupRoot: string; stateDir: string; agentCgroup: string },
  teardown: Teardown,
): RunningAgent {
  teardown.check();
  const [cmd, argv] = inCgroup(args.agentCgroup, [
    process.execPath,
    // The agent as deployed (deploy/Dockerfile's NODE_OPTIONS, the devcluster's command line).
    ...AGENT_NODE_FLAGS,
    // For profiling the agent under this load, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
    ...(process.env.WEFT_BENCH_AGENT_NODE_ARGS ?? '').split(' ').filter(Boolean),
    weftMain,
    'agent',
    '--node-name',
    args.node,
    '--kubeconfig',
    args.kubeconfig,
    '--bpf-root',
    '/sys/fs/bpf',
    '--cgroup-root',
    args.cgroupRoot,
    '--state-dir',
    args.stateDir,
    '--prometheus-serve-addr',
    '127.0.0.1:0',
  ]);
  const spawnedAt = performance.now();
  const child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  teardown.add(`agent ${child.pid}`, () => stopChild(child));
  let tail = '';
  let startedLogTime = Number.NaN;
  const ready = new Promise<{ at: number; startedLogTime: number; readyLogTime: number }>(
    (resolve, reject) => {
      createInterface({ input: child.stderr! }).on('line', (line) => {
        tail = `${tail}${line}\n`.slice(-8000);
        let rec: { msg?: string; time?: number | string };
        try {
          rec = JSON.parse(line) as { msg?: string; time?: number | string };
        } catch {
          return;
        }
        // weft's pino writes ISO times (stdTimeFunctions.isoTime).
        const time = typeof rec.time === 'string' ? Date.parse(rec.time) : (rec.time ?? Number.NaN);
        if (rec.msg?.startsWith('agent started')) startedLogTime = time;
        if (rec.msg?.startsWith('first full sync done')) {
          resolve({ at: performance.now(), startedLogTime, readyLogTime: time });
        }
      });
      child.once('exit', (code, signal) =>
        reject(new Error(`agent exited (${signal ?? code}) before it was ready:\n${tail.trim()}`)),
      );
    },
  );
  ready.catch(() => {});
  return { child, pid: child.pid!, spawnedAt, ready, stderrTail: () => tail };
}

function agentStatus(socketPath: string): Promise<StatusResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ socketPath, path: '/v1/status' }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c: string) => {
        text += c;
      });
      res.on('end', () => {
        try {
          resolve(JSON.parse(text) as StatusResponse);
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
}

function rssMiB(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

export async function runAgent(
  opts: AgentOptions,
  env: BenchEnv,
  teardown: Teardown,
  log: (line: string) => void,
): Promise<AgentResult> {
  const { t } = env;
  const weftMain = ensureBuilt(log);
  const node = t.tag;
  const pinRoot = join('/sys/fs/bpf/weft', node);
  const madeWeftPinDir = !existsSync('/sys/fs/bpf/weft');
  teardown.add(`agent pins ${pinRoot}`, () => {
    if (existsSync(pinRoot)) removeNodePins(pinRoot);
    // Another agent may use /sys/fs/bpf/weft meanwhile: only an empty one we made goes.
    if (madeWeftPinDir && existsSync('/sys/fs/bpf/weft') && readdirSync('/sys/fs/bpf/weft').length === 0) {
      rmdirSync('/sys/fs/bpf/weft');
    }
  });
  const controlCgroup = join(t.cgroupRoot, 'control');
  const agentNode = join(t.cgroupRoot, 'agent-node');
  const agentClient = join(agentNode, 'client-weft');
  for (const dir of [controlCgroup, agentClient]) mkdirSync(dir, { recursive: true });

  const api = await startApiServerChild(join(env.scratch, 'apiserver'), controlCgroup, teardown);
  const kubeconfig = join(env.scratch, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    kubeconfigYaml({ clusterName: node, server: api.url, caCertPem: api.caCertPem, token: api.adminToken }),
  );
  const kube = new Kube(api);
  teardown.add('API client', () => kube.close());

  // ---- the API state: N Services, N EndpointSlices of 3 endpoints ---------------------------
  const services = benchServices(opts.services);
  const target = targetOf(services);
  const slices = new Map<string, SliceEndpoint[]>(
    services.map((s) => [s.name, s.endpoints.map((ip) => ({ ip, ready: true }))]),
  );
  let t0 = performance.now();
  await kube.request('POST', '/api/v1/namespaces', {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: BENCH_NAMESPACE },
  });
  await inParallel(services, 16, async (s) => {
    await kube.request('POST', `/api/v1/namespaces/${BENCH_NAMESPACE}/services`, serviceObject(s));
    await kube.request(
      'POST',
      `/apis/discovery.k8s.io/v1/namespaces/${BENCH_NAMESPACE}/endpointslices`,
      sliceObject(s, slices.get(s.name)!),
    );
  });
  const createSeconds = (performance.now() - t0) / 1000;
  log(
    `lb: API server holds ${opts.services} Services and EndpointSlices (written in ${createSeconds.toFixed(1)} s)`,
  );

  const stateDir = join(env.scratch, 'agent-state');
  const agentArgs = { node, kubeconfig, cgroupRoot: agentNode, stateDir, agentCgroup: controlCgroup };
  const socketPath = join(stateDir, 'agent.sock');
  const kp = kubeProxyRestore(kubeProxyServices(services), plan.clusterCIDR);
  const kpRules = kp.split('\n').filter((l) => l.startsWith('-A ')).length;
  // default/kubernetes: one endpoint (master + 1 slot); ours: master + 3 slots each.
  const expectedEntries = opts.services * 4 + 2;

  // ---- part 2: cold full syncs, each followed by the iptables-restore peer ------------------
  const agentSeconds: number[] = [];
  const listAndSync: number[] = [];
  const spawnToReady: number[] = [];
  const iptablesSeconds: number[] = [];
  let agent: RunningAgent | undefined;
  const coldRss: number[] = [];
  const coldPeak: number[] = [];
  let serviceMapEntries = 0;
  for (let round = 0; round < opts.coldStarts; round++) {
    if (agent) {
      await stopChild(agent.child);
      removeNodePins(pinRoot);
    }
    agent = startAgent(weftMain, agentArgs, teardown);
    const r = await agent.ready;
    const status = await agentStatus(socketPath);
    const full = status.sync.lastFull;
    if (!full || full.failed > 0) throw new Error(`agent full sync failed: ${JSON.stringify(full)}`);
    agentSeconds.push(full.durationSeconds);
    listAndSync.push((r.readyLogTime - r.startedLogTime) / 1000);
    spawnToReady.push((r.at - agent.spawnedAt) / 1000);
    const lb = LbMaps.openPinned(pinRoot);
    try {
      serviceMapEntries = lb.v4.services.count();
    } finally {
      lb.close();
    }
    if (serviceMapEntries !== expectedEntries) {
      throw new Error(
        `the agent programmed ${serviceMapEntries} service map entries, expected ${expectedEntries}`,
      );
    }
    await sleep(500);
    const mem = rssMiB(agent.pid);
    coldRss.push(mem.rss);
    coldPeak.push(mem.hwm);
    // The peer: the same Services as kube-proxy's rules, restored into empty tables.
    env.restore(kubeProxyRestore([], plan.clusterCIDR), false);
    t0 = performance.now();
    env.restore(kp, false);
    iptablesSeconds.push((performance.now() - t0) / 1000);
    log(
      `lb:   cold start ${round + 1}: agent full sync ${(full.durationSeconds * 1000).toFixed(0)} ms (list+sync ${(listAndSync.at(-1)! * 1000).toFixed(0)} ms, spawn→ready ${spawnToReady.at(-1)!.toFixed(2)} s), RSS ${mem.rss.toFixed(0)} MiB (peak ${mem.hwm.toFixed(0)}); iptables-restore ${(iptablesSeconds.at(-1)! * 1000).toFixed(0)} ms`,
    );
  }
  env.restore(kubeProxyRestore([], plan.clusterCIDR), false);

  // A restart over programmed maps (an upgrade): the full sync should find nothing to write.
  await stopChild(agent!.child);
  agent = startAgent(weftMain, agentArgs, teardown);
  const warm = await agent.ready;
  const warmStatus = (await agentStatus(socketPath)).sync.lastFull!;
  const warmRestart = {
    agentSeconds: warmStatus.durationSeconds,
    spawnToReadySeconds: (warm.at - agent.spawnedAt) / 1000,
    frontendsWritten: warmStatus.frontendsWritten,
  };
  log(
    `lb:   warm restart: full sync ${(warmStatus.durationSeconds * 1000).toFixed(0)} ms, ${warmStatus.frontendsWritten} frontends written`,
  );
  await sleep(500);
  const afterWarm = rssMiB(agent.pid);

  // The agent's maps carry real traffic: a client in its node cgroup reaches all three backends.
  const check = JSON.parse(
    await runIn(
      agentClient,
      t.clients.weft.ns,
      [
        env.loadBin,
        '-d',
        '1',
        '-w',
        '0.1',
        '-c',
        String(opts.concurrency),
        '-t',
        String(opts.threads),
        `${target.clusterIP}:${plan.servicePort}`,
      ],
      30_000,
    ),
  ) as { connections: number; backends: Record<string, number> };
  if (Object.keys(check.backends).length !== 3) {
    throw new Error(
      `connections through the agent's maps did not reach all three backends: ${JSON.stringify(check)}`,
    );
  }

  // ---- part 3: EndpointSlice change → map update ------------------------------------------
  const lb = LbMaps.openPinned(pinRoot);
  teardown.add('pinned maps (poller)', () => lb.close());
  const addressesInMaps = (clusterIP: string): string[] | undefined => {
    const f = lb.frontend({ address: clusterIP, port: plan.servicePort, protocol: 'TCP' });
    if (!f) return undefined;
    return f.backends.map((id) => lb.backend(id)?.address ?? '?').sort();
  };
  let fresh = parseIPv4('10.208.160.0');
  const latencies: number[] = [];
  const apiWrites: number[] = [];
  const kinds: Record<string, number> = {};
  let timedOut = 0;
  const others = services.filter((s) => s !== target);
  const busyBefore = machineBusyUsec();
  const oursBefore = cgroupCpuUsec(controlCgroup) + cpuUsageUsec();
  const changesStart = performance.now();
  for (let i = 0; i < opts.changes; i++) {
    teardown.check();
    const s = others[Math.floor(Math.random() * others.length)]!;
    const eps = slices.get(s.name)!.map((e) => ({ ...e }));
    const k = Math.floor(Math.random() * eps.length);
    let kind: string;
    const notReady = eps.findIndex((e) => !e.ready);
    if (notReady >= 0) {
      eps[notReady]!.ready = true;
      kind = 'endpoint ready again';
    } else if (Math.random() < 0.5) {
      eps[k]!.ip = formatIPv4(++fresh);
      kind = 'endpoint address replaced';
    } else {
      eps[k]!.ready = false;
      kind = 'endpoint not ready';
    }
    const expected = eps
      .filter((e) => e.ready)
      .map((e) => e.ip)
      .sort();
    const same = (got: string[] | undefined) =>
      got !== undefined && got.length === expected.length && got.every((a, j) => a === expected[j]);
    const start = performance.now();
    const write = kube
      .request(
        'PATCH',
        `/apis/discovery.k8s.io/v1/namespaces/${BENCH_NAMESPACE}/endpointslices/${s.name}-abcde`,
        { endpoints: sliceEndpoints(eps) },
        'application/merge-patch+json',
      )
      .then(() => apiWrites.push(performance.now() - start));
    let seen: number | undefined;
    while (performance.now() - start < 5_000) {
      if (same(addressesInMaps(s.clusterIP))) {
        seen = performance.now();
        break;
      }
      await sleep(1);
    }
    await write;
    slices.set(s.name, eps);
    kinds[kind] = (kinds[kind] ?? 0) + 1;
    if (seen === undefined) timedOut++;
    else latencies.push(seen - start);
    // A pause, so every change is measured on its own rather than batched with the next.
    await sleep(10 + Math.random() * 40);
  }
  const ours = cgroupCpuUsec(controlCgroup) + cpuUsageUsec() - oursBefore;
  const otherCores =
    Math.max(0, machineBusyUsec() - busyBefore - ours) / ((performance.now() - changesStart) * 1000);
  const afterChanges = rssMiB(agent.pid);
  log(
    `lb:   ${opts.changes} EndpointSlice changes: p50 ${median(latencies).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms, max ${Math.max(...latencies).toFixed(1)} ms (others ${otherCores.toFixed(1)} cores); RSS ${afterChanges.rss.toFixed(0)} MiB`,
  );
  await stopChild(agent.child);

  return {
    services: opts.services,
    endpoints: opts.services * 3,
    servicesInApi: opts.services + 1,
    agent: `node ${relative(projectRoot, weftMain)} agent (compiled dist/, ${statSync(weftMain).mtime.toISOString()})`,
    apiServer: { objects: opts.services * 2, createSeconds },
    fullSync: {
      agentSeconds,
      medianSeconds: median(agentSeconds),
      listAndSyncSeconds: listAndSync,
      spawnToReadySeconds: spawnToReady,
      serviceMapEntries,
      expectedServiceMapEntries: expectedEntries,
      warmRestart,
    },
    iptablesRestorePeer: { seconds: iptablesSeconds, medianSeconds: median(iptablesSeconds), rules: kpRules },
    endpointChange: {
      changes: opts.changes,
      timedOut,
      p50Ms: median(latencies),
      p90Ms: percentile(latencies, 90),
      p99Ms: percentile(latencies, 99),
      maxMs: Math.max(...latencies),
      apiWriteP50Ms: median(apiWrites),
      otherCores,
      kinds,
    },
    rss: {
      afterColdSyncMiB: coldRss,
      peakColdMiB: coldPeak,
      afterWarmSyncMiB: afterWarm.rss,
      afterChangesMiB: afterChanges.rss,
      peakMiB: afterChanges.hwm,
    },
    datapathCheck: { connections: check.connections, backends: check.backends },
  };
}
