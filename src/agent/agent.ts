/**
 * The node agent: informers → Service cache → reconciler → LB maps, with the API and metrics
 * servers around it. See docs/agent.md for the loop.
 *
 *   start: check the kernel → claim the state dir → load/reuse pinned maps, attach the socket LB
 *          through pinned links → read the maps back (mirror, ids) → serve the API → start the
 *          informers → once all three have listed: one full sync → ready
 *   then:  every event dirties the Services it concerns → one incremental sync per event-loop
 *          turn, for the dirty Services only → failed Services retried with back-off
 *   stop:  informers and servers stop; maps, links and filters stay (traffic keeps flowing)
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { checkEnvironment } from '../datapath/environment.js';
import { frontendName, LbScope, lbMapNames, protocolName, type LbFrontend } from '../datapath/lbmap.js';
import { releaseFreeNativeMemory } from '../datapath/native.js';
import { WeftError } from '../shared/errors.js';
import { type KubeClientConfig, loadKubeClientConfig } from '../shared/kubeconfig.js';
import { logger, subsysLogger, type Logger } from '../shared/log.js';
import { collectGarbage } from '../shared/memory.js';
import { projectRoot } from '../shared/self.js';
import { type ApiServers, type AgentView, startApiServers } from './api/server.js';
import type { BackendEntry, BpfLbResponse, MapPressure, ServiceEntry, StatusResponse } from './api/types.js';
import { type AgentConfig, pinRootOf } from './config.js';
import { AgentDatapath } from './datapath.js';
import { ServiceInformers } from './k8s/informers.js';
import { AgentMetrics } from './metrics.js';
import { ServiceCache } from './services/cache.js';
import { Reconciler, type SyncReport } from './services/reconciler.js';
import { claimAgentSocket, recordStart } from './state.js';

const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 30_000;

function version(): string {
  try {
    return (JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { version: string })
      .version;
  } catch {
    return 'unknown';
  }
}

/** Options for tests and embedders: a KubeConfig instead of loading one. */
export interface AgentDeps {
  kubeConfig?: { kc: KubeClientConfig; source: string; server: string };
}

export class Agent {
  readonly config: AgentConfig;
  readonly cache = new ServiceCache();
  readonly metrics = new AgentMetrics();
  readonly pinRoot: string;
  readonly socketPath: string;
  private readonly log: Logger;
  private readonly syncLog: Logger;
  private datapath!: AgentDatapath;
  private reconciler!: Reconciler;
  private informers!: ServiceInformers;
  private servers?: ApiServers;
  private kube!: { kc: KubeClientConfig; source: string; server: string };
  private readonly startedAt = new Date();
  private restarts = 0;
  private ready = false;
  private stopping = false;
  private scheduled = false;
  private lastSync?: SyncReport;
  private lastFullSync?: SyncReport;
  private retryTimer?: NodeJS.Timeout;
  private retryDelay = RETRY_MIN_MS;
  /**
   * The NodePort maps' local backends / source ranges may differ from what the reconciler
   * holds: true until first written, and after a failed write (retried after every sync).
   */
  private localBackendsDirty = true;
  private sourceRangesDirty = true;
  private ownsSocket = false;

  private constructor(config: AgentConfig) {
    this.config = config;
    this.pinRoot = pinRootOf(config);
    this.socketPath = join(config.stateDir, 'agent.sock');
    this.log = subsysLogger('agent', { node: config.nodeName });
    this.syncLog = subsysLogger('services', { node: config.nodeName });
  }

  /**
   * Starts the agent; resolves once the datapath is attached and the API answers (readiness
   * follows the first full sync). Fails with a clear error, and leaves nothing half-started.
   */
  static async start(config: AgentConfig, deps: AgentDeps = {}): Promise<Agent> {
    logger.level = config.logLevel;
    const agent = new Agent(config);
    try {
      await agent.boot(deps);
    } catch (err) {
      await agent.stop();
      throw err;
    }
    return agent;
  }

  private async boot(deps: AgentDeps): Promise<void> {
    const c = this.config;
    const env = checkEnvironment({ bpffs: c.bpfRoot });
    const cgroup = c.cgroupRoot ?? env.cgroup2Root;
    this.kube =
      deps.kubeConfig ?? (await loadKubeClientConfig(c.kubeconfig ? { kubeconfig: c.kubeconfig } : {}));
    await claimAgentSocket(c.stateDir, c.nodeName);
    this.restarts = recordStart(c.stateDir).restarts;
    this.metrics.setRestarts(this.restarts);

    const dpLog = subsysLogger('datapath', { node: c.nodeName });
    this.datapath = AgentDatapath.open({
      pinRoot: this.pinRoot,
      cgroup,
      mapMax: c.lbMapMax,
      devices: c.devices,
      stateDir: c.stateDir,
      log: dpLog,
    });
    this.datapath.lb.onOps = (ops) => this.metrics.mapOps(ops);
    const held = this.datapath.readBack();
    this.reconciler = new Reconciler({
      nodeName: c.nodeName,
      cache: this.cache,
      lb: this.datapath.lb,
      log: this.syncLog,
    });
    this.reconciler.restore(held);
    dpLog.info(
      { pinRoot: this.pinRoot, cgroup, frontends: held.frontends.length, backends: held.backends.length },
      'datapath attached; maps read back',
    );

    this.metrics.setSource({
      services: () => this.reconciler.stats().services,
      backends: () => {
        const s = this.reconciler.stats();
        return s.backends[4] + s.backends[6];
      },
      failedServices: () => this.reconciler.failures().length,
      mapEntries: () => Object.fromEntries(this.mapPressure().map((m) => [m.name, m.entries])),
      mapCapacities: () => Object.fromEntries(this.mapPressure().map((m) => [m.name, m.capacity])),
      sockLbStats: () => this.datapath.lb.sockLbStats(),
    });

    const k8sLog = subsysLogger('k8s', { node: c.nodeName });
    this.cache.onEvent = (e) => {
      this.metrics.k8sEvent(e);
      if (e.outcome === 'invalid') {
        k8sLog.warn(
          { kind: e.kind, name: e.name, reason: e.reason },
          'invalid object skipped; its last good version stays',
        );
      } else {
        k8sLog.debug({ kind: e.kind, name: e.name, action: e.action, outcome: e.outcome }, 'event');
      }
    };
    this.cache.onDirty = () => this.schedule();
    this.cache.onNodeChange = (name) => {
      if (name === c.nodeName && this.ready) this.followNode();
    };
    this.informers = new ServiceInformers({
      kc: this.kube.kc,
      cache: this.cache,
      log: k8sLog,
      onReconnect: (kind) => this.metrics.reconnect(kind),
    });

    this.ownsSocket = true;
    this.servers = await startApiServers({
      view: this.view(),
      socketPath: this.socketPath,
      ...(c.metricsAddress ? { metricsAddress: c.metricsAddress } : {}),
      log: subsysLogger('api', { node: c.nodeName }),
    });
    this.log.info(
      {
        version: version(),
        restarts: this.restarts,
        socket: this.socketPath,
        metrics: this.servers.metricsAddress ?? 'disabled',
        kubernetes: this.kube.server,
      },
      'agent started; waiting for the informers to sync',
    );

    this.informers.start();
    void this.informers.synced().then(() => this.firstSync());
  }

  /** Stops watching and serving; the maps, links and filters stay, so traffic keeps flowing. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.informers?.stop();
    await this.servers?.close();
    if (this.ownsSocket) rmSync(this.socketPath, { force: true });
    this.datapath?.close();
    this.log.info({}, 'agent stopped; the datapath keeps serving the last state');
  }

  get isReady(): boolean {
    return this.ready;
  }

  /** host:port of the metrics server (with the port resolved when :0 was asked), if enabled. */
  get metricsAddress(): string | undefined {
    return this.servers?.metricsAddress;
  }

  /** Resolves when the first full sync is done (tests). */
  async whenReady(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ready) {
      if (this.stopping) throw new WeftError('WEFT_ERR_STOPPED', 'the agent stopped before it was ready');
      if (Date.now() > deadline)
        throw new WeftError('WEFT_ERR_TIMEOUT', 'the agent did not become ready in time');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  // ---- the loop ------------------------------------------------------------------------------

  private firstSync(): void {
    if (this.stopping) return;
    this.runSync(true);
    this.ready = true;
    this.followNode();
    this.log.info(
      { durationSeconds: this.lastFullSync?.durationSeconds, services: this.lastFullSync?.services },
      'first full sync done; ready',
    );
    // Events that arrived during the full sync.
    if (this.cache.dirtyCount > 0) this.schedule();
    this.releaseFirstSyncMemory();
  }

  /**
   * The first list and full sync leave the old space full of garbage that V8 would keep
   * committed until a major GC an idle agent may not need for hours, and malloc arenas holding
   * freed native memory glibc does not return on its own. After readiness, so that it costs no
   * sync time: one collection and a trim (≈30 and ≈20 MiB at 10,000 Services), then, once V8
   * has given back the pages that collection emptied, a compacting one and a trim again: the
   * survivors sat scattered over pages that were mostly garbage (≈75 MiB of old space committed
   * for ≈45 MiB live). Compacting at once instead copies them while those pages are still
   * resident: the same result, with a peak ≈40 MiB higher (docs/agent.md, Memory).
   */
  private releaseFirstSyncMemory(): void {
    const mib = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;
    const release = (compact: boolean, what: string) => {
      if (this.stopping) return;
      const t0 = performance.now();
      const before = process.memoryUsage();
      collectGarbage({ compact });
      const heapUsedAfter = process.memoryUsage().heapUsed;
      releaseFreeNativeMemory();
      this.log.debug(
        {
          durationMs: Math.round(performance.now() - t0),
          heapUsedMiB: mib(before.heapUsed),
          heapUsedAfterMiB: mib(heapUsedAfter),
          rssMiB: mib(before.rss),
          rssAfterMiB: mib(process.memoryUsage().rss),
        },
        what,
      );
    };
    setImmediate(() => {
      release(false, 'released the garbage of the first sync');
      setTimeout(() => release(true, 'compacted the heap after the first sync'), 50).unref();
    });
  }

  private schedule(): void {
    if (!this.ready || this.scheduled || this.stopping) return;
    this.scheduled = true;
    // One sync per event-loop turn: a burst of events (a relist) becomes one batch.
    setImmediate(() => {
      this.scheduled = false;
      if (!this.stopping) this.runSync(false);
    });
  }

  private runSync(full: boolean): void {
    let report: SyncReport;
    try {
      report = this.reconciler.sync(full);
    } catch (err) {
      // A bug, not a map error (those are per Service): the dirty set is gone, so resync all.
      this.syncLog.error(
        { err: err instanceof Error ? err.stack : String(err) },
        'sync failed; full resync in 5 s',
      );
      this.retryTimer ??= setTimeout(() => {
        this.retryTimer = undefined;
        if (!this.stopping) this.runSync(true);
      }, 5_000);
      return;
    }
    this.lastSync = report;
    if (full) this.lastFullSync = report;
    this.metrics.sync(report);
    const changed =
      report.frontendsWritten + report.frontendsDeleted + report.backendsWritten + report.backendsDeleted;
    const level = full || report.failed > 0 ? 'info' : 'debug';
    this.syncLog[level](
      {
        kind: report.kind,
        services: report.services,
        frontendsWritten: report.frontendsWritten,
        frontendsDeleted: report.frontendsDeleted,
        backendsWritten: report.backendsWritten,
        backendsDeleted: report.backendsDeleted,
        failed: report.failed,
        durationSeconds: report.durationSeconds,
      },
      changed === 0 && report.failed === 0 ? 'sync: maps already up to date' : 'sync applied',
    );
    for (const f of this.reconciler.failures()) {
      if (f.attempts === 1)
        this.syncLog.error(
          { service: f.service, code: f.code, err: f.error },
          'Service not applied; will retry',
        );
    }
    this.writeLocalBackends();
    this.writeSourceRanges();
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    const failing = this.reconciler.failures().length > 0 || this.nodePortFailing();
    if (!failing) {
      this.retryDelay = RETRY_MIN_MS;
      return;
    }
    if (this.retryTimer) return;
    const delay = this.retryDelay;
    this.retryDelay = Math.min(this.retryDelay * 2, RETRY_MAX_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.stopping) return;
      this.followNode();
      if (this.reconciler.retryFailed() > 0) this.schedule();
      else this.scheduleRetry();
    }, delay);
  }

  /** NodePort follows this node's IPv4 InternalIP. */
  private followNode(): void {
    const node = this.cache.node(this.config.nodeName);
    const ipv4 = node?.internalIPs.find((a) => !a.includes(':'));
    try {
      this.datapath.ensureNodePort(ipv4);
    } catch (err) {
      this.log.error({ err: err instanceof Error ? err.message : String(err) }, 'NodePort attach failed');
    }
    this.writeLocalBackends();
    this.writeSourceRanges();
    // A device that failed is tried again with the failed Services.
    this.scheduleRetry();
  }

  private nodePortFailing(): boolean {
    return this.datapath.nodePortStatus().devices.some((d) => d.error !== undefined);
  }

  /**
   * The loadBalancerSourceRanges the NodePort programs check, after the frontends that carry
   * the flag were written: a new limited frontend refuses everyone from outside until its ranges
   * follow, microseconds later, never the other way round. Retried after every sync until it
   * succeeds.
   */
  private writeSourceRanges(): void {
    if (!this.datapath.nodePortReady) return;
    const { byRevNat, changed } = this.reconciler.sourceRanges4();
    if (!changed && !this.sourceRangesDirty) return;
    this.sourceRangesDirty = true;
    try {
      const { added, removed } = this.datapath.setSourceRanges(byRevNat);
      this.sourceRangesDirty = false;
      if (added + removed > 0) this.syncLog.info({ added, removed }, 'loadBalancerSourceRanges written');
    } catch (err) {
      this.log.error(
        { err: err instanceof Error ? err.message : String(err) },
        'writing loadBalancerSourceRanges failed; retried after the next sync',
      );
    }
  }

  /** This node's IPv4 backends, for the NodePort programs: written as the source ranges are. */
  private writeLocalBackends(): void {
    if (!this.datapath.nodePortReady) return;
    const { addresses, changed } = this.reconciler.localIPv4Backends();
    if (!changed && !this.localBackendsDirty) return;
    this.localBackendsDirty = true;
    try {
      this.datapath.setLocalBackends(addresses);
      this.localBackendsDirty = false;
    } catch (err) {
      this.log.error(
        { err: err instanceof Error ? err.message : String(err) },
        'writing local backends failed; retried after the next sync',
      );
    }
  }

  // ---- what the API shows ------------------------------------------------------------------

  private notReadyReason(): string | undefined {
    if (this.ready) return undefined;
    const waiting = this.informers.status().filter((s) => !s.synced);
    if (waiting.length > 0) {
      const err = waiting.find((s) => s.lastError)?.lastError;
      return `waiting for the informers to sync (${waiting.map((s) => s.kind).join(', ')})${err ? `: ${err}` : ''}`;
    }
    return 'the first full sync is running';
  }

  private mapPressure(): MapPressure[] {
    const s = this.reconciler.stats();
    const fromMirror: Record<string, number> = {
      [lbMapNames.services4]: s.serviceEntries[4],
      [lbMapNames.services6]: s.serviceEntries[6],
      [lbMapNames.backends4]: s.backends[4],
      [lbMapNames.backends6]: s.backends[6],
      [lbMapNames.reverseNat4]: s.frontends[4],
      [lbMapNames.reverseNat6]: s.frontends[6],
      [lbMapNames.affinityMatch]: s.affinityMatch,
    };
    let walked: Record<string, number> = {};
    try {
      walked = this.datapath.programMapCounts();
    } catch (err) {
      this.log.warn(
        { err: err instanceof Error ? err.message : String(err) },
        'counting LRU map entries failed',
      );
    }
    return this.datapath.mapCapacities().map(({ name, capacity }) => {
      const entries = fromMirror[name] ?? walked[name] ?? 0;
      return { name, entries, capacity, pressure: capacity > 0 ? entries / capacity : 0 };
    });
  }

  private status(): StatusResponse {
    const informers = this.informers.status();
    const failures = this.reconciler.failures();
    const maps = this.mapPressure();
    const socketLb = this.datapath.socketLbStatus();
    const nodePort = this.datapath.nodePortStatus();
    const problems: string[] = [];
    for (const i of informers) {
      if (!i.connected) problems.push(`${i.kind} watch: ${i.lastError ?? 'not connected yet'}`);
    }
    for (const f of failures) problems.push(`Service ${f.service} not applied: ${f.error}`);
    for (const m of maps)
      if (m.pressure >= 0.9) problems.push(`map ${m.name} is ${Math.round(m.pressure * 100)}% full`);
    if (!socketLb.attached)
      problems.push(`socket load-balancer not attached: ${socketLb.error ?? 'unknown'}`);
    for (const d of nodePort.devices) if (d.error) problems.push(`NodePort on ${d.device}: ${d.error}`);
    for (const o of this.cache.invalid()) problems.push(`invalid ${o.kind} ${o.name}: ${o.reason}`);
    let stats: Record<string, number> | undefined;
    try {
      stats = this.datapath.lb.sockLbStats();
    } catch {
      stats = undefined;
    }
    const sync: StatusResponse['sync'] = {
      count: this.reconciler.syncCount,
      pending: this.cache.dirtyCount,
      failedServices: failures,
    };
    if (this.lastSync) sync.last = this.lastSync;
    if (this.lastFullSync) sync.lastFull = this.lastFullSync;
    return {
      node: this.config.nodeName,
      version: version(),
      pid: process.pid,
      startedAt: this.startedAt.toISOString(),
      uptimeSeconds: Math.round((Date.now() - this.startedAt.getTime()) / 1000),
      restarts: this.restarts,
      ready: this.ready,
      health: !this.ready ? 'Starting' : problems.length > 0 ? 'Degraded' : 'Ok',
      problems,
      kubernetes: {
        server: this.kube.server,
        configSource: this.kube.source,
        connected: this.informers.connected,
        resources: informers,
      },
      sync,
      invalidObjects: this.cache.invalid(),
      maps,
      socketLb: stats ? { ...socketLb, stats } : socketLb,
      nodePort,
      paths: { pinRoot: this.pinRoot, stateDir: this.config.stateDir, socket: this.socketPath },
    };
  }

  private services(): ServiceEntry[] {
    const entry = (id: number): BackendEntry => {
      const b = this.reconciler.backend(id);
      return b
        ? { id, address: b.address, port: b.port, protocol: b.protocol, state: b.state }
        : { id, address: '', port: 0, protocol: 'TCP', state: 'missing' };
    };
    return this.reconciler
      .programmed()
      .map(({ frontend: f, service, portName }) => {
        const e: ServiceEntry = {
          id: f.revNatIndex,
          frontend: { address: f.address, port: f.port, protocol: f.protocol },
          type: f.type,
          trafficPolicy: { external: f.externalTrafficPolicy, internal: f.internalTrafficPolicy },
          backends: f.backends.map(entry),
        };
        if (service) {
          const slash = service.indexOf('/');
          e.service = {
            namespace: service.slice(0, slash),
            name: service.slice(slash + 1),
            port: portName ?? '',
          };
        }
        if (f.affinityTimeoutSeconds !== undefined) e.affinityTimeoutSeconds = f.affinityTimeoutSeconds;
        if (f.sourceRanges?.length) e.sourceRanges = [...f.sourceRanges];
        if (f.internalBackends) e.internalBackends = f.internalBackends.map(entry);
        return e;
      })
      .sort((a, b) => a.id - b.id);
  }

  /** Raw map contents, read from the maps themselves (not the agent's mirror). */
  private bpfLb(): BpfLbResponse {
    const lb = this.datapath.lb;
    const services: BpfLbResponse['services'] = [];
    for (const maps of [lb.v4, lb.v6]) {
      for (const [k, v] of maps.services.entries()) {
        let protocol: string;
        try {
          protocol = protocolName(k.proto);
        } catch {
          protocol = String(k.proto);
        }
        services.push({
          key: {
            address: k.address,
            port: k.dport,
            protocol,
            slot: k.backend_slot,
            scope: k.scope === LbScope.internal ? 'internal' : 'external',
          },
          value: {
            backendId: v.backend_id,
            count: v.count,
            revNatIndex: v.rev_nat_index,
            flags: v.flags,
            flags2: v.flags2,
          },
        });
      }
    }
    const name = (k: BpfLbResponse['services'][number]['key']) =>
      frontendName({ address: k.address, port: k.port, protocol: k.protocol as LbFrontend['protocol'] });
    services.sort((a, b) => {
      const x = name(a.key);
      const y = name(b.key);
      if (x !== y) return x < y ? -1 : 1;
      if (a.key.scope !== b.key.scope) return a.key.scope === 'external' ? -1 : 1;
      return a.key.slot - b.key.slot;
    });
    return {
      services,
      backends: lb.backends().map((b) => ({
        id: b.id,
        address: b.address,
        port: b.port,
        protocol: b.protocol,
        state: b.state,
      })),
      reverseNat: lb.reverseNat().map((r) => ({ index: r.revNatIndex, address: r.address, port: r.port })),
    };
  }

  private view(): AgentView {
    return {
      notReadyReason: () => this.notReadyReason(),
      status: () => this.status(),
      services: () => this.services(),
      bpfLb: () => this.bpfLb(),
      metrics: this.metrics,
    };
  }
}
