/**
 * Talking to a node agent over its unix socket (<state-dir>/agent.sock), for `weft service`,
 * `weft bpf` and `weft status`. Which agent: --node NAME (its default state dir),
 * --state-dir DIR, or, with neither, the only agent on this machine.
 */
import { existsSync, readdirSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_RUN_DIR } from '../agent/config.js';
import { AGENT_SOCKET } from '../agent/state.js';
import { WeftError } from '../shared/errors.js';
import { type OutputFormat, parseOutputFormat } from './output.js';

export interface AgentTarget {
  socket: string;
  /** The node, when known from the flags or the directory name. */
  node?: string;
}

const startHint = 'start one with: weft agent --node-name <node> (or check --node/--state-dir)';

/** Finds the agent's socket from --node / --state-dir, or the only one under `runDir`. */
export function resolveAgentSocket(
  opts: { node?: string; stateDir?: string },
  runDir = DEFAULT_RUN_DIR,
): AgentTarget {
  if (opts.stateDir) {
    const t: AgentTarget = { socket: join(opts.stateDir, AGENT_SOCKET) };
    if (opts.node) t.node = opts.node;
    return t;
  }
  if (opts.node) return { socket: join(runDir, opts.node, AGENT_SOCKET), node: opts.node };
  const found = existsSync(runDir)
    ? readdirSync(runDir, { withFileTypes: true })
        .filter((d) => d.isDirectory() && existsSync(join(runDir, d.name, AGENT_SOCKET)))
        .map((d) => d.name)
        .sort()
    : [];
  if (found.length === 1) return { socket: join(runDir, found[0]!, AGENT_SOCKET), node: found[0]! };
  if (found.length === 0) {
    throw new WeftError(
      'WEFT_ERR_AGENT_UNREACHABLE',
      `no weft agent runs on this machine (no ${runDir}/*/${AGENT_SOCKET}); ${startHint}`,
    );
  }
  throw new WeftError(
    'WEFT_ERR_USAGE',
    `${found.length} agents run on this machine (nodes ${found.join(', ')}); pick one with --node NAME`,
  );
}

/** GET a /v1 path from the agent; errors say what to do next. */
export function agentGet<T>(target: AgentTarget, path: string, timeoutMs = 30_000): Promise<T> {
  const who = target.node ? `the weft agent of node ${target.node}` : 'the weft agent';
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: target.socket, path, method: 'GET', timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          reject(
            new WeftError('WEFT_ERR_AGENT_API', `${who} answered ${path} with something that is not JSON`),
          );
          return;
        }
        if (res.statusCode !== 200) {
          const b = body as { error?: string; code?: string };
          reject(
            new WeftError(
              b.code ?? 'WEFT_ERR_AGENT_API',
              `${who} failed ${path} (HTTP ${res.statusCode}): ${b.error ?? text.slice(0, 200)}`,
            ),
          );
          return;
        }
        resolve(body as T);
      });
    });
    req.on('timeout', () =>
      req.destroy(
        new WeftError(
          'WEFT_ERR_AGENT_UNREACHABLE',
          `${who} did not answer ${path} within ${timeoutMs / 1000}s`,
        ),
      ),
    );
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err instanceof WeftError) {
        reject(err);
        return;
      }
      const why =
        err.code === 'ENOENT'
          ? `no socket at ${target.socket}`
          : err.code === 'ECONNREFUSED'
            ? `nothing listens on ${target.socket} (the agent stopped or crashed)`
            : err.code === 'EACCES'
              ? `permission denied on ${target.socket}: run as root`
              : `${err.code ?? ''} ${err.message}`.trim();
      reject(new WeftError('WEFT_ERR_AGENT_UNREACHABLE', `cannot reach ${who}: ${why}; ${startHint}`));
    });
    req.end();
  });
}

/** The flags every agent-talking command takes. */
export interface AgentCommandFlags {
  /** Resolved when called, after the command has checked its arguments. */
  target: () => AgentTarget;
  output: OutputFormat;
  positionals: string[];
  values: Record<string, string | boolean | undefined>;
}

export const agentFlagsHelp = `      --node string        the node whose agent to ask (default: the only agent on this machine)
      --state-dir string   the agent's state directory (default /var/run/weft/<node>)
  -o, --output string      output format: table or json (default table)
  -h, --help               help for this command`;

/** Parses --node, --state-dir, -o and the command's own boolean flags; {help: true} for -h. */
export function parseAgentCommand(
  command: string,
  args: string[],
  booleans: string[] = [],
): (AgentCommandFlags & { help: false }) | { help: true } {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: {
        node: { type: 'string' },
        'state-dir': { type: 'string' },
        output: { type: 'string', short: 'o' },
        help: { type: 'boolean', short: 'h' },
        ...Object.fromEntries(booleans.map((b) => [b, { type: 'boolean' as const }])),
      },
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const detail =
      e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION'
        ? `unknown flag: ${/'([^']+)'/.exec(e.message)?.[1] ?? e.message}`
        : e.message.replace(/^Option /, 'flag ');
    throw new WeftError('WEFT_ERR_USAGE', `${detail}\nRun '${command} --help' for usage.`);
  }
  const v = parsed.values as Record<string, string | boolean | undefined>;
  if (v.help) return { help: true };
  const output = parseOutputFormat(v.output as string | undefined);
  const node = v.node as string | undefined;
  const stateDir = v['state-dir'] as string | undefined;
  if (node === '')
    throw new WeftError('WEFT_ERR_USAGE', `--node needs a node name\nRun '${command} --help' for usage.`);
  return {
    help: false,
    target: () => resolveAgentSocket({ ...(node ? { node } : {}), ...(stateDir ? { stateDir } : {}) }),
    output,
    positionals: parsed.positionals,
    values: v,
  };
}

/** "3m12s", like kubectl's AGE. */
export function shortDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ''}`;
  if (s < 86_400)
    return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60) ? `${Math.floor((s % 3600) / 60)}m` : ''}`;
  return `${Math.floor(s / 86_400)}d${Math.floor((s % 86_400) / 3600) ? `${Math.floor((s % 86_400) / 3600)}h` : ''}`;
}

/** Milliseconds and seconds for humans: "840µs", "12.3ms", "1.24s". */
export function humanSeconds(seconds: number): string {
  if (seconds < 0.001) return `${Math.round(seconds * 1e6)}µs`;
  if (seconds < 1) return `${(seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1)}ms`;
  return `${seconds.toFixed(2)}s`;
}
