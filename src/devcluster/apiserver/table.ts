import { isObject, type JsonObject, type JsonValue } from './json-value.js';
import type { PrinterColumn, ResourceType } from './resource-types.js';

/**
 * Server-side printing (Accept: application/json;as=Table;g=meta.k8s.io;v=v1): the columns
 * kube-apiserver's printers produce for each kind, so `kubectl get` looks the same as on a real
 * cluster; custom resources use the CRD's additionalPrinterColumns.
 */
export interface ColumnDefinition {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

type Cell = string | number | boolean | null;
interface Column {
  name: string;
  type?: string;
  format?: string;
  priority?: number;
  description?: string;
  cell: (o: JsonObject, now: number) => Cell;
}

/** k8s.io/apimachinery/pkg/util/duration.HumanDuration. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) {
    const s = seconds % 60;
    return s === 0 ? `${minutes}m` : `${minutes}m${s}s`;
  }
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) {
    const m = minutes % 60;
    return m === 0 ? `${hours}h` : `${hours}h${m}m`;
  }
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) {
    const h = hours % 24;
    return h === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${h}h`;
  }
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  if (hours < 24 * 365 * 8) {
    const dy = Math.floor(hours / 24) % 365;
    const y = Math.floor(hours / 24 / 365);
    return dy === 0 ? `${y}y` : `${y}y${dy}d`;
  }
  return `${Math.floor(hours / 24 / 365)}y`;
}

function get(o: JsonValue | undefined, ...keys: string[]): JsonValue | undefined {
  let node = o;
  for (const k of keys) node = isObject(node) ? node[k] : undefined;
  return node;
}

function arr(v: JsonValue | undefined): JsonValue[] {
  return Array.isArray(v) ? v : [];
}

function str(v: JsonValue | undefined, fallback = '<none>'): string {
  return v === undefined || v === null || v === '' ? fallback : String(v);
}

function age(o: JsonObject, now: number): string {
  const ts = get(o, 'metadata', 'creationTimestamp');
  if (typeof ts !== 'string') return '<unknown>';
  return humanDuration(now - Date.parse(ts));
}

function labelsText(m: JsonValue | undefined): string {
  if (!isObject(m) || Object.keys(m).length === 0) return '<none>';
  return Object.entries(m)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(',');
}

function selectorText(sel: JsonValue | undefined): string {
  if (!isObject(sel)) return '<none>';
  const parts: string[] = [];
  const ml = sel.matchLabels;
  if (isObject(ml))
    for (const [k, v] of Object.entries(ml).sort(([a], [b]) => (a < b ? -1 : 1)))
      parts.push(`${k}=${String(v)}`);
  for (const e of arr(sel.matchExpressions)) {
    if (!isObject(e)) continue;
    const values = arr(e.values).join(',');
    switch (e.operator) {
      case 'In':
        parts.push(`${String(e.key)} in (${values})`);
        break;
      case 'NotIn':
        parts.push(`${String(e.key)} notin (${values})`);
        break;
      case 'Exists':
        parts.push(String(e.key));
        break;
      case 'DoesNotExist':
        parts.push(`!${String(e.key)}`);
        break;
    }
  }
  return parts.length === 0 ? '<none>' : parts.join(',');
}

const nameColumn: Column = {
  name: 'Name',
  format: 'name',
  description:
    'Name must be unique within a namespace. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names',
  cell: (o) => str(get(o, 'metadata', 'name'), ''),
};
const ageColumn: Column = {
  name: 'Age',
  description: 'CreationTimestamp is a timestamp representing the server time when this object was created.',
  cell: age,
};
/** `-o wide` columns of a workload (Deployment, ReplicaSet, DaemonSet): its containers, images, selector. */
function workloadWideColumns(selectorDescription: string): Column[] {
  return [
    {
      name: 'Containers',
      priority: 1,
      description: 'Names of each container in the template.',
      cell: (o) => workloadImages(o, 'name'),
    },
    {
      name: 'Images',
      priority: 1,
      description: 'Images referenced by each container in the template.',
      cell: (o) => workloadImages(o, 'image'),
    },
    {
      name: 'Selector',
      priority: 1,
      description: selectorDescription,
      cell: (o) => selectorText(get(o, 'spec', 'selector')),
    },
  ];
}
const createdAtColumn: Column = {
  name: 'Created At',
  type: 'date',
  description: 'CreationTimestamp is a timestamp representing the server time when this object was created.',
  cell: (o) => str(get(o, 'metadata', 'creationTimestamp'), ''),
};

function podStatus(o: JsonObject): string {
  let reason = str(get(o, 'status', 'phase'), 'Pending');
  const statusReason = get(o, 'status', 'reason');
  if (typeof statusReason === 'string' && statusReason) reason = statusReason;
  let initializing = false;
  const inits = arr(get(o, 'status', 'initContainerStatuses'));
  inits.forEach((c, i) => {
    if (initializing || !isObject(c)) return;
    const term = get(c, 'state', 'terminated');
    if (isObject(term) && term.exitCode === 0) return;
    initializing = true;
    const waiting = get(c, 'state', 'waiting');
    if (isObject(term)) reason = `Init:${str(term.reason, `ExitCode:${String(term.exitCode)}`)}`;
    else if (isObject(waiting) && waiting.reason && waiting.reason !== 'PodInitializing')
      reason = `Init:${String(waiting.reason)}`;
    else reason = `Init:${i}/${inits.length}`;
  });
  if (!initializing) {
    let hasRunning = false;
    const statuses = arr(get(o, 'status', 'containerStatuses'));
    for (let i = statuses.length - 1; i >= 0; i--) {
      const c = statuses[i];
      if (!isObject(c)) continue;
      const waiting = get(c, 'state', 'waiting');
      const term = get(c, 'state', 'terminated');
      if (isObject(waiting) && waiting.reason) reason = String(waiting.reason);
      else if (isObject(term)) {
        reason = term.reason
          ? String(term.reason)
          : term.signal
            ? `Signal:${String(term.signal)}`
            : `ExitCode:${String(term.exitCode)}`;
      } else if (c.ready === true && isObject(get(c, 'state', 'running'))) hasRunning = true;
    }
    if (reason === 'Completed' && hasRunning) {
      const ready = arr(get(o, 'status', 'conditions')).some(
        (c) => isObject(c) && c.type === 'Ready' && c.status === 'True',
      );
      reason = ready ? 'Running' : 'NotReady';
    }
  }
  if (get(o, 'metadata', 'deletionTimestamp'))
    reason = statusReason === 'NodeLost' ? 'Unknown' : 'Terminating';
  return reason;
}

const podColumns: Column[] = [
  nameColumn,
  {
    name: 'Ready',
    description: 'The aggregate readiness state of this pod for accepting traffic.',
    cell: (o) => {
      const total = arr(get(o, 'spec', 'containers')).length;
      const ready = arr(get(o, 'status', 'containerStatuses')).filter(
        (c) => isObject(c) && c.ready === true,
      ).length;
      return `${ready}/${total}`;
    },
  },
  { name: 'Status', description: 'The aggregate status of the containers in this pod.', cell: podStatus },
  {
    name: 'Restarts',
    description:
      'The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.',
    cell: (o) =>
      String(
        arr(get(o, 'status', 'containerStatuses')).reduce<number>(
          (n, c) => n + (isObject(c) && typeof c.restartCount === 'number' ? c.restartCount : 0),
          0,
        ),
      ),
  },
  ageColumn,
  {
    name: 'IP',
    priority: 1,
    description:
      'IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.',
    cell: (o) => str(get(o, 'status', 'podIP')),
  },
  {
    name: 'Node',
    priority: 1,
    description: 'NodeName is a request to schedule this pod onto a specific node.',
    cell: (o) => str(get(o, 'spec', 'nodeName')),
  },
  {
    name: 'Nominated Node',
    priority: 1,
    description: 'nominatedNodeName is set only when this pod preempts other pods on the node.',
    cell: (o) => str(get(o, 'status', 'nominatedNodeName')),
  },
  {
    name: 'Readiness Gates',
    priority: 1,
    description: 'If specified, all readiness gates will be evaluated for pod readiness.',
    cell: (o) => {
      const gates = arr(get(o, 'spec', 'readinessGates'));
      if (gates.length === 0) return '<none>';
      const conditions = arr(get(o, 'status', 'conditions'));
      const ok = gates.filter(
        (g) =>
          isObject(g) &&
          conditions.some((c) => isObject(c) && c.type === g.conditionType && c.status === 'True'),
      ).length;
      return `${ok}/${gates.length}`;
    },
  },
];

function servicePorts(o: JsonObject): string {
  const ports = arr(get(o, 'spec', 'ports'));
  if (ports.length === 0) return '<none>';
  return ports
    .filter(isObject)
    .map((p) => `${String(p.port)}${p.nodePort ? `:${String(p.nodePort)}` : ''}/${str(p.protocol, 'TCP')}`)
    .join(',');
}

function serviceExternalIP(o: JsonObject): string {
  const type = str(get(o, 'spec', 'type'), 'ClusterIP');
  const external = arr(get(o, 'spec', 'externalIPs')).map(String);
  if (type === 'ExternalName') return str(get(o, 'spec', 'externalName'));
  if (type === 'LoadBalancer') {
    const ingress = arr(get(o, 'status', 'loadBalancer', 'ingress'))
      .filter(isObject)
      .map((i) => str(i.ip ?? i.hostname, ''))
      .filter((s) => s);
    const all = [...ingress, ...external];
    return all.length > 0 ? all.join(',') : '<pending>';
  }
  return external.length > 0 ? external.join(',') : '<none>';
}

const serviceColumns: Column[] = [
  nameColumn,
  {
    name: 'Type',
    description: 'type determines how the Service is exposed.',
    cell: (o) => str(get(o, 'spec', 'type'), 'ClusterIP'),
  },
  {
    name: 'Cluster-IP',
    description: 'clusterIP is the IP address of the service and is usually assigned randomly.',
    cell: (o) => str(get(o, 'spec', 'clusterIP')),
  },
  {
    name: 'External-IP',
    description:
      'externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.',
    cell: serviceExternalIP,
  },
  { name: 'Port(s)', description: 'The list of ports that are exposed by this service.', cell: servicePorts },
  ageColumn,
  {
    name: 'Selector',
    priority: 1,
    description: 'Route service traffic to pods with label keys and values matching this selector.',
    cell: (o) => labelsText(get(o, 'spec', 'selector')),
  },
];

function nodeStatus(o: JsonObject): string {
  const ready = arr(get(o, 'status', 'conditions')).find((c) => isObject(c) && c.type === 'Ready') as
    | JsonObject
    | undefined;
  let status = !ready
    ? 'Unknown'
    : ready.status === 'True'
      ? 'Ready'
      : ready.status === 'False'
        ? 'NotReady'
        : 'Unknown';
  if (get(o, 'spec', 'unschedulable') === true) status += ',SchedulingDisabled';
  return status;
}

function nodeRoles(o: JsonObject): string {
  const labels = get(o, 'metadata', 'labels');
  const roles: string[] = [];
  if (isObject(labels)) {
    for (const [k, v] of Object.entries(labels)) {
      if (k.startsWith('node-role.kubernetes.io/')) roles.push(k.slice('node-role.kubernetes.io/'.length));
      else if (k === 'kubernetes.io/role') roles.push(String(v));
    }
  }
  return roles.length > 0 ? roles.sort().join(',') : '<none>';
}

function nodeAddress(o: JsonObject, type: string): string {
  const a = arr(get(o, 'status', 'addresses')).find((x) => isObject(x) && x.type === type);
  return isObject(a) ? str(a.address) : '<none>';
}

const nodeColumns: Column[] = [
  nameColumn,
  { name: 'Status', description: 'The status of the node', cell: nodeStatus },
  { name: 'Roles', description: 'The roles of the node', cell: nodeRoles },
  ageColumn,
  {
    name: 'Version',
    description: 'Kubelet Version reported by the node.',
    cell: (o) => str(get(o, 'status', 'nodeInfo', 'kubeletVersion'), ''),
  },
  {
    name: 'Internal-IP',
    priority: 1,
    description: 'List of addresses reachable to the node.',
    cell: (o) => nodeAddress(o, 'InternalIP'),
  },
  {
    name: 'External-IP',
    priority: 1,
    description: 'List of addresses reachable to the node.',
    cell: (o) => nodeAddress(o, 'ExternalIP'),
  },
  {
    name: 'OS-Image',
    priority: 1,
    description: 'OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).',
    cell: (o) => str(get(o, 'status', 'nodeInfo', 'osImage'), '<unknown>'),
  },
  {
    name: 'Kernel-Version',
    priority: 1,
    description: 'Kernel Version reported by the node.',
    cell: (o) => str(get(o, 'status', 'nodeInfo', 'kernelVersion'), '<unknown>'),
  },
  {
    name: 'Container-Runtime',
    priority: 1,
    description: 'Container runtime version reported by the node.',
    cell: (o) => str(get(o, 'status', 'nodeInfo', 'containerRuntimeVersion'), '<unknown>'),
  },
];

function endpointSliceEndpoints(o: JsonObject): string {
  const addresses = arr(o.endpoints).flatMap((e) => (isObject(e) ? arr(e.addresses).map(String) : []));
  if (addresses.length === 0) return '<none>';
  const shown = addresses.slice(0, 3).join(',');
  return addresses.length > 3 ? `${shown} + ${addresses.length - 3} more...` : shown;
}

function workloadImages(o: JsonObject, field: 'name' | 'image'): string {
  return str(
    arr(get(o, 'spec', 'template', 'spec', 'containers'))
      .filter(isObject)
      .map((c) => String(c[field] ?? ''))
      .join(','),
  );
}

function num(v: JsonValue | undefined): number {
  return typeof v === 'number' ? v : 0;
}

const columnsByKind: Record<string, Column[]> = {
  '/Pod': podColumns,
  '/Service': serviceColumns,
  '/Node': nodeColumns,
  '/Namespace': [
    nameColumn,
    {
      name: 'Status',
      description: 'The status of the namespace',
      cell: (o) => str(get(o, 'status', 'phase'), ''),
    },
    ageColumn,
  ],
  'discovery.k8s.io/EndpointSlice': [
    nameColumn,
    {
      name: 'AddressType',
      description: 'addressType specifies the type of address carried by this EndpointSlice.',
      cell: (o) => str(o.addressType, ''),
    },
    {
      name: 'Ports',
      description: 'ports specifies the list of network ports exposed by each endpoint in this slice.',
      cell: (o) => {
        const ports = arr(o.ports).filter(isObject);
        if (ports.length === 0) return '<unset>';
        return ports
          .map((p) => (p.port === undefined || p.port === null ? '<unset>' : String(p.port)))
          .join(',');
      },
    },
    {
      name: 'Endpoints',
      description: 'endpoints is a list of unique endpoints in this slice.',
      cell: endpointSliceEndpoints,
    },
    ageColumn,
  ],
  'networking.k8s.io/NetworkPolicy': [
    nameColumn,
    {
      name: 'Pod-Selector',
      description: 'podSelector selects the pods to which this NetworkPolicy object applies.',
      cell: (o) => selectorText(get(o, 'spec', 'podSelector')),
    },
    ageColumn,
  ],
  'apiextensions.k8s.io/CustomResourceDefinition': [nameColumn, createdAtColumn],
  '/ConfigMap': [
    nameColumn,
    {
      name: 'Data',
      type: 'integer',
      description: 'Data contains the configuration data.',
      cell: (o) =>
        (isObject(o.data) ? Object.keys(o.data).length : 0) +
        (isObject(o.binaryData) ? Object.keys(o.binaryData).length : 0),
    },
    ageColumn,
  ],
  '/Secret': [
    nameColumn,
    {
      name: 'Type',
      description: 'Used to facilitate programmatic handling of secret data.',
      cell: (o) => str(o.type, ''),
    },
    {
      name: 'Data',
      type: 'integer',
      description: 'Data contains the secret data.',
      cell: (o) => (isObject(o.data) ? Object.keys(o.data).length : 0),
    },
    ageColumn,
  ],
  '/ServiceAccount': [
    nameColumn,
    {
      name: 'Secrets',
      type: 'integer',
      description:
        'Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.',
      cell: (o) => arr(o.secrets).length,
    },
    ageColumn,
  ],
  '/Event': [
    {
      name: 'Last Seen',
      description: 'The time at which the most recent occurrence of this event was recorded.',
      cell: (o, now) => {
        const t = o.lastTimestamp ?? o.eventTime ?? get(o, 'metadata', 'creationTimestamp');
        return typeof t === 'string' ? humanDuration(now - Date.parse(t)) : '<unknown>';
      },
    },
    {
      name: 'Type',
      description: 'Type of this event (Normal, Warning), new types could be added in the future.',
      cell: (o) => str(o.type, ''),
    },
    {
      name: 'Reason',
      description:
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
      cell: (o) => str(o.reason, ''),
    },
    {
      name: 'Object',
      description: 'The object that this event is about.',
      cell: (o) =>
        `${String(get(o, 'involvedObject', 'kind') ?? '').toLowerCase()}/${str(get(o, 'involvedObject', 'name'), '')}`,
    },
    {
      name: 'Message',
      description: 'A human-readable description of the status of this operation.',
      cell: (o) => str(o.message, ''),
    },
  ],
  'apps/Deployment': [
    nameColumn,
    {
      name: 'Ready',
      description: 'Number of the pod with ready state',
      cell: (o) => `${num(get(o, 'status', 'readyReplicas'))}/${num(get(o, 'spec', 'replicas'))}`,
    },
    {
      name: 'Up-to-date',
      type: 'integer',
      description:
        'Total number of non-terminated pods targeted by this deployment that have the desired template spec.',
      cell: (o) => num(get(o, 'status', 'updatedReplicas')),
    },
    {
      name: 'Available',
      type: 'integer',
      description:
        'Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.',
      cell: (o) => num(get(o, 'status', 'availableReplicas')),
    },
    ageColumn,
    ...workloadWideColumns('Label selector for pods.'),
  ],
  'apps/ReplicaSet': [
    nameColumn,
    {
      name: 'Desired',
      type: 'integer',
      description: 'Number of desired pods.',
      cell: (o) => num(get(o, 'spec', 'replicas')),
    },
    {
      name: 'Current',
      type: 'integer',
      description: 'Number of actual replicas.',
      cell: (o) => num(get(o, 'status', 'replicas')),
    },
    {
      name: 'Ready',
      type: 'integer',
      description: 'Number of ready replicas.',
      cell: (o) => num(get(o, 'status', 'readyReplicas')),
    },
    ageColumn,
    ...workloadWideColumns('Label selector for pods.'),
  ],
  'apps/DaemonSet': [
    nameColumn,
    {
      name: 'Desired',
      type: 'integer',
      description: 'The total number of nodes that should be running the daemon pod.',
      cell: (o) => num(get(o, 'status', 'desiredNumberScheduled')),
    },
    {
      name: 'Current',
      type: 'integer',
      description:
        'The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.',
      cell: (o) => num(get(o, 'status', 'currentNumberScheduled')),
    },
    {
      name: 'Ready',
      type: 'integer',
      description:
        'The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.',
      cell: (o) => num(get(o, 'status', 'numberReady')),
    },
    {
      name: 'Up-to-date',
      type: 'integer',
      description: 'The total number of nodes that are running updated daemon pod',
      cell: (o) => num(get(o, 'status', 'updatedNumberScheduled')),
    },
    {
      name: 'Available',
      type: 'integer',
      description:
        'The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.',
      cell: (o) => num(get(o, 'status', 'numberAvailable')),
    },
    {
      name: 'Node Selector',
      description: 'NodeSelector is a selector which must be true for the pod to fit on a node.',
      cell: (o) => labelsText(get(o, 'spec', 'template', 'spec', 'nodeSelector')),
    },
    ageColumn,
    ...workloadWideColumns('A label query over pods that are managed by the daemon set.'),
  ],
  'rbac.authorization.k8s.io/ClusterRole': [nameColumn, createdAtColumn],
  'rbac.authorization.k8s.io/Role': [nameColumn, createdAtColumn],
  'rbac.authorization.k8s.io/ClusterRoleBinding': [
    nameColumn,
    {
      name: 'Role',
      description: 'RoleRef is the reference to the role.',
      cell: (o) => `${str(get(o, 'roleRef', 'kind'), '')}/${str(get(o, 'roleRef', 'name'), '')}`,
    },
    ageColumn,
  ],
  'rbac.authorization.k8s.io/RoleBinding': [
    nameColumn,
    {
      name: 'Role',
      description: 'RoleRef is the reference to the role.',
      cell: (o) => `${str(get(o, 'roleRef', 'kind'), '')}/${str(get(o, 'roleRef', 'name'), '')}`,
    },
    ageColumn,
  ],
  'coordination.k8s.io/Lease': [
    nameColumn,
    {
      name: 'Holder',
      description: 'The holder of the lease.',
      cell: (o) => str(get(o, 'spec', 'holderIdentity'), ''),
    },
    ageColumn,
  ],
};

/**
 * A tiny JSONPath for printer columns: .a.b, [n], [*] and [?(@.k=="v")] filters. Returns every
 * value found, in order.
 */
export function evalJsonPath(o: JsonValue, path: string): JsonValue[] {
  const tokens =
    path
      .replace(/^\{?\.?/, '')
      .replace(/\}$/, '')
      .match(/\[\?\(@\.[^)]*\)\]|\[[^\]]*\]|[^.[\]]+/g) ?? [];
  let current: JsonValue[] = [o];
  for (const t of tokens) {
    const next: JsonValue[] = [];
    for (const node of current) {
      if (t.startsWith('[?(@.')) {
        const m = /^\[\?\(@\.([\w.-]+)\s*==\s*["']?([^"')]*)["']?\)\]$/.exec(t);
        if (!m || !Array.isArray(node)) continue;
        for (const el of node) {
          const v = evalJsonPath(el, m[1]!)[0];
          if (v !== undefined && String(v) === m[2]) next.push(el);
        }
      } else if (t.startsWith('[')) {
        const inner = t.slice(1, -1);
        if (!Array.isArray(node)) continue;
        if (inner === '*') next.push(...node);
        else if (/^-?\d+$/.test(inner)) {
          const i = Number(inner);
          const el = node[i < 0 ? node.length + i : i];
          if (el !== undefined) next.push(el);
        }
      } else if (isObject(node) && node[t] !== undefined) next.push(node[t]!);
    }
    current = next;
  }
  return current;
}

function customColumns(t: ResourceType, version: string): Column[] {
  const printer: PrinterColumn[] = t.custom?.printerColumns[version] ?? [];
  if (printer.length === 0) return [nameColumn, ageColumn];
  return [
    nameColumn,
    ...printer.map((c) => ({
      name: c.name,
      type: c.type,
      format: c.format ?? '',
      priority: c.priority ?? 0,
      description: c.description ?? '',
      cell: (o: JsonObject, now: number): Cell => {
        const values = evalJsonPath(o, c.jsonPath);
        if (values.length === 0) return null;
        const v = values[0]!;
        if (c.type === 'date' && typeof v === 'string') return humanDuration(now - Date.parse(v));
        if (values.length > 1)
          return values
            .map((x) => (isObject(x) || Array.isArray(x) ? JSON.stringify(x) : String(x)))
            .join(',');
        if (isObject(v) || Array.isArray(v)) return JSON.stringify(v);
        if (c.type === 'integer' || c.type === 'number') return typeof v === 'number' ? v : null;
        if (c.type === 'boolean') return typeof v === 'boolean' ? v : null;
        return String(v);
      },
    })),
  ];
}

function columnsFor(t: ResourceType, version: string): Column[] {
  if (t.custom) return customColumns(t, version);
  return columnsByKind[`${t.group}/${t.kind}`] ?? [nameColumn, ageColumn];
}

export type IncludeObject = 'None' | 'Metadata' | 'Object';

export function toTable(
  t: ResourceType,
  version: string,
  objects: JsonObject[],
  listMeta: JsonObject,
  include: IncludeObject,
  withColumns = true,
): JsonObject {
  const columns = columnsFor(t, version);
  const now = Date.now();
  const rows = objects.map((o) => {
    const row: JsonObject = { cells: columns.map((c) => c.cell(o, now)) };
    if (include === 'Object') row.object = o;
    else if (include === 'Metadata') {
      row.object = {
        kind: 'PartialObjectMetadata',
        apiVersion: 'meta.k8s.io/v1',
        metadata: o.metadata ?? {},
      };
    }
    return row;
  });
  const table: JsonObject = { kind: 'Table', apiVersion: 'meta.k8s.io/v1', metadata: listMeta };
  if (withColumns) {
    table.columnDefinitions = columns.map((c) => ({
      name: c.name,
      type: c.type ?? 'string',
      format: c.format ?? '',
      description: c.description ?? '',
      priority: c.priority ?? 0,
    }));
  }
  table.rows = rows;
  return table;
}
