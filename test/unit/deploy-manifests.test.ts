import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import {
  dumpYaml,
  loadAllYaml,
  type V1ClusterRole,
  type V1ClusterRoleBinding,
  type V1Container,
  type V1DaemonSet,
  type V1ServiceAccount,
} from '@kubernetes/client-node';
import yaml from 'js-yaml';
import { describe, expect, it } from 'vitest';
import { AGENT_NODE_FLAGS, parseAgentArgs, pinRootOf } from '../../src/agent/config.js';

/**
 * Static checks of deploy/: the Kind config, the agent manifests, the Dockerfile and its build
 * context. They run without a cluster or Docker; test/e2e/deploy-apply.test.ts applies the
 * manifests to the devcluster API server and runs the agent against them.
 */

const root = join(import.meta.dirname, '../..');
const read = (path: string) => readFileSync(join(root, path), 'utf8');

const AGENT_MANIFEST = 'deploy/weft-agent.yaml';
const KIND_CONFIG = 'deploy/kind-config.yaml';
const DOCKERFILE = 'deploy/Dockerfile';
/** Node's Active LTS line (26 "Lithium" since 2026-10-28). Bump it deliberately, here and in the Dockerfile. */
const NODE_LTS_MAJOR = 26;
/** The tag docs/kind.md builds, `kind load`s and the DaemonSet runs. */
const IMAGE = 'weft:dev';

type KubeObject = { apiVersion?: string; kind?: string; metadata?: { name?: string; namespace?: string } };

const manifestText = read(AGENT_MANIFEST);
const objects = loadAllYaml(manifestText) as KubeObject[];
const rawObjects = yaml.loadAll(manifestText) as unknown[];

function only<T>(kind: string): T {
  const found = objects.filter((o) => o.kind === kind);
  expect(found, `${AGENT_MANIFEST} has exactly one ${kind}`).toHaveLength(1);
  return found[0] as T;
}

const daemonSet = only<V1DaemonSet>('DaemonSet');
const podSpec = daemonSet.spec!.template.spec!;
const agent: V1Container = podSpec.containers.find((c) => c.name === 'agent')!;
const allContainers: V1Container[] = [...(podSpec.initContainers ?? []), ...podSpec.containers];

/** The agent's flags as the manifest passes them: --name=value → { name: value }. */
function agentFlags(): Map<string, string> {
  const args = agent.args ?? [];
  expect(args[0], 'the container runs `weft agent`').toBe('agent');
  const flags = new Map<string, string>();
  for (const arg of args.slice(1)) {
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(arg);
    expect(m, `argument ${arg} is a --flag=value`).not.toBeNull();
    flags.set(m![1]!, m![2] ?? '');
  }
  return flags;
}

function volumeFor(mountName: string) {
  const volume = podSpec.volumes?.find((v) => v.name === mountName);
  expect(volume, `volume ${mountName} exists`).toBeDefined();
  return volume!;
}

function agentMountAt(path: string) {
  const mount = agent.volumeMounts?.find((m) => m.mountPath === path);
  expect(mount, `the agent container mounts something at ${path}`).toBeDefined();
  return mount!;
}

function envValue(container: V1Container, name: string) {
  return container.env?.find((e) => e.name === name);
}

describe('deploy/weft-agent.yaml', () => {
  it('parses, and every object has apiVersion, kind and metadata.name', () => {
    expect(objects.length).toBeGreaterThanOrEqual(4);
    for (const o of objects) {
      expect(o.apiVersion, JSON.stringify(o)).toBeTruthy();
      expect(o.kind, JSON.stringify(o)).toBeTruthy();
      expect(o.metadata?.name, `${o.kind} has a name`).toBeTruthy();
    }
  });

  it('uses only fields the Kubernetes API types know (a misspelled field would be dropped silently)', () => {
    // The typed models drop unknown fields, so a round trip through them changes an object
    // with a typo (mountPropogation, readonly, ...) and leaves a correct one as it was.
    for (const [i, o] of objects.entries()) {
      expect(yaml.load(dumpYaml(o)), `${o.kind}/${o.metadata?.name}`).toEqual(rawObjects[i]);
    }
    const typo = structuredClone(rawObjects[objects.indexOf(daemonSet)]) as {
      spec: { template: { spec: { containers: Array<{ volumeMounts: Array<Record<string, unknown>> }> } } };
    };
    const mount = typo.spec.template.spec.containers[0]!.volumeMounts[0]!;
    mount.mountPropogation = mount.mountPropagation;
    delete mount.mountPropagation;
    const [reloaded] = loadAllYaml(yaml.dump(typo));
    expect(isDeepStrictEqual(yaml.load(dumpYaml(reloaded)), typo)).toBe(false);
  });

  it('puts its namespaced objects in kube-system and creates no Namespace', () => {
    expect(objects.some((o) => o.kind === 'Namespace')).toBe(false);
    for (const o of objects.filter((x) => x.kind === 'ServiceAccount' || x.kind === 'DaemonSet')) {
      expect(o.metadata?.namespace, `${o.kind}/${o.metadata?.name}`).toBe('kube-system');
    }
  });

  it('grants the agent exactly get/list/watch on services, endpointslices and nodes', () => {
    // Least privilege. A new grant lands with the code that needs it: update this list, the
    // comment in the manifest and docs/kind.md together.
    const role = only<V1ClusterRole>('ClusterRole');
    const granted = new Set<string>();
    for (const rule of role.rules ?? []) {
      expect(rule.nonResourceURLs ?? [], 'no non-resource URLs').toEqual([]);
      expect(rule.resourceNames ?? [], 'no per-name rules').toEqual([]);
      for (const group of rule.apiGroups ?? [])
        for (const resource of rule.resources ?? [])
          for (const verb of rule.verbs) granted.add(`${group || 'core'}/${resource}:${verb}`);
    }
    expect([...granted].sort()).toEqual(
      [
        'core/nodes:get',
        'core/nodes:list',
        'core/nodes:watch',
        'core/services:get',
        'core/services:list',
        'core/services:watch',
        'discovery.k8s.io/endpointslices:get',
        'discovery.k8s.io/endpointslices:list',
        'discovery.k8s.io/endpointslices:watch',
      ].sort(),
    );
    expect(role.aggregationRule).toBeUndefined();
  });

  it('binds that ClusterRole to the ServiceAccount the DaemonSet runs as', () => {
    const sa = only<V1ServiceAccount>('ServiceAccount');
    const binding = only<V1ClusterRoleBinding>('ClusterRoleBinding');
    const role = only<V1ClusterRole>('ClusterRole');
    expect(binding.roleRef).toEqual({
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'ClusterRole',
      name: role.metadata!.name,
    });
    expect(binding.subjects).toEqual([
      { kind: 'ServiceAccount', name: sa.metadata!.name, namespace: sa.metadata!.namespace },
    ]);
    expect(podSpec.serviceAccountName).toBe(sa.metadata!.name);
    expect(podSpec.automountServiceAccountToken).not.toBe(false);
  });

  it('runs one agent on every node: node-critical, tolerating every taint, one node at a time', () => {
    expect(daemonSet.spec!.selector.matchLabels).toBeDefined();
    for (const [k, v] of Object.entries(daemonSet.spec!.selector.matchLabels!)) {
      expect(daemonSet.spec!.template.metadata!.labels![k]).toBe(v);
    }
    expect(podSpec.priorityClassName).toBe('system-node-critical');
    expect(podSpec.tolerations).toContainEqual({ operator: 'Exists' });
    expect(daemonSet.spec!.updateStrategy).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxUnavailable: 1 },
    });
  });

  it("uses the node's network and the node's resolver (cluster DNS needs the agent first)", () => {
    expect(podSpec.hostNetwork).toBe(true);
    // ClusterFirstWithHostNet would send the lookup of the API server's name to CoreDNS's
    // ClusterIP, which works only once this agent runs: a deadlock on a fresh cluster.
    expect(podSpec.dnsPolicy).toBe('Default');
  });

  it('reaches the API server at the Kind control-plane container, not through the kubernetes Service', () => {
    const kind = yaml.load(read(KIND_CONFIG)) as { name?: string };
    const clusterName = kind.name ?? 'kind';
    expect(envValue(agent, 'KUBERNETES_SERVICE_HOST')?.value).toBe(`${clusterName}-control-plane`);
    expect(envValue(agent, 'KUBERNETES_SERVICE_PORT')?.value).toBe('6443');
  });

  it('takes the node name from the downward API', () => {
    const env = agent.env?.find((e) => e.valueFrom?.fieldRef?.fieldPath === 'spec.nodeName');
    expect(env, 'an env var from fieldRef spec.nodeName').toBeDefined();
    expect(agentFlags().get('node-name')).toBe(`$(${env!.name})`);
  });

  it('runs the image that docs/kind.md builds and loads, without pulling it', () => {
    for (const c of allContainers) {
      expect(c.image, c.name).toBe(IMAGE);
      expect(['IfNotPresent', 'Never'], `${c.name} must not pull a kind-loaded image`).toContain(
        c.imagePullPolicy,
      );
    }
    const docs = read('docs/kind.md');
    expect(docs).toContain(`docker build -f ${DOCKERFILE} -t ${IMAGE} .`);
    expect(docs).toContain(`kind load docker-image ${IMAGE}`);
    expect(read(DOCKERFILE)).toContain(`docker build -f ${DOCKERFILE} -t ${IMAGE} .`);
  });

  it('mounts bpffs at --bpf-root, propagated from the node so that pins outlive the pod', () => {
    const bpfRoot = agentFlags().get('bpf-root') ?? '/sys/fs/bpf';
    const mount = agentMountAt(bpfRoot);
    expect(volumeFor(mount.name).hostPath?.path).toBe('/sys/fs/bpf');
    expect(mount.mountPropagation).toBe('HostToContainer');
    // Some privileged init container mounts bpffs on the node if it is missing.
    const mounter = (podSpec.initContainers ?? []).find((c) =>
      c.volumeMounts?.some((m) => m.name === mount.name && m.mountPropagation === 'Bidirectional'),
    );
    expect(mounter, 'an init container with a Bidirectional bpffs mount').toBeDefined();
    expect(mounter!.securityContext?.privileged).toBe(true);
    expect([...(mounter!.command ?? []), ...(mounter!.args ?? [])].join(' ')).toMatch(
      /mount -t bpf bpf \/sys\/fs\/bpf/,
    );
  });

  it('gives only privileged containers Bidirectional mounts (the API server rejects anything else)', () => {
    for (const c of allContainers) {
      for (const m of c.volumeMounts ?? []) {
        if (m.mountPropagation === 'Bidirectional') expect(c.securityContext?.privileged, c.name).toBe(true);
      }
    }
  });

  it("mounts the node's cgroup2 read-only at --cgroup-root, never the container's own /sys/fs/cgroup", () => {
    const cgroupRoot = agentFlags().get('cgroup-root');
    expect(
      cgroupRoot,
      '--cgroup-root is explicit: the first cgroup2 mount in the container is its own',
    ).toBeTruthy();
    expect(cgroupRoot).not.toBe('/sys/fs/cgroup');
    const mount = agentMountAt(cgroupRoot!);
    expect(volumeFor(mount.name).hostPath).toEqual({ path: '/sys/fs/cgroup', type: 'Directory' });
    expect(mount.readOnly).toBe(true);
  });

  it('keeps the state dir on a hostPath so `weft` in kubectl exec finds agent.sock', () => {
    const stateDir = agentFlags().get('state-dir');
    expect(stateDir).toMatch(/^\/var\/run\/weft\//);
    const mount = agentMountAt('/var/run/weft');
    expect(volumeFor(mount.name).hostPath).toEqual({ path: '/var/run/weft', type: 'DirectoryOrCreate' });
    // Mount paths must not nest inside one another (one would hide or create into the other).
    const paths = (agent.volumeMounts ?? []).map((m) => `${m.mountPath.replace(/\/$/, '')}/`);
    for (const a of paths)
      for (const b of paths) if (a !== b) expect(b.startsWith(a), `${b} inside ${a}`).toBe(false);
  });

  it('probes /healthz and /readyz on the port the agent serves metrics on', () => {
    const addr = agentFlags().get('prometheus-serve-addr') ?? ':9962';
    const metricsPort = Number(addr.slice(addr.lastIndexOf(':') + 1));
    const portOf = (p: number | string | undefined) =>
      typeof p === 'string' ? agent.ports?.find((x) => x.name === p)?.containerPort : p;
    expect(agent.livenessProbe?.httpGet?.path).toBe('/healthz');
    expect(portOf(agent.livenessProbe?.httpGet?.port)).toBe(metricsPort);
    expect(agent.readinessProbe?.httpGet?.path).toBe('/readyz');
    expect(portOf(agent.readinessProbe?.httpGet?.port)).toBe(metricsPort);
    if (agent.startupProbe) expect(portOf(agent.startupProbe.httpGet?.port)).toBe(metricsPort);
    // With hostNetwork the port is the node's port: declare it so the scheduler sees conflicts.
    expect(agent.ports).toContainEqual(
      expect.objectContaining({ containerPort: metricsPort, hostPort: metricsPort, protocol: 'TCP' }),
    );
  });

  it('runs the agent with four BPF capabilities instead of privileged, and without SYS_ADMIN', () => {
    const sc = agent.securityContext!;
    expect(sc.privileged).toBe(false);
    expect(sc.allowPrivilegeEscalation).toBe(false);
    expect(sc.capabilities?.drop).toEqual(['ALL']);
    expect([...(sc.capabilities?.add ?? [])].sort()).toEqual(
      ['BPF', 'NET_ADMIN', 'PERFMON', 'SYS_RESOURCE'].sort(),
    );
    expect(sc.runAsNonRoot).not.toBe(true);
  });

  it('passes --devices for Kind nodes (eth0) and asks for resources in every container', () => {
    expect(agentFlags().get('devices')).toBe('eth0');
    for (const c of allContainers) {
      expect(c.resources?.requests?.cpu, c.name).toBeTruthy();
      expect(c.resources?.requests?.memory, c.name).toBeTruthy();
    }
  });
});

describe('the agent accepts the flags the DaemonSet passes', () => {
  /** The container's args after the kubelet expands $(VAR) from the container's env. */
  function expandedArgs(nodeName: string): { args: string[]; env: NodeJS.ProcessEnv } {
    const env: NodeJS.ProcessEnv = {};
    for (const e of agent.env ?? []) {
      if (e.valueFrom?.fieldRef?.fieldPath === 'spec.nodeName') env[e.name] = nodeName;
      else if (e.value !== undefined) env[e.name] = e.value;
    }
    const args = (agent.args ?? []).map((a) =>
      a.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_, n: string) => env[n] ?? `$(${n})`),
    );
    return { args, env };
  }

  it('parses them into the per-node configuration the docs describe', () => {
    const { args, env } = expandedArgs('kind-worker');
    expect(args[0]).toBe('agent');
    const config = parseAgentArgs(args.slice(1), env);
    expect(config).not.toBe('help');
    expect(config).toMatchObject({
      nodeName: 'kind-worker',
      bpfRoot: '/sys/fs/bpf',
      cgroupRoot: '/host/sys/fs/cgroup',
      devices: ['eth0'],
      stateDir: '/var/run/weft/kind-worker',
      metricsAddress: { host: '0.0.0.0', port: 9962 },
      logLevel: 'info',
    });
    // Pins of two nodes never share a directory.
    const other = parseAgentArgs(expandedArgs('kind-worker2').args.slice(1), env);
    if (config === 'help' || other === 'help') throw new Error('unexpected help');
    expect(pinRootOf(config)).toBe('/sys/fs/bpf/weft/kind-worker');
    expect(pinRootOf(other)).not.toBe(pinRootOf(config));
  });

  it('lists every flag of the manifest in `weft agent --help`', () => {
    // From the sources (not dist/, which may be stale), as a user would run it.
    const help = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/weft.ts', 'agent', '--help'], {
      cwd: root,
      encoding: 'utf8',
      timeout: 15_000,
    });
    expect(help.status, help.stderr).toBe(0);
    const known = new Set([...help.stdout.matchAll(/--([a-z0-9][a-z0-9-]*)/g)].map((m) => m[1]));
    for (const flag of agentFlags().keys()) expect(known, `--${flag}`).toContain(flag);
  });
});

describe('deploy/kind-config.yaml', () => {
  const config = yaml.load(read(KIND_CONFIG)) as {
    kind: string;
    apiVersion: string;
    networking?: { kubeProxyMode?: string; disableDefaultCNI?: boolean };
    nodes?: Array<{ role: string }>;
  };

  it('is a Kind cluster without kube-proxy that keeps kindnet for pod networking', () => {
    expect(config.kind).toBe('Cluster');
    expect(config.apiVersion).toBe('kind.x-k8s.io/v1alpha4');
    expect(config.networking?.kubeProxyMode).toBe('none');
    // weft is not a CNI: without kindnet no pod would get an address.
    expect(config.networking?.disableDefaultCNI ?? false).toBe(false);
  });

  it('has one control plane and two workers', () => {
    expect(config.nodes?.map((n) => n.role)).toEqual(['control-plane', 'worker', 'worker']);
  });
});

/** Dockerfile instructions, with line continuations joined and comments dropped. */
function dockerfileInstructions(text: string): Array<{ op: string; args: string }> {
  const out: Array<{ op: string; args: string }> = [];
  let pending = '';
  for (const line of text.split('\n')) {
    if (/^\s*#/.test(line) && pending === '') continue;
    if (/^\s*#/.test(line)) continue;
    pending += `${line.replace(/\\\s*$/, '')} `;
    if (/\\\s*$/.test(line)) continue;
    const m = /^\s*([A-Za-z]+)\s+(.*?)\s*$/.exec(pending);
    if (m) out.push({ op: m[1]!.toUpperCase(), args: m[2]! });
    pending = '';
  }
  return out;
}

/** Stages: FROM image [AS name] and the instructions after it. */
function dockerStages(text: string) {
  const stages: Array<{ image: string; name?: string; steps: Array<{ op: string; args: string }> }> = [];
  for (const step of dockerfileInstructions(text)) {
    if (step.op === 'FROM') {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(step.args);
      stages.push({ image: m![1]!, name: m![2], steps: [] });
    } else stages.at(-1)?.steps.push(step);
  }
  return stages;
}

/**
 * Whether the build context keeps `path`, by .dockerignore's rules: the last pattern that
 * matches the path or one of its parent directories decides; `!` re-includes.
 */
function inBuildContext(path: string, patterns: string[]): boolean {
  const toRegExp = (pattern: string) => {
    let re = '';
    const p = pattern.replace(/\/+$/, '');
    for (let i = 0; i < p.length; i++) {
      const c = p[i]!;
      if (c === '*' && p[i + 1] === '*') {
        re += '.*';
        i++;
      } else if (c === '*') re += '[^/]*';
      else if (c === '?') re += '[^/]';
      else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
    return new RegExp(`^${re}$`);
  };
  const parts = path.split('/');
  const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  let included = true;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const re = toRegExp(negate ? raw.slice(1) : raw);
    if (prefixes.some((p) => re.test(p))) included = negate;
  }
  return included;
}

describe('deploy/Dockerfile', () => {
  const text = read(DOCKERFILE);
  const stages = dockerStages(text);
  const runtime = stages.at(-1)!;
  const ignore = read('.dockerignore')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));

  it('builds on the current Node LTS and runs on its bookworm-slim image', () => {
    const builders = stages.slice(0, -1);
    expect(builders.length).toBeGreaterThanOrEqual(1);
    for (const s of builders) expect(s.image).toBe(`node:${NODE_LTS_MAJOR}-bookworm`);
    expect(runtime.image).toBe(`node:${NODE_LTS_MAJOR}-bookworm-slim`);
    const build = stages.find((s) => s.steps.some((x) => x.op === 'RUN' && /\btsc\b/.test(x.args)));
    expect(build?.steps.some((x) => x.op === 'RUN' && /npm ci\b/.test(x.args))).toBe(true);
  });

  it('installs only libbpf1 and iproute2 from Debian in the runtime image', () => {
    const installs = runtime.steps
      .filter((s) => s.op === 'RUN')
      .flatMap((s) => [...s.args.matchAll(/apt-get install ((?:-\S+\s+)*)([^&;]+)/g)])
      .flatMap((m) => {
        expect(m[1], 'no recommends').toContain('--no-install-recommends');
        return m[2]!.trim().split(/\s+/);
      });
    expect(installs.sort()).toEqual(['iproute2', 'libbpf1']);
  });

  it('copies the prebuilt eBPF objects, the built JavaScript and production node_modules', () => {
    const copies = runtime.steps.filter((s) => s.op === 'COPY').map((s) => s.args);
    expect(copies).toContainEqual(expect.stringMatching(/^bpf\/dist\s/));
    expect(copies).toContainEqual(expect.stringMatching(/^package\.json\s/));
    expect(copies).toContainEqual(expect.stringMatching(/^--from=\S+ \S*\/dist\/src\s/));
    const nodeModules = copies.find((c) => /node_modules/.test(c));
    const from = /^--from=(\S+)/.exec(nodeModules ?? '')?.[1];
    const depsStage = stages.find((s) => s.name === from);
    expect(depsStage?.steps.some((s) => s.op === 'RUN' && /npm ci --omit=dev/.test(s.args))).toBe(true);
  });

  it('runs the weft CLI as root with `agent` as the default command', () => {
    const last = (op: string) => runtime.steps.filter((s) => s.op === op).at(-1)?.args;
    expect(JSON.parse(last('ENTRYPOINT')!)).toEqual(['weft']);
    expect(JSON.parse(last('CMD')!)).toEqual(['agent']);
    const user = last('USER');
    if (user !== undefined) expect(user).toMatch(/^(0|root)(:0|:root)?$/);
  });

  it("gives the agent its V8 flags through NODE_OPTIONS, as the devcluster's command line does", () => {
    const env = runtime.steps.filter((s) => s.op === 'ENV').map((s) => s.args);
    expect(env).toContain(`NODE_OPTIONS=${AGENT_NODE_FLAGS.join(' ')}`);
  });

  it('finds every file it copies from the context in the .dockerignore allow-list', () => {
    const sources = stages
      .flatMap((s) => s.steps)
      .filter((s) => s.op === 'COPY' && !s.args.startsWith('--from='))
      .flatMap((s) => s.args.split(/\s+/).slice(0, -1));
    expect(sources.length).toBeGreaterThan(0);
    for (const src of sources) {
      const sample = /\.[a-z]+$/.test(src) ? src : `${src}/x`;
      expect(inBuildContext(sample, ignore), `${src} reaches the build`).toBe(true);
    }
  });

  it('keeps node_modules, dist, .git, tests and local files out of the build context', () => {
    for (const path of [
      'node_modules/ffi-rs/index.js',
      'dist/src/cli/weft.js',
      '.git/config',
      'test/unit/deploy-manifests.test.ts',
      '.scratch/x.ts',
      'bench/results/ringbuf.json',
      'bpf/sock_lb.bpf.c',
      '.env',
    ]) {
      expect(inBuildContext(path, ignore), path).toBe(false);
    }
  });
});
