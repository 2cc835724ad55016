import type { V1Pod } from '@kubernetes/client-node';

/**
 * What the kubelet checks before it makes anything for a pod. Pod names, namespaces, UIDs and
 * container names become file, cgroup and namespace names on the host, so they are validated
 * here, at the kubelet's edge, even though the API server validates them too. Pure.
 */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const UID = /^[0-9A-Za-z][-0-9A-Za-z]{0,63}$/;

/** Why the pod cannot run on this kubelet, or undefined when it can. */
export function podAdmissionError(pod: V1Pod): string | undefined {
  const uid = pod.metadata?.uid ?? '';
  if (!UID.test(uid)) return `pod UID ${JSON.stringify(uid)} is not a UID`;
  const namespace = pod.metadata?.namespace ?? '';
  if (!DNS_LABEL.test(namespace)) return `namespace ${JSON.stringify(namespace)} is not a DNS label`;
  const name = pod.metadata?.name ?? '';
  if (!DNS_SUBDOMAIN.test(name) || name.includes('..'))
    return `pod name ${JSON.stringify(name)} is not a DNS subdomain`;
  const all = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
  if ((pod.spec?.containers ?? []).length === 0) return 'the pod has no containers';
  const seen = new Set<string>();
  for (const c of all) {
    if (!DNS_LABEL.test(c.name ?? '')) return `container name ${JSON.stringify(c.name)} is not a DNS label`;
    if (seen.has(c.name)) return `container name "${c.name}" is used twice`;
    seen.add(c.name);
  }
  return undefined;
}
