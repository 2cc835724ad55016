// The agent's datapath in the real kernel: sock_lb.bpf.o loaded with pinned maps, attached to a
// cgroup through pinned links, programmed by the reconciler from Kubernetes objects, and real
// TCP connections from a client in that cgroup (in a network namespace of the test's own). It
// checks what a user of the node sees: a ClusterIP reaches a backend, an endpoint change leaves
// open connections alone, a restart swaps the programs under the same links without dropping a
// connection and rewrites nothing, and a Service without endpoints refuses at once.
// Everything carries weft-kt-agent-<pid> and is removed in afterAll, also after a failure.
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentDatapath, removeNodePins, sockLbPrograms } from '../../src/agent/datapath.js';
import { ServiceCache } from '../../src/agent/services/cache.js';
import { Reconciler } from '../../src/agent/services/reconciler.js';
import { BpfLink } from '../../src/datapath/cgroup.js';
import { cgroup2Root, checkEnvironment } from '../../src/datapath/environment.js';
import type { LbMapOps } from '../../src/datapath/lbmap.js';
import { service, slice } from '../unit/agent-fixtures.js';

const tag = `weft-kt-agent-${process.pid}`;
const pinRoot = `/sys/fs/bpf/weft/${tag}`;
const work = `/tmp/${tag}`;
const netns = tag;
const log = pino({ level: 'silent' });
let cgroup = '';
let otherCgroup = '';
const children: ChildProcess[] = [];

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

// Answers every line with the address:port the connection reached.
const serverScript = `
import net from 'node:net';
for (const host of process.argv.slice(2)) {
  net.createServer((s) => {
    s.setEncoding('utf8');
    s.on('data', () => s.write(s.localAddress + ':' + s.localPort + '\\n'));
    s.on('error', () => {});
  }).listen(8080, host, () => process.stdout.write('listening ' + host + '\\n'));
}
`;

// Commands on stdin, one JSON reply per line on stdout: open <id> <host> <port>, send <id>.
const clientScript = `
import net from 'node:net';
import readline from 'node:readline';
const conns = new Map();
const reply = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, id, host, port] = line.split(' ');
  if (cmd === 'open') {
    const s = net.connect({ host, port: Number(port) });
    s.setEncoding('utf8');
    s.once('connect', () => { conns.set(id, s); reply({ id, ok: true, peer: s.remoteAddress + ':' + s.remotePort }); });
    s.once('error', (e) => reply({ id, ok: false, code: e.code }));
  } else if (cmd === 'send') {
    const s = conns.get(id);
    s.once('data', (d) => reply({ id, ok: true, reply: String(d).trim() }));
    s.write('x\\n');
  }
});
reply({ id: 'ready', ok: true });
`;

/** A process in the test's netns (and cgroup, if given), with a line-based request channel. */
function startIn(script: string, args: string[], inCgroup: string | undefined) {
  const file = join(work, script === serverScript ? 'server.mjs' : 'client.mjs');
  writeFileSync(file, script);
  const enter = inCgroup ? `echo $$ > ${inCgroup}/cgroup.procs && ` : '';
  const child = spawn(
    'sh',
    ['-c', `${enter}exec ip netns exec ${netns} ${process.execPath} ${file} ${args.join(' ')}`],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  children.push(child);
  const lines: string[] = [];
  const waiters: Array<(l: string) => void> = [];
  createInterface({ input: child.stdout! }).on('line', (l) => {
    const w = waiters.shift();
    if (w) w(l);
    else lines.push(l);
  });
  const next = () =>
    new Promise<string>((resolve, reject) => {
      const l = lines.shift();
      if (l !== undefined) return resolve(l);
      const timer = setTimeout(() => reject(new Error(`no answer from ${file}`)), 10_000);
      waiters.push((x) => {
        clearTimeout(timer);
        resolve(x);
      });
    });
  return { child, next };
}

interface Reply {
  id: string;
  ok: boolean;
  peer?: string;
  reply?: string;
  code?: string;
}

let client: ReturnType<typeof startIn>;
async function ask(line: string): Promise<Reply> {
  client.child.stdin!.write(`${line}\n`);
  return JSON.parse(await client.next()) as Reply;
}

function newAgent(opts: { cgroup?: string } = {}) {
  const dp = AgentDatapath.open({
    pinRoot,
    cgroup: opts.cgroup ?? cgroup,
    mapMax: 64,
    stateDir: join(work, 'state'),
    log,
  });
  const ops: LbMapOps[] = [];
  dp.lb.onOps = (o) => ops.push(o);
  const cache = new ServiceCache();
  const reconciler = new Reconciler({ nodeName: 'node-a', cache, lb: dp.lb, log });
  reconciler.restore(dp.readBack());
  return { dp, ops, cache, reconciler };
}

const web = () => service('web', { clusterIP: '10.96.0.10', ports: [{ port: 80 }] });
const webSlice = (...ips: string[]) =>
  slice(
    'web-1',
    'web',
    ips.map((ip) => ({ ip, node: 'node-a' })),
    [{ name: '', port: 8080 }],
  );

beforeAll(async () => {
  checkEnvironment();
  mkdirSync(work, { recursive: true });
  cgroup = join(cgroup2Root(), tag);
  otherCgroup = join(cgroup2Root(), `${tag}-other`);
  mkdirSync(cgroup, { recursive: true });
  mkdirSync(otherCgroup, { recursive: true });
  sh('ip', ['netns', 'add', netns]);
  sh('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
  for (const a of ['10.244.0.2/32', '10.244.0.3/32']) sh('ip', ['-n', netns, 'addr', 'add', a, 'dev', 'lo']);
  const server = startIn(serverScript, ['10.244.0.2', '10.244.0.3'], undefined);
  expect(await server.next()).toMatch(/^listening/);
  expect(await server.next()).toMatch(/^listening/);
  client = startIn(clientScript, [], cgroup);
  expect(JSON.parse(await client.next())).toMatchObject({ id: 'ready' });
});

afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  spawnSync('ip', ['netns', 'del', netns]);
  if (existsSync(pinRoot)) removeNodePins(pinRoot);
  rmSync(work, { recursive: true, force: true });
  // A cgroup goes with rmdir once its processes are gone; give the killed ones a moment.
  for (const dir of [cgroup, otherCgroup]) {
    for (let i = 0; i < 50 && dir && existsSync(dir); i++) {
      try {
        rmdirSync(dir);
      } catch {
        spawnSync('sleep', ['0.1']);
      }
    }
  }
});

describe('the agent datapath with real connections', () => {
  let agent: ReturnType<typeof newAgent>;
  const linkIds: number[] = [];
  const programIds: number[] = [];

  afterAll(() => agent?.dp.close());

  it('attaches every socket-LB program to the cgroup through pinned links', () => {
    agent = newAgent();
    const status = agent.dp.socketLbStatus();
    expect(status).toMatchObject({ attached: true, cgroup });
    expect(status.programs.map((p) => p.name)).toEqual([...sockLbPrograms]);
    for (const p of status.programs) {
      expect(existsSync(join(pinRoot, 'links', p.name))).toBe(true);
      linkIds.push(p.linkId);
      programIds.push(p.programId);
    }
  });

  it('a ClusterIP reaches its backend', async () => {
    agent.cache.upsert('Service', web());
    agent.cache.upsert('EndpointSlice', webSlice('10.244.0.2'));
    agent.reconciler.sync(true);
    expect(await ask('open c1 10.96.0.10 80')).toEqual({ id: 'c1', ok: true, peer: '10.96.0.10:80' });
    expect(await ask('send c1')).toEqual({ id: 'c1', ok: true, reply: '10.244.0.2:8080' });
  });

  it('an endpoint change: open connections keep their backend, new ones get the new one', async () => {
    agent.cache.upsert('EndpointSlice', webSlice('10.244.0.3'));
    agent.reconciler.sync(false);
    expect(await ask('send c1')).toEqual({ id: 'c1', ok: true, reply: '10.244.0.2:8080' });
    expect(await ask('open c2 10.96.0.10 80')).toMatchObject({ ok: true });
    expect(await ask('send c2')).toEqual({ id: 'c2', ok: true, reply: '10.244.0.3:8080' });
  });

  it('a restart swaps the programs under the same links: connections stay, nothing is rewritten', async () => {
    agent.dp.close();
    agent = newAgent();
    const status = agent.dp.socketLbStatus();
    expect(status.programs.map((p) => p.linkId)).toEqual(linkIds);
    // New programs were loaded and swapped in atomically.
    for (const [i, p] of status.programs.entries()) expect(p.programId).not.toBe(programIds[i]);
    agent.cache.upsert('Service', web());
    agent.cache.upsert('EndpointSlice', webSlice('10.244.0.3'));
    agent.reconciler.sync(true);
    expect(agent.ops).toEqual([]);
    expect(await ask('send c1')).toEqual({ id: 'c1', ok: true, reply: '10.244.0.2:8080' });
    expect(await ask('send c2')).toEqual({ id: 'c2', ok: true, reply: '10.244.0.3:8080' });
    expect(await ask('open c3 10.96.0.10 80')).toMatchObject({ ok: true });
    expect(await ask('send c3')).toEqual({ id: 'c3', ok: true, reply: '10.244.0.3:8080' });
  });

  it('a Service without endpoints refuses at once', async () => {
    agent.cache.upsert('EndpointSlice', webSlice());
    agent.reconciler.sync(false);
    expect(await ask('open c4 10.96.0.10 80')).toEqual({ id: 'c4', ok: false, code: 'ECONNREFUSED' });
    expect(agent.dp.lb.sockLbStats().refused_no_backend).toBeGreaterThan(0);
  });

  it('a deleted Service leaves nothing: its address is no frontend any more', async () => {
    agent.cache.remove('Service', web());
    agent.cache.remove('EndpointSlice', webSlice());
    agent.reconciler.sync(false);
    expect(agent.dp.lb.frontends()).toEqual([]);
    expect(agent.dp.lb.backends()).toEqual([]);
    // Not translated: 10.96.0.10 is no address of this namespace's routes.
    expect(await ask('open c5 10.96.0.10 80')).toMatchObject({ ok: false, code: 'ENETUNREACH' });
  });

  it('an agent started with another cgroup moves the socket LB there', async () => {
    agent.cache.upsert('Service', web());
    agent.cache.upsert('EndpointSlice', webSlice('10.244.0.2'));
    agent.reconciler.sync(false);
    expect(await ask('open c6 10.96.0.10 80')).toMatchObject({ ok: true });
    agent.dp.close();
    agent = newAgent({ cgroup: otherCgroup });
    expect(agent.dp.socketLbStatus()).toMatchObject({ attached: true, cgroup: otherCgroup });
    // The client's cgroup has no program any more: nothing translates its connects.
    expect(await ask('open c7 10.96.0.10 80')).toMatchObject({ ok: false, code: 'ENETUNREACH' });
    const link = BpfLink.openPinned(join(pinRoot, 'links', sockLbPrograms[0]));
    expect(link).toBeDefined();
    link?.close();
  });
});
