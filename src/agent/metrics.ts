/**
 * The agent's Prometheus metrics (weft_ prefix, base units, _total counters), on a registry of
 * its own. Gauges that describe the maps are computed on scrape from the agent's mirror (no map
 * walk), except the maps the programs write (LRU), which are walked at most every 10 s.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { LbMapOps } from '../datapath/lbmap.js';
import type { CacheEvent } from './services/cache.js';
import type { SyncReport } from './services/reconciler.js';

/** What the metrics read when scraped. */
export interface MetricsSource {
  services(): number;
  backends(): number;
  failedServices(): number;
  mapEntries(): Record<string, number>;
  mapCapacities(): Record<string, number>;
  sockLbStats(): Record<string, number>;
}

export class AgentMetrics {
  readonly registry = new Registry();
  private readonly opsTotal: Counter<'map_name' | 'operation' | 'outcome'>;
  private readonly eventsTotal: Counter<'scope' | 'action'>;
  private readonly invalidTotal: Counter<'scope'>;
  private readonly reconnectsTotal: Counter<'scope'>;
  private readonly syncDuration: Histogram<'kind'>;
  private readonly restarts: Gauge;
  private source?: MetricsSource;

  constructor() {
    const registers = [this.registry];
    const self = this;
    collectDefaultMetrics({ register: this.registry });
    this.restarts = new Gauge({
      name: 'weft_agent_restarts',
      help: 'Times the agent has started on this node after its first start (kept in the state directory)',
      registers,
    });
    new Gauge({
      name: 'weft_services',
      help: 'Services with frontends in the load-balancing maps',
      registers,
      collect() {
        if (self.source) this.set(self.source.services());
      },
    });
    new Gauge({
      name: 'weft_backends',
      help: 'Backends in the load-balancing maps',
      registers,
      collect() {
        if (self.source) this.set(self.source.backends());
      },
    });
    new Gauge({
      name: 'weft_services_failed',
      help: 'Services whose desired state is not in the maps (a full map, no free id); retried',
      registers,
      collect() {
        if (self.source) this.set(self.source.failedServices());
      },
    });
    new Gauge({
      name: 'weft_bpf_map_entries',
      help: 'Entries in a BPF map',
      labelNames: ['map_name'],
      registers,
      collect() {
        if (!self.source) return;
        for (const [map_name, n] of Object.entries(self.source.mapEntries())) this.set({ map_name }, n);
      },
    });
    new Gauge({
      name: 'weft_bpf_map_capacity',
      help: 'Maximum entries of a BPF map (max_entries)',
      labelNames: ['map_name'],
      registers,
      collect() {
        if (!self.source) return;
        for (const [map_name, n] of Object.entries(self.source.mapCapacities())) this.set({ map_name }, n);
      },
    });
    new Counter({
      name: 'weft_sock_lb_events_total',
      help: 'Socket load-balancer events counted by the programs (weft_sock_lb_stats), since the maps were created',
      labelNames: ['event'],
      registers,
      collect() {
        if (!self.source) return;
        this.reset();
        for (const [event, n] of Object.entries(self.source.sockLbStats())) this.inc({ event }, n);
      },
    });
    this.opsTotal = new Counter({
      name: 'weft_bpf_map_ops_total',
      help: 'Entries written to or deleted from BPF maps by the agent',
      labelNames: ['map_name', 'operation', 'outcome'],
      registers,
    });
    this.eventsTotal = new Counter({
      name: 'weft_k8s_events_total',
      help: 'Kubernetes events received from the informers',
      labelNames: ['scope', 'action'],
      registers,
    });
    this.invalidTotal = new Counter({
      name: 'weft_k8s_invalid_objects_total',
      help: 'Kubernetes objects rejected by validation (the last good version stays in use)',
      labelNames: ['scope'],
      registers,
    });
    this.reconnectsTotal = new Counter({
      name: 'weft_k8s_reconnects_total',
      help: 'Times an informer re-established its list and watch after losing the API server',
      labelNames: ['scope'],
      registers,
    });
    this.syncDuration = new Histogram({
      name: 'weft_sync_duration_seconds',
      help: 'Time to compute and apply one sync of desired state to the maps',
      labelNames: ['kind'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    // Every series a dashboard selects on exists from the start, at 0.
    for (const kind of ['full', 'incremental']) this.syncDuration.zero({ kind });
  }

  setSource(source: MetricsSource): void {
    this.source = source;
  }

  setRestarts(n: number): void {
    this.restarts.set(n);
  }

  mapOps(ops: LbMapOps): void {
    this.opsTotal.inc({ map_name: ops.map, operation: ops.operation, outcome: ops.outcome }, ops.count);
  }

  k8sEvent(e: CacheEvent): void {
    this.eventsTotal.inc({ scope: e.kind, action: e.action });
    if (e.outcome === 'invalid') this.invalidTotal.inc({ scope: e.kind });
  }

  reconnect(scope: string): void {
    this.reconnectsTotal.inc({ scope });
  }

  sync(report: SyncReport): void {
    this.syncDuration.observe({ kind: report.kind }, report.durationSeconds);
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
