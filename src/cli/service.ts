import type { BackendEntry, ServiceEntry } from '../agent/api/types.js';
import { WeftError } from '../shared/errors.js';
import { agentFlagsHelp, agentGet, parseAgentCommand } from './agent-client.js';
import { formatTable, printJson } from './output.js';

const usage = `Show the load-balanced services the agent has programmed: every frontend with its backends.

Usage:
  weft service list [flags]

Flags:
${agentFlagsHelp}

Columns (as cilium service list): ID is the frontend's reverse NAT index; a frontend whose
in-cluster clients get other backends than external ones (externalTrafficPolicy or
internalTrafficPolicy Local) shows its in-cluster backends on a second line marked /i.
`;

function backendLines(list: BackendEntry[]): string[] {
  if (list.length === 0) return ['(no backends: refused)'];
  return list.map((b, i) =>
    b.state === 'missing'
      ? `${i + 1} => backend ${b.id} (missing)`
      : `${i + 1} => ${b.address.includes(':') ? `[${b.address}]` : b.address}:${b.port}/${b.protocol} (${b.state})`,
  );
}

function frontendText(s: ServiceEntry): string {
  const a = s.frontend.address;
  return `${a.includes(':') ? `[${a}]` : a}:${s.frontend.port}/${s.frontend.protocol}`;
}

export function serviceTable(services: ServiceEntry[]): string {
  const rows: string[][] = [];
  for (const s of services) {
    const owner = s.service ? `${s.service.namespace}/${s.service.name}` : '(no Service)';
    const type = [s.type, s.affinityTimeoutSeconds !== undefined ? 'affinity' : '']
      .concat(s.sourceRanges?.length ? [`sourceRanges=${s.sourceRanges.join(',')}`] : [])
      .concat(s.trafficPolicy.external === 'Local' ? ['eTP=Local'] : [])
      .concat(s.trafficPolicy.internal === 'Local' ? ['iTP=Local'] : [])
      .filter(Boolean)
      .join(', ');
    const scopes: Array<[string, BackendEntry[]]> = [[frontendText(s), s.backends]];
    if (s.internalBackends) scopes.push([`${frontendText(s)}/i`, s.internalBackends]);
    for (const [frontend, list] of scopes) {
      backendLines(list).forEach((line, i) => {
        rows.push(i === 0 ? [String(s.id), frontend, type, line, owner] : ['', '', '', line, '']);
      });
    }
  }
  return formatTable(['ID', 'FRONTEND', 'SERVICE TYPE', 'BACKEND', 'SERVICE'], rows);
}

export async function run(args: string[]): Promise<number> {
  const flags = parseAgentCommand('weft service list', args);
  if (flags.help) {
    process.stdout.write(usage);
    return 0;
  }
  const [sub, ...rest] = flags.positionals;
  if (sub !== 'list') {
    throw new WeftError(
      'WEFT_ERR_USAGE',
      sub === undefined
        ? `weft service needs a subcommand: list\nRun 'weft service --help' for usage.`
        : `unknown command "${sub}" for "weft service" (known: list)\nRun 'weft service --help' for usage.`,
    );
  }
  if (rest.length > 0)
    throw new WeftError('WEFT_ERR_USAGE', `weft service list takes no arguments, got "${rest[0]}"`);
  const services = await agentGet<ServiceEntry[]>(flags.target(), '/v1/services');
  if (flags.output === 'json') printJson(services);
  else process.stdout.write(`${serviceTable(services)}\n`);
  return 0;
}
