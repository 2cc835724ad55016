// kube-proxy's iptables mode, as the peer of bench/lb.ts: the iptables-restore input that
// kube-proxy (pkg/proxy/iptables/proxier.go, v1.28-1.31) writes for ClusterIP Services, and the
// jump rules it inserts into the built-in chains. Pure functions; bench/lb.ts installs the
// output only inside its own node namespace.
//
// What is reproduced, rule for rule:
//   nat  KUBE-SERVICES: one rule per Service port (-d clusterIP --dport) → KUBE-SVC-<hash>,
//        then the KUBE-NODEPORTS rule, which kube-proxy always keeps last
//   nat  KUBE-SVC-<hash>: masquerade for sources outside --cluster-cidr, then one rule per
//        endpoint with `-m statistic --mode random --probability 1/(n-i)` (none on the last)
//   nat  KUBE-SEP-<hash>: hairpin masquerade (-s endpoint → KUBE-MARK-MASQ), DNAT to the endpoint
//   nat  KUBE-MARK-MASQ / KUBE-POSTROUTING: the 0x4000 mark and MASQUERADE --random-fully
//   filter KUBE-FORWARD and the empty KUBE-SERVICES/EXTERNAL-SERVICES/NODEPORTS/PROXY-FIREWALL
//   jumps: nat PREROUTING/OUTPUT → KUBE-SERVICES, nat POSTROUTING → KUBE-POSTROUTING, and the
//        filter INPUT/FORWARD/OUTPUT jumps, each inserted at the top as kube-proxy does
// Chain names are kube-proxy's: base32(sha256(servicePortName + protocol [+ endpoint]))[:16].
import { createHash } from 'node:crypto';

export interface KubeProxyEndpoint {
  ip: string;
  port: number;
}

export interface KubeProxyService {
  namespace: string;
  name: string;
  portName: string;
  clusterIP: string;
  port: number;
  protocol: 'TCP' | 'UDP';
  endpoints: KubeProxyEndpoint[];
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 (Go's base32.StdEncoding), enough of it for a 16-character prefix. */
function base32(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

function hash16(text: string): string {
  return base32(createHash('sha256').update(text).digest()).slice(0, 16);
}

/** "namespace/name:portName", kube-proxy's ServicePortName.String(). */
export function servicePortName(s: KubeProxyService): string {
  return `${s.namespace}/${s.name}${s.portName ? `:${s.portName}` : ''}`;
}

/** KUBE-SVC-<hash>: servicePortChainName(servicePortName, protocol). */
export function serviceChain(s: KubeProxyService): string {
  return `KUBE-SVC-${hash16(servicePortName(s) + s.protocol.toLowerCase())}`;
}

/** KUBE-SEP-<hash>: servicePortEndpointChainName(servicePortName, protocol, "ip:port"). */
export function endpointChain(s: KubeProxyService, e: KubeProxyEndpoint): string {
  return `KUBE-SEP-${hash16(`${servicePortName(s)}${s.protocol.toLowerCase()}${e.ip}:${e.port}`)}`;
}

/** Go's fmt.Sprintf("%0.10f", 1/n), as kube-proxy's probability(). */
export function probability(n: number): string {
  return (1 / n).toFixed(10);
}

const quote = (comment: string) => (/[\s"]/.test(comment) ? `"${comment}"` : comment);

/**
 * The iptables-restore input of one full kube-proxy sync (filter and nat tables), in the order
 * given: services[services.length - 1] is the last Service rule in KUBE-SERVICES. Restored
 * with `iptables-restore --noflush`, as kube-proxy does: the built-in chains are left alone and
 * each chain declared here is flushed and rewritten.
 */
export function kubeProxyRestore(services: readonly KubeProxyService[], clusterCIDR: string): string {
  const filter: string[] = [
    '*filter',
    ':KUBE-NODEPORTS - [0:0]',
    ':KUBE-SERVICES - [0:0]',
    ':KUBE-EXTERNAL-SERVICES - [0:0]',
    ':KUBE-FORWARD - [0:0]',
    ':KUBE-PROXY-FIREWALL - [0:0]',
    '-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP',
    '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT',
    '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    'COMMIT',
  ];
  const chains: string[] = [
    ':KUBE-SERVICES - [0:0]',
    ':KUBE-NODEPORTS - [0:0]',
    ':KUBE-POSTROUTING - [0:0]',
    ':KUBE-MARK-MASQ - [0:0]',
  ];
  const rules: string[] = [
    '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN',
    '-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000',
    '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
    '-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000',
  ];
  for (const s of services) {
    const name = servicePortName(s);
    const proto = s.protocol.toLowerCase();
    const svc = serviceChain(s);
    const match = `-m ${proto} -p ${proto} -d ${s.clusterIP} --dport ${s.port}`;
    chains.push(`:${svc} - [0:0]`);
    rules.push(`-A KUBE-SERVICES -m comment --comment ${quote(`${name} cluster IP`)} ${match} -j ${svc}`);
    rules.push(
      `-A ${svc} -m comment --comment ${quote(`${name} cluster IP`)} ${match} ! -s ${clusterCIDR} -j KUBE-MARK-MASQ`,
    );
    const n = s.endpoints.length;
    s.endpoints.forEach((e, i) => {
      const sep = endpointChain(s, e);
      const statistic = i < n - 1 ? ` -m statistic --mode random --probability ${probability(n - i)}` : '';
      rules.push(
        `-A ${svc} -m comment --comment ${quote(`${name} -> ${e.ip}:${e.port}`)}${statistic} -j ${sep}`,
      );
    });
    for (const e of s.endpoints) {
      const sep = endpointChain(s, e);
      chains.push(`:${sep} - [0:0]`);
      rules.push(`-A ${sep} -m comment --comment ${quote(name)} -s ${e.ip}/32 -j KUBE-MARK-MASQ`);
      rules.push(
        `-A ${sep} -m comment --comment ${quote(name)} -m ${proto} -p ${proto} -j DNAT --to-destination ${e.ip}:${e.port}`,
      );
    }
  }
  rules.push(
    '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
  );
  return `${[...filter, '*nat', ...chains, ...rules, 'COMMIT'].join('\n')}\n`;
}

/** One of kube-proxy's jumps: `-m comment --comment C -j TARGET`, for new connections only if `newOnly`. */
function jump(
  table: string,
  chain: string,
  comment: string,
  target: string,
  newOnly = false,
): { table: string; chain: string; rule: string[] } {
  const conntrack = newOnly ? ['-m', 'conntrack', '--ctstate', 'NEW'] : [];
  return { table, chain, rule: [...conntrack, '-m', 'comment', '--comment', comment, '-j', target] };
}

/** kube-proxy's jumps from the built-in chains (iptablesJumpChains), as `-t table ...` argv tails. */
export const kubeProxyJumps: ReadonlyArray<{ table: string; chain: string; rule: string[] }> = [
  jump('filter', 'INPUT', 'kubernetes externally-visible service portals', 'KUBE-EXTERNAL-SERVICES', true),
  jump('filter', 'FORWARD', 'kubernetes externally-visible service portals', 'KUBE-EXTERNAL-SERVICES', true),
  jump('filter', 'INPUT', 'kubernetes health check service ports', 'KUBE-NODEPORTS'),
  jump('filter', 'FORWARD', 'kubernetes service portals', 'KUBE-SERVICES', true),
  jump('filter', 'OUTPUT', 'kubernetes service portals', 'KUBE-SERVICES', true),
  jump('filter', 'FORWARD', 'kubernetes forwarding rules', 'KUBE-FORWARD'),
  jump('filter', 'INPUT', 'kube-proxy firewall rules', 'KUBE-PROXY-FIREWALL', true),
  jump('filter', 'OUTPUT', 'kube-proxy firewall rules', 'KUBE-PROXY-FIREWALL', true),
  jump('filter', 'FORWARD', 'kube-proxy firewall rules', 'KUBE-PROXY-FIREWALL', true),
  jump('nat', 'OUTPUT', 'kubernetes service portals', 'KUBE-SERVICES'),
  jump('nat', 'PREROUTING', 'kubernetes service portals', 'KUBE-SERVICES'),
  jump('nat', 'POSTROUTING', 'kubernetes postrouting rules', 'KUBE-POSTROUTING'),
];

/**
 * The jumps as one iptables-restore --noflush input: `insert` puts each at the top of its
 * built-in chain (kube-proxy's EnsureRule(Prepend)), otherwise each is deleted again. One
 * restore per toggle: iptables-nft reads the table once instead of once per rule.
 */
export function kubeProxyJumpsRestore(insert: boolean): string {
  const lines: string[] = [];
  for (const table of ['filter', 'nat']) {
    lines.push(`*${table}`);
    for (const j of kubeProxyJumps.filter((x) => x.table === table)) {
      const args = j.rule.map((a) => (/[\s]/.test(a) ? `"${a}"` : a)).join(' ');
      lines.push(insert ? `-I ${j.chain} 1 ${args}` : `-D ${j.chain} ${args}`);
    }
    lines.push('COMMIT');
  }
  return `${lines.join('\n')}\n`;
}
