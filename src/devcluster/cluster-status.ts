import { WeftError } from '../shared/errors.js';
import {
  type ClusterRecord,
  listClusterNames,
  readClusterRecord,
  readDaemonRecord,
  readPodRecords,
} from './cluster-record.js';
import { AGENT_METRICS_PORT } from './node-daemons.js';
import { isRunning } from './process-record.js';

/**
 * What `weft devcluster status` and `list` show: the record, joined with what the API server
 * says about nodes and pods when the daemon runs.
 */

export interface NodeStatusView {
  name: string;
  roles: string;
  ready: 'True' | 'False' | 'Unknown';
  internalIP: string;
  podCIDR: string;
  netns: string;
  cgroup: string;
  /** The node's weft agent: "Ready", "NotReady: <reason>", "Down" (not answering) or "None" (--no-agent). */
  agent: string;
}

export interface PodStatusView {
  namespace: string;
  name: string;
  node: string;
  ip: string;
  phase: string;
  ready: string;
  restarts: number;
}

export interface ClusterStatusView {
  name: string;
  state: 'Running' | 'Creating' | 'Stopped';
  api: { hostURL?: string; internalURL?: string; reachable: boolean; error?: string };
  kubeconfig?: string;
  daemon?: { pid: number; running: boolean };
  networks: { nodes: string; pods: string; services: string; bridge: string; bridgeIP: string };
  nodes: NodeStatusView[];
  pods: PodStatusView[];
}

export async function clusterStatus(name: string): Promise<ClusterStatusView> {
  const rec = readClusterRecord(name);
  if (!rec) throw new WeftError('WEFT_ERR_NOT_FOUND', `no devcluster named "${name}"`);
  const daemon = readDaemonRecord(name);
  const daemonRunning =
    daemon !== undefined && isRunning({ pid: daemon.pid, startTime: daemon.startTime, role: 'daemon' });
  const view: ClusterStatusView = {
    name,
    state: !daemonRunning ? 'Stopped' : rec.phase === 'running' ? 'Running' : 'Creating',
    api: { hostURL: daemon?.apiServer.hostURL, internalURL: daemon?.apiServer.internalURL, reachable: false },
    kubeconfig: daemon?.kubeconfig,
    daemon: daemon ? { pid: daemon.pid, running: daemonRunning } : undefined,
    networks: {
      nodes: rec.plan.nodeCIDR,
      pods: rec.plan.podCIDR,
      services: rec.plan.serviceCIDR,
      bridge: rec.bridge,
      bridgeIP: rec.plan.bridgeIP,
    },
    nodes: rec.nodes.map((n) => ({
      name: n.name,
      roles: n.index === 0 ? 'control-plane' : '<none>',
      ready: 'Unknown',
      internalIP: n.ip,
      podCIDR: n.podCIDR,
      netns: n.netns,
      cgroup: n.cgroup,
      agent: rec.agents === false ? 'None' : 'Down',
    })),
    pods: [],
  };
  if (rec.agents !== false) {
    await Promise.all(
      view.nodes.map(async (n) => {
        n.agent = await agentReadiness(n.internalIP);
      }),
    );
  }
  if (daemonRunning && daemon) {
    try {
      await fillFromApi(view, daemon.kubeconfig);
      view.api.reachable = true;
    } catch (err) {
      view.api.error = (err as Error).message;
    }
  }
  if (!view.api.reachable) view.pods = podsFromRecords(name);
  return view;
}

/** The agent's /readyz on the node's metrics port, as a kubelet's readiness probe would ask it. */
async function agentReadiness(nodeIP: string): Promise<string> {
  try {
    const res = await fetch(`http://${nodeIP}:${AGENT_METRICS_PORT}/readyz`, {
      signal: AbortSignal.timeout(1_000),
    });
    if (res.status === 200) return 'Ready';
    const body = (await res.json().catch(() => ({}))) as { reason?: string };
    return `NotReady: ${body.reason ?? `HTTP ${res.status}`}`;
  } catch {
    return 'Down';
  }
}

async function fillFromApi(view: ClusterStatusView, kubeconfig: string): Promise<void> {
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(kubeconfig);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const [nodes, pods] = await Promise.all([core.listNode(), core.listPodForAllNamespaces()]);
  for (const n of view.nodes) {
    const api = nodes.items.find((x) => x.metadata?.name === n.name);
    const ready = api?.status?.conditions?.find((c) => c.type === 'Ready')?.status;
    n.ready = ready === 'True' || ready === 'False' ? ready : 'Unknown';
  }
  view.pods = pods.items
    .map((p) => {
      const statuses = p.status?.containerStatuses ?? [];
      const total = p.spec?.containers.length ?? 0;
      const deleting = p.metadata?.deletionTimestamp != null;
      return {
        namespace: p.metadata?.namespace ?? '',
        name: p.metadata?.name ?? '',
        node: p.spec?.nodeName ?? '',
        ip: p.status?.podIP ?? '',
        phase: deleting ? 'Terminating' : (p.status?.phase ?? 'Pending'),
        ready: `${statuses.filter((s) => s.ready).length}/${total}`,
        restarts: statuses.reduce((sum, s) => sum + (s.restartCount ?? 0), 0),
      };
    })
    .sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
}

function podsFromRecords(name: string): PodStatusView[] {
  return readPodRecords(name)
    .pods.map((p) => ({
      namespace: p.namespace,
      name: p.name,
      node: p.node,
      ip: p.ip ?? '',
      phase: 'Unknown',
      ready: `?/${p.containers.length}`,
      restarts: 0,
    }))
    .sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
}

export interface ClusterListEntry {
  name: string;
  state: 'Running' | 'Creating' | 'Stopped' | 'Broken';
  nodes: number;
  api?: string;
  createdAt?: string;
}

export function listClusters(): ClusterListEntry[] {
  return listClusterNames().map((name) => {
    let rec: ClusterRecord | undefined;
    try {
      rec = readClusterRecord(name);
    } catch {
      return { name, state: 'Broken', nodes: 0 };
    }
    if (!rec) return { name, state: 'Broken', nodes: 0 };
    const daemon = readDaemonRecord(name);
    const running =
      daemon !== undefined && isRunning({ pid: daemon.pid, startTime: daemon.startTime, role: 'daemon' });
    return {
      name,
      state: !running ? 'Stopped' : rec.phase === 'running' ? 'Running' : 'Creating',
      nodes: rec.nodes.length,
      api: daemon?.apiServer.hostURL,
      createdAt: rec.createdAt,
    };
  });
}
