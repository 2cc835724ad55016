import { WeftError } from '../shared/errors.js';

/**
 * IPv4 addresses and CIDR blocks as plain numbers, for address planning. Every range the
 * devcluster hands out is checked here against what the host already uses.
 */
export interface Cidr {
  /** Network address as an unsigned 32-bit number (host bits zero). */
  readonly base: number;
  readonly prefix: number;
}

export function parseIPv4(text: string): number {
  const parts = text.split('.');
  if (parts.length !== 4) throw invalidAddress(text);
  let value = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part)) throw invalidAddress(text);
    const octet = Number(part);
    if (octet > 255) throw invalidAddress(text);
    value = value * 256 + octet;
  }
  return value;
}

export function formatIPv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.');
}

/** Parses "a.b.c.d/n"; with `strict`, host bits must be zero (like kubeadm's --pod-network-cidr). */
export function parseCidr(text: string, opts: { strict?: boolean } = {}): Cidr {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(text.trim());
  if (!m) throw invalidCidr(text, 'expected a.b.c.d/n');
  const prefix = Number(m[2]);
  if (prefix > 32) throw invalidCidr(text, 'prefix length must be 0-32');
  const addr = parseIPv4(m[1] ?? '');
  const base = (addr & maskOf(prefix)) >>> 0;
  if (opts.strict && base !== addr) {
    throw invalidCidr(text, `host bits are set; did you mean ${formatCidr({ base, prefix })}?`);
  }
  return { base, prefix };
}

export function formatCidr(c: Cidr): string {
  return `${formatIPv4(c.base)}/${c.prefix}`;
}

export function cidrSize(c: Cidr): number {
  return 2 ** (32 - c.prefix);
}

export function cidrContains(c: Cidr, addr: number): boolean {
  return addr >= c.base && addr < c.base + cidrSize(c);
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.base < b.base + cidrSize(b) && b.base < a.base + cidrSize(a);
}

/** The `index`-th subnet of length `prefix` inside `parent` (index 0 is the first). */
export function nthSubnet(parent: Cidr, prefix: number, index: number): Cidr {
  if (prefix < parent.prefix) {
    throw invalidCidr(formatCidr(parent), `cannot split into /${prefix} subnets`);
  }
  const count = 2 ** (prefix - parent.prefix);
  if (index < 0 || index >= count) {
    throw new WeftError(
      'WEFT_ERR_CIDR_EXHAUSTED',
      `${formatCidr(parent)} holds only ${count} /${prefix} subnets; subnet ${index} does not fit`,
    );
  }
  return { base: parent.base + index * 2 ** (32 - prefix), prefix };
}

/** The address at `offset` inside `c` (offset 1 is the first host address of a /24). */
export function addressAt(c: Cidr, offset: number): number {
  if (offset < 0 || offset >= cidrSize(c)) {
    throw new WeftError('WEFT_ERR_CIDR_EXHAUSTED', `offset ${offset} is outside ${formatCidr(c)}`);
  }
  return c.base + offset;
}

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

function invalidAddress(text: string): WeftError {
  return new WeftError('WEFT_ERR_INVALID_CIDR', `invalid IPv4 address "${text}"`);
}

function invalidCidr(text: string, why: string): WeftError {
  return new WeftError('WEFT_ERR_INVALID_CIDR', `invalid CIDR "${text}": ${why}`);
}
