import { createSocket } from 'node:dgram';
import { connect as tcpConnect } from 'node:net';
import { formatHostPort, GoAddressError, resolveGoAddress, splitHostPort } from './go-address.js';
import { goDialErrorText, goErrnoText, goReadErrorText } from './go-net-errors.js';

/**
 * `agnhost connect <host:port>`: one connection attempt, and on failure one line on stderr
 * starting with a fixed word that tests match on — UNKNOWN (bad input), DNS, TIMEOUT,
 * REFUSED, OTHER — and exit status 1. The real subcommand exits 1 for every failure (its
 * README: strings are easier for tests to compare than exit codes), and so does this one.
 */

export interface ConnectOptions {
  destination: string;
  /** 0: no limit of our own (the kernel's connect timeout applies), as in agnhost. */
  timeoutMs: number;
  protocol: string;
  /** The payload of a UDP probe, sent with a trailing newline. */
  udpData: string;
}

export interface ConnectResult {
  exitCode: 0 | 1;
  /** Exactly what agnhost prints on stderr ('' on success). */
  stderr: string;
}

const ok: ConnectResult = { exitCode: 0, stderr: '' };
const failed = (stderr: string): ConnectResult => ({ exitCode: 1, stderr });

export async function runConnect(options: ConnectOptions): Promise<ConnectResult> {
  switch (options.protocol) {
    case '':
    case 'tcp':
      return connectTcp(options);
    case 'udp':
      return connectUdp(options);
    case 'sctp':
      return connectSctp(options);
    default:
      // Go's fmt.Fprint puts no separator between the two strings.
      return failed(`Unsupported protocol\n${options.protocol}`);
  }
}

async function resolve(network: 'tcp' | 'udp', destination: string) {
  const { host, port } = splitHostPort(destination);
  return resolveGoAddress(network, host, port);
}

async function connectTcp(options: ConnectOptions): Promise<ConnectResult> {
  let target: Awaited<ReturnType<typeof resolve>>;
  try {
    splitHostPort(options.destination);
  } catch (err) {
    if (err instanceof GoAddressError) return failed(`UNKNOWN: ${err.message}\n`);
    throw err;
  }
  try {
    target = await resolve('tcp', options.destination);
  } catch (err) {
    if (err instanceof GoAddressError) return failed(`DNS: ${err.message}\n`);
    throw err;
  }
  const remote = formatHostPort(target.address, target.port);
  return new Promise<ConnectResult>((done) => {
    const socket = tcpConnect({ host: target.address ?? 'localhost', port: target.port });
    let timer: NodeJS.Timeout | undefined;
    const finish = (result: ConnectResult) => {
      clearTimeout(timer);
      socket.destroy();
      done(result);
    };
    if (options.timeoutMs > 0) timer = setTimeout(() => finish(failed('TIMEOUT\n')), options.timeoutMs);
    socket.once('connect', () => finish(ok));
    socket.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') finish(failed('REFUSED\n'));
      // Go's OpError.Timeout() is true for ETIMEDOUT: the kernel gave up on the SYN.
      else if (err.code === 'ETIMEDOUT' || err.code === 'EAGAIN') finish(failed('TIMEOUT\n'));
      else finish(failed(`OTHER: ${goDialErrorText('tcp', remote, err)}\n`));
    });
  });
}

async function connectUdp(options: ConnectOptions): Promise<ConnectResult> {
  let target: Awaited<ReturnType<typeof resolve>>;
  try {
    target = await resolve('udp', options.destination);
  } catch (err) {
    if (err instanceof GoAddressError) return failed(`DNS: ${err.message}\n`);
    throw err;
  }
  const remote = formatHostPort(target.address, target.port);
  return new Promise<ConnectResult>((done) => {
    const socket = createSocket(target.family === 6 ? 'udp6' : 'udp4');
    let local = '';
    let connected = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (result: ConnectResult) => {
      clearTimeout(timer);
      try {
        socket.close();
      } catch {
        // already closed
      }
      done(result);
    };
    // parseUDPErrorAndExit in agnhost: timeouts, refusals, and anything else as UNKNOWN.
    const readFailed = (err: unknown, op: 'read' | 'write') => {
      const code = (err as NodeJS.ErrnoException).code;
      const text =
        op === 'read'
          ? goReadErrorText('udp', local, remote, err)
          : `write udp ${local}->${remote}: write: ${goErrnoText(err)}`;
      if (code === 'ECONNREFUSED') finish(failed(`REFUSED: ${text}\n`));
      else finish(failed(`UNKNOWN: ${text}\n`));
    };
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected) finish(failed(`OTHER: ${goDialErrorText('udp', remote, err)}\n`));
      else readFailed(err, err.syscall === 'send' ? 'write' : 'read');
    });
    socket.on('message', (message) => {
      if (message.length === 0) {
        finish(
          failed(
            'OTHER: No data received from the server. Cannot guarantee the server received the request.\n',
          ),
        );
      } else {
        finish(ok);
      }
    });
    socket.connect(target.port, target.address ?? (target.family === 6 ? '::1' : '127.0.0.1'), () => {
      connected = true;
      const address = socket.address();
      local = formatHostPort(address.address, address.port);
      if (options.timeoutMs > 0) {
        timer = setTimeout(
          () => finish(failed(`TIMEOUT: read udp ${local}->${remote}: i/o timeout\n`)),
          options.timeoutMs,
        );
      }
      socket.send(`${options.udpData}\n`);
    });
  });
}

/** No SCTP client in Node: what agnhost prints on a kernel without SCTP. */
async function connectSctp(options: ConnectOptions): Promise<ConnectResult> {
  try {
    await resolve('tcp', options.destination);
  } catch (err) {
    if (err instanceof GoAddressError) return failed(`DNS: ${err.message}\n`);
    throw err;
  }
  return failed('OTHER: protocol not supported\n');
}
