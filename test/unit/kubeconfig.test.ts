import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import yaml from 'js-yaml';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { WeftError } from '../../src/shared/errors.js';
import { kubeWatch } from '../../src/shared/kube.js';
import { type KubeClientConfig, loadKubeClientConfig } from '../../src/shared/kubeconfig.js';
import { selfSignedCertificate } from './support/self-signed.js';

type Section = Record<string, unknown>;

/** A real self-signed certificate and key for 127.0.0.1, shared by every test (read-only). */
let pki: { dir: string; cert: Buffer; key: Buffer };

beforeAll(() => {
  const pkiDir = mkdtempSync(join(tmpdir(), 'weft-kubeconfig-pki-'));
  selfSignedCertificate(pkiDir, '127.0.0.1', 'IP:127.0.0.1');
  pki = {
    dir: pkiDir,
    cert: readFileSync(join(pkiDir, 'cert.pem')),
    key: readFileSync(join(pkiDir, 'key.pem')),
  };
});

afterAll(() => rmSync(pki.dir, { recursive: true, force: true }));

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'weft-kubeconfig-'));
});

afterEach(() => {
  vi.useRealTimers();
  rmSync(dir, { recursive: true, force: true });
});

/** Writes `content` (text, or an object as YAML) under the test's temp dir; returns the path. */
function write(rel: string, content: string | Buffer | object): string {
  const file = join(dir, rel);
  mkdirSync(dirname(file), { recursive: true });
  const text = typeof content === 'string' || Buffer.isBuffer(content) ? content : yaml.dump(content);
  writeFileSync(file, text);
  return file;
}

/** A kubeconfig with one context "ctx" on cluster "c", as user "u" when `user` is given. */
function oneContext(cluster: Section, user?: Section): Section {
  return {
    apiVersion: 'v1',
    kind: 'Config',
    'current-context': 'ctx',
    contexts: [{ name: 'ctx', context: { cluster: 'c', ...(user ? { user: 'u' } : {}) } }],
    clusters: [{ name: 'c', cluster }],
    users: user ? [{ name: 'u', user }] : [],
  };
}

/** Loads `doc` through --kubeconfig, with no environment and an empty home. */
function loadDoc(doc: Section | string, rel = 'config') {
  return loadKubeClientConfig({ kubeconfig: write(rel, doc) }, {}, dir);
}

async function httpsOptions(kc: KubeClientConfig): Promise<https.RequestOptions> {
  const opts: https.RequestOptions = { method: 'GET', headers: { Accept: 'application/json' } };
  await kc.applyToHTTPSOptions(opts);
  return opts;
}

async function authorization(kc: KubeClientConfig): Promise<unknown> {
  return ((await httpsOptions(kc)).headers as http.OutgoingHttpHeaders).Authorization;
}

async function loadError(p: Promise<unknown>): Promise<WeftError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WeftError);
  expect((err as WeftError).code).toBe('WEFT_ERR_KUBECONFIG');
  expect((err as WeftError).message).not.toContain('\n');
  return err as WeftError;
}

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

describe('credentials from a kubeconfig file', () => {
  it('sends a static token as a Bearer header, with the CA data as the trusted root', async () => {
    const { kc, source, server } = await loadDoc(
      oneContext(
        { server: 'https://api.example:6443/', 'certificate-authority-data': b64(pki.cert) },
        { token: 'abc' },
      ),
    );
    expect(source).toBe('flag');
    expect(server).toBe('https://api.example:6443');
    expect(kc.getCurrentCluster()).toEqual({
      name: 'c',
      server: 'https://api.example:6443',
      skipTLSVerify: false,
    });
    const opts = await httpsOptions(kc);
    expect(opts.headers).toEqual({ Accept: 'application/json', Authorization: 'Bearer abc' });
    expect(opts.ca).toEqual(pki.cert);
    expect(opts.rejectUnauthorized).toBeUndefined();
  });

  it('reuses one keep-alive https.Agent, carrying the TLS material, across calls', async () => {
    const { kc } = await loadDoc(oneContext({ server: 'https://api.example' }, { token: 'abc' }));
    const a = (await httpsOptions(kc)).agent;
    const b = (await httpsOptions(kc)).agent;
    expect(a).toBeInstanceOf(https.Agent);
    expect(a).toBe(b);
    expect((a as https.Agent & { keepAlive: boolean }).keepAlive).toBe(true);
  });

  it('gives an http:// server a keep-alive http.Agent and no TLS options', async () => {
    const { kc } = await loadDoc(oneContext({ server: 'http://127.0.0.1:8080' }, { token: 'abc' }));
    const opts = await httpsOptions(kc);
    expect(opts.agent).toBeInstanceOf(http.Agent);
    expect(opts.agent).not.toBeInstanceOf(https.Agent);
    expect(opts.ca).toBeUndefined();
    expect((opts.headers as http.OutgoingHttpHeaders).Authorization).toBe('Bearer abc');
  });

  it('re-reads a tokenFile (relative to the kubeconfig) at most every 60 s, keeping the last token if it vanishes', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-01-01T00:00:00Z'));
    const tokenPath = write('sub/secrets/token', 'first\n');
    const { kc } = await loadDoc(
      oneContext({ server: 'https://api.example' }, { tokenFile: 'secrets/token' }),
      'sub/config',
    );
    expect(await authorization(kc)).toBe('Bearer first');

    writeFileSync(tokenPath, 'second');
    vi.setSystemTime(new Date('2026-01-01T00:00:59Z'));
    expect(await authorization(kc)).toBe('Bearer first');
    vi.setSystemTime(new Date('2026-01-01T00:01:00Z'));
    expect(await authorization(kc)).toBe('Bearer second');

    unlinkSync(tokenPath);
    vi.setSystemTime(new Date('2026-01-01T00:03:00Z'));
    expect(await authorization(kc)).toBe('Bearer second');
  });

  it('presents a client certificate and key given inline', async () => {
    const { kc } = await loadDoc(
      oneContext(
        { server: 'https://api.example' },
        { 'client-certificate-data': b64(pki.cert), 'client-key-data': b64(pki.key) },
      ),
    );
    const opts = await httpsOptions(kc);
    expect(opts.cert).toEqual(pki.cert);
    expect(opts.key).toEqual(pki.key);
    expect((opts.headers as http.OutgoingHttpHeaders).Authorization).toBeUndefined();
  });

  it('reads the CA, client certificate and key files relative to the kubeconfig', async () => {
    write('kube/pki/ca.crt', pki.cert);
    write('kube/pki/client.crt', 'CLIENT CERT');
    write('kube/pki/client.key', 'CLIENT KEY');
    const { kc } = await loadDoc(
      oneContext(
        { server: 'https://api.example', 'certificate-authority': 'pki/ca.crt' },
        { 'client-certificate': 'pki/client.crt', 'client-key': './pki/client.key' },
      ),
      'kube/config',
    );
    const opts = await httpsOptions(kc);
    expect(opts.ca).toEqual(pki.cert);
    expect(String(opts.cert)).toBe('CLIENT CERT');
    expect(String(opts.key)).toBe('CLIENT KEY');
  });

  it('turns insecure-skip-tls-verify into rejectUnauthorized: false, and tls-server-name into servername', async () => {
    const { kc } = await loadDoc(
      oneContext(
        { server: 'https://10.0.0.1', 'insecure-skip-tls-verify': true, 'tls-server-name': 'kubernetes' },
        { token: 't' },
      ),
    );
    expect(kc.getCurrentCluster()?.skipTLSVerify).toBe(true);
    const opts = await httpsOptions(kc);
    expect(opts.rejectUnauthorized).toBe(false);
    expect(opts.servername).toBe('kubernetes');
  });

  it('sends a username and password as Basic auth', async () => {
    const { kc } = await loadDoc(
      oneContext({ server: 'https://api.example' }, { username: 'admin', password: 's3cret' }),
    );
    expect(await authorization(kc)).toBe(`Basic ${b64('admin:s3cret')}`);
  });

  it('sends no Authorization for a context without a user', async () => {
    const { kc } = await loadDoc(oneContext({ server: 'https://api.example' }));
    expect(await authorization(kc)).toBeUndefined();
  });

  it('reads JSON kubeconfigs too', async () => {
    const doc = JSON.stringify(oneContext({ server: 'https://api.example' }, { token: 'j' }), null, '\t');
    const { kc } = await loadDoc(doc);
    expect(await authorization(kc)).toBe('Bearer j');
  });
});

describe('which kubeconfig', () => {
  const cfg = (server: string, token: string) => oneContext({ server }, { token });

  it('merges $KUBECONFIG as kubectl: missing files skipped, first current-context, first name wins', async () => {
    const a = write('a.yaml', {
      clusters: [{ name: 'shared', cluster: { server: 'https://from-a' } }],
      users: [{ name: 'shared-user', user: { token: 'token-a' } }],
    });
    const b = write('b/config', {
      'current-context': 'b-ctx',
      contexts: [{ name: 'b-ctx', context: { cluster: 'shared', user: 'shared-user' } }],
      clusters: [{ name: 'shared', cluster: { server: 'https://from-b' } }],
      users: [{ name: 'shared-user', user: { tokenFile: 'token' } }],
    });
    write('b/token', 'token-b');
    const c = write('c.yaml', {
      'current-context': 'c-ctx',
      contexts: [{ name: 'c-ctx', context: { cluster: 'shared' } }],
    });
    const env = { KUBECONFIG: [a, join(dir, 'missing'), b, c].join(delimiter) };
    const { kc, source, server } = await loadKubeClientConfig({}, env, dir);
    expect(source).toBe('KUBECONFIG');
    expect(server).toBe('https://from-a');
    expect(await authorization(kc)).toBe('Bearer token-a');
  });

  it('takes a later file’s current-context and entries when the first files lack them', async () => {
    const a = write('a.yaml', { clusters: [{ name: 'other', cluster: { server: 'https://other' } }] });
    const b = write('b/config', {
      'current-context': 'ctx',
      contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u' } }],
      clusters: [{ name: 'c', cluster: { server: 'https://b' } }],
      users: [{ name: 'u', user: { tokenFile: 'token' } }],
    });
    write('b/token', 'from-b-dir');
    const { kc, server } = await loadKubeClientConfig({}, { KUBECONFIG: `${a}${delimiter}${b}` }, dir);
    expect(server).toBe('https://b');
    // tokenFile resolved against b/, the directory of the file that named it
    expect(await authorization(kc)).toBe('Bearer from-b-dir');
  });

  it('picks --kubeconfig, else in-cluster, else $KUBECONFIG, else ~/.kube/config', async () => {
    const flag = write('flag', cfg('https://flag', 't'));
    const listed = write('listed', cfg('https://listed', 't'));
    write('.kube/config', cfg('https://home', 't'));
    const sa = join(dir, 'sa');
    write('sa/token', 't');
    write('sa/ca.crt', pki.cert);
    const inCluster = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };
    const load = (opts: { kubeconfig?: string }, env: NodeJS.ProcessEnv) =>
      loadKubeClientConfig({ ...opts, inClusterDir: sa }, env, dir).then((r) => [r.source, r.server]);

    expect(await load({ kubeconfig: flag }, { ...inCluster, KUBECONFIG: listed })).toEqual([
      'flag',
      'https://flag',
    ]);
    expect(await load({}, { ...inCluster, KUBECONFIG: listed })).toEqual([
      'in-cluster',
      'https://10.96.0.1:443',
    ]);
    expect(await load({}, { KUBECONFIG: listed })).toEqual(['KUBECONFIG', 'https://listed']);
    expect(await load({}, {})).toEqual(['home', 'https://home']);
  });
});

describe('in-cluster config', () => {
  let sa: string;
  beforeEach(() => {
    sa = join(dir, 'serviceaccount');
    write('serviceaccount/ca.crt', pki.cert);
    write('serviceaccount/token', 'sa-token-1\n');
  });
  const load = (env: NodeJS.ProcessEnv) => loadKubeClientConfig({ inClusterDir: sa }, env, dir);

  it.each([
    ['10.96.0.1', '443', 'https://10.96.0.1:443'],
    ['fd00:10:96::1', '443', 'https://[fd00:10:96::1]:443'],
    ['kubernetes.default.svc', '6443', 'https://kubernetes.default.svc:6443'],
  ])('host %s port %s → %s, trusting the service account CA', async (host, port, url) => {
    const { kc, source, server } = await load({
      KUBERNETES_SERVICE_HOST: host,
      KUBERNETES_SERVICE_PORT: port,
    });
    expect([source, server, kc.getCurrentCluster()?.server]).toEqual(['in-cluster', url, url]);
    const opts = await httpsOptions(kc);
    expect(opts.ca).toEqual(pki.cert);
    expect((opts.headers as http.OutgoingHttpHeaders).Authorization).toBe('Bearer sa-token-1');
  });

  it('picks up the rotated service account token after 60 s', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-01-01T00:00:00Z'));
    const { kc } = await load({ KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' });
    write('serviceaccount/token', 'sa-token-2');
    vi.setSystemTime(new Date('2026-01-01T00:00:30Z'));
    expect(await authorization(kc)).toBe('Bearer sa-token-1');
    vi.setSystemTime(new Date('2026-01-01T00:01:01Z'));
    expect(await authorization(kc)).toBe('Bearer sa-token-2');
  });

  it.each([
    [
      'the token is missing',
      () => rmSync(join(sa, 'token')),
      { KUBERNETES_SERVICE_PORT: '443' },
      (d: string) =>
        `in-cluster config: cannot read the service account token ${d}/token: no such file (is automountServiceAccountToken off?)`,
    ],
    [
      'the CA is missing',
      () => rmSync(join(sa, 'ca.crt')),
      { KUBERNETES_SERVICE_PORT: '443' },
      (d: string) => `in-cluster config: cannot read the service account CA ${d}/ca.crt: no such file`,
    ],
    [
      'the port is not set',
      () => {},
      {},
      () => 'in-cluster config: KUBERNETES_SERVICE_HOST is set but KUBERNETES_SERVICE_PORT is not',
    ],
  ])('fails clearly when %s', async (_, breakIt, env, message) => {
    breakIt();
    const err = await loadError(load({ KUBERNETES_SERVICE_HOST: '10.96.0.1', ...env }));
    expect(err.message).toBe(message(sa));
  });
});

describe('kubeconfig errors', () => {
  const ok = { server: 'https://api.example' };
  const cases: [string, () => Promise<unknown>, (d: string) => string][] = [
    [
      'the --kubeconfig file does not exist',
      () => loadKubeClientConfig({ kubeconfig: join(dir, 'nope') }, {}, dir),
      (d) => `kubeconfig ${d}/nope does not exist`,
    ],
    [
      'nothing is configured',
      () => loadKubeClientConfig({}, {}, dir),
      () =>
        'no Kubernetes API configured: pass --kubeconfig FILE, set KUBECONFIG, or run in a pod (in-cluster config)',
    ],
    [
      'no file of $KUBECONFIG exists',
      () => loadKubeClientConfig({}, { KUBECONFIG: `${join(dir, 'x')}${delimiter}${join(dir, 'y')}` }, dir),
      (d) => `none of the kubeconfig files in KUBECONFIG exists: ${d}/x, ${d}/y`,
    ],
    [
      'the kubeconfig cannot be read',
      () => {
        mkdirSync(join(dir, 'adir'));
        return loadKubeClientConfig({ kubeconfig: join(dir, 'adir') }, {}, dir);
      },
      (d) => `cannot read the kubeconfig ${d}/adir: is a directory`,
    ],
    [
      'the kubeconfig is neither YAML nor JSON',
      () => loadDoc('clusters: [\n  - name: c\n users'),
      (d) =>
        expect.stringMatching(new RegExp(`^kubeconfig ${d}/config is not YAML or JSON: .* at line \\d+$`)),
    ],
    [
      'the kubeconfig is not a mapping',
      () => loadDoc('- a\n- b\n'),
      (d) => `kubeconfig ${d}/config is not a kubeconfig: expected a mapping with clusters, contexts, users`,
    ],
    [
      'an entry has no name',
      () => loadDoc({ clusters: [{ cluster: ok }] }),
      (d) => `kubeconfig ${d}/config: clusters[0] is not a { name, cluster } entry`,
    ],
    [
      'there is no current-context',
      () => loadDoc({ ...oneContext(ok), 'current-context': '' }),
      (d) => `the kubeconfig has no current context with a cluster; set one (kubeconfig ${d}/config)`,
    ],
    [
      'the current context does not exist',
      () => loadDoc({ ...oneContext(ok), 'current-context': 'x' }),
      (d) => `kubeconfig ${d}/config: context "x" not found`,
    ],
    [
      'the context names no cluster',
      () => loadDoc({ ...oneContext(ok), contexts: [{ name: 'ctx', context: { user: 'u' } }] }),
      (d) => `the kubeconfig has no current context with a cluster; set one (kubeconfig ${d}/config)`,
    ],
    [
      'the context’s cluster does not exist',
      () => loadDoc({ ...oneContext(ok), contexts: [{ name: 'ctx', context: { cluster: 'y' } }] }),
      (d) => `kubeconfig ${d}/config: cluster "y" not found (context "ctx")`,
    ],
    [
      'the context’s user does not exist',
      () => loadDoc({ ...oneContext(ok), contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'z' } }] }),
      (d) => `kubeconfig ${d}/config: user "z" not found (context "ctx")`,
    ],
    [
      'the cluster has no server',
      () => loadDoc(oneContext({ 'certificate-authority-data': b64(pki.cert) })),
      (d) => `kubeconfig ${d}/config: cluster "c" has no server`,
    ],
    [
      'the server is not a URL',
      () => loadDoc(oneContext({ server: 'api.example:6443' })),
      (d) => `kubeconfig ${d}/config: cluster "c" server "api.example:6443" is not an http(s) URL`,
    ],
    [
      'the CA file is missing',
      () => loadDoc(oneContext({ ...ok, 'certificate-authority': 'ca.crt' })),
      (d) =>
        `kubeconfig ${d}/config: cannot read certificate-authority ${d}/ca.crt of cluster "c": no such file`,
    ],
    [
      'both the CA file and CA data are set',
      () =>
        loadDoc(oneContext({ ...ok, 'certificate-authority': '/ca', 'certificate-authority-data': 'eA==' })),
      (d) =>
        `kubeconfig ${d}/config: cluster "c" sets both certificate-authority and certificate-authority-data; keep one`,
    ],
    [
      'the CA data is not base64',
      () => loadDoc(oneContext({ ...ok, 'certificate-authority-data': '-----BEGIN CERTIFICATE-----' })),
      (d) => `kubeconfig ${d}/config: certificate-authority-data of cluster "c" is not base64`,
    ],
    [
      'insecure-skip-tls-verify is not a boolean',
      () => loadDoc(oneContext({ ...ok, 'insecure-skip-tls-verify': 'yes' })),
      (d) => `kubeconfig ${d}/config: insecure-skip-tls-verify of cluster "c" is not true or false`,
    ],
    [
      'the client certificate file is missing',
      () => loadDoc(oneContext(ok, { 'client-certificate': 'c.crt', 'client-key-data': b64('k') })),
      (d) => `kubeconfig ${d}/config: cannot read client-certificate ${d}/c.crt of user "u": no such file`,
    ],
    [
      'the client key file is missing',
      () =>
        loadDoc(oneContext(ok, { 'client-certificate-data': b64('c'), 'client-key': '/nonexistent/k.key' })),
      (d) => `kubeconfig ${d}/config: cannot read client-key /nonexistent/k.key of user "u": no such file`,
    ],
    [
      'a client certificate comes without its key',
      () => loadDoc(oneContext(ok, { 'client-certificate-data': b64('c') })),
      (d) => `kubeconfig ${d}/config: user "u" has a client-certificate but no client-key`,
    ],
    [
      'the tokenFile is missing',
      () => loadDoc(oneContext(ok, { tokenFile: 'token' })),
      (d) => `kubeconfig ${d}/config: cannot read tokenFile ${d}/token of user "u": no such file`,
    ],
    [
      'a user has both a token and a password',
      () => loadDoc(oneContext(ok, { token: 't', username: 'a', password: 'b' })),
      (d) => `kubeconfig ${d}/config: user "u" has both a token and a username/password; keep one`,
    ],
  ];

  it.each(cases)('when %s', async (_, load, message) => {
    const err = await loadError(load());
    expect(err.message).toEqual(message(dir));
  });
});

describe('client-node fallback', () => {
  it.each<[string, Section, Section]>([
    [
      'an exec credential plugin',
      {},
      { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'true' } },
    ],
    ['an auth-provider', {}, { 'auth-provider': { name: 'oidc', config: { 'id-token': 'x' } } }],
    ['impersonation', {}, { token: 't', as: 'someone' }],
    ['a proxy', { 'proxy-url': 'http://proxy.example:3128' }, { token: 't' }],
  ])('hands %s to client-node’s KubeConfig', async (_, cluster, user) => {
    write('pki/ca.crt', pki.cert);
    const { kc, server } = await loadDoc(
      oneContext({ server: 'https://api.example/', 'certificate-authority': 'pki/ca.crt', ...cluster }, user),
    );
    expect(kc).toBeInstanceOf(KubeConfig);
    expect(server).toBe('https://api.example');
    // client-node reads the CA only when a request is made, from wherever the process runs
    expect((kc as KubeConfig).getCurrentCluster()?.caFile).toBe(join(dir, 'pki/ca.crt'));
  });

  it('keeps kubectl’s merge for client-node too (a name defined twice is not an error)', async () => {
    const exec = { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'true' } };
    const a = write('a', oneContext({ server: 'https://a' }, exec));
    const b = write('b', oneContext({ server: 'https://b' }, { token: 't' }));
    const { kc, server } = await loadKubeClientConfig({}, { KUBECONFIG: `${a}${delimiter}${b}` }, dir);
    expect(kc).toBeInstanceOf(KubeConfig);
    expect(server).toBe('https://a');
    expect((kc as KubeConfig).getCurrentUser()?.exec).toEqual(exec.exec);
  });
});

describe('against a local HTTPS API server', () => {
  let server: https.Server;
  let url: string;
  const seen: { path: string; authorization?: string }[] = [];

  beforeAll(async () => {
    server = https.createServer({ cert: pki.cert, key: pki.key }, (req, res) => {
      seen.push({ path: req.url ?? '', authorization: req.headers.authorization });
      if (req.headers.authorization !== 'Bearer e2e-token') {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"kind":"Status","code":401}');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      if (new URL(req.url ?? '/', 'https://x').searchParams.get('watch') === 'true') {
        res.end(`${JSON.stringify({ type: 'ADDED', object: { kind: 'Pod', metadata: { name: 'p1' } } })}\n`);
      } else {
        res.end('{"kind":"APIVersions","versions":["v1"]}');
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('GETs through https.request and streams a watch event through kubeWatch', async () => {
    const { kc } = await loadDoc(
      oneContext({ server: url, 'certificate-authority-data': b64(pki.cert) }, { token: 'e2e-token' }),
    );

    const opts = await httpsOptions(kc);
    const body = await new Promise<string>((resolve, reject) => {
      https
        .request(`${url}/api`, opts, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => {
            text += c.toString();
          });
          res.on('end', () =>
            res.statusCode === 200 ? resolve(text) : reject(new Error(`${res.statusCode}`)),
          );
        })
        .on('error', reject)
        .end();
    });
    expect(JSON.parse(body)).toEqual({ kind: 'APIVersions', versions: ['v1'] });

    const events: [string, unknown][] = [];
    const done = await new Promise<unknown>((resolve) => {
      void kubeWatch(
        kc,
        '/api/v1/pods',
        { resourceVersion: '1' },
        (type, obj) => events.push([type, obj]),
        resolve,
      );
    });
    expect(done).toBeNull();
    expect(events).toEqual([['ADDED', { kind: 'Pod', metadata: { name: 'p1' } }]]);
    expect(seen.at(-1)).toEqual({
      path: '/api/v1/pods?watch=true&resourceVersion=1',
      authorization: 'Bearer e2e-token',
    });
  });
});

describe('module weight', () => {
  const script = `
import { register } from 'node:module';
// Fails any import that resolves into client-node: its config.js pulls in the generated API.
register('data:text/javascript,' + encodeURIComponent(\`
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  if (r.url.includes('/@kubernetes/client-node/')) throw new Error('client-node loaded: ' + r.url);
  return r;
}\`));
const { loadKubeClientConfig } = await import(process.env.WEFT_TEST_MODULE);
const { source } = await loadKubeClientConfig({ kubeconfig: process.env.WEFT_TEST_KUBECONFIG }, {});
console.log(source);
`;
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const moduleUrl = pathToFileURL(join(root, 'src/shared/kubeconfig.ts')).href;

  function run(kubeconfig: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', '--input-type=module', '-e', script],
        {
          cwd: root,
          env: { ...process.env, WEFT_TEST_MODULE: moduleUrl, WEFT_TEST_KUBECONFIG: kubeconfig },
        },
        (err, stdout, stderr) => resolve({ code: err ? ((err.code as number) ?? 1) : 0, stdout, stderr }),
      );
    });
  }

  it('loads a token kubeconfig without importing anything of client-node', async () => {
    const file = write('config', oneContext({ server: 'https://api.example' }, { token: 't' }));
    const r = await run(file);
    expect(r.stderr).not.toContain('client-node loaded');
    expect(r).toMatchObject({ code: 0, stdout: 'flag\n' });
  });

  it('(the check itself works: an exec user does import client-node)', async () => {
    const file = write(
      'config',
      oneContext({ server: 'https://api.example' }, { exec: { apiVersion: 'v1', command: 'true' } }),
    );
    const r = await run(file);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('client-node loaded');
  });
});
