import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { WeftError } from '../shared/errors.js';

/**
 * The naming scheme of everything a devcluster creates on the host. `down` finds leftovers
 * of a crashed `up` by these names as well as by the record, so every name is derived from
 * the cluster name alone (plus the node index or pod UID) and recognisable without a record.
 */

/** Like kind: lowercase DNS label characters; short enough that node names stay readable. */
const CLUSTER_NAME = /^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$/;

export function validateClusterName(name: string): string {
  if (!CLUSTER_NAME.test(name)) {
    throw new WeftError(
      'WEFT_ERR_USAGE',
      `invalid cluster name "${name}": use 1-40 lowercase letters, digits and '-', starting and ending with a letter or digit`,
    );
  }
  return name;
}

/** Kind's node names: <name>-control-plane, <name>-worker, <name>-worker2, ... */
export function nodeNames(cluster: string, count: number): string[] {
  const names = [`${cluster}-control-plane`];
  for (let i = 1; i < count; i++) names.push(i === 1 ? `${cluster}-worker` : `${cluster}-worker${i}`);
  return names;
}

/** A node's network namespace is named like the node (as kind's node containers are). */
export function isNodeNetnsOf(cluster: string, netns: string): boolean {
  if (netns === `${cluster}-control-plane`) return true;
  const rest = netns.startsWith(`${cluster}-worker`)
    ? netns.slice(cluster.length + '-worker'.length)
    : undefined;
  return rest !== undefined && /^(\d*)$/.test(rest) && rest !== '1' && !rest.startsWith('0');
}

function hashHex(text: string, length: number): string {
  return createHash('sha256').update(text).digest('hex').slice(0, length);
}

/** `<cluster>-pod-<10 hex>`: unique per pod UID, attributable to its cluster. */
export function podNetnsName(cluster: string, podUid: string): string {
  return `${cluster}-pod-${hashHex(`${cluster}/${podUid}`, 10)}`;
}

export function isPodNetnsOf(cluster: string, netns: string): boolean {
  return netns.startsWith(`${cluster}-pod-`) && /^[0-9a-f]{10}$/.test(netns.slice(cluster.length + 5));
}

/**
 * Host-side link names: the bridge `wdc<h8>` and the nodes' uplink veths `wdc<h8>v<i>`, so one
 * prefix finds every host link of a cluster. Linux allows 15 characters.
 */
export function bridgeName(cluster: string): string {
  return `wdc${hashHex(cluster, 8)}`;
}

export function nodeUplinkName(cluster: string, nodeIndex: number): string {
  return `${bridgeName(cluster)}v${nodeIndex}`;
}

export function isHostLinkOf(cluster: string, link: string): boolean {
  const bridge = bridgeName(cluster);
  return link === bridge || new RegExp(`^${bridge}v\\d{1,3}$`).test(link);
}

/** Like Cilium's lxc<hash>: the pod's veth as seen from its node, 15 characters. */
export function podVethName(cluster: string, podUid: string): string {
  return `lxc${hashHex(`${cluster}/${podUid}`, 12)}`;
}

/** The per-node device holding the node's router IP (the first address of its pod CIDR). */
export const NODE_ROUTER_DEVICE = 'lo';

export function clusterCgroupDir(cgroup2Root: string, cluster: string): string {
  return join(cgroup2Root, 'weft-devcluster', cluster);
}

export function nodeCgroupDir(cgroup2Root: string, cluster: string, node: string): string {
  return join(clusterCgroupDir(cgroup2Root, cluster), node);
}

/** Pods' cgroups are named like the kubelet's cgroupfs driver names them: pod<uid>. */
export function podCgroupDir(nodeCgroup: string, podUid: string): string {
  return join(nodeCgroup, `pod${podUid}`);
}

/** The daemon and its helpers (probers) live apart from the nodes, so node cgroups hold only pods. */
export function daemonCgroupDir(cgroup2Root: string, cluster: string): string {
  return join(clusterCgroupDir(cgroup2Root, cluster), 'daemon');
}

/** Where the agent pins its maps and links for a node. */
export function nodePinDir(node: string, bpffs = '/sys/fs/bpf'): string {
  return join(bpffs, 'weft', node);
}

/** All clusters' records live under this directory (WEFT_DEVCLUSTER_ROOT overrides it). */
export function devclusterRoot(): string {
  return process.env.WEFT_DEVCLUSTER_ROOT ?? '/var/lib/weft/devcluster';
}

export function clusterStateDir(cluster: string): string {
  return join(devclusterRoot(), cluster);
}
