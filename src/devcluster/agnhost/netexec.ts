import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { DialOutcome } from './dial.js';
import { formatHostPort, GoAddressError, joinHostPort, resolveGoAddress } from './go-address.js';
import { formatGoDuration, GoDurationError, parseGoDuration } from './go-duration.js';
import { goJsonMarshal } from './go-json.js';
import type { LogLine } from './go-log.js';
import { goErrnoText } from './go-net-errors.js';
import {
  goRequestHeader,
  serveMuxRedirectPath,
  writeGoError,
  writeGoRedirect,
  writeGoResponse,
} from './go-net-http.js';

/**
 * `agnhost netexec`: the HTTP(S) + UDP server that Kubernetes' network e2e tests talk to.
 * Endpoints, query parameters, bodies, status codes and the UDP protocol follow the real
 * agnhost (test/images/agnhost/netexec), so manifests and test code written for the image
 * behave the same against a devcluster pod. Only node:http, node:dgram and node:net are
 * loaded on the way to serving: a devcluster runs a hundred of these processes.
 */

export interface NetexecConfig {
  httpPort: number;
  /** -1 disables the UDP server. */
  udpPort: number;
  /** -1 (default) for none; anything else is logged as unsupported and not served. */
  sctpPort: number;
  /** Serve every request as a GET of this path and query. */
  httpOverride: string;
  tlsCertFile: string;
  tlsPrivateKeyFile: string;
  /** Comma-separated IPs the UDP servers bind to ('' = all addresses). */
  udpListenAddresses: string;
  /** Seconds between SIGTERM and exit, during which /readyz answers 503. */
  delayShutdownSeconds: number;
  /** What /hostname and the UDP "hostname" command return: the pod name. */
  hostname: string;
  /**
   * Not a flag: bind every listener to this address only. Tests use loopback; the real
   * agnhost (and the CLI) listens on all addresses, like Go's ":port".
   */
  listenHost?: string;
  shellPath?: string;
  log: LogLine;
}

export interface NetexecServer {
  readonly httpPort: number;
  readonly udpPorts: number[];
  /** Resolves with the exit code once the server has decided to exit (and closed everything). */
  readonly exited: Promise<number>;
  /** What SIGTERM does: /readyz turns 503, and after --delay-shutdown the server exits 0. */
  terminate(): void;
  /** Closes every listener and connection now, as process exit would. */
  close(): Promise<void>;
}

/** A listener could not start: agnhost's log.Fatal line, then exit 1. */
export class NetexecStartError extends Error {
  override readonly name = 'NetexecStartError';
}

const MAX_FORM_BODY_BYTES = 10 * 1024 * 1024;
const UDP_READ_BYTES = 2048;

export async function startNetexec(config: NetexecConfig): Promise<NetexecServer> {
  const log = config.log;
  const state = { ready: false, terminating: false, exiting: false };
  let resolveExit: (code: number) => void = () => {};
  const exited = new Promise<number>((resolve) => {
    resolveExit = resolve;
  });
  const udpSockets: UdpSocket[] = [];

  if (config.sctpPort !== -1) {
    log(`weft agnhost: SCTP is not supported; --sctp-port=${config.sctpPort} is ignored`);
  }
  if (config.udpPort !== -1) {
    const addresses = parseUdpListenAddresses(config.udpListenAddresses, config.listenHost);
    for (const address of addresses)
      udpSockets.push(await startUdpServer(address, config, log, () => shutdownNow(1)));
    state.ready = true;
  } else if (config.sctpPort !== -1) {
    // The real image turns ready once its SCTP server listens; without SCTP here, do not
    // leave such a pod unready forever.
    state.ready = true;
  }

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    if (state.exiting) res.setHeader('Connection', 'close');
    handleRequest(req, res, config, state, requestExit).catch((err: unknown) => {
      log(
        `http: panic serving ${formatHostPort(req.socket.remoteAddress, req.socket.remotePort)}: ${String(err)}`,
      );
      res.socket?.destroy();
    });
  };
  let server: Server;
  try {
    server = await createHttpServer(config, handler);
    // agnhost's Go http.Server has no IdleTimeout: an idle keep-alive connection stays open
    // until the client closes it. Node's default closes it after 5 s.
    server.keepAliveTimeout = 0;
    await listen(server, config.httpPort, config.listenHost);
  } catch (err) {
    for (const socket of udpSockets) socket.close();
    throw err;
  }
  const address = server.address();
  const httpPort = typeof address === 'object' && address !== null ? address.port : config.httpPort;
  log(`Started HTTP server on port ${httpPort}`);

  let closing: Promise<void> | undefined;
  function close(): Promise<void> {
    closing ??= new Promise<void>((resolve) => {
      for (const socket of udpSockets) {
        try {
          socket.close();
        } catch {
          // already closed
        }
      }
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closing;
  }

  function shutdownNow(code: number): void {
    state.exiting = true;
    // The exit code is known now: like os.Exit, the caller need not wait for sockets to close.
    void close();
    resolveExit(code);
  }

  /** /exit: with a timeout, stop accepting and let open requests finish first (server.Shutdown). */
  function requestExit(code: number, timeoutMs: number): void {
    if (state.exiting) return;
    if (timeoutMs <= 0) {
      shutdownNow(code);
      return;
    }
    state.exiting = true;
    const timer = setTimeout(() => shutdownNow(code), timeoutMs);
    server.close(() => {
      clearTimeout(timer);
      shutdownNow(code);
    });
    server.closeIdleConnections();
    log(`Graceful shutdown started, allowing ${formatGoDuration(timeoutMs)} for connections to close`);
  }

  let terminateTimer: NodeJS.Timeout | undefined;
  function terminate(): void {
    if (state.terminating) return;
    state.terminating = true;
    const delay = config.delayShutdownSeconds;
    if (delay > 0) {
      log(`Sleeping ${delay} seconds before terminating...`);
      terminateTimer = setTimeout(() => shutdownNow(0), delay * 1000);
    } else {
      shutdownNow(0);
    }
  }

  return {
    httpPort,
    udpPorts: udpSockets.map((socket) => socket.address().port),
    exited,
    terminate,
    close: () => {
      clearTimeout(terminateTimer);
      state.exiting = true;
      return close();
    },
  };
}

async function createHttpServer(
  config: NetexecConfig,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<Server> {
  if (config.tlsCertFile === '') return createServer(handler);
  let cert: Buffer;
  let key: Buffer;
  try {
    cert = await readFile(config.tlsCertFile);
    key = await readFile(config.tlsPrivateKeyFile);
  } catch (err) {
    const path = (err as NodeJS.ErrnoException).path ?? '';
    throw new NetexecStartError(`open ${path}: ${goErrnoText(err)}`);
  }
  // Loaded only for HTTPS pods: most never pay for the TLS stack.
  const https = await import('node:https');
  try {
    return https.createServer({ cert, key }, handler);
  } catch (err) {
    throw new NetexecStartError(`tls: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function listen(server: Server, port: number, host: string | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      const where = host === undefined ? `:${port}` : joinHostPort(host, port);
      reject(new NetexecStartError(`listen tcp ${where}: bind: ${goErrnoText(err)}`));
    };
    server.once('error', onError);
    server.listen({ port, host }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** --udp-listen-addresses: a sorted, de-duplicated list of IPs; '' means every address. */
export function parseUdpListenAddresses(
  flag: string,
  listenHost: string | undefined,
): (string | undefined)[] {
  if (flag === '') return [listenHost];
  const addresses = new Set<string>();
  for (const address of flag.split(',')) {
    if (isIP(address) === 0) throw new NetexecStartError(`parseAddress: invalid address ${address}`);
    addresses.add(address);
  }
  return [...addresses].sort();
}

function startUdpServer(
  address: string | undefined,
  config: NetexecConfig,
  log: LogLine,
  fatal: () => void,
): Promise<UdpSocket> {
  const where = address === undefined ? `:${config.udpPort}` : joinHostPort(address, config.udpPort);
  const bindOnce = (type: 'udp4' | 'udp6') =>
    new Promise<UdpSocket>((resolve, reject) => {
      const socket = createSocket({ type, ipv6Only: false });
      socket.once('error', reject);
      socket.bind({ port: config.udpPort, address: address ?? (type === 'udp6' ? '::' : '0.0.0.0') }, () => {
        socket.off('error', reject);
        resolve(socket);
      });
    });
  const family = address === undefined ? 0 : isIP(address);
  const attempt =
    family === 4
      ? bindOnce('udp4')
      : family === 6
        ? bindOnce('udp6')
        : // Like Go's ":port": dual-stack when the kernel has IPv6, IPv4 otherwise.
          bindOnce('udp6').catch((err: NodeJS.ErrnoException) =>
            err.code === 'EAFNOSUPPORT' || err.code === 'EADDRNOTAVAIL'
              ? bindOnce('udp4')
              : Promise.reject(err),
          );
  return attempt.then(
    (socket) => {
      log(`Started UDP server on port ${address ?? ''} ${socket.address().port}`);
      socket.on('message', (message, peer) => answerUdp(socket, message, peer, config.hostname, log));
      socket.on('error', (err) => {
        log(`Error occurred: failed accepting UDP connections:${goErrnoText(err)}`);
        fatal();
      });
      return socket;
    },
    (err: unknown) => {
      throw new NetexecStartError(
        `Error occurred: failed to create listener for UDP address ${where}:listen udp ${where}: bind: ${goErrnoText(err)}`,
      );
    },
  );
}

function answerUdp(
  socket: UdpSocket,
  message: Buffer,
  peer: { address: string; port: number },
  hostname: string,
  log: LogLine,
): void {
  const client = formatHostPort(peer.address, peer.port);
  // The real server lower-cases and trims what it reads, so "echo Hi" answers "hi".
  const text = message.subarray(0, UDP_READ_BYTES).toString('utf8').trim().toLowerCase();
  let reply: string | undefined;
  if (text === 'hostname') {
    log('Sending udp hostName response');
    reply = hostname;
  } else if (text.startsWith('echo ')) {
    reply = text.slice('echo '.length);
    log(`Echoing ${reply} to UDP client ${client}`);
  } else if (text === 'clientip') {
    log(`Sending clientip back to UDP client ${client}`);
    reply = client;
  } else if (text.length > 0) {
    log(`Unknown UDP command received from ${client}: ${text}`);
  }
  if (reply === undefined) return;
  socket.send(reply, peer.port, peer.address, (err) => {
    if (err) log(`failed to write to UDP client ${client}: ${goErrnoText(err)}`);
  });
}

interface ServerState {
  ready: boolean;
  terminating: boolean;
  exiting: boolean;
}

/** One request, as agnhost's ServeMux routes it. */
async function handleRequest(
  req: IncomingMessage,
  res: ServerResponse,
  config: NetexecConfig,
  state: ServerState,
  requestExit: (code: number, timeoutMs: number) => void,
): Promise<void> {
  const log = config.log;
  const overridden = config.httpOverride !== '';
  const method = overridden ? 'GET' : (req.method ?? 'GET');
  let target: URL;
  try {
    // Origin-form targets ("/path?query", even "//path") are paths, never protocol-relative URLs.
    const raw = overridden ? config.httpOverride : (req.url ?? '/');
    target = raw.startsWith('/') ? new URL(`http://netexec.invalid${raw}`) : new URL(raw);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    if (overridden) writeGoError(res, `override request failed: ${reason}`, 500);
    else writeGoError(res, `400 Bad Request: ${reason}`, 400);
    return;
  }
  const path = target.pathname;
  const cleaned = serveMuxRedirectPath(path);
  if (cleaned !== undefined && method !== 'CONNECT') {
    writeGoRedirect(res, method, path, cleaned + target.search, 301);
    return;
  }
  // An overriding request is synthesised by the real server: no client address, no headers.
  const clientAddress = overridden ? '' : formatHostPort(req.socket.remoteAddress, req.socket.remotePort);
  const form = overridden ? target.searchParams : await formValues(req, method, target.searchParams);
  const formValue = (key: string) => form.get(key) ?? '';

  switch (path) {
    case '/clientip':
      log('GET /clientip');
      writeGoResponse(res, 200, clientAddress);
      return;
    case '/header': {
      const key = formValue('key');
      const header = overridden ? {} : goRequestHeader(req);
      if (key !== '') {
        log(`GET /header?key=${key}`);
        const values = Object.entries(header).find(([name]) => name.toLowerCase() === key.toLowerCase())?.[1];
        writeGoResponse(res, 200, values?.[0] ?? '');
      } else {
        log('GET /header');
        writeGoResponse(res, 200, goJsonMarshal(header));
      }
      return;
    }
    case '/dial':
      await dial(res, target.searchParams, log);
      return;
    case '/echo': {
      const msg = formValue('msg');
      const codeText = formValue('code');
      log(`GET /echo?msg=${msg}&code=${codeText}`);
      if (codeText === '') {
        writeGoResponse(res, 200, msg);
        return;
      }
      const code = parseGoAtoi(codeText);
      if (typeof code === 'string') {
        writeGoResponse(res, 200, `argument 'code' must be an integer or empty, got ${goQuote(codeText)}\n`);
        return;
      }
      writeGoResponse(res, code, msg);
      return;
    }
    case '/exit':
      await exit(res, formValue, log, requestExit);
      return;
    case '/healthz':
      log('GET /healthz');
      writeGoResponse(res, state.ready ? 200 : 412);
      return;
    case '/readyz':
      log('GET /readyz');
      if (state.terminating) writeGoResponse(res, 503, 'shutting down');
      else if (state.ready) writeGoResponse(res, 200, 'ok');
      else writeGoResponse(res, 412);
      return;
    case '/hostname':
      log('GET /hostname');
      writeGoResponse(res, 200, config.hostname);
      return;
    case '/hostName':
      log('GET /hostName');
      writeGoResponse(res, 200, config.hostname);
      return;
    case '/serverport':
      log('GET /serverport');
      writeGoResponse(res, 200, String(req.socket.localPort ?? ''));
      return;
    case '/redirect': {
      const location = formValue('location');
      const codeText = formValue('code');
      log(`${method} /redirect?msg=${location}&code=${codeText}`);
      let code = 302;
      if (codeText !== '') {
        const parsed = parseGoAtoi(codeText);
        if (typeof parsed === 'string') {
          writeGoResponse(
            res,
            200,
            `argument 'code' must be an integer or empty, got ${goQuote(codeText)}\n`,
          );
          return;
        }
        code = parsed;
      }
      writeGoRedirect(res, method, path, location, code);
      return;
    }
    case '/shell': {
      const command = formValue('shellCommand') || formValue('cmd');
      log(`GET /shell?cmd=${command}`);
      const { runShell } = await import('./shell.js');
      const output = await runShell(config.shellPath ?? '/bin/sh', command);
      writeGoResponse(res, 200, goJsonMarshal(output));
      return;
    }
    case '/upload':
      log('GET /upload');
      // The real endpoint writes into /uploads; a devcluster pod shares the host's filesystem.
      writeGoError(res, 'weft agnhost: /upload is not supported (pods share the host filesystem)', 501);
      return;
    case '/shutdown':
      log('GET /shutdown');
      // os.Exit(0) before answering: the client sees the connection close.
      requestExit(0, 0);
      return;
    default:
      log('GET /');
      writeGoResponse(res, 200, `NOW: ${goTimeNow()}`);
  }
}

/** r.FormValue's sources: a urlencoded POST/PUT/PATCH body first, then the query. */
async function formValues(
  req: IncomingMessage,
  method: string,
  query: URLSearchParams,
): Promise<URLSearchParams> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (!['POST', 'PUT', 'PATCH'].includes(method) || type !== 'application/x-www-form-urlencoded')
    return query;
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_FORM_BODY_BYTES) return query;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_FORM_BODY_BYTES) return query;
    chunks.push(chunk as Buffer);
  }
  const merged = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
  for (const [key, value] of query) merged.append(key, value);
  return merged;
}

async function dial(res: ServerResponse, query: URLSearchParams, log: LogLine): Promise<void> {
  const host = query.get('host') ?? '';
  const port = query.get('port') ?? '';
  const request = query.get('request') ?? '';
  const protocol = query.get('protocol') ?? '';
  const triesText = query.get('tries') ?? '';
  log(`GET /dial?host=${host}&protocol=${protocol}&port=${port}&request=${request}&tries=${triesText}`);
  let tries = 1;
  if (triesText.length > 0) {
    const parsed = parseGoAtoi(triesText);
    if (typeof parsed === 'string') {
      writeGoError(res, `tries parameter is invalid. ${parsed}`, 400);
      return;
    }
    tries = parsed;
  }
  if (request.length === 0) {
    writeGoError(res, 'request parameter not specified. <nil>', 400);
    return;
  }
  const kind = protocol.toLowerCase();
  if (!['', 'http', 'udp', 'sctp'].includes(kind)) {
    writeGoError(res, `unsupported protocol. ${protocol}`, 400);
    return;
  }
  let target: Awaited<ReturnType<typeof resolveGoAddress>>;
  try {
    target = await resolveGoAddress(kind === 'udp' ? 'udp' : 'tcp', host, port);
  } catch (err) {
    if (!(err instanceof GoAddressError)) throw err;
    writeGoError(res, `host and/or port param are invalid. ${err.message}`, 400);
    return;
  }
  // A client that gives up stops the remaining tries: a hostile tries=1e9 costs nothing.
  const aborted = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) aborted.abort();
  });
  const dialer = await import('./dial.js');
  const dialOnce: () => Promise<DialOutcome> =
    kind === 'udp'
      ? () => dialer.dialUdp(target, request, aborted.signal)
      : kind === 'sctp'
        ? () => dialer.dialSctp(target)
        : () => dialer.dialHttp(target, request, aborted.signal);
  const responses: string[] = [];
  const errors: string[] = [];
  let last = '';
  for (let i = 0; i < tries && !aborted.signal.aborted; i++) {
    const outcome = await dialOnce();
    if ('response' in outcome) {
      responses.push(outcome.response);
      last = outcome.response;
    } else {
      errors.push(outcome.error);
      last = '';
    }
  }
  if (aborted.signal.aborted) return;
  // As in agnhost: "responses" appears only when the last try returned a non-empty body.
  const output: Record<string, string[]> = {};
  if (last.length > 0) output.responses = responses;
  if (errors.length > 0) output.errors = errors;
  writeGoResponse(res, 200, goJsonMarshal(output));
}

async function exit(
  res: ServerResponse,
  formValue: (key: string) => string,
  log: LogLine,
  requestExit: (code: number, timeoutMs: number) => void,
): Promise<void> {
  const waitText = formValue('wait');
  const timeoutText = formValue('timeout');
  const codeText = formValue('code');
  log(`GET /exit?code=${codeText}&timeout=${timeoutText}&wait=${waitText}`);
  const duration = (text: string): number | undefined => {
    if (text === '') return 0;
    try {
      return parseGoDuration(text);
    } catch (err) {
      if (err instanceof GoDurationError) return undefined;
      throw err;
    }
  };
  const timeoutMs = duration(timeoutText);
  if (timeoutMs === undefined) {
    writeGoResponse(
      res,
      200,
      `argument 'timeout' must be a valid golang duration or empty, got ${goQuote(timeoutText)}\n`,
    );
    return;
  }
  const waitMs = duration(waitText);
  if (waitMs === undefined) {
    writeGoResponse(
      res,
      200,
      `argument 'wait' must be a valid golang duration or empty, got ${goQuote(waitText)}\n`,
    );
    return;
  }
  const parsedCode = codeText === '' ? 0 : parseGoAtoi(codeText);
  if (typeof parsedCode === 'string') {
    writeGoResponse(
      res,
      200,
      `argument 'code' must be an integer [0-127] or empty, got ${goQuote(codeText)}\n`,
    );
    return;
  }
  // An exit status is one byte, as os.Exit makes it.
  const code = ((parsedCode % 256) + 256) % 256;
  log(
    `Will begin shutdown in ${formatGoDuration(waitMs)}, allowing ${formatGoDuration(timeoutMs)} for connections to close, then will exit with ${parsedCode}`,
  );
  if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
  if (timeoutMs <= 0) {
    requestExit(code, 0);
    return;
  }
  res.setHeader('Connection', 'close');
  writeGoResponse(res, 200);
  requestExit(code, timeoutMs);
}

/** strconv.Atoi: the number, or Go's error text. */
export function parseGoAtoi(text: string): number | string {
  if (!/^[+-]?\d+$/.test(text)) return `strconv.Atoi: parsing ${goQuote(text)}: invalid syntax`;
  const value = Number(text);
  if (!Number.isSafeInteger(value)) return `strconv.Atoi: parsing ${goQuote(text)}: value out of range`;
  return value;
}

/** Go's %q for the ASCII texts agnhost quotes. */
function goQuote(text: string): string {
  return JSON.stringify(text);
}

/** time.Now().String(): "2024-05-01 10:11:12.123456789 +0000 UTC m=+12.345678901". */
function goTimeNow(now: Date = new Date()): string {
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  const offsetMinutes = -now.getTimezoneOffset();
  const offsetSign = offsetMinutes >= 0 ? '+' : '-';
  const offset = `${offsetSign}${pad(Math.floor(Math.abs(offsetMinutes) / 60))}${pad(Math.abs(offsetMinutes) % 60)}`;
  const zone = offsetMinutes === 0 ? 'UTC' : offset;
  const date = `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
  const time = `${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())}.${pad(now.getMilliseconds(), 3)}000000`;
  return `${date} ${time} ${offset} ${zone} m=+${process.uptime().toFixed(9)}`;
}
