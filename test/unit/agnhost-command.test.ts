import { createServer } from 'node:net';
import { afterEach, beforeEach, describe, expect, it, type MockInstance, vi } from 'vitest';
import { type RunContext, runAgnhost } from '../../src/devcluster/agnhost/command.js';

/** The agnhost entrypoint: dispatch, cobra-style errors and exit statuses, signals. */

let stdout: MockInstance;
let stderr: MockInstance;
const written = (spy: MockInstance) => spy.mock.calls.map(([chunk]) => String(chunk)).join('');

beforeEach(() => {
  stdout = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
});
afterEach(() => vi.restoreAllMocks());

/** A context whose signals the test delivers. */
function fakeSignals(): RunContext & { deliver(signal: 'SIGTERM' | 'SIGINT'): void; listening(): number } {
  const handlers = new Map<string, Set<() => void>>();
  return {
    env: { HOSTNAME: 'cmd-pod' },
    onSignal(signal, handler) {
      const set = handlers.get(signal) ?? new Set();
      set.add(handler);
      handlers.set(signal, set);
      return () => set.delete(handler);
    },
    deliver(signal) {
      for (const handler of [...(handlers.get(signal) ?? [])]) handler();
    },
    listening() {
      return [...handlers.values()].reduce((n, set) => n + set.size, 0);
    },
  };
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  return typeof address === 'object' && address ? address.port : 0;
}

describe('weft agnhost dispatch', () => {
  it.each([
    {
      args: ['frobnicate'],
      stderr: 'Error: unknown command "frobnicate" for "agnhost"\nRun \'agnhost --help\' for usage.\n',
    },
    {
      args: ['netexec', '--bogus'],
      stderr: "Error: unknown flag: --bogus\nRun 'agnhost netexec --help' for usage.\n",
    },
    {
      args: ['netexec', '--http-port=eighty'],
      stderr:
        'Error: invalid argument "eighty" for "--http-port" flag: strconv.ParseInt: parsing "eighty": invalid syntax\nRun \'agnhost netexec --help\' for usage.\n',
    },
    {
      args: ['connect'],
      stderr: "Error: accepts 1 arg(s), received 0\nRun 'agnhost connect --help' for usage.\n",
    },
    {
      args: ['pause', 'extra'],
      stderr: "Error: accepts at most 0 arg(s), received 1\nRun 'agnhost pause --help' for usage.\n",
    },
  ])('$args: error on stderr, exit 1', async ({ args, stderr: expected }) => {
    expect(await runAgnhost(args, fakeSignals())).toBe(1);
    expect(written(stderr)).toBe(expected);
  });

  it('names real agnhost subcommands it does not implement instead of calling them unknown', async () => {
    expect(await runAgnhost(['liveness'], fakeSignals())).toBe(1);
    expect(written(stderr)).toMatch(
      /^Error: agnhost subcommand "liveness" is not implemented by weft \(implemented: connect, netexec, pause, serve-hostname\)\n$/,
    );
  });

  it.each([[[]], [['--help']], [['help']]])('%j prints the command list and exits 0', async (args) => {
    expect(await runAgnhost(args, fakeSignals())).toBe(0);
    expect(written(stdout)).toContain('Available Commands:\n  connect');
    expect(written(stdout)).toContain('serve-hostname');
  });

  it("prints a subcommand's flags with their defaults for --help", async () => {
    expect(await runAgnhost(['netexec', '--help'], fakeSignals())).toBe(0);
    expect(written(stdout)).toMatch(/--http-port int\s+HTTP Listen Port \(default 8080\)/);
    expect(written(stdout)).toMatch(/--delay-shutdown int\s+Number of seconds/);
  });

  it('accepts the container command with its /agnhost binary path in front', async () => {
    const port = await closedPort();
    expect(await runAgnhost(['/agnhost', 'connect', `127.0.0.1:${port}`], fakeSignals())).toBe(1);
    expect(written(stderr)).toBe('REFUSED\n');
  });
});

describe('weft agnhost pause', () => {
  it.each([
    { signal: 'SIGTERM' as const, code: 2 },
    { signal: 'SIGINT' as const, code: 1 },
  ])('exits $code after $signal, as the real pause does', async ({ signal, code }) => {
    const context = fakeSignals();
    const result = runAgnhost(['pause'], context);
    await vi.waitFor(() => expect(context.listening()).toBe(2));
    context.deliver(signal);
    expect(await result).toBe(code);
    expect(written(stdout)).toBe(`Paused\nexiting ${code}\n`);
    expect(context.listening()).toBe(0);
  });
});

describe('weft agnhost netexec and serve-hostname', () => {
  it("netexec exits 1 with Go's log line when its port is taken", async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, resolve));
    const address = blocker.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    try {
      expect(await runAgnhost(['netexec', `--http-port=${port}`, '--udp-port=-1'], fakeSignals())).toBe(1);
      expect(written(stderr)).toMatch(new RegExp(`listen tcp :${port}: bind: address already in use\\n$`));
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it('netexec exits 0 on SIGTERM', async () => {
    const context = fakeSignals();
    const result = runAgnhost(['netexec', '--http-port=0', '--udp-port=0'], context);
    await vi.waitFor(() => expect(context.listening()).toBe(1));
    context.deliver('SIGTERM');
    expect(await result).toBe(0);
  });

  it('serve-hostname exits 0 on SIGTERM', async () => {
    const context = fakeSignals();
    const result = runAgnhost(['serve-hostname', '--port=0'], context);
    await vi.waitFor(() => expect(context.listening()).toBe(1));
    context.deliver('SIGTERM');
    expect(await result).toBe(0);
  });

  it('serve-hostname exits 1 when asked for raw UDP without --http=false', async () => {
    expect(await runAgnhost(['serve-hostname', '--udp'], fakeSignals())).toBe(1);
    expect(written(stderr)).toMatch(/ Can't server TCP\/UDP mode and HTTP mode at the same time\n$/);
  });
});
