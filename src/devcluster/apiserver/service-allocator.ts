import { WeftError } from '../../shared/errors.js';

/**
 * ClusterIP and NodePort allocation for Services, as kube-apiserver's registry does it: the
 * first address of the service CIDR belongs to default/kubernetes; user-chosen values are
 * reserved if free and in range; everything is rebuilt from the stored Services on restart.
 */
export function parseIPv4(ip: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255) || m.slice(1).some((p) => p.length > 1 && p.startsWith('0')))
    return undefined;
  return ((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!;
}

export function formatIPv4(n: number): string {
  return [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export interface Cidr {
  base: number;
  prefix: number;
  size: number;
}

export function parseCidr(text: string): Cidr | undefined {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(text);
  if (!m) return undefined;
  const ip = parseIPv4(m[1]!);
  const prefix = Number(m[2]);
  if (ip === undefined || prefix > 32) return undefined;
  const size = 2 ** (32 - prefix);
  const base = prefix === 0 ? 0 : (ip & ~(size - 1)) >>> 0;
  return { base, prefix, size };
}

export type AllocationProblem = 'taken' | 'out-of-range' | 'full';

export class ClusterIPAllocator {
  readonly cidr: Cidr;
  private readonly used = new Set<number>();
  private cursor = 0;

  constructor(readonly cidrText: string) {
    const cidr = parseCidr(cidrText);
    if (!cidr || cidr.prefix > 30 || cidr.prefix < 8) {
      throw new WeftError(
        'WEFT_ERR_CONFIG',
        `serviceCIDR ${cidrText} must be an IPv4 CIDR between /8 and /30`,
      );
    }
    this.cidr = cidr;
  }

  /** The kubernetes Service's address: the first usable one. */
  get first(): string {
    return formatIPv4(this.cidr.base + 1);
  }

  private usable(n: number): boolean {
    return n > this.cidr.base && n < this.cidr.base + this.cidr.size - 1;
  }

  check(ip: string): AllocationProblem | undefined {
    const n = parseIPv4(ip);
    if (n === undefined || !this.usable(n)) return 'out-of-range';
    return this.used.has(n) ? 'taken' : undefined;
  }

  reserve(ip: string): void {
    const n = parseIPv4(ip);
    if (n !== undefined) this.used.add(n);
  }

  release(ip: string): void {
    const n = parseIPv4(ip);
    if (n !== undefined) this.used.delete(n);
  }

  /** A free address (not reserved yet), scanning on from the last one handed out. */
  next(): string | undefined {
    const span = this.cidr.size - 2;
    for (let i = 0; i < span; i++) {
      const n = this.cidr.base + 1 + ((this.cursor + i) % span);
      if (n === this.cidr.base + 1) continue; // kept for default/kubernetes
      if (!this.used.has(n)) {
        this.cursor = (this.cursor + i + 1) % span;
        return formatIPv4(n);
      }
    }
    return undefined;
  }
}

export class NodePortAllocator {
  private readonly used = new Set<number>();
  private cursor = 0;

  constructor(readonly range: [number, number]) {
    if (!(range[0] >= 1 && range[1] <= 65535 && range[0] <= range[1])) {
      throw new WeftError('WEFT_ERR_CONFIG', `nodePortRange ${range.join('-')} is not a valid port range`);
    }
  }

  check(port: number): AllocationProblem | undefined {
    if (!Number.isInteger(port) || port < this.range[0] || port > this.range[1]) return 'out-of-range';
    return this.used.has(port) ? 'taken' : undefined;
  }

  reserve(port: number): void {
    this.used.add(port);
  }

  release(port: number): void {
    this.used.delete(port);
  }

  next(exclude: Set<number> = new Set()): number | undefined {
    const span = this.range[1] - this.range[0] + 1;
    for (let i = 0; i < span; i++) {
      const p = this.range[0] + ((this.cursor + i) % span);
      if (!this.used.has(p) && !exclude.has(p)) {
        this.cursor = (this.cursor + i + 1) % span;
        return p;
      }
    }
    return undefined;
  }
}
