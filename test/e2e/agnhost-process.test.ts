import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { weftCommand } from '../../src/shared/self.js';

/**
 * `weft agnhost` as the kubelet runs it: the built CLI in its own process, signals and exit
 * statuses as a container runtime sees them, and `connect` failures that need a network the
 * test controls (a namespace of its own: a neighbour whose frames nobody accepts for TIMEOUT,
 * an unrouted prefix for OTHER, no reachable resolver for DNS).
 */

const NETNS = `wagh${process.pid}`;
// Only inside NETNS: wagh0's peer wagh1 has no address and drops frames for a MAC that is not
// its own, so a SYN to BLACKHOLED_PEER (pinned to such a MAC) is never answered.
const BLACKHOLE_PREFIX = '198.51.100.1/24';
const BLACKHOLED_PEER = '198.51.100.2';
const BLACKHOLED_MAC = '02:00:5e:00:53:02';
const UNROUTED = '203.0.113.7';

const children = new Set<ChildProcess>();

interface Agnhost {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function agnhost(args: string[], options: { netns?: string; hostname?: string } = {}): Agnhost {
  const [node, cli] = weftCommand();
  const argv = [node, cli, 'agnhost', ...args];
  const [command, ...rest] = options.netns ? ['ip', 'netns', 'exec', options.netns, ...argv] : argv;
  const child = spawn(command as string, rest, {
    env: { ...process.env, HOSTNAME: options.hostname ?? 'agnhost-e2e-pod' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exit = once(child, 'exit').then(([code, signal]) => {
    children.delete(child);
    return { code: code as number | null, signal: signal as NodeJS.Signals | null };
  });
  return { child, stdout: () => stdout, stderr: () => stderr, exit };
}

/** The port from netexec's "Started HTTP server on port N" log line (it was started on :0). */
async function httpPortOf(process: Agnhost): Promise<number> {
  let port = 0;
  await vi.waitFor(
    () => {
      const match = /Started HTTP server on port (\d+)/.exec(process.stderr());
      expect(match).not.toBeNull();
      port = Number(match?.[1]);
    },
    { timeout: 20_000, interval: 50 },
  );
  return port;
}

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => {
        body += chunk.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

beforeAll(() => {
  weftCommand(); // fails with "run 'make build' first" when dist/ is missing
  ip('netns', 'add', NETNS);
  ip('-n', NETNS, 'link', 'set', 'lo', 'up');
  ip('-n', NETNS, 'link', 'add', 'name', 'wagh0', 'type', 'veth', 'peer', 'name', 'wagh1');
  ip('-n', NETNS, 'addr', 'add', BLACKHOLE_PREFIX, 'dev', 'wagh0');
  ip('-n', NETNS, 'link', 'set', 'wagh0', 'up');
  ip('-n', NETNS, 'link', 'set', 'wagh1', 'up');
  ip(
    '-n',
    NETNS,
    'neigh',
    'add',
    BLACKHOLED_PEER,
    'lladdr',
    BLACKHOLED_MAC,
    'dev',
    'wagh0',
    'nud',
    'permanent',
  );
});

afterAll(() => {
  for (const child of children) {
    if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
  }
  try {
    ip('netns', 'del', NETNS);
  } catch {
    // never created
  }
});

describe('weft agnhost netexec as a container process', () => {
  it('answers as the pod named by HOSTNAME and exits 0 on SIGTERM', async () => {
    const server = agnhost(['netexec', '--http-port=0', '--udp-port=0'], { hostname: 'web-0' });
    const port = await httpPortOf(server);
    expect(await get(port, '/hostname')).toEqual({ status: 200, body: 'web-0' });
    server.child.kill('SIGTERM');
    expect(await server.exit).toEqual({ code: 0, signal: null });
  });

  it('--delay-shutdown keeps serving after SIGTERM with /readyz at 503, then exits 0', async () => {
    const server = agnhost(['netexec', '--http-port=0', '--udp-port=0', '--delay-shutdown', '5']);
    const port = await httpPortOf(server);
    expect((await get(port, '/readyz')).status).toBe(200);
    server.child.kill('SIGTERM');
    await vi.waitFor(async () =>
      expect(await get(port, '/readyz')).toEqual({ status: 503, body: 'shutting down' }),
    );
    expect((await get(port, '/hostname')).body).toBe('agnhost-e2e-pod');
    expect(await server.exit).toEqual({ code: 0, signal: null });
    expect(server.stderr()).toContain('Sleeping 5 seconds before terminating...');
  });

  it('/exit?code=7 with a timeout answers, then the process exits 7', async () => {
    const server = agnhost(['netexec', '--http-port=0', '--udp-port=-1']);
    const port = await httpPortOf(server);
    expect((await get(port, '/exit?code=7&timeout=1s')).status).toBe(200);
    expect(await server.exit).toEqual({ code: 7, signal: null });
  });

  it('/shutdown ends the process with status 0', async () => {
    const server = agnhost(['netexec', '--http-port=0', '--udp-port=-1']);
    const port = await httpPortOf(server);
    await get(port, '/shutdown').catch(() => undefined);
    expect(await server.exit).toEqual({ code: 0, signal: null });
  });
});

describe('weft agnhost pause and serve-hostname as container processes', () => {
  it.each([
    { signal: 'SIGTERM' as const, code: 2 },
    { signal: 'SIGINT' as const, code: 1 },
  ])('pause exits $code on $signal', async ({ signal, code }) => {
    const pause = agnhost(['pause']);
    await vi.waitFor(() => expect(pause.stdout()).toBe('Paused\n'), { timeout: 20_000, interval: 50 });
    pause.child.kill(signal);
    expect(await pause.exit).toEqual({ code, signal: null });
    expect(pause.stdout()).toBe(`Paused\nexiting ${code}\n`);
  });

  it('serve-hostname exits 0 on SIGTERM', async () => {
    const server = agnhost(['serve-hostname', '--port=0']);
    await vi.waitFor(() => expect(server.stderr()).toContain('Serving on port'), {
      timeout: 20_000,
      interval: 50,
    });
    server.child.kill('SIGTERM');
    expect(await server.exit).toEqual({ code: 0, signal: null });
  });
});

describe('weft agnhost connect reports each failure as agnhost does', () => {
  it.each([
    { target: '127.0.0.1:9', stderr: /^REFUSED\n$/ },
    { target: `${BLACKHOLED_PEER}:80`, stderr: /^TIMEOUT\n$/ },
    {
      target: `${UNROUTED}:80`,
      stderr: new RegExp(`^OTHER: dial tcp ${UNROUTED}:80: connect: network is unreachable\\n$`),
    },
    { target: 'no-such-host.invalid:80', stderr: /^DNS: lookup no-such-host\.invalid: .+\n$/ },
    { target: 'missing-port', stderr: /^UNKNOWN: address missing-port: missing port in address\n$/ },
  ])('connect $target → $stderr, exit 1', async ({ target, stderr }) => {
    const connect = agnhost(['connect', target, '--timeout=1s'], { netns: NETNS });
    expect(await connect.exit).toEqual({ code: 1, signal: null });
    expect(connect.stderr()).toMatch(stderr);
  });

  it('exits 0 when the port is open', async () => {
    const server = agnhost(['netexec', '--http-port=0', '--udp-port=-1']);
    const port = await httpPortOf(server);
    const connect = agnhost(['connect', `127.0.0.1:${port}`, '--timeout=5s']);
    expect(await connect.exit).toEqual({ code: 0, signal: null });
    expect(connect.stderr()).toBe('');
    server.child.kill('SIGTERM');
    await server.exit;
  });
});

describe('weft agnhost input errors', () => {
  it.each([
    { args: ['frobnicate'], stderr: 'Error: unknown command "frobnicate" for "agnhost"' },
    { args: ['netexec', '--http-prot=80'], stderr: 'Error: unknown flag: --http-prot' },
    { args: ['connect', '10.0.0.1:80', '--timeout=5'], stderr: 'time: missing unit in duration "5"' },
  ])('$args exits 1 with a clear error', async ({ args, stderr }) => {
    const run = agnhost(args);
    expect(await run.exit).toEqual({ code: 1, signal: null });
    expect(run.stderr()).toContain(stderr);
  });
});
