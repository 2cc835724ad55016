/**
 * The Service reconciler: desired state (desired.ts, from the cache) against what the LB maps
 * hold (a mirror read back on start and kept up to date by every write), applied as the
 * difference, in batches, in lb.h's order:
 *
 *   1. frontends nobody wants any more (master, then slots: room for what comes next)
 *   2. new and changed backends
 *   3. new and changed frontends (slots, then the INT master, then the EXT master)
 *   4. backends no frontend lists any more
 *
 * Level-triggered: each sync recomputes the dirty Services from the whole cache and compares with
 * the mirror, so replaying events, or restarting on full maps, changes nothing that is already
 * right. Ids are stable (allocator.ts, seeded from the maps).
 *
 * Failure is per Service: when the maps cannot take a Service's change (a full map, no free
 * id), that Service keeps exactly its previous state, is reported (failures()) and is tried
 * again on a later sync; every other Service in the same batch is applied.
 */
import type { FrontendAddress, LbBackend, LbFrontend } from '../../datapath/lbmap.js';
import { WeftError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { backendIdAllocator, revNatAllocator } from './allocator.js';
import type { ServiceCache } from './cache.js';
import { desiredService } from './desired.js';
import {
  assignSlots,
  backendIs,
  frontendId,
  lbBackendOf,
  lbFrontendOf,
  sameBackend,
  sameFrontend,
} from './plan.js';
import {
  type BackendKey,
  backendKeyOf,
  type DesiredBackend,
  type DesiredFrontend,
  type DesiredService,
  type ServiceKey,
} from './types.js';

/** What the reconciler needs of the maps (LbMaps implements it; unit tests use a fake). */
export interface LbWriter {
  upsertBackends(backends: LbBackend[]): void;
  removeBackends(ids: number[]): void;
  updateFrontends(changes: Array<{ previous: LbFrontend | undefined; next: LbFrontend | undefined }>): void;
  removeReverseNat(indexes: number[]): void;
  frontend(f: FrontendAddress): LbFrontend | undefined;
  backend(id: number): LbBackend | undefined;
}

/** What the maps held when the agent started. */
export interface LbReadBack {
  frontends: LbFrontend[];
  backends: LbBackend[];
  reverseNatIndexes: number[];
}

export interface ServiceFailure {
  service: ServiceKey;
  code: string;
  error: string;
  /** ms since the epoch of the first failure in a row. */
  since: number;
  attempts: number;
}

export interface SyncReport {
  kind: 'full' | 'incremental';
  /** ms since the epoch. */
  startedAt: number;
  durationSeconds: number;
  /** Services recomputed. */
  services: number;
  frontendsWritten: number;
  frontendsDeleted: number;
  backendsWritten: number;
  backendsDeleted: number;
  /** Services that could not be applied in this sync. */
  failed: number;
}

/** A frontend as the agent programmed it, with the Service it belongs to (for display). */
export interface ProgrammedFrontend {
  frontend: LbFrontend;
  service?: ServiceKey;
  portName?: string;
}

interface Owner {
  service: ServiceKey;
  portName: string;
}

interface FrontendWrite {
  service: ServiceKey;
  name: string;
  next: LbFrontend;
}

function errorCode(err: unknown): string {
  return err instanceof WeftError ? err.code : 'WEFT_ERR_INTERNAL';
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function idsOf(f: LbFrontend): Set<number> {
  const ids = new Set(f.backends);
  for (const id of f.internalBackends ?? []) ids.add(id);
  return ids;
}

/** Calls `fn` once per distinct backend id `f` lists (both scopes), without a Set for short lists. */
function forEachId(f: LbFrontend, fn: (id: number) => void): void {
  const ext = f.backends;
  const int = f.internalBackends;
  if (ext.length + (int?.length ?? 0) > 16) {
    for (const id of idsOf(f)) fn(id);
    return;
  }
  for (let i = 0; i < ext.length; i++) {
    const id = ext[i]!;
    if (ext.indexOf(id) === i) fn(id);
  }
  if (!int) return;
  for (let i = 0; i < int.length; i++) {
    const id = int[i]!;
    if (int.indexOf(id) === i && !ext.includes(id)) fn(id);
  }
}

/** Who claims a frontend: one Service (nearly always), or several (a conflict). */
type Claimants = ServiceKey | Set<ServiceKey>;

function lowest(c: Claimants): ServiceKey {
  if (typeof c === 'string') return c;
  let best: ServiceKey | undefined;
  for (const k of c) if (best === undefined || k < best) best = k;
  return best!;
}

export class Reconciler {
  private readonly nodeName: string;
  private readonly cache: ServiceCache;
  private readonly lb: LbWriter;
  private readonly log: Logger;

  // What the maps hold.
  private readonly frontends = new Map<string, LbFrontend>();
  private readonly backends = new Map<number, LbBackend>();
  /** Backend id → number of frontends in the maps listing it. */
  private readonly refs = new Map<number, number>();

  // Who wants what.
  private readonly claims = new Map<string, Claimants>();
  private readonly claimedBy = new Map<ServiceKey, string[]>();
  private readonly owner = new Map<string, Owner>();
  /** The frontends each Service owns (wins the claim to), as last planned. */
  private readonly ownedBy = new Map<ServiceKey, readonly string[]>();
  private readonly wanted = new Map<ServiceKey, { backends: BackendKey[]; local4: string[] }>();
  private readonly backendWants = new Map<BackendKey, number>();
  private readonly local4 = new Map<string, number>();
  private local4Changed = false;
  /** loadBalancerSourceRanges of the IPv4 frontends in the maps, by reverse NAT index. */
  private readonly ranges4 = new Map<number, readonly string[]>();
  private ranges4Changed = false;

  private readonly backendIds = backendIdAllocator();
  private readonly revNats = revNatAllocator();
  private readonly failedServices = new Map<ServiceKey, ServiceFailure>();
  /** Backend keys and frontend names nothing wants any more: their ids may go back. */
  private readonly unwantedBackends = new Set<BackendKey>();
  private readonly unclaimedNames = new Set<string>();
  private orphanRevNats: number[] = [];
  private syncs = 0;

  constructor(opts: { nodeName: string; cache: ServiceCache; lb: LbWriter; log: Logger }) {
    this.nodeName = opts.nodeName;
    this.cache = opts.cache;
    this.lb = opts.lb;
    this.log = opts.log;
  }

  /**
   * Takes what the maps hold (read once, on start): the mirror, and the seeds of both
   * allocators, so every backend and frontend keeps its id. Writes nothing.
   */
  restore(state: LbReadBack): void {
    for (const f of state.frontends) this.setFrontend(frontendId(f), f);
    for (const b of state.backends) this.backends.set(b.id, b);
    const rejectedBackends = this.backendIds.seed(state.backends.map((b) => [backendKeyOf(b), b.id]));
    const rejectedRevNats = this.revNats.seed(state.frontends.map((f) => [frontendId(f), f.revNatIndex]));
    const used = new Set(state.frontends.map((f) => f.revNatIndex));
    this.orphanRevNats = state.reverseNatIndexes.filter((i) => !used.has(i));
    if (rejectedBackends.length > 0 || rejectedRevNats.length > 0) {
      this.log.warn(
        { duplicateBackendIds: rejectedBackends.length, duplicateRevNatIndexes: rejectedRevNats.length },
        'maps hold duplicate ids; the first full sync replaces them',
      );
    }
  }

  /**
   * Applies the dirty Services (full: every Service, and removes whatever the maps hold that no
   * Service wants). Synchronous: nothing else touches the maps or the cache meanwhile.
   */
  sync(full: boolean): SyncReport {
    const t0 = performance.now();
    const startedAt = Date.now();
    const keys = this.cache.takeDirty();
    if (full) {
      for (const k of this.cache.serviceKeys()) keys.add(k);
      for (const k of this.claimedBy.keys()) keys.add(k);
      for (const k of this.failedServices.keys()) keys.add(k);
    }
    const report: SyncReport = {
      kind: full ? 'full' : 'incremental',
      startedAt,
      durationSeconds: 0,
      services: 0,
      frontendsWritten: 0,
      frontendsDeleted: 0,
      backendsWritten: 0,
      backendsDeleted: 0,
      failed: 0,
    };
    const run = new SyncRun(this, report);
    if (full && this.orphanRevNats.length > 0) {
      run.try('orphans', () => this.lb.removeReverseNat(this.orphanRevNats));
      this.orphanRevNats = [];
    }
    const desired = this.recompute(keys);
    report.services = desired.size;
    run.plan(desired, full);
    run.execute();
    for (const key of desired.keys()) {
      const failure = run.failures.get(key);
      if (!failure) {
        this.failedServices.delete(key);
        continue;
      }
      const had = this.failedServices.get(key);
      this.failedServices.set(key, {
        service: key,
        code: failure.code,
        error: failure.error,
        since: had?.since ?? startedAt,
        attempts: (had?.attempts ?? 0) + 1,
      });
    }
    report.failed = run.failures.size;
    report.durationSeconds = (performance.now() - t0) / 1000;
    this.syncs++;
    return report;
  }

  /** Services whose desired state is not (all) in the maps, and why. */
  failures(): ServiceFailure[] {
    return [...this.failedServices.values()];
  }

  /** Marks the failed Services dirty, for a retry. */
  retryFailed(): number {
    for (const key of this.failedServices.keys()) this.cache.markDirty(key);
    return this.failedServices.size;
  }

  /** Every frontend in the maps, with its Service. */
  programmed(): ProgrammedFrontend[] {
    const out: ProgrammedFrontend[] = [];
    for (const [name, frontend] of this.frontends) {
      const o = this.owner.get(name);
      out.push(o ? { frontend, service: o.service, portName: o.portName } : { frontend });
    }
    return out;
  }

  backend(id: number): LbBackend | undefined {
    return this.backends.get(id);
  }

  /** Entries the agent keeps in its maps, counted from the mirror (no map walk). */
  stats(): {
    services: number;
    frontends: { 4: number; 6: number };
    serviceEntries: { 4: number; 6: number };
    backends: { 4: number; 6: number };
    affinityMatch: number;
  } {
    const frontends = { 4: 0, 6: 0 };
    const serviceEntries = { 4: 0, 6: 0 };
    const backends = { 4: 0, 6: 0 };
    let affinityMatch = 0;
    for (const f of this.frontends.values()) {
      const fam = f.address.includes(':') ? 6 : 4;
      frontends[fam]++;
      serviceEntries[fam] += 1 + f.backends.length;
      if (f.internalBackends) serviceEntries[fam] += 1 + f.internalBackends.length;
      if (f.affinityTimeoutSeconds !== undefined) affinityMatch += idsOf(f).size;
    }
    for (const b of this.backends.values()) backends[b.address.includes(':') ? 6 : 4]++;
    return { services: this.ownedBy.size, frontends, serviceEntries, backends, affinityMatch };
  }

  /**
   * The loadBalancerSourceRanges of the IPv4 frontends in the maps (for the NodePort programs,
   * which check them), and whether they changed since the last call.
   */
  sourceRanges4(): { byRevNat: ReadonlyMap<number, readonly string[]>; changed: boolean } {
    const changed = this.ranges4Changed;
    this.ranges4Changed = false;
    return { byRevNat: this.ranges4, changed };
  }

  /** IPv4 addresses of this node's backends (for the NodePort programs), and whether they changed. */
  localIPv4Backends(): { addresses: string[]; changed: boolean } {
    const changed = this.local4Changed;
    this.local4Changed = false;
    return { addresses: [...this.local4.keys()].sort(), changed };
  }

  get syncCount(): number {
    return this.syncs;
  }

  // ---- state kept by SyncRun ----------------------------------------------------------------

  /** @internal */ mirrorFrontend(name: string): LbFrontend | undefined {
    return this.frontends.get(name);
  }
  /** @internal */ mirrorBackend(id: number): LbBackend | undefined {
    return this.backends.get(id);
  }
  /** @internal */ frontendNames(): IterableIterator<string> {
    return this.frontends.keys();
  }
  /** @internal */ backendIdsInMaps(): IterableIterator<number> {
    return this.backends.keys();
  }
  /** @internal */ refCount(id: number): number {
    return this.refs.get(id) ?? 0;
  }
  /** @internal */ get writer(): LbWriter {
    return this.lb;
  }
  /** @internal */ get logger(): Logger {
    return this.log;
  }
  /** @internal */ get ids() {
    return { backends: this.backendIds, revNats: this.revNats };
  }
  /** @internal */ winner(name: string): ServiceKey | undefined {
    const c = this.claims.get(name);
    return c === undefined ? undefined : lowest(c);
  }
  /** @internal */ hasClaims(name: string): boolean {
    return this.claims.has(name);
  }
  /** @internal */ ownedNames(key: ServiceKey): readonly string[] {
    return this.ownedBy.get(key) ?? [];
  }
  /** @internal */ backendWanted(key: BackendKey): boolean {
    return (this.backendWants.get(key) ?? 0) > 0;
  }
  /** @internal The backend keys and frontend names that lost their last user, forgetting them. */
  takeUnwanted(): { backends: BackendKey[]; names: string[] } {
    const out = { backends: [...this.unwantedBackends], names: [...this.unclaimedNames] };
    this.unwantedBackends.clear();
    this.unclaimedNames.clear();
    return out;
  }

  /** @internal Records what the maps now hold for one frontend. */
  setFrontend(name: string, f: LbFrontend | undefined, zeroed?: Set<number>): void {
    const old = this.frontends.get(name);
    if (old) {
      forEachId(old, (id) => {
        const n = (this.refs.get(id) ?? 1) - 1;
        if (n <= 0) {
          this.refs.delete(id);
          zeroed?.add(id);
        } else this.refs.set(id, n);
      });
    }
    if (f) {
      this.frontends.set(name, f);
      forEachId(f, (id) => this.refs.set(id, (this.refs.get(id) ?? 0) + 1));
    } else {
      this.frontends.delete(name);
    }
    if (old?.sourceRanges?.length || f?.sourceRanges?.length) this.trackRanges(old, f);
  }

  private trackRanges(old: LbFrontend | undefined, f: LbFrontend | undefined): void {
    if (old && !old.address.includes(':') && this.ranges4.delete(old.revNatIndex)) this.ranges4Changed = true;
    if (f?.sourceRanges?.length && !f.address.includes(':')) {
      this.ranges4.set(f.revNatIndex, f.sourceRanges);
      this.ranges4Changed = true;
    }
  }

  /** @internal */ setBackend(id: number, b: LbBackend | undefined): void {
    if (b) this.backends.set(id, b);
    else this.backends.delete(id);
  }

  /**
   * @internal Records the frontends a Service now owns (`names`, with their port names), and
   * forgets the owner of those it no longer does (unless another Service took them over).
   */
  setOwned(key: ServiceKey, owned: ReadonlyArray<readonly [string, string]>): string[] {
    const before = this.ownedBy.get(key);
    // Names are unique per Service (desiredService gives each frontend once).
    const names = new Array<string>(owned.length);
    for (let i = 0; i < owned.length; i++) {
      const [name, portName] = owned[i]!;
      names[i] = name;
      const had = this.owner.get(name);
      if (!had || had.service !== key || had.portName !== portName)
        this.owner.set(name, { service: key, portName });
    }
    const dropped: string[] = [];
    if (before && before.length > 0) {
      const now = names.length > 16 ? new Set(names) : undefined;
      for (const name of before) {
        if (now ? now.has(name) : names.includes(name)) continue;
        dropped.push(name);
        if (this.owner.get(name)?.service === key) this.owner.delete(name);
      }
    }
    if (names.length > 0) this.ownedBy.set(key, names);
    else this.ownedBy.delete(key);
    return dropped;
  }

  // ---- desired state -----------------------------------------------------------------------

  /**
   * Desired state of the dirty Services, and of every Service that shares a frontend with one
   * of them (the lowest namespace/name owns a frontend two Services both claim).
   */
  private recompute(keys: Set<ServiceKey>): Map<ServiceKey, DesiredService> {
    const desired = new Map<ServiceKey, DesiredService>();
    const queue = [...keys].sort();
    while (queue.length > 0) {
      const key = queue.pop()!;
      if (desired.has(key)) continue;
      const svc = this.cache.service(key);
      const d: DesiredService = svc
        ? desiredService(svc, this.cache.slicesOf(key), this.cache.allNodes(), this.nodeName)
        : { key, frontends: [], backends: new Map() };
      desired.set(key, d);
      const names = d.frontends.map((f) => f.name);
      const before = this.claimedBy.get(key) ?? [];
      const changed = this.updateClaims(key, before, names);
      if (names.length > 0) this.claimedBy.set(key, names);
      else this.claimedBy.delete(key);
      for (const name of changed) {
        const c = this.claims.get(name);
        if (c === undefined) continue;
        if (typeof c === 'string') {
          if (!desired.has(c)) queue.push(c);
        } else for (const other of c) if (!desired.has(other)) queue.push(other);
      }
      this.trackWanted(key, d);
    }
    return desired;
  }

  /** Moves `key`'s claims from `before` to `names`; returns the frontends whose claimants changed. */
  private updateClaims(key: ServiceKey, before: readonly string[], names: readonly string[]): string[] {
    if (before.length === names.length && before.every((n, i) => n === names[i])) return [];
    if (before.length === 0) {
      // A Service seen for the first time (every Service, on a start): only claims to add.
      for (const name of names) {
        const c = this.claims.get(name);
        if (c === undefined) this.claims.set(name, key);
        else if (typeof c === 'string') this.claims.set(name, new Set([c, key]));
        else c.add(key);
      }
      return [...names];
    }
    const now = new Set(names);
    const had = new Set(before);
    const changed: string[] = [];
    for (const name of before) {
      if (now.has(name)) continue;
      const c = this.claims.get(name);
      if (c === key) {
        this.claims.delete(name);
        this.unclaimedNames.add(name);
      } else if (c !== undefined && typeof c !== 'string') {
        c.delete(key);
        if (c.size === 1) this.claims.set(name, [...c][0]!);
      }
      changed.push(name);
    }
    for (const name of names) {
      if (had.has(name)) continue;
      const c = this.claims.get(name);
      if (c === undefined) this.claims.set(name, key);
      else if (typeof c === 'string') this.claims.set(name, new Set([c, key]));
      else c.add(key);
      changed.push(name);
    }
    return changed;
  }

  private trackWanted(key: ServiceKey, d: DesiredService): void {
    const before = this.wanted.get(key);
    const backends = new Array<BackendKey>(d.backends.size);
    const local4: string[] = [];
    let i = 0;
    for (const [k, b] of d.backends) {
      backends[i++] = k;
      this.backendWants.set(k, (this.backendWants.get(k) ?? 0) + 1);
      if (b.local && !b.address.includes(':')) local4.push(b.address);
    }
    for (const a of local4) {
      const n = this.local4.get(a) ?? 0;
      if (n === 0) this.local4Changed = true;
      this.local4.set(a, n + 1);
    }
    if (before) {
      for (const k of before.backends) {
        const n = (this.backendWants.get(k) ?? 1) - 1;
        if (n <= 0) {
          this.backendWants.delete(k);
          this.unwantedBackends.add(k);
        } else this.backendWants.set(k, n);
      }
      for (const a of before.local4) {
        const n = (this.local4.get(a) ?? 1) - 1;
        if (n <= 0) {
          this.local4.delete(a);
          this.local4Changed = true;
        } else this.local4.set(a, n);
      }
    }
    if (backends.length > 0 || local4.length > 0) this.wanted.set(key, { backends, local4 });
    else this.wanted.delete(key);
  }
}

/** One sync's plan and its execution: what to write, what to delete, who failed. */
class SyncRun {
  readonly failures = new Map<ServiceKey, { code: string; error: string }>();
  private readonly r: Reconciler;
  private readonly report: SyncReport;
  private readonly deletes: Array<{ service?: ServiceKey; name: string; previous: LbFrontend }> = [];
  private readonly writes: FrontendWrite[] = [];
  private readonly backendWrites = new Map<number, { backend: LbBackend; services: ServiceKey[] }>();
  /** State of every frontend this run touches, before it touched it (for a rollback). */
  private readonly before = new Map<string, LbFrontend | undefined>();
  /** Backend ids that lost their last listing frontend in this run. */
  private readonly zeroed = new Set<number>();
  private readonly touchedNames = new Set<string>();
  private readonly touchedBackendKeys = new Set<BackendKey>();
  private full = false;

  constructor(r: Reconciler, report: SyncReport) {
    this.r = r;
    this.report = report;
  }

  fail(service: ServiceKey, err: unknown): void {
    if (!this.failures.has(service))
      this.failures.set(service, { code: errorCode(err), error: errorText(err) });
  }

  /** Runs a datapath call whose failure concerns nobody in particular: logged, not thrown. */
  try(what: string, fn: () => void): boolean {
    try {
      fn();
      return true;
    } catch (err) {
      this.r.logger.error({ err: errorText(err), code: errorCode(err), step: what }, 'map update failed');
      return false;
    }
  }

  plan(desired: Map<ServiceKey, DesiredService>, full: boolean): void {
    this.full = full;
    const { backends: backendIds, revNats } = this.r.ids;
    for (const key of [...desired.keys()].sort()) {
      const d = desired.get(key)!;
      const effective: DesiredFrontend[] = [];
      for (const f of d.frontends) if (this.r.winner(f.name) === key) effective.push(f);
      const owned: Array<readonly [string, string]> = [];
      const writes: FrontendWrite[] = [];
      const backendWrites: LbBackend[] = [];
      const resolve = (list: BackendKey[]): number[] => {
        const ids = new Array<number>(list.length);
        for (let i = 0; i < list.length; i++) {
          const bk = list[i]!;
          const id = backendIds.allocate(bk);
          const want = d.backends.get(bk) as DesiredBackend;
          if (id === undefined) {
            throw new WeftError(
              'WEFT_ERR_IDS_EXHAUSTED',
              `no free backend id for ${want.address}:${want.port}/${want.protocol}`,
            );
          }
          if (!backendIs(this.r.mirrorBackend(id), id, want)) backendWrites.push(lbBackendOf(id, want));
          ids[i] = id;
        }
        return ids;
      };
      try {
        for (const f of effective) {
          const name = f.name;
          owned.push([name, f.portName]);
          const revNat = revNats.allocate(name);
          if (revNat === undefined) {
            throw new WeftError(
              'WEFT_ERR_IDS_EXHAUSTED',
              `no free reverse NAT index for ${name}: all 65535 are in use; remove Services`,
            );
          }
          const previous = this.r.mirrorFrontend(name);
          const ext = assignSlots(previous?.backends, resolve(f.backends));
          const int = f.internalBackends
            ? assignSlots(previous?.internalBackends, resolve(f.internalBackends))
            : undefined;
          const next = lbFrontendOf(f, revNat, ext, int);
          if (!sameFrontend(previous, next)) writes.push({ service: key, name, next });
        }
      } catch (err) {
        this.fail(key, err);
        continue;
      }
      this.writes.push(...writes);
      for (const b of backendWrites) {
        const have = this.backendWrites.get(b.id);
        if (!have) this.backendWrites.set(b.id, { backend: b, services: [key] });
        else if (!have.services.includes(key)) have.services.push(key);
      }
      for (const name of this.r.setOwned(key, owned)) {
        this.touchedNames.add(name);
        // Another Service that claims it takes it over (it is in this run: claims changed).
        if (this.r.hasClaims(name)) continue;
        const previous = this.r.mirrorFrontend(name);
        if (previous) this.deletes.push({ service: key, name, previous });
      }
    }
    if (full) {
      const deleting = new Set(this.deletes.map((d) => d.name));
      for (const name of this.r.frontendNames()) {
        if (this.r.hasClaims(name) || deleting.has(name)) continue;
        this.touchedNames.add(name);
        this.deletes.push({ name, previous: this.r.mirrorFrontend(name)! });
      }
    }
  }

  execute(): void {
    this.deleteFrontends();
    this.writeBackends();
    this.writeFrontends();
    this.deleteBackends();
    this.releaseIds();
  }

  private deleteFrontends(): void {
    if (this.deletes.length === 0) return;
    for (const d of this.deletes) this.remember(d.name);
    try {
      this.r.writer.updateFrontends(this.deletes.map((d) => ({ previous: d.previous, next: undefined })));
      for (const d of this.deletes) this.r.setFrontend(d.name, undefined, this.zeroed);
      this.report.frontendsDeleted += this.deletes.length;
    } catch (err) {
      this.r.logger.error({ err: errorText(err), code: errorCode(err) }, 'removing frontends failed');
      for (const d of this.deletes) {
        const now = this.readBack(d.previous);
        if (now) this.failures.set(d.service ?? '(orphans)', { code: errorCode(err), error: errorText(err) });
        else this.report.frontendsDeleted++;
      }
    }
  }

  private writeBackends(): void {
    if (this.backendWrites.size === 0) return;
    const list = [...this.backendWrites.values()];
    try {
      this.r.writer.upsertBackends(list.map((w) => w.backend));
      for (const w of list) this.r.setBackend(w.backend.id, w.backend);
      this.report.backendsWritten += list.length;
    } catch (err) {
      this.r.logger.error({ err: errorText(err), code: errorCode(err) }, 'writing backends failed');
      for (const w of list) {
        const now = this.r.writer.backend(w.backend.id);
        this.r.setBackend(w.backend.id, now);
        if (sameBackend(now, w.backend)) this.report.backendsWritten++;
        else for (const s of w.services) this.fail(s, err);
      }
    }
  }

  private writeFrontends(): void {
    // A Service goes all or nothing: drop every write of a Service that already failed.
    const writes = this.writes.filter((w) => !this.failures.has(w.service));
    if (writes.length === 0) return;
    for (const w of writes) {
      forEachId(w.next, (id) => {
        if (!this.r.mirrorBackend(id)) {
          this.fail(
            w.service,
            new WeftError('WEFT_ERR_MAP_FULL', `backend ${id} of ${w.name} is not in the maps`),
          );
        }
      });
    }
    const ready = writes.filter((w) => !this.failures.has(w.service));
    for (const w of ready) this.remember(w.name);
    try {
      this.apply(ready);
      return;
    } catch (err) {
      this.r.logger.warn(
        { err: errorText(err), code: errorCode(err), frontends: ready.length },
        'batch of frontend changes did not fit; applying Service by Service',
      );
      for (const w of ready) this.readBack(w.next);
    }
    // The slow path: each Service on its own, rolled back to where it stood if it does not fit.
    const byService = new Map<ServiceKey, FrontendWrite[]>();
    for (const w of ready) {
      const list = byService.get(w.service) ?? [];
      list.push(w);
      byService.set(w.service, list);
    }
    for (const [service, list] of [...byService].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const pending = list.filter((w) => !sameFrontend(this.r.mirrorFrontend(w.name), w.next));
      try {
        this.apply(pending);
      } catch (err) {
        this.fail(service, err);
        for (const w of pending) this.readBack(w.next);
        const rollback = list
          .filter((w) => !sameFrontend(this.r.mirrorFrontend(w.name), this.before.get(w.name)))
          .map((w) => ({ name: w.name, address: w.next, next: this.before.get(w.name) }));
        try {
          this.r.writer.updateFrontends(
            rollback.map((x) => ({ previous: this.r.mirrorFrontend(x.name), next: x.next })),
          );
          for (const x of rollback) this.r.setFrontend(x.name, x.next, this.zeroed);
        } catch (rollbackErr) {
          this.r.logger.error(
            { err: errorText(rollbackErr), service },
            'rolling a Service back to its previous state failed',
          );
          for (const x of rollback) this.readBack(x.address);
        }
      }
    }
    this.report.frontendsWritten = ready.filter((w) =>
      sameFrontend(this.r.mirrorFrontend(w.name), w.next),
    ).length;
  }

  private apply(writes: FrontendWrite[]): void {
    if (writes.length === 0) return;
    this.r.writer.updateFrontends(
      writes.map((w) => ({ previous: this.r.mirrorFrontend(w.name), next: w.next })),
    );
    for (const w of writes) this.r.setFrontend(w.name, w.next, this.zeroed);
    this.report.frontendsWritten += writes.length;
  }

  private deleteBackends(): void {
    const candidates = new Set(this.zeroed);
    // Written for a Service whose frontends then did not fit: nothing lists them.
    if (this.failures.size > 0) for (const id of this.backendWrites.keys()) candidates.add(id);
    const ids = [...candidates].filter((id) => this.r.refCount(id) === 0 && this.r.mirrorBackend(id));
    if (this.full) {
      for (const id of this.r.backendIdsInMaps()) {
        if (this.r.refCount(id) === 0 && !candidates.has(id)) ids.push(id);
      }
    }
    if (ids.length === 0) return;
    try {
      this.r.writer.removeBackends(ids);
      for (const id of ids) {
        const b = this.r.mirrorBackend(id)!;
        this.touchedBackendKeys.add(backendKeyOf(b));
        this.r.setBackend(id, undefined);
      }
      this.report.backendsDeleted += ids.length;
    } catch (err) {
      this.r.logger.error({ err: errorText(err), code: errorCode(err) }, 'removing backends failed');
      for (const id of ids) this.r.setBackend(id, this.r.writer.backend(id));
    }
  }

  /** Ids nothing wants and the maps do not hold go back to their allocator. */
  private releaseIds(): void {
    const { backends: backendIds, revNats } = this.r.ids;
    const unwanted = this.r.takeUnwanted();
    for (const name of unwanted.names) this.touchedNames.add(name);
    for (const key of unwanted.backends) this.touchedBackendKeys.add(key);
    for (const name of this.touchedNames) {
      if (!this.r.hasClaims(name) && !this.r.mirrorFrontend(name)) revNats.release(name);
    }
    for (const key of this.touchedBackendKeys) {
      const id = backendIds.get(key);
      if (id === undefined) continue;
      if (!this.r.backendWanted(key) && !this.r.mirrorBackend(id)) backendIds.release(key);
    }
  }

  private remember(name: string): void {
    if (!this.before.has(name)) this.before.set(name, this.r.mirrorFrontend(name));
  }

  /** After a failed write: what the maps really hold for this frontend now. */
  private readBack(f: FrontendAddress): LbFrontend | undefined {
    const name = frontendId(f);
    let now: LbFrontend | undefined;
    try {
      now = this.r.writer.frontend(f);
      // The LB maps hold only the flag of loadBalancerSourceRanges; the NodePort maps still
      // hold the ranges the mirror knew (the agent writes them after a sync).
      const had = this.r.mirrorFrontend(name);
      if (now?.sourceRanges?.length === 0 && had?.sourceRanges && had.revNatIndex === now.revNatIndex) {
        now.sourceRanges = had.sourceRanges;
      }
    } catch (err) {
      this.r.logger.error({ err: errorText(err), frontend: name }, 'reading a frontend back failed');
      now = this.r.mirrorFrontend(name);
    }
    this.r.setFrontend(name, now, this.zeroed);
    return now;
  }
}
