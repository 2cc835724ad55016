import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { get as httpGet } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest, type Server } from 'node:https';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  loadAllYaml,
  type V1ClusterRole,
  type V1ClusterRoleBinding,
  type V1DaemonSet,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cgroup2Root } from '../../src/datapath/environment.js';
import { type ApiServer, kubeconfigYaml, startApiServer } from '../../src/devcluster/apiserver/index.js';
import { projectRoot, weftCommand } from '../../src/shared/self.js';

/**
 * deploy/weft-agent.yaml against the devcluster's Kubernetes-compatible API server: kubectl
 * applies it (client-side and server-side) and re-applies it without changes; then the agent
 * starts the way the DaemonSet starts it — the manifest's own args, in-cluster configuration
 * from KUBERNETES_SERVICE_HOST/PORT and a ServiceAccount token and CA at the real
 * /var/run/secrets/kubernetes.io/serviceaccount path (in a private mount namespace) — and
 * becomes ready. Every request it makes goes through a recording proxy and must be allowed by
 * the ClusterRole the manifest binds to its ServiceAccount.
 *
 * Everything the test makes on the host is named weft-kt-deploy-* and removed afterwards: the
 * temp dir (API server data, token, state dir), a private bpffs mount (the pin root), a child
 * cgroup (the cgroup root: never the host's root cgroup) and a dummy link (--devices).
 */

const MANIFEST = join(projectRoot, 'deploy/weft-agent.yaml');
const run = promisify(execFile);

interface Cluster {
  server: ApiServer;
  dir: string;
  kubeconfig: string;
  kubectl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  close(): Promise<void>;
}

/** An API server on an ephemeral loopback port with its data in a temp dir, and kubectl for it. */
async function startCluster(): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-kt-deploy-'));
  const server = await startApiServer({
    listen: [{ host: '127.0.0.1', port: 0 }],
    dataDir: join(dir, 'apiserver'),
    serviceCIDR: '10.96.0.0/16',
    advertiseAddress: '127.0.0.1',
    advertisePort: 6443,
  });
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    kubeconfigYaml({
      clusterName: 'weft-kt-deploy',
      server: server.url,
      caCertPem: server.caCertPem,
      token: server.adminToken,
    }),
    { mode: 0o600 },
  );
  return {
    server,
    dir,
    kubeconfig,
    // Asynchronous: the API server runs in this process and must keep answering.
    async kubectl(args) {
      try {
        const r = await run('kubectl', ['--kubeconfig', kubeconfig, ...args], { timeout: 60_000 });
        return { code: 0, stdout: r.stdout, stderr: r.stderr };
      } catch (err) {
        const e = err as { code?: number; stdout?: string; stderr?: string };
        return {
          code: typeof e.code === 'number' ? e.code : 1,
          stdout: e.stdout ?? '',
          stderr: e.stderr ?? String(err),
        };
      }
    },
    async close() {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function kubectlOk(c: Cluster, args: string[]): Promise<string> {
  const r = await c.kubectl(args);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.code}\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** `<kind>/<name>` → resourceVersion of every object in the manifest. */
async function versions(c: Cluster): Promise<Record<string, string>> {
  const list = JSON.parse(await kubectlOk(c, ['get', '-f', MANIFEST, '-o', 'json'])) as {
    items: Array<{ kind: string; metadata: { name: string; resourceVersion: string } }>;
  };
  return Object.fromEntries(
    list.items.map((o) => [`${o.kind}/${o.metadata.name}`, o.metadata.resourceVersion]),
  );
}

const manifestObjects = loadAllYaml(readFileSync(MANIFEST, 'utf8')) as Array<{
  kind: string;
  metadata: { name: string };
}>;
const expectedNames = manifestObjects.map((o) => `${o.kind}/${o.metadata.name}`).sort();

describe('kubectl apply -f deploy/weft-agent.yaml (client-side)', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster();
  });
  afterAll(async () => {
    await cluster?.close();
  });

  it('creates every object', async () => {
    const out = await kubectlOk(cluster, ['apply', '-f', MANIFEST]);
    const lines = out.trim().split('\n');
    expect(lines).toHaveLength(manifestObjects.length);
    for (const line of lines) expect(line).toMatch(/ created$/);
  });

  it('changes nothing when applied again', async () => {
    const before = await versions(cluster);
    const out = await kubectlOk(cluster, ['apply', '-f', MANIFEST]);
    for (const line of out.trim().split('\n')) expect(line).toMatch(/ unchanged$/);
    expect(await versions(cluster)).toEqual(before);
    // kubectl diff exits 0 when the live objects match the manifest.
    const diff = await cluster.kubectl(['diff', '-f', MANIFEST]);
    expect(diff.code, diff.stdout + diff.stderr).toBe(0);
  });

  it('shows them with kubectl get', async () => {
    const names = (await kubectlOk(cluster, ['get', '-f', MANIFEST, '-o', 'name'])).trim().split('\n');
    expect(names).toHaveLength(manifestObjects.length);
    const ds = await kubectlOk(cluster, [
      '-n',
      'kube-system',
      'get',
      'daemonset',
      'weft-agent',
      '-o',
      'wide',
    ]);
    expect(ds).toMatch(/weft-agent\s+/);
    expect(ds).toContain('weft:dev');
    const role = await kubectlOk(cluster, ['get', 'clusterrolebinding', 'weft-agent', '-o', 'wide']);
    expect(role).toContain('ClusterRole/weft-agent');
    const subjects = await kubectlOk(cluster, [
      'get',
      'clusterrolebinding',
      'weft-agent',
      '-o',
      'jsonpath={range .subjects[*]}{.kind}:{.namespace}/{.name}{end}',
    ]);
    expect(subjects).toBe('ServiceAccount:kube-system/weft-agent');
  });
});

describe('kubectl apply --server-side -f deploy/weft-agent.yaml', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster();
  });
  afterAll(async () => {
    await cluster?.close();
  });

  it('creates every object, and a second apply writes nothing', async () => {
    const first = await kubectlOk(cluster, ['apply', '--server-side', '-f', MANIFEST]);
    expect(first.trim().split('\n')).toHaveLength(manifestObjects.length);
    const before = await versions(cluster);
    expect(Object.keys(before).sort()).toEqual(expectedNames);
    await kubectlOk(cluster, ['apply', '--server-side', '-f', MANIFEST]);
    expect(await versions(cluster)).toEqual(before);
    const diff = await cluster.kubectl(['diff', '--server-side', '-f', MANIFEST]);
    expect(diff.code, diff.stdout + diff.stderr).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// The agent, started like the DaemonSet starts it.

/** What RBAC sees in a request: verb, API group, resource[/subresource], or a non-resource path. */
interface RequestAttributes {
  verb: string;
  group?: string;
  resource?: string;
  name?: string;
  path: string;
}

/** kube-apiserver's request-info rules, for the paths a client of list/watch APIs uses. */
function requestAttributes(method: string, url: string): RequestAttributes {
  const u = new URL(url, 'https://x');
  const lower = method.toLowerCase();
  let parts = u.pathname.split('/').filter(Boolean);
  let group: string | undefined;
  if (parts[0] === 'api' && parts.length >= 3) {
    group = '';
    parts = parts.slice(2);
  } else if (parts[0] === 'apis' && parts.length >= 4) {
    group = parts[1]!;
    parts = parts.slice(3);
  } else {
    return { verb: lower, path: u.pathname };
  }
  let watchPath = false;
  if (parts[0] === 'watch') {
    watchPath = true;
    parts = parts.slice(1);
  }
  // namespaces/<ns>/<resource>/... is a namespaced resource; namespaces/<name> the namespace itself.
  if (parts[0] === 'namespaces' && parts.length >= 3) parts = parts.slice(2);
  const [resource, name, subresource] = parts;
  const watch = watchPath || ['true', '1'].includes(u.searchParams.get('watch') ?? '');
  const verb =
    lower === 'get' || lower === 'head'
      ? watch
        ? 'watch'
        : name
          ? 'get'
          : 'list'
      : lower === 'post'
        ? 'create'
        : lower === 'put'
          ? 'update'
          : lower === 'patch'
            ? 'patch'
            : lower === 'delete'
              ? name
                ? 'delete'
                : 'deletecollection'
              : lower;
  return {
    verb,
    group,
    resource: subresource ? `${resource}/${subresource}` : resource,
    name,
    path: u.pathname,
  };
}

/** Non-resource URLs every authenticated user may GET (system:discovery, system:public-info-viewer). */
const DISCOVERY_PATHS = [
  /^\/api\/?$/,
  /^\/api\/v1\/?$/,
  /^\/apis(\/[^/]+){0,2}\/?$/,
  /^\/version\/?$/,
  /^\/openapi(\/.*)?$/,
  /^\/(healthz|livez|readyz)$/,
];

function allowedBy(rules: NonNullable<V1ClusterRole['rules']>, a: RequestAttributes): boolean {
  if (a.resource === undefined) return a.verb === 'get' && DISCOVERY_PATHS.some((re) => re.test(a.path));
  return rules.some(
    (r) =>
      (r.apiGroups ?? []).some((g) => g === '*' || g === a.group) &&
      (r.resources ?? []).some((x) => x === '*' || x === a.resource) &&
      r.verbs.some((v) => v === '*' || v === a.verb) &&
      ((r.resourceNames ?? []).length === 0 || (a.name !== undefined && r.resourceNames!.includes(a.name))),
  );
}

interface RecordingProxy {
  url: URL;
  requests: Array<{ method: string; url: string; status?: number }>;
  close(): Promise<void>;
}

/**
 * An HTTPS proxy in front of the API server, with the API server's own certificate (so the
 * agent verifies it with the cluster CA, as in a pod), that records every request.
 */
async function startRecordingProxy(
  upstream: URL,
  tls: { key: string; cert: string; ca: string },
): Promise<RecordingProxy> {
  const requests: RecordingProxy['requests'] = [];
  const server: Server = createHttpsServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    const entry: RecordingProxy['requests'][number] = { method: req.method ?? 'GET', url: req.url ?? '/' };
    requests.push(entry);
    const up = httpsRequest(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: upstream.host },
        ca: tls.ca,
      },
      (upRes) => {
        entry.status = upRes.statusCode;
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: new URL(`https://127.0.0.1:${port}`),
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function freePort(): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const address = s.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

function httpStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = httpGet(url, { timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
  });
}

const sh = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8' });

describe('the agent started like the DaemonSet starts it', () => {
  const suffix = Math.random().toString(16).slice(2, 8);
  const nodeName = `weft-kt-deploy-${suffix}`;
  // A veth pair stands in for the node's uplink (interface names have 15 characters at most).
  const device = `weft-kt-dpl${suffix.slice(0, 3)}`;
  let cluster: Cluster;
  let proxy: RecordingProxy;
  let agentProcess: ChildProcess | undefined;
  let agentOutput = '';
  let agentExit: number | null | undefined;
  let bpffs = '';
  let cgroupDir = '';
  let metricsPort = 0;

  beforeAll(async () => {
    cluster = await startCluster();
    await kubectlOk(cluster, ['apply', '--server-side', '-f', MANIFEST]);
  });

  afterAll(async () => {
    if (agentProcess && agentExit === undefined) {
      agentProcess.kill('SIGTERM');
      const exited = await Promise.race([
        new Promise<boolean>((resolve) => agentProcess!.once('exit', () => resolve(true))),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 10_000)),
      ]);
      if (!exited) agentProcess.kill('SIGKILL');
    }
    await proxy?.close();
    if (bpffs && existsSync(bpffs)) sh('umount', [bpffs]);
    if (cgroupDir && existsSync(cgroupDir)) rmdirSync(cgroupDir);
    sh('ip', ['link', 'del', device]);
    await cluster?.close();
  });

  it('connects through the in-cluster configuration and becomes ready', async () => {
    const ds = loadAllYaml(readFileSync(MANIFEST, 'utf8')).find(
      (o: { kind?: string }) => o.kind === 'DaemonSet',
    ) as V1DaemonSet;
    const container = ds.spec!.template.spec!.containers.find((c) => c.name === 'agent')!;
    const nodeEnv = container.env!.find((e) => e.valueFrom?.fieldRef?.fieldPath === 'spec.nodeName')!.name;

    // The Node this agent runs on, as the kubelet would have registered it.
    writeFileSync(
      join(cluster.dir, 'node.json'),
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name: nodeName, labels: { 'kubernetes.io/os': 'linux' } },
      }),
    );
    await kubectlOk(cluster, ['create', '-f', join(cluster.dir, 'node.json')]);

    // The ServiceAccount volume a pod of the DaemonSet gets.
    const saDir = join(cluster.dir, 'serviceaccount');
    mkdirSync(saDir);
    writeFileSync(
      join(saDir, 'token'),
      cluster.server.serviceAccountToken('kube-system', ds.spec!.template.spec!.serviceAccountName!),
    );
    writeFileSync(join(saDir, 'ca.crt'), cluster.server.caCertPem);
    writeFileSync(join(saDir, 'namespace'), 'kube-system');

    // Test-only node resources: a private bpffs, a child cgroup, a veth uplink, a state dir.
    bpffs = join(cluster.dir, 'bpffs');
    mkdirSync(bpffs);
    expect(sh('mount', ['-t', 'bpf', 'bpf', bpffs]).status).toBe(0);
    cgroupDir = join(cgroup2Root(), nodeName);
    mkdirSync(cgroupDir);
    const veth = sh('ip', ['link', 'add', device, 'type', 'veth', 'peer', 'name', `${device}p`]);
    expect(veth.status, veth.stderr).toBe(0);
    expect(sh('ip', ['link', 'set', device, 'up']).status).toBe(0);
    const stateDir = join(cluster.dir, 'run', nodeName);
    metricsPort = await freePort();

    // The manifest's args, with the node-specific paths replaced by the test's.
    const overrides: Record<string, string> = {
      'bpf-root': bpffs,
      'cgroup-root': cgroupDir,
      'state-dir': stateDir,
      devices: device,
      'prometheus-serve-addr': `127.0.0.1:${metricsPort}`,
    };
    const args = container.args!.map((arg) => {
      const m = /^--([a-z0-9-]+)=/.exec(arg);
      const value = m && overrides[m[1]!];
      return (value !== undefined && value !== null ? `--${m![1]}=${value}` : arg).replaceAll(
        `$(${nodeEnv})`,
        nodeName,
      );
    });
    for (const flag of Object.keys(overrides))
      expect(
        args.some((a) => a.startsWith(`--${flag}=`)),
        `--${flag}`,
      ).toBe(true);

    const upstream = new URL(cluster.server.url);
    const apiserverDir = join(cluster.dir, 'apiserver');
    proxy = await startRecordingProxy(upstream, {
      key: readFileSync(join(apiserverDir, 'apiserver.key'), 'utf8'),
      cert: readFileSync(join(apiserverDir, 'apiserver.crt'), 'utf8'),
      ca: cluster.server.caCertPem,
    });

    // The container's privileges: root with only the capabilities the manifest adds (setpriv
    // drops the rest from the bounding set, so the exec'd agent has no others) and
    // no_new_privs for allowPrivilegeEscalation: false.
    const sc = container.securityContext ?? {};
    expect(sc.capabilities?.drop).toEqual(['ALL']);
    const confine = sc.privileged
      ? []
      : [
          'setpriv',
          ...(sc.allowPrivilegeEscalation === false ? ['--no-new-privs'] : []),
          `--bounding-set=${['-all', ...(sc.capabilities?.add ?? []).map((c) => `+${c.toLowerCase()}`)].join(',')}`,
          '--',
        ];

    // A private mount namespace where the token and CA sit at the path every pod has them.
    const [node, main] = weftCommand();
    const script = [
      'mount -t tmpfs -o mode=0755,size=1m weft-kt-deploy /run',
      'mkdir -p /run/secrets/kubernetes.io/serviceaccount',
      'mount --bind "$0" /run/secrets/kubernetes.io/serviceaccount',
      'exec "$@"',
    ].join('\n');
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.KUBECONFIG;
    env[nodeEnv] = nodeName;
    env.KUBERNETES_SERVICE_HOST = proxy.url.hostname;
    env.KUBERNETES_SERVICE_PORT = proxy.url.port;
    agentProcess = spawn(
      'unshare',
      [
        '--mount',
        '--propagation',
        'private',
        '--',
        'sh',
        '-ec',
        script,
        saDir,
        ...confine,
        node,
        main,
        ...args,
      ],
      {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    agentProcess.stdout!.on('data', (b: Buffer) => {
      agentOutput += b.toString();
    });
    agentProcess.stderr!.on('data', (b: Buffer) => {
      agentOutput += b.toString();
    });
    agentProcess.on('exit', (code) => {
      agentExit = code;
    });

    const deadline = Date.now() + 60_000;
    let ready = 0;
    while (Date.now() < deadline && agentExit === undefined) {
      ready = await httpStatus(`http://127.0.0.1:${metricsPort}/readyz`);
      if (ready === 200) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(agentExit, `the agent exited early:\n${agentOutput.slice(-4000)}`).toBeUndefined();
    expect(ready, `/readyz never answered 200:\n${agentOutput.slice(-4000)}`).toBe(200);
    expect(await httpStatus(`http://127.0.0.1:${metricsPort}/healthz`)).toBe(200);
    // It really ran with those capabilities only.
    const capEff = BigInt(
      `0x${/CapEff:\s*([0-9a-f]+)/.exec(readFileSync(`/proc/${agentProcess.pid}/status`, 'utf8'))![1]}`,
    );
    const capBits: Record<string, bigint> = {
      NET_ADMIN: 12n,
      SYS_ADMIN: 21n,
      SYS_RESOURCE: 24n,
      PERFMON: 38n,
      BPF: 39n,
    };
    let allowed = 0n;
    for (const c of sc.capabilities?.add ?? []) {
      expect(capBits[c], `capability ${c} known to this test`).toBeDefined();
      allowed |= 1n << capBits[c]!;
    }
    if (!sc.privileged) expect(capEff & ~allowed, `CapEff ${capEff.toString(16)}`).toBe(0n);
    expect(
      proxy.requests.length,
      'the agent talked to the API server through KUBERNETES_SERVICE_HOST',
    ).toBeGreaterThan(0);
  });

  it('makes only requests that its ClusterRole allows, and uses every grant', async () => {
    expect(proxy, 'the agent was started').toBeDefined();
    expect(agentExit).toBeUndefined();
    const roles = JSON.parse(await kubectlOk(cluster, ['get', 'clusterroles', '-o', 'json'])) as {
      items: V1ClusterRole[];
    };
    const bindings = JSON.parse(await kubectlOk(cluster, ['get', 'clusterrolebindings', '-o', 'json'])) as {
      items: V1ClusterRoleBinding[];
    };
    const rules = bindings.items
      .filter((b) =>
        b.subjects?.some(
          (s) => s.kind === 'ServiceAccount' && s.namespace === 'kube-system' && s.name === 'weft-agent',
        ),
      )
      .flatMap((b) => roles.items.find((r) => r.metadata?.name === b.roleRef.name)?.rules ?? []);
    expect(rules.length).toBeGreaterThan(0);

    const seen = proxy.requests.map((r) => ({ ...r, attrs: requestAttributes(r.method, r.url) }));
    const denied = seen.filter((r) => !allowedBy(rules, r.attrs)).map((r) => `${r.method} ${r.url}`);
    expect(denied, 'requests a real API server would answer 403').toEqual([]);
    const failed = seen
      .filter((r) => (r.status ?? 0) >= 400)
      .map((r) => `${r.method} ${r.url} → ${r.status}`);
    expect(failed).toEqual([]);

    const used = new Set(
      seen.filter((r) => r.attrs.resource).map((r) => `${r.attrs.group}/${r.attrs.resource}`),
    );
    for (const rule of rules)
      for (const group of rule.apiGroups ?? [])
        for (const resource of rule.resources ?? [])
          expect(used, `granted but never used: ${group}/${resource}`).toContain(`${group}/${resource}`);
  });

  it("attaches to its own cgroup root and pins under its own node's directory only", () => {
    expect(agentProcess, 'the agent was started').toBeDefined();
    expect(agentExit).toBeUndefined();
    expect(readdirSync(join(bpffs, 'weft'))).toEqual([nodeName]);
    expect(readdirSync(join(bpffs, 'weft', nodeName)).length).toBeGreaterThan(0);
    const attached = sh('bpftool', ['cgroup', 'show', cgroupDir]).stdout;
    expect(attached, `bpftool cgroup show ${cgroupDir}`).toMatch(/cgroup_inet4_connect/);
    // None of those programs is attached to the root cgroup, which every process on the host shares.
    const ids = (text: string) => new Set([...text.matchAll(/^\s*(\d+)\s/gm)].map((m) => m[1]));
    const onRoot = ids(sh('bpftool', ['cgroup', 'show', cgroup2Root()]).stdout);
    for (const id of ids(attached)) expect(onRoot, `program ${id} on the root cgroup`).not.toContain(id);
  });
});
