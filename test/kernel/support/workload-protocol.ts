// Requests and replies between a kernel test and its workload processes (workload.ts).

export type WorkloadRequest = { seq: number } & (
  | { op: 'serve'; protocol: 'tcp' | 'udp'; name: string; host: string; port: number }
  /** `count` sequential connections; each reads the server's name, then closes. */
  | { op: 'tcp-connect'; host: string; port: number; count?: number }
  /** A connection kept open under `handle` for tcp-send. */
  | { op: 'tcp-open'; handle: string; host: string; port: number }
  | { op: 'tcp-send'; handle: string; text: string }
  | { op: 'tcp-close'; handle: string }
  /** One datagram and its reply; `connected` uses connect(2) + send(2) instead of sendto(2). */
  | { op: 'udp-request'; host: string; port: number; text: string; connected: boolean }
);

/** What getpeername(2) said about a TCP socket, and which backend answered. */
export interface TcpResult {
  backend: string;
  remoteAddress: string | null;
  remotePort: number | null;
}

export interface UdpResult {
  /** The backend's answer: `<name>:<text>`. */
  reply: string;
  /** The reply's source as recvmsg(2) reported it. */
  from: { address: string; port: number };
  /** getpeername(2) of a connected socket; null for sendto. */
  peer: { address: string; port: number } | null;
}
