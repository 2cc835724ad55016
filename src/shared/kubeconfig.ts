/**
 * weft's own kubeconfig loader. client-node's KubeConfig (dist/config.js) statically imports the
 * whole generated API, ~35 MiB of RSS in an agent that must stay under 150 MB; weft needs only a
 * server, TLS material and an Authorization header. This covers what clusters hand out to
 * processes like the agent (tokens, token files, client certificates, basic auth, the in-cluster
 * service account) and leaves the rest (exec and auth-provider plugins, proxies, impersonation)
 * to client-node, imported only when a kubeconfig needs it.
 */
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { isIPv6 } from 'node:net';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import yaml from 'js-yaml';
import { WeftError } from './errors.js';

export type KubeConfigSource = 'flag' | 'in-cluster' | 'KUBECONFIG' | 'home';

/** What weft's HTTP code (src/shared/kube.ts) needs of a KubeConfig. */
export interface KubeClientConfig {
  getCurrentCluster(): { name: string; server: string; skipTLSVerify?: boolean } | null;
  /** Sets ca/cert/key/rejectUnauthorized, an https.Agent (opts.agent, keep-alive, reused between calls), and the Authorization header (Bearer token or Basic) on node https.RequestOptions. */
  applyToHTTPSOptions(opts: https.RequestOptions): Promise<void>;
}

const SERVICEACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** As client-go's cached file token source: bound service-account tokens rotate on disk. */
const TOKEN_FILE_REREAD_MS = 60_000;

const NO_CURRENT_CLUSTER = 'the kubeconfig has no current context with a cluster; set one';

/**
 * The Kubernetes client config, picked as kubectl and Cilium pick it: --kubeconfig, else the
 * in-cluster service account when running in a pod (KUBERNETES_SERVICE_HOST), else $KUBECONFIG
 * (merged as kubectl merges it), else ~/.kube/config. None of them: a clear error.
 */
export async function loadKubeClientConfig(
  opts: { kubeconfig?: string; inClusterDir?: string },
  env: NodeJS.ProcessEnv = process.env,
  home: string = homedir(),
): Promise<{ kc: KubeClientConfig; source: KubeConfigSource; server: string }> {
  let source: KubeConfigSource;
  let files: string[];
  if (opts.kubeconfig) {
    if (!existsSync(opts.kubeconfig)) throw configError(`kubeconfig ${opts.kubeconfig} does not exist`);
    source = 'flag';
    files = [opts.kubeconfig];
  } else if (env.KUBERNETES_SERVICE_HOST) {
    const kc = inClusterConfig(env.KUBERNETES_SERVICE_HOST, env, opts.inClusterDir ?? SERVICEACCOUNT_DIR);
    return { kc, source: 'in-cluster', server: kc.server };
  } else if (env.KUBECONFIG) {
    const listed = [...new Set(env.KUBECONFIG.split(delimiter).filter(Boolean))];
    // kubectl skips the files of the list that do not exist: one list serves several machines.
    files = listed.filter((f) => existsSync(f));
    if (files.length === 0) {
      throw configError(`none of the kubeconfig files in KUBECONFIG exists: ${listed.join(', ')}`);
    }
    source = 'KUBECONFIG';
  } else {
    const file = join(home, '.kube', 'config');
    if (!existsSync(file)) {
      throw configError(
        'no Kubernetes API configured: pass --kubeconfig FILE, set KUBECONFIG, or run in a pod (in-cluster config)',
      );
    }
    source = 'home';
    files = [file];
  }
  const current = currentEntries(mergeKubeconfigs(files.map(readKubeconfig)));
  if (needsClientNode(current)) {
    return { kc: await clientNodeConfig(current), source, server: current.server };
  }
  const kc = configFromKubeconfig(current);
  return { kc, source, server: kc.server };
}

function configError(message: string, cause?: unknown): WeftError {
  return new WeftError('WEFT_ERR_KUBECONFIG', message, cause === undefined ? undefined : { cause });
}

type Section = Record<string, unknown>;

/** A named cluster, context or user, with the file it came from (errors name it). */
interface Entry {
  name: string;
  body: Section;
  file: string;
}

interface Kubeconfig {
  files: string[];
  currentContext?: string;
  clusters: Map<string, Entry>;
  contexts: Map<string, Entry>;
  users: Map<string, Entry>;
}

/** Fields holding a path, which kubectl resolves against the directory of their file. */
const PATH_FIELDS = {
  clusters: ['certificate-authority'],
  contexts: [],
  users: ['client-certificate', 'client-key', 'tokenFile'],
} as const;

const SECTION_OF = { clusters: 'cluster', contexts: 'context', users: 'user' } as const;

function readKubeconfig(file: string): Kubeconfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw configError(`cannot read the kubeconfig ${file}: ${fileProblem(err)}`, err);
  }
  let doc: unknown;
  try {
    doc = parseYamlOrJson(text);
  } catch (err) {
    throw configError(`kubeconfig ${file} is not YAML or JSON: ${parseProblem(err)}`, err);
  }
  // An empty file is an empty kubeconfig, as kubectl reads it.
  doc ??= {};
  if (!isSection(doc)) {
    throw configError(
      `kubeconfig ${file} is not a kubeconfig: expected a mapping with clusters, contexts, users`,
    );
  }
  const current = doc['current-context'];
  const config: Kubeconfig = {
    files: [file],
    currentContext: typeof current === 'string' && current !== '' ? current : undefined,
    clusters: new Map(),
    contexts: new Map(),
    users: new Map(),
  };
  for (const list of ['clusters', 'contexts', 'users'] as const) {
    const raw = doc[list];
    if (raw === undefined || raw === null) continue;
    if (!Array.isArray(raw)) throw configError(`kubeconfig ${file}: ${list} is not a list`);
    for (const [i, item] of (raw as unknown[]).entries()) {
      const section = SECTION_OF[list];
      const body = isSection(item) ? (item[section] ?? {}) : undefined;
      if (!isSection(item) || typeof item.name !== 'string' || item.name === '' || !isSection(body)) {
        throw configError(`kubeconfig ${file}: ${list}[${i}] is not a { name, ${section} } entry`);
      }
      if (config[list].has(item.name)) continue;
      const resolved = { ...body };
      for (const field of PATH_FIELDS[list]) {
        const p = resolved[field];
        if (typeof p === 'string' && p !== '' && !isAbsolute(p)) resolved[field] = join(dirname(file), p);
      }
      config[list].set(item.name, { name: item.name, body: resolved, file });
    }
  }
  return config;
}

function parseYamlOrJson(text: string): unknown {
  // JSON first: js-yaml reads most JSON, but not tab indentation, which JSON writers use.
  try {
    return JSON.parse(text);
  } catch {
    return yaml.load(text);
  }
}

function parseProblem(err: unknown): string {
  if (err instanceof yaml.YAMLException) return `${err.reason} at line ${err.mark.line + 1}`;
  return err instanceof Error ? err.message : String(err);
}

function fileProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory';
  return err instanceof Error ? err.message : String(err);
}

function isSection(v: unknown): v is Section {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** kubectl's merge: the first file that sets current-context wins, and the first entry of a name. */
function mergeKubeconfigs(configs: Kubeconfig[]): Kubeconfig {
  const merged: Kubeconfig = { files: [], clusters: new Map(), contexts: new Map(), users: new Map() };
  for (const c of configs) {
    merged.files.push(...c.files);
    merged.currentContext ??= c.currentContext;
    for (const list of ['clusters', 'contexts', 'users'] as const) {
      for (const [name, entry] of c[list]) if (!merged[list].has(name)) merged[list].set(name, entry);
    }
  }
  return merged;
}

/** The current context's cluster and user, checked to exist. */
interface CurrentEntries {
  context: Entry;
  cluster: Entry;
  user?: Entry;
  server: string;
}

function currentEntries(config: Kubeconfig): CurrentEntries {
  const where = `kubeconfig ${config.files.join(', ')}`;
  if (!config.currentContext) throw configError(`${NO_CURRENT_CLUSTER} (${where})`);
  const context = config.contexts.get(config.currentContext);
  if (!context) throw configError(`${where}: context "${config.currentContext}" not found`);
  const clusterName = optionalString(context, 'cluster');
  if (!clusterName) throw configError(`${NO_CURRENT_CLUSTER} (kubeconfig ${context.file})`);
  const cluster = config.clusters.get(clusterName);
  if (!cluster) {
    throw configError(
      `kubeconfig ${context.file}: cluster "${clusterName}" not found (context "${context.name}")`,
    );
  }
  // A context without a user is anonymous access, as kubectl allows.
  const userName = optionalString(context, 'user');
  const user = userName ? config.users.get(userName) : undefined;
  if (userName && !user) {
    throw configError(`kubeconfig ${context.file}: user "${userName}" not found (context "${context.name}")`);
  }
  const server = optionalString(cluster, 'server');
  if (!server) throw configError(`kubeconfig ${cluster.file}: cluster "${cluster.name}" has no server`);
  let url: URL | undefined;
  try {
    url = new URL(server);
  } catch {
    // reported below
  }
  if (url?.protocol !== 'https:' && url?.protocol !== 'http:') {
    throw configError(
      `kubeconfig ${cluster.file}: cluster "${cluster.name}" server "${server}" is not an http(s) URL`,
    );
  }
  // Watch appends the path to the server as text.
  return { context, cluster, user, server: server.replace(/\/+$/, '') };
}

function optionalString(entry: Entry, field: string): string | undefined {
  const v = entry.body[field];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') {
    throw configError(`kubeconfig ${entry.file}: ${field} of "${entry.name}" is not a string`);
  }
  return v;
}

/** What only client-node implements: credential plugins, proxies and impersonation. */
function needsClientNode(current: CurrentEntries): boolean {
  const user = current.user?.body ?? {};
  const set = (body: Section, field: string) => body[field] !== undefined && body[field] !== null;
  return (
    ['exec', 'auth-provider', 'as', 'as-uid', 'as-groups', 'as-user-extra'].some((f) => set(user, f)) ||
    set(current.cluster.body, 'proxy-url')
  );
}

/**
 * client-node's KubeConfig, loaded with the current context, cluster and user only. A document
 * of the three, not loadFromDefault: client-node's own merge of $KUBECONFIG rejects a name
 * defined twice, which kubectl accepts (first wins), and it reads process.env, not `env`.
 */
async function clientNodeConfig(current: CurrentEntries): Promise<KubeClientConfig> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  const document = {
    apiVersion: 'v1',
    kind: 'Config',
    'current-context': current.context.name,
    contexts: [{ name: current.context.name, context: current.context.body }],
    clusters: [{ name: current.cluster.name, cluster: current.cluster.body }],
    users: current.user ? [{ name: current.user.name, user: current.user.body }] : [],
  };
  try {
    kc.loadFromString(JSON.stringify(document));
  } catch (err) {
    throw configError(
      `kubeconfig ${current.context.file}: client-node cannot load context "${current.context.name}": ${err instanceof Error ? err.message : String(err)}`,
      err,
    );
  }
  return kc;
}

function configFromKubeconfig(current: CurrentEntries): DirectKubeClientConfig {
  const { cluster, user } = current;
  const skipTLSVerify = cluster.body['insecure-skip-tls-verify'];
  if (skipTLSVerify !== undefined && skipTLSVerify !== null && typeof skipTLSVerify !== 'boolean') {
    throw configError(
      `kubeconfig ${cluster.file}: insecure-skip-tls-verify of cluster "${cluster.name}" is not true or false`,
    );
  }
  const tls: TlsMaterial = {
    ca: dataOrFile(cluster, 'certificate-authority', `cluster "${cluster.name}"`),
    servername: optionalString(cluster, 'tls-server-name'),
    skipTLSVerify: skipTLSVerify === true,
  };
  let authorization: () => string | undefined = () => undefined;
  if (user) {
    const what = `user "${user.name}"`;
    tls.cert = dataOrFile(user, 'client-certificate', what);
    tls.key = dataOrFile(user, 'client-key', what);
    if (tls.cert && !tls.key) {
      throw configError(`kubeconfig ${user.file}: ${what} has a client-certificate but no client-key`);
    }
    if (tls.key && !tls.cert) {
      throw configError(`kubeconfig ${user.file}: ${what} has a client-key but no client-certificate`);
    }
    const token = optionalString(user, 'token');
    const tokenFile = optionalString(user, 'tokenFile');
    const username = optionalString(user, 'username');
    const password = optionalString(user, 'password');
    if ((token || tokenFile) && (username || password)) {
      throw configError(
        `kubeconfig ${user.file}: ${what} has both a token and a username/password; keep one`,
      );
    }
    if (tokenFile) {
      // As client-go: the file wins over `token`, which serves only while the file is unreadable.
      let initial: string;
      try {
        initial = readTokenFile(tokenFile);
      } catch (err) {
        if (!token) {
          throw configError(
            `kubeconfig ${user.file}: cannot read tokenFile ${tokenFile} of ${what}: ${fileProblem(err)}`,
            err,
          );
        }
        initial = token;
      }
      const source = new FileToken(tokenFile, initial);
      authorization = () => `Bearer ${source.current()}`;
    } else if (token) {
      authorization = () => `Bearer ${token}`;
    } else if (username || password) {
      const basic = `Basic ${Buffer.from(`${username ?? ''}:${password ?? ''}`).toString('base64')}`;
      authorization = () => basic;
    }
  }
  return new DirectKubeClientConfig({ name: cluster.name, server: current.server }, tls, authorization);
}

/** `field` as a file, or `field`-data inline (base64); kubectl refuses both at once. */
function dataOrFile(entry: Entry, field: string, what: string): Buffer | undefined {
  const file = optionalString(entry, field);
  const data = optionalString(entry, `${field}-data`);
  if (file && data) {
    throw configError(`kubeconfig ${entry.file}: ${what} sets both ${field} and ${field}-data; keep one`);
  }
  if (data) {
    if (!/^[A-Za-z0-9+/=\s]*$/.test(data)) {
      throw configError(`kubeconfig ${entry.file}: ${field}-data of ${what} is not base64`);
    }
    return Buffer.from(data, 'base64');
  }
  if (!file) return undefined;
  try {
    return readFileSync(file);
  } catch (err) {
    throw configError(
      `kubeconfig ${entry.file}: cannot read ${field} ${file} of ${what}: ${fileProblem(err)}`,
      err,
    );
  }
}

/** As client-go's InClusterConfig: the service's address, the service account's CA and token. */
function inClusterConfig(host: string, env: NodeJS.ProcessEnv, dir: string): DirectKubeClientConfig {
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!port) {
    throw configError('in-cluster config: KUBERNETES_SERVICE_HOST is set but KUBERNETES_SERVICE_PORT is not');
  }
  const caFile = join(dir, 'ca.crt');
  let ca: Buffer;
  try {
    ca = readFileSync(caFile);
  } catch (err) {
    throw configError(
      `in-cluster config: cannot read the service account CA ${caFile}: ${fileProblem(err)}`,
      err,
    );
  }
  const tokenFile = join(dir, 'token');
  let token: string;
  try {
    token = readTokenFile(tokenFile);
  } catch (err) {
    throw configError(
      `in-cluster config: cannot read the service account token ${tokenFile}: ${fileProblem(err)} (is automountServiceAccountToken off?)`,
      err,
    );
  }
  const source = new FileToken(tokenFile, token);
  return new DirectKubeClientConfig(
    { name: 'in-cluster', server: `https://${isIPv6(host) ? `[${host}]` : host}:${port}` },
    { ca, skipTLSVerify: false },
    () => `Bearer ${source.current()}`,
  );
}

function readTokenFile(file: string): string {
  const token = readFileSync(file, 'utf8').trim();
  if (token === '') throw new Error('the file is empty');
  return token;
}

/** A bearer token from a file, re-read at most every 60 s; a failed re-read keeps the last one. */
class FileToken {
  private token: string;
  private readAt: number;

  constructor(
    private readonly file: string,
    initial: string,
  ) {
    this.token = initial;
    this.readAt = Date.now();
  }

  current(): string {
    if (Date.now() - this.readAt >= TOKEN_FILE_REREAD_MS) {
      try {
        this.token = readTokenFile(this.file);
        this.readAt = Date.now();
      } catch {
        // Kept until the file is back, as client-go does: a rotation may be mid-write.
      }
    }
    return this.token;
  }
}

interface TlsMaterial {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  servername?: string;
  skipTLSVerify: boolean;
}

class DirectKubeClientConfig implements KubeClientConfig {
  readonly server: string;
  private readonly cluster: { name: string; server: string; skipTLSVerify: boolean };
  private readonly secure: boolean;
  // One per config, kept alive: the informers' lists and watches share its connections.
  private readonly agent: http.Agent;

  constructor(
    cluster: { name: string; server: string },
    private readonly tls: TlsMaterial,
    private readonly authorization: () => string | undefined,
  ) {
    this.server = cluster.server;
    this.cluster = { ...cluster, skipTLSVerify: tls.skipTLSVerify };
    this.secure = cluster.server.startsWith('https:');
    this.agent = this.secure
      ? new https.Agent({ keepAlive: true, ...this.tlsOptions() })
      : new http.Agent({ keepAlive: true });
  }

  getCurrentCluster(): { name: string; server: string; skipTLSVerify: boolean } {
    return this.cluster;
  }

  async applyToHTTPSOptions(opts: https.RequestOptions): Promise<void> {
    if (this.secure) Object.assign(opts, this.tlsOptions());
    opts.agent = this.agent;
    const authorization = this.authorization();
    if (!authorization) return;
    const headers = headerRecord(opts.headers);
    for (const name of Object.keys(headers)) if (name.toLowerCase() === 'authorization') delete headers[name];
    opts.headers = { ...headers, Authorization: authorization };
  }

  private tlsOptions(): https.AgentOptions {
    const o: https.AgentOptions = {};
    if (this.tls.ca) o.ca = this.tls.ca;
    if (this.tls.cert) o.cert = this.tls.cert;
    if (this.tls.key) o.key = this.tls.key;
    if (this.tls.servername) o.servername = this.tls.servername;
    // Left unset otherwise, as client-node does, so that NODE_TLS_REJECT_UNAUTHORIZED still applies.
    if (this.tls.skipTLSVerify) o.rejectUnauthorized = false;
    return o;
  }
}

/** Request headers as an object; node also takes them as a flat [name, value, ...] list. */
function headerRecord(headers: https.RequestOptions['headers']): http.OutgoingHttpHeaders {
  if (!headers) return {};
  if (!Array.isArray(headers)) return { ...(headers as http.OutgoingHttpHeaders) };
  const record: http.OutgoingHttpHeaders = {};
  for (let i = 0; i + 1 < headers.length; i += 2) record[headers[i] as string] = headers[i + 1];
  return record;
}
