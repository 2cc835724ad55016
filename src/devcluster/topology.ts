import { existsSync, readdirSync } from 'node:fs';
import { subsysLogger } from '../shared/log.js';
import {
  type AddressPlan,
  type IpAddrJson,
  type IpRouteJson,
  type UsedRange,
  usedRangesFromHost,
} from './address-plan.js';
import { ensureCgroup } from './cgroup2.js';
import type { ClusterRecord, NodeRecord } from './cluster-record.js';
import { HostCommandError, ip, ipBatch, runHost, sysctlInNetns } from './host-command.js';
import { parseCidr } from './ipv4.js';
import {
  bridgeName,
  clusterCgroupDir,
  daemonCgroupDir,
  NODE_ROUTER_DEVICE,
  nodeCgroupDir,
  nodeNames,
  nodePinDir,
  nodeUplinkName,
} from './naming.js';

const log = subsysLogger('devcluster-topology');

/**
 * The cluster's network: a bridge on the host (the "docker network"), one network namespace
 * per node attached to it by a veth, per-node pod CIDRs routed between the nodes. Nodes have
 * no default route: nothing they or their pods send can leave for the host's uplink.
 */

/** The record of a cluster about to be made: pure, from the plan. */
export function clusterRecordFor(
  name: string,
  plan: AddressPlan,
  cgroup2Root: string,
  now: Date,
): ClusterRecord {
  const names = nodeNames(name, plan.nodes.length);
  const nodes: NodeRecord[] = plan.nodes.map((n, i) => {
    const nodeName = names[i] ?? `${name}-node${i}`;
    return {
      name: nodeName,
      index: i,
      netns: nodeName,
      uplink: nodeUplinkName(name, i),
      ip: n.ip,
      podCIDR: n.podCIDR,
      routerIP: n.routerIP,
      cgroup: nodeCgroupDir(cgroup2Root, name, nodeName),
      pinDir: nodePinDir(nodeName),
    };
  });
  return {
    version: 1,
    name,
    createdAt: now.toISOString(),
    phase: 'creating',
    nodeCount: nodes.length,
    plan,
    bridge: bridgeName(name),
    cgroup2Root,
    clusterCgroup: clusterCgroupDir(cgroup2Root, name),
    daemonCgroup: daemonCgroupDir(cgroup2Root, name),
    nodes,
  };
}

/** Names the record wants that somebody else already holds: checked before anything is made. */
export function conflictingNames(
  rec: ClusterRecord,
  existing: { netns: Set<string>; links: Set<string> },
): string[] {
  const conflicts: string[] = [];
  if (existing.links.has(rec.bridge)) conflicts.push(`link ${rec.bridge}`);
  for (const n of rec.nodes) {
    if (existing.netns.has(n.netns)) conflicts.push(`network namespace ${n.netns}`);
    if (existing.links.has(n.uplink)) conflicts.push(`link ${n.uplink}`);
  }
  if (existsSync(rec.clusterCgroup)) conflicts.push(`cgroup ${rec.clusterCgroup}`);
  return conflicts;
}

export function listNetns(): Set<string> {
  try {
    return new Set(readdirSync('/run/netns'));
  } catch {
    return new Set();
  }
}

export async function listHostLinks(): Promise<Set<string>> {
  const out = await ip(['-j', 'link', 'show']);
  const links = JSON.parse(out) as Array<{ ifname?: string }>;
  return new Set(links.map((l) => l.ifname ?? '').filter(Boolean));
}

/** Lines for `ip -batch` inside a node: its uplink, router IP and every route it needs. */
export function nodeNetworkCommands(rec: ClusterRecord, node: NodeRecord): string[] {
  const nodePrefix = parseCidr(rec.plan.nodeCIDR).prefix;
  const lines = [
    'link set lo up',
    'link set eth0 up',
    `address add ${node.ip}/${nodePrefix} dev eth0`,
    `address add ${node.routerIP}/32 dev ${NODE_ROUTER_DEVICE}`,
    // Pod and service addresses that nobody here routes must fail at once, not wander off
    // towards the host (which has no route for them either).
    `route add unreachable ${rec.plan.podCIDR}`,
    `route add unreachable ${rec.plan.serviceCIDR}`,
  ];
  for (const other of rec.nodes) {
    if (other.name === node.name) continue;
    lines.push(`route add ${other.podCIDR} via ${other.ip} dev eth0`);
  }
  return lines;
}

/** The node's sysctls: a router that forwards between pods, without reverse-path surprises. */
export const NODE_SYSCTLS: Record<string, number> = {
  'net.ipv4.ip_forward': 1,
  'net.ipv4.conf.all.rp_filter': 0,
  'net.ipv4.conf.default.rp_filter': 0,
  'net.ipv4.conf.all.send_redirects': 0,
  'net.ipv4.conf.default.send_redirects': 0,
  'net.ipv4.conf.all.accept_redirects': 0,
  'net.ipv4.conf.default.accept_redirects': 0,
};

/**
 * Pods reach the bridge (the API server) from their own IPs; the host has no route back to
 * pod CIDRs (several clusters may share one), so the node masquerades pod traffic that
 * leaves the cluster's pod network, as kind's nodes do.
 */
export function masqueradeRule(rec: ClusterRecord, node: NodeRecord): string[] {
  return [
    '-w',
    '-t',
    'nat',
    '-A',
    'POSTROUTING',
    '-s',
    node.podCIDR,
    '!',
    '-d',
    rec.plan.podCIDR,
    '-o',
    'eth0',
    '-m',
    'comment',
    '--comment',
    'weft devcluster: pod traffic leaving the cluster',
    '-j',
    'MASQUERADE',
  ];
}

export async function createBridge(rec: ClusterRecord): Promise<void> {
  const prefix = parseCidr(rec.plan.nodeCIDR).prefix;
  await ipBatch(undefined, [
    `link add ${rec.bridge} type bridge`,
    `link set ${rec.bridge} up`,
    `address add ${rec.plan.bridgeIP}/${prefix} dev ${rec.bridge}`,
  ]);
}

/** One node: its namespace, its veth to the bridge, addresses, routes, sysctls, NAT, cgroup. */
export async function createNode(rec: ClusterRecord, node: NodeRecord): Promise<void> {
  log.debug({ node: node.name }, 'creating node');
  await ip(['netns', 'add', node.netns]);
  await sysctlInNetns(node.netns, NODE_SYSCTLS);
  await ipBatch(undefined, [
    `link add ${node.uplink} type veth peer name eth0 netns ${node.netns}`,
    `link set ${node.uplink} master ${rec.bridge}`,
    `link set ${node.uplink} up`,
  ]);
  await ipBatch(node.netns, nodeNetworkCommands(rec, node));
  await runHost('nsenter', [
    `--net=/run/netns/${node.netns}`,
    '--',
    'iptables',
    ...masqueradeRule(rec, node),
  ]);
  ensureCgroup(node.cgroup);
}

export async function createClusterCgroups(rec: ClusterRecord): Promise<void> {
  ensureCgroup(rec.clusterCgroup);
  ensureCgroup(rec.daemonCgroup);
}

/** Deletes network namespaces (missing ones are fine); -force goes on past errors. */
export async function deleteNetns(names: string[]): Promise<string[]> {
  const errors: string[] = [];
  const present = listNetns();
  const todo = names.filter((n) => present.has(n));
  if (todo.length === 0) return errors;
  try {
    await runHost('ip', ['-force', '-batch', '-'], {
      input: `${todo.map((n) => `netns delete ${n}`).join('\n')}\n`,
    });
  } catch (err) {
    const still = listNetns();
    for (const n of todo) if (still.has(n)) errors.push(`network namespace ${n}: ${(err as Error).message}`);
  }
  return errors;
}

export async function deleteHostLinks(names: string[]): Promise<string[]> {
  const errors: string[] = [];
  for (const name of names) {
    try {
      await ip(['link', 'delete', name]);
    } catch (err) {
      if (err instanceof HostCommandError && /Cannot find device/.test(err.stderr)) continue;
      errors.push(`link ${name}: ${(err as Error).message}`);
    }
  }
  return errors;
}

/** Every IPv4 range routed or addressed on the host, from `ip -j`. */
export async function hostUsedRanges(): Promise<UsedRange[]> {
  const [routes, addrs] = await Promise.all([
    ip(['-j', '-4', 'route', 'show', 'table', 'all']),
    ip(['-j', '-4', 'address', 'show']),
  ]);
  return usedRangesFromHost(JSON.parse(routes) as IpRouteJson[], JSON.parse(addrs) as IpAddrJson[]);
}
