import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import {
  type CoreV1Api,
  KubeConfig,
  type V1Pod,
  type V1Service,
  type V1ServicePort,
  type V1ServiceSpec,
  Watch,
} from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { BpfLbResponse, ServiceEntry } from '../../src/agent/api/types.js';
import { weftCommand } from '../../src/shared/self.js';
import {
  coreApi,
  downCluster,
  failureTracker,
  kubeconfigPath,
  kubectl,
  leftovers,
  recordedProcesses,
  uniqueClusterName,
  waitFor,
  weft,
  weftOk,
  AGNHOST,
  podExec,
} from './devcluster-harness.js';

/**
 * Kubernetes Service semantics through weft, as users observe them from pods: one 2-node
 * devcluster (the weft agent on each node is its only kube-proxy), clients in pods on both
 * nodes, objects changed with kubectl and client-node, traffic made with `weft devcluster exec`.
 * Every claim is checked from the client's side (which backend answered, what address a reply
 * came from, how a connect failed) and, where the maps tell more, from `weft service list` and
 * `weft bpf lb list` on both nodes.
 */

const NS = 'default';

// ---- client programs, run with `node -e` inside a client pod --------------------------------
// Plain CommonJS text (not functions stringified from this file, which the test transform may
// rewrite). Each reads one JSON argument and prints one JSON result (or a line per event).

/** n sequential HTTP GETs, each on a new connection: [{body, peer} | {error}]. */
const HTTP_TRIES = `
const http = require('http');
const { host, port, path, n } = JSON.parse(process.argv[process.argv.length - 1]);
function once() {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path, agent: false, timeout: 3000 }, (res) => {
      const peer = res.socket.remoteAddress + ':' + res.socket.remotePort;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ body, peer }));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', (e) => resolve({ error: e.code || e.message }));
  });
}
(async () => {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await once());
  process.stdout.write(JSON.stringify(out));
})();
`;

/**
 * n UDP requests ("hostname"), each from a new socket, unconnected (sendto) or connected
 * (connect + send, where getpeername gives \`peer\`): [{body, from, peer?} | {error}].
 */
const UDP_TRIES = `
const dgram = require('dgram');
const { host, port, n, connected } = JSON.parse(process.argv[process.argv.length - 1]);
function once() {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => { s.close(); resolve({ error: 'timeout' }); }, 3000);
    let peer;
    s.on('message', (m, rinfo) => {
      clearTimeout(timer);
      s.close();
      resolve({ body: String(m), from: rinfo.address + ':' + rinfo.port, peer });
    });
    s.on('error', (e) => { clearTimeout(timer); s.close(); resolve({ error: e.code || e.message }); });
    if (!connected) return s.send('hostname', port, host);
    s.connect(port, host, () => {
      const p = s.remoteAddress();
      peer = p.address + ':' + p.port;
      s.send('hostname');
    });
  });
}
(async () => {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await once());
  process.stdout.write(JSON.stringify(out));
})();
`;

/** n TCP connects: [{error, ms} | {connected, ms}]. */
const CONNECT_TRIES = `
const net = require('net');
const { host, port, n } = JSON.parse(process.argv[process.argv.length - 1]);
function once() {
  return new Promise((resolve) => {
    const t = process.hrtime.bigint();
    const ms = () => Number(process.hrtime.bigint() - t) / 1e6;
    const s = net.connect({ host, port, timeout: 5000 });
    s.on('connect', () => { s.destroy(); resolve({ connected: true, ms: ms() }); });
    s.on('timeout', () => { s.destroy(); resolve({ error: 'ETIMEDOUT', ms: ms() }); });
    s.on('error', (e) => resolve({ error: e.code || e.message, ms: ms() }));
  });
}
(async () => {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await once());
  process.stdout.write(JSON.stringify(out));
})();
`;

/**
 * ClientIP affinity over time: \`burst\` connections back to back (each refreshes the client's
 * entry), then up to \`rounds\` times: stay silent for \`gapMs\` (longer than the affinity
 * timeout), connect once, stop at the first backend that differs from the one before.
 */
const AFFINITY_ROUNDS = `
const http = require('http');
const { host, port, burst, rounds, gapMs } = JSON.parse(process.argv[process.argv.length - 1]);
function once() {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: '/hostname', agent: false, timeout: 3000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve('error ' + (e.code || e.message)));
  });
}
(async () => {
  const sticky = [];
  for (let i = 0; i < burst; i++) sticky.push(await once());
  const afterGaps = [];
  let last = sticky[sticky.length - 1];
  for (let r = 0; r < rounds; r++) {
    await new Promise((resolve) => setTimeout(resolve, gapMs));
    const b = await once();
    afterGaps.push(b);
    if (b !== last) break;
    last = b;
  }
  process.stdout.write(JSON.stringify({ sticky, afterGaps }));
})();
`;

/**
 * A stream of HTTP GETs, each on a new connection, one line per answer: "<epoch ms> <body>".
 * Ends when its stdin closes (or after 60 s, should the test die).
 */
const HTTP_STREAM = `
const http = require('http');
const { host, port } = JSON.parse(process.argv[process.argv.length - 1]);
let stop = false;
process.stdin.on('data', () => {});
process.stdin.on('end', () => { stop = true; });
setTimeout(() => { stop = true; }, 60000).unref();
function once() {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: '/hostname', agent: false, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve('error:' + (e.code || e.message)));
  });
}
(async () => {
  while (!stop) {
    const body = await once();
    process.stdout.write(Date.now() + ' ' + body + '\\n');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  process.exit(0);
})();
`;

/**
 * One keep-alive HTTP connection driven from stdin: each line "get" sends GET /hostname on the
 * open connection (a new one if it is closed) and prints {body, localPort, reused}; the
 * connection closing prints {closed: localPort}. Ends when stdin closes.
 */
const KEEPALIVE = `
const http = require('http');
const readline = require('readline');
const { host, port } = JSON.parse(process.argv[process.argv.length - 1]);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const print = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const seen = new Set();
agent.on('free', (socket) => {
  if (seen.has(socket)) return;
  seen.add(socket);
  const localPort = socket.localPort;
  socket.on('close', () => print({ closed: localPort }));
});
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', () => {
  const req = http.get({ host, port, path: '/hostname', agent }, (res) => {
    const localPort = res.socket.localPort;
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (d) => { body += d; });
    res.on('end', () => print({ body, localPort, reused: req.reusedSocket }));
  });
  req.on('error', (e) => print({ error: e.code || e.message }));
});
rl.on('close', () => { agent.destroy(); process.exit(0); });
`;

// ---- the cluster ---------------------------------------------------------------------------

const cluster = uniqueClusterName('svc');
const cpNode = `${cluster}-control-plane`;
const workerNode = `${cluster}-worker`;
const nodes = [cpNode, workerNode];
let core: CoreV1Api;
let nodeCIDR: string;
/** Client pods, one per node: `${NS}/client-cp` and `${NS}/client-w`. */
const clients = { [cpNode]: `${NS}/client-cp`, [workerNode]: `${NS}/client-w` };
const ips: Record<string, string> = {};
const clusterIPs: Record<string, string> = {};
const streams: ChildProcessWithoutNullStreams[] = [];

interface ContainerPortSpec {
  name: string;
  containerPort: number;
  protocol?: 'TCP' | 'UDP';
}

function netexecPod(
  name: string,
  node: string,
  labels: Record<string, string>,
  opts: { args?: string[]; ports?: ContainerPortSpec[]; grace?: number; httpPort?: number } = {},
): V1Pod {
  return {
    metadata: { name, namespace: NS, labels },
    spec: {
      nodeName: node,
      terminationGracePeriodSeconds: opts.grace,
      containers: [
        {
          name: 'agnhost',
          image: AGNHOST,
          args: opts.args ?? ['netexec', '--http-port=8080', '--udp-port=8081'],
          ports: opts.ports,
          // Ready once it listens: without a probe a pod is Ready as soon as its process starts,
          // and connections sent to it before it listens are refused (as on any Kubernetes).
          readinessProbe: { tcpSocket: { port: (opts.httpPort ?? 8080) as never }, periodSeconds: 1 },
        },
      ],
    },
  };
}

function pausePod(name: string, node: string): V1Pod {
  return {
    metadata: { name, namespace: NS, labels: { role: 'client' } },
    spec: { nodeName: node, containers: [{ name: 'agnhost', image: AGNHOST, args: ['pause'] }] },
  };
}

function clusterIPService(
  name: string,
  selector: Record<string, string>,
  ports: V1ServicePort[],
  extra: Partial<V1ServiceSpec> = {},
): V1Service {
  return { metadata: { name, namespace: NS }, spec: { selector, ports, ...extra } };
}

const HTTP_PORT: V1ServicePort[] = [{ name: 'http', port: 80, targetPort: 8080 as never, protocol: 'TCP' }];

async function readyPod(name: string): Promise<V1Pod> {
  return waitFor(
    `pod ${name} to be Ready`,
    async () => {
      const p = await core.readNamespacedPod({ name, namespace: NS });
      return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') && p.status.podIP
        ? p
        : undefined;
    },
    60_000,
  );
}

async function createPod(pod: V1Pod): Promise<void> {
  await core.createNamespacedPod({ namespace: NS, body: pod });
}

async function createService(svc: V1Service): Promise<string> {
  const created = await core.createNamespacedService({ namespace: NS, body: svc });
  const ip = created.spec?.clusterIP ?? '';
  clusterIPs[svc.metadata?.name ?? ''] = ip;
  return ip;
}

/** Runs a client program inside a pod and parses what it printed. */
async function inPod<T>(pod: string, script: string, arg: unknown): Promise<T> {
  const r = await podExec(cluster, pod, [process.execPath, '-e', script, JSON.stringify(arg)]);
  if (r.code !== 0) throw new Error(`client in ${pod} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

async function httpTries(pod: string, host: string, port: number, n: number, path = '/hostname') {
  return inPod<Array<{ body?: string; peer?: string; error?: string }>>(pod, HTTP_TRIES, {
    host,
    port,
    path,
    n,
  });
}

/** A long-running client program in a pod, read line by line. */
function podStream(pod: string, script: string, arg: unknown) {
  const child = spawn(
    weftCommand()[0],
    [
      weftCommand()[1],
      'devcluster',
      'exec',
      '--name',
      cluster,
      pod,
      '--',
      process.execPath,
      '-e',
      script,
      JSON.stringify(arg),
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  streams.push(child);
  const lines: string[] = [];
  let stderr = '';
  createInterface({ input: child.stdout }).on('line', (l) => lines.push(l));
  child.stderr.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  let exited = false;
  child.on('exit', () => {
    exited = true;
  });
  return {
    lines,
    send(line: string) {
      child.stdin.write(`${line}\n`);
    },
    /** The first value `parse` finds in the lines from index `from` on, waiting up to `ms`. */
    async next<T>(what: string, from: number, parse: (l: string) => T | undefined, ms = 10_000): Promise<T> {
      return waitFor(
        `${what} (from ${pod})`,
        () => {
          if (exited && lines.length <= from) throw new Error(`client exited: ${stderr}`);
          for (const l of lines.slice(from)) {
            const v = parse(l);
            if (v !== undefined) return v;
          }
          return undefined;
        },
        ms,
      );
    },
    /** Closes the program's stdin (it exits then); kills it if it has not within 5 s. */
    async end(): Promise<void> {
      child.stdin.end();
      if (exited) return;
      const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await new Promise((r) => child.once('exit', r));
      clearTimeout(killer);
    },
  };
}

async function serviceList(node: string): Promise<ServiceEntry[]> {
  return JSON.parse(await weftOk(['service', 'list', '--node', node, '-o', 'json'])) as ServiceEntry[];
}

async function bpfLb(node: string): Promise<BpfLbResponse> {
  return JSON.parse(await weftOk(['bpf', 'lb', 'list', '--node', node, '-o', 'json'])) as BpfLbResponse;
}

/** The frontend `address:port/protocol` as the node's agent has programmed it, if it has. */
async function frontendOn(node: string, address: string, port: number, protocol = 'TCP') {
  return (await serviceList(node)).find(
    (s) => s.frontend.address === address && s.frontend.port === port && s.frontend.protocol === protocol,
  );
}

/** Waits until both nodes' agents list exactly these backends (`ip:port`, state) for a frontend. */
async function waitForBackends(
  address: string,
  port: number,
  want: string[],
  opts: { protocol?: string; state?: string } = {},
): Promise<void> {
  const expected = [...want].sort();
  await Promise.all(
    nodes.map((node) =>
      waitFor(
        `${node} to program ${address}:${port} with backends ${expected.join(', ')}`,
        async () => {
          const f = await frontendOn(node, address, port, opts.protocol);
          const have = (f?.backends ?? [])
            .filter((b) => opts.state === undefined || b.state === opts.state)
            .map((b) => `${b.address}:${b.port}`)
            .sort();
          return f && have.length === f.backends.length && JSON.stringify(have) === JSON.stringify(expected);
        },
        15_000,
      ),
    ),
  );
}

function bodies(results: Array<{ body?: string; error?: string }>): Set<string> {
  return new Set(results.map((r) => r.body ?? `error ${r.error}`));
}

const failures = failureTracker();
afterEach((ctx) => failures.note(ctx));

beforeAll(async () => {
  await weftOk(['devcluster', 'up', '--name', cluster, '--nodes', '2']);
  core = coreApi(cluster);
  const status = JSON.parse(await weftOk(['devcluster', 'status', '--name', cluster, '-o', 'json']));
  nodeCIDR = status.networks.nodes;

  const named = (http: number, udp: number): ContainerPortSpec[] => [
    { name: 'http', containerPort: http },
    { name: 'udp-echo', containerPort: udp, protocol: 'UDP' },
  ];
  const pods: V1Pod[] = [
    pausePod('client-cp', cpNode),
    pausePod('client-w', workerNode),
    // three backends of "web", two on the control plane, one on the worker
    netexecPod('web-0', cpNode, { app: 'web' }),
    netexecPod('web-1', workerNode, { app: 'web' }),
    netexecPod('web-2', cpNode, { app: 'web' }),
    // one port name, two container port numbers
    netexecPod('named-a', cpNode, { app: 'named' }, { ports: named(8080, 8081) }),
    netexecPod(
      'named-b',
      workerNode,
      { app: 'named' },
      {
        args: ['netexec', '--http-port=9090', '--udp-port=9091'],
        ports: named(9090, 9091),
        httpPort: 9090,
      },
    ),
    // keeps serving for 120 s after SIGTERM, within its grace period
    netexecPod(
      'term-old',
      workerNode,
      { app: 'term' },
      {
        args: ['netexec', '--http-port=8080', '--delay-shutdown=120'],
        grace: 120,
      },
    ),
    netexecPod('keep-0', cpNode, { app: 'keep' }),
    netexecPod('keep-1', workerNode, { app: 'keep' }),
    netexecPod('keep-2', cpNode, { app: 'spare' }),
    netexecPod('fast-0', cpNode, { app: 'fast' }),
  ];
  await Promise.all(pods.map(createPod));
  await Promise.all([
    createService(
      clusterIPService('web', { app: 'web' }, [
        { name: 'http', port: 80, targetPort: 8080 as never, protocol: 'TCP' },
        { name: 'udp', port: 53, targetPort: 8081 as never, protocol: 'UDP' },
      ]),
    ),
    createService(
      clusterIPService('named', { app: 'named' }, [
        { name: 'tcp', port: 80, targetPort: 'http' as never, protocol: 'TCP' },
        { name: 'udp', port: 80, targetPort: 'udp-echo' as never, protocol: 'UDP' },
      ]),
    ),
    createService(
      clusterIPService('sticky', { app: 'web' }, HTTP_PORT, {
        sessionAffinity: 'ClientIP',
        sessionAffinityConfig: { clientIP: { timeoutSeconds: 2 } },
      }),
    ),
    createService(clusterIPService('term', { app: 'term' }, HTTP_PORT)),
    createService(clusterIPService('empty', { app: 'nobody' }, HTTP_PORT)),
    createService(clusterIPService('keep', { app: 'keep' }, HTTP_PORT)),
    createService(clusterIPService('fast', { app: 'fast' }, HTTP_PORT)),
  ]);
  for (const p of pods) {
    const ready = await readyPod(p.metadata?.name ?? '');
    ips[p.metadata?.name ?? ''] = ready.status?.podIP ?? '';
  }
});

afterAll(async () => {
  for (const s of streams) if (s.exitCode === null) s.kill('SIGKILL');
  const procs = recordedProcesses(cluster);
  const down = await downCluster(cluster, { keepLogs: failures.failed });
  expect(down.code, down.stderr).toBe(0);
  expect(await leftovers(cluster, procs, nodeCIDR)).toEqual([]);
});

describe('ClusterIP Services through weft (2 nodes)', () => {
  it('balances TCP over every backend from pods on both nodes; the server sees the client pod, the client the ClusterIP', async () => {
    const ip = clusterIPs.web ?? '';
    await waitForBackends(ip, 80, [`${ips['web-0']}:8080`, `${ips['web-1']}:8080`, `${ips['web-2']}:8080`]);
    for (const node of nodes) {
      const client = clients[node] ?? '';
      // 40 connections over 3 backends: one is missed with probability 3·(2/3)^40 < 1e-6.
      const tries = await httpTries(client, ip, 80, 40);
      expect(bodies(tries), client).toEqual(new Set(['web-0', 'web-1', 'web-2']));
      // getpeername() on the client's socket reports the Service, not the backend
      expect(new Set(tries.map((t) => t.peer))).toEqual(new Set([`${ip}:80`]));
      const seenByServer = await httpTries(client, ip, 80, 6, '/clientip');
      const clientPodIP = ips[client.split('/')[1] ?? ''];
      for (const t of seenByServer) expect(t.body?.split(':')[0], JSON.stringify(t)).toBe(clientPodIP);
    }
  });

  it('balances UDP over every backend and the replies come from ClusterIP:port', async () => {
    const ip = clusterIPs.web ?? '';
    await waitForBackends(ip, 53, [`${ips['web-0']}:8081`, `${ips['web-1']}:8081`, `${ips['web-2']}:8081`], {
      protocol: 'UDP',
    });
    for (const node of nodes) {
      const client = clients[node] ?? '';
      for (const connected of [false, true]) {
        const how = `${connected ? 'connected' : 'unconnected'} sockets in ${client}`;
        const tries = await inPod<Array<{ body?: string; from?: string; peer?: string; error?: string }>>(
          client,
          UDP_TRIES,
          { host: ip, port: 53, n: 40, connected },
        );
        expect(bodies(tries), how).toEqual(new Set(['web-0', 'web-1', 'web-2']));
        // recvmsg shows the reply as coming from the Service; so does getpeername
        expect(new Set(tries.map((t) => t.from)), how).toEqual(new Set([`${ip}:53`]));
        if (connected) expect(new Set(tries.map((t) => t.peer)), how).toEqual(new Set([`${ip}:53`]));
      }
    }
  });

  it('serves several ports and protocols of one Service, resolving a named targetPort per pod', async () => {
    const ip = clusterIPs.named ?? '';
    // named-a calls its ports http=8080/udp-echo=8081, named-b http=9090/udp-echo=9091
    await waitForBackends(ip, 80, [`${ips['named-a']}:8080`, `${ips['named-b']}:9090`]);
    await waitForBackends(ip, 80, [`${ips['named-a']}:8081`, `${ips['named-b']}:9091`], { protocol: 'UDP' });
    for (const node of nodes) {
      const client = clients[node] ?? '';
      // 30 tries over 2 backends: one is missed with probability 2·2^-30
      expect(bodies(await httpTries(client, ip, 80, 30)), `TCP from ${client}`).toEqual(
        new Set(['named-a', 'named-b']),
      );
      const udp = await inPod<Array<{ body?: string; from?: string }>>(client, UDP_TRIES, {
        host: ip,
        port: 80,
        n: 30,
      });
      expect(bodies(udp), `UDP from ${client}`).toEqual(new Set(['named-a', 'named-b']));
      expect(new Set(udp.map((t) => t.from))).toEqual(new Set([`${ip}:80`]));
    }
  });

  it('keeps a client on one backend with ClientIP affinity, and chooses again once the timeout has passed', async () => {
    const ip = clusterIPs.sticky ?? '';
    await waitForBackends(ip, 80, [`${ips['web-0']}:8080`, `${ips['web-1']}:8080`, `${ips['web-2']}:8080`]);
    for (const node of nodes) {
      const f = await frontendOn(node, ip, 80);
      expect(f?.affinityTimeoutSeconds, node).toBe(2);
      // the master entry carries the affinity flag's timeout where the backend id would be
      const master = (await bpfLb(node)).services.find(
        (s) => s.key.address === ip && s.key.port === 80 && s.key.slot === 0,
      );
      expect(master?.value.backendId, node).toBe(2);
    }
    // Without affinity, 20 connections over 3 backends all land on one with probability 3^-19.
    // After each silence longer than the 2 s timeout (the maps count whole seconds, so 3.3 s),
    // the choice is new: the same backend comes back with probability 1/3 each round, so 12
    // rounds all returning it (a timeout that never ends passing by luck) has probability 2e-6.
    const r = await inPod<{ sticky: string[]; afterGaps: string[] }>(
      clients[workerNode] ?? '',
      AFFINITY_ROUNDS,
      {
        host: ip,
        port: 80,
        burst: 20,
        rounds: 12,
        gapMs: 3300,
      },
    );
    expect(r.sticky).toHaveLength(20);
    expect(new Set(r.sticky).size, JSON.stringify(r.sticky)).toBe(1);
    expect(r.sticky[0]).toMatch(/^web-[012]$/);
    const last = r.afterGaps[r.afterGaps.length - 1];
    expect(last, JSON.stringify(r)).toMatch(/^web-[012]$/);
    expect(last, `a new choice after a silence longer than the timeout: ${JSON.stringify(r)}`).not.toBe(
      r.afterGaps.length > 1 ? r.afterGaps[r.afterGaps.length - 2] : r.sticky[r.sticky.length - 1],
    );
  });

  it('uses a serving, terminating endpoint only while no ready endpoint exists', async () => {
    const ip = clusterIPs.term ?? '';
    const old = `${ips['term-old']}:8080`;
    await waitForBackends(ip, 80, [old], { state: 'active' });
    await core.deleteNamespacedPod({ name: 'term-old', namespace: NS });
    await waitFor('term-old’s endpoint to be serving and terminating, not ready', async () => {
      const slices = JSON.parse(
        (
          await kubectl(cluster, [
            'get',
            'endpointslices',
            '-l',
            'kubernetes.io/service-name=term',
            '-o',
            'json',
          ])
        ).stdout,
      ) as {
        items: Array<{
          endpoints?: Array<{ targetRef?: { name?: string }; conditions?: Record<string, boolean> }>;
        }>;
      };
      const ep = slices.items.flatMap((s) => s.endpoints ?? []).find((e) => e.targetRef?.name === 'term-old');
      return (
        ep?.conditions?.ready === false &&
        ep.conditions.serving === true &&
        ep.conditions.terminating === true
      );
    });
    await waitForBackends(ip, 80, [old], { state: 'terminating' });
    for (const node of nodes) {
      expect(bodies(await httpTries(clients[node] ?? '', ip, 80, 5)), node).toEqual(new Set(['term-old']));
    }

    await createPod(netexecPod('term-new', cpNode, { app: 'term' }));
    ips['term-new'] = (await readyPod('term-new')).status?.podIP ?? '';
    await waitForBackends(ip, 80, [`${ips['term-new']}:8080`], { state: 'active' });
    for (const node of nodes) {
      // 20 connections: a terminating backend still in the set would take half of them
      expect(bodies(await httpTries(clients[node] ?? '', ip, 80, 20)), node).toEqual(new Set(['term-new']));
    }
    // ... while term-old itself still answers: it is weft that leaves it out
    expect(bodies(await httpTries(clients[workerNode] ?? '', ips['term-old'] ?? '', 8080, 1))).toEqual(
      new Set(['term-old']),
    );
  });

  it('refuses connects to a Service without endpoints at once (ECONNREFUSED)', async () => {
    const ip = clusterIPs.empty ?? '';
    for (const node of nodes) {
      await waitFor(`${node} to program ${ip}:80 without backends`, async () => {
        const f = await frontendOn(node, ip, 80);
        return f !== undefined && f.backends.length === 0;
      });
      const tries = await inPod<Array<{ error?: string; ms: number }>>(clients[node] ?? '', CONNECT_TRIES, {
        host: ip,
        port: 80,
        n: 5,
      });
      for (const t of tries) {
        // An address nobody programmed fails differently (EHOSTUNREACH: the node routes the
        // Service range nowhere), so ECONNREFUSED is the agent's answer.
        expect(t.error, JSON.stringify(t)).toBe('ECONNREFUSED');
        expect(t.ms).toBeLessThan(1000);
      }
      const curl = await podExec(cluster, clients[node] ?? '', [
        'curl',
        '-sS',
        '-o',
        '/dev/null',
        '-w',
        '%{time_total}',
        '--max-time',
        '5',
        `http://${ip}/`,
      ]);
      expect(curl.code, curl.stderr).toBe(7);
      expect(Number(curl.stdout)).toBeLessThan(1);
    }
  });

  it('leaves headless and ExternalName Services out of the maps', async () => {
    await createService(
      clusterIPService('headless', { app: 'web' }, [{ name: 'h', port: 7777, targetPort: 7777 as never }], {
        clusterIP: 'None',
      }),
    );
    await createService({
      metadata: { name: 'external', namespace: NS },
      spec: { type: 'ExternalName', externalName: 'db.example.invalid', ports: [{ port: 7778 }] },
    });
    // The agents see events in order: once a Service made after these two is programmed,
    // these two have been seen (and, rightly, left out).
    const canary = await createService(clusterIPService('canary', { app: 'web' }, HTTP_PORT));
    await waitForBackends(canary, 80, [
      `${ips['web-0']}:8080`,
      `${ips['web-1']}:8080`,
      `${ips['web-2']}:8080`,
    ]);
    const headlessSlices = JSON.parse(
      (
        await kubectl(cluster, [
          'get',
          'endpointslices',
          '-l',
          'kubernetes.io/service-name=headless',
          '-o',
          'json',
        ])
      ).stdout,
    ) as { items: unknown[] };
    expect(
      headlessSlices.items.length,
      'the headless Service has endpoints, so it is not left out for want of them',
    ).toBeGreaterThan(0);
    const services = (await core.listNamespacedService({ namespace: NS })).items;
    const programmedIPs = new Set(
      services
        .filter((s) => s.spec?.type !== 'ExternalName' && s.spec?.clusterIP && s.spec.clusterIP !== 'None')
        .map((s) => s.spec?.clusterIP),
    );
    for (const node of nodes) {
      const listed = await serviceList(node);
      const names = listed.map((s) => s.service?.name);
      expect(names, node).not.toContain('headless');
      expect(names, node).not.toContain('external');
      expect(names, node).toContain('canary');
      const lb = await bpfLb(node);
      for (const s of lb.services) {
        expect(programmedIPs.has(s.key.address), `${node}: ${JSON.stringify(s.key)}`).toBe(true);
        expect([7777, 7778], `${node}: ${JSON.stringify(s.key)}`).not.toContain(s.key.port);
      }
      for (const b of lb.backends)
        expect([7777, 7778], `${node}: ${JSON.stringify(b)}`).not.toContain(b.port);
      for (const n of lb.reverseNat)
        expect(programmedIPs.has(n.address), `${node}: ${JSON.stringify(n)}`).toBe(true);
    }
  });

  it('takes a new endpoint into new connections, and a leaving one out, within a second of its EndpointSlice saying so', async () => {
    const ip = clusterIPs.fast ?? '';
    await waitForBackends(ip, 80, [`${ips['fast-0']}:8080`]);
    // From pods on both nodes, a new connection every ~10 ms, each line "<epoch ms> <backend>"
    const loops = nodes.map((node) => podStream(clients[node] ?? '', HTTP_STREAM, { host: ip, port: 80 }));
    for (const loop of loops)
      await loop.next('fast-0 to answer', 0, (l) => (l.endsWith(' fast-0') ? l : undefined));

    // When the EndpointSlice first shows fast-late ready, and when it first shows it not ready
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfigPath(cluster));
    let readyAt: number | undefined;
    let unreadyAt: number | undefined;
    type Slice = { endpoints?: Array<{ targetRef?: { name?: string }; conditions?: { ready?: boolean } }> };
    const watching = await new Watch(kc).watch(
      `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`,
      { labelSelector: 'kubernetes.io/service-name=fast' },
      (phase: string, slice: Slice) => {
        const ep = slice.endpoints?.find((e) => e.targetRef?.name === 'fast-late');
        const ready = phase !== 'DELETED' && ep !== undefined && ep.conditions?.ready !== false;
        if (readyAt === undefined && ready) readyAt = Date.now();
        if (readyAt !== undefined && unreadyAt === undefined && !ready) unreadyAt = Date.now();
      },
      () => {},
    );
    const late = (l: string) => (l.endsWith(' fast-late') ? Number(l.split(' ')[0]) : undefined);
    try {
      const from = loops.map((l) => l.lines.length);
      // It keeps serving for 60 s after SIGTERM, so a connection that still reaches it after
      // it left would succeed (and show), not fail.
      await createPod(
        netexecPod(
          'fast-late',
          workerNode,
          { app: 'fast' },
          {
            args: ['netexec', '--http-port=8080', '--delay-shutdown=60'],
            grace: 60,
          },
        ),
      );
      const reachedAt = await Promise.all(
        loops.map((loop, i) => loop.next('a connection to reach fast-late', from[i] ?? 0, late, 30_000)),
      );
      const sliceReadyAt = await waitFor('the watch to show fast-late ready', () => readyAt, 5_000);
      for (const [i, t] of reachedAt.entries()) {
        expect(
          t - sliceReadyAt,
          `from ${nodes[i]}: slice ready at ${sliceReadyAt}, first reached at ${t}`,
        ).toBeLessThan(1000);
      }

      await core.deleteNamespacedPod({ name: 'fast-late', namespace: NS });
      const sliceUnreadyAt = await waitFor('the watch to show fast-late not ready', () => unreadyAt, 15_000);
      // Watch 1.5 s of connections after the slice changed: none after the first second reaches it
      for (const [i, loop] of loops.entries()) {
        await loop.next('connections 1.5 s after the change', 0, (l) =>
          Number(l.split(' ')[0]) > sliceUnreadyAt + 1500 ? true : undefined,
        );
        const lastReached = Math.max(...loop.lines.map((l) => late(l) ?? 0));
        expect(
          lastReached - sliceUnreadyAt,
          `from ${nodes[i]}: slice not ready at ${sliceUnreadyAt}, last reached at ${lastReached}`,
        ).toBeLessThan(1000);
      }
      // No connection failed meanwhile
      for (const [i, loop] of loops.entries())
        expect(
          loop.lines.filter((l) => l.includes(' error:')),
          `from ${nodes[i]}`,
        ).toEqual([]);
    } finally {
      watching.abort();
      await Promise.all(loops.map((l) => l.end()));
    }
  });

  it('removes a deleted Service from the maps of both nodes', async () => {
    // targetPort 8089: backends no other Service has, so their removal shows too
    const ip = await createService(
      clusterIPService('doomed', { app: 'web' }, [{ name: 'x', port: 80, targetPort: 8089 as never }]),
    );
    await waitForBackends(ip, 80, [`${ips['web-0']}:8089`, `${ips['web-1']}:8089`, `${ips['web-2']}:8089`]);
    await core.deleteNamespacedService({ name: 'doomed', namespace: NS });
    for (const node of nodes) {
      await waitFor(`${node} to drop ${ip}`, async () => !(await frontendOn(node, ip, 80)), 10_000);
      const lb = await bpfLb(node);
      expect(
        lb.services.filter((s) => s.key.address === ip),
        node,
      ).toEqual([]);
      expect(
        lb.reverseNat.filter((n) => n.address === ip),
        node,
      ).toEqual([]);
      expect(
        lb.backends.filter((b) => b.port === 8089),
        node,
      ).toEqual([]);
    }
  });

  it('keeps an open connection on its backend while the backend set changes, until that backend goes', async () => {
    const ip = clusterIPs.keep ?? '';
    const keep = (name: string) => `${ips[name]}:8080`;
    await waitForBackends(ip, 80, [keep('keep-0'), keep('keep-1')]);
    const conn = podStream(clients[workerNode] ?? '', KEEPALIVE, { host: ip, port: 80 });
    type Answer = { body: string; localPort: number; reused: boolean };
    const get = async (): Promise<Answer> => {
      const from = conn.lines.length;
      conn.send('get');
      return conn.next('an answer', from, (l) => {
        const o = JSON.parse(l) as Partial<Answer> & { error?: string };
        if (o.error) throw new Error(`request failed: ${o.error}`);
        return o.body !== undefined ? (o as Answer) : undefined;
      });
    };
    try {
      const first = await get();
      expect(first.body).toMatch(/^keep-[01]$/);
      const other = first.body === 'keep-0' ? 'keep-1' : 'keep-0';

      // a backend joins
      expect((await kubectl(cluster, ['label', 'pod', 'keep-2', 'app=keep', '--overwrite'])).code).toBe(0);
      await waitForBackends(ip, 80, [keep('keep-0'), keep('keep-1'), keep('keep-2')]);
      expect(await get()).toEqual({ body: first.body, localPort: first.localPort, reused: true });

      // another backend leaves (its pod goes away)
      await core.deleteNamespacedPod({ name: other, namespace: NS, gracePeriodSeconds: 0 });
      await waitForBackends(ip, 80, [keep(first.body), keep('keep-2')]);
      expect(await get()).toEqual({ body: first.body, localPort: first.localPort, reused: true });

      // its own backend goes: the connection ends, and a new one reaches a backend that is left
      const from = conn.lines.length;
      await core.deleteNamespacedPod({ name: first.body, namespace: NS, gracePeriodSeconds: 0 });
      await conn.next('the connection to close', from, (l) =>
        (JSON.parse(l) as { closed?: number }).closed === first.localPort ? true : undefined,
      );
      await waitForBackends(ip, 80, [keep('keep-2')]);
      const after = await get();
      expect(after.body).toBe('keep-2');
      expect(after.localPort).not.toBe(first.localPort);
    } finally {
      await conn.end();
    }
  });
});

describe('a devcluster without weft', () => {
  const bare = uniqueClusterName('svcbare');
  let bareCIDR: string;

  beforeAll(async () => {
    await weftOk(['devcluster', 'up', '--name', bare, '--nodes', '1', '--no-agent']);
    const status = JSON.parse(await weftOk(['devcluster', 'status', '--name', bare, '-o', 'json']));
    bareCIDR = status.networks.nodes;
  });

  afterAll(async () => {
    const procs = recordedProcesses(bare);
    const down = await downCluster(bare, { keepLogs: failures.failed });
    expect(down.code, down.stderr).toBe(0);
    expect(await leftovers(bare, procs, bareCIDR)).toEqual([]);
  });

  it('reaches no ClusterIP (there is no kube-proxy), while the pod IP behind it answers', async () => {
    const bareCore = coreApi(bare);
    await bareCore.createNamespacedPod({
      namespace: NS,
      body: netexecPod('web', `${bare}-control-plane`, { app: 'web' }),
    });
    const svc = await bareCore.createNamespacedService({
      namespace: NS,
      body: clusterIPService('web', { app: 'web' }, HTTP_PORT),
    });
    const ip = svc.spec?.clusterIP ?? '';
    const pod = await waitFor('the pod to be Ready', async () => {
      const p = await bareCore.readNamespacedPod({ name: 'web', namespace: NS });
      return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? p : undefined;
    });
    await waitFor('the Service’s EndpointSlice to list the pod', async () => {
      const out = await kubectl(bare, [
        'get',
        'endpointslices',
        '-l',
        'kubernetes.io/service-name=web',
        '-o',
        'json',
      ]);
      return out.stdout.includes(pod.status?.podIP ?? 'none');
    });
    const run = (host: string, port: number) =>
      podExec(bare, `${NS}/web`, [
        process.execPath,
        '-e',
        HTTP_TRIES,
        JSON.stringify({ host, port, path: '/hostname', n: 1 }),
      ]);
    const direct = await run(pod.status?.podIP ?? '', 8080);
    expect(JSON.parse(direct.stdout)).toEqual([{ body: 'web', peer: `${pod.status?.podIP}:8080` }]);
    // no agent answers on the node
    expect((await weft(['status', '--node', `${bare}-control-plane`])).code).not.toBe(0);
    const viaService = await run(ip, 80);
    const [result] = JSON.parse(viaService.stdout) as Array<{ body?: string; error?: string }>;
    expect(result?.body, JSON.stringify(result)).toBeUndefined();
    expect(result?.error).toMatch(/^(EHOSTUNREACH|ENETUNREACH|ETIMEDOUT)$/);
  });
});
