import type {
  V1Node,
  V1NodeSelectorRequirement,
  V1NodeSelectorTerm,
  V1Pod,
  V1Taint,
  V1Toleration,
} from '@kubernetes/client-node';

/**
 * Which node a pod goes to: the scheduler's filter (Ready, schedulable, nodeSelector, required
 * node affinity, NoSchedule/NoExecute taints) and score (fewest pods, ties broken by a
 * rotating index so equal nodes take turns). Pure.
 */

export type NodeChoice = { node: string } | { unschedulable: string };

export function chooseNode(
  pod: V1Pod,
  nodes: readonly V1Node[],
  podsPerNode: Map<string, number>,
  turn: number,
): NodeChoice {
  const reasons = new Map<string, number>();
  const fits: V1Node[] = [];
  for (const node of nodes) {
    const why = whyNotFits(pod, node);
    if (why) reasons.set(why, (reasons.get(why) ?? 0) + 1);
    else fits.push(node);
  }
  if (fits.length === 0) {
    const detail = [...reasons.entries()].map(([why, n]) => `${n} ${why}`).join(', ');
    return {
      unschedulable: `0/${nodes.length} nodes are available${detail ? `: ${detail}` : ''}.`,
    };
  }
  const sorted = [...fits].sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''));
  const least = Math.min(...sorted.map((n) => podsPerNode.get(n.metadata?.name ?? '') ?? 0));
  const candidates = sorted.filter((n) => (podsPerNode.get(n.metadata?.name ?? '') ?? 0) === least);
  const chosen = candidates[turn % candidates.length] ?? candidates[0];
  return { node: chosen?.metadata?.name ?? '' };
}

/** Why `node` cannot take `pod`, in kube-scheduler's words; undefined when it can. */
export function whyNotFits(pod: V1Pod, node: V1Node): string | undefined {
  const ready = node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
  if (!ready) return 'node(s) were not ready';
  if (node.spec?.unschedulable) return 'node(s) were unschedulable';
  const labels = node.metadata?.labels ?? {};
  for (const [k, v] of Object.entries(pod.spec?.nodeSelector ?? {})) {
    if (labels[k] !== v) return "node(s) didn't match Pod's node affinity/selector";
  }
  const terms =
    pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
  if (terms && terms.length > 0 && !terms.some((t) => termMatches(t, node))) {
    return "node(s) didn't match Pod's node affinity/selector";
  }
  const untolerated = (node.spec?.taints ?? []).find(
    (t) =>
      (t.effect === 'NoSchedule' || t.effect === 'NoExecute') &&
      !(pod.spec?.tolerations ?? []).some((tol) => tolerates(tol, t)),
  );
  if (untolerated) {
    return `node(s) had untolerated taint {${untolerated.key}${untolerated.value ? `: ${untolerated.value}` : ''}}`;
  }
  return undefined;
}

function termMatches(term: V1NodeSelectorTerm, node: V1Node): boolean {
  const labels = node.metadata?.labels ?? {};
  const exprs = term.matchExpressions ?? [];
  const fields = term.matchFields ?? [];
  if (exprs.length === 0 && fields.length === 0) return false;
  return (
    exprs.every((e) => requirementMatches(e, labels[e.key])) &&
    fields.every((f) => requirementMatches(f, f.key === 'metadata.name' ? node.metadata?.name : undefined))
  );
}

function requirementMatches(r: V1NodeSelectorRequirement, value: string | undefined): boolean {
  const values = r.values ?? [];
  switch (r.operator) {
    case 'In':
      return value !== undefined && values.includes(value);
    case 'NotIn':
      return value === undefined || !values.includes(value);
    case 'Exists':
      return value !== undefined;
    case 'DoesNotExist':
      return value === undefined;
    case 'Gt':
    case 'Lt': {
      const n = Number(value);
      const bound = Number(values[0]);
      if (value === undefined || !Number.isInteger(n) || !Number.isInteger(bound)) return false;
      return r.operator === 'Gt' ? n > bound : n < bound;
    }
    default:
      return false;
  }
}

export function tolerates(tol: V1Toleration, taint: V1Taint): boolean {
  if (tol.effect && tol.effect !== taint.effect) return false;
  if (tol.operator === 'Exists') return tol.key === undefined || tol.key === '' || tol.key === taint.key;
  return tol.key === taint.key && (tol.value ?? '') === (taint.value ?? '');
}
