/**
 * Go's wording of socket errors (syscall.Errno strings and net.OpError's "op network addr:
 * syscall: text" shape). agnhost's callers match on these texts: the e2e framework logs
 * /dial errors, and `connect` prints "OTHER: dial tcp 10.0.0.1:80: connect: no route to host".
 */
const ERRNO_TEXT: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'no route to host',
  ENETUNREACH: 'network is unreachable',
  ECONNRESET: 'connection reset by peer',
  ECONNABORTED: 'software caused connection abort',
  EPIPE: 'broken pipe',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EADDRNOTAVAIL: 'cannot assign requested address',
  EADDRINUSE: 'address already in use',
  EINVAL: 'invalid argument',
  EAFNOSUPPORT: 'address family not supported by protocol',
  EPROTONOSUPPORT: 'protocol not supported',
  EMSGSIZE: 'message too long',
  ENOBUFS: 'no buffer space available',
  EHOSTDOWN: 'host is down',
  ENETDOWN: 'network is down',
  EAGAIN: 'resource temporarily unavailable',
  ENOENT: 'no such file or directory',
  EISDIR: 'is a directory',
  ENOTDIR: 'not a directory',
};

export function errnoCode(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** syscall.Errno.Error() for a Node error, falling back to Node's own message. */
export function goErrnoText(err: unknown): string {
  const code = errnoCode(err);
  if (code !== undefined && ERRNO_TEXT[code] !== undefined) return ERRNO_TEXT[code];
  return err instanceof Error ? err.message : String(err);
}

/** "dial tcp 10.0.0.1:80: connect: connection refused". */
export function goDialErrorText(network: 'tcp' | 'udp', remote: string, err: unknown): string {
  return `dial ${network} ${remote}: connect: ${goErrnoText(err)}`;
}

/** "read udp 10.0.0.2:41234->10.0.0.1:8081: read: connection refused". */
export function goReadErrorText(network: 'tcp' | 'udp', local: string, remote: string, err: unknown): string {
  return `read ${network} ${local}->${remote}: read: ${goErrnoText(err)}`;
}
