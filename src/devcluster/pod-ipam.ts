import { WeftError } from '../shared/errors.js';
import { type Cidr, cidrContains, cidrSize, formatCidr, formatIPv4, parseCidr, parseIPv4 } from './ipv4.js';

/**
 * Pod IPs of one node, like the CNI host-local plugin: .1 is the node's router, pods get .2 up
 * to the last address before broadcast, handed out round-robin after the last one given, so a
 * freed IP is reused only after the rest of the range (a stale connection to a deleted pod
 * does not reach its successor at once).
 */
export class PodIPAllocator {
  private readonly cidr: Cidr;
  private readonly first: number;
  private readonly last: number;
  private readonly byOwner = new Map<string, number>();
  private readonly owners = new Map<number, string>();
  private lastGiven: number;

  constructor(podCIDR: string) {
    this.cidr = parseCidr(podCIDR, { strict: true });
    if (cidrSize(this.cidr) < 4) {
      throw new WeftError('WEFT_ERR_USAGE', `pod CIDR ${podCIDR} is too small for pods`);
    }
    this.first = this.cidr.base + 2;
    this.last = this.cidr.base + cidrSize(this.cidr) - 2;
    this.lastGiven = this.first - 1;
  }

  /** The IP of `owner` (a pod UID); the same one again if it already has one. */
  allocate(owner: string): string {
    const had = this.byOwner.get(owner);
    if (had !== undefined) return formatIPv4(had);
    const span = this.last - this.first + 1;
    for (let step = 1; step <= span; step++) {
      const candidate = this.first + ((this.lastGiven - this.first + step) % span);
      if (!this.owners.has(candidate)) {
        this.take(owner, candidate);
        this.lastGiven = candidate;
        return formatIPv4(candidate);
      }
    }
    throw new WeftError(
      'WEFT_ERR_IPAM_EXHAUSTED',
      `no free pod IP in ${formatCidr(this.cidr)}: all ${span} addresses are in use`,
    );
  }

  /** Re-registers an IP recorded earlier (daemon restart); fails if someone else holds it. */
  restore(owner: string, ip: string): void {
    const addr = parseIPv4(ip);
    if (!cidrContains(this.cidr, addr) || addr < this.first || addr > this.last) {
      throw new WeftError('WEFT_ERR_IPAM_CONFLICT', `${ip} is not a pod address of ${formatCidr(this.cidr)}`);
    }
    const holder = this.owners.get(addr);
    if (holder !== undefined && holder !== owner) {
      throw new WeftError('WEFT_ERR_IPAM_CONFLICT', `${ip} is already held by ${holder}`);
    }
    this.take(owner, addr);
  }

  release(owner: string): void {
    const addr = this.byOwner.get(owner);
    if (addr === undefined) return;
    this.byOwner.delete(owner);
    this.owners.delete(addr);
  }

  get inUse(): number {
    return this.byOwner.size;
  }

  private take(owner: string, addr: number): void {
    this.byOwner.set(owner, addr);
    this.owners.set(addr, owner);
  }
}
