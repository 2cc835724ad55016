import type { CoreV1Api, V1Pod, V1Service } from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { LbServiceFlag } from '../../src/datapath/lbmap.js';
import { addressAt, cidrContains, cidrSize, formatIPv4, parseCidr } from '../../src/devcluster/ipv4.js';
import { bridgeName, isHostLinkOf } from '../../src/devcluster/naming.js';
import {
  coreApi,
  type RunResult,
  run,
  uniqueClusterName,
  waitFor,
  weftOk,
  AGNHOST,
  removeClusterAfterAll,
  podExec,
} from './devcluster-harness.js';

/**
 * Services that clients outside the cluster reach — NodePort, externalIPs, LoadBalancer — and
 * the two traffic policies, on one 2-node devcluster with its weft agents, as a user sees them:
 * agnhost netexec answers /hostname and /clientip (HTTP) and `hostname` / `clientip` (UDP).
 *
 * Clients: a pod on each node (the socket LB), the host (it holds the bridge's address, so it
 * is an external client of the node IPs), and an "external" network namespace this file makes,
 * with a veth into the cluster's bridge, an address on the node network and routes for the
 * externalIPs and LoadBalancer IPs via a node IP — in that namespace only, as a router in front
 * of a real cluster would have them.
 */

const cluster = uniqueClusterName('svcext');
const cp = `${cluster}-control-plane`;
const worker = `${cluster}-worker`;
/** The external client's namespace and the host side of its veth (`down` would remove it too). */
const extNetns = `${cluster}-ext`;
const extLink = `${bridgeName(cluster)}v200`;

let core: CoreV1Api;
let nodeCIDR: string;
const nodeIP: Record<string, string> = {};
let hostIP: string;
let extIP: string;
/** [via control-plane, via worker]: addresses without any route on the host or in the plan. */
const externalIPs: [string, string] = ['', ''];
const lbIPs: [string, string] = ['', ''];
const podIP: Record<string, string> = {};

const backends = { 'web-cp-1': 'cp', 'web-cp-2': 'cp', 'web-w-1': 'w' } as const;
const allBackends = Object.keys(backends).sort();
const cpBackends = ['web-cp-1', 'web-cp-2'];
const wBackends = ['web-w-1'];

function webPod(name: keyof typeof backends): V1Pod {
  const onCP = backends[name] === 'cp';
  return {
    metadata: { name, labels: { app: 'web', tier: onCP ? 'cp' : 'w' } },
    spec: {
      nodeName: onCP ? cp : worker,
      containers: [
        {
          name: 'agnhost',
          image: AGNHOST,
          args: ['netexec', '--http-port=8080', '--udp-port=8081'],
          readinessProbe: { httpGet: { path: '/healthz', port: 8080 as never }, periodSeconds: 1 },
        },
      ],
    },
  };
}

function clientPod(name: string, node: string): V1Pod {
  return {
    metadata: { name, labels: { app: 'client' } },
    spec: { nodeName: node, containers: [{ name: 'pause', image: AGNHOST, args: ['pause'] }] },
  };
}

type Ports = Array<{ name: string; port: number; targetPort: number; protocol: 'TCP' | 'UDP' }>;
const httpAndUdp: Ports = [
  { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' },
  { name: 'udp', port: 81, targetPort: 8081, protocol: 'UDP' },
];

function service(
  name: string,
  spec: Omit<V1Service['spec'] & object, 'ports'> & { ports?: Ports },
): V1Service {
  return {
    metadata: { name },
    spec: { selector: { app: 'web' }, ports: httpAndUdp as never, ...spec } as V1Service['spec'],
  };
}

/**
 * The client every probe runs (in a pod, in the external namespace or on the host): `n`
 * exchanges, each on a new connection (TCP) or a new connected socket (UDP), each asking the
 * backend for its hostname and then, on the same connection, for the client address it sees.
 * Prints [{host, client} | {err}] as JSON. HTTP is pipelined by hand on one socket so that both
 * answers come from one backend.
 */
const PROBE = `
const net = require('node:net'), dgram = require('node:dgram');
const a = JSON.parse(process.argv[1]);
function tcp() {
  return new Promise((resolve) => {
    const s = net.connect({ host: a.host, port: a.port });
    let buf = '';
    const done = (r) => { clearTimeout(t); s.destroy(); resolve(r); };
    const t = setTimeout(() => done({ err: 'TIMEOUT' }), a.timeoutMs);
    s.on('connect', () => s.write('GET /hostname HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nGET /clientip HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n'));
    s.on('data', (d) => { buf += d; });
    s.on('error', (e) => done({ err: e.code || e.message }));
    s.on('end', () => {
      const bodies = [];
      let rest = buf;
      while (rest.length > 0) {
        const h = rest.indexOf('\\r\\n\\r\\n');
        if (h < 0) break;
        const len = Number(/content-length: *(\\d+)/i.exec(rest.slice(0, h))?.[1] ?? 0);
        bodies.push(rest.slice(h + 4, h + 4 + len));
        rest = rest.slice(h + 4 + len);
      }
      done(bodies.length === 2 ? { host: bodies[0], client: bodies[1] } : { err: 'BAD_REPLY ' + JSON.stringify(buf) });
    });
  });
}
function udp() {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const replies = [];
    const done = (r) => { clearTimeout(t); s.close(); resolve(r); };
    const t = setTimeout(() => done({ err: 'TIMEOUT' }), a.timeoutMs);
    s.on('error', (e) => done({ err: e.code || e.message }));
    s.on('message', (m) => {
      replies.push(String(m).trim());
      if (replies.length === 1) s.send('clientip');
      else done({ host: replies[0], client: replies[1] });
    });
    s.connect(a.port, a.host, (err) => (err ? done({ err: err.code || err.message }) : s.send('hostname')));
  });
}
(async () => {
  const out = [];
  for (let i = 0; i < a.n; i++) out.push(await (a.proto === 'tcp' ? tcp() : udp()));
  process.stdout.write(JSON.stringify(out));
})();
`;

type Where = { pod: string } | { netns: string } | 'host';
type Proto = 'tcp' | 'udp';
interface Exchange {
  host?: string;
  client?: string;
  err?: string;
}
interface Seen {
  /** Backend → the client addresses (without port) it reported. */
  clients: Map<string, Set<string>>;
  exchanges: number;
}

function describeWhere(where: Where): string {
  return where === 'host' ? 'the host' : 'pod' in where ? `pod ${where.pod}` : `netns ${where.netns}`;
}

async function probeOnce(
  where: Where,
  proto: Proto,
  host: string,
  port: number,
  n: number,
): Promise<Exchange[]> {
  const arg = JSON.stringify({ proto, host, port, n, timeoutMs: 4000 });
  let r: RunResult;
  if (where === 'host') r = await run(process.execPath, ['-e', PROBE, arg]);
  else if ('pod' in where) r = await podExec(cluster, where.pod, [process.execPath, '-e', PROBE, arg]);
  else r = await run('ip', ['netns', 'exec', where.netns, process.execPath, '-e', PROBE, arg]);
  if (r.code !== 0) throw new Error(`probe from ${describeWhere(where)} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Exchange[];
}

/**
 * Exchanges with `host:port` until every backend in `want` has answered (at least `min`
 * exchanges); fails at once on any error, and by deadline when a wanted backend never answers.
 */
async function reach(
  where: Where,
  proto: Proto,
  host: string,
  port: number,
  want: readonly string[],
  min = 12,
): Promise<Seen> {
  const seen: Seen = { clients: new Map(), exchanges: 0 };
  let failed: string | undefined;
  const answered = () =>
    `; answered so far: ${JSON.stringify(clientsOf(seen))} in ${seen.exchanges} exchanges`;
  await waitFor(
    `${want.join(', ')} to answer ${proto} ${host}:${port} from ${describeWhere(where)}`,
    async () => {
      const batch = await probeOnce(where, proto, host, port, 6);
      for (const e of batch) {
        if (e.err || !e.host || !e.client) {
          // Not retried: once a Service is programmed, every exchange must succeed.
          failed = `${proto} ${host}:${port} from ${describeWhere(where)} failed: ${JSON.stringify(e)}`;
          return true;
        }
        const client = e.client.replace(/:\d+$/, '');
        if (!seen.clients.has(e.host)) seen.clients.set(e.host, new Set());
        seen.clients.get(e.host)?.add(client);
      }
      seen.exchanges += batch.length;
      return seen.exchanges >= min && want.every((b) => seen.clients.has(b));
    },
    30_000,
  ).catch((err: Error) => {
    throw new Error(err.message + answered());
  });
  if (failed) throw new Error(failed + answered());
  return seen;
}

function backendsOf(seen: Seen): string[] {
  return [...seen.clients.keys()].sort();
}

/** Backend → client addresses, as sorted plain data for toEqual. */
function clientsOf(seen: Seen): Record<string, string[]> {
  return Object.fromEntries([...seen.clients].map(([b, c]) => [b, [...c].sort()]));
}

/**
 * The client address each backend sees when an external client's flow enters at `entryNode`:
 * backends on that node see the client's own address, the others the entry node's (SNAT).
 */
function expectedClients(
  client: string,
  entryNode: 'cp' | 'w',
  want: readonly string[],
): Record<string, string[]> {
  const entryIP = entryNode === 'cp' ? nodeIP[cp] : nodeIP[worker];
  return Object.fromEntries(
    want.map((b) => [b, [backends[b as keyof typeof backends] === entryNode ? client : entryIP] as string[]]),
  );
}

/** One exchange that must fail; returns its error code. */
async function refused(where: Where, proto: Proto, host: string, port: number): Promise<string | undefined> {
  const [e] = await probeOnce(where, proto, host, port, 1);
  return e?.err;
}

async function nodePortOf(name: string, portName: string): Promise<number> {
  const svc = await core.readNamespacedService({ name, namespace: 'default' });
  const p = svc.spec?.ports?.find((x) => x.name === portName)?.nodePort;
  if (!p) throw new Error(`service ${name} has no nodePort for ${portName}`);
  return p;
}

async function clusterIPOf(name: string): Promise<string> {
  const ip = (await core.readNamespacedService({ name, namespace: 'default' })).spec?.clusterIP;
  if (!ip) throw new Error(`service ${name} has no clusterIP`);
  return ip;
}

interface ServiceListEntry {
  frontend: { address: string; port: number; protocol: string };
  type: string;
  service: { namespace: string; name: string };
  trafficPolicy: { external: string; internal: string };
  backends: Array<{ address: string }>;
  internalBackends?: Array<{ address: string }>;
  sourceRanges?: string[];
}

async function serviceList(node: string): Promise<ServiceListEntry[]> {
  return JSON.parse(await weftOk(['service', 'list', '--node', node, '-o', 'json'])) as ServiceListEntry[];
}

async function sh(file: string, args: string[]): Promise<string> {
  const r = await run(file, args);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/**
 * Addresses for externalIPs and LoadBalancer ingress: from the documentation ranges, none
 * covered by a host route other than the default one (in any table), nor by the cluster's plan.
 */
async function freeExternalAddresses(plan: {
  nodes: string;
  pods: string;
  services: string;
}): Promise<string[]> {
  const routes = (await sh('ip', ['-4', '-j', 'route', 'show', 'table', 'all'])) || '[]';
  const prefixes = (JSON.parse(routes) as Array<{ dst: string }>)
    .map((r) => r.dst)
    .filter((d) => d && d !== 'default' && /^\d/.test(d))
    .map((d) => parseCidr(d.includes('/') ? d : `${d}/32`));
  const taken = [...prefixes, parseCidr(plan.nodes), parseCidr(plan.pods), parseCidr(plan.services)];
  for (const block of ['203.0.113.0/24', '198.51.100.0/24', '198.18.0.0/24']) {
    const b = parseCidr(block);
    const free = [10, 11, 20, 21]
      .map((i) => addressAt(b, i))
      .filter((a) => !taken.some((t) => cidrContains(t, a)))
      .map(formatIPv4);
    if (free.length === 4) return free;
  }
  throw new Error('no documentation range is free of host routes for externalIPs');
}

async function readyPod(name: string): Promise<V1Pod> {
  return waitFor(
    `pod ${name} to be Ready`,
    async () => {
      const p = await core.readNamespacedPod({ name, namespace: 'default' });
      return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? p : undefined;
    },
    90_000,
  );
}

/** Both agents have programmed `svc`: every frontend on every node lists `count` backends (EXT scope). */
async function programmed(name: string, check: (entries: ServiceListEntry[], node: string) => boolean) {
  for (const node of [cp, worker]) {
    await waitFor(`${name} programmed on ${node}`, async () => {
      const entries = (await serviceList(node)).filter((e) => e.service.name === name);
      return entries.length > 0 && check(entries, node);
    });
  }
}

const nodePorts: Record<string, number> = {};

beforeAll(async () => {
  await weftOk(['devcluster', 'up', '--name', cluster, '--nodes', '2']);
  core = coreApi(cluster);
  const status = JSON.parse(await weftOk(['devcluster', 'status', '--name', cluster, '-o', 'json']));
  nodeCIDR = status.networks.nodes;
  hostIP = status.networks.bridgeIP;
  for (const n of status.nodes as Array<{ name: string; internalIP: string }>) nodeIP[n.name] = n.internalIP;
  const [eip1, eip2, lb1, lb2] = await freeExternalAddresses(status.networks);
  externalIPs.splice(0, 2, eip1 ?? '', eip2 ?? '');
  lbIPs.splice(0, 2, lb1 ?? '', lb2 ?? '');

  // The external client: the last address of the node network (nodes count up from .2).
  const nodes = parseCidr(nodeCIDR);
  extIP = formatIPv4(addressAt(nodes, cidrSize(nodes) - 2));
  expect([hostIP, ...Object.values(nodeIP)]).not.toContain(extIP);
  expect(isHostLinkOf(cluster, extLink)).toBe(true);
  await sh('ip', ['netns', 'add', extNetns]);
  await sh('ip', ['link', 'add', extLink, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', extNetns]);
  await sh('ip', ['link', 'set', extLink, 'master', status.networks.bridge, 'up']);
  const inExt = (...args: string[]) => sh('ip', ['-n', extNetns, ...args]);
  await inExt('link', 'set', 'lo', 'up');
  await inExt('addr', 'add', `${extIP}/${nodes.prefix}`, 'dev', 'eth0');
  await inExt('link', 'set', 'eth0', 'up');
  await inExt('route', 'add', `${externalIPs[0]}/32`, 'via', nodeIP[cp] ?? '');
  await inExt('route', 'add', `${externalIPs[1]}/32`, 'via', nodeIP[worker] ?? '');
  await inExt('route', 'add', `${lbIPs[0]}/32`, 'via', nodeIP[cp] ?? '');
  await inExt('route', 'add', `${lbIPs[1]}/32`, 'via', nodeIP[worker] ?? '');

  for (const name of Object.keys(backends) as Array<keyof typeof backends>) {
    await core.createNamespacedPod({ namespace: 'default', body: webPod(name) });
  }
  await core.createNamespacedPod({ namespace: 'default', body: clientPod('client-cp', cp) });
  await core.createNamespacedPod({ namespace: 'default', body: clientPod('client-w', worker) });

  const services: V1Service[] = [
    service('np', { type: 'NodePort' }),
    service('eip', { type: 'ClusterIP', externalIPs: [...externalIPs] }),
    service('lb', { type: 'LoadBalancer' }),
    service('etp-local', { type: 'NodePort', externalTrafficPolicy: 'Local' }),
    service('etp-local-cp', { type: 'NodePort', externalTrafficPolicy: 'Local', selector: { tier: 'cp' } }),
    service('itp-local', { type: 'NodePort', internalTrafficPolicy: 'Local' }),
    service('itp-local-cp', { type: 'ClusterIP', internalTrafficPolicy: 'Local', selector: { tier: 'cp' } }),
  ];
  for (const body of services) await core.createNamespacedService({ namespace: 'default', body });
  // As a cloud controller or MetalLB does: the ingress IPs go into the status subresource.
  const lb = await core.readNamespacedService({ name: 'lb', namespace: 'default' });
  lb.status = { loadBalancer: { ingress: lbIPs.map((ip) => ({ ip })) } };
  await core.replaceNamespacedServiceStatus({ name: 'lb', namespace: 'default', body: lb });

  for (const name of [...Object.keys(backends), 'client-cp', 'client-w']) {
    podIP[name] = (await readyPod(name)).status?.podIP ?? '';
  }
  for (const s of services) {
    const name = s.metadata?.name ?? '';
    for (const p of ['http', 'udp']) {
      if (s.spec?.type !== 'ClusterIP') nodePorts[`${name}/${p}`] = await nodePortOf(name, p);
    }
    const endpoints = s.spec?.selector?.tier === 'cp' ? 2 : 3;
    // Every frontend lists every endpoint in one of its scopes (a ClusterIP with
    // internalTrafficPolicy Local has only the node's own).
    await programmed(name, (entries) =>
      entries.every(
        (e) =>
          (e.type === 'ClusterIP' && e.trafficPolicy.internal === 'Local') ||
          new Set([...e.backends, ...(e.internalBackends ?? [])].map((b) => b.address)).size === endpoints,
      ),
    );
  }
  await programmed('lb', (entries) => entries.filter((e) => e.type === 'LoadBalancer').length === 4);
}, 240_000);

removeClusterAfterAll(cluster, {
  nodeCIDR: () => nodeCIDR,
  // Ours, not the cluster's: the external namespace (its veth goes with it).
  before: () => run('ip', ['netns', 'del', extNetns]),
  after: async () => {
    expect((await run('ip', ['netns', 'list'])).stdout).not.toContain(extNetns);
    expect((await run('ip', ['link', 'show', extLink])).code).not.toBe(0);
  },
  timeoutMs: 120_000,
});

describe('NodePort (externalTrafficPolicy Cluster)', () => {
  it.each(['tcp', 'udp'] as const)(
    '%s: a pod reaches its own node’s NodePort; every backend answers and sees the pod’s address',
    async (proto) => {
      const port = nodePorts[`np/${proto === 'tcp' ? 'http' : 'udp'}`] ?? 0;
      const seen = await reach({ pod: 'client-cp' }, proto, nodeIP[cp] ?? '', port, allBackends);
      expect(backendsOf(seen)).toEqual(allBackends);
      expect(clientsOf(seen)).toEqual(Object.fromEntries(allBackends.map((b) => [b, [podIP['client-cp']]])));
    },
  );

  it.each(['tcp', 'udp'] as const)(
    '%s: a pod on the other node reaches the NodePort via both node IPs; every backend answers',
    async (proto) => {
      const port = nodePorts[`np/${proto === 'tcp' ? 'http' : 'udp'}`] ?? 0;
      for (const node of [worker, cp]) {
        const seen = await reach({ pod: 'client-w' }, proto, nodeIP[node] ?? '', port, allBackends);
        expect(backendsOf(seen), `via ${node}`).toEqual(allBackends);
      }
      // Through its own node the socket LB connects the pod straight to the backend: no NAT.
      const own = await reach({ pod: 'client-w' }, proto, nodeIP[worker] ?? '', port, allBackends);
      expect(clientsOf(own)).toEqual(Object.fromEntries(allBackends.map((b) => [b, [podIP['client-w']]])));
    },
  );

  it.each(['tcp', 'udp'] as const)(
    '%s: the host, an external client, reaches the NodePort on either node IP; local backends see its address, remote ones the node’s',
    async (proto) => {
      const port = nodePorts[`np/${proto === 'tcp' ? 'http' : 'udp'}`] ?? 0;
      for (const [node, entry] of [
        [cp, 'cp'],
        [worker, 'w'],
      ] as const) {
        const seen = await reach('host', proto, nodeIP[node] ?? '', port, allBackends);
        expect(clientsOf(seen), `via ${node}`).toEqual(expectedClients(hostIP, entry, allBackends));
      }
    },
  );
});

describe('externalIPs and LoadBalancer ingress IPs', () => {
  const cases = [
    ['externalIP', 'eip', () => externalIPs],
    ['LoadBalancer ingress IP', 'lb', () => lbIPs],
  ] as const;

  it.each(cases)(
    '%s: pods on both nodes reach it over TCP and UDP (socket LB): every backend, the pod’s own address',
    async (_kind, _svc, ips) => {
      for (const client of ['client-cp', 'client-w']) {
        for (const proto of ['tcp', 'udp'] as const) {
          const seen = await reach({ pod: client }, proto, ips()[0], proto === 'tcp' ? 80 : 81, allBackends);
          expect(clientsOf(seen), `${client} ${proto}`).toEqual(
            Object.fromEntries(allBackends.map((b) => [b, [podIP[client]]])),
          );
        }
      }
    },
  );

  it.each(cases)(
    '%s: an external client routed via either node reaches it over TCP and UDP: every backend; local ones see the client’s address',
    async (_kind, _svc, ips) => {
      for (const [i, entry] of [
        [0, 'cp'],
        [1, 'w'],
      ] as const) {
        for (const proto of ['tcp', 'udp'] as const) {
          const ip = ips()[i];
          const seen = await reach({ netns: extNetns }, proto, ip, proto === 'tcp' ? 80 : 81, allBackends);
          expect(clientsOf(seen), `${ip} via ${entry} ${proto}`).toEqual(
            expectedClients(extIP, entry, allBackends),
          );
        }
      }
    },
  );
});

describe('externalTrafficPolicy Local', () => {
  it.each(['tcp', 'udp'] as const)(
    '%s: an external client gets only the entry node’s endpoints, and they see its own address',
    async (proto) => {
      const port = nodePorts[`etp-local/${proto === 'tcp' ? 'http' : 'udp'}`] ?? 0;
      const viaCP = await reach({ netns: extNetns }, proto, nodeIP[cp] ?? '', port, cpBackends, 18);
      expect(clientsOf(viaCP)).toEqual(Object.fromEntries(cpBackends.map((b) => [b, [extIP]])));
      const viaW = await reach({ netns: extNetns }, proto, nodeIP[worker] ?? '', port, wBackends, 18);
      expect(clientsOf(viaW)).toEqual({ 'web-w-1': [extIP] });
    },
  );

  it.each(['tcp', 'udp'] as const)(
    '%s: a node without local endpoints refuses at once (ECONNREFUSED: Cilium’s default service-no-backend-response=reject; kube-proxy would drop)',
    async (proto) => {
      const port = nodePorts[`etp-local-cp/${proto === 'tcp' ? 'http' : 'udp'}`] ?? 0;
      expect(await refused({ netns: extNetns }, proto, nodeIP[worker] ?? '', port)).toBe('ECONNREFUSED');
      expect(await refused('host', proto, nodeIP[worker] ?? '', port)).toBe('ECONNREFUSED');
      // The node with the endpoints serves them, with the client's address.
      const seen = await reach({ netns: extNetns }, proto, nodeIP[cp] ?? '', port, cpBackends);
      expect(clientsOf(seen)).toEqual(Object.fromEntries(cpBackends.map((b) => [b, [extIP]])));
    },
  );

  it('does not apply to in-cluster clients: a pod reaches every endpoint through its own node’s NodePort', async () => {
    const port = nodePorts['etp-local-cp/http'] ?? 0;
    const seen = await reach({ pod: 'client-w' }, 'tcp', nodeIP[worker] ?? '', port, cpBackends);
    expect(backendsOf(seen)).toEqual(cpBackends);
    const all = await reach(
      { pod: 'client-w' },
      'tcp',
      nodeIP[worker] ?? '',
      nodePorts['etp-local/http'] ?? 0,
      allBackends,
    );
    expect(backendsOf(all)).toEqual(allBackends);
  });
});

describe('internalTrafficPolicy Local', () => {
  it('a pod gets only its own node’s endpoints, over TCP and UDP', async () => {
    const ip = await clusterIPOf('itp-local');
    for (const [client, want] of [
      ['client-cp', cpBackends],
      ['client-w', wBackends],
    ] as const) {
      for (const proto of ['tcp', 'udp'] as const) {
        const seen = await reach({ pod: client }, proto, ip, proto === 'tcp' ? 80 : 81, want, 18);
        expect(clientsOf(seen), `${client} ${proto}`).toEqual(
          Object.fromEntries(want.map((b) => [b, [podIP[client]]])),
        );
      }
    }
  });

  it('a pod on a node without local endpoints cannot connect (ECONNREFUSED at once), while the other node’s pod can', async () => {
    const ip = await clusterIPOf('itp-local-cp');
    expect(await refused({ pod: 'client-w' }, 'tcp', ip, 80)).toBe('ECONNREFUSED');
    expect(await refused({ pod: 'client-w' }, 'udp', ip, 81)).toBe('ECONNREFUSED');
    const seen = await reach({ pod: 'client-cp' }, 'tcp', ip, 80, cpBackends);
    expect(backendsOf(seen)).toEqual(cpBackends);
  });

  it('does not apply to external clients: the NodePort of the same Service serves every endpoint', async () => {
    const seen = await reach(
      { netns: extNetns },
      'tcp',
      nodeIP[worker] ?? '',
      nodePorts['itp-local/http'] ?? 0,
      allBackends,
    );
    expect(clientsOf(seen)).toEqual(expectedClients(extIP, 'w', allBackends));
  });
});

describe('what the agents show', () => {
  it('a node’s NodePort frontends are on its own addresses only, in the maps and in weft service list', async () => {
    for (const node of [cp, worker]) {
      const maps = JSON.parse(await weftOk(['bpf', 'lb', 'list', '--node', node, '-o', 'json'])) as {
        services: Array<{ key: { address: string; port: number; slot: number }; value: { flags: number } }>;
      };
      const nodePortAddresses = new Set(
        maps.services
          .filter((s) => s.key.slot === 0 && (s.value.flags & LbServiceFlag.nodePort) !== 0)
          .map((s) => s.key.address),
      );
      expect([...nodePortAddresses], node).toEqual([nodeIP[node]]);
      const listed = new Set(
        (await serviceList(node)).filter((e) => e.type === 'NodePort').map((e) => e.frontend.address),
      );
      expect([...listed], node).toEqual([nodeIP[node]]);
    }
  });

  it('weft service list shows NodePort, ExternalIP and LoadBalancer frontends with their types and policies', async () => {
    const entries = await serviceList(cp);
    const rows = entries
      .filter((e) => e.service.name !== 'kubernetes' && e.frontend.protocol === 'TCP')
      .map(
        (e) =>
          `${e.service.name} ${e.type} ${e.frontend.address}:${e.frontend.port} eTP=${e.trafficPolicy.external} iTP=${e.trafficPolicy.internal}`,
      )
      .filter((r) => !r.includes(' ClusterIP '))
      .sort();
    expect(rows).toEqual(
      [
        `eip ExternalIP ${externalIPs[0]}:80 eTP=Cluster iTP=Cluster`,
        `eip ExternalIP ${externalIPs[1]}:80 eTP=Cluster iTP=Cluster`,
        `etp-local NodePort ${nodeIP[cp]}:${nodePorts['etp-local/http']} eTP=Local iTP=Cluster`,
        `etp-local-cp NodePort ${nodeIP[cp]}:${nodePorts['etp-local-cp/http']} eTP=Local iTP=Cluster`,
        `itp-local NodePort ${nodeIP[cp]}:${nodePorts['itp-local/http']} eTP=Cluster iTP=Local`,
        `lb LoadBalancer ${lbIPs[0]}:80 eTP=Cluster iTP=Cluster`,
        `lb LoadBalancer ${lbIPs[1]}:80 eTP=Cluster iTP=Cluster`,
        `lb NodePort ${nodeIP[cp]}:${nodePorts['lb/http']} eTP=Cluster iTP=Cluster`,
        `np NodePort ${nodeIP[cp]}:${nodePorts['np/http']} eTP=Cluster iTP=Cluster`,
      ].sort(),
    );
    const table = await weftOk(['service', 'list', '--node', cp]);
    expect(table).toMatch(new RegExp(`${externalIPs[0]}:80/TCP\\s+ExternalIP\\s`));
    expect(table).toMatch(new RegExp(`${lbIPs[0]}:80/TCP\\s+LoadBalancer\\s`));
    expect(table).toMatch(new RegExp(`${nodeIP[cp]}:${nodePorts['np/http']}/TCP\\s+NodePort\\s`));
    expect(table).toMatch(
      new RegExp(`${nodeIP[cp]}:${nodePorts['etp-local/http']}/TCP\\s+NodePort, eTP=Local`),
    );
  });
});

describe('loadBalancerSourceRanges', () => {
  /** Sets the lb Service's ranges and waits until both agents carry them on its LoadBalancer frontends. */
  async function limit(ranges: string[]): Promise<void> {
    const lb = await core.readNamespacedService({ name: 'lb', namespace: 'default' });
    lb.spec = { ...lb.spec, loadBalancerSourceRanges: ranges };
    await core.replaceNamespacedService({ name: 'lb', namespace: 'default', body: lb });
    await programmed('lb', (entries) =>
      entries
        .filter((e) => e.type === 'LoadBalancer')
        .every((e) => JSON.stringify(e.sourceRanges ?? []) === JSON.stringify(ranges)),
    );
  }

  it('an external client inside the ranges gets through; outside them its new flows get no answer; without ranges everyone does', async () => {
    await limit([`${extIP}/32`]);
    for (const ip of lbIPs) {
      const seen = await reach({ netns: extNetns }, 'tcp', ip, 80, allBackends);
      expect(backendsOf(seen), `via ${ip}`).toEqual(allBackends);
    }
    const table = await weftOk(['service', 'list', '--node', cp]);
    expect(table).toMatch(new RegExp(`${lbIPs[0]}:80/TCP\\s+LoadBalancer, sourceRanges=${extIP}/32\\s`));

    await limit([`${hostIP}/32`]);
    for (const ip of lbIPs) {
      expect(await refused({ netns: extNetns }, 'tcp', ip, 80), `via ${ip}`).toBe('TIMEOUT');
      expect(await refused({ netns: extNetns }, 'udp', ip, 81), `via ${ip}`).toBe('TIMEOUT');
    }
    // The Service's other frontends are not limited: the same client reaches its NodePort.
    const np = await reach(
      { netns: extNetns },
      'tcp',
      nodeIP[cp] ?? '',
      nodePorts['lb/http'] ?? 0,
      allBackends,
    );
    expect(backendsOf(np)).toEqual(allBackends);

    await limit([]);
    const open = await reach({ netns: extNetns }, 'tcp', lbIPs[0], 80, allBackends);
    expect(backendsOf(open)).toEqual(allBackends);
  });
});

// Last: it changes the LoadBalancer's status that the tests above rely on.
describe('a LoadBalancer whose ingress IP is withdrawn', () => {
  it('an external client gets no answer on an IP the Service no longer lists (the frontend is gone)', async () => {
    // The LoadBalancer loses its second ingress IP, as when MetalLB withdraws it.
    const lb = await core.readNamespacedService({ name: 'lb', namespace: 'default' });
    lb.status = { loadBalancer: { ingress: [{ ip: lbIPs[0] }] } };
    await core.replaceNamespacedServiceStatus({ name: 'lb', namespace: 'default', body: lb });
    await programmed('lb', (entries) => !entries.some((e) => e.frontend.address === lbIPs[1]));
    // The worker now routes the packet like any other: nodes have no default route.
    expect(await refused({ netns: extNetns }, 'tcp', lbIPs[1], 80)).toMatch(
      /EHOSTUNREACH|ENETUNREACH|TIMEOUT/,
    );
    const seen = await reach({ netns: extNetns }, 'tcp', lbIPs[0], 80, allBackends);
    expect(backendsOf(seen)).toEqual(allBackends);
  });
});
