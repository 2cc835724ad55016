import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { formatHostPort, joinHostPort } from './go-address.js';
import type { LogLine } from './go-log.js';
import { goErrnoText } from './go-net-errors.js';

/**
 * `agnhost serve-hostname`: answers its hostname (the pod name) over HTTP (default), or raw
 * over TCP and/or UDP with --http=false, on --port (9376), as the real subcommand does.
 */

export interface ServeHostnameConfig {
  tcp: boolean;
  udp: boolean;
  http: boolean;
  /** HTTP only: answer with "Connection: close" so every request uses a new connection. */
  close: boolean;
  port: number;
  hostname: string;
  /** Not a flag: bind to this address only (tests); the CLI listens on all addresses. */
  listenHost?: string;
  log: LogLine;
}

export interface ServeHostnameServer {
  readonly tcpPort?: number;
  readonly udpPort?: number;
  readonly httpPort?: number;
  close(): Promise<void>;
}

export class ServeHostnameStartError extends Error {
  override readonly name = 'ServeHostnameStartError';
}

/** The real subcommand refuses raw and HTTP modes together (its log.Fatalf text). */
export function serveHostnameConflict(
  config: Pick<ServeHostnameConfig, 'tcp' | 'udp' | 'http'>,
): string | undefined {
  return config.http && (config.tcp || config.udp)
    ? "Can't server TCP/UDP mode and HTTP mode at the same time"
    : undefined;
}

export async function startServeHostname(config: ServeHostnameConfig): Promise<ServeHostnameServer> {
  const conflict = serveHostnameConflict(config);
  if (conflict !== undefined) throw new ServeHostnameStartError(conflict);
  const { hostname, log } = config;
  const closers: (() => Promise<void>)[] = [];
  const closeAll = async () => {
    await Promise.all(closers.map((close) => close()));
  };
  const where =
    config.listenHost === undefined ? `:${config.port}` : joinHostPort(config.listenHost, config.port);
  try {
    let tcpPort: number | undefined;
    let udpPort: number | undefined;
    let httpPort: number | undefined;
    if (config.tcp) {
      const server: TcpServer = createTcpServer((socket) => {
        log(`TCP request from ${formatHostPort(socket.remoteAddress, socket.remotePort)}`);
        socket.on('error', () => socket.destroy());
        socket.end(hostname);
      });
      tcpPort = await listenOn(server, config, 'net.Listen');
      closers.push(() => new Promise((resolve) => server.close(() => resolve())));
    }
    if (config.udp) {
      const socket = await bindUdp(config, where);
      socket.on('message', (_message, peer) => {
        log(`UDP request from ${formatHostPort(peer.address, peer.port)}`);
        socket.send(hostname, peer.port, peer.address);
      });
      udpPort = socket.address().port;
      closers.push(() => new Promise((resolve) => socket.close(() => resolve())));
    }
    if (config.http) {
      const server: HttpServer = createHttpServer((req, res) => {
        log(`HTTP request from ${formatHostPort(req.socket.remoteAddress, req.socket.remotePort)}`);
        if (config.close) res.setHeader('Connection', 'close');
        const body = Buffer.from(hostname);
        res.setHeader('Content-Type', 'text/plain; charset=utf-8');
        res.setHeader('Content-Length', body.length);
        res.end(body);
      });
      httpPort = await listenOn(server, config, 'http.ListenAndServe');
      closers.push(
        () =>
          new Promise((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections();
          }),
      );
    }
    log(`Serving on port ${httpPort ?? tcpPort ?? udpPort ?? config.port}.`);
    return { tcpPort, udpPort, httpPort, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

function listenOn(server: TcpServer, config: ServeHostnameConfig, call: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', (err) => {
      const where =
        config.listenHost === undefined ? `:${config.port}` : joinHostPort(config.listenHost, config.port);
      reject(
        new ServeHostnameStartError(`Error from ${call}(): listen tcp ${where}: bind: ${goErrnoText(err)}`),
      );
    });
    server.listen({ port: config.port, host: config.listenHost }, () => {
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : config.port);
    });
  });
}

function bindUdp(config: ServeHostnameConfig, where: string): Promise<UdpSocket> {
  const bind = (type: 'udp4' | 'udp6', address: string) =>
    new Promise<UdpSocket>((resolve, reject) => {
      const socket = createSocket({ type, ipv6Only: false });
      socket.once('error', reject);
      socket.bind({ port: config.port, address }, () => {
        socket.off('error', reject);
        resolve(socket);
      });
    });
  const host = config.listenHost;
  const attempt =
    host !== undefined
      ? bind(host.includes(':') ? 'udp6' : 'udp4', host)
      : bind('udp6', '::').catch((err: NodeJS.ErrnoException) =>
          err.code === 'EAFNOSUPPORT' || err.code === 'EADDRNOTAVAIL'
            ? bind('udp4', '0.0.0.0')
            : Promise.reject(err),
        );
  return attempt.catch((err: unknown) => {
    throw new ServeHostnameStartError(
      `Error from ListenUDP(): listen udp ${where}: bind: ${goErrnoText(err)}`,
    );
  });
}
