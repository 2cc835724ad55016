import type { StatusResponse } from '../agent/api/types.js';
import type { SyncReport } from '../agent/services/reconciler.js';
import { WeftError } from '../shared/errors.js';
import { agentFlagsHelp, agentGet, humanSeconds, parseAgentCommand, shortDuration } from './agent-client.js';
import { formatTable, printJson } from './output.js';

const usage = `Show the node agent's health: Kubernetes API connectivity, the last syncs, map pressure,
and the socket load-balancer and NodePort attachments.

Usage:
  weft status [flags]

Flags:
${agentFlagsHelp}
`;

function syncLine(s: SyncReport | undefined, now: number): string {
  if (!s) return 'none yet';
  const ago = shortDuration((now - s.startedAt) / 1000);
  const changes = [
    `${s.services} Services`,
    `${s.frontendsWritten} frontends written`,
    `${s.frontendsDeleted} deleted`,
    `${s.backendsWritten} backends written`,
    `${s.backendsDeleted} deleted`,
  ];
  if (s.failed > 0) changes.push(`${s.failed} failed`);
  return `${s.kind}, ${ago} ago, took ${humanSeconds(s.durationSeconds)}: ${changes.join(', ')}`;
}

export function statusText(s: StatusResponse, now = Date.now()): string {
  const lines: Array<[string, string]> = [];
  const k = s.kubernetes;
  lines.push([
    'Agent:',
    `${s.health}   weft ${s.version} on node ${s.node} (pid ${s.pid}, up ${shortDuration(s.uptimeSeconds)}, restarts ${s.restarts})`,
  ]);
  lines.push([
    'Kubernetes:',
    `${k.connected ? 'Ok' : 'Disconnected'}   ${k.server} (config: ${k.configSource})`,
  ]);
  for (const r of k.resources) {
    const state = [
      r.synced ? 'synced' : 'not synced',
      r.connected ? 'watching' : `disconnected${r.lastError ? `: ${r.lastError}` : ''}`,
      `${r.objects} objects`,
      `${r.reconnects} reconnects`,
    ];
    lines.push([`  ${r.kind}`, state.join(', ')]);
  }
  lines.push(['Ready:', s.ready ? 'yes (first full sync done)' : 'no (waiting for the first full sync)']);
  lines.push(['Last sync:', syncLine(s.sync.last, now)]);
  lines.push(['Last full sync:', syncLine(s.sync.lastFull, now)]);
  lines.push(['Syncs:', `${s.sync.count} (${s.sync.pending} Services waiting)`]);
  lines.push([
    'Failed Services:',
    s.sync.failedServices.length === 0
      ? '0'
      : s.sync.failedServices.map((f) => `${f.service} (${f.code}, ${f.attempts} attempts)`).join('; '),
  ]);
  const sl = s.socketLb;
  lines.push([
    'Socket LB:',
    sl.attached
      ? `attached to ${sl.cgroup} (${sl.programs.length} programs)${sl.stats ? `; ${sl.stats.translated ?? 0} translated, ${(sl.stats.refused_no_backend ?? 0) + (sl.stats.refused_inconsistent ?? 0)} refused` : ''}`
      : `NOT attached: ${sl.error ?? 'unknown'}`,
  ]);
  const np = s.nodePort;
  if (!np.enabled) lines.push(['NodePort:', `disabled (${np.waiting ?? 'no --devices'})`]);
  else {
    lines.push(['NodePort:', np.waiting ? `waiting: ${np.waiting}` : `node address ${np.nodeIPv4 ?? '?'}`]);
    for (const d of np.devices) {
      const what = d.attached
        ? `attached (ingress program ${d.ingressProgramId}, egress program ${d.egressProgramId})`
        : 'not attached';
      lines.push([`  ${d.device}`, `${what}${d.error ? `; error: ${d.error}` : ''}`]);
    }
  }
  const width = Math.max(...lines.map(([a]) => a.length)) + 2;
  let out = lines.map(([a, b]) => `${a.padEnd(width)}${b}`).join('\n');
  const maps = formatTable(
    ['MAP', 'ENTRIES', 'CAPACITY', 'PRESSURE'],
    s.maps.map((m) => [m.name, String(m.entries), String(m.capacity), `${(m.pressure * 100).toFixed(1)}%`]),
  );
  out += `\n\nBPF maps:\n${maps
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n')}`;
  if (s.problems.length > 0) out += `\n\nProblems:\n${s.problems.map((p) => `  - ${p}`).join('\n')}`;
  return out;
}

export async function run(args: string[]): Promise<number> {
  const flags = parseAgentCommand('weft status', args);
  if (flags.help) {
    process.stdout.write(usage);
    return 0;
  }
  if (flags.positionals.length > 0) {
    throw new WeftError('WEFT_ERR_USAGE', `weft status takes no arguments, got "${flags.positionals[0]}"`);
  }
  const status = await agentGet<StatusResponse>(flags.target(), '/v1/status');
  if (flags.output === 'json') {
    printJson(status);
    return 0;
  }
  process.stdout.write(`${statusText(status)}\n`);
  // Like `cilium status`: the table exits 1 when the agent is not healthy (scripts test it);
  // -o json always exits 0 with the object, whose "health" says it.
  return statusExitCode(status);
}

/** 0 when the agent is Ok; 1 when it is Starting or Degraded. */
export function statusExitCode(status: Pick<StatusResponse, 'health'>): number {
  return status.health === 'Ok' ? 0 : 1;
}
