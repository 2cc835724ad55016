import { existsSync } from 'node:fs';
import type { NodeRecord, PodSandboxRecord } from './cluster-record.js';
import { ensureCgroup, killCgroupTree, removeCgroupTree } from './cgroup2.js';
import { HostCommandError, ip, runHost } from './host-command.js';
import { podCgroupDir, podNetnsName, podVethName } from './naming.js';
import { terminateRecorded } from './process-record.js';
import { deleteNetns, listNetns } from './topology.js';

/**
 * A pod's sandbox: its network namespace, the veth pair into its node (lxc<hash> on the node,
 * eth0 in the pod with a /32 and a default route via the node's router IP, as Cilium does:
 * every packet a pod sends crosses the node's side of its veth) and its cgroup. hostNetwork
 * pods get only a cgroup... of their own node: they live in the node's netns and cgroup.
 */

export interface SandboxSpec {
  cluster: string;
  node: NodeRecord;
  uid: string;
  namespace: string;
  name: string;
  hostNetwork: boolean;
  containers: string[];
  /** Pod IP for pods with their own network (from the node's allocator). */
  ip?: string;
}

/** The record of a sandbox about to be made: pure. */
export function sandboxRecordFor(spec: SandboxSpec): PodSandboxRecord {
  if (spec.hostNetwork) {
    return {
      uid: spec.uid,
      namespace: spec.namespace,
      name: spec.name,
      node: spec.node.name,
      hostNetwork: true,
      ip: spec.node.ip,
      cgroup: spec.node.cgroup,
      containers: spec.containers,
      processes: [],
    };
  }
  return {
    uid: spec.uid,
    namespace: spec.namespace,
    name: spec.name,
    node: spec.node.name,
    hostNetwork: false,
    netns: podNetnsName(spec.cluster, spec.uid),
    veth: podVethName(spec.cluster, spec.uid),
    ip: spec.ip,
    cgroup: podCgroupDir(spec.node.cgroup, spec.uid),
    containers: spec.containers,
    processes: [],
  };
}

/** `ip -batch` lines in the node: the pod's veth up and a host route to the pod through it. */
export function nodeSideCommands(node: NodeRecord, rec: PodSandboxRecord): string[] {
  return [
    `link set ${rec.veth} up`,
    `route add ${rec.ip}/32 dev ${rec.veth} scope link src ${node.routerIP}`,
  ];
}

/** `ip -batch` lines in the pod: eth0 with the pod IP, the router on-link, default via it. */
export function podSideCommands(node: NodeRecord, rec: PodSandboxRecord): string[] {
  return [
    'link set lo up',
    'link set eth0 up',
    `address add ${rec.ip}/32 dev eth0`,
    `route add ${node.routerIP}/32 dev eth0 scope link`,
    `route add default via ${node.routerIP} dev eth0 src ${rec.ip}`,
  ];
}

/**
 * The whole sandbox as one shell script: netns, veth pair (created straight into the node and
 * the pod), and both sides' addresses and routes. One process spawn per pod instead of four
 * matters: forking the daemon is its largest cost when a hundred pods start at once.
 */
export function sandboxScript(node: NodeRecord, rec: PodSandboxRecord): string {
  return [
    'set -e',
    `ip netns add ${rec.netns}`,
    `ip link add ${rec.veth} netns ${node.netns} type veth peer name eth0 netns ${rec.netns}`,
    `ip -n ${node.netns} -batch - <<'NODE'`,
    ...nodeSideCommands(node, rec),
    'NODE',
    `ip -n ${rec.netns} -batch - <<'POD'`,
    ...podSideCommands(node, rec),
    'POD',
  ].join('\n');
}

/** Creates what the record describes. On failure, removes what it made and rethrows. */
export async function createSandbox(node: NodeRecord, rec: PodSandboxRecord): Promise<void> {
  if (rec.hostNetwork) return;
  if (!rec.netns || !rec.veth || !rec.ip) {
    throw new Error(`sandbox record of ${rec.namespace}/${rec.name} is incomplete`);
  }
  try {
    ensureCgroup(rec.cgroup);
    await runHost('sh', ['-c', sandboxScript(node, rec)]);
  } catch (err) {
    await destroySandbox(node, rec, 0).catch(() => {});
    throw err;
  }
}

/**
 * Is the recorded sandbox whole? Its cgroup exists and, for pods with their own network, its
 * netns holds the default route via the node's router from the pod IP: the script's last step,
 * which it reaches only once the veth, the node side and the pod's address are in place.
 */
export async function sandboxIntact(node: NodeRecord, rec: PodSandboxRecord): Promise<boolean> {
  if (!existsSync(rec.cgroup)) return false;
  if (rec.hostNetwork) return true;
  if (!rec.netns || !rec.veth || !rec.ip || !listNetns().has(rec.netns)) return false;
  try {
    const routes = await ip(['-o', 'route', 'show', 'default'], rec.netns);
    return routes
      .split('\n')
      .some((r) => r.includes(`via ${node.routerIP} dev eth0`) && r.includes(`src ${rec.ip}`));
  } catch {
    return false;
  }
}

/**
 * Ends the sandbox's processes (recorded ones by PID and start time, then whatever else is
 * in its cgroup) and removes its netns, veth and cgroup. Missing pieces are fine.
 */
export async function destroySandbox(
  node: NodeRecord,
  rec: PodSandboxRecord,
  graceMs: number,
): Promise<void> {
  await terminateRecorded(rec.processes, graceMs);
  if (rec.hostNetwork) return;
  await killCgroupTree(rec.cgroup, graceMs);
  let netnsExisted = false;
  if (rec.netns) {
    netnsExisted = listNetns().has(rec.netns);
    const errors = await deleteNetns([rec.netns]);
    if (errors.length > 0) throw new Error(errors.join('; '));
  }
  // Deleting the pod's netns takes eth0 and so its peer on the node with it; only a veth
  // whose pod side never got its namespace needs removing by name.
  if (rec.veth && !netnsExisted) {
    await ip(['link', 'delete', rec.veth], node.netns).catch((err: unknown) => {
      if (!(err instanceof HostCommandError && /Cannot find device/.test(err.stderr))) throw err;
    });
  }
  await removeCgroupTree(rec.cgroup);
}
