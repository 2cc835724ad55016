import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { isIP } from 'node:net';
import { join } from 'node:path';
import Fastify from 'fastify';
import { WeftError } from '../../shared/errors.js';
import { subsysLogger } from '../../shared/log.js';
import { ApiCore } from './api-core.js';
import { TokenAuthority } from './bearer-tokens.js';
import { registerHttpApi } from './http-api.js';
import { Journal } from './journal.js';
import { deepEqual, isObject, type JsonObject } from './json-value.js';
import { ObjectStore } from './object-store.js';
import { openApiDocuments } from './openapi.js';
import { ResourceRegistry } from './resource-types.js';
import { ClusterIPAllocator, NodePortAllocator } from './service-allocator.js';
import { ensureCertificates } from './tls-certificates.js';

/**
 * The devcluster's Kubernetes-compatible API server, started in-process by the devcluster
 * daemon: HTTPS with bearer tokens, objects in memory with a journal in dataDir, and the
 * semantics client-node informers and kubectl rely on. See docs/devcluster-apiserver.md.
 */
export interface ApiServerOptions {
  listen: Array<{ host: string; port: number }>;
  dataDir: string;
  serviceCIDR: string;
  nodePortRange?: [number, number];
  advertiseAddress: string;
  advertisePort: number;
  /** Watch events retained for resuming watches (older versions get 410 Gone). Default 20000. */
  eventHistoryLimit?: number;
  /** How often watches that allow bookmarks get one. Default 60 s, like kube-apiserver. */
  bookmarkIntervalMs?: number;
}

export interface ApiServer {
  url: string;
  caCertPem: string;
  adminToken: string;
  serviceAccountToken(namespace: string, name: string): string;
  /** Every address the server listens on, as URLs (ephemeral ports resolved). */
  urls: string[];
  close(): Promise<void>;
}

const log = subsysLogger('apiserver');

/**
 * A SIGTERM must leave every open journal complete: one process-wide handler flushes them all,
 * then, if nobody else handles SIGTERM (the devcluster daemon may), lets the default action end
 * the process as it would have without us.
 */
const openJournals = new Set<Journal>();
function flushJournalsOnSigterm(): void {
  for (const j of openJournals) {
    try {
      j.flushSync();
    } catch (err) {
      log.error({ err }, 'the journal could not be flushed on SIGTERM');
    }
  }
  if (process.listenerCount('SIGTERM') === 1) {
    process.removeListener('SIGTERM', flushJournalsOnSigterm);
    process.kill(process.pid, 'SIGTERM');
  }
}
const bootstrapNamespaces = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];

function hostForUrl(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host;
}

function checkOptions(opts: ApiServerOptions): void {
  if (opts.listen.length === 0)
    throw new WeftError('WEFT_ERR_CONFIG', 'the API server needs at least one listen address');
  for (const l of opts.listen) {
    if (!Number.isInteger(l.port) || l.port < 0 || l.port > 65535) {
      throw new WeftError('WEFT_ERR_CONFIG', `listen port ${l.port} for ${l.host} is not a port number`);
    }
  }
  if (isIP(opts.advertiseAddress) !== 4) {
    throw new WeftError(
      'WEFT_ERR_CONFIG',
      `advertiseAddress ${opts.advertiseAddress} must be an IPv4 address`,
    );
  }
  if (!Number.isInteger(opts.advertisePort) || opts.advertisePort < 1 || opts.advertisePort > 65535) {
    throw new WeftError('WEFT_ERR_CONFIG', `advertisePort ${opts.advertisePort} is not a port number`);
  }
}

export async function startApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  checkOptions(opts);
  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  const clusterIPs = new ClusterIPAllocator(opts.serviceCIDR);
  const nodePorts = new NodePortAllocator(opts.nodePortRange ?? [30000, 32767]);
  const kubernetesIP = clusterIPs.first;

  const sans = [
    'localhost',
    '127.0.0.1',
    'kubernetes',
    'kubernetes.default',
    'kubernetes.default.svc',
    'kubernetes.default.svc.cluster.local',
    kubernetesIP,
    opts.advertiseAddress,
  ];
  for (const l of opts.listen)
    if (l.host !== '0.0.0.0' && l.host !== '::' && l.host !== '') sans.push(l.host);
  const certs = await ensureCertificates(opts.dataDir, sans);
  const tokens = new TokenAuthority(opts.dataDir);

  const journalPath = join(opts.dataDir, 'journal.jsonl');
  const replay = Journal.replay(journalPath);
  if (replay.skippedLines > 0)
    log.warn(
      { skipped: replay.skippedLines },
      'journal had unreadable lines (a write cut short by a crash); skipped them',
    );
  const store = new ObjectStore(opts.eventHistoryLimit ?? 20_000);
  const loaded = store.load(replay.records);
  Journal.writeSnapshot(journalPath, store.resourceVersion, store.entries());
  const journal = new Journal(journalPath);
  store.attachJournal(journal);

  const registry = new ResourceRegistry();
  const core = new ApiCore({
    registry,
    store,
    clusterIPs,
    nodePorts,
    log,
    onNamespaceCreated: (name) => setImmediate(() => populateNamespace(name)),
    issueToken: (namespace, name, expirationSeconds) =>
      tokens.serviceAccountToken(namespace, name, expirationSeconds),
  });
  core.restore();

  function populateNamespace(name: string): void {
    try {
      const ns = store.get('/namespaces', name);
      if (!ns || (ns.metadata as JsonObject).deletionTimestamp) return;
      if (!store.get('/serviceaccounts', `${name}/default`)) {
        core.upsertSystemObject('/serviceaccounts', {
          apiVersion: 'v1',
          kind: 'ServiceAccount',
          metadata: { name: 'default', namespace: name },
        });
      }
      if (!store.get('/configmaps', `${name}/kube-root-ca.crt`)) {
        core.upsertSystemObject('/configmaps', {
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: {
            name: 'kube-root-ca.crt',
            namespace: name,
            annotations: {
              'kubernetes.io/description':
                'Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.',
            },
          },
          data: { 'ca.crt': certs.caCertPem },
        });
      }
    } catch (err) {
      log.error({ err, namespace: name }, 'could not add the default ServiceAccount and CA ConfigMap');
    }
  }

  /** default/kubernetes and its EndpointSlice always point at this server. */
  function reconcileKubernetesService(): void {
    try {
      const svc = store.get('/services', 'default/kubernetes');
      const spec = svc && isObject(svc.spec) ? svc.spec : undefined;
      const port = spec && Array.isArray(spec.ports) && isObject(spec.ports[0]) ? spec.ports[0] : undefined;
      if (
        !svc ||
        spec?.clusterIP !== kubernetesIP ||
        port?.targetPort !== opts.advertisePort ||
        port?.port !== 443
      ) {
        if (svc && spec?.clusterIP !== kubernetesIP) store.delete('/services', 'default/kubernetes');
        core.upsertSystemObject('/services', {
          apiVersion: 'v1',
          kind: 'Service',
          metadata: {
            name: 'kubernetes',
            namespace: 'default',
            labels: { component: 'apiserver', provider: 'kubernetes' },
          },
          spec: {
            type: 'ClusterIP',
            clusterIP: kubernetesIP,
            sessionAffinity: 'None',
            ports: [{ name: 'https', port: 443, protocol: 'TCP', targetPort: opts.advertisePort }],
          },
        });
      }
      const desired = {
        addressType: 'IPv4',
        endpoints: [{ addresses: [opts.advertiseAddress], conditions: { ready: true } }],
        ports: [{ name: 'https', port: opts.advertisePort, protocol: 'TCP' }],
      };
      const slice = store.get('discovery.k8s.io/endpointslices', 'default/kubernetes');
      const current = slice
        ? { addressType: slice.addressType, endpoints: slice.endpoints, ports: slice.ports }
        : undefined;
      if (!deepEqual(current, desired)) {
        core.upsertSystemObject('discovery.k8s.io/endpointslices', {
          apiVersion: 'discovery.k8s.io/v1',
          kind: 'EndpointSlice',
          metadata: {
            name: 'kubernetes',
            namespace: 'default',
            labels: { 'kubernetes.io/service-name': 'kubernetes' },
          },
          ...desired,
        });
      }
    } catch (err) {
      log.error({ err }, 'could not reconcile the default/kubernetes Service');
    }
  }

  for (const name of bootstrapNamespaces) {
    if (!store.get('/namespaces', name))
      core.upsertSystemObject('/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  }
  for (const ns of store.list('/namespaces')) populateNamespace(String((ns.metadata as JsonObject).name));
  reconcileKubernetesService();
  let reconcileScheduled = false;
  const watchKubernetes = (e: { key: string }) => {
    if (e.key !== 'default/kubernetes' || reconcileScheduled) return;
    reconcileScheduled = true;
    setImmediate(() => {
      reconcileScheduled = false;
      reconcileKubernetesService();
    });
  };
  const unsubscribers = [
    store.subscribe('/services', watchKubernetes),
    store.subscribe('discovery.k8s.io/endpointslices', watchKubernetes),
  ];

  const servers: Server[] = [];
  const app = Fastify({
    logger: false,
    bodyLimit: 3 * 1024 * 1024,
    routerOptions: { maxParamLength: 1000 },
    return503OnClosing: false,
    serverFactory: (handler) => {
      for (let i = 0; i < opts.listen.length; i++) {
        const server = createServer(
          { key: certs.keyPem, cert: certs.certPem, minVersion: 'TLSv1.2' },
          handler,
        );
        server.keepAliveTimeout = 60_000;
        server.requestTimeout = 0;
        servers.push(server);
      }
      return servers[0]!;
    },
  });
  let primaryUrl = '';
  registerHttpApi(app, {
    core,
    tokens,
    openapi: openApiDocuments(registry),
    log,
    serverAddress: () => `${opts.advertiseAddress}:${opts.advertisePort}`,
    watch: { bookmarkIntervalMs: opts.bookmarkIntervalMs ?? 60_000, maxBufferedBytes: 64 * 1024 * 1024 },
  });
  await app.ready();

  const urls: string[] = [];
  try {
    for (let i = 0; i < servers.length; i++) {
      const l = opts.listen[i]!;
      const server = servers[i]!;
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(l.port, l.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const addr = server.address();
      const port = typeof addr === 'object' && addr ? addr.port : l.port;
      urls.push(`https://${hostForUrl(l.host)}:${port}`);
    }
  } catch (err) {
    for (const s of servers) s.close();
    journal.close();
    throw new WeftError('WEFT_ERR_LISTEN', `the API server could not listen: ${(err as Error).message}`, {
      cause: err,
    });
  }
  primaryUrl = urls[0]!;

  openJournals.add(journal);
  if (openJournals.size === 1) process.on('SIGTERM', flushJournalsOnSigterm);
  log.info({ urls, objects: loaded, resourceVersion: store.resourceVersion }, 'API server listening');

  let closed = false;
  return {
    url: primaryUrl,
    urls,
    caCertPem: certs.caCertPem,
    adminToken: tokens.adminToken,
    serviceAccountToken: (namespace, name) => tokens.serviceAccountToken(namespace, name),
    async close() {
      if (closed) return;
      closed = true;
      openJournals.delete(journal);
      if (openJournals.size === 0) process.removeListener('SIGTERM', flushJournalsOnSigterm);
      for (const u of unsubscribers) u();
      core.close();
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.close(() => resolve());
              s.closeAllConnections();
            }),
        ),
      );
      journal.close();
      log.info('API server stopped');
    },
  };
}

/** A kubeconfig for kubectl and client-node: one cluster, one user with a bearer token. */
export function kubeconfigYaml(o: {
  clusterName: string;
  server: string;
  caCertPem: string;
  token: string;
}): string {
  const ca = Buffer.from(o.caCertPem).toString('base64');
  const user = `${o.clusterName}-admin`;
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: ${JSON.stringify(o.clusterName)}`,
    '  cluster:',
    `    server: ${JSON.stringify(o.server)}`,
    `    certificate-authority-data: ${ca}`,
    'users:',
    `- name: ${JSON.stringify(user)}`,
    '  user:',
    `    token: ${JSON.stringify(o.token)}`,
    'contexts:',
    `- name: ${JSON.stringify(o.clusterName)}`,
    '  context:',
    `    cluster: ${JSON.stringify(o.clusterName)}`,
    `    user: ${JSON.stringify(user)}`,
    '    namespace: default',
    `current-context: ${JSON.stringify(o.clusterName)}`,
    '',
  ].join('\n');
}
