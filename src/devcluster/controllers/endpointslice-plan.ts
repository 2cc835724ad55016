import { isIP } from 'node:net';

/**
 * The EndpointSlices a Service should have, computed the way kube-controller-manager's
 * endpointslice controller computes them (k8s.io/endpointslice reconciler): one group of slices
 * per address type and per distinct set of resolved ports, at most maxEndpointsPerSlice
 * endpoints each, existing slices kept and filled before new ones are made, so that a change to
 * one pod rewrites one slice. Pure: the controller loop feeds it informer state and applies the
 * plan it returns.
 *
 * Inputs are typed as they arrive over the wire (any field may be missing or null), not as
 * client-node's models promise, because watch events carry raw JSON.
 */

export const ENDPOINTSLICE_CONTROLLER_NAME = 'endpointslice-controller.k8s.io';
export const LABEL_SERVICE_NAME = 'kubernetes.io/service-name';
export const LABEL_MANAGED_BY = 'endpointslice.kubernetes.io/managed-by';
export const LABEL_HEADLESS = 'service.kubernetes.io/headless';
export const LABEL_TOPOLOGY_ZONE = 'topology.kubernetes.io/zone';
export const ANNOTATION_TOPOLOGY_MODE = 'service.kubernetes.io/topology-mode';
export const ANNOTATION_TOPOLOGY_AWARE_HINTS = 'service.kubernetes.io/topology-aware-hints';
export const MAX_ENDPOINTS_PER_SLICE = 100;

type Maybe<T> = T | null | undefined;
type Labels = Maybe<Record<string, string>>;

export interface ObjectMetaInput {
  name?: Maybe<string>;
  namespace?: Maybe<string>;
  uid?: Maybe<string>;
  labels?: Labels;
  annotations?: Labels;
  resourceVersion?: Maybe<string>;
  deletionTimestamp?: Maybe<Date | string>;
  ownerReferences?: Maybe<OwnerReference[]>;
  generateName?: Maybe<string>;
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: Maybe<boolean>;
  blockOwnerDeletion?: Maybe<boolean>;
}

export interface ServiceInput {
  metadata?: Maybe<ObjectMetaInput>;
  spec?: Maybe<{
    selector?: Labels;
    type?: Maybe<string>;
    clusterIP?: Maybe<string>;
    ipFamilies?: Maybe<string[]>;
    publishNotReadyAddresses?: Maybe<boolean>;
    trafficDistribution?: Maybe<string>;
    ports?: Maybe<
      {
        name?: Maybe<string>;
        port?: Maybe<number>;
        protocol?: Maybe<string>;
        targetPort?: Maybe<number | string>;
        appProtocol?: Maybe<string>;
      }[]
    >;
  }>;
}

interface ContainerPortsInput {
  ports?: Maybe<{ name?: Maybe<string>; containerPort?: Maybe<number>; protocol?: Maybe<string> }[]>;
  restartPolicy?: Maybe<string>;
}

export interface PodInput {
  metadata?: Maybe<ObjectMetaInput>;
  spec?: Maybe<{
    nodeName?: Maybe<string>;
    hostname?: Maybe<string>;
    subdomain?: Maybe<string>;
    containers?: Maybe<ContainerPortsInput[]>;
    initContainers?: Maybe<ContainerPortsInput[]>;
  }>;
  status?: Maybe<{
    phase?: Maybe<string>;
    podIP?: Maybe<string>;
    podIPs?: Maybe<{ ip?: Maybe<string> }[]>;
    conditions?: Maybe<{ type?: Maybe<string>; status?: Maybe<string> }[]>;
  }>;
}

export interface NodeInput {
  metadata?: Maybe<ObjectMetaInput>;
  status?: Maybe<{ conditions?: Maybe<{ type?: Maybe<string>; status?: Maybe<string> }[]> }>;
}

export interface EndpointPort {
  name: string;
  port: number;
  protocol: string;
  appProtocol?: string;
}

export interface Endpoint {
  addresses: string[];
  /** Always set by this controller; read back as the API has them (absent = unknown). */
  conditions: { ready?: boolean; serving?: boolean; terminating?: boolean };
  hostname?: string;
  nodeName?: string;
  zone?: string;
  targetRef: { kind: 'Pod'; namespace: string; name: string; uid: string };
  hints?: { forZones?: { name: string }[]; forNodes?: { name: string }[] };
}

/** An EndpointSlice as this controller writes it. */
export interface EndpointSlice {
  apiVersion: 'discovery.k8s.io/v1';
  kind: 'EndpointSlice';
  metadata: ObjectMetaInput & { namespace: string; labels: Record<string, string> };
  addressType: AddressType;
  endpoints: Endpoint[];
  ports: EndpointPort[];
}

/** An EndpointSlice as read from the API: any shape the wire allows. */
export interface EndpointSliceInput {
  metadata?: Maybe<ObjectMetaInput>;
  addressType?: Maybe<string>;
  endpoints?: Maybe<
    {
      addresses?: Maybe<string[]>;
      conditions?: Maybe<{ ready?: Maybe<boolean>; serving?: Maybe<boolean>; terminating?: Maybe<boolean> }>;
      hostname?: Maybe<string>;
      nodeName?: Maybe<string>;
      zone?: Maybe<string>;
      targetRef?: Maybe<{
        kind?: Maybe<string>;
        namespace?: Maybe<string>;
        name?: Maybe<string>;
        uid?: Maybe<string>;
      }>;
      hints?: Maybe<{
        forZones?: Maybe<{ name?: Maybe<string> }[]>;
        forNodes?: Maybe<{ name?: Maybe<string> }[]>;
      }>;
    }[]
  >;
  ports?: Maybe<
    {
      name?: Maybe<string>;
      port?: Maybe<number>;
      protocol?: Maybe<string>;
      appProtocol?: Maybe<string>;
    }[]
  >;
}

export type AddressType = 'IPv4' | 'IPv6';

export interface EndpointSliceDesiredStateInput {
  service: ServiceInput;
  /** Pods of the Service's namespace; the selector is applied here. */
  pods: readonly PodInput[];
  nodes: ReadonlyMap<string, NodeInput>;
  /** The slices labelled for this Service and managed by this controller. */
  existingSlices: readonly EndpointSliceInput[];
  maxEndpointsPerSlice?: number;
}

export interface PodProblem {
  pod: string;
  reason: string;
  /** true: the pod may become an endpoint later without changing (its Node may appear). */
  retry: boolean;
}

export interface EndpointSlicePlan {
  /** New slices, named by the API server from metadata.generateName. */
  create: EndpointSlice[];
  /** Existing slices rewritten in full, with the resourceVersion they were read at. */
  update: EndpointSlice[];
  /** Existing slices to remove. */
  delete: { name: string; namespace: string; resourceVersion?: string }[];
  /** Pods that match the selector but are not endpoints, and why. */
  problems: PodProblem[];
}

const EMPTY_PLAN: EndpointSlicePlan = { create: [], update: [], delete: [], problems: [] };

/**
 * Whether the controller manages slices for this Service at all: only Services with a
 * (non-empty) selector and a type other than ExternalName get them.
 */
export function serviceSelectsPods(service: ServiceInput): boolean {
  const selector = service.spec?.selector;
  return (
    service.spec?.type !== 'ExternalName' &&
    selector !== null &&
    selector !== undefined &&
    Object.keys(selector).length > 0
  );
}

export function selectorMatches(selector: Labels, labels: Labels): boolean {
  if (!selector || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([key, value]) => labels?.[key] === value);
}

/**
 * The plan that turns `existingSlices` into the slices `service` should have. Idempotent:
 * applied to its own result, it plans nothing.
 */
export function planEndpointSlices(input: EndpointSliceDesiredStateInput): EndpointSlicePlan {
  const { service } = input;
  const namespace = service.metadata?.namespace ?? '';
  const max = Math.max(1, input.maxEndpointsPerSlice ?? MAX_ENDPOINTS_PER_SLICE);
  const existing = input.existingSlices.filter((slice) => !slice.metadata?.deletionTimestamp);

  // Without a selector (or as ExternalName) the Service has no slices of ours; upstream leaves
  // stale ones behind, which keeps routing to old pods, so remove them.
  if (!serviceSelectsPods(service)) {
    return { ...EMPTY_PLAN, delete: existing.map(deletionOf) };
  }

  const problems: PodProblem[] = [];
  const pods = input.pods
    .filter((pod) => (pod.metadata?.namespace ?? '') === namespace)
    .filter((pod) => selectorMatches(service.spec?.selector, pod.metadata?.labels))
    .sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''));

  const supported = addressTypesFor(service);
  const plan: EndpointSlicePlan = { create: [], update: [], delete: [], problems };
  const byType = new Map<AddressType, EndpointSliceInput[]>();
  for (const slice of existing) {
    const type = slice.addressType;
    if (type === 'IPv4' || type === 'IPv6') {
      if (supported.includes(type)) {
        byType.set(type, [...(byType.get(type) ?? []), slice]);
        continue;
      }
    }
    plan.delete.push(deletionOf(slice));
  }
  for (const type of supported) {
    const part = planAddressType(service, pods, input.nodes, byType.get(type) ?? [], type, max, problems);
    plan.create.push(...part.create);
    plan.update.push(...part.update);
    plan.delete.push(...part.delete);
  }
  // The same pod is reported once per address type; keep one report.
  const seen = new Set<string>();
  plan.problems = problems.filter((p) => {
    const key = `${p.pod}\u0000${p.reason}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  return plan;
}

/** Which address types the Service's slices carry (getAddressTypesForService upstream). */
export function addressTypesFor(service: ServiceInput): AddressType[] {
  const families = service.spec?.ipFamilies ?? [];
  const types: AddressType[] = [];
  if (families.includes('IPv4')) types.push('IPv4');
  if (families.includes('IPv6')) types.push('IPv6');
  if (types.length > 0) return types;
  const clusterIP = service.spec?.clusterIP ?? '';
  if (clusterIP !== '' && clusterIP !== 'None') return [isIP(clusterIP) === 6 ? 'IPv6' : 'IPv4'];
  // A headless Service without ipFamilies: both, as upstream assumes until the API server
  // fills the field in.
  return ['IPv4', 'IPv6'];
}

interface AddressTypePlan {
  create: EndpointSlice[];
  update: EndpointSlice[];
  delete: EndpointSlicePlan['delete'];
}

function planAddressType(
  service: ServiceInput,
  pods: PodInput[],
  nodes: ReadonlyMap<string, NodeInput>,
  existing: EndpointSliceInput[],
  addressType: AddressType,
  max: number,
  problems: PodProblem[],
): AddressTypePlan {
  const toDelete: EndpointSliceInput[] = [];
  const existingByPorts = new Map<string, EndpointSliceInput[]>();
  for (const slice of existing) {
    if (!ownedBy(slice, service)) {
      // Left over from an earlier Service of the same name.
      toDelete.push(slice);
      continue;
    }
    const key = portMapKey(normalizePorts(slice.ports));
    existingByPorts.set(key, [...(existingByPorts.get(key) ?? []), slice]);
  }

  const desiredByPorts = new Map<string, { ports: EndpointPort[]; endpoints: Map<string, Endpoint> }>();
  for (const pod of pods) {
    const podName = `${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}`;
    if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') continue;
    const ips = podIPs(pod);
    if (ips.length === 0) continue;
    if (!pod.metadata?.name || !pod.metadata.uid) {
      problems.push({ pod: podName, reason: 'pod has no name or uid', retry: false });
      continue;
    }
    const ports = endpointPortsFor(service, pod);
    const key = portMapKey(ports);
    let group = desiredByPorts.get(key);
    if (!group) {
      group = { ports, endpoints: new Map() };
      desiredByPorts.set(key, group);
    }
    const nodeName = pod.spec?.nodeName ?? '';
    const node = nodes.get(nodeName);
    if (!node && !service.spec?.publishNotReadyAddresses) {
      problems.push({ pod: podName, reason: `Node ${JSON.stringify(nodeName)} not found`, retry: true });
      continue;
    }
    const { addresses, invalid } = addressesOfType(ips, addressType);
    for (const ip of invalid)
      problems.push({ pod: podName, reason: `invalid pod IP ${JSON.stringify(ip)}`, retry: false });
    if (addresses.length === 0) continue;
    const endpoint = podToEndpoint(pod, node, service, addresses);
    group.endpoints.set(endpointIdentity(endpoint), endpoint);
  }

  const create: EndpointSlice[] = [];
  const updates = new Map<string, { before: EndpointSliceInput; after: EndpointSlice }>();
  const unchanged: EndpointSliceInput[] = [];
  for (const [key, group] of desiredByPorts) {
    const part = reconcilePortMapping(service, existingByPorts.get(key) ?? [], group, addressType, max);
    create.push(...part.create);
    for (const update of part.update) updates.set(update.before.metadata?.name ?? '', update);
    unchanged.push(...part.unchanged);
    toDelete.push(...part.delete);
  }
  for (const [key, slices] of existingByPorts) {
    if (!desiredByPorts.has(key)) toDelete.push(...slices);
  }

  // A Service that selects nothing still gets one empty slice, so consumers can tell "no
  // endpoints" from "not reconciled yet".
  if (existing.length === toDelete.length && create.length === 0) {
    const placeholder = newSlice(service, [], addressType);
    const onlyDeletion = toDelete[0];
    if (toDelete.length === 1 && onlyDeletion && isPlaceholderOf(onlyDeletion, placeholder, service)) {
      toDelete.length = 0;
      unchanged.push(onlyDeletion);
    } else {
      create.push(placeholder);
    }
  }

  applyHints(service, nodes, create, updates, unchanged);

  // Reuse the names of slices about to be deleted instead of deleting and creating (finalize).
  const deletions = [...toDelete];
  for (let i = 0; i < deletions.length && create.length > 0; ) {
    const doomed = deletions[i] as EndpointSliceInput;
    if (doomed.addressType === addressType && ownedBy(doomed, service)) {
      const replacement = create.pop() as EndpointSlice;
      updates.set(doomed.metadata?.name ?? '', { before: doomed, after: asUpdateOf(doomed, replacement) });
      deletions.splice(i, 1);
    } else {
      i++;
    }
  }

  // Creating slices for a Service being deleted would race its garbage collection.
  const creating = service.metadata?.deletionTimestamp ? [] : create;
  const update = [...updates.values()]
    .filter(({ before, after }) => !sameSlice(before, after))
    .map(({ after }) => after)
    .sort((a, b) => (a.metadata.name ?? '').localeCompare(b.metadata.name ?? ''));
  return { create: creating, update, delete: deletions.sort(byName).map(deletionOf) };
}

/** reconcileByPortMapping upstream: keep, refresh and fill existing slices before creating. */
function reconcilePortMapping(
  service: ServiceInput,
  existing: EndpointSliceInput[],
  desired: { ports: EndpointPort[]; endpoints: Map<string, Endpoint> },
  addressType: AddressType,
  max: number,
): {
  create: EndpointSlice[];
  update: { before: EndpointSliceInput; after: EndpointSlice }[];
  unchanged: EndpointSliceInput[];
  delete: EndpointSliceInput[];
} {
  const remaining = new Map(desired.endpoints);
  const labels = sliceLabels(service);
  const toUpdate = new Map<string, { before: EndpointSliceInput; after: EndpointSlice }>();
  const unchanged = new Map<string, EndpointSliceInput>();
  const toDelete: EndpointSliceInput[] = [];

  // 1. Drop endpoints no longer wanted and refresh the ones that changed.
  for (const slice of [...existing].sort(byName)) {
    const name = slice.metadata?.name ?? '';
    const current = (slice.endpoints ?? []).map(normalizeEndpoint);
    const kept: Endpoint[] = [];
    let changed = false;
    for (const endpoint of current) {
      const id = endpointIdentity(endpoint);
      const wanted = remaining.get(id);
      if (!wanted) continue;
      kept.push(wanted);
      if (!sameEndpointIgnoringHints(wanted, endpoint)) changed = true;
      remaining.delete(id);
    }
    if (changed || kept.length !== current.length) {
      if (kept.length === 0) toDelete.push(slice);
      else
        toUpdate.set(name, {
          before: slice,
          after: { ...asUpdateOf(slice, newSlice(service, desired.ports, addressType)), endpoints: kept },
        });
    } else if (!sameLabels(slice.metadata?.labels, labels)) {
      toUpdate.set(name, {
        before: slice,
        after: { ...asUpdateOf(slice, newSlice(service, desired.ports, addressType)), endpoints: current },
      });
    } else {
      unchanged.set(name, slice);
    }
  }

  const queue = [...remaining.values()];
  // 2. Fill the slices already being rewritten, fullest first.
  if (queue.length > 0 && toUpdate.size > 0) {
    const fullestFirst = [...toUpdate.values()].sort(
      (a, b) => b.after.endpoints.length - a.after.endpoints.length || byName(a.before, b.before),
    );
    for (const { after } of fullestFirst) {
      while (queue.length > 0 && after.endpoints.length < max)
        after.endpoints.push(queue.shift() as Endpoint);
    }
  }

  // 3. Put what is left into the one unchanged slice it fits best, else into new slices.
  const create: EndpointSlice[] = [];
  while (queue.length > 0) {
    let target: EndpointSlice | undefined;
    if (queue.length < max && unchanged.size > 0) {
      const fit = sliceToFill([...unchanged.values()], queue.length, max);
      if (fit) {
        const name = fit.metadata?.name ?? '';
        unchanged.delete(name);
        target = {
          ...asUpdateOf(fit, newSlice(service, desired.ports, addressType)),
          endpoints: (fit.endpoints ?? []).map(normalizeEndpoint),
        };
        toUpdate.set(name, { before: fit, after: target });
      }
    }
    if (!target) {
      target = newSlice(service, desired.ports, addressType);
      create.push(target);
    }
    while (queue.length > 0 && target.endpoints.length < max)
      target.endpoints.push(queue.shift() as Endpoint);
  }
  return { create, update: [...toUpdate.values()], unchanged: [...unchanged.values()], delete: toDelete };
}

/** The unchanged slice that ends up closest to full when `count` endpoints are added. */
function sliceToFill(
  slices: EndpointSliceInput[],
  count: number,
  max: number,
): EndpointSliceInput | undefined {
  let best: EndpointSliceInput | undefined;
  let bestRoom = max;
  for (const slice of [...slices].sort(byName)) {
    const room = max - (count + (slice.endpoints?.length ?? 0));
    if (room >= 0 && room < bestRoom) {
      best = slice;
      bestRoom = room;
      if (room === 0) break;
    }
  }
  return best;
}

type HintMode = 'none' | 'auto' | 'sameZone' | 'sameNode';

/** Which hints the Service asks for: the topology annotation first, then trafficDistribution. */
export function hintModeFor(service: ServiceInput): HintMode {
  const annotations = service.metadata?.annotations ?? {};
  const annotation = annotations[ANNOTATION_TOPOLOGY_AWARE_HINTS] ?? annotations[ANNOTATION_TOPOLOGY_MODE];
  if (annotation === 'Auto' || annotation === 'auto') return 'auto';
  switch (service.spec?.trafficDistribution) {
    case 'PreferClose':
    case 'PreferSameZone':
      return 'sameZone';
    case 'PreferSameNode':
      return 'sameNode';
    default:
      return 'none';
  }
}

/**
 * Sets or clears hints on every slice of one address type. `auto` is the simple form of
 * upstream's topology-aware routing: every ready endpoint is hinted for its own zone, and only
 * when every zone with a ready Node has a ready endpoint and every ready endpoint has a zone
 * (upstream further balances zones by allocatable CPU; not done here).
 */
function applyHints(
  service: ServiceInput,
  nodes: ReadonlyMap<string, NodeInput>,
  create: EndpointSlice[],
  updates: Map<string, { before: EndpointSliceInput; after: EndpointSlice }>,
  unchanged: EndpointSliceInput[],
): void {
  let mode = hintModeFor(service);
  const all = [...create, ...[...updates.values()].map((u) => u.after)];
  if (mode === 'auto') {
    const everyEndpoint = [
      ...all.flatMap((s) => s.endpoints),
      ...unchanged.flatMap((s) => (s.endpoints ?? []).map(normalizeEndpoint)),
    ];
    const ready = everyEndpoint.filter((e) => e.conditions.ready === true);
    const covered = new Set(ready.map((e) => e.zone));
    const zones = new Set<string>();
    for (const node of nodes.values()) {
      const zone = node.metadata?.labels?.[LABEL_TOPOLOGY_ZONE];
      if (zone && nodeIsReady(node)) zones.add(zone);
    }
    const usable =
      ready.length > 0 &&
      zones.size > 0 &&
      ready.every((e) => e.zone !== undefined) &&
      [...zones].every((z) => covered.has(z));
    if (!usable) mode = 'none';
  }
  const hinted = (endpoint: Endpoint): Endpoint => {
    const { hints: _old, ...rest } = endpoint;
    if (mode === 'none' || endpoint.conditions.ready !== true) return rest;
    const hints: NonNullable<Endpoint['hints']> = {};
    if (endpoint.zone !== undefined) hints.forZones = [{ name: endpoint.zone }];
    if (mode === 'sameNode' && endpoint.nodeName !== undefined)
      hints.forNodes = [{ name: endpoint.nodeName }];
    return hints.forZones || hints.forNodes ? { ...rest, hints } : rest;
  };
  for (const slice of all) slice.endpoints = slice.endpoints.map(hinted);
  for (let i = unchanged.length - 1; i >= 0; i--) {
    const slice = unchanged[i] as EndpointSliceInput;
    const current = (slice.endpoints ?? []).map(normalizeEndpoint);
    const wanted = current.map(hinted);
    if (!sameJson(current, wanted)) {
      const after = {
        ...asUpdateOf(
          slice,
          newSlice(service, normalizePorts(slice.ports), slice.addressType as AddressType),
        ),
        endpoints: wanted,
      };
      updates.set(slice.metadata?.name ?? '', { before: slice, after });
      unchanged.splice(i, 1);
    }
  }
}

function nodeIsReady(node: NodeInput): boolean {
  const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
  return ready === undefined || ready.status === 'True';
}

function podToEndpoint(
  pod: PodInput,
  node: NodeInput | undefined,
  service: ServiceInput,
  addresses: string[],
): Endpoint {
  const serving = (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
  const terminating = Boolean(pod.metadata?.deletionTimestamp);
  const endpoint: Endpoint = {
    addresses,
    conditions: {
      // A terminating pod is never ready, unless the Service publishes not-ready addresses.
      ready: Boolean(service.spec?.publishNotReadyAddresses) || (serving && !terminating),
      serving,
      terminating,
    },
    targetRef: {
      kind: 'Pod',
      namespace: pod.metadata?.namespace ?? '',
      name: pod.metadata?.name ?? '',
      uid: pod.metadata?.uid ?? '',
    },
  };
  const hostname = pod.spec?.hostname;
  if (
    hostname &&
    pod.spec?.subdomain === service.metadata?.name &&
    pod.metadata?.namespace === service.metadata?.namespace
  ) {
    endpoint.hostname = hostname;
  }
  if (pod.spec?.nodeName) endpoint.nodeName = pod.spec.nodeName;
  const zone = node?.metadata?.labels?.[LABEL_TOPOLOGY_ZONE];
  if (zone) endpoint.zone = zone;
  return endpoint;
}

function podIPs(pod: PodInput): string[] {
  const listed = (pod.status?.podIPs ?? []).map((p) => p.ip ?? '').filter((ip) => ip !== '');
  if (listed.length > 0) return listed;
  return pod.status?.podIP ? [pod.status.podIP] : [];
}

/** The pod's addresses of one family, printed canonically (as Go's net.IP.String() would). */
function addressesOfType(ips: string[], type: AddressType): { addresses: string[]; invalid: string[] } {
  const addresses: string[] = [];
  const invalid: string[] = [];
  for (const raw of ips) {
    const canonical = canonicalIP(raw);
    if (canonical === undefined) {
      invalid.push(raw);
      continue;
    }
    if ((isIP(canonical) === 6) === (type === 'IPv6')) addresses.push(canonical);
  }
  return { addresses, invalid };
}

export function canonicalIP(raw: string): string | undefined {
  const family = isIP(raw);
  if (family === 4) return raw;
  if (family !== 6 || raw.includes('%')) return undefined;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(raw);
  if (mapped?.[1] && isIP(mapped[1]) === 4) return mapped[1];
  // WHATWG URL serialises IPv6 hosts in RFC 5952 form: lower case, longest zero run as ::.
  return new URL(`http://[${raw}]/`).hostname.slice(1, -1);
}

/** The Service's ports resolved for one pod (FindPort upstream); unresolvable ports are left out. */
export function endpointPortsFor(service: ServiceInput, pod: PodInput): EndpointPort[] {
  const servicePorts = service.spec?.ports ?? [];
  if (servicePorts.length === 0 && service.spec?.clusterIP === 'None') return [];
  const ports: EndpointPort[] = [];
  for (const servicePort of servicePorts) {
    const protocol = servicePort.protocol ?? 'TCP';
    const target = servicePort.targetPort ?? servicePort.port;
    let number: number | undefined;
    if (typeof target === 'number') number = target;
    else if (typeof target === 'string' && /^\d+$/.test(target)) number = Number(target);
    else if (typeof target === 'string') number = findNamedPort(pod, target, protocol);
    if (number === undefined || !Number.isInteger(number) || number < 1 || number > 65535) continue;
    const port: EndpointPort = { name: servicePort.name ?? '', port: number, protocol };
    if (servicePort.appProtocol) port.appProtocol = servicePort.appProtocol;
    ports.push(port);
  }
  return sortPorts(ports);
}

function findNamedPort(pod: PodInput, name: string, protocol: string): number | undefined {
  const sidecars = (pod.spec?.initContainers ?? []).filter((c) => c.restartPolicy === 'Always');
  for (const container of [...(pod.spec?.containers ?? []), ...sidecars]) {
    for (const port of container.ports ?? []) {
      if (
        port.name === name &&
        (port.protocol ?? 'TCP') === protocol &&
        typeof port.containerPort === 'number'
      ) {
        return port.containerPort;
      }
    }
  }
  return undefined;
}

function sortPorts(ports: EndpointPort[]): EndpointPort[] {
  return [...ports].sort(
    (a, b) =>
      a.name.localeCompare(b.name) ||
      a.protocol.localeCompare(b.protocol) ||
      a.port - b.port ||
      (a.appProtocol ?? '').localeCompare(b.appProtocol ?? ''),
  );
}

function normalizePorts(ports: EndpointSliceInput['ports']): EndpointPort[] {
  return sortPorts(
    (ports ?? []).map((p) => {
      const port: EndpointPort = { name: p.name ?? '', port: p.port ?? 0, protocol: p.protocol ?? 'TCP' };
      if (p.appProtocol) port.appProtocol = p.appProtocol;
      return port;
    }),
  );
}

function portMapKey(ports: EndpointPort[]): string {
  return JSON.stringify(sortPorts(ports).map((p) => [p.name, p.protocol, p.port, p.appProtocol ?? null]));
}

/** An endpoint's identity across updates: its addresses, hostname and pod (hashEndpoint upstream). */
function endpointIdentity(endpoint: Endpoint): string {
  return JSON.stringify([
    [...endpoint.addresses].sort(),
    endpoint.hostname ?? null,
    endpoint.targetRef.namespace,
    endpoint.targetRef.name,
  ]);
}

/** An endpoint read from the API, in the shape this module writes; absent conditions stay absent. */
function normalizeEndpoint(raw: NonNullable<EndpointSliceInput['endpoints']>[number]): Endpoint {
  const conditions: Endpoint['conditions'] = {};
  if (typeof raw.conditions?.ready === 'boolean') conditions.ready = raw.conditions.ready;
  if (typeof raw.conditions?.serving === 'boolean') conditions.serving = raw.conditions.serving;
  if (typeof raw.conditions?.terminating === 'boolean') conditions.terminating = raw.conditions.terminating;
  const endpoint: Endpoint = {
    addresses: [...(raw.addresses ?? [])],
    conditions,
    targetRef: {
      kind: 'Pod',
      namespace: raw.targetRef?.namespace ?? '',
      name: raw.targetRef?.name ?? '',
      uid: raw.targetRef?.uid ?? '',
    },
  };
  if (raw.hostname) endpoint.hostname = raw.hostname;
  if (raw.nodeName) endpoint.nodeName = raw.nodeName;
  if (raw.zone) endpoint.zone = raw.zone;
  const forZones = (raw.hints?.forZones ?? []).map((z) => ({ name: z.name ?? '' }));
  const forNodes = (raw.hints?.forNodes ?? []).map((n) => ({ name: n.name ?? '' }));
  if (forZones.length > 0 || forNodes.length > 0) {
    endpoint.hints = {};
    if (forZones.length > 0) endpoint.hints.forZones = forZones;
    if (forNodes.length > 0) endpoint.hints.forNodes = forNodes;
  }
  return endpoint;
}

function sameEndpointIgnoringHints(a: Endpoint, b: Endpoint): boolean {
  const { hints: _a, ...left } = a;
  const { hints: _b, ...right } = b;
  return sameJson(left, right);
}

/** Labels of every slice: the Service's own (less reserved keys), plus the controller's. */
export function sliceLabels(service: ServiceInput): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const [key, value] of Object.entries(service.metadata?.labels ?? {})) {
    if (key === LABEL_SERVICE_NAME || key === LABEL_MANAGED_BY || key === LABEL_HEADLESS) continue;
    labels[key] = value;
  }
  const clusterIP = service.spec?.clusterIP ?? '';
  if (clusterIP === 'None' || clusterIP === '') labels[LABEL_HEADLESS] = '';
  labels[LABEL_SERVICE_NAME] = service.metadata?.name ?? '';
  labels[LABEL_MANAGED_BY] = ENDPOINTSLICE_CONTROLLER_NAME;
  return labels;
}

function ownerReferenceTo(service: ServiceInput): OwnerReference {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    name: service.metadata?.name ?? '',
    uid: service.metadata?.uid ?? '',
    controller: true,
    blockOwnerDeletion: true,
  };
}

function ownedBy(slice: EndpointSliceInput, service: ServiceInput): boolean {
  const uid = service.metadata?.uid;
  return (slice.metadata?.ownerReferences ?? []).some(
    (ref) => ref.uid === uid && ref.kind === 'Service' && ref.apiVersion === 'v1',
  );
}

function newSlice(service: ServiceInput, ports: EndpointPort[], addressType: AddressType): EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      generateName: `${service.metadata?.name ?? ''}-`,
      namespace: service.metadata?.namespace ?? '',
      labels: sliceLabels(service),
      ownerReferences: [ownerReferenceTo(service)],
    },
    addressType,
    endpoints: [],
    ports: [...ports],
  };
}

/** `replacement`'s content under the identity (name, resourceVersion...) of `existing`. */
function asUpdateOf(existing: EndpointSliceInput, replacement: EndpointSlice): EndpointSlice {
  const { generateName: _generated, ...metadata } = existing.metadata ?? {};
  return {
    ...replacement,
    metadata: {
      ...metadata,
      namespace: existing.metadata?.namespace ?? replacement.metadata.namespace,
      labels: replacement.metadata.labels,
      ownerReferences: existing.metadata?.ownerReferences ?? replacement.metadata.ownerReferences,
    },
    endpoints: [...replacement.endpoints],
  };
}

function isPlaceholderOf(
  slice: EndpointSliceInput,
  placeholder: EndpointSlice,
  service: ServiceInput,
): boolean {
  return (
    ownedBy(slice, service) &&
    slice.addressType === placeholder.addressType &&
    (slice.endpoints ?? []).length === 0 &&
    (slice.ports ?? []).length === 0 &&
    sameLabels(slice.metadata?.labels, placeholder.metadata.labels)
  );
}

function sameSlice(before: EndpointSliceInput, after: EndpointSlice): boolean {
  return (
    before.addressType === after.addressType &&
    sameLabels(before.metadata?.labels, after.metadata.labels) &&
    portMapKey(normalizePorts(before.ports)) === portMapKey(after.ports) &&
    sameJson((before.endpoints ?? []).map(normalizeEndpoint), after.endpoints)
  );
}

function sameLabels(a: Labels, b: Labels): boolean {
  const left = Object.entries(a ?? {}).sort(([x], [y]) => x.localeCompare(y));
  const right = Object.entries(b ?? {}).sort(([x], [y]) => x.localeCompare(y));
  return sameJson(left, right);
}

function sameJson(a: unknown, b: unknown): boolean {
  return stableJson(a) === stableJson(b);
}

/** JSON with object keys sorted, so that equal content compares equal whatever its key order. */
function stableJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
        )
      : v,
  );
}

function byName(a: EndpointSliceInput, b: EndpointSliceInput): number {
  return (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? '');
}

function deletionOf(slice: EndpointSliceInput): EndpointSlicePlan['delete'][number] {
  const deletion: EndpointSlicePlan['delete'][number] = {
    name: slice.metadata?.name ?? '',
    namespace: slice.metadata?.namespace ?? '',
  };
  if (slice.metadata?.resourceVersion) deletion.resourceVersion = slice.metadata.resourceVersion;
  return deletion;
}
