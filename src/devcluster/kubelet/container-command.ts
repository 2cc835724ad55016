import type { V1Container, V1EnvVar, V1Pod } from '@kubernetes/client-node';

/**
 * What a container runs on this host, without images: agnhost (and pause) images run the
 * built-in `weft agnhost`; any other image runs its `command` + `args` as a host process.
 * Pure: the kubelet calls it with the pod and the values only it knows (IPs).
 */

export class ContainerConfigError extends Error {
  readonly reason: 'CreateContainerConfigError' | 'RunContainerError';

  constructor(reason: 'CreateContainerConfigError' | 'RunContainerError', message: string) {
    super(message);
    this.reason = reason;
  }
}

const AGNHOST_IMAGE =
  /^(registry\.k8s\.io|k8s\.gcr\.io|gcr\.io\/kubernetes-e2e-test-images|us\.gcr\.io\/k8s-artifacts-prod)\/(e2e-test-images\/)?agnhost([:@].*)?$/;
const PAUSE_IMAGE = /^(registry\.k8s\.io|k8s\.gcr\.io)\/pause([:@].*)?$/;

export function isAgnhostImage(image: string): boolean {
  return AGNHOST_IMAGE.test(image);
}

/**
 * argv for a container. `weft` is argv that runs the built weft CLI ([node, weft.js]).
 * Kubernetes semantics: `command` replaces the image's entrypoint, `args` its default
 * arguments; $(VAR) references to the container's environment are expanded, $$(VAR) escapes.
 */
export function containerArgv(container: V1Container, env: Record<string, string>, weft: string[]): string[] {
  const image = container.image ?? '';
  const command = (container.command ?? []).map((c) => expandVars(c, env));
  const args = (container.args ?? []).map((a) => expandVars(a, env));
  if (isAgnhostImage(image)) {
    // The image's entrypoint is /agnhost; `command: [/agnhost, netexec]` names it explicitly.
    if (command.length === 0) {
      if (args.length === 0) {
        throw new ContainerConfigError(
          'RunContainerError',
          'agnhost needs a subcommand in args (e.g. netexec)',
        );
      }
      return [...weft, 'agnhost', ...args];
    }
    if (command[0] === '/agnhost' || command[0] === 'agnhost')
      return [...weft, 'agnhost', ...command.slice(1), ...args];
    return [...command, ...args];
  }
  if (PAUSE_IMAGE.test(image) && command.length === 0) return [...weft, 'agnhost', 'pause'];
  if (command.length === 0) {
    throw new ContainerConfigError(
      'RunContainerError',
      `image "${image}" has no entrypoint known to the devcluster (it runs host commands, not images); set the container's command`,
    );
  }
  return [...command, ...args];
}

/** Kubernetes' $(VAR) expansion: unknown references stay as they are; $$ is a literal $. */
export function expandVars(text: string, env: Record<string, string>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (match, name: string | undefined) => {
    if (match === '$$') return '$';
    return name !== undefined && Object.hasOwn(env, name) ? (env[name] ?? '') : match;
  });
}

export interface EnvContext {
  podIP?: string;
  hostIP: string;
  nodeName: string;
  /** The `kubernetes` Service's ClusterIP (first address of the service CIDR). */
  kubernetesServiceIP: string;
  /** The host's PATH and HOME, so host commands resolve as they would in a shell. */
  hostEnv: { PATH?: string; HOME?: string };
}

/**
 * The container's environment, in Kubernetes' order: what the runtime sets (PATH, HOSTNAME),
 * the kubernetes Service variables, then the spec's `env` (each value may refer to earlier
 * ones with $(VAR)); downward-API fieldRefs resolve against the pod. Processes share the
 * host's UTS namespace here, so POD_NAME, POD_NAMESPACE, POD_IP and NODE_NAME are also set
 * (the spec's own values win).
 */
export function containerEnv(pod: V1Pod, container: V1Container, ctx: EnvContext): Record<string, string> {
  const name = pod.metadata?.name ?? '';
  const env: Record<string, string> = {
    PATH: ctx.hostEnv.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: ctx.hostEnv.HOME ?? '/root',
    HOSTNAME: name,
    POD_NAME: name,
    POD_NAMESPACE: pod.metadata?.namespace ?? 'default',
    NODE_NAME: ctx.nodeName,
    KUBERNETES_SERVICE_HOST: ctx.kubernetesServiceIP,
    KUBERNETES_SERVICE_PORT: '443',
    KUBERNETES_SERVICE_PORT_HTTPS: '443',
    KUBERNETES_PORT: `tcp://${ctx.kubernetesServiceIP}:443`,
    KUBERNETES_PORT_443_TCP: `tcp://${ctx.kubernetesServiceIP}:443`,
    KUBERNETES_PORT_443_TCP_PROTO: 'tcp',
    KUBERNETES_PORT_443_TCP_PORT: '443',
    KUBERNETES_PORT_443_TCP_ADDR: ctx.kubernetesServiceIP,
  };
  if (ctx.podIP) env.POD_IP = ctx.podIP;
  for (const v of container.env ?? []) {
    env[v.name] = envValue(pod, v, env, ctx);
  }
  return env;
}

function envValue(pod: V1Pod, v: V1EnvVar, env: Record<string, string>, ctx: EnvContext): string {
  if (v.value !== undefined) return expandVars(v.value, env);
  const from = v.valueFrom;
  if (!from) return '';
  if (from.fieldRef) return fieldRefValue(pod, from.fieldRef.fieldPath, ctx, v.name);
  const kind = from.configMapKeyRef
    ? 'configMapKeyRef'
    : from.secretKeyRef
      ? 'secretKeyRef'
      : from.resourceFieldRef
        ? 'resourceFieldRef'
        : 'valueFrom';
  throw new ContainerConfigError(
    'CreateContainerConfigError',
    `env ${v.name}: valueFrom.${kind} is not supported by the devcluster kubelet (use value or fieldRef)`,
  );
}

/** The downward API's fieldRef paths (the ones the Kubernetes API server accepts for env). */
export function fieldRefValue(pod: V1Pod, path: string, ctx: EnvContext, envName = path): string {
  const m = /^metadata\.(labels|annotations)\['([^']+)'\]$/.exec(path);
  if (m) {
    const map = m[1] === 'labels' ? pod.metadata?.labels : pod.metadata?.annotations;
    return map?.[m[2] ?? ''] ?? '';
  }
  switch (path) {
    case 'metadata.name':
      return pod.metadata?.name ?? '';
    case 'metadata.namespace':
      return pod.metadata?.namespace ?? '';
    case 'metadata.uid':
      return pod.metadata?.uid ?? '';
    case 'spec.nodeName':
      return pod.spec?.nodeName ?? ctx.nodeName;
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName ?? 'default';
    case 'status.hostIP':
    case 'status.hostIPs':
      return ctx.hostIP;
    case 'status.podIP':
    case 'status.podIPs':
      return ctx.podIP ?? '';
    default:
      throw new ContainerConfigError(
        'CreateContainerConfigError',
        `env ${envName}: unsupported fieldRef.fieldPath "${path}"`,
      );
  }
}
