import type {
  V1LabelSelector,
  V1OwnerReference,
  V1Pod,
  V1ReplicaSet,
  V1ReplicaSetStatus,
} from '@kubernetes/client-node';

/**
 * What kube-controller-manager's ReplicaSet controller decides, as pure functions of a
 * ReplicaSet and the pods of its namespace: which pods it owns, adopts and releases, how many
 * pods to create, which to delete (the least useful first), and the status to report.
 */

export const REPLICASET_API_VERSION = 'apps/v1';

/** A LabelSelector (matchLabels and matchExpressions) against a label map. Empty selects all. */
export function labelSelectorMatches(
  selector: V1LabelSelector | undefined,
  labels: Record<string, string> | undefined,
): boolean {
  const have = labels ?? {};
  for (const [k, v] of Object.entries(selector?.matchLabels ?? {})) if (have[k] !== v) return false;
  for (const e of selector?.matchExpressions ?? []) {
    const value = have[e.key];
    const values = e.values ?? [];
    switch (e.operator) {
      case 'In':
        if (value === undefined || !values.includes(value)) return false;
        break;
      case 'NotIn':
        if (value !== undefined && values.includes(value)) return false;
        break;
      case 'Exists':
        if (value === undefined) return false;
        break;
      case 'DoesNotExist':
        if (value !== undefined) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

/** A selector that selects nothing is not allowed to adopt everything (upstream: empty = none). */
export function selectorIsEmpty(selector: V1LabelSelector | undefined): boolean {
  return (
    Object.keys(selector?.matchLabels ?? {}).length === 0 && (selector?.matchExpressions ?? []).length === 0
  );
}

export function controllerRefOf(obj: { metadata?: { ownerReferences?: V1OwnerReference[] } }) {
  return (obj.metadata?.ownerReferences ?? []).find((r) => r.controller === true);
}

/** Pods that count: not finished and not being deleted (upstream FilterActivePods). */
export function isActivePod(pod: V1Pod): boolean {
  const phase = pod.status?.phase;
  return phase !== 'Succeeded' && phase !== 'Failed' && !pod.metadata?.deletionTimestamp;
}

export function isPodReady(pod: V1Pod): boolean {
  return (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

/** Ready for at least minReadySeconds at `now`. */
export function isPodAvailable(pod: V1Pod, minReadySeconds: number, now: number): boolean {
  if (!isPodReady(pod)) return false;
  if (minReadySeconds <= 0) return true;
  const ready = (pod.status?.conditions ?? []).find((c) => c.type === 'Ready');
  const since = ready?.lastTransitionTime ? new Date(ready.lastTransitionTime).getTime() : Number.NaN;
  return Number.isFinite(since) && since + minReadySeconds * 1000 <= now;
}

export interface PodOwnership {
  /** Controlled by this ReplicaSet and matching its selector (active or not). */
  owned: V1Pod[];
  /** Matching orphans (no controller) to adopt. */
  adopt: V1Pod[];
  /** Controlled by this ReplicaSet but no longer matching: to release. */
  release: V1Pod[];
}

/** Pods controlled by others are ignored; a ReplicaSet being deleted adopts nothing. */
export function classifyPods(rs: V1ReplicaSet, pods: readonly V1Pod[]): PodOwnership {
  const uid = rs.metadata?.uid;
  const selector = rs.spec?.selector;
  const out: PodOwnership = { owned: [], adopt: [], release: [] };
  for (const pod of pods) {
    if (pod.metadata?.namespace !== rs.metadata?.namespace) continue;
    const matches = !selectorIsEmpty(selector) && labelSelectorMatches(selector, pod.metadata?.labels);
    const ref = controllerRefOf(pod);
    if (ref) {
      if (ref.uid !== uid) continue;
      if (matches) out.owned.push(pod);
      else if (!pod.metadata?.deletionTimestamp) out.release.push(pod);
      continue;
    }
    if (matches && isActivePod(pod) && !rs.metadata?.deletionTimestamp) out.adopt.push(pod);
  }
  return out;
}

export function ownerReferenceTo(rs: V1ReplicaSet): V1OwnerReference {
  return {
    apiVersion: REPLICASET_API_VERSION,
    kind: 'ReplicaSet',
    name: rs.metadata?.name ?? '',
    uid: rs.metadata?.uid ?? '',
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** The pod a ReplicaSet creates from its template (the API server fills in the name). */
export function podFromTemplate(rs: V1ReplicaSet): V1Pod {
  const template = rs.spec?.template;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: `${rs.metadata?.name ?? ''}-`,
      namespace: rs.metadata?.namespace,
      labels: { ...(template?.metadata?.labels ?? {}) },
      ...(template?.metadata?.annotations ? { annotations: { ...template.metadata.annotations } } : {}),
      ...(template?.metadata?.finalizers ? { finalizers: [...template.metadata.finalizers] } : {}),
      ownerReferences: [ownerReferenceTo(rs)],
    },
    spec: structuredClone(template?.spec ?? { containers: [] }),
  };
}

const phaseRank: Record<string, number> = { Pending: 0, Unknown: 1, Running: 2 };

/**
 * Orders pods so that the ones to delete first come first, as upstream's ActivePods sort:
 * unscheduled before scheduled, Pending < Unknown < Running, not ready before ready, ready for
 * less time before longer, more restarts before fewer, newer before older.
 */
export function compareForDeletion(a: V1Pod, b: V1Pod): number {
  const assigned = (p: V1Pod) => (p.spec?.nodeName ? 1 : 0);
  if (assigned(a) !== assigned(b)) return assigned(a) - assigned(b);
  const phase = (p: V1Pod) => phaseRank[p.status?.phase ?? 'Pending'] ?? 0;
  if (phase(a) !== phase(b)) return phase(a) - phase(b);
  const ready = (p: V1Pod) => (isPodReady(p) ? 1 : 0);
  if (ready(a) !== ready(b)) return ready(a) - ready(b);
  if (isPodReady(a) && isPodReady(b)) {
    const since = (p: V1Pod) =>
      new Date(
        (p.status?.conditions ?? []).find((c) => c.type === 'Ready')?.lastTransitionTime ?? 0,
      ).getTime();
    if (since(a) !== since(b)) return since(b) - since(a);
  }
  const restarts = (p: V1Pod) =>
    Math.max(0, ...(p.status?.containerStatuses ?? []).map((c) => c.restartCount ?? 0));
  if (restarts(a) !== restarts(b)) return restarts(b) - restarts(a);
  const created = (p: V1Pod) => new Date(p.metadata?.creationTimestamp ?? 0).getTime();
  if (created(a) !== created(b)) return created(b) - created(a);
  return (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? '');
}

export function podsToDelete(active: readonly V1Pod[], count: number): V1Pod[] {
  if (count <= 0) return [];
  return [...active].sort(compareForDeletion).slice(0, count);
}

export function replicaSetStatus(rs: V1ReplicaSet, owned: readonly V1Pod[], now: number): V1ReplicaSetStatus {
  const active = owned.filter(isActivePod);
  const templateLabels = rs.spec?.template?.metadata?.labels ?? {};
  const minReadySeconds = rs.spec?.minReadySeconds ?? 0;
  const status: V1ReplicaSetStatus = {
    replicas: active.length,
    fullyLabeledReplicas: active.filter((p) =>
      Object.entries(templateLabels).every(([k, v]) => p.metadata?.labels?.[k] === v),
    ).length,
    readyReplicas: active.filter(isPodReady).length,
    availableReplicas: active.filter((p) => isPodAvailable(p, minReadySeconds, now)).length,
    observedGeneration: rs.metadata?.generation,
  };
  if (rs.status?.conditions?.length) status.conditions = rs.status.conditions;
  return status;
}

export function sameReplicaSetStatus(a: V1ReplicaSetStatus | undefined, b: V1ReplicaSetStatus): boolean {
  return (
    (a?.replicas ?? 0) === b.replicas &&
    (a?.fullyLabeledReplicas ?? 0) === (b.fullyLabeledReplicas ?? 0) &&
    (a?.readyReplicas ?? 0) === (b.readyReplicas ?? 0) &&
    (a?.availableReplicas ?? 0) === (b.availableReplicas ?? 0) &&
    a?.observedGeneration === b.observedGeneration
  );
}

export interface ReplicaSetPlan {
  adopt: V1Pod[];
  release: V1Pod[];
  create: number;
  delete: V1Pod[];
  status: V1ReplicaSetStatus;
}

/**
 * One reconcile of a ReplicaSet: adopted pods count at once (their adoption is written first);
 * the difference to spec.replicas is made up by creating pods or deleting the least useful.
 * A ReplicaSet being deleted creates nothing (its pods go with it).
 */
export function planReplicaSet(rs: V1ReplicaSet, pods: readonly V1Pod[], now: number): ReplicaSetPlan {
  const { owned, adopt, release } = classifyPods(rs, pods);
  const members = [...owned, ...adopt];
  const active = members.filter(isActivePod);
  const want = rs.spec?.replicas ?? 1;
  const diff = active.length - want;
  const deleting = Boolean(rs.metadata?.deletionTimestamp);
  return {
    adopt,
    release,
    create: diff < 0 && !deleting ? -diff : 0,
    delete: diff > 0 ? podsToDelete(active, diff) : [],
    status: replicaSetStatus(rs, members, now),
  };
}
