import { hostname as osHostname } from 'node:os';
import {
  AgnhostUsageError,
  type FlagSpecs,
  type FlagValues,
  formatFlagUsage,
  parseAgnhostFlags,
} from './flags.js';
import { goLog } from './go-log.js';

/**
 * `weft agnhost <subcommand> [flags]`: the entrypoint of registry.k8s.io/e2e-test-images/agnhost
 * containers in a devcluster. The kubelet runs it with the container's command (minus the
 * /agnhost binary) and args, in the pod's network namespace, with HOSTNAME set to the pod name.
 * Subcommands load their module only when run, so `pause` never loads an HTTP server.
 */

interface Subcommand<S extends FlagSpecs> {
  short: string;
  flags: S;
  /** cobra's Args: how many positional arguments the subcommand takes. */
  args: { exactly: number } | { atMost: number };
  use: string;
  run(values: FlagValues<S>, positionals: string[], context: RunContext): Promise<number>;
}

export interface RunContext {
  env: NodeJS.ProcessEnv;
  /** Subscribes to a signal for the lifetime of the command; returns the unsubscribe. */
  onSignal(signal: 'SIGTERM' | 'SIGINT', handler: () => void): () => void;
}

function subcommand<S extends FlagSpecs>(definition: Subcommand<S>): Subcommand<FlagSpecs> {
  return definition as unknown as Subcommand<FlagSpecs>;
}

/** The pod's hostname, as os.Hostname() returns it inside the real container. */
export function podHostname(env: NodeJS.ProcessEnv): string {
  return env.HOSTNAME || osHostname();
}

const SUBCOMMANDS: Record<string, Subcommand<FlagSpecs>> = {
  connect: subcommand({
    short: 'Attempts a TCP, UDP or SCTP connection and returns useful errors',
    use: 'connect [host:port]',
    args: { exactly: 1 },
    flags: {
      timeout: { type: 'duration', default: 0, usage: 'Maximum time before returning an error' },
      protocol: {
        type: 'string',
        default: 'tcp',
        usage: 'The protocol to use to perform the connection, can be tcp, udp or sctp',
      },
      'udp-data': { type: 'string', default: 'hostname', usage: 'The UDP payload send to the server' },
      'sctp-data': { type: 'string', default: 'hostname', usage: 'The SCTP payload send to the server' },
    },
    async run(values, [destination]) {
      const { runConnect } = await import('./connect.js');
      const result = await runConnect({
        destination: destination as string,
        timeoutMs: values.timeout,
        protocol: values.protocol,
        udpData: values['udp-data'],
      });
      process.stderr.write(result.stderr);
      return result.exitCode;
    },
  }),

  netexec: subcommand({
    short: 'Creates HTTP(S), UDP, and (optionally) SCTP servers with various endpoints',
    use: 'netexec',
    args: { atMost: 0 },
    flags: {
      'http-port': { type: 'int', default: 8080, usage: 'HTTP Listen Port' },
      'tls-cert-file': {
        type: 'string',
        default: '',
        usage:
          'File containing an x509 certificate for HTTPS. (CA cert, if any, concatenated after server cert)',
      },
      'tls-private-key-file': {
        type: 'string',
        default: '',
        usage: 'File containing an x509 private key matching --tls-cert-file',
      },
      'udp-port': { type: 'int', default: 8081, usage: 'UDP Listen Port' },
      'sctp-port': { type: 'int', default: -1, usage: 'SCTP Listen Port (not supported by weft: ignored)' },
      'http-override': {
        type: 'string',
        default: '',
        usage: 'Override the HTTP handler to always respond as if it were a GET with this path & params',
      },
      'udp-listen-addresses': {
        type: 'string',
        default: '',
        usage: 'A comma separated list of ip addresses the udp servers listen from',
      },
      'delay-shutdown': {
        type: 'int',
        default: 0,
        usage: 'Number of seconds to delay shutdown when receiving SIGTERM.',
      },
    },
    async run(values, _positionals, context) {
      // A pod may be deleted while it starts: remember a SIGTERM that arrives before the server.
      let server: Awaited<ReturnType<typeof startNetexec>> | undefined;
      let terminateRequested = false;
      const unsubscribe = context.onSignal('SIGTERM', () => {
        if (server) server.terminate();
        else terminateRequested = true;
      });
      const { NetexecStartError, startNetexec } = await import('./netexec.js');
      try {
        server = await startNetexec({
          httpPort: values['http-port'],
          udpPort: values['udp-port'],
          sctpPort: values['sctp-port'],
          httpOverride: values['http-override'],
          tlsCertFile: values['tls-cert-file'],
          tlsPrivateKeyFile: values['tls-private-key-file'],
          udpListenAddresses: values['udp-listen-addresses'],
          delayShutdownSeconds: values['delay-shutdown'],
          hostname: podHostname(context.env),
          log: goLog,
        });
      } catch (err) {
        unsubscribe();
        if (err instanceof NetexecStartError) {
          goLog(err.message);
          return 1;
        }
        throw err;
      }
      if (terminateRequested) server.terminate();
      const code = await server.exited;
      unsubscribe();
      return code;
    },
  }),

  pause: subcommand({
    short: 'Pauses the execution',
    use: 'pause',
    args: { atMost: 0 },
    flags: {
      'delay-shutdown': {
        type: 'int',
        default: 0,
        usage: 'Number of seconds to delay shutdown when receiving SIGTERM/SIGINT.',
      },
    },
    async run(values, _positionals, context) {
      // The real pause exits 1 after SIGINT and 2 after SIGTERM.
      const code = await new Promise<number>((resolve) => {
        const keepAlive = setInterval(() => {}, 1 << 30);
        const stops: (() => void)[] = [];
        const on = (code: number) => () => {
          clearInterval(keepAlive);
          for (const stop of stops) stop();
          resolve(code);
        };
        stops.push(context.onSignal('SIGINT', on(1)), context.onSignal('SIGTERM', on(2)));
        // Printed once the signals are handled: whoever waits for it may signal at once.
        process.stdout.write('Paused\n');
      });
      const delay = values['delay-shutdown'];
      if (delay > 0) {
        process.stdout.write(`Sleeping ${delay} seconds before exit ...`);
        await new Promise((resolve) => setTimeout(resolve, delay * 1000));
      }
      process.stdout.write(`exiting ${code}\n`);
      return code;
    },
  }),

  'serve-hostname': subcommand({
    short: 'Serves the hostname',
    use: 'serve-hostname',
    args: { atMost: 0 },
    flags: {
      tcp: { type: 'bool', default: false, usage: 'Serve raw over TCP.' },
      udp: { type: 'bool', default: false, usage: 'Serve raw over UDP.' },
      http: { type: 'bool', default: true, usage: 'Serve HTTP.' },
      close: { type: 'bool', default: false, usage: 'Close connection per each HTTP request.' },
      port: { type: 'int', default: 9376, usage: 'Port number.' },
    },
    async run(values, _positionals, context) {
      let unsubscribe = () => {};
      const terminated = new Promise<void>((resolve) => {
        unsubscribe = context.onSignal('SIGTERM', () => resolve());
      });
      const { ServeHostnameStartError, startServeHostname } = await import('./serve-hostname.js');
      let server: Awaited<ReturnType<typeof startServeHostname>>;
      try {
        server = await startServeHostname({ ...values, hostname: podHostname(context.env), log: goLog });
      } catch (err) {
        unsubscribe();
        if (err instanceof ServeHostnameStartError) {
          goLog(err.message);
          return 1;
        }
        throw err;
      }
      await terminated;
      unsubscribe();
      // The real one keeps serving for 60 s "awaiting pod deletion" until the kubelet kills
      // it; here the kubelet's SIGTERM means the pod is going, so stop at once.
      goLog('Shutting down after receiving signal: terminated.');
      await server.close();
      return 0;
    },
  }),
};

/** Real agnhost subcommands this build does not implement: named as such, not as typos. */
const NOT_IMPLEMENTED = [
  'audit-proxy',
  'crd-conversion-webhook',
  'dns-server-list',
  'dns-suffix',
  'entrypoint-tester',
  'etc-hosts',
  'fake-gitserver',
  'grpc-health-checking',
  'guestbook',
  'inclusterclient',
  'liveness',
  'logs-generator',
  'mounttest',
  'net',
  'nettest',
  'no-snat-test',
  'no-snat-test-proxy',
  'porter',
  'port-forward-tester',
  'resource-consumer-controller',
  'tcp-reset',
  'test-webserver',
  'webhook',
];

function rootUsage(): string {
  const names = Object.keys(SUBCOMMANDS).sort();
  const width = Math.max(...names.map((n) => n.length), 'help'.length);
  const lines = [...names.map((n) => [n, SUBCOMMANDS[n]?.short ?? '']), ['help', 'Help about any command']]
    .sort(([a], [b]) => (a ?? '').localeCompare(b ?? ''))
    .map(([name, short]) => `  ${(name ?? '').padEnd(width)} ${short}`);
  return [
    'Usage:',
    '  agnhost [command]',
    '',
    'Available Commands:',
    ...lines,
    '',
    'Flags:',
    '  -h, --help   help for agnhost',
    '',
    'Use "agnhost [command] --help" for more information about a command.',
    '',
  ].join('\n');
}

function subcommandUsage(command: Subcommand<FlagSpecs>): string {
  return `${command.short}\n\nUsage:\n  agnhost ${command.use} [flags]\n\nFlags:\n${formatFlagUsage(command.flags)}\n`;
}

function processSignals(): RunContext['onSignal'] {
  return (signal, handler) => {
    process.on(signal, handler);
    return () => process.off(signal, handler);
  };
}

/**
 * Runs one agnhost invocation and returns its exit status. Unknown subcommands and bad flags
 * print cobra's error text on stderr and return 1 (the real binary prints the same text).
 */
export async function runAgnhost(
  argv: string[],
  context: RunContext = { env: process.env, onSignal: processSignals() },
): Promise<number> {
  let args = argv;
  // A container's `command: ["/agnhost", ...]` may reach us whole: the binary is implied.
  if (args[0] !== undefined && /(^|\/)agnhost$/.test(args[0])) args = args.slice(1);
  const [name, ...rest] = args;
  if (name === undefined || name === '-h' || name === '--help') {
    process.stdout.write(rootUsage());
    return 0;
  }
  if (name === 'help') {
    const topic = rest[0] === undefined ? undefined : SUBCOMMANDS[rest[0]];
    process.stdout.write(topic ? subcommandUsage(topic) : rootUsage());
    return 0;
  }
  const command = Object.hasOwn(SUBCOMMANDS, name) ? SUBCOMMANDS[name] : undefined;
  if (command === undefined) {
    if (NOT_IMPLEMENTED.includes(name)) {
      process.stderr.write(
        `Error: agnhost subcommand "${name}" is not implemented by weft (implemented: ${Object.keys(SUBCOMMANDS).sort().join(', ')})\n`,
      );
      return 1;
    }
    process.stderr.write(`Error: unknown command "${name}" for "agnhost"\nRun 'agnhost --help' for usage.\n`);
    return 1;
  }
  try {
    const parsed = parseAgnhostFlags(rest, command.flags);
    if (parsed.help) {
      process.stdout.write(subcommandUsage(command));
      return 0;
    }
    const count = parsed.positionals.length;
    if ('exactly' in command.args && count !== command.args.exactly) {
      throw new AgnhostUsageError(`accepts ${command.args.exactly} arg(s), received ${count}`);
    }
    if ('atMost' in command.args && count > command.args.atMost) {
      throw new AgnhostUsageError(`accepts at most ${command.args.atMost} arg(s), received ${count}`);
    }
    return await command.run(parsed.values, parsed.positionals, context);
  } catch (err) {
    if (err instanceof AgnhostUsageError) {
      process.stderr.write(`Error: ${err.message}\nRun 'agnhost ${name} --help' for usage.\n`);
      return 1;
    }
    throw err;
  }
}
