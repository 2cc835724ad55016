import type { BpfLbResponse, BpfLbServiceEntry } from '../agent/api/types.js';
import { LbServiceFlag, LbServiceFlag2 } from '../datapath/lbmap.js';
import { WeftError } from '../shared/errors.js';
import { agentFlagsHelp, agentGet, parseAgentCommand } from './agent-client.js';
import { formatTable, printJson } from './output.js';

const usage = `Show the raw contents of the load-balancing BPF maps, as the programs read them.

Usage:
  weft bpf lb list [flags]

Flags:
      --backends           list the backends map instead (weft_lb{4,6}_backends)
      --revnat             list the reverse NAT map instead (weft_lb{4,6}_reverse_nat)
${agentFlagsHelp}

By default every entry of weft_lb{4,6}_services, as cilium bpf lb list shows them: slot 0 is a
frontend's master (0.0.0.0:0, its backend count and flags), slots 1..n its backends. Entries
of the in-cluster scope of a two-scope frontend carry /i.
`;

function flagNames(flags: number, flags2: number): string[] {
  const names: string[] = [];
  if (flags & LbServiceFlag.nodePort) names.push('NodePort');
  else if (flags & LbServiceFlag.loadBalancer) names.push('LoadBalancer');
  else if (flags & LbServiceFlag.externalIP) names.push('ExternalIP');
  else names.push('ClusterIP');
  if (flags & LbServiceFlag.affinity) names.push('affinity');
  if (flags & LbServiceFlag.externalLocal) names.push('eTP=Local');
  if (flags & LbServiceFlag.sourceRange) names.push('source-ranges');
  if (flags2 & LbServiceFlag2.internalLocal) names.push('iTP=Local');
  if (flags2 & LbServiceFlag2.twoScopes) names.push('two-scopes');
  if (flags2 & LbServiceFlag2.maglev) names.push('maglev');
  return names;
}

const hostPort = (address: string, port: number) =>
  `${address.includes(':') ? `[${address}]` : address}:${port}`;

export function lbServicesTable(lb: BpfLbResponse): string {
  const backends = new Map(lb.backends.map((b) => [b.id, b]));
  const rows = lb.services.map((e: BpfLbServiceEntry) => {
    const k = e.key;
    const service = `${hostPort(k.address, k.port)}/${k.protocol}${k.scope === 'internal' ? '/i' : ''} (${k.slot})`;
    if (k.slot === 0) {
      const extra = flagNames(e.value.flags, e.value.flags2);
      if (e.value.flags & LbServiceFlag.affinity) extra.push(`timeout ${e.value.backendId}s`);
      return [service, `0.0.0.0:0 (${e.value.revNatIndex}) (0) [${extra.join(', ')}] count ${e.value.count}`];
    }
    const b = backends.get(e.value.backendId);
    const target = b
      ? `${hostPort(b.address, b.port)}/${b.protocol}${b.state === 'active' ? '' : ` [${b.state}]`}`
      : `backend ${e.value.backendId} missing`;
    return [service, `${target} (${e.value.revNatIndex}) (${k.slot})`];
  });
  return formatTable(['SERVICE ADDRESS', 'BACKEND ADDRESS (REVNAT_ID) (SLOT)'], rows);
}

export async function run(args: string[]): Promise<number> {
  const flags = parseAgentCommand('weft bpf lb list', args, ['backends', 'revnat']);
  if (flags.help) {
    process.stdout.write(usage);
    return 0;
  }
  const [group, sub, ...rest] = flags.positionals;
  if (group !== 'lb' || sub !== 'list' || rest.length > 0) {
    const got = flags.positionals.join(' ');
    throw new WeftError(
      'WEFT_ERR_USAGE',
      `${got ? `unknown command "${got}" for "weft bpf"` : 'weft bpf needs a subcommand'} (known: lb list)\nRun 'weft bpf --help' for usage.`,
    );
  }
  if (flags.values.backends && flags.values.revnat) {
    throw new WeftError('WEFT_ERR_USAGE', '--backends and --revnat cannot be used together');
  }
  const lb = await agentGet<BpfLbResponse>(flags.target(), '/v1/bpf/lb');
  if (flags.values.backends) {
    if (flags.output === 'json') printJson(lb.backends);
    else {
      const rows = lb.backends.map((b) => [
        String(b.id),
        `${hostPort(b.address, b.port)}/${b.protocol}`,
        b.state,
      ]);
      process.stdout.write(`${formatTable(['BACKEND ID', 'ADDRESS', 'STATE'], rows)}\n`);
    }
    return 0;
  }
  if (flags.values.revnat) {
    if (flags.output === 'json') printJson(lb.reverseNat);
    else {
      const rows = lb.reverseNat.map((r) => [String(r.index), hostPort(r.address, r.port)]);
      process.stdout.write(`${formatTable(['ID', 'FRONTEND ADDRESS'], rows)}\n`);
    }
    return 0;
  }
  if (flags.output === 'json') printJson(lb);
  else process.stdout.write(`${lbServicesTable(lb)}\n`);
  return 0;
}
