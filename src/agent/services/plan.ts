/**
 * Pure pieces of the diff between what a Service wants and what the maps hold: which slot each
 * backend goes in, what counts as a change, and the LB model a desired frontend becomes once
 * ids are known.
 */
import type { LbBackend, LbFrontend } from '../../datapath/lbmap.js';
import type { DesiredBackend, DesiredFrontend } from './types.js';

/**
 * Slot order for a frontend's backends: `wanted` ids, placed so that as few slots as possible
 * change. Backends that stay keep their slot; new ones fill the holes left by those that went,
 * then go at the end; if more went than came, the last ones move into the holes. A new frontend
 * lists its backends by id. One endpoint changing in a 1,000-backend Service then rewrites one
 * or two slots, not a thousand.
 */
export function assignSlots(previous: readonly number[] | undefined, wanted: readonly number[]): number[] {
  if (!previous || previous.length === 0) {
    if (strictlyAscending(wanted)) return wanted.slice();
    return [...new Set(wanted)].sort((a, b) => a - b);
  }
  // Nothing came or went (a restart, a full sync): every backend keeps its slot.
  if (previous.length === wanted.length && sameMembers(previous, wanted)) return previous.slice();
  const want = new Set(wanted);
  const slots: Array<number | undefined> = [];
  const placed = new Set<number>();
  for (const id of previous) {
    if (want.has(id) && !placed.has(id)) {
      slots.push(id);
      placed.add(id);
    } else {
      slots.push(undefined);
    }
  }
  const added = [...want].filter((id) => !placed.has(id)).sort((a, b) => a - b);
  let next = 0;
  for (let i = 0; i < slots.length && next < added.length; i++) {
    if (slots[i] === undefined) slots[i] = added[next++];
  }
  while (next < added.length) slots.push(added[next++]);
  // Compact: move the last filled slots into the remaining holes, then drop the tail.
  let end = slots.length - 1;
  for (let i = 0; i < slots.length; i++) {
    if (slots[i] !== undefined) continue;
    while (end > i && slots[end] === undefined) end--;
    if (end <= i) break;
    slots[i] = slots[end];
    slots[end] = undefined;
  }
  const out: number[] = [];
  for (const id of slots) if (id !== undefined) out.push(id);
  return out;
}

/**
 * As assignSlots, without its copy: `previous` itself when nothing came or went, `wanted` itself
 * when a new frontend lists it as it is; otherwise assignSlots' new array. The caller copies
 * `previous` before it keeps it.
 */
export function slotsFor(previous: number[] | undefined, wanted: number[]): number[] {
  if (!previous || previous.length === 0) {
    if (strictlyAscending(wanted)) return wanted;
  } else if (previous.length === wanted.length && sameMembers(previous, wanted)) return previous;
  return assignSlots(previous, wanted);
}

function strictlyAscending(ids: readonly number[]): boolean {
  for (let i = 1; i < ids.length; i++) if (ids[i]! <= ids[i - 1]!) return false;
  return true;
}

/**
 * Whether `previous` (no id twice) holds exactly the ids of `wanted`, of the same length: then
 * `wanted` is a permutation of it.
 */
function sameMembers(previous: readonly number[], wanted: readonly number[]): boolean {
  if (previous.length <= 16) {
    for (let i = 0; i < previous.length; i++) {
      const id = previous[i]!;
      if (!wanted.includes(id)) return false;
      for (let j = 0; j < i; j++) if (previous[j] === id) return false;
    }
    return true;
  }
  const want = new Set(wanted);
  const seen = new Set<number>();
  for (const id of previous) {
    if (!want.has(id) || seen.has(id)) return false;
    seen.add(id);
  }
  return true;
}

function sameList<T>(a: readonly T[] | undefined, b: readonly T[] | undefined): boolean {
  if (a === b) return true;
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Whether two frontends would write the same map entries. */
export function sameFrontend(a: LbFrontend | undefined, b: LbFrontend | undefined): boolean {
  if (!a || !b) return a === b;
  return (
    a.address === b.address &&
    a.port === b.port &&
    a.protocol === b.protocol &&
    a.type === b.type &&
    a.revNatIndex === b.revNatIndex &&
    a.affinityTimeoutSeconds === b.affinityTimeoutSeconds &&
    a.externalTrafficPolicy === b.externalTrafficPolicy &&
    a.internalTrafficPolicy === b.internalTrafficPolicy &&
    sameList(a.backends, b.backends) &&
    sameList(a.internalBackends, b.internalBackends) &&
    sameList(a.sourceRanges, b.sourceRanges)
  );
}

export function sameBackend(a: LbBackend | undefined, b: LbBackend | undefined): boolean {
  if (!a || !b) return a === b;
  return (
    a.id === b.id &&
    a.address === b.address &&
    a.port === b.port &&
    a.protocol === b.protocol &&
    a.state === b.state &&
    a.clusterId === b.clusterId &&
    a.zone === b.zone
  );
}

/** The LB model of a desired frontend, given its reverse NAT index and its slots. */
export function lbFrontendOf(
  f: DesiredFrontend,
  revNatIndex: number,
  backends: number[],
  internalBackends: number[] | undefined,
): LbFrontend {
  const out: LbFrontend = {
    address: f.address,
    port: f.port,
    protocol: f.protocol,
    type: f.type,
    revNatIndex,
    backends,
    externalTrafficPolicy: f.externalTrafficPolicy,
    internalTrafficPolicy: f.internalTrafficPolicy,
  };
  if (internalBackends !== undefined) out.internalBackends = internalBackends;
  if (f.affinityTimeoutSeconds !== undefined) out.affinityTimeoutSeconds = f.affinityTimeoutSeconds;
  if (f.sourceRanges !== undefined) out.sourceRanges = f.sourceRanges;
  return out;
}

/**
 * Whether `have` is what lbFrontendOf would give for the same arguments, as sameFrontend sees
 * it (without building it).
 */
export function frontendIs(
  have: LbFrontend | undefined,
  f: DesiredFrontend,
  revNatIndex: number,
  backends: readonly number[],
  internalBackends: readonly number[] | undefined,
): boolean {
  return (
    have !== undefined &&
    have.address === f.address &&
    have.port === f.port &&
    have.protocol === f.protocol &&
    have.type === f.type &&
    have.revNatIndex === revNatIndex &&
    have.affinityTimeoutSeconds === f.affinityTimeoutSeconds &&
    have.externalTrafficPolicy === f.externalTrafficPolicy &&
    have.internalTrafficPolicy === f.internalTrafficPolicy &&
    sameList(have.backends, backends) &&
    sameList(have.internalBackends, internalBackends) &&
    sameList(have.sourceRanges, f.sourceRanges)
  );
}

/** Whether `have` is what lbBackendOf(id, b) would give (without building it). */
export function backendIs(have: LbBackend | undefined, id: number, b: DesiredBackend): boolean {
  return (
    have !== undefined &&
    have.id === id &&
    have.address === b.address &&
    have.port === b.port &&
    have.protocol === b.protocol &&
    have.state === b.state &&
    have.clusterId === 0 &&
    have.zone === 0
  );
}

export function lbBackendOf(id: number, b: DesiredBackend): LbBackend {
  return {
    id,
    address: b.address,
    port: b.port,
    protocol: b.protocol,
    state: b.state,
    clusterId: 0,
    zone: 0,
  };
}

/** The map key of a frontend, as lbmap's frontendName() spells it (IPv6 in brackets). */
export function frontendId(f: { address: string; port: number; protocol: string }): string {
  return `${f.address.includes(':') ? `[${f.address}]` : f.address}:${f.port}/${f.protocol}`;
}
