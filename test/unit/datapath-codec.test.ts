import { describe, expect, it } from 'vitest';
import {
  be16,
  be32,
  bytes,
  ipv4,
  ipv6,
  s32,
  struct,
  u8,
  u16,
  u32,
  u64,
  u64n,
} from '../../src/datapath/codec.js';
import { WeftError } from '../../src/shared/errors.js';

function roundTrip<T>(
  codec: { size: number; encode(v: T, b: Buffer, o: number): void; decode(b: Buffer, o: number): T },
  v: T,
) {
  const buf = Buffer.alloc(codec.size + 3, 0xee);
  codec.encode(v, buf, 3);
  return { decoded: codec.decode(buf, 3), bytes: buf.subarray(3) };
}

describe('scalar codecs', () => {
  it.each([
    ['u8', u8, 200, 'c8'],
    ['u16 (host order)', u16, 0x1234, '3412'],
    ['u32 (host order)', u32, 0xdeadbeef, 'efbeadde'],
    ['s32', s32, -2, 'feffffff'],
    ['be16 (network order, ports)', be16, 8080, '1f90'],
    ['be32 (network order)', be32, 0x0a600001, '0a600001'],
    ['u64', u64, 0x0102030405060708n, '0807060504030201'],
    ['u64n', u64n, 2 ** 40 + 5, '0500000000010000'],
  ] as const)('%s round-trips and lays out bytes like C', (_name, codec, value, hex) => {
    const { decoded, bytes: b } = roundTrip(codec as never, value as never);
    expect(decoded).toEqual(value);
    expect(b.toString('hex')).toBe(hex);
  });
});

describe('address codecs', () => {
  it.each([
    ['10.96.0.1', '0a600001'],
    ['0.0.0.0', '00000000'],
    ['255.255.255.255', 'ffffffff'],
  ])('ipv4 %s is stored in network order', (addr, hex) => {
    const { decoded, bytes: b } = roundTrip(ipv4, addr);
    expect(decoded).toBe(addr);
    expect(b.toString('hex')).toBe(hex);
  });

  it.each(['10.96.0', '10.96.0.256', '1.2.3.4.5', 'a.b.c.d', '', '1..2.3', '10.96.0.1 '])(
    'ipv4 rejects %j with a clear error',
    (bad) => {
      expect(() => ipv4.encode(bad, Buffer.alloc(4), 0)).toThrowError(/not a valid IPv4 address/);
    },
  );

  it.each([
    ['fd00::1', 'fd000000000000000000000000000001', 'fd00::1'],
    ['::ffff:10.96.0.1', '00000000000000000000ffff0a600001', '::ffff:a60:1'],
    ['2001:db8:0:0:1:0:0:1', '20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
    ['::', '00000000000000000000000000000000', '::'],
  ])('ipv6 %s round-trips in RFC 5952 form', (addr, hex, canonical) => {
    const { decoded, bytes: b } = roundTrip(ipv6, addr);
    expect(b.toString('hex')).toBe(hex);
    expect(decoded).toBe(canonical);
  });

  it('ipv6 rejects garbage', () => {
    expect(() => ipv6.encode('fd00:::1', Buffer.alloc(16), 0)).toThrowError(WeftError);
  });
});

describe('struct codecs', () => {
  interface Key {
    address: string;
    dport: number;
    slot: number;
    proto: number;
  }
  const key = struct<Key>('demo_key', 12, [
    ['address', ipv4],
    ['dport', be16],
    ['slot', u16],
    ['proto', u8],
    ['pad', 3],
  ]);

  it('records every member offset, padding included', () => {
    expect(key.fields).toEqual([
      { name: 'address', offset: 0, size: 4 },
      { name: 'dport', offset: 4, size: 2 },
      { name: 'slot', offset: 6, size: 2 },
      { name: 'proto', offset: 8, size: 1 },
      { name: 'pad0', offset: 9, size: 3 },
    ]);
  });

  it('zeroes padding, so equal keys are equal bytes in a hash map', () => {
    const buf = Buffer.alloc(12, 0xff);
    key.encode({ address: '10.96.0.10', dport: 53, slot: 0, proto: 17 }, buf, 0);
    expect(buf.toString('hex')).toBe('0a60000a0035000011000000');
    expect(key.decode(buf, 0)).toEqual({ address: '10.96.0.10', dport: 53, slot: 0, proto: 17 });
  });

  it('writes every byte of its scalars in their byte order, and refuses a 16-bit value that does not fit', () => {
    const wide = struct<{ a: number; b: number; c: number; d: number }>('wide', 12, [
      ['a', u16],
      ['b', be16],
      ['c', u32],
      ['d', be32],
    ]);
    const buf = Buffer.alloc(12);
    wide.encode({ a: 0x1234, b: 0x1234, c: 0x89abcdef, d: 0x89abcdef }, buf, 0);
    expect(buf.toString('hex')).toBe('34121234efcdab8989abcdef');
    expect(wide.decode(buf, 0)).toEqual({ a: 0x1234, b: 0x1234, c: 0x89abcdef, d: 0x89abcdef });
    expect(() => wide.encode({ a: 0x10000, b: 0, c: 0, d: 0 }, buf, 0)).toThrowError(RangeError);
    expect(() => wide.encode({ a: 0, b: -1, c: 0, d: 0 }, buf, 0)).toThrowError(/out of range/);
  });

  it('nests structs and bytes', () => {
    const outer = struct<{ k: Key; tag: Uint8Array; n: number }>('outer', 20, [
      ['k', key],
      ['tag', bytes(4)],
      ['n', u32],
    ]);
    const v = {
      k: { address: '1.2.3.4', dport: 80, slot: 2, proto: 6 },
      tag: new Uint8Array([1, 2, 3, 4]),
      n: 7,
    };
    expect(roundTrip(outer, v).decoded).toEqual(v);
  });

  it('refuses a layout whose members do not add up to the C size', () => {
    expect(() => struct('bad', 8, [['a', u32]])).toThrowError(/add up to 4 bytes, expected 8/);
  });

  it('refuses a misaligned member (C would have inserted padding)', () => {
    expect(() =>
      struct<{ a: number; b: number }>('bad', 8, [
        ['a', u16],
        ['b', u32],
        ['pad', 2],
      ]),
    ).toThrowError(/not 4-aligned/);
  });
});
