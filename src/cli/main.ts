import { WeftError } from '../shared/errors.js';

/**
 * `weft <command> ...`. Each command lives in its own module under src/cli/ and exports
 * `run(args): Promise<number>` (the exit code); modules load lazily so `weft devcluster` does
 * not pay for the datapath binding and the other way round.
 */
type CommandModule = { run(args: string[]): Promise<number> };

const commands: Record<string, { summary: string; hidden?: boolean; load: () => Promise<CommandModule> }> = {
  agnhost: {
    summary: 'Kubernetes e2e test workloads (netexec, serve-hostname, connect, pause)',
    hidden: true,
    load: () => import('./agnhost.js'),
  },
  agent: { summary: 'run the node agent', load: () => import('./agent.js') },
  bpf: { summary: 'inspect BPF maps (weft bpf lb list)', load: () => import('./bpf.js') },
  demo: { summary: 'show weft working on this machine', load: () => import('./demo.js') },
  devcluster: {
    summary: 'a Kind-like local cluster of network namespaces',
    load: () => import('./devcluster.js'),
  },
  service: { summary: 'show load-balanced services (weft service list)', load: () => import('./service.js') },
  status: { summary: 'agent health, API connectivity, map pressure', load: () => import('./status.js') },
};

function usage(): string {
  const visible = Object.entries(commands).filter(([, c]) => !c.hidden);
  const width = Math.max(...visible.map(([name]) => name.length));
  const lines = visible.map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `Usage: weft <command> [flags]\n\nCommands:\n${lines.join('\n')}\n\nRun 'weft <command> --help' for a command's flags.`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(`${usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`Error: unknown command "${name}" for "weft"\n\n${usage()}\n`);
    return 2;
  }
  const module = await command.load();
  return module.run(rest);
}

/** Errors from flags and input end here: one line on stderr, a non-zero exit, no stack. */
export function reportError(err: unknown): number {
  if (err instanceof WeftError) {
    process.stderr.write(`Error: ${err.message}\n`);
    return err.code === 'WEFT_ERR_USAGE' ? 2 : 1;
  }
  const code = err instanceof Error ? (err as NodeJS.ErrnoException).code : undefined;
  if (code?.startsWith('ERR_PARSE_ARGS_')) {
    // node:util parseArgs, for every command: a usage error, not a crash.
    const positional = /Unexpected argument '([^']*)'/.exec((err as Error).message);
    const text = positional
      ? `unexpected argument "${positional[1]}"`
      : (err as Error).message.split('. To specify')[0];
    process.stderr.write(`Error: ${text}\n`);
    return 2;
  }
  process.stderr.write(`Error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return 1;
}
