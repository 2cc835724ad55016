import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import {
  CoreV1Api,
  KubeConfig,
  type ListWatch,
  makeInformer,
  type V1ConfigMap,
  Watch,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiServer,
  type ApiServerOptions,
  kubeconfigYaml,
  startApiServer,
} from '../../src/devcluster/apiserver/index.js';

// The devcluster API server against the real clients: client-node 1.4 informers and watches,
// and kubectl (from PATH) with a written kubeconfig. Loopback only; the server runs
// in-process on an ephemeral port with a temporary dataDir that is always removed.

const run = promisify(execFile);
const manifests = resolve(import.meta.dirname, '../fixtures/manifests');
const historyLimit = 200;

let dir: string;
let server: ApiServer;
let kubeconfigPath: string;
let kc: KubeConfig;
let core: CoreV1Api;
let port = 0;
const children: ChildProcess[] = [];

function options(): ApiServerOptions {
  return {
    listen: [{ host: '127.0.0.1', port }],
    dataDir: join(dir, 'data'),
    serviceCIDR: '10.96.0.0/16',
    advertiseAddress: '127.0.0.1',
    advertisePort: 6443,
    eventHistoryLimit: historyLimit,
    bookmarkIntervalMs: 100,
  };
}

async function startServer(): Promise<void> {
  server = await startApiServer(options());
  port = Number(new URL(server.url).port);
  writeFileSync(
    kubeconfigPath,
    kubeconfigYaml({
      clusterName: 'weft-e2e',
      server: server.url,
      caCertPem: server.caCertPem,
      token: server.adminToken,
    }),
  );
  kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  core = kc.makeApiClient(CoreV1Api);
}

interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function kubectl(...args: string[]): Promise<KubectlResult> {
  try {
    const { stdout, stderr } = await run(
      'kubectl',
      ['--kubeconfig', kubeconfigPath, '--cache-dir', join(dir, 'kube-cache'), ...args],
      {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir },
      },
    );
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

async function kubectlOk(...args: string[]): Promise<string> {
  const r = await kubectl(...args);
  if (r.code !== 0 || r.stderr.trim() !== '') {
    throw new Error(`kubectl ${args.join(' ')} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  }
  return r.stdout;
}

/** Polls until the condition holds; the deadline only bounds a hang, it asserts nothing. */
async function waitFor<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  deadlineMs = 30_000,
): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value as T;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Every namespace gets kube-root-ca.crt from the server; the informer tests count their own objects. */
function ours(o: { metadata?: { name?: string } }): boolean {
  return o.metadata?.name !== 'kube-root-ca.crt';
}

function configMap(
  namespace: string,
  name: string,
  data: Record<string, string>,
  labels?: Record<string, string>,
): V1ConfigMap {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace, labels }, data };
}

async function ensureNamespace(name: string): Promise<void> {
  await core.createNamespace({ body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name } } });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'weft-apiserver-e2e-'));
  kubeconfigPath = join(dir, 'kubeconfig');
  await startServer();
});

afterAll(async () => {
  try {
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null && child.pid) child.kill('SIGTERM');
    }
    await server?.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('client-node informers and watches', () => {
  it('an informer sees add, update and delete in order', async () => {
    await ensureNamespace('informer-order');
    const informer = makeInformer(kc, '/api/v1/namespaces/informer-order/configmaps', () =>
      core.listNamespacedConfigMap({ namespace: 'informer-order' }),
    );
    const seen: string[] = [];
    informer.on('add', (o) => ours(o) && seen.push(`add ${o.metadata?.name} ${o.data?.v}`));
    informer.on('update', (o) => ours(o) && seen.push(`update ${o.metadata?.name} ${o.data?.v}`));
    informer.on('delete', (o) => ours(o) && seen.push(`delete ${o.metadata?.name}`));
    try {
      await core.createNamespacedConfigMap({
        namespace: 'informer-order',
        body: configMap('informer-order', 'before', { v: '0' }),
      });
      await informer.start();
      await waitFor('the initial list', () => seen.length === 1);
      await core.createNamespacedConfigMap({
        namespace: 'informer-order',
        body: configMap('informer-order', 'c', { v: '1' }),
      });
      await core.patchNamespacedConfigMap({
        name: 'c',
        namespace: 'informer-order',
        body: [{ op: 'replace', path: '/data/v', value: '2' }],
      });
      await core.deleteNamespacedConfigMap({ name: 'c', namespace: 'informer-order' });
      await waitFor('the delete event', () => seen.includes('delete c'));
      expect(seen).toEqual(['add before 0', 'add c 1', 'update c 2', 'delete c']);
    } finally {
      await informer.stop();
    }
  });

  it('an informer resumes from its resourceVersion without relisting', async () => {
    await ensureNamespace('informer-resume');
    let lists = 0;
    const informer = makeInformer(kc, '/api/v1/namespaces/informer-resume/configmaps', () => {
      lists++;
      return core.listNamespacedConfigMap({ namespace: 'informer-resume' });
    });
    const seen: string[] = [];
    informer.on('add', (o) => ours(o) && seen.push(`add ${o.metadata?.name}`));
    informer.on('update', (o) => ours(o) && seen.push(`update ${o.metadata?.name} ${o.data?.v}`));
    try {
      await informer.start();
      await core.createNamespacedConfigMap({
        namespace: 'informer-resume',
        body: configMap('informer-resume', 'a', { v: '1' }),
      });
      await waitFor('add a', () => seen.includes('add a'));
      await informer.stop();
      await core.replaceNamespacedConfigMap({
        name: 'a',
        namespace: 'informer-resume',
        body: configMap('informer-resume', 'a', { v: '2' }),
      });
      await core.createNamespacedConfigMap({
        namespace: 'informer-resume',
        body: configMap('informer-resume', 'b', { v: '1' }),
      });
      await informer.start();
      await waitFor('the missed changes', () => seen.includes('add b'));
      expect(seen).toEqual(['add a', 'update a 2', 'add b']);
      expect(lists).toBe(1);
    } finally {
      await informer.stop();
    }
  });

  it('an expired resourceVersion gives 410 Expired and the informer relists', async () => {
    await ensureNamespace('informer-expired');
    let lists = 0;
    const informer = makeInformer(kc, '/api/v1/namespaces/informer-expired/configmaps', () => {
      lists++;
      return core.listNamespacedConfigMap({ namespace: 'informer-expired' });
    });
    const deleted: string[] = [];
    informer.on('delete', (o) => deleted.push(o.metadata?.name ?? ''));
    try {
      await core.createNamespacedConfigMap({
        namespace: 'informer-expired',
        body: configMap('informer-expired', 'doomed', { v: '1' }),
      });
      await informer.start();
      await waitFor('the first list', () => informer.list('informer-expired').filter(ours).length === 1);
      const oldVersion = (informer as ListWatch<V1ConfigMap>).latestResourceVersion();
      await informer.stop();
      await core.deleteNamespacedConfigMap({ name: 'doomed', namespace: 'informer-expired' });
      for (let i = 0; i < historyLimit * 1.5; i++) {
        await core.createNamespacedConfigMap({
          namespace: 'informer-expired',
          body: configMap('informer-expired', `filler-${i}`, { v: String(i) }),
        });
      }
      // A raw watch from the old version sees the Status the informer reacts to.
      const events: Array<{ type: string; object: { code?: number; reason?: string } }> = [];
      await new Promise<void>((done) => {
        void new Watch(kc).watch(
          '/api/v1/namespaces/informer-expired/configmaps',
          { resourceVersion: oldVersion },
          (type, object) => events.push({ type, object }),
          () => done(),
        );
      });
      expect(events).toEqual([
        { type: 'ERROR', object: expect.objectContaining({ kind: 'Status', code: 410, reason: 'Expired' }) },
      ]);

      await informer.start();
      await waitFor(
        'the relist',
        () => informer.list('informer-expired').filter(ours).length === historyLimit * 1.5,
      );
      expect(lists).toBe(2);
      expect(deleted).toEqual(['doomed']);
    } finally {
      await informer.stop();
    }
  });

  it('a raw Watch with allowWatchBookmarks gets BOOKMARK events carrying the current resourceVersion', async () => {
    await ensureNamespace('bookmarks');
    const events: Array<{ type: string; rv: string }> = [];
    const list = await core.listNamespacedConfigMap({ namespace: 'bookmarks' });
    const controller = await new Watch(kc).watch(
      '/api/v1/namespaces/bookmarks/configmaps',
      { resourceVersion: list.metadata?.resourceVersion, allowWatchBookmarks: true },
      (type, object) => events.push({ type, rv: object.metadata?.resourceVersion }),
      () => {},
    );
    try {
      await core.createNamespacedConfigMap({
        namespace: 'bookmarks',
        body: configMap('bookmarks', 'a', { v: '1' }),
      });
      const added = await waitFor('the ADDED event', () => events.find((e) => e.type === 'ADDED'));
      const bookmark = await waitFor('a bookmark after it', () =>
        events.find((e) => e.type === 'BOOKMARK' && Number(e.rv) >= Number(added.rv)),
      );
      expect(Number(bookmark.rv)).toBeGreaterThanOrEqual(Number(added.rv));
    } finally {
      controller.abort();
    }
  });

  it('a watch with a label selector sends DELETED when an object stops matching', async () => {
    await ensureNamespace('selector-watch');
    const events: string[] = [];
    const list = await core.listNamespacedConfigMap({ namespace: 'selector-watch' });
    const controller = await new Watch(kc).watch(
      '/api/v1/namespaces/selector-watch/configmaps',
      { resourceVersion: list.metadata?.resourceVersion, labelSelector: 'app=web' },
      (type, object) => events.push(`${type} ${object.metadata?.name}`),
      () => {},
    );
    try {
      await core.createNamespacedConfigMap({
        namespace: 'selector-watch',
        body: configMap('selector-watch', 'other', {}, { app: 'db' }),
      });
      await core.createNamespacedConfigMap({
        namespace: 'selector-watch',
        body: configMap('selector-watch', 'c', {}, { app: 'web' }),
      });
      await core.patchNamespacedConfigMap({
        name: 'c',
        namespace: 'selector-watch',
        body: [{ op: 'replace', path: '/metadata/labels/app', value: 'db' }],
      });
      await core.patchNamespacedConfigMap({
        name: 'other',
        namespace: 'selector-watch',
        body: [{ op: 'replace', path: '/metadata/labels/app', value: 'web' }],
      });
      await waitFor('three transitions', () => events.length >= 3);
      expect(events).toEqual(['ADDED c', 'DELETED c', 'ADDED other']);
    } finally {
      controller.abort();
    }
  });
});

describe('kubectl', () => {
  it('applies the example manifests client-side and prints the usual columns', async () => {
    for (const file of [
      'namespace.yaml',
      'pods.yaml',
      'services.yaml',
      'networkpolicy.yaml',
      'crd-widget.yaml',
      'widget.yaml',
    ]) {
      await kubectlOk('apply', '-f', join(manifests, file));
    }
    const pods = await kubectlOk('get', 'pods', '-n', 'weft-demo');
    expect(pods.split('\n')[0]).toMatch(/^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE$/);
    expect(pods).toMatch(/echo-a\s+0\/1\s+Pending\s+0\s+\d+s/);
    const wide = await kubectlOk('get', 'pods', '-n', 'weft-demo', '-o', 'wide');
    expect(wide.split('\n')[0]).toMatch(
      /^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s+IP\s+NODE\s+NOMINATED NODE\s+READINESS GATES$/,
    );
    const services = await kubectlOk('get', 'svc', '-n', 'weft-demo');
    expect(services.split('\n')[0]).toMatch(/^NAME\s+TYPE\s+CLUSTER-IP\s+EXTERNAL-IP\s+PORT\(S\)\s+AGE$/);
    expect(services).toMatch(/echo-nodeport\s+NodePort\s+10\.96\.\d+\.\d+\s+<none>\s+80:30080\/TCP/);
    expect(services).toMatch(/echo-lb\s+LoadBalancer\s+10\.96\.\d+\.\d+\s+<pending>\s+8080:3\d{4}\/TCP/);
    expect(services).toMatch(/echo-headless\s+ClusterIP\s+None\s+<none>\s+8080\/TCP/);
    expect(services).toMatch(/upstream\s+ExternalName\s+<none>\s+example\.invalid\s+<none>/);
    const widgets = await kubectlOk('get', 'widgets', '-n', 'weft-demo');
    expect(widgets.split('\n')[0]).toMatch(/^NAME\s+SIZE\s+COLOR\s+READY\s+AGE$/);
    // READY has no value yet: the server sends a null cell, as kube-apiserver does.
    expect(widgets).toMatch(/gizmo\s+3\s+green\s+(<none>\s+)?\d+s/);
    const netpol = await kubectlOk('get', 'netpol', '-n', 'weft-demo');
    expect(netpol).toMatch(/echo-from-client\s+app=echo\s+\d+s/);
  });

  it('filters with -l and prints -o json and -o yaml', async () => {
    const names = await kubectlOk(
      'get',
      'pods',
      '-n',
      'weft-demo',
      '-l',
      'app=echo,tier in (backend)',
      '-o',
      'name',
    );
    expect(names.trim().split('\n')).toEqual(['pod/echo-a', 'pod/echo-b']);
    const json = JSON.parse(await kubectlOk('get', 'svc', 'echo', '-n', 'weft-demo', '-o', 'json')) as {
      spec: Record<string, unknown>;
      metadata: Record<string, unknown>;
    };
    expect(json.spec).toMatchObject({
      type: 'ClusterIP',
      sessionAffinity: 'None',
      ipFamilies: ['IPv4'],
      internalTrafficPolicy: 'Cluster',
    });
    expect(json.metadata.annotations).toHaveProperty(['kubectl.kubernetes.io/last-applied-configuration']);
    const yaml = await kubectlOk('get', 'pod', 'echo-a', '-n', 'weft-demo', '-o', 'yaml');
    expect(yaml).toContain('restartPolicy: Always');
    expect(yaml).toContain('terminationGracePeriodSeconds: 30');
    expect(yaml).toContain('imagePullPolicy: IfNotPresent');
  });

  it('re-applying a changed manifest updates it (client-side and server-side)', async () => {
    const changed = readFileSync(join(manifests, 'services.yaml'), 'utf8')
      .replace(/ {4}- name: udp\n {6}port: 81\n {6}protocol: UDP\n {6}targetPort: 8081\n/, '')
      .replace(
        '  selector:\n    app: echo\n  ports:\n    - name: http',
        '  selector:\n    app: echo\n    tier: backend\n  ports:\n    - name: http',
      );
    const changedPath = join(dir, 'services-changed.yaml');
    writeFileSync(changedPath, changed);
    await kubectlOk('apply', '-f', changedPath);
    const svc = JSON.parse(await kubectlOk('get', 'svc', 'echo', '-n', 'weft-demo', '-o', 'json')) as {
      spec: { ports: unknown[]; selector: unknown };
    };
    expect(svc.spec.ports).toEqual([{ name: 'http', port: 80, protocol: 'TCP', targetPort: 'http' }]);
    expect(svc.spec.selector).toEqual({ app: 'echo', tier: 'backend' });

    await kubectlOk('create', 'namespace', 'ssa');
    const ssaPath = join(dir, 'services-ssa.yaml');
    const inSsa = (text: string) =>
      text.replaceAll('weft-demo', 'ssa').replace('nodePort: 30080', 'nodePort: 30081');
    writeFileSync(ssaPath, inSsa(readFileSync(join(manifests, 'services.yaml'), 'utf8')));
    await kubectlOk('apply', '--server-side', '-f', ssaPath);
    writeFileSync(ssaPath, inSsa(changed));
    await kubectlOk('apply', '--server-side', '-f', ssaPath);
    const ssa = JSON.parse(await kubectlOk('get', 'svc', 'echo', '-n', 'ssa', '-o', 'json')) as {
      spec: { ports: unknown[]; selector: unknown };
    };
    expect(ssa.spec.ports).toEqual([{ name: 'http', port: 80, protocol: 'TCP', targetPort: 'http' }]);
    expect(ssa.spec.selector).toEqual({ app: 'echo', tier: 'backend' });

    await kubectlOk(
      'patch',
      'svc',
      'echo',
      '-n',
      'ssa',
      '--type=merge',
      '-p',
      '{"spec":{"selector":{"app":"other"}}}',
    );
    const conflict = await kubectl('apply', '--server-side', '-f', ssaPath);
    expect(conflict.code).not.toBe(0);
    expect(conflict.stderr).toContain(
      'Apply failed with 1 conflict: conflict with "kubectl-patch" using v1: .spec.selector.app',
    );
    await kubectlOk('apply', '--server-side', '--force-conflicts', '-f', ssaPath);
    expect(await kubectlOk('get', 'svc', 'echo', '-n', 'ssa', '-o', 'jsonpath={.spec.selector.app}')).toBe(
      'echo',
    );
  });

  it('answers auth can-i and auth whoami (authenticated callers may do everything)', async () => {
    expect(await kubectlOk('auth', 'can-i', 'delete', 'pods', '-n', 'kube-system')).toBe('yes\n');
    expect(await kubectlOk('auth', 'whoami')).toMatch(/Username\s+weft-devcluster-admin/);
  });

  it('kubectl create token issues a ServiceAccount token the server accepts', async () => {
    const token = (await kubectlOk('create', 'token', 'default', '-n', 'default', '--duration=20m')).trim();
    const r = await rawRequest('GET', '/api/v1/namespaces', undefined, { authorization: `Bearer ${token}` });
    expect(r.status).toBe(200);
    expect((await kubectl('create', 'token', 'missing', '-n', 'default')).stderr).toContain(
      'serviceaccounts "missing" not found',
    );
  });

  it('creates with typed commands, deletes, and get -w prints changes', async () => {
    await kubectlOk('create', 'namespace', 'watched');
    const watcher = spawn(
      'kubectl',
      [
        '--kubeconfig',
        kubeconfigPath,
        '--cache-dir',
        join(dir, 'kube-cache'),
        'get',
        'configmaps',
        '-n',
        'watched',
        '-w',
      ],
      {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir },
      },
    );
    children.push(watcher);
    let out = '';
    let err = '';
    watcher.stdout.on('data', (d: Buffer) => (out += d.toString()));
    watcher.stderr.on('data', (d: Buffer) => (err += d.toString()));
    try {
      await waitFor('the initial listing', () => out.includes('kube-root-ca.crt'));
      await kubectlOk('create', 'configmap', 'live', '-n', 'watched', '--from-literal=a=b');
      await waitFor('the new configmap in the watch', () => out.includes('live'));
      expect(out).toMatch(/live\s+1\s+\d+s/);
      await kubectlOk('delete', 'configmap', 'live', '-n', 'watched');
      expect(await kubectlOk('get', 'configmaps', '-n', 'watched', '-o', 'name')).toBe(
        'configmap/kube-root-ca.crt\n',
      );
      expect(err).toBe('');
    } finally {
      if (watcher.exitCode === null && watcher.signalCode === null) watcher.kill('SIGTERM');
    }
  });

  it.each([
    [
      'missing name',
      'apiVersion: v1\nkind: Pod\nmetadata:\n  namespace: default\nspec:\n  containers:\n  - name: c\n    image: x\n',
      'The Pod "" is invalid: metadata.name: Required value: name or generateName is required',
    ],
    [
      'invalid selector',
      'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: np\n  namespace: default\nspec:\n  podSelector:\n    matchExpressions:\n    - key: app\n      operator: Foo\n',
      'The NetworkPolicy "np" is invalid: spec.podSelector.matchExpressions[0].operator: Invalid value: "Foo": not a valid selector operator',
    ],
    [
      'invalid port',
      'apiVersion: v1\nkind: Service\nmetadata:\n  name: bad-port\n  namespace: default\nspec:\n  ports:\n  - port: 70000\n',
      'spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive',
    ],
    ['malformed YAML', 'apiVersion: v1\nkind: [Pod\n', 'error converting YAML to JSON'],
    ['malformed JSON', '{"apiVersion": "v1", "kind": "Pod", "metadata": {', 'error parsing'],
    [
      'custom resource against its schema',
      'apiVersion: example.weft.dev/v1alpha1\nkind: Widget\nmetadata:\n  name: bad\n  namespace: default\nspec:\n  size: 0\n  color: pink\n',
      'spec.color: Unsupported value: "pink": supported values: "red", "green", "blue"',
    ],
  ])('%s: kubectl prints the Kubernetes error and nothing is stored', async (_name, manifest, message) => {
    const path = join(dir, 'bad.yaml');
    writeFileSync(path, manifest);
    const before = await kubectlOk('get', 'pods,services,networkpolicies,widgets', '-A', '-o', 'name');
    const r = await kubectl('create', '-f', path);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(message);
    expect(await kubectlOk('get', 'pods,services,networkpolicies,widgets', '-A', '-o', 'name')).toBe(before);
  });

  it('a wrong kind for the URL is 400 and stores nothing', async () => {
    const path = join(dir, 'wrong-kind.json');
    writeFileSync(path, JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'x' } }));
    const r = await kubectl('create', '--raw', '/api/v1/namespaces/default/pods', '-f', path);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(
      'the kind in the body (Service) does not match the kind of the resource pods (Pod)',
    );
    expect((await kubectl('get', 'pod', 'x', '-n', 'default')).code).not.toBe(0);
  });

  it('deletes: an unbound pod at once, a namespace with what it holds', async () => {
    await kubectlOk('delete', 'pod', 'client', '-n', 'weft-demo');
    expect((await kubectl('get', 'pod', 'client', '-n', 'weft-demo')).stderr).toContain(
      'pods "client" not found',
    );
    await kubectlOk('delete', '-f', join(manifests, 'widget.yaml'));
    expect(await kubectlOk('get', 'widgets', '-A', '-o', 'name')).toBe('');
    // kubectl waits until the namespace and everything in it are gone.
    await kubectlOk('delete', 'namespace', 'ssa');
    expect((await kubectl('get', 'namespace', 'ssa')).stderr).toContain('namespaces "ssa" not found');
    expect(await kubectlOk('get', 'services,configmaps', '-n', 'ssa', '-o', 'name')).toBe('');
  });
});

/** One raw HTTPS request to the server (what a hostile or careless client could send). */
function rawRequest(
  method: string,
  path: string,
  body: Buffer | string | undefined,
  headers: Record<string, string>,
): Promise<{ status: number; json: { kind?: string; code?: number; reason?: string; message?: string } }> {
  return new Promise((resolvePromise, reject) => {
    const url = new URL(server.url);
    const req = httpsRequest(
      { host: url.hostname, port: url.port, method, path, ca: server.caCertPem, headers },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          try {
            resolvePromise({ status: res.statusCode ?? 0, json: JSON.parse(text) });
          } catch {
            resolvePromise({ status: res.statusCode ?? 0, json: { message: text } });
          }
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('custom resource definitions', () => {
  it('deleting a CRD deletes its objects and ends the watches on them', async () => {
    await kubectlOk('apply', '-f', join(manifests, 'crd-widget.yaml'));
    await waitFor(
      'the widget resource',
      async () => (await kubectl('get', 'widgets', '-A')).code === 0 || undefined,
    );
    await kubectlOk('apply', '-f', join(manifests, 'widget.yaml'));
    const events: string[] = [];
    let ended = false;
    await new Watch(kc).watch(
      '/apis/example.weft.dev/v1alpha1/namespaces/weft-demo/widgets',
      {},
      (type, object) => events.push(`${type} ${object.metadata?.name}`),
      () => {
        ended = true;
      },
    );
    await waitFor('the existing widget', () => events.includes('ADDED gizmo'));
    await kubectlOk('delete', 'crd', 'widgets.example.weft.dev');
    await waitFor('the watch to end', () => ended);
    expect(events).toEqual(['ADDED gizmo', 'DELETED gizmo']);
    const r = await rawRequest(
      'GET',
      '/apis/example.weft.dev/v1alpha1/namespaces/weft-demo/widgets',
      undefined,
      { authorization: `Bearer ${server.adminToken}` },
    );
    expect(r.status).toBe(404);
  });
});

describe('server behaviour clients rely on', () => {
  it('a watch without resourceVersion starts with ADDED for what exists, and timeoutSeconds ends it', async () => {
    await ensureNamespace('initial-events');
    await core.createNamespacedConfigMap({
      namespace: 'initial-events',
      body: configMap('initial-events', 'existing', { v: '1' }),
    });
    const events: string[] = [];
    let ended = false;
    await new Watch(kc).watch(
      '/api/v1/namespaces/initial-events/configmaps',
      { timeoutSeconds: 1 },
      (type, object) => events.push(`${type} ${object.metadata?.name}`),
      () => {
        ended = true;
      },
    );
    await waitFor('the server to end the watch', () => ended);
    expect(events.sort()).toEqual(['ADDED existing', 'ADDED kube-root-ca.crt']);
  });

  it('accepts YAML request bodies', async () => {
    const r = await rawRequest(
      'POST',
      '/api/v1/namespaces/default/configmaps',
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  k: v\n',
      {
        authorization: `Bearer ${server.adminToken}`,
        'content-type': 'application/yaml',
      },
    );
    expect(r.status).toBe(201);
    expect((await core.readNamespacedConfigMap({ name: 'from-yaml', namespace: 'default' })).data).toEqual({
      k: 'v',
    });
  });

  it('keeps default/kubernetes and its EndpointSlice pointing at the server', async () => {
    const svc = await core.readNamespacedService({ name: 'kubernetes', namespace: 'default' });
    expect(svc.spec).toMatchObject({
      clusterIP: '10.96.0.1',
      ports: [{ name: 'https', port: 443, protocol: 'TCP', targetPort: 6443 }],
    });
    await kubectlOk('delete', 'endpointslice', 'kubernetes', '-n', 'default');
    const slice = await waitFor('the EndpointSlice to come back', async () => {
      const r = await kubectl('get', 'endpointslice', 'kubernetes', '-n', 'default', '-o', 'json');
      return r.code === 0
        ? (JSON.parse(r.stdout) as {
            endpoints: Array<{ addresses: string[] }>;
            ports: Array<{ port: number }>;
          })
        : undefined;
    });
    expect(slice.endpoints[0]!.addresses).toEqual(['127.0.0.1']);
    expect(slice.ports[0]!.port).toBe(6443);
  });

  it('serves a certificate valid for the kubernetes Service names, as in-cluster clients check', async () => {
    for (const servername of [
      'kubernetes',
      'kubernetes.default.svc',
      'kubernetes.default.svc.cluster.local',
    ]) {
      const status = await new Promise<number>((done, fail) => {
        const url = new URL(server.url);
        const req = httpsRequest(
          {
            host: url.hostname,
            port: url.port,
            path: '/healthz',
            ca: server.caCertPem,
            servername,
            headers: { host: servername },
          },
          (res) => {
            res.resume();
            res.on('end', () => done(res.statusCode ?? 0));
          },
        );
        req.on('error', fail);
        req.end();
      });
      expect(status).toBe(200);
    }
  });
});

describe('hostile and unauthenticated requests', () => {
  const admin = () => ({ authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' });
  it.each([
    [
      'deeply nested JSON',
      () => Buffer.from(`${'['.repeat(20_000)}${']'.repeat(20_000)}`),
      400,
      'BadRequest',
    ],
    ['invalid UTF-8', () => Buffer.from([0xff, 0xfe, 0x7b, 0x7d]), 400, 'BadRequest'],
    ['a body over 3 MiB', () => Buffer.alloc(4 * 1024 * 1024, 0x61), 413, 'RequestEntityTooLarge'],
    ['malformed JSON', () => Buffer.from('{"apiVersion":'), 400, 'BadRequest'],
  ])('%s gets a clean %d Status and stores nothing', async (_name, body, status, reason) => {
    const before = await core.listNamespacedPod({ namespace: 'default' });
    const r = await rawRequest('POST', '/api/v1/namespaces/default/pods', body(), admin());
    expect(r.status).toBe(status);
    expect(r.json).toMatchObject({ kind: 'Status', code: status, reason });
    const after = await core.listNamespacedPod({ namespace: 'default' });
    expect(after.items.length).toBe(before.items.length);
  });

  it('YAML alias expansion (billion laughs) is refused', async () => {
    const levels = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
    for (let i = 1; i < 9; i++)
      levels.push(
        `${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(10)
          .fill(`*${String.fromCharCode(96 + i)}`)
          .join(',')}]`,
      );
    const r = await rawRequest('POST', '/api/v1/namespaces/default/configmaps', levels.join('\n'), {
      ...admin(),
      'content-type': 'application/yaml',
    });
    expect(r.status).toBe(400);
    expect(r.json.message).toContain('too many values');
  });

  it('an unknown content type is 415 and an unknown method 405', async () => {
    expect(
      (
        await rawRequest('POST', '/api/v1/namespaces/default/configmaps', 'x', {
          ...admin(),
          'content-type': 'text/plain',
        })
      ).status,
    ).toBe(415);
    expect((await rawRequest('POST', '/api/v1/namespaces/default/configmaps/x', '{}', admin())).status).toBe(
      405,
    );
  });

  it('no token or a forged token is 401; a ServiceAccount token the server issued works', async () => {
    const none = await rawRequest('GET', '/api/v1/namespaces', undefined, {});
    expect(none).toMatchObject({ status: 401, json: { kind: 'Status', reason: 'Unauthorized' } });
    const token = server.serviceAccountToken('default', 'default');
    const forged = `${token.slice(0, token.lastIndexOf('.'))}.AAAA`;
    expect(
      (await rawRequest('GET', '/api/v1/namespaces', undefined, { authorization: `Bearer ${forged}` }))
        .status,
    ).toBe(401);
    expect(
      (await rawRequest('GET', '/api/v1/namespaces', undefined, { authorization: `Bearer ${token}` })).status,
    ).toBe(200);
    expect((await rawRequest('GET', '/healthz', undefined, {})).status).toBe(200);
  });
});

describe('restart', () => {
  it('a SIGTERM leaves the journal complete: every acknowledged write is there after a restart', async () => {
    const dataDir = join(dir, 'sigterm-data');
    const entry = resolve(import.meta.dirname, '../../src/devcluster/apiserver/index.ts');
    const script = `import { startApiServer } from ${JSON.stringify(entry)};
const s = await startApiServer({ listen: [{ host: '127.0.0.1', port: 0 }], dataDir: ${JSON.stringify(dataDir)}, serviceCIDR: '10.96.0.0/16', advertiseAddress: '127.0.0.1', advertisePort: 6443 });
console.log(JSON.stringify({ url: s.url, ca: s.caCertPem, token: s.adminToken }));`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    children.push(child);
    try {
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const info = await waitFor('the child server', () =>
        out.includes('\n')
          ? (JSON.parse(out.split('\n')[0]!) as { url: string; ca: string; token: string })
          : undefined,
      );
      const url = new URL(info.url);
      const writes = 200;
      await Promise.all(
        Array.from(
          { length: writes },
          (_, i) =>
            new Promise<void>((done, fail) => {
              const req = httpsRequest(
                {
                  host: url.hostname,
                  port: url.port,
                  method: 'POST',
                  path: '/api/v1/namespaces/default/configmaps',
                  ca: info.ca,
                  headers: { authorization: `Bearer ${info.token}`, 'content-type': 'application/json' },
                },
                (res) => {
                  res.resume();
                  res.on('end', () =>
                    res.statusCode === 201 ? done() : fail(new Error(`create ${i}: ${res.statusCode}`)),
                  );
                },
              );
              req.on('error', fail);
              req.end(
                JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `acked-${i}` } }),
              );
            }),
        ),
      );
      const exited = new Promise<number | null>((done) =>
        child.once('exit', (code, signal) => done(signal === 'SIGTERM' ? 143 : code)),
      );
      process.kill(child.pid!, 'SIGTERM');
      expect(await exited).toBe(143);
    } finally {
      if (child.exitCode === null && child.signalCode === null && child.pid)
        process.kill(child.pid, 'SIGKILL');
    }
    const reopened = await startApiServer({
      ...options(),
      listen: [{ host: '127.0.0.1', port: 0 }],
      dataDir,
    });
    try {
      const kcReopened = new KubeConfig();
      kcReopened.loadFromString(
        kubeconfigYaml({
          clusterName: 'reopened',
          server: reopened.url,
          caCertPem: reopened.caCertPem,
          token: reopened.adminToken,
        }),
      );
      const list = await kcReopened
        .makeApiClient(CoreV1Api)
        .listNamespacedConfigMap({ namespace: 'default', labelSelector: '' });
      expect(list.items.filter((c) => c.metadata?.name?.startsWith('acked-')).length).toBe(200);
    } finally {
      await reopened.close();
    }
  });

  it('keeps objects, resourceVersions and Service allocations', async () => {
    const before = JSON.parse(await kubectlOk('get', 'svc', '-n', 'weft-demo', '-o', 'json')) as {
      metadata: { resourceVersion: string };
      items: Array<{
        metadata: { name: string };
        spec: { clusterIP?: string; ports?: Array<{ nodePort?: number }> };
      }>;
    };
    await server.close();
    await startServer();
    const after = JSON.parse(await kubectlOk('get', 'svc', '-n', 'weft-demo', '-o', 'json')) as typeof before;
    expect(after.items.map((s) => [s.metadata.name, s.spec.clusterIP])).toEqual(
      before.items.map((s) => [s.metadata.name, s.spec.clusterIP]),
    );
    const taken = before.items.find((s) => s.metadata.name === 'echo-nodeport')!;
    const clash = join(dir, 'clash.yaml');
    writeFileSync(
      clash,
      `apiVersion: v1\nkind: Service\nmetadata:\n  name: clash\n  namespace: weft-demo\nspec:\n  type: NodePort\n  clusterIP: ${taken.spec.clusterIP}\n  ports:\n  - port: 80\n    nodePort: 30080\n`,
    );
    const r = await kubectl('create', '-f', clash);
    expect(r.stderr).toContain(
      `failed to allocate IP ${taken.spec.clusterIP}: provided IP is already allocated`,
    );
    expect(r.stderr).toContain(
      'spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated',
    );
    await kubectlOk('create', 'configmap', 'after-restart', '-n', 'weft-demo');
    const cm = JSON.parse(await kubectlOk('get', 'cm', 'after-restart', '-n', 'weft-demo', '-o', 'json')) as {
      metadata: { resourceVersion: string };
    };
    expect(Number(cm.metadata.resourceVersion)).toBeGreaterThan(Number(before.metadata.resourceVersion));
  });
});
