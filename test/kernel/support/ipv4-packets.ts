// Ethernet/IPv4/TCP/UDP frames built and read byte by byte, with checksums computed here
// independently of the kernel, for tests that feed tc programs through BPF_PROG_TEST_RUN.

export const ETH_HLEN = 14;
export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

export const CLIENT_MAC = Buffer.from([0x02, 0, 0, 0, 0, 0x0c]);
export const NODE_MAC = Buffer.from([0x02, 0, 0, 0, 0, 0x01]);

export interface Ipv4Spec {
  src: string;
  dst: string;
  proto: number;
  ttl?: number;
  id?: number;
  /** Flags and fragment offset (in 8-byte units) as in the header: 0x2000 = MF. */
  fragOff?: number;
  /** IP options, a multiple of 4 bytes. */
  options?: Buffer;
  /** Everything after the IP header (a whole L4 segment, or a later fragment's bytes). */
  payload: Buffer;
}

export function addressBytes(a: string): Buffer {
  return Buffer.from(a.split('.').map(Number));
}

export function addressText(b: Buffer, offset: number): string {
  return `${b[offset]}.${b[offset + 1]}.${b[offset + 2]}.${b[offset + 3]}`;
}

/** The Internet checksum (RFC 1071) of `parts`, concatenated. */
export function internetChecksum(...parts: Buffer[]): number {
  const all = Buffer.concat(parts);
  let sum = 0;
  for (let i = 0; i + 1 < all.length; i += 2) sum += all.readUInt16BE(i);
  if (all.length % 2) sum += all[all.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function pseudoHeader(src: string, dst: string, proto: number, length: number): Buffer {
  const p = Buffer.alloc(12);
  addressBytes(src).copy(p, 0);
  addressBytes(dst).copy(p, 4);
  p[9] = proto;
  p.writeUInt16BE(length, 10);
  return p;
}

export function tcpSegment(opts: {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  seq?: number;
  ack?: number;
  flags: number;
  options?: Buffer;
  payload?: Buffer;
}): Buffer {
  const options = opts.options ?? Buffer.alloc(0);
  const payload = opts.payload ?? Buffer.alloc(0);
  const h = Buffer.alloc(20 + options.length);
  h.writeUInt16BE(opts.sport, 0);
  h.writeUInt16BE(opts.dport, 2);
  h.writeUInt32BE(opts.seq ?? 0, 4);
  h.writeUInt32BE(opts.ack ?? 0, 8);
  h[12] = (h.length / 4) << 4;
  h[13] = opts.flags;
  h.writeUInt16BE(64_240, 14);
  options.copy(h, 20);
  const seg = Buffer.concat([h, payload]);
  seg.writeUInt16BE(internetChecksum(pseudoHeader(opts.src, opts.dst, PROTO_TCP, seg.length), seg), 16);
  return seg;
}

/** A UDP datagram; `noChecksum` sends 0 ("no checksum"), as IPv4 allows. */
export function udpDatagram(opts: {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  payload: Buffer;
  noChecksum?: boolean;
}): Buffer {
  const d = Buffer.alloc(8 + opts.payload.length);
  d.writeUInt16BE(opts.sport, 0);
  d.writeUInt16BE(opts.dport, 2);
  d.writeUInt16BE(d.length, 4);
  opts.payload.copy(d, 8);
  if (!opts.noChecksum) {
    const c = internetChecksum(pseudoHeader(opts.src, opts.dst, PROTO_UDP, d.length), d);
    d.writeUInt16BE(c === 0 ? 0xffff : c, 6);
  }
  return d;
}

/** An Ethernet frame (client → node) carrying an IPv4 packet with a valid header checksum. */
export function ipv4Frame(spec: Ipv4Spec): Buffer {
  const options = spec.options ?? Buffer.alloc(0);
  const ip = Buffer.alloc(20 + options.length);
  ip[0] = 0x40 | (ip.length / 4);
  ip.writeUInt16BE(ip.length + spec.payload.length, 2);
  ip.writeUInt16BE(spec.id ?? 0x1234, 4);
  ip.writeUInt16BE(spec.fragOff ?? 0, 6);
  ip[8] = spec.ttl ?? 64;
  ip[9] = spec.proto;
  addressBytes(spec.src).copy(ip, 12);
  addressBytes(spec.dst).copy(ip, 16);
  options.copy(ip, 20);
  ip.writeUInt16BE(internetChecksum(ip), 10);
  const eth = Buffer.alloc(ETH_HLEN);
  NODE_MAC.copy(eth, 0);
  CLIENT_MAC.copy(eth, 6);
  eth.writeUInt16BE(0x0800, 12);
  return Buffer.concat([eth, ip, spec.payload]);
}

/** What a test reads back from a frame a program returned. */
export interface ParsedIpv4 {
  dstMac: Buffer;
  srcMac: Buffer;
  ihl: number;
  totalLength: number;
  id: number;
  fragOff: number;
  ttl: number;
  proto: number;
  src: string;
  dst: string;
  options: Buffer;
  /** The bytes after the IP header, as far as totalLength says. */
  payload: Buffer;
  ipChecksumValid: boolean;
  sport: number;
  dport: number;
  /** The L4 checksum field as the frame holds it. */
  l4Checksum: number;
  /** For a whole (unfragmented) TCP/UDP/ICMP packet: whether its checksum verifies. */
  l4ChecksumValid: boolean;
}

export function parseIpv4Frame(frame: Buffer): ParsedIpv4 {
  const ip = frame.subarray(ETH_HLEN);
  const ihl = (ip[0]! & 0x0f) * 4;
  const totalLength = ip.readUInt16BE(2);
  const payload = ip.subarray(ihl, totalLength);
  const src = addressText(ip, 12);
  const dst = addressText(ip, 16);
  const proto = ip[9]!;
  let l4Checksum = 0;
  let l4ChecksumValid = false;
  if (proto === PROTO_TCP && payload.length >= 20) {
    l4Checksum = payload.readUInt16BE(16);
    l4ChecksumValid = internetChecksum(pseudoHeader(src, dst, proto, payload.length), payload) === 0;
  } else if (proto === PROTO_UDP && payload.length >= 8) {
    l4Checksum = payload.readUInt16BE(6);
    l4ChecksumValid =
      l4Checksum === 0 || internetChecksum(pseudoHeader(src, dst, proto, payload.length), payload) === 0;
  } else if (proto === PROTO_ICMP) {
    l4Checksum = payload.readUInt16BE(2);
    l4ChecksumValid = internetChecksum(payload) === 0;
  }
  return {
    dstMac: Buffer.from(frame.subarray(0, 6)),
    srcMac: Buffer.from(frame.subarray(6, 12)),
    ihl,
    totalLength,
    id: ip.readUInt16BE(4),
    fragOff: ip.readUInt16BE(6),
    ttl: ip[8]!,
    proto,
    src,
    dst,
    options: Buffer.from(ip.subarray(20, ihl)),
    payload: Buffer.from(payload),
    ipChecksumValid: internetChecksum(ip.subarray(0, ihl)) === 0,
    sport: payload.length >= 4 ? payload.readUInt16BE(0) : 0,
    dport: payload.length >= 4 ? payload.readUInt16BE(2) : 0,
    l4Checksum,
    l4ChecksumValid,
  };
}
