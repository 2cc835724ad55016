import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { createInterface } from 'node:readline';
import type { CoreV1Api, V1Pod, V1Service } from '@kubernetes/client-node';
import type { ServiceEntry } from '../agent/api/types.js';
import { WeftError } from '../shared/errors.js';
import { weftCommand } from '../shared/self.js';
import { agentGet, resolveAgentSocket } from './agent-client.js';
import { formatTable } from './output.js';

/**
 * `weft demo services` (the default demo): weft replacing kube-proxy on a devcluster. It makes a
 * 2-node cluster (no kube-proxy; one weft agent per node), three agnhost netexec pods behind a
 * NodePort Service with a TCP and a UDP port, and a client pod; then it sends traffic through
 * the Service as pods and an outside client would, shows `weft service list`, deletes one
 * backend and shows new connections avoid it. The cluster is removed at the end (unless --keep),
 * also on error and Ctrl-C.
 */

export const DEMO_CLUSTER = 'weft-demo';
const NAMESPACE = 'default';
const SERVICE = 'echo';
const BACKENDS = ['echo-1', 'echo-2', 'echo-3'];
const REMOVED = 'echo-3';
const CLIENT = 'client';
const AGNHOST = 'registry.k8s.io/e2e-test-images/agnhost:2.53';

export interface Spread {
  requests: number;
  /** Answers per backend pod name. */
  spread: Record<string, number>;
  /** Distinct addresses the answers came from (UDP: the reply's source) or the server saw (clientip). */
  seen: string[];
  failures: string[];
}

export interface ServicesDemoReport {
  cluster: string;
  kept: boolean;
  service: {
    clusterIP: string;
    ports: Array<{ name: string; port: number; protocol: string; nodePort: number }>;
  };
  pods: Array<{ name: string; node: string; ip: string }>;
  weftServiceList: ServiceEntry[];
  rounds: {
    clusterIPTcp: Spread;
    clusterIPUdp: Spread;
    nodePortFromHost: Spread & { target: string };
    afterDelete: Spread & { removed: string; appliedWithinMs: number };
  };
  problems: string[];
}

type Say = (line?: string) => void;

export async function servicesDemo(opts: {
  connections: number;
  keep: boolean;
  say: Say;
}): Promise<ServicesDemoReport> {
  const { say, connections } = opts;
  const { createCluster } = await import('../devcluster/up.js');
  const { teardownCluster } = await import('../devcluster/teardown.js');
  const { recordPaths } = await import('../devcluster/cluster-record.js');
  const k8s = await import('@kubernetes/client-node');

  say('weft demo services: weft replaces kube-proxy on a 2-node devcluster');
  say();
  // A demo cluster left by an earlier demo that was killed goes first: it is ours by name.
  const stale = await teardownCluster(DEMO_CLUSTER);
  if (stale.existed) say(`Removed a "${DEMO_CLUSTER}" cluster left by an earlier demo.`);

  let made = false;
  let cleaned = false;
  const cleanup = async (): Promise<string[]> => {
    if (cleaned || !made || opts.keep) return [];
    cleaned = true;
    say();
    say(`Deleting cluster "${DEMO_CLUSTER}" ...`);
    const report = await teardownCluster(DEMO_CLUSTER);
    return report.errors;
  };
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`\n${signal}: removing the demo cluster...\n`);
    void cleanup().then((errors) => {
      for (const e of errors) process.stderr.write(`warning: cleanup: ${e}\n`);
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    made = true;
    const rec = await createCluster(
      {
        name: DEMO_CLUSTER,
        nodes: 2,
        podCIDR: '10.244.0.0/16',
        serviceCIDR: '10.96.0.0/12',
        waitMs: 120_000,
        retain: false,
        agents: true,
      },
      {
        step: async (title, fn) => {
          const start = performance.now();
          const v = await fn();
          say(` ✓ ${title} (${((performance.now() - start) / 1000).toFixed(1)}s)`);
          return v;
        },
        line: (text) => say(text),
      },
    );
    say();

    const kc = new k8s.KubeConfig();
    kc.loadFromFile(recordPaths(DEMO_CLUSTER).kubeconfig);
    const core = kc.makeApiClient(k8s.CoreV1Api);

    // The workload: what `kubectl apply -f` of a small manifest would create.
    await core.createNamespacedService({ namespace: NAMESPACE, body: serviceManifest() });
    for (const name of BACKENDS)
      await core.createNamespacedPod({ namespace: NAMESPACE, body: backendPod(name) });
    await core.createNamespacedPod({ namespace: NAMESPACE, body: clientPod() });
    const pods = await waitForPodsReady(core, [...BACKENDS, CLIENT]);
    const svc = await core.readNamespacedService({ namespace: NAMESPACE, name: SERVICE });
    const clusterIP = svc.spec?.clusterIP ?? '';
    const ports = (svc.spec?.ports ?? []).map((p) => ({
      name: p.name ?? '',
      port: p.port,
      protocol: p.protocol ?? 'TCP',
      nodePort: p.nodePort ?? 0,
    }));
    const httpPort = ports.find((p) => p.protocol === 'TCP')!;
    const udpPort = ports.find((p) => p.protocol === 'UDP')!;
    const client = pods.find((p) => p.name === CLIENT)!;

    say(`Service ${NAMESPACE}/${SERVICE} (type NodePort) over three agnhost netexec pods, and a client pod:`);
    say();
    say(
      indent(
        formatTable(
          ['SERVICE', 'TYPE', 'CLUSTER-IP', 'PORT(S)'],
          [
            [
              SERVICE,
              'NodePort',
              clusterIP,
              ports.map((p) => `${p.port}:${p.nodePort}/${p.protocol}`).join(','),
            ],
          ],
        ),
      ),
    );
    say();
    say(
      indent(
        formatTable(
          ['POD', 'NODE', 'IP'],
          pods.map((p) => [p.name, p.node, p.ip]),
        ),
      ),
    );
    say();

    // Each node's agent has the Service once its maps hold every backend.
    const nodes = rec.nodes.map((n) => n.name);
    await waitForAgents(
      nodes,
      (list) => backendsOf(list, clusterIP, httpPort.port).length === BACKENDS.length,
    );
    const weftServiceList = await agentGet<ServiceEntry[]>(
      resolveAgentSocket({ node: client.node }),
      '/v1/services',
    );
    say(`$ weft service list --node ${client.node}`);
    say(indent(await weftText(['service', 'list', '--node', client.node])));
    say();

    const url = `http://${clusterIP}:${httpPort.port}/hostname`;
    say(
      `${connections} HTTP requests to ${url} from pod ${CLIENT} (on ${client.node}), each a new connection:`,
    );
    const tcp = await clientRound(
      ['_client', '--host', clusterIP, '--port', String(httpPort.port)],
      connections,
    );
    say(indent(spreadTable(tcp)));
    say(`  getpeername() in the client: ${tcp.seen.join(', ')}`);
    say();

    say(`${connections} UDP datagrams "hostname" to ${clusterIP}:${udpPort.port} from pod ${CLIENT}:`);
    const udp = await clientRound(
      ['_udp-client', '--host', clusterIP, '--port', String(udpPort.port)],
      connections,
    );
    say(indent(spreadTable(udp)));
    say(
      `  replies came from: ${udp.seen.join(', ')} (reverse NAT at recvmsg: the client sees the ClusterIP)`,
    );
    say();

    const other = rec.nodes.find((n) => n.name !== client.node) ?? rec.nodes[0]!;
    const target = `${other.ip}:${httpPort.nodePort}`;
    say(
      `${connections} HTTP requests from this host (outside the cluster) to NodePort ${target} (${other.name}):`,
    );
    const nodePort = await hostRound(other.ip, httpPort.nodePort, connections);
    say(indent(spreadTable(nodePort)));
    say(`  the backends saw the client as: ${nodePort.seen.join(', ')}`);
    say(
      `  (this host is ${rec.plan.bridgeIP}; for a backend on another node the node SNATs to its own address, as kube-proxy does)`,
    );
    say();

    say(`Deleting pod ${REMOVED} (grace period 0) ...`);
    const deletedAt = performance.now();
    await core.deleteNamespacedPod({ namespace: NAMESPACE, name: REMOVED, gracePeriodSeconds: 0 });
    const removedIP = pods.find((p) => p.name === REMOVED)!.ip;
    await waitForAgents(
      nodes,
      (list) => !backendsOf(list, clusterIP, httpPort.port).some((b) => b.address === removedIP),
    );
    const appliedWithinMs = Math.round(performance.now() - deletedAt);
    say(`  every node's agent dropped it from the maps ${appliedWithinMs} ms after the delete`);
    say(`${connections} more HTTP requests to ${url} from pod ${CLIENT}:`);
    const after = await clientRound(
      ['_client', '--host', clusterIP, '--port', String(httpPort.port)],
      connections,
    );
    say(indent(spreadTable(after, REMOVED)));

    const problems: string[] = [];
    const check = (what: string, s: Spread, expected: string[]) => {
      for (const f of s.failures) problems.push(`${what}: ${f}`);
      for (const b of expected) if (!s.spread[b]) problems.push(`${what}: ${b} got no requests`);
    };
    check('ClusterIP TCP', tcp, BACKENDS);
    check('ClusterIP UDP', udp, BACKENDS);
    check('NodePort from the host', nodePort, BACKENDS);
    check(
      'after the delete',
      after,
      BACKENDS.filter((b) => b !== REMOVED),
    );
    if ((after.spread[REMOVED] ?? 0) > 0) problems.push(`${REMOVED} got requests after its deletion`);
    const ownPeer = `${clusterIP}:${httpPort.port}`;
    if (tcp.seen.some((p) => p !== ownPeer)) problems.push(`getpeername showed ${tcp.seen.join(', ')}`);
    if (udp.seen.some((p) => p !== `${clusterIP}:${udpPort.port}`)) {
      problems.push(`UDP replies came from ${udp.seen.join(', ')}, not the ClusterIP`);
    }

    if (opts.keep) {
      const kubeconfig = recordPaths(DEMO_CLUSTER).kubeconfig;
      say();
      say(`The cluster stays (--keep). Try:`);
      say(`  export KUBECONFIG=${kubeconfig}`);
      say(`  kubectl get pods,svc -o wide`);
      say(`  weft devcluster exec --name ${DEMO_CLUSTER} ${NAMESPACE}/${CLIENT} -- curl -s ${url}`);
      say(`  weft service list --node ${client.node}`);
      say(`Delete it with: weft devcluster down --name ${DEMO_CLUSTER}`);
    }
    return {
      cluster: DEMO_CLUSTER,
      kept: opts.keep,
      service: { clusterIP, ports },
      pods,
      weftServiceList,
      rounds: {
        clusterIPTcp: tcp,
        clusterIPUdp: udp,
        nodePortFromHost: { ...nodePort, target },
        afterDelete: { ...after, removed: REMOVED, appliedWithinMs },
      },
      problems,
    };
  } finally {
    const errors = await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    for (const e of errors) process.stderr.write(`warning: cleanup: ${e}\n`);
    if (cleaned && errors.length === 0) {
      say('Removed every namespace, veth, cgroup, BPF pin and process the demo made.');
    }
  }
}

function serviceManifest(): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: SERVICE, labels: { app: SERVICE } },
    spec: {
      type: 'NodePort',
      selector: { app: SERVICE },
      ports: [
        { name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' },
        { name: 'dns', port: 53, targetPort: 'udp', protocol: 'UDP' },
      ],
    },
  };
}

function backendPod(name: string): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { app: SERVICE } },
    spec: {
      containers: [
        {
          name: 'agnhost',
          image: AGNHOST,
          args: ['netexec', '--http-port=8080', '--udp-port=8081'],
          ports: [
            { name: 'http', containerPort: 8080 },
            { name: 'udp', containerPort: 8081, protocol: 'UDP' },
          ],
          readinessProbe: { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 1 },
        },
      ],
    },
  };
}

function clientPod(): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: CLIENT },
    spec: { containers: [{ name: 'agnhost', image: AGNHOST, args: ['pause'] }] },
  };
}

async function waitForPodsReady(
  core: CoreV1Api,
  names: string[],
): Promise<Array<{ name: string; node: string; ip: string }>> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const list = await core.listNamespacedPod({ namespace: NAMESPACE });
    const ready = list.items.filter(
      (p) =>
        names.includes(p.metadata?.name ?? '') &&
        p.status?.podIP &&
        p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
    );
    if (ready.length === names.length) {
      return names.map((n) => {
        const p = ready.find((r) => r.metadata?.name === n)!;
        return { name: n, node: p.spec?.nodeName ?? '', ip: p.status?.podIP ?? '' };
      });
    }
    if (Date.now() > deadline) {
      const notReady = names.filter((n) => !ready.some((r) => r.metadata?.name === n));
      throw new WeftError('WEFT_ERR_DEMO', `pods not Ready after 60s: ${notReady.join(', ')}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

function backendsOf(list: ServiceEntry[], address: string, port: number) {
  return list
    .filter((s) => s.frontend.address === address && s.frontend.port === port && s.type === 'ClusterIP')
    .flatMap((s) => s.backends);
}

async function waitForAgents(nodes: string[], done: (list: ServiceEntry[]) => boolean): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (const node of nodes) {
    for (;;) {
      const list = await agentGet<ServiceEntry[]>(resolveAgentSocket({ node }), '/v1/services', 5_000).catch(
        () => [],
      );
      if (done(list)) break;
      if (Date.now() > deadline) {
        throw new WeftError(
          'WEFT_ERR_DEMO',
          `the weft agent on ${node} did not program the Service within 30s`,
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** `weft <args>`'s stdout, as a user would see it. */
function weftText(args: string[]): Promise<string> {
  const [node, main] = weftCommand();
  return new Promise((resolve, reject) => {
    const child = spawn(node, [main, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      out += c;
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      err += c;
    });
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0
        ? resolve(out.trimEnd())
        : reject(new WeftError('WEFT_ERR_DEMO', `weft ${args.join(' ')} failed: ${err.trim()}`)),
    );
  });
}

/** Runs `weft demo <role> ... --count N` inside the client pod with `weft devcluster exec`. */
async function clientRound(roleArgs: string[], count: number): Promise<Spread> {
  const [node, main] = weftCommand();
  const child = spawn(
    node,
    [
      main,
      'devcluster',
      'exec',
      '--name',
      DEMO_CLUSTER,
      `${NAMESPACE}/${CLIENT}`,
      '--',
      node,
      main,
      'demo',
      ...roleArgs,
      '--path',
      '/hostname',
      '--count',
      String(count),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
  });
  const round: Spread = { requests: count, spread: {}, seen: [], failures: [] };
  for await (const line of createInterface({ input: child.stdout })) {
    const r = JSON.parse(line) as { backend?: string; peer?: string; error?: string };
    tally(round, r.backend, r.peer, r.error);
  }
  const code = await new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once('exit', (c) => resolve(c));
  });
  if (code !== 0) throw new WeftError('WEFT_ERR_DEMO', `the client exited with ${code}: ${stderr.trim()}`);
  return round;
}

/** From this host, as an external client: /hostname for the spread, /clientip for the source seen. */
async function hostRound(host: string, port: number, count: number): Promise<Spread> {
  const round: Spread = { requests: count, spread: {}, seen: [], failures: [] };
  for (let i = 0; i < count; i++) {
    try {
      const name = await httpText(host, port, '/hostname');
      const client = await httpText(host, port, '/clientip');
      tally(round, name, client.replace(/:\d+$/, ''));
    } catch (err) {
      tally(round, undefined, undefined, (err as NodeJS.ErrnoException).code ?? (err as Error).message);
    }
  }
  return round;
}

function httpText(host: string, port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, agent: false, timeout: 3_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve(body.trim()));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
    req.end();
  });
}

function tally(round: Spread, backend?: string, seen?: string, error?: string): void {
  if (error !== undefined || backend === undefined) {
    round.failures.push(error ?? 'no answer');
    return;
  }
  round.spread[backend] = (round.spread[backend] ?? 0) + 1;
  if (seen && !round.seen.includes(seen)) round.seen.push(seen);
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
}

function spreadTable(round: Spread, removed?: string): string {
  const rows = BACKENDS.map((b) => {
    const n = round.spread[b] ?? 0;
    const note = b === removed ? '  (deleted)' : '';
    return [b, String(n), `${'#'.repeat(n)}${note}`];
  });
  if (round.failures.length > 0)
    rows.push(['failed', String(round.failures.length), round.failures[0] ?? '']);
  return formatTable(['BACKEND', 'ANSWERS', ''], rows);
}
