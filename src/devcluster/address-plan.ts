import { WeftError } from '../shared/errors.js';
import {
  addressAt,
  type Cidr,
  cidrSize,
  cidrsOverlap,
  formatCidr,
  formatIPv4,
  nthSubnet,
  parseCidr,
  parseIPv4,
} from './ipv4.js';

/**
 * Which addresses a new cluster gets. Pure: the host's routes and addresses and the other
 * clusters' ranges come in as data, so every overlap rule is unit-tested without root.
 */

/** A range somebody already uses, and who: shown to the user when we refuse to overlap it. */
export interface UsedRange {
  cidr: Cidr;
  owner: string;
}

export interface AddressPlanInput {
  nodeCount: number;
  podCIDR: string;
  serviceCIDR: string;
  /** Routes and addresses on the host, and ranges of other devclusters (even ones half-made). */
  used: UsedRange[];
  /** The node network to use; when absent the first free candidate is chosen. */
  nodeCIDR?: string;
}

export interface NodeAddresses {
  index: number;
  ip: string;
  podCIDR: string;
  /** First address of the pod CIDR: the pods' default gateway, held by the node. */
  routerIP: string;
}

export interface AddressPlan {
  nodeCIDR: string;
  bridgeIP: string;
  podCIDR: string;
  serviceCIDR: string;
  nodes: NodeAddresses[];
}

/** Kind's docker network lives in 172.18.0.0/16 (172.17 is docker0); we walk on from there. */
export const NODE_CIDR_CANDIDATES: readonly string[] = Array.from(
  { length: 14 },
  (_, i) => `172.${18 + i}.0.0/16`,
);

export const NODE_POD_PREFIX = 24;
export const MAX_NODES = 100;

export function planAddresses(input: AddressPlanInput): AddressPlan {
  if (!Number.isInteger(input.nodeCount) || input.nodeCount < 1 || input.nodeCount > MAX_NODES) {
    throw new WeftError('WEFT_ERR_USAGE', `--nodes must be a whole number from 1 to ${MAX_NODES}`);
  }
  const pod = parseFlagCidr('--pod-cidr', input.podCIDR);
  const service = parseFlagCidr('--service-cidr', input.serviceCIDR);
  if (pod.prefix > NODE_POD_PREFIX) {
    throw new WeftError(
      'WEFT_ERR_USAGE',
      `--pod-cidr ${formatCidr(pod)} is too small: each node gets a /${NODE_POD_PREFIX} out of it`,
    );
  }
  const perNode = 2 ** (NODE_POD_PREFIX - pod.prefix);
  if (perNode < input.nodeCount) {
    throw new WeftError(
      'WEFT_ERR_USAGE',
      `--pod-cidr ${formatCidr(pod)} holds ${perNode} node /${NODE_POD_PREFIX}s, fewer than --nodes ${input.nodeCount}`,
    );
  }
  // The API server's limit: a larger range cannot be allocated from efficiently.
  if (service.prefix < 12) {
    throw new WeftError(
      'WEFT_ERR_USAGE',
      `--service-cidr ${formatCidr(service)} is too large: the mask must be /12 or longer`,
    );
  }
  if (cidrSize(service) < 4) {
    throw new WeftError('WEFT_ERR_USAGE', `--service-cidr ${formatCidr(service)} is too small`);
  }
  if (cidrsOverlap(pod, service)) {
    throw new WeftError(
      'WEFT_ERR_CIDR_OVERLAP',
      `--pod-cidr ${formatCidr(pod)} overlaps --service-cidr ${formatCidr(service)}; choose disjoint ranges`,
    );
  }
  for (const [flag, cidr] of [
    ['--pod-cidr', pod],
    ['--service-cidr', service],
  ] as const) {
    const clash = input.used.find((u) => cidrsOverlap(u.cidr, cidr));
    if (clash) {
      throw new WeftError(
        'WEFT_ERR_CIDR_OVERLAP',
        `${flag} ${formatCidr(cidr)} overlaps ${formatCidr(clash.cidr)} (${clash.owner}); choose another range`,
      );
    }
  }

  const nodeNet = chooseNodeCidr(input, pod, service);
  const nodes: NodeAddresses[] = [];
  for (let i = 0; i < input.nodeCount; i++) {
    const podSubnet = nthSubnet(pod, NODE_POD_PREFIX, i);
    nodes.push({
      index: i,
      ip: formatIPv4(addressAt(nodeNet, i + 2)),
      podCIDR: formatCidr(podSubnet),
      routerIP: formatIPv4(addressAt(podSubnet, 1)),
    });
  }
  return {
    nodeCIDR: formatCidr(nodeNet),
    bridgeIP: formatIPv4(addressAt(nodeNet, 1)),
    podCIDR: formatCidr(pod),
    serviceCIDR: formatCidr(service),
    nodes,
  };
}

function chooseNodeCidr(input: AddressPlanInput, pod: Cidr, service: Cidr): Cidr {
  const taken: UsedRange[] = [
    ...input.used,
    { cidr: pod, owner: 'this cluster’s --pod-cidr' },
    { cidr: service, owner: 'this cluster’s --service-cidr' },
  ];
  if (input.nodeCIDR !== undefined) {
    const given = parseFlagCidr('node network', input.nodeCIDR);
    if (cidrSize(given) < input.nodeCount + 3) {
      throw new WeftError(
        'WEFT_ERR_USAGE',
        `node network ${formatCidr(given)} is too small for ${input.nodeCount} nodes`,
      );
    }
    const clash = taken.find((u) => cidrsOverlap(u.cidr, given));
    if (clash) {
      throw new WeftError(
        'WEFT_ERR_CIDR_OVERLAP',
        `node network ${formatCidr(given)} overlaps ${formatCidr(clash.cidr)} (${clash.owner})`,
      );
    }
    return given;
  }
  for (const candidate of NODE_CIDR_CANDIDATES) {
    const cidr = parseCidr(candidate);
    if (!taken.some((u) => cidrsOverlap(u.cidr, cidr))) return cidr;
  }
  throw new WeftError(
    'WEFT_ERR_CIDR_EXHAUSTED',
    `no free node network: every candidate (${NODE_CIDR_CANDIDATES[0]} to ${NODE_CIDR_CANDIDATES.at(-1)}) overlaps a route, an address or another devcluster; delete a cluster with 'weft devcluster down --name <name>'`,
  );
}

function parseFlagCidr(flag: string, text: string): Cidr {
  try {
    return parseCidr(text, { strict: true });
  } catch (err) {
    throw new WeftError('WEFT_ERR_USAGE', `${flag}: ${(err as Error).message}`);
  }
}

/** One entry of `ip -j -4 route show table all`. */
export interface IpRouteJson {
  dst?: string;
  type?: string;
  dev?: string;
  table?: string;
}

/** One entry of `ip -j -4 addr show`. */
export interface IpAddrJson {
  ifname?: string;
  addr_info?: Array<{ family?: string; local?: string; prefixlen?: number }>;
}

/**
 * The ranges the host already uses, from `ip -j` output. Default routes say nothing about
 * which ranges are free and are skipped; everything else, in every table, counts.
 */
export function usedRangesFromHost(routes: IpRouteJson[], addrs: IpAddrJson[]): UsedRange[] {
  const used: UsedRange[] = [];
  for (const r of routes) {
    if (!r.dst || r.dst === 'default') continue;
    const cidr = tryParse(r.dst.includes('/') ? r.dst : `${r.dst}/32`);
    if (!cidr || cidr.prefix === 0) continue;
    const where = [
      r.type && r.type !== 'unicast' ? r.type : undefined,
      r.dev ? `dev ${r.dev}` : undefined,
      r.table ? `table ${r.table}` : undefined,
    ]
      .filter(Boolean)
      .join(' ');
    used.push({ cidr, owner: `host route ${r.dst}${where ? ` ${where}` : ''}` });
  }
  for (const link of addrs) {
    for (const a of link.addr_info ?? []) {
      if (a.family !== undefined && a.family !== 'inet') continue;
      if (!a.local || a.prefixlen === undefined) continue;
      const cidr = tryParse(`${a.local}/${a.prefixlen}`);
      if (!cidr) continue;
      used.push({ cidr, owner: `address ${a.local}/${a.prefixlen} on host interface ${link.ifname ?? '?'}` });
    }
  }
  return used;
}

function tryParse(text: string): Cidr | undefined {
  try {
    return parseCidr(text);
  } catch {
    return undefined;
  }
}

/** True when `ip` lies in `cidr` (both as text). */
export function addressInCidr(ip: string, cidr: string): boolean {
  const c = parseCidr(cidr);
  const a = parseIPv4(ip);
  return a >= c.base && a < c.base + cidrSize(c);
}
