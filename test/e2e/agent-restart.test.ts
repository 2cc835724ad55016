import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { CoreV1Api, V1Pod, V1Service } from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BpfLbResponse, StatusResponse } from '../../src/agent/api/types.js';
import {
  type NodeRecord,
  readClusterRecord,
  readDaemonRecord,
  readPodRecords,
} from '../../src/devcluster/cluster-record.js';
import { clusterStateDir } from '../../src/devcluster/naming.js';
import { AGENT_METRICS_PORT, nodeDaemonHoldFile } from '../../src/devcluster/node-daemons.js';
import {
  isRunning,
  type ProcessRecord,
  recordProcess,
  signalRecorded,
} from '../../src/devcluster/process-record.js';
import {
  coreApi,
  kubectl,
  uniqueClusterName,
  waitFor,
  weft,
  weftOk,
  AGNHOST,
  removeClusterAfterAll,
  podExec,
} from './devcluster-harness.js';

/**
 * Restarting weft agents, and the devcluster daemon, without disrupting Service traffic. A load
 * generator in a client pod opens new TCP connections to a ClusterIP at a steady rate while the
 * agents are SIGKILLed and come back (the daemon's supervisor restarts them); changes made
 * while an agent is down reach its maps when it returns; and with the daemon (API server,
 * supervisor) stopped, traffic keeps flowing and, once it is started again, the same agents
 * reconnect to it and follow new changes.
 */

const cluster = uniqueClusterName('restart');
const RATE = 250; // connections opened per second; the goal is ≥ 200/s achieved
const work = `/tmp/weft-${cluster}`;
let core: CoreV1Api;
let nodeCIDR: string;
let cp: NodeRecord;
let worker: NodeRecord;
const ips: Record<string, string> = {};

/**
 * The load generator, run with `node -e` inside the client pod: every few ms it opens as many
 * new connections as the rate calls for (each: connect, GET /hostname, read the reply to the
 * server's close), counts successes per second and failures by error, and writes its counters
 * to a progress file. It stops when the stop file appears (or after maxMs) and, once every
 * connection has ended, prints its result as JSON.
 */
const LOAD_GENERATOR = String.raw`
const net = require('node:net');
const fs = require('node:fs');
const cfg = JSON.parse(process.argv[1]);
const t0 = Date.now();
let started = 0, ok = 0, failed = 0, inflight = 0, stopping = false, lastProgress = 0;
const errors = {}, hosts = {}, okPerSecond = [], failures = [];
function one() {
  started++; inflight++;
  const s = net.connect({ host: cfg.host, port: cfg.port });
  let buf = '', done = false;
  const finish = (err) => {
    if (done) return;
    done = true; inflight--; s.destroy();
    if (err) { failed++; errors[err] = (errors[err] || 0) + 1; if (failures.length < 20) failures.push({ at: Date.now(), err }); return; }
    ok++; const sec = Math.floor((Date.now() - t0) / 1000); okPerSecond[sec] = (okPerSecond[sec] || 0) + 1;
  };
  s.setTimeout(cfg.timeoutMs, () => finish('ETIMEDOUT'));
  s.on('connect', () => s.write('GET /hostname HTTP/1.1\r\nHost: load\r\nConnection: close\r\n\r\n'));
  s.on('data', (d) => { buf += d; });
  s.on('error', (e) => finish(e.code || e.message));
  s.on('close', () => {
    const m = /^HTTP\/1\.1 200 [\s\S]*?\r\n\r\n([\s\S]+)$/.exec(buf);
    if (!m) return finish(buf ? 'bad reply: ' + JSON.stringify(buf.slice(0, 60)) : 'closed without a reply');
    hosts[m[1]] = (hosts[m[1]] || 0) + 1;
    finish();
  });
}
function progress(force) {
  const now = Date.now();
  if (!force && now - lastProgress < 100) return;
  lastProgress = now;
  fs.writeFileSync(cfg.progressFile + '.tmp', JSON.stringify({ ok, failed, started }));
  fs.renameSync(cfg.progressFile + '.tmp', cfg.progressFile);
}
const timer = setInterval(() => {
  const now = Date.now();
  if (!stopping && (fs.existsSync(cfg.stopFile) || now - t0 > cfg.maxMs)) stopping = true;
  if (!stopping) {
    const due = Math.floor(((now - t0) * cfg.rate) / 1000) - started;
    for (let i = 0; i < due && inflight < cfg.maxInflight; i++) one();
  }
  progress(false);
  if (stopping && inflight === 0) {
    clearInterval(timer);
    progress(true);
    const t1 = Date.now();
    process.stdout.write(JSON.stringify({ t0, t1, started, ok, failed, errors, hosts, okPerSecond, failures }) + '\n');
  }
}, 4);
`;

interface LoadResult {
  t0: number;
  t1: number;
  started: number;
  ok: number;
  failed: number;
  errors: Record<string, number>;
  hosts: Record<string, number>;
  okPerSecond: Array<number | null>;
  failures: Array<{ at: number; err: string }>;
}

/** Starts the generator in the client pod; stop() ends it and returns its result. */
function startLoad(name: string, target: { host: string; port: number }) {
  const progressFile = join(work, `${name}.progress`);
  const stopFile = join(work, `${name}.stop`);
  const cfg = {
    ...target,
    rate: RATE,
    timeoutMs: 3_000,
    maxInflight: 400,
    maxMs: 90_000,
    progressFile,
    stopFile,
  };
  const run = podExec(cluster, 'default/client', [
    process.execPath,
    '-e',
    LOAD_GENERATOR,
    JSON.stringify(cfg),
  ]);
  const progress = (): { ok: number; failed: number } | undefined =>
    existsSync(progressFile) ? JSON.parse(readFileSync(progressFile, 'utf8')) : undefined;
  return {
    progress,
    /** Resolves once `n` more connections than now have succeeded. */
    async successes(n: number, what: string) {
      const from = progress()?.ok ?? 0;
      await waitFor(
        `${n} more successful connections (${what})`,
        () => (progress()?.ok ?? 0) >= from + n,
        30_000,
      );
    },
    async stop(): Promise<LoadResult> {
      writeFileSync(stopFile, '');
      const r = await run;
      if (r.code !== 0) throw new Error(`load generator exited ${r.code}: ${r.stderr}`);
      return JSON.parse(r.stdout) as LoadResult;
    },
  };
}

function pod(name: string, node: string, labels: Record<string, string>, args: string[]): V1Pod {
  return {
    metadata: { name, namespace: 'default', labels },
    spec: {
      nodeName: node,
      containers: [
        {
          name: 'agnhost',
          image: AGNHOST,
          args,
          readinessProbe:
            args[0] === 'netexec'
              ? { httpGet: { path: '/healthz', port: 8080 as never }, periodSeconds: 1 }
              : undefined,
        },
      ],
    },
  };
}

function service(name: string, port: number): V1Service {
  return {
    metadata: { name, namespace: 'default' },
    spec: { selector: { app: 'restart-be' }, ports: [{ name: 'http', port, targetPort: 8080 as never }] },
  };
}

async function readyPod(name: string): Promise<V1Pod> {
  return waitFor(`pod ${name} to be Ready`, async () => {
    const p = await core.readNamespacedPod({ name, namespace: 'default' });
    return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? p : undefined;
  });
}

async function clusterIP(name: string): Promise<string> {
  const svc = await core.readNamespacedService({ name, namespace: 'default' });
  return svc.spec?.clusterIP ?? '';
}

async function agentStatus(node: NodeRecord): Promise<StatusResponse> {
  return JSON.parse(await weftOk(['status', '--node', node.name, '-o', 'json'])) as StatusResponse;
}

async function lbList(node: NodeRecord): Promise<BpfLbResponse> {
  return JSON.parse(await weftOk(['bpf', 'lb', 'list', '--node', node.name, '-o', 'json'])) as BpfLbResponse;
}

/** GET on the agent's metrics address (the node's IP, on the cluster's bridge). */
async function agentHttp(
  node: NodeRecord,
  path: string,
): Promise<{ status: number; body: string } | undefined> {
  try {
    const res = await fetch(`http://${node.ip}:${AGENT_METRICS_PORT}${path}`, {
      signal: AbortSignal.timeout(1_000),
    });
    return { status: res.status, body: await res.text() };
  } catch {
    return undefined;
  }
}

async function restartsMetric(node: NodeRecord): Promise<number> {
  const m = await agentHttp(node, '/metrics');
  const line = m?.body.split('\n').find((l) => l.startsWith('weft_agent_restarts '));
  if (!line) throw new Error(`no weft_agent_restarts on ${node.name}`);
  return Number(line.split(' ')[1]);
}

/** The agent as the daemon recorded it (PID and start time, so we never signal a recycled PID). */
function recordedAgent(node: NodeRecord): ProcessRecord {
  const rec = readDaemonRecord(cluster)?.helpers.find((h) => h.role === `agent ${node.name}`);
  if (!rec) throw new Error(`no agent of ${node.name} in the daemon record`);
  return rec;
}

/** PIDs of every process on the host running `weft agent --node-name <node>`. */
function agentProcesses(node: NodeRecord): number[] {
  const found: number[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const i = argv.indexOf('--node-name');
      if (argv.includes('agent') && i > 0 && argv[i + 1] === node.name && !argv.includes('-c'))
        found.push(Number(pid));
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

/** SIGKILLs the node's agent; returns what it was and when. */
async function killAgent(node: NodeRecord): Promise<{ pid: number; restarts: number; at: number }> {
  const status = await agentStatus(node);
  const rec = recordedAgent(node);
  expect(rec.pid).toBe(status.pid);
  const at = Date.now();
  expect(signalRecorded(rec, 'SIGKILL')).toBe(true);
  await waitFor(`agent ${rec.pid} on ${node.name} to be gone`, () => !isRunning(rec), 10_000);
  return { pid: status.pid, restarts: status.restarts, at };
}

/**
 * Waits for a new agent process on the node to be ready; returns its status and when its
 * /readyz first answered 200 (the end of the node's downtime).
 */
async function agentBack(
  node: NodeRecord,
  old: { pid: number },
): Promise<{ status: StatusResponse; at: number }> {
  let readySince: number | undefined;
  const status = await waitFor(
    `a new agent on ${node.name} to be ready`,
    async () => {
      const r = await agentHttp(node, '/readyz');
      if (r?.status !== 200) return undefined;
      readySince ??= Date.now();
      const s = await agentStatus(node);
      return s.pid !== old.pid && s.ready ? s : undefined;
    },
    60_000,
  );
  return { status, at: readySince ?? Date.now() };
}

/**
 * The maps hold no duplicate and no stale entry: every backend (by address) once and listed by
 * some frontend's slot, every slot names a backend that exists, every frontend's reverse NAT
 * entry exists and no reverse NAT entry is left without a frontend.
 */
function expectConsistentMaps(lb: BpfLbResponse): void {
  const addrs = lb.backends.map((b) => `${b.address}:${b.port}/${b.protocol}`);
  expect(new Set(addrs).size, `duplicate backends: ${addrs.join(', ')}`).toBe(addrs.length);
  const ids = new Set(lb.backends.map((b) => b.id));
  const slots = lb.services.filter((s) => s.key.slot > 0);
  const masters = lb.services.filter((s) => s.key.slot === 0);
  for (const s of slots)
    expect(ids.has(s.value.backendId), `slot names missing backend ${s.value.backendId}`).toBe(true);
  const referenced = new Set(slots.map((s) => s.value.backendId));
  for (const b of lb.backends) expect(referenced.has(b.id), `backend ${b.address} in no slot`).toBe(true);
  const revNat = new Set(lb.reverseNat.map((r) => r.index));
  for (const m of masters) expect(revNat.has(m.value.revNatIndex)).toBe(true);
  const used = new Set(masters.map((m) => m.value.revNatIndex));
  for (const r of lb.reverseNat) expect(used.has(r.index), `stale reverse NAT ${r.index}`).toBe(true);
  for (const m of masters) {
    const n = slots.filter(
      (s) => s.key.address === m.key.address && s.key.port === m.key.port && s.key.scope === m.key.scope,
    ).length;
    expect(n, `slots of ${m.key.address}:${m.key.port}`).toBe(m.value.count);
  }
}

/** Frontend address:port → backend addresses, from the maps: what every node must agree on. */
function frontends(lb: BpfLbResponse): Record<string, string[]> {
  const byId = new Map(lb.backends.map((b) => [b.id, `${b.address}:${b.port}`]));
  const out: Record<string, string[]> = {};
  for (const s of lb.services) {
    const key = `${s.key.address}:${s.key.port}`;
    out[key] ??= [];
    if (s.key.slot > 0) out[key].push(byId.get(s.value.backendId) ?? `missing ${s.value.backendId}`);
  }
  for (const k of Object.keys(out)) out[k] = [...new Set(out[k])].sort();
  return out;
}

function rateOver(r: LoadResult): number {
  return r.ok / ((r.t1 - r.t0) / 1000);
}

/** Successes per second in the generator's whole seconds that lie inside one of the windows. */
function rateDuring(r: LoadResult, windows: Array<[number, number]>): { rate: number; seconds: number } {
  let ok = 0;
  let seconds = 0;
  r.okPerSecond.forEach((n, i) => {
    const from = r.t0 + i * 1000;
    if (windows.some(([a, b]) => from >= a && from + 1000 <= b)) {
      ok += n ?? 0;
      seconds++;
    }
  });
  return { rate: seconds === 0 ? 0 : ok / seconds, seconds };
}

function describeLoad(r: LoadResult): string {
  return `ok ${r.ok}, failed ${r.failed} ${JSON.stringify(r.errors)}, ${rateOver(r).toFixed(0)}/s over ${((r.t1 - r.t0) / 1000).toFixed(1)} s, per second ${JSON.stringify(r.okPerSecond)}, first failures ${JSON.stringify(r.failures)}`;
}

beforeAll(async () => {
  mkdirSync(work, { recursive: true });
  await weftOk(['devcluster', 'up', '--name', cluster, '--nodes', '2']);
  core = coreApi(cluster);
  const rec = readClusterRecord(cluster);
  if (!rec) throw new Error('no cluster record');
  nodeCIDR = rec.plan.nodeCIDR;
  [cp, worker] = rec.nodes as [NodeRecord, NodeRecord];
  const be = { app: 'restart-be' };
  const netexec = ['netexec', '--http-port=8080'];
  await core.createNamespacedPod({ namespace: 'default', body: pod('be-1', cp.name, be, netexec) });
  await core.createNamespacedPod({ namespace: 'default', body: pod('be-2', worker.name, be, netexec) });
  await core.createNamespacedPod({ namespace: 'default', body: pod('be-3', cp.name, be, netexec) });
  await core.createNamespacedPod({
    namespace: 'default',
    body: pod('client', worker.name, { app: 'client' }, ['pause']),
  });
  await core.createNamespacedService({ namespace: 'default', body: service('web', 80) });
  await core.createNamespacedService({ namespace: 'default', body: service('doomed', 82) });
  for (const p of ['be-1', 'be-2', 'be-3', 'client']) ips[p] = (await readyPod(p)).status?.podIP ?? '';
  ips.web = await clusterIP('web');
  ips.doomed = await clusterIP('doomed');
  // Every agent holds the three backends of both Services before anything is killed.
  for (const node of [cp, worker]) {
    await waitFor(`${node.name}'s maps to hold web and doomed with 3 backends`, async () => {
      const f = frontends(await lbList(node));
      return f[`${ips.web}:80`]?.length === 3 && f[`${ips.doomed}:82`]?.length === 3;
    });
  }
});

removeClusterAfterAll(cluster, {
  nodeCIDR: () => nodeCIDR,
  cleanup: () => rmSync(work, { recursive: true, force: true }),
});

describe('agent restart', () => {
  it('SIGKILLed agents come back without one failed connection, with the same maps', async () => {
    const before = { cp: await lbList(cp), worker: await lbList(worker) };
    expectConsistentMaps(before.cp);
    expectConsistentMaps(before.worker);
    const metricBefore = { cp: await restartsMetric(cp), worker: await restartsMetric(worker) };

    const load = startLoad('kill', { host: ips.web ?? '', port: 80 });
    await load.successes(2 * RATE, 'before the kill');

    // The agent of the client's node.
    const killed = await killAgent(worker);
    const back = await agentBack(worker, killed);
    await load.successes(RATE, 'after the client node’s agent returned');

    // Then every agent at once.
    const killedAll = { cp: await killAgent(cp), worker: await killAgent(worker) };
    const backAll = {
      cp: await agentBack(cp, killedAll.cp),
      worker: await agentBack(worker, killedAll.worker),
    };
    await load.successes(RATE, 'after every agent returned');
    const result = await load.stop();

    const downtime = {
      clientNode: back.at - killed.at,
      allCp: backAll.cp.at - killedAll.cp.at,
      allWorker: backAll.worker.at - killedAll.worker.at,
    };
    process.stderr.write(
      `agent-restart load: ${describeLoad(result)}; downtime ms ${JSON.stringify(downtime)}\n`,
    );
    expect(result.failed, describeLoad(result)).toBe(0);
    expect(result.ok).toBe(result.started);
    expect(rateOver(result), describeLoad(result)).toBeGreaterThanOrEqual(200);
    // The window holds both downtimes: the rate above includes them, and holds within them.
    expect(result.t0).toBeLessThan(killed.at);
    expect(result.t1).toBeGreaterThan(backAll.worker.at);
    const whileDown = rateDuring(result, [
      [killed.at, back.at],
      [killedAll.cp.at, Math.max(backAll.cp.at, backAll.worker.at)],
    ]);
    process.stderr.write(`agent-restart load while agents were down: ${JSON.stringify(whileDown)}\n`);
    expect(whileDown.seconds).toBeGreaterThanOrEqual(2);
    expect(whileDown.rate, describeLoad(result)).toBeGreaterThanOrEqual(200);
    // Backends on both nodes answered.
    expect(Object.keys(result.hosts).sort()).toEqual(['be-1', 'be-2', 'be-3']);

    // New processes, counted as restarts by the agents themselves.
    expect(back.status.pid).not.toBe(killed.pid);
    expect(back.status.restarts).toBe(killed.restarts + 1);
    expect(backAll.worker.status.restarts).toBe(killed.restarts + 2);
    expect(backAll.cp.status.restarts).toBe(killedAll.cp.restarts + 1);
    expect(await restartsMetric(worker)).toBe(metricBefore.worker + 2);
    expect(await restartsMetric(cp)).toBe(metricBefore.cp + 1);
    for (const node of [cp, worker]) {
      expect(recordedAgent(node).pid).toBe(node === cp ? backAll.cp.status.pid : backAll.worker.status.pid);
      expect(agentProcesses(node)).toEqual([recordedAgent(node).pid]);
    }

    // The maps read back and reconciled to exactly what they held: same ids, nothing added.
    const after = { cp: await lbList(cp), worker: await lbList(worker) };
    expect(after.cp).toEqual(before.cp);
    expect(after.worker).toEqual(before.worker);
    expectConsistentMaps(after.cp);
    expectConsistentMaps(after.worker);
  });

  it('applies what changed while the agent was down when it returns', async () => {
    const hold = nodeDaemonHoldFile(clusterStateDir(cluster), worker.name, 'agent');
    mkdirSync(dirname(hold), { recursive: true });
    writeFileSync(hold, '');
    const killed = await killAgent(worker).catch((err: unknown) => {
      rmSync(hold, { force: true });
      throw err;
    });
    try {
      // While it is down: a backend goes, a Service comes, another goes.
      await core.deleteNamespacedPod({ name: 'be-3', namespace: 'default' });
      await core.createNamespacedService({ namespace: 'default', body: service('fresh', 81) });
      await core.deleteNamespacedService({ name: 'doomed', namespace: 'default' });
      ips.fresh = await clusterIP('fresh');
      // The EndpointSlice controller has followed (be-3 gone from web's slice) ...
      await waitFor('be-3 to leave the EndpointSlices', async () => {
        const out = await kubectl(cluster, [
          'get',
          'endpointslices',
          '-l',
          'kubernetes.io/service-name=web',
          '-o',
          'json',
        ]);
        const slices = JSON.parse(out.stdout).items as Array<{ endpoints?: Array<{ addresses: string[] }> }>;
        const addrs = slices.flatMap((s) => (s.endpoints ?? []).flatMap((e) => e.addresses));
        return addrs.length === 2 && !addrs.includes(ips['be-3'] ?? '') ? true : undefined;
      });
      // ... and still no agent answers on the node: not its socket, not its metrics port.
      expect(await agentHttp(worker, '/readyz')).toBeUndefined();
      const status = await weft(['status', '--node', worker.name, '-o', 'json']);
      expect(status.code).not.toBe(0);
      expect(agentProcesses(worker)).toEqual([]);
    } finally {
      rmSync(hold, { force: true });
    }
    const back = await agentBack(worker, killed);
    expect(back.status.restarts).toBe(killed.restarts + 1);

    const lb = await lbList(worker);
    expectConsistentMaps(lb);
    const f = frontends(lb);
    expect(f[`${ips.fresh}:81`]).toEqual([`${ips['be-1']}:8080`, `${ips['be-2']}:8080`].sort());
    expect(f[`${ips.web}:80`]).toEqual([`${ips['be-1']}:8080`, `${ips['be-2']}:8080`].sort());
    expect(f[`${ips.doomed}:82`]).toBeUndefined();
    expect(lb.backends.map((b) => b.address)).not.toContain(ips['be-3']);
    expect(lb.reverseNat.map((r) => r.address)).not.toContain(ips.doomed);
    // The agent that stayed up agrees, and the new Service works from the client.
    await waitFor('the control plane’s agent to agree', async () =>
      JSON.stringify(frontends(await lbList(cp))) === JSON.stringify(f) ? true : undefined,
    );
    const curl = await podExec(cluster, 'default/client', [
      'curl',
      '-sS',
      '--max-time',
      '5',
      `http://${ips.fresh}:81/hostname`,
    ]);
    expect(curl.stderr).toBe('');
    expect(['be-1', 'be-2']).toContain(curl.stdout);
  });
});

describe('devcluster daemon restart', () => {
  it('keeps traffic flowing while the API server is gone; started again, the same agents reconnect and follow changes', async () => {
    const daemon = readDaemonRecord(cluster);
    if (!daemon) throw new Error('no daemon record');
    const agents = { cp: recordedAgent(cp), worker: recordedAgent(worker) };
    const statusBefore = { cp: await agentStatus(cp), worker: await agentStatus(worker) };
    const mapsBefore = frontends(await lbList(worker));
    const podProcesses = () =>
      readPodRecords(cluster)
        .pods.flatMap((p) => p.processes)
        .sort((a, b) => a.pid - b.pid);
    const podsBefore = podProcesses();

    expect(signalRecorded({ pid: daemon.pid, startTime: daemon.startTime, role: 'daemon' }, 'SIGTERM')).toBe(
      true,
    );
    await waitFor('the daemon to exit', () => !isRunning({ ...daemon, role: 'daemon' }), 15_000);
    // The API server is gone; the agents (and pods) are not.
    expect((await kubectl(cluster, ['get', 'services', '--request-timeout=2s'])).code).not.toBe(0);
    expect(isRunning(agents.cp) && isRunning(agents.worker)).toBe(true);
    await waitFor('the agents to notice the API server is gone', async () => {
      const s = await agentStatus(worker);
      return s.kubernetes.connected === false ? true : undefined;
    });

    const load = startLoad('apiserver-down', { host: ips.web ?? '', port: 80 });
    await load.successes(2 * RATE, 'with the API server down');
    const result = await load.stop();
    process.stderr.write(`daemon-down load: ${describeLoad(result)}\n`);
    expect(result.failed, describeLoad(result)).toBe(0);
    expect(rateOver(result), describeLoad(result)).toBeGreaterThanOrEqual(200);
    expect(frontends(await lbList(worker))).toEqual(mapsBefore);

    const startedAt = Date.now();
    const start = await weft(['devcluster', 'start', '--name', cluster]);
    expect(start.code, start.stderr).toBe(0);
    const again = readDaemonRecord(cluster);
    expect(again?.pid).not.toBe(daemon.pid);
    // Same API port: the agents' kubeconfig still names it ...
    expect(again?.apiServer.port).toBe(daemon.apiServer.port);
    // ... and the same agent processes, adopted, not a second one next to each.
    expect(recordedAgent(cp)).toEqual(agents.cp);
    expect(recordedAgent(worker)).toEqual(agents.worker);
    for (const node of [cp, worker]) expect(agentProcesses(node)).toEqual([recordedAgent(node).pid]);

    for (const [node, before] of [
      [cp, statusBefore.cp],
      [worker, statusBefore.worker],
    ] as const) {
      const s = await waitFor(`${node.name}'s agent to reconnect and relist`, async () => {
        const st = await agentStatus(node);
        return st.kubernetes.connected &&
          st.kubernetes.resources.every((r) => r.connected && (r.lastListAt ?? 0) >= startedAt)
          ? st
          : undefined;
      });
      expect(s.pid).toBe(before.pid);
      expect(s.restarts).toBe(before.restarts);
      const reconnects = (st: StatusResponse) =>
        st.kubernetes.resources.reduce((n, r) => n + r.reconnects, 0);
      expect(reconnects(s)).toBeGreaterThan(reconnects(before));
    }
    // The kubelets took the pods over: the same container processes, so the same backends.
    expect(podProcesses()).toEqual(podsBefore);
    expect(podsBefore.every(isRunning)).toBe(true);
    expect(frontends(await lbList(worker))).toEqual(mapsBefore);

    // A change made now reaches both nodes' maps.
    await core.createNamespacedService({ namespace: 'default', body: service('after', 83) });
    await core.deleteNamespacedService({ name: 'fresh', namespace: 'default' });
    ips.after = await clusterIP('after');
    for (const node of [cp, worker]) {
      await waitFor(`${node.name}'s maps to hold "after" and drop "fresh"`, async () => {
        const f = frontends(await lbList(node));
        return f[`${ips.after}:83`] !== undefined && f[`${ips.fresh}:81`] === undefined ? true : undefined;
      });
      expectConsistentMaps(await lbList(node));
    }
    expect(agentProcesses(cp)).toEqual([agents.cp.pid]);
    expect(agentProcesses(worker)).toEqual([agents.worker.pid]);
    // The daemon itself is the one `down` will stop.
    expect(recordProcess(again?.pid ?? 0, 'daemon')?.startTime).toBe(again?.startTime);
  });
});
