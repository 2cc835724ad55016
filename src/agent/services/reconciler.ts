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
import { backendIdSpace, revNatSpace } from './allocator.js';
import type { ServiceCache } from './cache.js';
import { desiredService } from './desired.js';
import {
  backendIs,
  frontendId,
  frontendIs,
  lbBackendOf,
  lbFrontendOf,
  sameBackend,
  sameFrontend,
  slotsFor,
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

interface FrontendWrite {
  service: ServiceKey;
  frontend: FrontendRec;
  /**
   * What the maps held when it was planned, which is also what they held before this run
   * touched it (for a rollback): one Service writes a frontend at most once per run, and no
   * deletion touches a frontend someone claims.
   */
  previous: LbFrontend | undefined;
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

/**
 * The distinct backend ids `f` lists (both scopes): its `backends` list itself when that is all
 * of them, each once (nearly always: no closure or copy per frontend on a sync's hot path).
 */
function distinctIds(f: LbFrontend): readonly number[] {
  const ext = f.backends;
  const int = f.internalBackends;
  if (int === undefined && ext.length <= 16) {
    let distinct = true;
    for (let i = 1; i < ext.length && distinct; i++) distinct = ext.lastIndexOf(ext[i]!, i - 1) === -1;
    if (distinct) return ext;
  }
  return [...idsOf(f)];
}

/** Who claims a frontend: one Service (nearly always), or several (a conflict). */
type Claimants = ServiceKey | Set<ServiceKey>;

function lowest(c: Claimants): ServiceKey {
  if (typeof c === 'string') return c;
  let best: ServiceKey | undefined;
  for (const k of c) if (best === undefined || k < best) best = k;
  return best!;
}

/** The empty list every record without frontends, backends or local addresses shares. */
const none: readonly never[] = [];

/**
 * One frontend, by name: who wants it, who has it, its reverse NAT index and what the maps
 * hold for it. Dropped when nothing refers to it any more.
 */
class FrontendRec {
  readonly name: string;
  /** The Services whose desired state has it (the lowest namespace/name owns it). */
  claimants: Claimants | undefined;
  /** The Service that owns it (won the claim to it when last planned), and the port it serves. */
  owner: ServiceKey | undefined;
  portName: string;
  /** Services whose owned list holds it: its owner, and one that failed before it let go. */
  owners: number;
  /** Its reverse NAT index; 0: none. */
  revNat: number;
  /** What the maps hold. */
  mirror: LbFrontend | undefined;
  /** When the maps took it (a count): the order of programmed() and of a full sync's deletions. */
  held: number;

  constructor(name: string) {
    this.name = name;
    this.claimants = undefined;
    this.owner = undefined;
    this.portName = '';
    this.owners = 0;
    this.revNat = 0;
    this.mirror = undefined;
    this.held = 0;
  }
}

/**
 * One backend: its key and id, how many Services want it, how many frontends in the maps list
 * it, and what the maps hold under its id. Dropped when nothing refers to it any more.
 */
class BackendRec {
  /**
   * undefined: no key has the id any more (or none ever had it: read back twice, or listed but
   * not held), and the record stays only for what the maps still hold or list under the id.
   */
  key: BackendKey | undefined;
  /** 0: none yet (a key's only; a record under an id keeps it). */
  id: number;
  wants: number;
  refs: number;
  mirror: LbBackend | undefined;
  /** When the maps took it (a count): the order of a full sync's deletions. */
  held: number;
  /** Its place in the backend writes of the sync that last planned it (checked against them: no reset). */
  pending: number;

  constructor(key: BackendKey | undefined, id: number) {
    this.key = key;
    this.id = id;
    this.wants = 0;
    this.refs = 0;
    this.mirror = undefined;
    this.held = 0;
    this.pending = 0;
  }
}

/** One Service: what its desired state claims and wants, and what it owns. */
class ServiceRec {
  readonly key: ServiceKey;
  /** Its desired frontends, in their order. */
  claimed: readonly FrontendRec[];
  /** The frontends it owns (wins the claim to), as last planned. */
  owned: readonly FrontendRec[];
  /** Its desired backends, and the addresses of the local IPv4 ones. */
  wanted: readonly BackendRec[];
  local4: readonly string[];
  /** The sync that last recomputed it. */
  run: number;

  constructor(key: ServiceKey) {
    this.key = key;
    this.claimed = none;
    this.owned = none;
    this.wanted = none;
    this.local4 = none;
    this.run = 0;
  }
}

/** The Services one sync recomputed, in that order, and their desired state. */
interface Recomputed {
  services: ServiceRec[];
  desired: DesiredService[];
}

function sameList<T>(a: readonly T[], b: readonly T[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Whether `recs` are the backends of `wanted`, in its order. */
function sameBackends(recs: readonly BackendRec[], wanted: readonly DesiredBackend[]): boolean {
  if (recs.length !== wanted.length) return false;
  for (let i = 0; i < recs.length; i++) if (recs[i]!.key !== wanted[i]!.key) return false;
  return true;
}

/** The addresses of the local IPv4 backends of `d`, or none. */
function local4Of(d: DesiredService): readonly string[] {
  const backends = d.backends;
  let n = 0;
  for (let j = 0; j < backends.length; j++) {
    const b = backends[j]!;
    if (b.local && !b.address.includes(':')) n++;
  }
  if (n === 0) return none;
  const out = new Array<string>(n);
  let i = 0;
  for (let j = 0; j < backends.length; j++) {
    const b = backends[j]!;
    if (b.local && !b.address.includes(':')) out[i++] = b.address;
  }
  return out;
}

/**
 * The order to plan in: ascending namespace/name. recompute takes the dirty Services in
 * descending order, so backwards is ascending, unless Services that share a frontend with one
 * of them came in between: then they are sorted.
 */
function ascending(services: readonly ServiceRec[]): number[] {
  const n = services.length;
  const order = new Array<number>(n);
  for (let i = 0; i < n; i++) order[i] = n - 1 - i;
  for (let i = 1; i < n; i++) {
    if (services[n - i]!.key < services[n - 1 - i]!.key) continue;
    return order.sort((a, b) => (services[a]!.key < services[b]!.key ? -1 : 1));
  }
  return order;
}

export class Reconciler {
  private readonly nodeName: string;
  private readonly cache: ServiceCache;
  private readonly lb: LbWriter;
  private readonly log: Logger;

  // What the maps hold and who wants what: one record per frontend, backend and Service.
  private readonly frontends = new Map<string, FrontendRec>();
  /** Frontends by reverse NAT index (a u16: an array, grown as far as the highest). */
  private readonly byRevNat: Array<FrontendRec | undefined> = [];
  /** Backends by key: those wanted or with an id. */
  private readonly backends = new Map<BackendKey, BackendRec>();
  /** Backends by id: those with one, and ids the maps hold or list that no key has. */
  private readonly backendsById = new Map<number, BackendRec>();
  private readonly services = new Map<ServiceKey, ServiceRec>();
  /** Services that own a frontend. */
  private owning = 0;
  private readonly local4 = new Map<string, number>();
  private local4Changed = false;
  /** loadBalancerSourceRanges of the IPv4 frontends in the maps, by reverse NAT index. */
  private readonly ranges4 = new Map<number, readonly string[]>();
  private ranges4Changed = false;

  private readonly backendIds = backendIdSpace();
  private readonly revNats = revNatSpace();
  /** The record backendIdTaken last looked at (backendId's next step wants it too). */
  private probed: BackendRec | undefined;
  private readonly backendIdTaken = (id: number) => {
    this.probed = this.backendsById.get(id);
    return this.probed?.key !== undefined;
  };
  private readonly revNatTaken = (i: number) => this.byRevNat[i] !== undefined;
  private readonly failedServices = new Map<ServiceKey, ServiceFailure>();
  /** Backends and frontends that lost their last user: their ids may go back. */
  private unwantedBackends: BackendRec[] = [];
  private unclaimedNames: FrontendRec[] = [];
  private orphanRevNats: number[] = [];
  private runs = 0;
  /** The counts behind FrontendRec.held and BackendRec.held. */
  private frontendsHeld = 0;
  private backendsHeld = 0;
  private syncs = 0;

  constructor(opts: { nodeName: string; cache: ServiceCache; lb: LbWriter; log: Logger }) {
    this.nodeName = opts.nodeName;
    this.cache = opts.cache;
    this.lb = opts.lb;
    this.log = opts.log;
  }

  /**
   * Takes what the maps hold (read once, on start): the mirror, and the seeds of both id
   * spaces, so every backend and frontend keeps its id. Writes nothing.
   */
  restore(state: LbReadBack): void {
    // Backends first: the records by id then come in the maps' order.
    for (const b of state.backends) this.setBackend(this.backendAt(b.id), b);
    // A key seen twice keeps its first id and an id seen twice its first key.
    const backendIds: number[] = [];
    let rejectedBackends = 0;
    for (const b of state.backends) {
      const key = backendKeyOf(b);
      const rec = this.backendsById.get(b.id)!;
      if (!this.backendIds.holds(b.id) || this.backends.has(key) || rec.key !== undefined) {
        rejectedBackends++;
        continue;
      }
      rec.key = key;
      this.backends.set(key, rec);
      backendIds.push(b.id);
    }
    this.backendIds.seed(backendIds);
    const revNats: number[] = [];
    let rejectedRevNats = 0;
    for (const f of state.frontends) {
      const rec = this.frontendRec(frontendId(f));
      this.setFrontend(rec, f);
      const i = f.revNatIndex;
      if (!this.revNats.holds(i) || rec.revNat !== 0 || this.byRevNat[i] !== undefined) {
        rejectedRevNats++;
        continue;
      }
      this.giveRevNat(rec, i);
      revNats.push(i);
    }
    this.revNats.seed(revNats);
    const used = new Set(state.frontends.map((f) => f.revNatIndex));
    this.orphanRevNats = state.reverseNatIndexes.filter((i) => !used.has(i));
    if (rejectedBackends > 0 || rejectedRevNats > 0) {
      this.log.warn(
        { duplicateBackendIds: rejectedBackends, duplicateRevNatIndexes: rejectedRevNats },
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
      this.cache.addServiceKeysTo(keys);
      // forEach, not for-of: the first sync runs cold, where an iterator allocates per step.
      this.services.forEach((s) => {
        if (s.claimed.length > 0) keys.add(s.key);
      });
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
    const recomputed = this.recompute(keys);
    report.services = recomputed.services.length;
    run.plan(recomputed, full);
    run.execute();
    const services = recomputed.services;
    // Nearly always nothing failed, now or before: then only the records of removed Services go.
    const clean = run.failures.size === 0 && this.failedServices.size === 0;
    for (let i = 0; i < services.length; i++) {
      const s = services[i]!;
      const key = s.key;
      if (s.claimed.length === 0 && s.owned.length === 0 && s.wanted.length === 0) this.services.delete(key);
      if (clean) continue;
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
    const held: FrontendRec[] = [];
    for (const rec of this.frontends.values()) if (rec.mirror) held.push(rec);
    return held
      .sort((a, b) => a.held - b.held)
      .map(({ mirror: frontend, owner, portName }) =>
        owner !== undefined ? { frontend: frontend!, service: owner, portName } : { frontend: frontend! },
      );
  }

  backend(id: number): LbBackend | undefined {
    return this.backendsById.get(id)?.mirror;
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
    for (const { mirror: f } of this.frontends.values()) {
      if (!f) continue;
      const fam = f.address.includes(':') ? 6 : 4;
      frontends[fam]++;
      serviceEntries[fam] += 1 + f.backends.length;
      if (f.internalBackends) serviceEntries[fam] += 1 + f.internalBackends.length;
      if (f.affinityTimeoutSeconds !== undefined) affinityMatch += idsOf(f).size;
    }
    for (const { mirror: b } of this.backendsById.values())
      if (b) backends[b.address.includes(':') ? 6 : 4]++;
    return { services: this.owning, frontends, serviceEntries, backends, affinityMatch };
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

  /** @internal */ frontendRecs(): ReadonlyMap<string, FrontendRec> {
    return this.frontends;
  }
  /** @internal */ backendRecsById(): ReadonlyMap<number, BackendRec> {
    return this.backendsById;
  }
  /** @internal */ mirrorBackend(id: number): LbBackend | undefined {
    return this.backendsById.get(id)?.mirror;
  }
  /** @internal The record of a backend key that has an id or is wanted. */
  backendOfKey(key: BackendKey): BackendRec | undefined {
    return this.backends.get(key);
  }
  /** @internal */ get writer(): LbWriter {
    return this.lb;
  }
  /** @internal */ get logger(): Logger {
    return this.log;
  }
  /** @internal The record of a backend a Service wants. */
  wantedBackend(key: BackendKey): BackendRec {
    let b = this.backends.get(key);
    if (!b) {
      b = new BackendRec(key, 0);
      this.backends.set(key, b);
    }
    return b;
  }
  /** @internal The backend's id, allocating one if it has none; undefined when every id is taken. */
  backendId(b: BackendRec): number | undefined {
    if (b.id !== 0) return b.id;
    const id = this.backendIds.next(this.backendIdTaken);
    if (id === undefined) return undefined;
    // What the maps still hold or list under the id is now this key's (next's last probe was
    // of this id: the record under it, if any).
    const stale = this.probed;
    this.probed = undefined;
    if (stale) {
      b.refs = stale.refs;
      b.mirror = stale.mirror;
      b.held = stale.held;
    }
    b.id = id;
    this.backendsById.set(id, b);
    return id;
  }
  /** @internal The frontend's reverse NAT index, allocating one if it has none; undefined: none is free. */
  revNatOf(f: FrontendRec): number | undefined {
    if (f.revNat !== 0) return f.revNat;
    const i = this.revNats.next(this.revNatTaken);
    if (i !== undefined) this.giveRevNat(f, i);
    return i;
  }
  /** @internal The backend and frontend records that lost their last user, forgetting them. */
  takeUnwanted(): { backends: BackendRec[]; frontends: FrontendRec[] } {
    const out = { backends: this.unwantedBackends, frontends: this.unclaimedNames };
    this.unwantedBackends = [];
    this.unclaimedNames = [];
    return out;
  }

  /** @internal Records what the maps now hold for one frontend. */
  setFrontend(rec: FrontendRec, f: LbFrontend | undefined, zeroed?: Set<BackendRec>): void {
    const old = rec.mirror;
    if (old) {
      const ids = distinctIds(old);
      for (let i = 0; i < ids.length; i++) {
        const id = ids[i]!;
        const b = this.backendsById.get(id);
        if (!b) continue;
        if (--b.refs > 0) continue;
        b.refs = 0;
        zeroed?.add(b);
        if (b.key === undefined && !b.mirror) this.backendsById.delete(id);
      }
    }
    rec.mirror = f;
    if (f && !old) rec.held = ++this.frontendsHeld;
    if (f) {
      const ids = distinctIds(f);
      for (let i = 0; i < ids.length; i++) this.backendAt(ids[i]!).refs++;
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

  /** @internal Records what the maps now hold under a backend's id. */
  setBackend(rec: BackendRec, b: LbBackend | undefined): void {
    if (b && !rec.mirror) rec.held = ++this.backendsHeld;
    rec.mirror = b;
    if (!b && rec.key === undefined && rec.refs === 0) this.backendsById.delete(rec.id);
  }

  /**
   * @internal Records the frontends a Service now owns (those of `owned` it was made the owner
   * of), and forgets the owner of those it no longer does (unless another Service took them
   * over); returns those.
   */
  setOwned(s: ServiceRec, owned: readonly FrontendRec[]): readonly FrontendRec[] {
    const before = s.owned;
    if (owned === before) return none;
    for (let i = 0; i < owned.length; i++) owned[i]!.owners++;
    const dropped: FrontendRec[] = [];
    if (before.length > 0) {
      // Records are unique per Service (desiredService gives each frontend once).
      const now = owned.length > 16 ? new Set(owned) : undefined;
      for (const f of before) {
        f.owners--;
        if (now ? now.has(f) : owned.includes(f)) continue;
        dropped.push(f);
        if (f.owner === s.key) {
          f.owner = undefined;
          f.portName = '';
        }
      }
    }
    if (before.length === 0 && owned.length > 0) this.owning++;
    else if (before.length > 0 && owned.length === 0) this.owning--;
    s.owned = owned;
    return dropped;
  }

  /**
   * @internal A frontend nobody claims and the maps do not hold: its index goes back, and the
   * record goes once no Service's owned list holds it either.
   */
  releaseFrontend(f: FrontendRec): void {
    if (f.revNat !== 0) {
      this.byRevNat[f.revNat] = undefined;
      f.revNat = 0;
      this.revNats.release();
    }
    if (f.owners === 0) this.frontends.delete(f.name);
  }

  /** @internal A backend nobody wants and the maps do not hold: its id goes back. */
  releaseBackend(b: BackendRec): void {
    const key = b.key;
    if (key === undefined || b.wants > 0 || b.mirror) return;
    this.backends.delete(key);
    b.key = undefined;
    if (b.id === 0) return;
    this.backendIds.release();
    // Frontends in the maps may still list the id: the record stays under it until they do not.
    if (b.refs === 0) this.backendsById.delete(b.id);
  }

  private frontendRec(name: string): FrontendRec {
    let f = this.frontends.get(name);
    if (!f) {
      f = new FrontendRec(name);
      this.frontends.set(name, f);
    }
    return f;
  }

  /** The record under a backend id, with no key if there is none yet. */
  private backendAt(id: number): BackendRec {
    let b = this.backendsById.get(id);
    if (!b) {
      b = new BackendRec(undefined, id);
      this.backendsById.set(id, b);
    }
    return b;
  }

  private giveRevNat(f: FrontendRec, i: number): void {
    while (this.byRevNat.length < i) this.byRevNat.push(undefined);
    this.byRevNat[i] = f;
    f.revNat = i;
  }

  // ---- desired state -----------------------------------------------------------------------

  /**
   * Desired state of the dirty Services, and of every Service that shares a frontend with one
   * of them (the lowest namespace/name owns a frontend two Services both claim).
   */
  private recompute(keys: Set<ServiceKey>): Recomputed {
    const run = ++this.runs;
    const out: Recomputed = { services: [], desired: [] };
    const queue = [...keys].sort();
    while (queue.length > 0) {
      const key = queue.pop()!;
      let s = this.services.get(key);
      if (s?.run === run) continue;
      if (!s) {
        s = new ServiceRec(key);
        this.services.set(key, s);
      }
      s.run = run;
      const svc = this.cache.service(key);
      const d: DesiredService = svc
        ? desiredService(svc, this.cache.slicesOf(key), this.cache.allNodes(), this.nodeName, key)
        : { key, frontends: [], backends: [] };
      out.services.push(s);
      out.desired.push(d);
      const changed = this.updateClaims(s, d.frontends);
      for (let i = 0; i < changed.length; i++) {
        const f = changed[i]!;
        const c = f.claimants;
        if (c === undefined || c === key) continue;
        if (typeof c === 'string') {
          if (this.services.get(c)?.run !== run) queue.push(c);
        } else for (const other of c) if (this.services.get(other)?.run !== run) queue.push(other);
      }
      this.trackWanted(s, d);
    }
    return out;
  }

  /** Moves `s`'s claims to `frontends`; returns the frontends whose claimants changed. */
  private updateClaims(s: ServiceRec, frontends: readonly DesiredFrontend[]): readonly FrontendRec[] {
    const before = s.claimed;
    if (before.length === frontends.length) {
      let same = true;
      for (let i = 0; i < before.length && same; i++) same = before[i]!.name === frontends[i]!.name;
      if (same) return none;
    }
    const key = s.key;
    const recs = new Array<FrontendRec>(frontends.length);
    for (let i = 0; i < frontends.length; i++) recs[i] = this.frontendRec(frontends[i]!.name);
    s.claimed = recs.length > 0 ? recs : none;
    if (before.length === 0) {
      // A Service seen for the first time (every Service, on a start): only claims to add.
      for (let i = 0; i < recs.length; i++) this.claim(recs[i]!, key);
      return recs;
    }
    const now = new Set(recs);
    const had = new Set(before);
    const changed: FrontendRec[] = [];
    for (const f of before) {
      if (now.has(f)) continue;
      const c = f.claimants;
      if (c === key) {
        f.claimants = undefined;
        this.unclaimedNames.push(f);
      } else if (c !== undefined && typeof c !== 'string') {
        c.delete(key);
        if (c.size === 1) f.claimants = [...c][0]!;
      }
      changed.push(f);
    }
    for (const f of recs) {
      if (had.has(f)) continue;
      this.claim(f, key);
      changed.push(f);
    }
    return changed;
  }

  private claim(f: FrontendRec, key: ServiceKey): void {
    const c = f.claimants;
    if (c === undefined) f.claimants = key;
    else if (typeof c === 'string') f.claimants = new Set([c, key]);
    else c.add(key);
  }

  private trackWanted(s: ServiceRec, d: DesiredService): void {
    const before = s.wanted;
    if (!sameBackends(before, d.backends)) {
      const backends = d.backends;
      const wanted = new Array<BackendRec>(backends.length);
      for (let i = 0; i < backends.length; i++) {
        const b = this.wantedBackend(backends[i]!.key);
        b.wants++;
        wanted[i] = b;
      }
      for (let i = 0; i < before.length; i++) {
        const b = before[i]!;
        if (--b.wants === 0) this.unwantedBackends.push(b);
      }
      s.wanted = wanted.length > 0 ? wanted : none;
    }
    const local4 = local4Of(d);
    const had = s.local4;
    if (sameList(had, local4)) return;
    for (let i = 0; i < local4.length; i++) {
      const a = local4[i]!;
      const n = this.local4.get(a) ?? 0;
      if (n === 0) this.local4Changed = true;
      this.local4.set(a, n + 1);
    }
    for (let i = 0; i < had.length; i++) {
      const a = had[i]!;
      const n = (this.local4.get(a) ?? 1) - 1;
      if (n <= 0) {
        this.local4.delete(a);
        this.local4Changed = true;
      } else this.local4.set(a, n);
    }
    s.local4 = local4;
  }
}

/** One sync's plan and its execution: what to write, what to delete, who failed. */
class SyncRun {
  readonly failures = new Map<ServiceKey, { code: string; error: string }>();
  private readonly r: Reconciler;
  private readonly report: SyncReport;
  private readonly deletes: Array<{ service?: ServiceKey; frontend: FrontendRec; previous: LbFrontend }> = [];
  private readonly writes: FrontendWrite[] = [];
  /** Backends to write, by record (BackendRec.pending points here), and who wants each. */
  private readonly backendRecs: BackendRec[] = [];
  private readonly backendWrites: LbBackend[] = [];
  private readonly backendWriters: Array<ServiceKey | ServiceKey[]> = [];
  /** The backends one Service's plan would write, until it is known to succeed. */
  private readonly planned: BackendRec[] = [];
  private readonly plannedWrites: LbBackend[] = [];
  /** Backends that lost their last listing frontend in this run. */
  private readonly zeroed = new Set<BackendRec>();
  private readonly touchedFrontends: FrontendRec[] = [];
  private readonly touchedBackends: BackendRec[] = [];
  private full = false;
  /** Whether writing the backends failed (some frontends may then list one the maps lack). */
  private backendsFailed = false;

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

  plan({ services, desired }: Recomputed, full: boolean): void {
    this.full = full;
    const order = ascending(services);
    for (let o = 0; o < order.length; o++) {
      const i = order[o]!;
      const s = services[i]!;
      const d = desired[i]!;
      const key = s.key;
      // Its claims are its desired frontends, in their order; it owns those it wins (nearly
      // always all of them: then the same list).
      const claimed = s.claimed;
      let won = 0;
      for (let j = 0; j < claimed.length; j++) if (winner(claimed[j]!) === key) won++;
      const owned = won === claimed.length ? claimed : claimed.filter((f) => winner(f) === key);
      const writesBefore = this.writes.length;
      this.planned.length = 0;
      this.plannedWrites.length = 0;
      try {
        for (let j = 0; j < claimed.length; j++) {
          const rec = claimed[j]!;
          if (won < claimed.length && winner(rec) !== key) continue;
          const f = d.frontends[j]!;
          const revNat = this.r.revNatOf(rec);
          if (revNat === undefined) {
            throw new WeftError(
              'WEFT_ERR_IDS_EXHAUSTED',
              `no free reverse NAT index for ${rec.name}: all 65535 are in use; remove Services`,
            );
          }
          const previous = rec.mirror;
          // The slots, as assignSlots gives them: resolve's new arrays are this frontend's to
          // keep; what the maps hold is copied if it is kept.
          const ext = slotsFor(previous?.backends, this.resolve(s, d, f.backends));
          const int = f.internalBackends
            ? slotsFor(previous?.internalBackends, this.resolve(s, d, f.internalBackends))
            : undefined;
          if (!frontendIs(previous, f, revNat, ext, int)) {
            this.writes.push({
              service: key,
              frontend: rec,
              previous,
              next: lbFrontendOf(
                f,
                revNat,
                ext === previous?.backends ? ext.slice() : ext,
                int !== undefined && int === previous?.internalBackends
                  ? int.slice()
                  : (int as number[] | undefined),
              ),
            });
          }
        }
      } catch (err) {
        this.writes.length = writesBefore;
        this.fail(key, err);
        continue;
      }
      this.takePlannedBackends(key);
      for (let j = 0; j < claimed.length; j++) {
        const rec = claimed[j]!;
        if (won < claimed.length && winner(rec) !== key) continue;
        const portName = d.frontends[j]!.portName;
        if (rec.owner !== key || rec.portName !== portName) {
          rec.owner = key;
          rec.portName = portName;
        }
      }
      const dropped = this.r.setOwned(s, owned);
      for (let j = 0; j < dropped.length; j++) {
        const rec = dropped[j]!;
        this.touchedFrontends.push(rec);
        // Another Service that claims it takes it over (it is in this run: claims changed).
        if (rec.claimants !== undefined) continue;
        const previous = rec.mirror;
        if (previous) this.deletes.push({ service: key, frontend: rec, previous });
      }
    }
    if (full) {
      const deleting = new Set(this.deletes.map((d) => d.frontend));
      const orphans: FrontendRec[] = [];
      this.r.frontendRecs().forEach((rec) => {
        if (rec.mirror && rec.claimants === undefined && !deleting.has(rec)) orphans.push(rec);
      });
      for (const rec of orphans.sort((a, b) => a.held - b.held)) {
        this.touchedFrontends.push(rec);
        this.deletes.push({ frontend: rec, previous: rec.mirror! });
      }
    }
  }

  /**
   * The ids of `list` (indexes into `d.backends`, whose records `s.wanted` holds in the same
   * order), allocated as needed; those whose entry in the maps is not yet right are planned.
   */
  private resolve(s: ServiceRec, d: DesiredService, list: readonly number[]): number[] {
    const wanted = s.wanted;
    const ids = new Array<number>(list.length);
    for (let i = 0; i < list.length; i++) {
      const at = list[i]!;
      const rec = wanted[at]!;
      const id = this.r.backendId(rec);
      const want = d.backends[at]!;
      if (id === undefined) {
        throw new WeftError(
          'WEFT_ERR_IDS_EXHAUSTED',
          `no free backend id for ${want.address}:${want.port}/${want.protocol}`,
        );
      }
      if (!backendIs(rec.mirror, id, want)) {
        this.planned.push(rec);
        this.plannedWrites.push(lbBackendOf(id, want));
      }
      ids[i] = id;
    }
    return ids;
  }

  /** What `service` planned goes to the run's backend writes: each once, with all who want it. */
  private takePlannedBackends(service: ServiceKey): void {
    for (let i = 0; i < this.planned.length; i++) {
      const rec = this.planned[i]!;
      const at = rec.pending;
      if (at < this.backendRecs.length && this.backendRecs[at] === rec) {
        const w = this.backendWriters[at]!;
        if (typeof w !== 'string') {
          if (!w.includes(service)) w.push(service);
        } else if (w !== service) this.backendWriters[at] = [w, service];
        continue;
      }
      rec.pending = this.backendRecs.length;
      this.backendRecs.push(rec);
      this.backendWrites.push(this.plannedWrites[i]!);
      this.backendWriters.push(service);
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
    try {
      this.r.writer.updateFrontends(this.deletes.map((d) => ({ previous: d.previous, next: undefined })));
      for (const d of this.deletes) this.r.setFrontend(d.frontend, undefined, this.zeroed);
      this.report.frontendsDeleted += this.deletes.length;
    } catch (err) {
      this.r.logger.error({ err: errorText(err), code: errorCode(err) }, 'removing frontends failed');
      for (const d of this.deletes) {
        const now = this.readBack(d.frontend, d.previous);
        if (now) this.failures.set(d.service ?? '(orphans)', { code: errorCode(err), error: errorText(err) });
        else this.report.frontendsDeleted++;
      }
    }
  }

  private writeBackends(): void {
    const recs = this.backendRecs;
    if (recs.length === 0) return;
    try {
      this.r.writer.upsertBackends(this.backendWrites);
      for (let i = 0; i < recs.length; i++) this.r.setBackend(recs[i]!, this.backendWrites[i]);
      this.report.backendsWritten += recs.length;
    } catch (err) {
      this.backendsFailed = true;
      this.r.logger.error({ err: errorText(err), code: errorCode(err) }, 'writing backends failed');
      for (let i = 0; i < recs.length; i++) {
        const b = this.backendWrites[i]!;
        const now = this.r.writer.backend(b.id);
        this.r.setBackend(recs[i]!, now);
        if (sameBackend(now, b)) {
          this.report.backendsWritten++;
          continue;
        }
        const w = this.backendWriters[i]!;
        if (typeof w === 'string') this.fail(w, err);
        else for (const s of w) this.fail(s, err);
      }
    }
  }

  private writeFrontends(): void {
    // A Service goes all or nothing: drop every write of a Service that already failed.
    const writes = this.withoutFailed(this.writes);
    if (writes.length === 0) return;
    // A listed backend is in the maps unless its write failed: it was written in this run, or
    // its mirror was already right when planned (nothing before this step removes backends).
    for (let i = 0; i < writes.length && this.backendsFailed; i++) {
      const w = writes[i]!;
      const missing = this.missingBackend(w.next);
      if (missing !== undefined) {
        this.fail(
          w.service,
          new WeftError('WEFT_ERR_MAP_FULL', `backend ${missing} of ${w.frontend.name} is not in the maps`),
        );
      }
    }
    const ready = this.withoutFailed(writes);
    try {
      this.apply(ready);
      return;
    } catch (err) {
      this.r.logger.warn(
        { err: errorText(err), code: errorCode(err), frontends: ready.length },
        'batch of frontend changes did not fit; applying Service by Service',
      );
      for (const w of ready) this.readBack(w.frontend, w.next);
    }
    // The slow path: each Service on its own, rolled back to where it stood if it does not fit.
    const byService = new Map<ServiceKey, FrontendWrite[]>();
    for (const w of ready) {
      const list = byService.get(w.service) ?? [];
      list.push(w);
      byService.set(w.service, list);
    }
    for (const [service, list] of [...byService].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const pending = list.filter((w) => !sameFrontend(w.frontend.mirror, w.next));
      try {
        this.apply(pending);
      } catch (err) {
        this.fail(service, err);
        for (const w of pending) this.readBack(w.frontend, w.next);
        const rollback = list
          .filter((w) => !sameFrontend(w.frontend.mirror, w.previous))
          .map((w) => ({ frontend: w.frontend, address: w.next, next: w.previous }));
        try {
          this.r.writer.updateFrontends(rollback.map((x) => ({ previous: x.frontend.mirror, next: x.next })));
          for (const x of rollback) this.r.setFrontend(x.frontend, x.next, this.zeroed);
        } catch (rollbackErr) {
          this.r.logger.error(
            { err: errorText(rollbackErr), service },
            'rolling a Service back to its previous state failed',
          );
          for (const x of rollback) this.readBack(x.frontend, x.address);
        }
      }
    }
    this.report.frontendsWritten = ready.filter((w) => sameFrontend(w.frontend.mirror, w.next)).length;
  }

  private withoutFailed(writes: FrontendWrite[]): FrontendWrite[] {
    return this.failures.size === 0 ? writes : writes.filter((w) => !this.failures.has(w.service));
  }

  /** The first backend id `f` lists that the maps do not hold. */
  private missingBackend(f: LbFrontend): number | undefined {
    const ext = f.backends;
    for (let i = 0; i < ext.length; i++) if (!this.r.mirrorBackend(ext[i]!)) return ext[i];
    const int = f.internalBackends ?? none;
    for (let i = 0; i < int.length; i++) if (!this.r.mirrorBackend(int[i]!)) return int[i];
    return undefined;
  }

  private apply(writes: FrontendWrite[]): void {
    if (writes.length === 0) return;
    // The writes are the changes when each one's `previous` is still what the maps hold (the
    // first attempt: always); after a failed batch, from the mirror as read back.
    let current = true;
    for (let i = 0; i < writes.length && current; i++)
      current = writes[i]!.previous === writes[i]!.frontend.mirror;
    this.r.writer.updateFrontends(
      current ? writes : writes.map((w) => ({ previous: w.frontend.mirror, next: w.next })),
    );
    for (let i = 0; i < writes.length; i++)
      this.r.setFrontend(writes[i]!.frontend, writes[i]!.next, this.zeroed);
    this.report.frontendsWritten += writes.length;
  }

  private deleteBackends(): void {
    const candidates = new Set(this.zeroed);
    // Written for a Service whose frontends then did not fit: nothing lists them.
    if (this.failures.size > 0) for (const b of this.backendRecs) candidates.add(b);
    const recs = [...candidates].filter((b) => b.refs === 0 && b.mirror);
    if (this.full) {
      const orphans: BackendRec[] = [];
      this.r.backendRecsById().forEach((b) => {
        if (b.mirror && b.refs === 0 && !candidates.has(b)) orphans.push(b);
      });
      for (const b of orphans.sort((x, y) => x.held - y.held)) recs.push(b);
    }
    if (recs.length === 0) return;
    try {
      this.r.writer.removeBackends(recs.map((b) => b.id));
      for (const b of recs) {
        const owner = this.r.backendOfKey(backendKeyOf(b.mirror!));
        if (owner) this.touchedBackends.push(owner);
        this.r.setBackend(b, undefined);
      }
      this.report.backendsDeleted += recs.length;
    } catch (err) {
      this.r.logger.error({ err: errorText(err), code: errorCode(err) }, 'removing backends failed');
      for (const b of recs) this.r.setBackend(b, this.r.writer.backend(b.id));
    }
  }

  /** Ids nothing wants and the maps do not hold go back. */
  private releaseIds(): void {
    const unwanted = this.r.takeUnwanted();
    const frontends = this.touchedFrontends.concat(unwanted.frontends);
    for (let i = 0; i < frontends.length; i++) {
      const f = frontends[i]!;
      if (f.claimants === undefined && !f.mirror) this.r.releaseFrontend(f);
    }
    const backends = this.touchedBackends.concat(unwanted.backends);
    for (let i = 0; i < backends.length; i++) this.r.releaseBackend(backends[i]!);
  }

  /** After a failed write: what the maps really hold for this frontend now. */
  private readBack(rec: FrontendRec, f: FrontendAddress): LbFrontend | undefined {
    let now: LbFrontend | undefined;
    try {
      now = this.r.writer.frontend(f);
      // The LB maps hold only the flag of loadBalancerSourceRanges; the NodePort maps still
      // hold the ranges the mirror knew (the agent writes them after a sync).
      const had = rec.mirror;
      if (now?.sourceRanges?.length === 0 && had?.sourceRanges && had.revNatIndex === now.revNatIndex) {
        now.sourceRanges = had.sourceRanges;
      }
    } catch (err) {
      this.r.logger.error({ err: errorText(err), frontend: rec.name }, 'reading a frontend back failed');
      now = rec.mirror;
    }
    this.r.setFrontend(rec, now, this.zeroed);
    return now;
  }
}

function winner(f: FrontendRec): ServiceKey | undefined {
  const c = f.claimants;
  return c === undefined ? undefined : lowest(c);
}
