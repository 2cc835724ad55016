// A process inside one namespace of the NodePort test topology (nodeport-topology.ts), driven
// over stdin/stdout with one JSON request and one JSON reply per line. As a backend it serves
// TCP and UDP and answers every message with its name and the client address it saw; as an
// external client it connects and sends exactly as an application would (node:net,
// node:dgram), and reports the errno a failure gave (ECONNREFUSED, ...).
//
//   ip netns exec <ns> node --import tsx test/kernel/support/nodeport-peer.ts
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server, Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { serveRequests } from './request-channel.js';

export type PeerRequest = { seq: number } & (
  | { op: 'serve'; name: string; host: string; port: number }
  /** `count` sequential connections: each sends one line, reads the answer, closes. */
  | { op: 'tcp'; host: string; port: number; count: number; text?: string }
  /** A connection kept open under `handle` for tcp-send. */
  | { op: 'tcp-open'; handle: string; host: string; port: number }
  | { op: 'tcp-send'; handle: string; text: string }
  | { op: 'tcp-close'; handle: string }
  /** `count` datagrams, each from a new connected UDP socket, each awaiting its answer. */
  | { op: 'udp'; host: string; port: number; count: number; size?: number }
);

/** One exchange: who answered, the client address it saw, or the errno the attempt failed with. */
export type Exchange =
  | { ok: true; backend: string; seenFrom: string; localPort: number; length: number }
  | { ok: false; code: string };

/**
 * How long one attempt may take before it counts as ETIMEDOUT. Not an assertion on time: it
 * turns a hang (a packet the datapath lost) into a failure the test reports, where a refusal
 * or an answer comes in microseconds.
 */
const ATTEMPT_LIMIT_MS = 10_000;

const servers: Array<Server | UdpSocket> = [];
const open = new Map<string, { socket: Socket; lines: AsyncIterator<string> }>();

/** "<name> <address>:<port> <text>" */
function answer(name: string, address: string, port: number, text: string): string {
  return `${name} ${address}:${port} ${text}`;
}

function parseAnswer(line: string, localPort: number): Exchange {
  const [backend = '', seenFrom = '', ...rest] = line.split(' ');
  return { ok: true, backend, seenFrom, localPort, length: rest.join(' ').length };
}

function serve(name: string, host: string, port: number): Promise<void> {
  const tcp = createServer((socket) => {
    socket.setEncoding('utf8');
    const lines = createInterface({ input: socket });
    lines.on('line', (line) =>
      socket.write(`${answer(name, socket.remoteAddress ?? '?', socket.remotePort ?? 0, line)}\n`),
    );
    socket.on('error', () => socket.destroy());
  });
  const udp = createSocket('udp4');
  udp.on('message', (msg, rinfo) =>
    udp.send(answer(name, rinfo.address, rinfo.port, msg.toString()), rinfo.port, rinfo.address),
  );
  servers.push(tcp, udp);
  return Promise.all([
    new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen({ host, port }, () => resolve());
    }),
    new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(port, host, () => resolve());
    }),
  ]).then(() => undefined);
}

function withLimit<T>(what: string, p: Promise<T>, cleanup: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new Error(`${what}: no answer within ${ATTEMPT_LIMIT_MS} ms`) as NodeJS.ErrnoException;
      err.code = 'ETIMEDOUT';
      reject(err);
    }, ATTEMPT_LIMIT_MS);
  });
  return Promise.race([p, limit]).finally(() => {
    clearTimeout(timer);
    cleanup();
  });
}

async function tcpOpen(
  host: string,
  port: number,
): Promise<{ socket: Socket; lines: AsyncIterator<string> }> {
  const socket = new Socket();
  socket.setEncoding('utf8');
  const lines = createInterface({ input: socket })[Symbol.asyncIterator]();
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.connect({ host, port }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  return { socket, lines };
}

async function tcpExchange(socket: Socket, lines: AsyncIterator<string>, text: string): Promise<Exchange> {
  socket.write(`${text}\n`);
  const next = await lines.next();
  if (next.done)
    throw Object.assign(new Error('connection closed before the answer'), { code: 'ECONNRESET' });
  return parseAnswer(next.value, socket.localPort ?? 0);
}

async function tcpOnce(host: string, port: number, text: string): Promise<Exchange> {
  let socket: Socket | undefined;
  try {
    return await withLimit(
      `tcp ${host}:${port}`,
      (async () => {
        const conn = await tcpOpen(host, port);
        socket = conn.socket;
        return tcpExchange(conn.socket, conn.lines, text);
      })(),
      () => socket?.destroy(),
    );
  } catch (err) {
    return { ok: false, code: (err as NodeJS.ErrnoException).code ?? 'ERROR' };
  }
}

/** One datagram from a connected socket: ICMP port unreachable surfaces as ECONNREFUSED. */
async function udpOnce(host: string, port: number, size: number): Promise<Exchange> {
  const socket = createSocket('udp4');
  try {
    return await withLimit(
      `udp ${host}:${port}`,
      new Promise<Exchange>((resolve, reject) => {
        socket.once('error', reject);
        socket.once('message', (msg) => resolve(parseAnswer(msg.toString(), socket.address().port)));
        socket.connect(port, host, () => socket.send('x'.repeat(size)));
      }),
      () => socket.close(),
    );
  } catch (err) {
    return { ok: false, code: (err as NodeJS.ErrnoException).code ?? 'ERROR' };
  }
}

async function handle(req: PeerRequest): Promise<unknown> {
  switch (req.op) {
    case 'serve':
      await serve(req.name, req.host, req.port);
      return {};
    case 'tcp': {
      const out: Exchange[] = [];
      for (let i = 0; i < req.count; i++) out.push(await tcpOnce(req.host, req.port, req.text ?? 'hello'));
      return out;
    }
    case 'tcp-open': {
      const conn = await withLimit(`tcp ${req.host}:${req.port}`, tcpOpen(req.host, req.port), () => {});
      open.set(req.handle, conn);
      return tcpExchange(conn.socket, conn.lines, 'hello');
    }
    case 'tcp-send': {
      const conn = open.get(req.handle);
      if (!conn) throw new Error(`no open connection ${req.handle}`);
      return withLimit('tcp-send', tcpExchange(conn.socket, conn.lines, req.text), () => {});
    }
    case 'tcp-close':
      open.get(req.handle)?.socket.destroy();
      open.delete(req.handle);
      return {};
    case 'udp': {
      const out: Exchange[] = [];
      for (let i = 0; i < req.count; i++) out.push(await udpOnce(req.host, req.port, req.size ?? 5));
      return out;
    }
  }
}

serveRequests<PeerRequest>(handle, () => {
  for (const { socket } of open.values()) socket.destroy();
  for (const s of servers) s.close();
});
