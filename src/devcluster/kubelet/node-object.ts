import type { NodeRecord } from '../cluster-record.js';

/**
 * The Node a kubelet registers and the status it heartbeats, shaped like a kind node's so that
 * `kubectl get nodes -o wide` and the agent's node watcher see what they would on kind. Pure.
 */

export interface HostFacts {
  cpus: number;
  memoryKi: number;
  kernelVersion: string;
  osImage: string;
  architecture: string;
  bootID: string;
  machineID: string;
}

export const KUBELET_VERSION = 'v1.32.0-weft';
export const MAX_PODS = 110;

export function nodeLabels(node: NodeRecord, architecture: string): Record<string, string> {
  const labels: Record<string, string> = {
    'kubernetes.io/hostname': node.name,
    'kubernetes.io/os': 'linux',
    'kubernetes.io/arch': architecture,
    'beta.kubernetes.io/os': 'linux',
    'beta.kubernetes.io/arch': architecture,
    'topology.kubernetes.io/zone': 'devcluster',
  };
  if (node.index === 0) labels['node-role.kubernetes.io/control-plane'] = '';
  return labels;
}

export function nodeObject(node: NodeRecord, host: HostFacts): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: node.name,
      labels: nodeLabels(node, host.architecture),
      annotations: {
        'node.alpha.kubernetes.io/ttl': '0',
        'weft.dev/devcluster-netns': node.netns,
        'weft.dev/devcluster-cgroup': node.cgroup,
      },
    },
    spec: { podCIDR: node.podCIDR, podCIDRs: [node.podCIDR] },
  };
}

export function nodeStatus(
  node: NodeRecord,
  host: HostFacts,
  now: string,
  readySince: string,
): Record<string, unknown> {
  const resources = {
    cpu: String(host.cpus),
    memory: `${host.memoryKi}Ki`,
    pods: String(MAX_PODS),
    'ephemeral-storage': '100Gi',
  };
  const condition = (type: string, status: 'True' | 'False', reason: string, message: string) => ({
    type,
    status,
    reason,
    message,
    lastHeartbeatTime: now,
    lastTransitionTime: readySince,
  });
  return {
    capacity: resources,
    allocatable: resources,
    conditions: [
      condition(
        'MemoryPressure',
        'False',
        'KubeletHasSufficientMemory',
        'kubelet has sufficient memory available',
      ),
      condition('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'),
      condition('PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'),
      condition('Ready', 'True', 'KubeletReady', 'kubelet is posting ready status'),
    ],
    addresses: [
      { type: 'InternalIP', address: node.ip },
      { type: 'Hostname', address: node.name },
    ],
    daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
    nodeInfo: {
      machineID: host.machineID,
      systemUUID: host.machineID,
      bootID: host.bootID,
      kernelVersion: host.kernelVersion,
      osImage: host.osImage,
      containerRuntimeVersion: 'weft-devcluster://0.1.0',
      kubeletVersion: KUBELET_VERSION,
      kubeProxyVersion: '',
      operatingSystem: 'linux',
      architecture: host.architecture,
    },
  };
}
