import { isIPv4, isIPv6 } from 'node:net';
import { WeftError } from '../shared/errors.js';

/**
 * Codecs turn TypeScript values into the bytes of a C struct from bpf/include/ and back.
 * Struct codecs carry their layout (C name, size, every field's offset and size), which a
 * kernel test compares with the BTF of the built objects: a drift between C and TS fails loudly.
 *
 * Codecs write into caller-provided buffers at an offset, so batch operations encode many
 * entries into one preallocated native buffer without allocating per entry.
 */
export interface Codec<T> {
  readonly size: number;
  /** C alignment; defaults to the natural alignment of a scalar of `size` bytes. */
  readonly align?: number;
  encode(value: T, buf: Buffer, offset: number): void;
  decode(buf: Buffer, offset: number): T;
  /**
   * For scalars: JavaScript source that encodes/decodes inline, so struct codecs compile to
   * straight-line code (see struct()). `v`, `b`, `o` are expressions for value, buffer, offset.
   * Encoders store bytes (Uint8Array stores, which the JIT inlines) rather than call
   * Buffer#writeUInt16LE and friends; a value out of a u16's range still throws a RangeError.
   */
  readonly inline?: { encode(v: string, b: string, o: string): string; decode(b: string, o: string): string };
}

export interface FieldLayout {
  name: string;
  offset: number;
  size: number;
}

export interface StructCodec<T> extends Codec<T> {
  /** The struct's name in C (bpf/include/), as BTF knows it. */
  readonly cName: string;
  readonly fields: readonly FieldLayout[];
}

// ---- scalars -----------------------------------------------------------------------------

export const u8: Codec<number> = {
  size: 1,
  inline: { encode: (v, b, o) => `${b}[${o}] = ${v}`, decode: (b, o) => `${b}[${o}]` },
  encode: (v, b, o) => void b.writeUInt8(v, o),
  decode: (b, o) => b.readUInt8(o),
};
/** Host byte order (x86-64 and arm64: little endian). */
export const u16: Codec<number> = {
  size: 2,
  inline: {
    encode: (v, b, o) =>
      `{ const x = ${v}; if (!(x >= 0 && x <= 0xffff)) outOfRange(x, 0xffff); ${b}[${o}] = x; ${b}[${o} + 1] = x >>> 8; }`,
    decode: (b, o) => `${b}.readUInt16LE(${o})`,
  },
  encode: (v, b, o) => void b.writeUInt16LE(v, o),
  decode: (b, o) => b.readUInt16LE(o),
};
export const u32: Codec<number> = {
  size: 4,
  inline: {
    encode: (v, b, o) =>
      `{ const x = ${v} >>> 0; ${b}[${o}] = x; ${b}[${o} + 1] = x >>> 8; ${b}[${o} + 2] = x >>> 16; ${b}[${o} + 3] = x >>> 24; }`,
    decode: (b, o) => `${b}.readUInt32LE(${o})`,
  },
  encode: (v, b, o) => void b.writeUInt32LE(v >>> 0, o),
  decode: (b, o) => b.readUInt32LE(o),
};
export const s32: Codec<number> = {
  size: 4,
  inline: {
    encode: (v, b, o) => `${b}.writeInt32LE(${v}, ${o})`,
    decode: (b, o) => `${b}.readInt32LE(${o})`,
  },
  encode: (v, b, o) => void b.writeInt32LE(v, o),
  decode: (b, o) => b.readInt32LE(o),
};
export const u64: Codec<bigint> = {
  size: 8,
  inline: {
    encode: (v, b, o) => `${b}.writeBigUInt64LE(${v}, ${o})`,
    decode: (b, o) => `${b}.readBigUInt64LE(${o})`,
  },
  encode: (v, b, o) => void b.writeBigUInt64LE(v, o),
  decode: (b, o) => b.readBigUInt64LE(o),
};
/** A u64 that always fits in a JS number (counters, ids); decode throws past 2^53. */
export const u64n: Codec<number> = {
  size: 8,
  encode: (v, b, o) => {
    b.writeUInt32LE(v % 0x1_0000_0000, o);
    b.writeUInt32LE(Math.floor(v / 0x1_0000_0000), o + 4);
  },
  decode: (b, o) => {
    const v = b.readUInt32LE(o) + b.readUInt32LE(o + 4) * 0x1_0000_0000;
    if (!Number.isSafeInteger(v)) throw new WeftError('WEFT_ERR_CODEC', `u64 ${v} exceeds 2^53`);
    return v;
  },
};
/** Network byte order, e.g. ports (__be16). */
export const be16: Codec<number> = {
  size: 2,
  inline: {
    encode: (v, b, o) =>
      `{ const x = ${v}; if (!(x >= 0 && x <= 0xffff)) outOfRange(x, 0xffff); ${b}[${o}] = x >>> 8; ${b}[${o} + 1] = x; }`,
    decode: (b, o) => `${b}.readUInt16BE(${o})`,
  },
  encode: (v, b, o) => void b.writeUInt16BE(v, o),
  decode: (b, o) => b.readUInt16BE(o),
};
export const be32: Codec<number> = {
  size: 4,
  inline: {
    encode: (v, b, o) =>
      `{ const x = ${v} >>> 0; ${b}[${o}] = x >>> 24; ${b}[${o} + 1] = x >>> 16; ${b}[${o} + 2] = x >>> 8; ${b}[${o} + 3] = x; }`,
    decode: (b, o) => `${b}.readUInt32BE(${o})`,
  },
  encode: (v, b, o) => void b.writeUInt32BE(v >>> 0, o),
  decode: (b, o) => b.readUInt32BE(o),
};

/** An IPv4 address as dotted quad ↔ 4 bytes in network order (__be32). */
export const ipv4: Codec<string> = {
  size: 4,
  encode(v, b, o) {
    let part = 0;
    let value = 0;
    let dots = 0;
    for (let i = 0; i < v.length; i++) {
      const c = v.charCodeAt(i);
      if (c === 46) {
        if (part === 0 && i > 0 && v.charCodeAt(i - 1) === 46) break;
        b[o + dots] = value;
        dots++;
        value = 0;
        part = 0;
        continue;
      }
      if (c < 48 || c > 57 || dots > 3) return badAddress('IPv4', v);
      value = value * 10 + (c - 48);
      part++;
      if (value > 255 || part > 3) return badAddress('IPv4', v);
    }
    if (dots !== 3 || part === 0) return badAddress('IPv4', v);
    b[o + 3] = value;
  },
  decode: (b, o) => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`,
};

/** An IPv6 address (any textual form, including ::ffff:a.b.c.d) ↔ 16 bytes. */
export const ipv6: Codec<string> = {
  size: 16,
  align: 4, // union { __u8[16]; __be32[4]; }
  encode(v, b, o) {
    const bytes = parseIPv6(v);
    if (!bytes) return badAddress('IPv6', v);
    b.set(bytes, o);
  },
  decode(b, o) {
    const groups: string[] = [];
    for (let i = 0; i < 8; i++) groups.push(b.readUInt16BE(o + i * 2).toString(16));
    return compressIPv6(groups);
  },
};

const v6scratch = Buffer.alloc(16);

/**
 * The address in the form the LB map codecs read back (dotted quad; RFC 5952 for IPv6), so
 * what the agent wants and what the maps hold compare as strings. Undefined if not an IP;
 * v4-mapped IPv6 is refused (the maps keep IPv4 frontends in the IPv4 maps).
 */
export function canonicalIP(address: string): { address: string; family: 4 | 6 } | undefined {
  if (isIPv4(address)) return { address: address.split('.').map(Number).join('.'), family: 4 };
  if (!isIPv6(address) || address.includes('%')) return undefined;
  ipv6.encode(address, v6scratch, 0);
  const text = ipv6.decode(v6scratch, 0);
  if (/^::ffff:[0-9a-f]{1,4}:[0-9a-f]{1,4}$/.test(text)) return undefined;
  return { address: text, family: 6 };
}

/**
 * "a.b.c.d/n" or "x::/n" → the network in canonical text, host bits cleared ("10.0.0.7/8" is
 * 10.0.0.0/8), as kube-proxy reads loadBalancerSourceRanges; undefined when it is not a CIDR.
 */
export function canonicalCIDR(text: string): { cidr: string; family: 4 | 6 } | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const ip = canonicalIP(text.slice(0, slash));
  const bits = text.slice(slash + 1);
  if (!ip || !/^\d{1,3}$/.test(bits)) return undefined;
  const prefix = Number(bits);
  const width = ip.family === 4 ? 32 : 128;
  if (prefix > width) return undefined;
  const bytes = Buffer.alloc(16);
  if (ip.family === 4) bytes.set(ip.address.split('.').map(Number), 0);
  else ipv6.encode(ip.address, bytes, 0);
  for (let bit = prefix; bit < width; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  const network = ip.family === 4 ? [...bytes.subarray(0, 4)].join('.') : ipv6.decode(bytes, 0);
  return { cidr: `${network}/${prefix}`, family: ip.family };
}

function badAddress(family: string, v: string): never {
  throw new WeftError('WEFT_ERR_CODEC', `"${v}" is not a valid ${family} address`);
}

export function parseIPv6(v: string): Uint8Array | undefined {
  if (!isIPv6(v)) return undefined;
  let text = v;
  const out = new Uint8Array(16);
  // A trailing dotted quad (::ffff:10.0.0.1) becomes the last two groups.
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (isIPv4(tail)) {
    const q = tail.split('.').map(Number);
    text = `${text.slice(0, lastColon + 1)}${((q[0]! << 8) | q[1]!).toString(16)}:${((q[2]! << 8) | q[3]!).toString(16)}`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const headGroups = head ? head.split(':') : [];
  const restGroups = rest ? rest.split(':') : [];
  const fill = 8 - headGroups.length - restGroups.length;
  const groups = [...headGroups, ...Array<string>(rest === undefined ? 0 : fill).fill('0'), ...restGroups];
  if (groups.length !== 8) return undefined;
  groups.forEach((g, i) => {
    const n = Number.parseInt(g, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  });
  return out;
}

function compressIPv6(groups: string[]): string {
  // The longest run of zero groups (length ≥ 2) becomes '::' (RFC 5952).
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i >= 2) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best === -1) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** Raw bytes of a fixed size (padding, opaque arrays). Decodes to a copy. */
export function bytes(size: number): Codec<Uint8Array> {
  return {
    size,
    align: 1,
    encode(v, b, o) {
      if (v.length > size) throw new WeftError('WEFT_ERR_CODEC', `${v.length} bytes do not fit in ${size}`);
      b.fill(0, o, o + size);
      b.set(v, o);
    },
    decode: (b, o) => new Uint8Array(b.subarray(o, o + size)),
  };
}

// ---- structs -----------------------------------------------------------------------------

/**
 * A C struct. `fields` lists every named member in declaration order with the codec for its
 * type; offsets follow C's natural alignment, and `pad` names explicit padding members (which
 * encode as zero and do not appear in the decoded value). `size` is checked against the sum.
 *
 *   const lb4Key = struct<Lb4Key>('lb4_key', 12, [['address', ipv4], ['dport', be16], ...]);
 */
export function struct<T extends object>(
  cName: string,
  size: number,
  members: ReadonlyArray<readonly [keyof T & string, Codec<unknown>] | readonly ['pad', number]>,
): StructCodec<T> {
  const layout: FieldLayout[] = [];
  const encoders: Array<{ name: string; offset: number; codec: Codec<unknown> }> = [];
  let offset = 0;
  let padIndex = 0;
  let maxAlign = 1;
  for (const [name, spec] of members) {
    if (name === 'pad' && typeof spec === 'number') {
      layout.push({ name: `pad${padIndex++}`, offset, size: spec });
      offset += spec;
      continue;
    }
    const codec = spec as Codec<unknown>;
    const align = codec.align ?? naturalAlignment(codec.size);
    maxAlign = Math.max(maxAlign, align);
    if (offset % align !== 0) {
      throw new WeftError('WEFT_ERR_CODEC', `${cName}.${name} at offset ${offset} is not ${align}-aligned`);
    }
    layout.push({ name, offset, size: codec.size });
    encoders.push({ name, offset, codec });
    offset += codec.size;
  }
  if (offset !== size) {
    throw new WeftError('WEFT_ERR_CODEC', `${cName}: members add up to ${offset} bytes, expected ${size}`);
  }
  const { encode, decode } = compileStruct<T>(cName, size, layout, encoders);
  return { cName, size, align: maxAlign, fields: layout, encode, decode };
}

/**
 * Compiles a struct's encode/decode into straight-line JavaScript (like fastify's
 * fast-json-stringify): direct property access, inline scalar reads/writes, explicit zeroing of
 * padding. A generic loop over fields costs ~3x more, and batch map writes encode 100k entries.
 */
function compileStruct<T>(
  cName: string,
  size: number,
  layout: FieldLayout[],
  encoders: Array<{ name: string; offset: number; codec: Codec<unknown> }>,
): Pick<Codec<T>, 'encode' | 'decode'> {
  const codecs = encoders.map((e) => e.codec);
  const enc: string[] = [];
  const dec: string[] = [];
  encoders.forEach((e, i) => {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(e.name)) {
      throw new WeftError(
        'WEFT_ERR_CODEC',
        `${cName}: field name ${JSON.stringify(e.name)} is not an identifier`,
      );
    }
    const off = `o + ${e.offset}`;
    if (e.codec.inline) {
      enc.push(`${e.codec.inline.encode(`v.${e.name}`, 'b', off)};`);
      dec.push(`${e.name}: ${e.codec.inline.decode('b', off)},`);
    } else {
      enc.push(`c[${i}].encode(v.${e.name}, b, ${off});`);
      dec.push(`${e.name}: c[${i}].decode(b, ${off}),`);
    }
  });
  for (const pad of layout.filter((f) => !encoders.some((e) => e.name === f.name))) {
    for (let k = 0; k < pad.size; k++) enc.push(`b[o + ${pad.offset + k}] = 0;`);
  }
  const build = new Function(
    'c',
    'size',
    'outOfRange',
    `return {
    encode(v, b, o) { ${enc.join('\n')} },
    decode(b, o) { return { ${dec.join('\n')} }; },
  };`,
  ) as (
    c: Codec<unknown>[],
    size: number,
    outOfRange: (value: number, max: number) => never,
  ) => Pick<Codec<T>, 'encode' | 'decode'>;
  return build(codecs, size, outOfRange);
}

/** What Buffer#writeUInt16LE throws for a value that does not fit. */
function outOfRange(value: number, max: number): never {
  throw Object.assign(
    new RangeError(`The value of "value" is out of range. It must be >= 0 and <= ${max}. Received ${value}`),
    { code: 'ERR_OUT_OF_RANGE' },
  );
}

function naturalAlignment(size: number): number {
  if (size >= 8) return 8;
  if (size >= 4) return 4;
  if (size >= 2) return 2;
  return 1;
}
