import { writeFileSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { CoordinationV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { WeftError } from '../shared/errors.js';
import { subsysLogger } from '../shared/log.js';
import { weftCommand } from '../shared/self.js';
import { type ApiServer, kubeconfigYaml, startApiServer } from './apiserver/index.js';
import {
  type ClusterRecord,
  readClusterRecord,
  readDaemonRecord,
  recordPaths,
  writeDaemonRecord,
} from './cluster-record.js';
import { startDeploymentController } from './controllers/deployment.js';
import { startEndpointSliceController } from './controllers/endpointslice.js';
import { startGarbageCollector } from './controllers/garbage-collector.js';
import { startReplicaSetController } from './controllers/replicaset.js';
import { addressAt, formatIPv4, parseCidr } from './ipv4.js';
import { Kubelet } from './kubelet/kubelet.js';
import { NodeProber } from './kubelet/network-prober.js';
import { NodeDaemonSupervisor, weftAgentDaemon } from './node-daemons.js';
import { isRunning, type ProcessRecord, recordProcess } from './process-record.js';
import { Scheduler } from './scheduler.js';

const log = subsysLogger('devcluster');

/**
 * `weft devcluster serve --name <name>` (hidden; started by `up`): the cluster's control plane
 * and node agents in one process — the API server (on 127.0.0.1 for the host's kubectl and on
 * the bridge IP for nodes and pods), the EndpointSlice, ReplicaSet and Deployment controllers, the
 * garbage collector, the scheduler, one kubelet per node and the per-node daemons. SIGTERM stops the watchers and the API server but leaves
 * pods and node daemons running: `down` ends them from the record. Started again (`weft
 * devcluster start`), it listens on the previous API port when that is free and adopts the node
 * daemons that still run, so the agents' watches reconnect to it unchanged.
 */
export async function serveCluster(name: string): Promise<number> {
  const rec = readClusterRecord(name);
  if (!rec) throw new WeftError('WEFT_ERR_NOT_FOUND', `no devcluster named "${name}"`);
  const paths = recordPaths(name);
  const self = recordProcess(process.pid, 'daemon');
  if (!self) throw new WeftError('WEFT_ERR_STATE', 'cannot read our own /proc entry');
  // Two daemons would run every pod twice; a daemon does not adopt another's pods either.
  const previous = readDaemonRecord(name);
  if (previous && isRunning({ pid: previous.pid, startTime: previous.startTime, role: 'daemon' })) {
    throw new WeftError(
      'WEFT_ERR_DAEMON',
      `the daemon of cluster "${name}" is already running (pid ${previous.pid})`,
    );
  }

  process.on('unhandledRejection', (err) => {
    log.error({ err: err instanceof Error ? err.stack : String(err) }, 'unhandled rejection');
  });
  // The log is asynchronous; a crash must still leave its reason in the daemon log.
  process.on('uncaughtException', (err) => {
    writeSync(
      2,
      `${JSON.stringify({ level: 60, time: new Date().toISOString(), pid: process.pid, subsys: 'devcluster', err: err.stack, msg: 'uncaught exception; the daemon exits' })}\n`,
    );
    process.exit(1);
  });

  // The same port as before when it is free: node daemons that outlived the previous daemon
  // (and kubectl users) hold kubeconfigs that name it.
  const api = await startApiServerOnFreePort(rec, paths.apiserverData, previous?.apiServer.port);
  const apiEndpointChanged = previous !== undefined && previous.apiServer.port !== api.port;
  if (apiEndpointChanged) {
    log.warn(
      { previousPort: previous?.apiServer.port, port: api.port },
      'the previous API port is taken; node daemons still running are restarted to reach the new one',
    );
  }
  const hostURL = `https://127.0.0.1:${api.port}`;
  const internalURL = `https://${rec.plan.bridgeIP}:${api.port}`;
  const clusterName = `weft-${name}`;
  writeFileSync(
    paths.kubeconfig,
    kubeconfigYaml({
      clusterName,
      server: hostURL,
      caCertPem: api.server.caCertPem,
      token: api.server.adminToken,
    }),
    { mode: 0o600 },
  );
  writeFileSync(
    paths.internalKubeconfig,
    kubeconfigYaml({
      clusterName,
      server: internalURL,
      caCertPem: api.server.caCertPem,
      token: api.server.adminToken,
    }),
    { mode: 0o600 },
  );

  const helpers = new Map<string, ProcessRecord>();
  // Node daemons outlive the daemon; they stay on record until the supervisor takes them over.
  for (const p of previous?.helpers ?? [])
    if (!p.role.startsWith('prober ') && isRunning(p)) helpers.set(p.role, p);
  const saveDaemonRecord = () =>
    writeDaemonRecord(name, {
      pid: self.pid,
      startTime: self.startTime,
      apiServer: { hostURL, internalURL, port: api.port },
      kubeconfig: paths.kubeconfig,
      internalKubeconfig: paths.internalKubeconfig,
      helpers: [...helpers.values()],
    });
  saveDaemonRecord();
  log.info({ hostURL, internalURL }, 'API server listening');

  const kc = new KubeConfig();
  kc.loadFromFile(paths.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const coordination = kc.makeApiClient(CoordinationV1Api);
  const weft = weftCommand();
  const kubernetesServiceIP = formatIPv4(addressAt(parseCidr(rec.plan.serviceCIDR), 1));

  const endpointSlices = startEndpointSliceController(kc);
  const workloadControllers = [
    startReplicaSetController(kc),
    startDeploymentController(kc),
    startGarbageCollector(kc),
  ];
  const scheduler = new Scheduler(kc, core, subsysLogger('devcluster-scheduler'));
  const kubelets = rec.nodes.map((node) => {
    const prober = new NodeProber({
      node: node.name,
      netns: node.netns,
      cgroup: rec.daemonCgroup,
      log: subsysLogger('devcluster-prober'),
      onProcess: (p) => {
        helpers.set(`prober ${node.name}`, p);
        saveDaemonRecord();
      },
    });
    return new Kubelet({
      cluster: rec,
      node,
      kc,
      core,
      coordination,
      log: subsysLogger('kubelet'),
      weft,
      logsDir: paths.logs,
      prober,
      kubernetesServiceIP,
    });
  });
  const nodeDaemons = new NodeDaemonSupervisor({
    nodes: rec.nodes,
    specs: rec.agents === false ? [] : [weftAgentDaemon(weft)],
    internalKubeconfig: paths.internalKubeconfig,
    logsDir: paths.logs,
    stateDir: paths.dir,
    previous: previous?.helpers ?? [],
    apiEndpointChanged,
    log: subsysLogger('devcluster-node-daemons'),
    onProcessesChanged: (procs) => {
      for (const key of [...helpers.keys()]) if (!key.startsWith('prober ')) helpers.delete(key);
      for (const p of procs) helpers.set(p.role, p);
      saveDaemonRecord();
    },
  });

  await Promise.all(kubelets.map((k) => k.start()));
  await scheduler.start();
  nodeDaemons.start();
  log.info({ nodes: rec.nodes.map((n) => n.name) }, 'cluster running');

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'stopping: watchers and API server; pods keep running');
      nodeDaemons.detach();
      await Promise.allSettled([
        scheduler.stop(),
        endpointSlices.stop(),
        ...workloadControllers.map((c) => c.stop()),
        ...kubelets.map((k) => k.stop()),
      ]);
      await api.server.close().catch(() => {});
      resolve(0);
    };
    process.once('SIGTERM', () => void stop('SIGTERM'));
    process.once('SIGINT', () => void stop('SIGINT'));
  });
}

/**
 * One port on both addresses, so the host and the nodes use the same https://<ip>:<port>.
 * The port is found free on both first; a race with another process is retried.
 */
async function startApiServerOnFreePort(
  rec: ClusterRecord,
  dataDir: string,
  preferredPort?: number,
): Promise<{ server: ApiServer; port: number }> {
  for (let attempt = 0; ; attempt++) {
    const port =
      attempt === 0 && preferredPort !== undefined
        ? preferredPort
        : await freePortOn([rec.plan.bridgeIP, '127.0.0.1']);
    try {
      const server = await startApiServer({
        listen: [
          { host: '127.0.0.1', port },
          { host: rec.plan.bridgeIP, port },
        ],
        dataDir,
        serviceCIDR: rec.plan.serviceCIDR,
        advertiseAddress: rec.plan.bridgeIP,
        advertisePort: port,
      });
      return { server, port };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 5) throw err;
      if (port === preferredPort) log.warn({ port }, 'the previous API port is in use; choosing another');
    }
  }
}

async function freePortOn(hosts: string[]): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await listenOnce(hosts[0] ?? '127.0.0.1', 0);
    let ok = true;
    for (const h of hosts.slice(1)) {
      if ((await listenOnce(h, port).catch(() => -1)) < 0) ok = false;
    }
    if (ok) return port;
  }
  throw new WeftError('WEFT_ERR_NO_PORT', `no port free on all of ${hosts.join(', ')}`);
}

function listenOnce(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen({ host, port, exclusive: true }, () => {
      const addr = srv.address();
      const p = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(p));
    });
  });
}
