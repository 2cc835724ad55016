/**
 * The agent's datapath: the LB maps under the node's pin root, the socket load-balancer on the
 * node's cgroup through pinned links, and the NodePort programs on the uplinks. Everything here
 * goes through src/datapath/; nothing is removed on close, so traffic keeps flowing while no
 * agent runs, and the next agent finds maps, links and filters where this one left them.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { attachCgroup, BpfLink } from '../datapath/cgroup.js';
import { type LbMapSizes, LbMaps, lbMapNames, lbMaxEntries, sockLbPrograms } from '../datapath/lbmap.js';
import type { BpfMap } from '../datapath/map.js';
import { attachNodePort, type NodePortDatapath, NodePortMaps, queryNodePort } from '../datapath/nodeport.js';
import { BpfObject } from '../datapath/object.js';
import { WeftError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { bpfObjectPath } from '../shared/self.js';
import type { LbReadBack } from './services/reconciler.js';

/** The socket-LB programs, re-exported for the agent's callers. */
export { sockLbPrograms };

/**
 * Map sizes from --bpf-lb-map-max (Cilium's flag): backends, reverse NAT, socket reverse NAT and
 * affinity get N entries each; the services map holds masters and slots, so it gets 4N (the
 * defaults of lb_maps.h at N = 65536).
 */
export function lbSizesFor(mapMax: number): LbMapSizes {
  return { services: 4 * mapMax, backends: mapMax, reverseNat: mapMax, sockRevnat: mapMax, affinity: mapMax };
}

export interface SocketLbStatus {
  attached: boolean;
  cgroup: string;
  programs: Array<{ name: string; linkId: number; programId: number }>;
  error?: string;
}

export interface NodePortStatus {
  enabled: boolean;
  devices: Array<{
    device: string;
    attached: boolean;
    ingressProgramId?: number;
    egressProgramId?: number;
    error?: string;
  }>;
  nodeIPv4?: string;
  /** Why NodePort is not (yet) attached, when it is not. */
  waiting?: string;
}

export interface MapUsage {
  name: string;
  capacity: number;
}

interface AttachRecord {
  cgroup: string;
}

export class AgentDatapath {
  readonly lb: LbMaps;
  readonly pinRoot: string;
  readonly sizes: LbMapSizes;
  private readonly links: BpfLink[];
  private readonly cgroup: string;
  private readonly log: Logger;
  private nodePort: {
    devices: string[];
    netns?: string;
    nodeIPv4?: string;
    loaded: NodePortDatapath[];
    errors: Map<string, string>;
  };
  private nodePortMaps?: NodePortMaps;
  private lruCache?: { at: number; counts: Record<string, number> };

  private constructor(opts: {
    lb: LbMaps;
    pinRoot: string;
    sizes: LbMapSizes;
    links: BpfLink[];
    cgroup: string;
    devices: string[];
    nodePortNetns?: string;
    log: Logger;
  }) {
    this.lb = opts.lb;
    this.pinRoot = opts.pinRoot;
    this.sizes = opts.sizes;
    this.links = opts.links;
    this.cgroup = opts.cgroup;
    this.log = opts.log;
    this.nodePort = { devices: opts.devices, loaded: [], errors: new Map() };
    if (opts.nodePortNetns) this.nodePort.netns = opts.nodePortNetns;
  }

  /**
   * Loads sock_lb.bpf.o with its maps pinned under `pinRoot` (created, or reused with what they
   * hold), and attaches every socket-LB program to `cgroup` through links pinned under
   * `pinRoot`/links: on a restart, the pinned links get the new programs atomically (traffic
   * never stops); if the agent now runs with another cgroup, the old links go first.
   */
  static open(opts: {
    pinRoot: string;
    cgroup: string;
    mapMax: number;
    devices?: string[];
    /** The network namespace the devices are in (/run/netns/x); default: the agent's own. */
    nodePortNetns?: string;
    stateDir: string;
    log: Logger;
    objectPath?: string;
  }): AgentDatapath {
    const sizes = lbSizesFor(opts.mapMax);
    const obj = BpfObject.open(opts.objectPath ?? bpfObjectPath('sock_lb.bpf.o'), {
      pinRoot: opts.pinRoot,
      maxEntries: lbMaxEntries(sizes),
    });
    let lb: LbMaps | undefined;
    const links: BpfLink[] = [];
    try {
      obj.load();
      lb = LbMaps.fromObject(obj);
      const linkDir = join(opts.pinRoot, 'links');
      mkdirSync(linkDir, { recursive: true });
      mkdirSync(opts.stateDir, { recursive: true });
      const recordPath = join(opts.stateDir, 'socket-lb.json');
      const record = readRecord(recordPath);
      if (record && record.cgroup !== opts.cgroup) {
        opts.log.info(
          { from: record.cgroup, to: opts.cgroup },
          'cgroup changed: moving the socket load-balancer',
        );
        for (const name of sockLbPrograms) {
          const old = BpfLink.openPinned(join(linkDir, name));
          if (!old) continue;
          old.detach();
          old.unpin();
          old.close();
        }
      }
      for (const name of sockLbPrograms) {
        links.push(attachCgroup(obj.program(name), opts.cgroup, { pinPath: join(linkDir, name) }));
      }
      writeFileSync(recordPath, `${JSON.stringify({ cgroup: opts.cgroup } satisfies AttachRecord)}\n`);
      const dp = new AgentDatapath({
        lb,
        pinRoot: opts.pinRoot,
        sizes,
        links,
        cgroup: opts.cgroup,
        devices: opts.devices ?? [],
        ...(opts.nodePortNetns ? { nodePortNetns: opts.nodePortNetns } : {}),
        log: opts.log,
      });
      return dp;
    } catch (err) {
      for (const l of links) l.close();
      lb?.close();
      throw err;
    } finally {
      // Programs stay alive through their links, maps through their pins and our fds.
      obj.close();
    }
  }

  /** What the maps hold, for the reconciler's mirror and allocators. */
  readBack(): LbReadBack {
    const frontends = this.lb.frontends();
    // The LB maps hold only the flag of a frontend with loadBalancerSourceRanges; the ranges
    // are in the NodePort maps, pinned beside them when NodePort ran.
    const limited = frontends.filter((f) => f.sourceRanges !== undefined);
    if (limited.length > 0) {
      let ranges: Map<number, string[]> | undefined;
      try {
        const np = NodePortMaps.openPinned(this.pinRoot);
        try {
          ranges = np.sourceRangesByFrontend();
        } finally {
          np.close();
        }
      } catch {
        // No NodePort maps (yet): the ranges are written when NodePort attaches.
      }
      for (const f of limited) f.sourceRanges = ranges?.get(f.revNatIndex) ?? [];
    }
    return {
      frontends,
      backends: this.lb.backends(),
      reverseNatIndexes: this.lb.reverseNat().map((r) => r.revNatIndex),
    };
  }

  socketLbStatus(): SocketLbStatus {
    const out: SocketLbStatus = { attached: true, cgroup: this.cgroup, programs: [] };
    sockLbPrograms.forEach((name, i) => {
      try {
        const info = this.links[i]!.info();
        out.programs.push({ name, linkId: info.id, programId: info.progId });
      } catch (err) {
        out.attached = false;
        out.error = err instanceof Error ? err.message : String(err);
      }
    });
    return out;
  }

  /**
   * Attaches the NodePort programs to every device once the node's IPv4 address is known, and
   * again when it changes. A device that fails is reported (nodePortStatus) and retried on
   * the next call; the others are attached regardless.
   */
  ensureNodePort(nodeIPv4: string | undefined): void {
    const np = this.nodePort;
    if (np.devices.length === 0) return;
    if (!nodeIPv4) return;
    const again = np.nodeIPv4 !== nodeIPv4;
    if (!again && np.errors.size === 0) return;
    const attached = new Set(again ? [] : np.devices.filter((d) => !np.errors.has(d)));
    if (again) {
      for (const l of np.loaded) l.close();
      np.loaded = [];
    }
    np.nodeIPv4 = nodeIPv4;
    for (const device of np.devices) {
      if (attached.has(device)) continue;
      try {
        np.loaded.push(
          attachNodePort({
            pinRoot: this.pinRoot,
            device,
            nodeIPv4,
            lbSizes: this.sizes,
            ...(np.netns ? { netns: np.netns } : {}),
          }),
        );
        np.errors.delete(device);
        this.log.info({ device, nodeIPv4 }, 'NodePort programs attached');
      } catch (err) {
        const error = err instanceof Error ? err.message : String(err);
        np.errors.set(device, error);
        this.log.error({ device, err: error }, 'attaching the NodePort programs failed');
      }
    }
    if (!this.nodePortMaps && np.loaded.length > 0) this.nodePortMaps = NodePortMaps.openPinned(this.pinRoot);
  }

  /** Writes every IPv4 frontend's loadBalancerSourceRanges for the NodePort programs (no-op without NodePort). */
  setSourceRanges(byRevNat: ReadonlyMap<number, readonly string[]>): { added: number; removed: number } {
    return this.nodePortMaps?.replaceSourceRanges(byRevNat) ?? { added: 0, removed: 0 };
  }

  /** Writes the NodePort programs' set of local backends (no-op without NodePort). */
  setLocalBackends(addresses: string[]): void {
    this.nodePortMaps?.setLocalBackends(addresses);
  }

  get nodePortReady(): boolean {
    return this.nodePortMaps !== undefined;
  }

  nodePortStatus(): NodePortStatus {
    const np = this.nodePort;
    const out: NodePortStatus = { enabled: np.devices.length > 0, devices: [] };
    if (np.nodeIPv4) out.nodeIPv4 = np.nodeIPv4;
    if (np.devices.length === 0) {
      out.waiting = 'no --devices given';
      return out;
    }
    if (!np.nodeIPv4) out.waiting = "the node's IPv4 InternalIP is not known yet";
    for (const device of np.devices) {
      const entry: NodePortStatus['devices'][number] = { device, attached: false };
      const error = np.errors.get(device);
      if (error) entry.error = error;
      try {
        const q = queryNodePort(np.netns ? { device, netns: np.netns } : { device });
        if (q.ingress !== undefined) entry.ingressProgramId = q.ingress;
        if (q.egress !== undefined) entry.egressProgramId = q.egress;
        entry.attached = q.ingress !== undefined && q.egress !== undefined;
      } catch (err) {
        entry.error ??= err instanceof Error ? err.message : String(err);
      }
      out.devices.push(entry);
    }
    return out;
  }

  /** Capacity of every LB map (max_entries). */
  mapCapacities(): MapUsage[] {
    const all: Array<BpfMap<unknown, unknown>> = [
      this.lb.v4.services,
      this.lb.v6.services,
      this.lb.v4.backends,
      this.lb.v6.backends,
      this.lb.v4.reverseNat,
      this.lb.v6.reverseNat,
      this.lb.affinityMatch,
      this.lb.v4.sockRevnat,
      this.lb.v6.sockRevnat,
      this.lb.affinity,
    ] as Array<BpfMap<unknown, unknown>>;
    return all.map((m) => ({ name: m.name, capacity: m.maxEntries }));
  }

  /**
   * Entries in the maps the programs write (LRU), counted by walking them: at most once per
   * `maxAgeMs`, since a walk of a full map takes tens of milliseconds.
   */
  programMapCounts(maxAgeMs = 10_000): Record<string, number> {
    const now = Date.now();
    if (this.lruCache && now - this.lruCache.at < maxAgeMs) return this.lruCache.counts;
    const counts: Record<string, number> = {
      [lbMapNames.sockRevnat4]: this.lb.v4.sockRevnat.count(),
      [lbMapNames.sockRevnat6]: this.lb.v6.sockRevnat.count(),
      [lbMapNames.affinity]: this.lb.affinity.count(),
    };
    this.lruCache = { at: now, counts };
    return counts;
  }

  close(): void {
    for (const l of this.nodePort.loaded) l.close();
    this.nodePortMaps?.close();
    for (const l of this.links) l.close();
    this.lb.close();
  }
}

function readRecord(path: string): AttachRecord | undefined {
  if (!existsSync(path)) return undefined;
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    if (typeof v === 'object' && v !== null && typeof (v as AttachRecord).cgroup === 'string') {
      return v as AttachRecord;
    }
  } catch {
    // A torn or foreign file: treat as absent.
  }
  rmSync(path, { force: true });
  return undefined;
}

/** Removes everything an agent pinned for a node (maps, links: traffic stops). For tests and uninstall. */
export function removeNodePins(pinRoot: string): void {
  if (!pinRoot.includes('/weft')) {
    throw new WeftError('WEFT_ERR_USAGE', `refusing to remove ${pinRoot}: not a weft pin root`);
  }
  const linkDir = join(pinRoot, 'links');
  for (const name of sockLbPrograms) {
    const link = BpfLink.openPinned(join(linkDir, name));
    if (!link) continue;
    try {
      link.detach();
    } finally {
      link.close();
    }
  }
  rmSync(pinRoot, { recursive: true, force: true });
}
