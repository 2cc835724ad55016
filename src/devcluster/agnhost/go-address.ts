import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';

/**
 * Go's host:port handling (net.SplitHostPort, JoinHostPort, Resolve*Addr and Addr.String()),
 * with Go's error texts: agnhost's `connect` prints them after "UNKNOWN:"/"DNS:", and /dial
 * returns them in its 400 responses.
 */

export class GoAddressError extends Error {
  override readonly name = 'GoAddressError';
  constructor(
    message: string,
    /** true when name resolution failed (connect prints "DNS:"), false for a malformed address. */
    readonly dns: boolean,
  ) {
    super(message);
  }
}

export interface ResolvedAddress {
  /** undefined: the empty host, which Go dials as the local system. */
  address: string | undefined;
  family: 4 | 6;
  port: number;
}

/** net.SplitHostPort. */
export function splitHostPort(hostport: string): { host: string; port: string } {
  const fail = (why: string) => new GoAddressError(`address ${hostport}: ${why}`, false);
  const colon = hostport.lastIndexOf(':');
  if (colon === -1) throw fail('missing port in address');
  let host: string;
  if (hostport.startsWith('[')) {
    const close = hostport.indexOf(']');
    if (close === -1) throw fail("missing ']' in address");
    if (close + 1 === hostport.length) throw fail('missing port in address');
    if (close + 1 !== colon)
      throw fail(hostport[close + 1] === ':' ? 'too many colons in address' : 'missing port in address');
    host = hostport.slice(1, close);
    if (host.includes('[') || host.includes(']')) throw fail("unexpected '[' in address");
  } else {
    host = hostport.slice(0, colon);
    if (host.includes(':')) throw fail('too many colons in address');
    if (host.includes('[')) throw fail("unexpected '[' in address");
    if (host.includes(']')) throw fail("unexpected ']' in address");
  }
  if (hostport.slice(colon + 1).includes('[') || hostport.slice(colon + 1).includes(']')) {
    throw fail("unexpected ']' in address");
  }
  return { host, port: hostport.slice(colon + 1) };
}

/** net.JoinHostPort. */
export function joinHostPort(host: string, port: string | number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** "ip:port" as Go's net.Addr prints it: IPv4-mapped IPv6 shown as IPv4, IPv6 bracketed. */
export function formatHostPort(address: string | undefined, port: number | undefined): string {
  if (address === undefined) return `:${port ?? 0}`;
  const plain = address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
  return joinHostPort(plain, port ?? 0);
}

/** Go's port lookup for numeric ports ("" is port 0); service names are not looked up. */
export function parseGoPort(network: 'tcp' | 'udp', port: string): number {
  if (port === '') return 0;
  if (/^\d+$/.test(port)) {
    const value = Number(port);
    if (value > 65535) throw new GoAddressError(`address ${port}: invalid port`, false);
    return value;
  }
  throw new GoAddressError(`lookup ${network}/${port}: unknown port`, true);
}

/** net.Resolve{TCP,UDP}Addr: the first address of the host, DNS errors worded like Go's. */
export async function resolveGoAddress(
  network: 'tcp' | 'udp',
  host: string,
  port: string,
): Promise<ResolvedAddress> {
  const portNumber = parseGoPort(network, port);
  if (host === '') return { address: undefined, family: 4, port: portNumber };
  const literal = host.includes('%') ? isIP(host.slice(0, host.indexOf('%'))) : isIP(host);
  if (literal === 4 || literal === 6) return { address: host, family: literal, port: portNumber };
  try {
    const found = await lookup(host);
    return { address: found.address, family: found.family === 6 ? 6 : 4, port: portNumber };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOTFOUND' || code === 'ENODATA'
        ? 'no such host'
        : code === 'EAI_AGAIN'
          ? 'server misbehaving'
          : String(code);
    throw new GoAddressError(`lookup ${host}: ${why}`, true);
  }
}
