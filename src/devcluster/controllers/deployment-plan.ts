import type {
  V1Deployment,
  V1DeploymentCondition,
  V1DeploymentStatus,
  V1PodTemplateSpec,
  V1ReplicaSet,
} from '@kubernetes/client-node';
import { controllerRefOf } from './replicaset-plan.js';

/**
 * What kube-controller-manager's Deployment controller decides, as pure functions of a
 * Deployment and the ReplicaSets it controls: the pod-template-hash, which ReplicaSet is the
 * new one, one step of a RollingUpdate or Recreate rollout, the revision bookkeeping, which old
 * ReplicaSets the history limit drops, and the status with its Available/Progressing conditions.
 */

export const POD_TEMPLATE_HASH = 'pod-template-hash';
export const REVISION_ANNOTATION = 'deployment.kubernetes.io/revision';
export const DESIRED_REPLICAS_ANNOTATION = 'deployment.kubernetes.io/desired-replicas';
export const MAX_REPLICAS_ANNOTATION = 'deployment.kubernetes.io/max-replicas';

// --- the template hash ------------------------------------------------------------------------

/**
 * JSON with object keys sorted and empty values (null, {}, []) left out, so templates that are
 * equal as Kubernetes' Go types are equal as text: key order does not matter, and neither does
 * `resources: {}` or `creationTimestamp: null`, which kubectl writes back from a ReplicaSet's
 * template on `rollout undo`.
 */
function canonicalJson(value: unknown): string {
  return JSON.stringify(pruned(value) ?? null);
}

function pruned(value: unknown): unknown {
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) {
    const items = value.map((v) => pruned(v) ?? null);
    return items.length > 0 ? items : undefined;
  }
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value as Record<string, unknown>).sort()) {
      const v = pruned((value as Record<string, unknown>)[k]);
      if (v !== undefined) out[k] = v;
    }
    return Object.keys(out).length > 0 ? out : undefined;
  }
  return value === null ? undefined : value;
}

function fnv32a(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

const safeAlphabet = 'bcdfghjklmnpqrstvwxz2456789';

/**
 * Upstream's ComputeHash: FNV-32a of the template (and the collision count, when there is
 * one), its decimal digits mapped to the alphabet of rand.SafeEncodeString (no vowels, so no
 * words). The template is hashed without a pod-template-hash label, so the hash is stable.
 */
export function podTemplateHash(template: V1PodTemplateSpec | undefined, collisionCount?: number): string {
  const text = canonicalJson(withoutHashLabel(template)) + (collisionCount ? String(collisionCount) : '');
  return [...String(fnv32a(text))].map((d) => safeAlphabet[d.charCodeAt(0) % safeAlphabet.length]).join('');
}

function withoutHashLabel(template: V1PodTemplateSpec | undefined): V1PodTemplateSpec {
  const t = structuredClone(template ?? {});
  if (t.metadata?.labels) {
    delete t.metadata.labels[POD_TEMPLATE_HASH];
    if (Object.keys(t.metadata.labels).length === 0) delete t.metadata.labels;
  }
  return t;
}

/** Upstream's EqualIgnoreHash: the same template apart from the pod-template-hash label. */
export function templatesEqualIgnoringHash(
  a: V1PodTemplateSpec | undefined,
  b: V1PodTemplateSpec | undefined,
) {
  return canonicalJson(withoutHashLabel(a)) === canonicalJson(withoutHashLabel(b));
}

// --- surge and unavailability -----------------------------------------------------------------

function scaledValue(value: number | string | undefined, total: number, roundUp: boolean, fallback: string) {
  const v = value ?? fallback;
  if (typeof v === 'number') return v;
  const m = /^(\d+)%$/.exec(v);
  if (!m) return Number.parseInt(v, 10) || 0;
  const exact = (Number(m[1]) * total) / 100;
  return roundUp ? Math.ceil(exact) : Math.floor(exact);
}

/** maxSurge rounds up, maxUnavailable down; both 0 would stall, so unavailability becomes 1. */
export function resolveFenceposts(deployment: V1Deployment): { maxSurge: number; maxUnavailable: number } {
  const replicas = deployment.spec?.replicas ?? 1;
  if (deployment.spec?.strategy?.type === 'Recreate') return { maxSurge: 0, maxUnavailable: replicas };
  const ru = deployment.spec?.strategy?.rollingUpdate;
  const maxSurge = scaledValue(ru?.maxSurge, replicas, true, '25%');
  let maxUnavailable = scaledValue(ru?.maxUnavailable, replicas, false, '25%');
  if (maxSurge === 0 && maxUnavailable === 0) maxUnavailable = 1;
  return { maxSurge, maxUnavailable: Math.min(maxUnavailable, replicas) };
}

// --- revisions --------------------------------------------------------------------------------

export function revisionOf(rs: V1ReplicaSet): number {
  const n = Number(rs.metadata?.annotations?.[REVISION_ANNOTATION] ?? 0);
  return Number.isFinite(n) ? n : 0;
}

const specReplicas = (rs: V1ReplicaSet) => rs.spec?.replicas ?? 0;
const availableOf = (rs: V1ReplicaSet) => rs.status?.availableReplicas ?? 0;
const byCreation = (a: V1ReplicaSet, b: V1ReplicaSet) =>
  new Date(a.metadata?.creationTimestamp ?? 0).getTime() -
    new Date(b.metadata?.creationTimestamp ?? 0).getTime() ||
  (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? '');

// --- the plan -------------------------------------------------------------------------------

export interface DeploymentPlan {
  /** A ReplicaSet to create (the new template's), or undefined. */
  create?: V1ReplicaSet;
  /** ReplicaSets to write back changed (replicas, annotations), from the cached objects. */
  update: V1ReplicaSet[];
  /** Old ReplicaSets beyond revisionHistoryLimit. */
  delete: string[];
  /** The Deployment's revision annotation, when it must change. */
  revision?: string;
  status: V1DeploymentStatus;
}

export function newReplicaSetName(deployment: V1Deployment, hash: string): string {
  return `${deployment.metadata?.name ?? ''}-${hash}`;
}

/** The ReplicaSet for a template: hash label in selector, template labels and its own labels. */
export function replicaSetFor(
  deployment: V1Deployment,
  hash: string,
  replicas: number,
  revision: number,
): V1ReplicaSet {
  const template = structuredClone(deployment.spec?.template ?? {});
  template.metadata = { ...(template.metadata ?? {}) };
  template.metadata.labels = { ...(template.metadata.labels ?? {}), [POD_TEMPLATE_HASH]: hash };
  const selector = structuredClone(deployment.spec?.selector ?? {});
  selector.matchLabels = { ...(selector.matchLabels ?? {}), [POD_TEMPLATE_HASH]: hash };
  const { maxSurge } = resolveFenceposts(deployment);
  const want = deployment.spec?.replicas ?? 1;
  return {
    apiVersion: 'apps/v1',
    kind: 'ReplicaSet',
    metadata: {
      name: newReplicaSetName(deployment, hash),
      namespace: deployment.metadata?.namespace,
      labels: { ...template.metadata.labels },
      annotations: {
        [REVISION_ANNOTATION]: String(revision),
        [DESIRED_REPLICAS_ANNOTATION]: String(want),
        [MAX_REPLICAS_ANNOTATION]: String(want + maxSurge),
      },
      ownerReferences: [
        {
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          name: deployment.metadata?.name ?? '',
          uid: deployment.metadata?.uid ?? '',
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: {
      replicas,
      minReadySeconds: deployment.spec?.minReadySeconds,
      selector,
      template,
    },
  };
}

/** The ReplicaSets a Deployment controls (by controller ownerReference). */
export function ownedReplicaSets(
  deployment: V1Deployment,
  replicaSets: readonly V1ReplicaSet[],
): V1ReplicaSet[] {
  const uid = deployment.metadata?.uid;
  return replicaSets.filter((rs) => controllerRefOf(rs)?.uid === uid);
}

/**
 * One reconcile of a Deployment: find or create the new ReplicaSet, take one rollout step, drop
 * history beyond the limit, and compute status. Each step is computed from the cached
 * ReplicaSets; the controller writes it and the resulting events bring the next step.
 */
export function planDeployment(
  deployment: V1Deployment,
  owned: readonly V1ReplicaSet[],
  now: Date,
): DeploymentPlan {
  const plan: DeploymentPlan = { update: [], delete: [], status: {} };
  const replicas = deployment.spec?.replicas ?? 1;
  const { maxSurge, maxUnavailable } = resolveFenceposts(deployment);
  const active = owned.filter((rs) => !rs.metadata?.deletionTimestamp);
  const matching = active.filter((rs) =>
    templatesEqualIgnoringHash(rs.spec?.template, deployment.spec?.template),
  );
  const existingNew = matching.sort(byCreation)[0];
  const old = active.filter((rs) => rs !== existingNew).sort(byCreation);
  const maxOldRevision = Math.max(0, ...old.map(revisionOf));
  const paused = deployment.spec?.paused === true;

  // Writes go to copies; `current` is what each ReplicaSet's spec will be after this step.
  const changed = new Map<V1ReplicaSet, V1ReplicaSet>();
  const edit = (rs: V1ReplicaSet): V1ReplicaSet => {
    let copy = changed.get(rs);
    if (!copy) {
      copy = structuredClone(rs);
      changed.set(rs, copy);
    }
    return copy;
  };
  const current = (rs: V1ReplicaSet) => specReplicas(changed.get(rs) ?? rs);
  const setReplicas = (rs: V1ReplicaSet, n: number) => {
    if (current(rs) === n) return;
    const copy = edit(rs);
    copy.spec = { ...(copy.spec ?? { selector: {}, template: {} }), replicas: n };
    copy.metadata = {
      ...copy.metadata,
      annotations: {
        ...(copy.metadata?.annotations ?? {}),
        [DESIRED_REPLICAS_ANNOTATION]: String(replicas),
        [MAX_REPLICAS_ANNOTATION]: String(replicas + maxSurge),
      },
    };
  };

  const newRS = existingNew;
  let newRevision = existingNew ? revisionOf(existingNew) : maxOldRevision + 1;
  if (existingNew && newRevision <= maxOldRevision) {
    // A template rolled back to: its ReplicaSet becomes the newest revision again.
    newRevision = maxOldRevision + 1;
    const copy = edit(existingNew);
    copy.metadata = {
      ...copy.metadata,
      annotations: { ...(copy.metadata?.annotations ?? {}), [REVISION_ANNOTATION]: String(newRevision) },
    };
  }

  const oldSpec = () => old.reduce((sum, rs) => sum + current(rs), 0);
  const oldActivePods = old.reduce((sum, rs) => sum + (rs.status?.replicas ?? 0), 0);

  if (paused) {
    // A paused Deployment rolls nothing out but still scales, when one ReplicaSet runs it all.
    if (newRS && oldSpec() === 0) setReplicas(newRS, replicas);
  } else {
    if (deployment.spec?.strategy?.type === 'Recreate') {
      for (const rs of old) setReplicas(rs, 0);
      // The new pods start only once every old pod is gone.
      const target = oldActivePods === 0 && oldSpec() === 0 ? replicas : 0;
      if (newRS) {
        if (target > 0 || current(newRS) > replicas)
          setReplicas(newRS, target > 0 ? replicas : current(newRS));
      } else if (deployment.spec?.template) {
        plan.create = replicaSetFor(
          deployment,
          podTemplateHash(deployment.spec.template, deployment.status?.collisionCount),
          target,
          newRevision,
        );
      }
    } else {
      const newCurrent = newRS ? current(newRS) : 0;
      let newTarget = newCurrent;
      if (newCurrent > replicas) newTarget = replicas;
      else if (newCurrent < replicas) {
        const maxTotal = replicas + maxSurge;
        const total = oldSpec() + newCurrent;
        if (total < maxTotal) newTarget = newCurrent + Math.min(maxTotal - total, replicas - newCurrent);
      }
      if (newRS) setReplicas(newRS, newTarget);
      else if (deployment.spec?.template) {
        plan.create = replicaSetFor(
          deployment,
          podTemplateHash(deployment.spec.template, deployment.status?.collisionCount),
          newTarget,
          newRevision,
        );
      }
      // Old ReplicaSets go down only as far as availability allows (upstream's
      // reconcileOldReplicaSets: unhealthy replicas first, then oldest ReplicaSets first).
      if (newTarget === newCurrent && oldSpec() > 0) {
        const newSpec = newTarget;
        const newAvailable = newRS ? availableOf(newRS) : 0;
        const allSpec = oldSpec() + newSpec;
        const minAvailable = replicas - maxUnavailable;
        const newUnavailable = Math.max(0, newSpec - newAvailable);
        let maxScaledDown = allSpec - minAvailable - newUnavailable;
        if (maxScaledDown > 0) {
          for (const rs of old) {
            if (maxScaledDown <= 0) break;
            const unhealthy = current(rs) - availableOf(rs);
            if (unhealthy <= 0) continue;
            const down = Math.min(maxScaledDown, unhealthy);
            setReplicas(rs, current(rs) - down);
            maxScaledDown -= down;
          }
          const available =
            old.reduce((s, rs) => s + Math.min(availableOf(rs), current(rs)), 0) + newAvailable;
          let scaleDown = available - minAvailable;
          for (const rs of old) {
            if (scaleDown <= 0) break;
            if (current(rs) === 0) continue;
            const down = Math.min(current(rs), scaleDown);
            setReplicas(rs, current(rs) - down);
            scaleDown -= down;
          }
        }
      }
    }
  }

  // History: old ReplicaSets with nothing left beyond revisionHistoryLimit, oldest revision first.
  const limit = deployment.spec?.revisionHistoryLimit ?? 10;
  const idle = old
    .filter((rs) => current(rs) === 0 && (rs.status?.replicas ?? 0) === 0)
    .sort((a, b) => revisionOf(a) - revisionOf(b) || byCreation(a, b));
  const excess = idle.length - limit;
  for (const rs of idle.slice(0, Math.max(0, excess))) {
    plan.delete.push(rs.metadata?.name ?? '');
    changed.delete(rs);
  }

  plan.update = [...changed.values()];
  const revision = String(newRevision);
  if (deployment.metadata?.annotations?.[REVISION_ANNOTATION] !== revision && (newRS || plan.create))
    plan.revision = revision;
  plan.status = deploymentStatus(deployment, newRS, old, plan.create?.metadata?.name, maxUnavailable, now);
  return plan;
}

/** Status from the ReplicaSets' own status; conditions keep their transition time if unchanged. */
export function deploymentStatus(
  deployment: V1Deployment,
  newRS: V1ReplicaSet | undefined,
  old: readonly V1ReplicaSet[],
  /** The name of the ReplicaSet this step creates, if it does. */
  createdNewRS: string | undefined,
  maxUnavailable: number,
  now: Date,
): V1DeploymentStatus {
  const all = newRS ? [newRS, ...old] : [...old];
  const sum = (f: (rs: V1ReplicaSet) => number) => all.reduce((s, rs) => s + f(rs), 0);
  const want = deployment.spec?.replicas ?? 1;
  const replicas = sum((rs) => rs.status?.replicas ?? 0);
  const updatedReplicas = newRS?.status?.replicas ?? 0;
  const readyReplicas = sum((rs) => rs.status?.readyReplicas ?? 0);
  const availableReplicas = sum((rs) => rs.status?.availableReplicas ?? 0);
  const status: V1DeploymentStatus = {
    observedGeneration: deployment.metadata?.generation,
    replicas,
    updatedReplicas,
    readyReplicas,
    availableReplicas,
    unavailableReplicas: Math.max(0, want - availableReplicas),
  };
  if (deployment.status?.collisionCount !== undefined)
    status.collisionCount = deployment.status.collisionCount;

  const previous = deployment.status?.conditions ?? [];
  const condition = (
    type: string,
    value: 'True' | 'False',
    reason: string,
    message: string,
  ): V1DeploymentCondition => {
    const before = previous.find((c) => c.type === type);
    const same = before?.status === value;
    const sameReason = same && before?.reason === reason;
    return {
      type,
      status: value,
      reason,
      message,
      lastTransitionTime: same && before?.lastTransitionTime ? before.lastTransitionTime : now,
      lastUpdateTime: sameReason && before?.lastUpdateTime ? before.lastUpdateTime : now,
    };
  };
  const available = availableReplicas >= want - maxUnavailable;
  const rsName = newRS?.metadata?.name ?? '';
  const conditions: V1DeploymentCondition[] = [
    available
      ? condition('Available', 'True', 'MinimumReplicasAvailable', 'Deployment has minimum availability.')
      : condition(
          'Available',
          'False',
          'MinimumReplicasUnavailable',
          'Deployment does not have minimum availability.',
        ),
  ];
  const complete =
    newRS !== undefined &&
    updatedReplicas === want &&
    replicas === updatedReplicas &&
    availableReplicas === updatedReplicas &&
    (newRS.spec?.replicas ?? 0) === want;
  if (deployment.spec?.paused) {
    conditions.push(
      condition('Progressing', 'Unknown' as 'True', 'DeploymentPaused', 'Deployment is paused'),
    );
  } else if (complete) {
    conditions.push(
      condition(
        'Progressing',
        'True',
        'NewReplicaSetAvailable',
        `ReplicaSet "${rsName}" has successfully progressed.`,
      ),
    );
  } else if (createdNewRS !== undefined) {
    conditions.push(
      condition('Progressing', 'True', 'NewReplicaSetCreated', `Created new replica set "${createdNewRS}"`),
    );
  } else {
    conditions.push(
      condition('Progressing', 'True', 'ReplicaSetUpdated', `ReplicaSet "${rsName}" is progressing.`),
    );
  }
  status.conditions = conditions;
  return status;
}

/** Whether a status write would change anything (times of unchanged conditions aside). */
export function sameDeploymentStatus(a: V1DeploymentStatus | undefined, b: V1DeploymentStatus): boolean {
  const strip = (s: V1DeploymentStatus | undefined) =>
    canonicalJson({
      ...(s ?? {}),
      conditions: (s?.conditions ?? []).map((c) => [c.type, c.status, c.reason, c.message]),
    });
  return strip(a) === strip(b);
}
