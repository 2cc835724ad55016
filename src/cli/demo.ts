import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { createServer, get as httpGet } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { attachCgroup, type BpfLink } from '../datapath/cgroup.js';
import { cgroup2Root, checkKernel, checkPrivileges, ensureBpffs } from '../datapath/environment.js';
import {
  type LbBackend,
  type LbFrontend,
  LbMaps,
  type SockLbStat,
  sockLbPrograms,
} from '../datapath/lbmap.js';
import { BpfObject } from '../datapath/object.js';
import { netnsPath, sandboxArgv } from '../devcluster/sandbox-exec.js';
import { WeftError } from '../shared/errors.js';
import { bpfObjectPath, weftCommand } from '../shared/self.js';
import { DEMO_CLUSTER, servicesDemo } from './demo-services.js';
import { formatTable, parseOutputFormat, printJson } from './output.js';

/**
 * `weft demo [socket-lb]`: socket load-balancing, live, on this machine. It builds a small
 * sandbox (a network namespace and a cgroup), loads sock_lb.bpf.o onto the cgroup, starts
 * three HTTP backends and puts a fake ClusterIP in front of them, then has a client inside the
 * cgroup connect to the ClusterIP and shows where the connections went. Everything it made is
 * removed at the end, on error and on Ctrl-C.
 *
 * Two hidden roles run inside the sandbox: `weft demo _backend` and `weft demo _client`.
 */

const USAGE = `Show weft working on this machine.

Usage:
  weft demo [services|socket-lb] [flags]

Demos:
  services    (default) weft replacing kube-proxy: a 2-node devcluster named "${DEMO_CLUSTER}" (no
              kube-proxy, one weft agent per node), three agnhost pods behind a NodePort Service,
              traffic to its ClusterIP over TCP and UDP from a pod and to its NodePort from this
              host, 'weft service list', then a deleted backend that new connections avoid.
              The cluster is removed at the end unless --keep.
  socket-lb   the socket load-balancer alone, without Kubernetes: a network namespace and a
              cgroup (weft-demo-<pid>) with weft's cgroup connect/sendmsg/recvmsg/getpeername
              programs, three HTTP backends and a fake ClusterIP written straight into the maps.

Both remove everything they made, also on error and Ctrl-C. Needs root.

Flags:
  -n, --connections int   connections per round (default 30)
      --keep              services: keep the cluster afterwards to explore it
  -o, --output string     output format: table or json (default table)
  -h, --help              help for demo
`;

const CLUSTER_IP = '10.96.0.10';
const CLUSTER_PORT = 80;
const BACKEND_PORT = 9376;
const BACKENDS = [
  { id: 1, name: 'web-1', address: '10.244.1.11' },
  { id: 2, name: 'web-2', address: '10.244.1.12' },
  { id: 3, name: 'web-3', address: '10.244.1.13' },
] as const;
const REMOVED = BACKENDS[2];

export async function run(args: string[]): Promise<number> {
  const [first, ...rest] = args;
  if (first === '_backend') return runBackend(rest);
  if (first === '_client') return runClient(rest);
  if (first === '_udp-client') return runUdpClient(rest);
  const named = first !== undefined && !first.startsWith('-');
  const scenario = named ? first : 'services';
  const { values } = parseArgs({
    args: named ? rest : args,
    options: {
      connections: { type: 'string', short: 'n', default: '30' },
      keep: { type: 'boolean', default: false },
      output: { type: 'string', short: 'o' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (scenario !== 'socket-lb' && scenario !== 'services') {
    throw new WeftError(
      'WEFT_ERR_USAGE',
      `unknown demo "${scenario}" for "weft demo"; available: services, socket-lb`,
    );
  }
  const connections = Number(values.connections);
  if (!Number.isInteger(connections) || connections < 1 || connections > 10_000) {
    throw new WeftError(
      'WEFT_ERR_USAGE',
      `invalid argument "${values.connections}" for "-n, --connections": must be an integer from 1 to 10000`,
    );
  }
  const output = parseOutputFormat(values.output);
  const say = output === 'table' ? (line = '') => process.stdout.write(`${line}\n`) : () => {};
  const report =
    scenario === 'services'
      ? await servicesDemo({ connections, keep: values.keep, say })
      : await socketLbDemo(connections, say);
  if (output === 'json') printJson(report);
  if (report.problems.length > 0) {
    process.stderr.write(
      `Error: the demo did not behave as expected:\n${report.problems.map((p) => `  - ${p}`).join('\n')}\n`,
    );
    return 1;
  }
  return 0;
}

// ---- the demo ----------------------------------------------------------------------------

interface Round {
  connections: number;
  /** Connections per backend name. */
  spread: Record<string, number>;
  /** What getpeername(2) returned in the client, per distinct answer. */
  peers: string[];
  failures: string[];
}

interface DemoReport {
  sandbox: { netns: string; cgroup: string; pinRoot: string };
  frontend: LbFrontend;
  backends: LbBackend[];
  rounds: { allBackends: Round; afterRemoval: Round & { removed: string } };
  counters: Record<SockLbStat, number>;
  problems: string[];
}

/** Undo actions for everything the demo made, run in reverse order exactly once. */
class Teardown {
  private readonly steps: Array<{ what: string; undo: () => void | Promise<void> }> = [];
  private ran?: Promise<string[]>;

  add(what: string, undo: () => void | Promise<void>): void {
    this.steps.push({ what, undo });
  }

  run(): Promise<string[]> {
    this.ran ??= (async () => {
      const problems: string[] = [];
      for (const step of this.steps.reverse()) {
        try {
          await step.undo();
        } catch (err) {
          problems.push(`${step.what}: ${(err as Error).message}`);
        }
      }
      return problems;
    })();
    return this.ran;
  }
}

function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') {
      throw new WeftError('WEFT_ERR_MISSING_TOOL', `${cmd} is not installed; run 'make setup' (iproute2)`);
    }
    throw new WeftError('WEFT_ERR_DEMO', `${cmd} ${args.join(' ')}: ${(e.stderr ?? e.message).trim()}`);
  }
}

async function socketLbDemo(connections: number, say: (line?: string) => void): Promise<DemoReport> {
  // Everything the demo needs, checked before it makes anything, each with its fix.
  checkPrivileges();
  checkKernel();
  ensureBpffs();
  const cgroupRoot = cgroup2Root();
  const objectPath = bpfObjectPath('sock_lb.bpf.o');
  if (!existsSync(objectPath)) {
    throw new WeftError(
      'WEFT_ERR_OBJECT_MISSING',
      `BPF object ${objectPath} not found; rebuild it with 'make bpf'`,
    );
  }
  sh('ip', ['-V']);

  const tag = `weft-demo-${process.pid}`;
  const cgroup = join(cgroupRoot, tag);
  const pinRoot = `/sys/fs/bpf/weft/${tag}`;
  const teardown = new Teardown();
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`\n${signal}: removing what the demo made...\n`);
    void teardown.run().then((problems) => {
      for (const p of problems) process.stderr.write(`warning: cleanup: ${p}\n`);
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    say('weft demo socket-lb: ClusterIP load-balancing at connect() time (cgroup sock_addr programs)');
    say();

    sh('ip', ['netns', 'add', tag]);
    teardown.add(`network namespace ${tag}`, () => void sh('ip', ['netns', 'del', tag]));
    sh('ip', ['-n', tag, 'link', 'set', 'lo', 'up']);
    for (const b of BACKENDS) sh('ip', ['-n', tag, 'addr', 'add', `${b.address}/32`, 'dev', 'lo']);

    mkdirSync(cgroup);
    teardown.add(`cgroup ${cgroup}`, () => removeCgroup(cgroup));

    const pinParent = '/sys/fs/bpf/weft';
    const madePinParent = !existsSync(pinParent);
    const obj = BpfObject.open(objectPath, { pinRoot });
    teardown.add(`BPF object and pins in ${pinRoot}`, () => {
      obj.close();
      rmSync(pinRoot, { recursive: true, force: true });
      // An agent may have made /sys/fs/bpf/weft meanwhile: only an empty one we made goes.
      if (madePinParent && readdirSync(pinParent).length === 0) rmdirSync(pinParent);
    });
    obj.load();
    const lb = LbMaps.fromObject(obj);
    teardown.add('LB maps', () => lb.close());
    const links: BpfLink[] = [];
    teardown.add('cgroup links', () => {
      for (const link of links) {
        link.detach();
        link.close();
      }
    });
    for (const name of sockLbPrograms) links.push(attachCgroup(obj.program(name), cgroup));
    say(`Sandbox    network namespace ${tag}, cgroup ${cgroup}`);
    say(
      `Datapath   ${links.length} programs of ${objectPath} attached to the cgroup; maps pinned in ${pinRoot}`,
    );
    say();

    const servers: ChildProcess[] = [];
    teardown.add('backend processes', () => Promise.all(servers.map(stopProcess)).then(() => {}));
    for (const b of BACKENDS) {
      servers.push(await startBackend(cgroup, tag, b.name, `${b.address}:${BACKEND_PORT}`));
    }

    const backends: LbBackend[] = BACKENDS.map((b) => ({
      id: b.id,
      address: b.address,
      port: BACKEND_PORT,
      protocol: 'TCP',
      state: 'active',
      clusterId: 0,
      zone: 0,
    }));
    const frontend: LbFrontend = {
      address: CLUSTER_IP,
      port: CLUSTER_PORT,
      protocol: 'TCP',
      type: 'ClusterIP',
      revNatIndex: 1,
      backends: BACKENDS.map((b) => b.id),
      externalTrafficPolicy: 'Cluster',
      internalTrafficPolicy: 'Cluster',
    };
    lb.apply({ backends, frontends: [frontend] });
    say('The ClusterIP, as the BPF maps hold it (weft_lb4_services, weft_lb4_backends):');
    say();
    say(indent(lbTable(lb)));
    say();

    const url = `http://${CLUSTER_IP}:${CLUSTER_PORT}/`;
    say(`${connections} HTTP requests to ${url}, each on a new connection, from a client in the cgroup:`);
    say();
    const first = await runClientRound(cgroup, tag, connections);
    say(indent(spreadTable(first)));
    say();
    say(`getpeername() in the client: ${first.peers.join(', ') || 'none'}`);
    say('  The client believes it talks to the ClusterIP; connect() was rewritten to a backend once,');
    say('  so packets flow straight to the backend with no per-packet NAT.');
    say();

    lb.applyFrontends([{ ...frontend, backends: frontend.backends.filter((id) => id !== REMOVED.id) }]);
    say(
      `Removing ${REMOVED.name} from the ClusterIP (the EndpointSlice says it is gone), then ${connections} more:`,
    );
    say();
    const second = await runClientRound(cgroup, tag, connections);
    say(indent(spreadTable(second, REMOVED.name)));
    say();

    const counters = lb.sockLbStats();
    say(
      `Socket LB counters: ${Object.entries(counters)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')}`,
    );

    const problems = [
      ...first.failures.map((f) => `first round: ${f}`),
      ...second.failures.map((f) => `after removal: ${f}`),
    ];
    if (first.peers.some((p) => p !== `${CLUSTER_IP}:${CLUSTER_PORT}`)) {
      problems.push(`getpeername showed ${first.peers.join(', ')}, not the ClusterIP`);
    }
    if ((second.spread[REMOVED.name] ?? 0) > 0) {
      problems.push(`${REMOVED.name} got ${second.spread[REMOVED.name]} connections after its removal`);
    }
    return {
      sandbox: { netns: tag, cgroup, pinRoot },
      frontend,
      backends,
      rounds: { allBackends: first, afterRemoval: { ...second, removed: REMOVED.name } },
      counters,
      problems,
    };
  } finally {
    const problems = await teardown.run();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    for (const p of problems) process.stderr.write(`warning: cleanup: ${p}\n`);
    say(
      problems.length === 0
        ? `Removed the namespace, cgroup, programs, maps and processes the demo made.`
        : '',
    );
  }
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
}

/** The frontend's map entries, in the shape of `cilium bpf lb list`. */
function lbTable(lb: LbMaps): string {
  const backends = new Map(lb.backends().map((b) => [b.id, b]));
  const rows: string[][] = [];
  for (const f of lb.frontends()) {
    const frontendText = `${f.address}:${f.port}/${f.protocol}`;
    rows.push([frontendText, `0.0.0.0:0 (${f.revNatIndex}) (0) [${f.type}]`]);
    f.backends.forEach((id, i) => {
      const b = backends.get(id);
      const where = b ? `${b.address}:${b.port}/${b.protocol}` : `backend ${id} missing`;
      rows.push(['', `${where} (${f.revNatIndex}) (${i + 1})  backend ${id}, ${b?.state ?? '?'}`]);
    });
  }
  return formatTable(['SERVICE ADDRESS', 'BACKEND ADDRESS (REVNAT_ID) (SLOT)'], rows);
}

function spreadTable(round: Round, removed?: string): string {
  const rows = BACKENDS.map((b) => {
    const n = round.spread[b.name] ?? 0;
    const note = b.name === removed ? '  (removed)' : '';
    return [b.name, `${b.address}:${BACKEND_PORT}`, String(n), `${'#'.repeat(n)}${note}`];
  });
  if (round.failures.length > 0)
    rows.push(['failed', '', String(round.failures.length), round.failures[0] ?? '']);
  return formatTable(['BACKEND', 'ADDRESS', 'CONNECTIONS', ''], rows);
}

/** Runs `weft <args>` inside the sandbox's network namespace and cgroup. */
function spawnInSandbox(cgroup: string, netns: string, args: string[]): ChildProcess {
  const [cmd, ...argv] = sandboxArgv(cgroup, netnsPath(netns), [...weftCommand(), ...args]);
  return spawn(cmd!, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Starts one backend and waits until it listens (it prints "ready"), or fails with its error. */
function startBackend(cgroup: string, netns: string, name: string, listen: string): Promise<ChildProcess> {
  const child = spawnInSandbox(cgroup, netns, ['demo', '_backend', '--name', name, '--listen', listen]);
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', () => resolve(child));
    child.once('exit', (code) =>
      reject(
        new WeftError('WEFT_ERR_DEMO', `backend ${name} exited (${code}) before listening: ${stderr.trim()}`),
      ),
    );
  });
}

async function runClientRound(cgroup: string, netns: string, connections: number): Promise<Round> {
  const child = spawnInSandbox(cgroup, netns, [
    'demo',
    '_client',
    '--host',
    CLUSTER_IP,
    '--port',
    String(CLUSTER_PORT),
    '--count',
    String(connections),
  ]);
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const round: Round = { connections, spread: {}, peers: [], failures: [] };
  for await (const line of createInterface({ input: child.stdout! })) {
    const r = JSON.parse(line) as { backend?: string; peer?: string; error?: string };
    if (r.error !== undefined) {
      round.failures.push(r.error);
      continue;
    }
    round.spread[r.backend!] = (round.spread[r.backend!] ?? 0) + 1;
    if (r.peer && !round.peers.includes(r.peer)) round.peers.push(r.peer);
  }
  const code = await new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once('exit', (c) => resolve(c));
  });
  if (code !== 0) throw new WeftError('WEFT_ERR_DEMO', `the client exited with ${code}: ${stderr.trim()}`);
  return round;
}

/** SIGTERM, then SIGKILL if the process has not exited a few seconds later. By PID: ours. */
function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Ends whatever is still in the demo's cgroup (only our processes), then removes it. */
async function removeCgroup(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  if (readFileSync(join(dir, 'cgroup.procs'), 'utf8').trim() !== '')
    writeFileSync(join(dir, 'cgroup.kill'), '1');
  for (let attempt = 0; ; attempt++) {
    try {
      rmdirSync(dir);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EBUSY' || attempt >= 50) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

// ---- the roles that run inside the sandbox ------------------------------------------------

function hostPort(text: string | undefined, flag: string): { host: string; port: number } {
  const m = /^(.+):(\d+)$/.exec(text ?? '');
  const port = Number(m?.[2]);
  if (!m || port < 1 || port > 65535) {
    throw new WeftError('WEFT_ERR_USAGE', `invalid argument "${text ?? ''}" for "${flag}": want host:port`);
  }
  return { host: m[1]!, port };
}

/** `weft demo _backend --name N --listen host:port`: HTTP that answers its name. */
async function runBackend(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { name: { type: 'string' }, listen: { type: 'string' } } });
  const { host, port } = hostPort(values.listen, '--listen');
  const name = values.name ?? 'backend';
  const server = createServer((_req, res) => {
    res.setHeader('Content-Type', 'text/plain');
    res.end(name);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  process.stdout.write('ready\n');
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  server.closeAllConnections();
  server.close();
  return 0;
}

/** The client roles' flags: --host H --port P [--count N] [--path /p]. */
function clientArgs(args: string[]): { host: string; port: number; count: number; path: string } {
  const { values } = parseArgs({
    args,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      count: { type: 'string', default: '1' },
      path: { type: 'string', default: '/' },
    },
  });
  return {
    ...hostPort(`${values.host}:${values.port}`, '--host/--port'),
    count: Number(values.count),
    path: values.path,
  };
}

/**
 * `weft demo _client --host H --port P --count N [--path /p]`: N HTTP GETs, each on a new connection; one
 * JSON line per request with the backend's answer and what getpeername(2) said.
 */
async function runClient(args: string[]): Promise<number> {
  const { host, port, count, path } = clientArgs(args);
  for (let i = 0; i < count; i++) {
    const line = await new Promise<string>((resolve) => {
      const req = httpGet({ host, port, path, agent: false, timeout: 3_000 }, (res) => {
        const peer = `${res.socket.remoteAddress}:${res.socket.remotePort}`;
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve(JSON.stringify({ backend: body.trim(), peer })));
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
      req.on('error', (err: NodeJS.ErrnoException) =>
        resolve(JSON.stringify({ error: err.code ?? err.message })),
      );
    });
    process.stdout.write(`${line}\n`);
  }
  return 0;
}

/**
 * `weft demo _udp-client --host H --port P --count N`: N datagrams "hostname",
 * each from a new unconnected socket; one JSON line per reply with its text and its source.
 */
async function runUdpClient(args: string[]): Promise<number> {
  const { host, port, count } = clientArgs(args);
  for (let i = 0; i < count; i++) {
    const line = await new Promise<string>((resolve) => {
      const sock = createSocket('udp4');
      const timer = setTimeout(() => {
        sock.close();
        resolve(JSON.stringify({ error: 'no reply within 3s' }));
      }, 3_000);
      sock.on('message', (msg, rinfo) => {
        clearTimeout(timer);
        sock.close();
        resolve(
          JSON.stringify({ backend: msg.toString('utf8').trim(), peer: `${rinfo.address}:${rinfo.port}` }),
        );
      });
      sock.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        sock.close();
        resolve(JSON.stringify({ error: err.code ?? err.message }));
      });
      sock.send('hostname', port, host);
    });
    process.stdout.write(`${line}\n`);
  }
  return 0;
}
