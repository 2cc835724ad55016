/**
 * `weft agent` flags → a validated AgentConfig. Pure (args and environment in, config or a
 * WEFT_ERR_USAGE error out), so every flag error is unit-tested without root. Flag names are
 * Cilium's where Cilium has one.
 */
import { isAbsolute, join } from 'node:path';
import { parseArgs } from 'node:util';
import { WeftError } from '../shared/errors.js';
import { type ListenAddress, parseServeAddress } from './api/server.js';

export const DEFAULT_BPF_ROOT = '/sys/fs/bpf';
export const DEFAULT_RUN_DIR = '/var/run/weft';
export const DEFAULT_METRICS_ADDR = ':9962';
export const DEFAULT_LB_MAP_MAX = 65_536;
/**
 * The V8 flags the agent runs with: the image sets them in NODE_OPTIONS (deploy/Dockerfile),
 * the devcluster and the lb benchmark on node's command line. Semi-spaces (V8's young
 * generation) of 1 MiB: V8 grows them to 16 MiB each during the first list and full sync,
 * where nearly everything allocated is kept, and an agent is never idle long enough for V8 to
 * shrink them again, so they held 32 MiB of RSS for good. Capped, what survives is promoted at
 * once, which it would be anyway; the sync is no slower (docs/agent.md, Memory).
 */
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];
/** 4 × this sizes the services map, which the kernel caps at 2^24 entries here. */
const MAX_LB_MAP_MAX = 4_194_304;
const logLevels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof logLevels)[number];

export interface AgentConfig {
  nodeName: string;
  kubeconfig?: string;
  bpfRoot: string;
  /** Undefined: the cgroup2 mount point, found at start. */
  cgroupRoot?: string;
  devices: string[];
  stateDir: string;
  /** Undefined: metrics server disabled. */
  metricsAddress?: ListenAddress;
  lbMapMax: number;
  logLevel: LogLevel;
}

export const agentUsage = `Run the weft node agent: it replaces kube-proxy on this node.

Usage:
  weft agent --node-name NAME [flags]

Flags:
      --node-name string               this node's name (env NODE_NAME or K8S_NODE_NAME)
      --kubeconfig string              kubeconfig file (default: in-cluster config in a pod, else $KUBECONFIG, else ~/.kube/config)
      --bpf-root string                bpffs mount; pins go under <bpf-root>/weft/<node-name>/ (default "${DEFAULT_BPF_ROOT}")
      --cgroup-root string             cgroup2 directory the socket load-balancer attaches to (default: the cgroup2 mount)
      --devices strings                uplinks for the NodePort programs, comma-separated or repeated (default: none)
      --state-dir string               state directory, with the API socket agent.sock (default "${DEFAULT_RUN_DIR}/<node-name>")
      --prometheus-serve-addr string   [host]:port for /metrics, /healthz, /readyz; "" disables (default "${DEFAULT_METRICS_ADDR}")
      --bpf-lb-map-max int             entries of each load-balancing map; the services map gets 4x (default ${DEFAULT_LB_MAP_MAX})
      --log-level string               ${logLevels.join(', ')} (default "info"; env WEFT_LOG_LEVEL)
  -h, --help                           help for agent
`;

function usage(message: string): never {
  throw new WeftError('WEFT_ERR_USAGE', `${message}\nRun 'weft agent --help' for usage.`);
}

const dns1123Subdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const ifname = /^[^\s/:]{1,15}$/;

/** Returns the config, or 'help' for -h/--help. Throws WEFT_ERR_USAGE naming the bad flag. */
export function parseAgentArgs(args: string[], env: NodeJS.ProcessEnv = process.env): AgentConfig | 'help' {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(args);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const flag = /'([^']+)'/.exec(e.message)?.[1] ?? e.message;
      usage(`unknown flag: ${flag}`);
    }
    if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') usage(e.message.replace(/^Option /, 'flag '));
    if (e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') usage(`unexpected argument: ${e.message}`);
    throw err;
  }
  const v = parsed.values;
  if (v.help) return 'help';
  if (parsed.positionals.length > 0) usage(`unexpected argument "${parsed.positionals[0]}"`);

  const nodeName = v['node-name'] ?? env.NODE_NAME ?? env.K8S_NODE_NAME;
  if (!nodeName) usage('--node-name is required (or set NODE_NAME)');
  if (nodeName.length > 253 || !dns1123Subdomain.test(nodeName)) {
    usage(`--node-name "${nodeName}" is not a valid node name (lower-case RFC 1123 subdomain)`);
  }

  const absolute = (flag: string, value: string | undefined) => {
    if (value === undefined) return undefined;
    if (value === '' || !isAbsolute(value)) usage(`--${flag} "${value}" must be an absolute path`);
    return value.replace(/\/+$/, '') || '/';
  };
  const bpfRoot = absolute('bpf-root', v['bpf-root']) ?? DEFAULT_BPF_ROOT;
  const cgroupRoot = absolute('cgroup-root', v['cgroup-root']);
  const stateDir = absolute('state-dir', v['state-dir']) ?? join(DEFAULT_RUN_DIR, nodeName);
  if (v.kubeconfig === '') usage('--kubeconfig needs a file');

  const devices: string[] = [];
  for (const d of (v.devices ?? []).flatMap((x) => x.split(','))) {
    const name = d.trim();
    if (name === '') continue;
    if (!ifname.test(name)) usage(`--devices: "${name}" is not an interface name`);
    if (!devices.includes(name)) devices.push(name);
  }

  let lbMapMax = DEFAULT_LB_MAP_MAX;
  if (v['bpf-lb-map-max'] !== undefined) {
    const raw = v['bpf-lb-map-max'];
    lbMapMax = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
    if (!Number.isInteger(lbMapMax) || lbMapMax < 1 || lbMapMax > MAX_LB_MAP_MAX) {
      usage(`--bpf-lb-map-max "${raw}" must be an integer from 1 to ${MAX_LB_MAP_MAX}`);
    }
  }

  const level = v['log-level'] ?? env.WEFT_LOG_LEVEL ?? 'info';
  if (!(logLevels as readonly string[]).includes(level)) {
    usage(`--log-level "${level}" must be one of ${logLevels.join(', ')}`);
  }

  let metricsAddress: ListenAddress | undefined;
  try {
    metricsAddress = parseServeAddress(v['prometheus-serve-addr'] ?? DEFAULT_METRICS_ADDR);
  } catch (err) {
    usage((err as Error).message);
  }

  const config: AgentConfig = {
    nodeName,
    bpfRoot,
    devices,
    stateDir,
    lbMapMax,
    logLevel: level as LogLevel,
  };
  if (v.kubeconfig) config.kubeconfig = v.kubeconfig;
  if (cgroupRoot) config.cgroupRoot = cgroupRoot;
  if (metricsAddress) config.metricsAddress = metricsAddress;
  return config;
}

function parse(args: string[]) {
  return parseArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: {
      'node-name': { type: 'string' },
      kubeconfig: { type: 'string' },
      'bpf-root': { type: 'string' },
      'cgroup-root': { type: 'string' },
      devices: { type: 'string', multiple: true },
      'state-dir': { type: 'string' },
      'prometheus-serve-addr': { type: 'string' },
      'bpf-lb-map-max': { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

/** Where an agent pins its maps and links. */
export function pinRootOf(config: Pick<AgentConfig, 'bpfRoot' | 'nodeName'>): string {
  return join(config.bpfRoot, 'weft', config.nodeName);
}
