// The agent against the devcluster's Kubernetes-compatible API server, through its real
// informers (client-node ListWatch) and a kubeconfig file, as a node runs it: Services and
// EndpointSlices made with client-node reach the maps; the API server goes away (the datapath
// keeps serving, status says disconnected) and comes back with changes made while the agent
// could not see them, which the agent's relist applies. The agent runs in this process; its
// API is read with the same client `weft` uses, and `weft status` is run once for real.
// Everything is named weft-kt-agent-<pid> and removed in afterAll.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdirSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { CoreV1Api, DiscoveryV1Api, KubeConfig, type V1EndpointSlice } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import type { ServiceEntry, StatusResponse } from '../../src/agent/api/types.js';
import { parseAgentArgs } from '../../src/agent/config.js';
import { removeNodePins } from '../../src/agent/datapath.js';
import { agentGet } from '../../src/cli/agent-client.js';
import { LbMaps } from '../../src/datapath/lbmap.js';
import { cgroup2Root } from '../../src/datapath/environment.js';
import { type ApiServer, startApiServer } from '../../src/devcluster/apiserver/index.js';
import { projectRoot } from '../../src/shared/self.js';

const execFileAsync = promisify(execFile);
const tag = `weft-kt-agent-${process.pid}`;
const work = `/tmp/${tag}`;
const stateDir = join(work, 'state');
const pinRoot = `/sys/fs/bpf/weft/${tag}`;
const cgroup = join(cgroup2Root(), tag);
let apiPort = 0;
let api: ApiServer | undefined;
let agent: Agent | undefined;
let core: CoreV1Api;
let discovery: DiscoveryV1Api;

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolvePort(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

async function startApi(): Promise<ApiServer> {
  return startApiServer({
    listen: [{ host: '127.0.0.1', port: apiPort }],
    dataDir: join(work, 'apiserver'),
    serviceCIDR: '10.97.0.0/16',
    advertiseAddress: '127.0.0.1',
    advertisePort: apiPort,
  });
}

/** Polls `check` until it returns a value, or fails with what it last saw. */
async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not reached (last error: ${String(last)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const target = { socket: join(stateDir, 'agent.sock'), node: tag };
const services = () => agentGet<ServiceEntry[]>(target, '/v1/services');
const status = () => agentGet<StatusResponse>(target, '/v1/status');

/** frontend → backend addresses, for the Services this test makes. */
async function view(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const s of await services()) {
    if (s.service?.namespace !== tag) continue;
    // NodePorts are allocated by the API server: leave the number out.
    const port = s.type === 'NodePort' ? '' : ` ${s.frontend.port}/${s.frontend.protocol}`;
    const key = `${s.service.name} ${s.type}${port}`;
    out[key] =
      s.backends
        .map((b) => `${b.address}:${b.port}`)
        .sort()
        .join(' ') || '-';
  }
  return out;
}

function endpointSlice(name: string, serviceName: string, ips: string[]): V1EndpointSlice {
  return {
    metadata: { name, labels: { 'kubernetes.io/service-name': serviceName } },
    addressType: 'IPv4',
    endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true }, nodeName: tag })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

beforeAll(async () => {
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  mkdirSync(cgroup, { recursive: true });
  apiPort = await freePort();
  api = await startApi();
  const kubeconfig = join(work, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      `- name: dev\n  cluster:\n    server: ${api.url}\n    certificate-authority-data: ${Buffer.from(api.caCertPem).toString('base64')}`,
      `users:\n- name: admin\n  user:\n    token: ${api.adminToken}`,
      'contexts:\n- name: dev\n  context:\n    cluster: dev\n    user: admin',
      'current-context: dev',
      '',
    ].join('\n'),
  );
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  core = kc.makeApiClient(CoreV1Api);
  discovery = kc.makeApiClient(DiscoveryV1Api);
  await core.createNamespace({ body: { metadata: { name: tag } } });
  await core.createNode({
    body: {
      metadata: { name: tag },
      status: { addresses: [{ type: 'InternalIP', address: '172.31.250.2' }] },
    },
  });
  for (const name of ['web', 'api']) {
    await core.createNamespacedService({
      namespace: tag,
      body: {
        metadata: { name },
        spec: {
          type: name === 'web' ? 'NodePort' : 'ClusterIP',
          ports: [{ name: 'http', port: 80, targetPort: 'http' }],
        },
      },
    });
  }
  await discovery.createNamespacedEndpointSlice({
    namespace: tag,
    body: endpointSlice('web-1', 'web', ['10.244.250.2']),
  });
  await discovery.createNamespacedEndpointSlice({
    namespace: tag,
    body: endpointSlice('api-1', 'api', ['10.244.250.9']),
  });

  const config = parseAgentArgs(
    [
      '--node-name',
      tag,
      '--kubeconfig',
      kubeconfig,
      '--cgroup-root',
      cgroup,
      '--state-dir',
      stateDir,
      '--prometheus-serve-addr',
      '127.0.0.1:0',
      '--bpf-lb-map-max',
      '1024',
      '--log-level',
      'warn',
    ],
    {},
  );
  if (config === 'help') throw new Error('unexpected help');
  agent = await Agent.start(config);
});

afterAll(async () => {
  // Every step runs, whatever the one before did; failures are reported together at the end.
  const errors: unknown[] = [];
  const step = async (name: string, fn: () => unknown) => {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        fn(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`cleanup step "${name}" did not finish in 20 s`)),
            20_000,
          );
        }),
      ]);
    } catch (err) {
      errors.push(err);
    } finally {
      clearTimeout(timer);
    }
  };
  await step('stop the agent', () => agent?.stop());
  await step('stop the API server', () => api?.close());
  await step('remove the pins', () => existsSync(pinRoot) && removeNodePins(pinRoot));
  await step('remove the cgroup', () => existsSync(cgroup) && rmdirSync(cgroup));
  await step('remove the work dir', () => rmSync(work, { recursive: true, force: true }));
  if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
});

describe('the agent on a Kubernetes API through its informers', () => {
  it('becomes ready after its first sync, with every Service in the maps', async () => {
    await agent!.whenReady();
    const s = await status();
    expect(s).toMatchObject({
      ready: true,
      health: 'Ok',
      kubernetes: { connected: true, configSource: 'flag' },
    });
    expect(s.kubernetes.resources.map((r) => [r.kind, r.synced])).toEqual([
      ['Service', true],
      ['EndpointSlice', true],
      ['Node', true],
    ]);
    expect(await view()).toEqual({
      'web ClusterIP 80/TCP': '10.244.250.2:8080',
      'web NodePort': '10.244.250.2:8080',
      'api ClusterIP 80/TCP': '10.244.250.9:8080',
    });
    const nodePort = (await services()).find((e) => e.service?.name === 'web' && e.type === 'NodePort');
    expect(nodePort?.frontend.address).toBe('172.31.250.2');
  });

  it('an EndpointSlice change made with the API reaches the maps', async () => {
    await discovery.replaceNamespacedEndpointSlice({
      name: 'web-1',
      namespace: tag,
      body: endpointSlice('web-1', 'web', ['10.244.250.2', '10.244.250.3']),
    });
    await eventually('two web backends', async () =>
      (await view())['web ClusterIP 80/TCP'] === '10.244.250.2:8080 10.244.250.3:8080' ? true : undefined,
    );
  });

  it('the API server goes away: the agent says so, keeps serving the last state, and stays up', async () => {
    const before = await view();
    await api!.close();
    api = undefined;
    const s = await eventually('disconnected', async () => {
      const st = await status();
      return st.kubernetes.connected ? undefined : st;
    });
    expect(s.health).toBe('Degraded');
    expect(s.problems.join('\n')).toMatch(/watch/);
    // `weft status` says so, and exits 1 like `cilium status` for an unhealthy agent.
    const cli = await execFileAsync(
      process.execPath,
      ['--import', 'tsx', resolve(projectRoot, 'src/cli/weft.ts'), 'status', '--state-dir', stateDir],
      { encoding: 'utf8', cwd: projectRoot },
    ).then(
      () => ({ code: 0, stdout: '' }),
      (err: { code: number; stdout: string }) => ({ code: err.code, stdout: err.stdout }),
    );
    expect(cli.code).toBe(1);
    expect(cli.stdout).toMatch(/^Agent:\s+Degraded/m);
    expect(await view()).toEqual(before);
    // The maps themselves, as the programs read them, still hold every frontend.
    const lb = LbMaps.openPinned(pinRoot);
    try {
      expect(lb.frontends().length).toBeGreaterThanOrEqual(4);
    } finally {
      lb.close();
    }
  });

  it('it comes back with changes made meanwhile: the agent relists and applies them', async () => {
    // Let the agent fail a few times first, so that its next attempt is seconds away.
    await eventually('retrying', async () => {
      const st = await status();
      return st.kubernetes.resources.every((r) => r.lastError) ? true : undefined;
    });
    api = await startApi();
    await discovery.replaceNamespacedEndpointSlice({
      name: 'web-1',
      namespace: tag,
      body: endpointSlice('web-1', 'web', ['10.244.250.4']),
    });
    await core.deleteNamespacedService({ name: 'api', namespace: tag });
    await core.createNamespacedService({
      namespace: tag,
      body: { metadata: { name: 'db' }, spec: { ports: [{ name: 'http', port: 5432, targetPort: 'http' }] } },
    });
    await discovery.createNamespacedEndpointSlice({
      namespace: tag,
      body: endpointSlice('db-1', 'db', ['10.244.250.7']),
    });
    await eventually('the changes in the maps', async () => {
      const v = await view();
      return JSON.stringify(v) ===
        JSON.stringify({
          'web ClusterIP 80/TCP': '10.244.250.4:8080',
          'web NodePort': '10.244.250.4:8080',
          'db ClusterIP 5432/TCP': '10.244.250.7:8080',
        })
        ? true
        : undefined;
    });
    const s = await eventually('connected again', async () => {
      const st = await status();
      return st.kubernetes.connected && st.health === 'Ok' ? st : undefined;
    });
    for (const r of s.kubernetes.resources) expect(r.reconnects).toBeGreaterThanOrEqual(1);
  });

  it('metrics and probes answer on TCP; weft status answers on the socket', async () => {
    const st = await status();
    expect(st.restarts).toBe(0);
    const metricsUrl = `http://${agent!.metricsAddress}`;
    const metrics = await (await fetch(`${metricsUrl}/metrics`)).text();
    expect(metrics).toMatch(/^weft_k8s_reconnects_total\{scope="Service"\} [1-9]/m);
    expect(metrics).toMatch(/^weft_services 3$/m);
    expect(metrics).toMatch(/^weft_bpf_map_capacity\{map_name="weft_lb4_backends"\} 1024$/m);
    expect(metrics).toMatch(/^weft_k8s_events_total\{scope="EndpointSlice",action="update"\} /m);
    expect(metrics).toMatch(/^weft_sync_duration_seconds_count\{kind="full"\} 1$/m);
    expect(metrics).toMatch(
      /^weft_bpf_map_ops_total\{map_name="weft_lb4_services",operation="update",outcome="success"\} /m,
    );
    expect(metrics).toMatch(/^process_resident_memory_bytes /m);
    expect((await fetch(`${metricsUrl}/readyz`)).status).toBe(200);
    expect((await fetch(`${metricsUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${metricsUrl}/v1/status`)).status).toBe(404); // the API is on the socket only

    const { stdout: out } = await execFileAsync(
      process.execPath,
      ['--import', 'tsx', resolve(projectRoot, 'src/cli/weft.ts'), 'status', '--state-dir', stateDir],
      { encoding: 'utf8', cwd: projectRoot },
    );
    expect(out).toMatch(/^Agent:\s+Ok\s+weft .* on node weft-kt-agent-/m);
    expect(out).toMatch(/^Kubernetes:\s+Ok\s+https:\/\/127\.0\.0\.1:\d+ \(config: flag\)$/m);
    expect(out).toMatch(/^Socket LB:\s+attached to .*weft-kt-agent-\d+ \(8 programs\)/m);
  });

  it('stopping the agent leaves the maps in place, and a restarted agent counts the restart', async () => {
    await agent!.stop();
    const lb = LbMaps.openPinned(pinRoot);
    const held = lb.frontends().length;
    lb.close();
    expect(held).toBeGreaterThanOrEqual(3);
    const config = parseAgentArgs(
      [
        '--node-name',
        tag,
        '--kubeconfig',
        join(work, 'kubeconfig'),
        '--cgroup-root',
        cgroup,
        '--state-dir',
        stateDir,
        '--prometheus-serve-addr=',
        '--bpf-lb-map-max',
        '1024',
        '--log-level',
        'warn',
      ],
      {},
    );
    if (config === 'help') throw new Error('unexpected help');
    agent = await Agent.start(config);
    await agent.whenReady();
    const s = await status();
    expect(s.restarts).toBe(1);
    expect(s.sync.lastFull).toMatchObject({ frontendsWritten: 0, frontendsDeleted: 0, backendsWritten: 0 });
  });
});
