// A test workload that runs inside a sandbox (network namespace, maybe a cgroup) and does what
// the test asks over stdin/stdout, one JSON request and one JSON reply per line. It serves
// (TCP and UDP servers that answer with their name) and acts as a client (connects and sends
// exactly as an application would: node:net and node:dgram, so getpeername and recvmsg are the
// real system calls the socket LB hooks).
//
//   node --import tsx test/kernel/support/workload.ts
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server, Socket } from 'node:net';
import { serveRequests } from './request-channel.js';
import type { WorkloadRequest } from './workload-protocol.js';

const servers: Array<Server | UdpSocket> = [];
const open = new Map<string, { socket: Socket; lines: LineReader }>();

/** Reads a socket line by line; `next()` resolves with the next line or rejects on close. */
class LineReader {
  private buffered = '';
  private waiting: Array<{ resolve(line: string): void; reject(err: Error): void }> = [];
  private ended?: Error;

  constructor(socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffered += chunk;
      for (
        let nl = this.buffered.indexOf('\n');
        nl >= 0 && this.waiting.length > 0;
        nl = this.buffered.indexOf('\n')
      ) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        this.waiting.shift()!.resolve(line);
      }
    });
    const end = (err?: Error) => {
      this.ended = err ?? new Error('connection closed');
      for (const w of this.waiting.splice(0)) w.reject(this.ended);
    };
    socket.on('error', end);
    socket.on('close', () => end());
  }

  next(): Promise<string> {
    const nl = this.buffered.indexOf('\n');
    if (nl >= 0) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      return Promise.resolve(line);
    }
    if (this.ended) return Promise.reject(this.ended);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }
}

function serveTcp(name: string, host: string, port: number): Promise<void> {
  const server = createServer((socket) => {
    socket.setEncoding('utf8');
    socket.write(`${name}\n`);
    let buffered = '';
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        socket.write(`${name}:${buffered.slice(0, nl)}\n`);
        buffered = buffered.slice(nl + 1);
      }
    });
    socket.on('error', () => socket.destroy());
  });
  servers.push(server);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, ipv6Only: host.includes(':') }, () => resolve());
  });
}

function serveUdp(name: string, host: string, port: number): Promise<void> {
  const socket = createSocket({ type: host.includes(':') ? 'udp6' : 'udp4', ipv6Only: host.includes(':') });
  socket.on('message', (msg, rinfo) => socket.send(`${name}:${msg.toString()}`, rinfo.port, rinfo.address));
  servers.push(socket);
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, host, () => resolve());
  });
}

/** Connects, reads the server's name, and reports what getpeername said. */
async function tcpConnect(
  host: string,
  port: number,
): Promise<{ socket: Socket; lines: LineReader; name: string }> {
  const socket = new Socket();
  const lines = new LineReader(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.connect({ host, port }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  const name = await lines.next();
  return { socket, lines, name };
}

function peerOf(socket: Socket) {
  return { remoteAddress: socket.remoteAddress ?? null, remotePort: socket.remotePort ?? null };
}

async function udpRequest(req: Extract<WorkloadRequest, { op: 'udp-request' }>) {
  const socket = createSocket({ type: req.host.includes(':') ? 'udp6' : 'udp4' });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, () => resolve());
    });
    let peer: { address: string; port: number } | null = null;
    if (req.connected) {
      await new Promise<void>((resolve, reject) => {
        // Node hands a failed connect(2) to the callback (its typings say it takes no argument).
        const done = (err?: Error) => (err ? reject(err) : resolve());
        socket.connect(req.port, req.host, done as () => void);
      });
      const { address, port } = socket.remoteAddress(); // getpeername(2)
      peer = { address, port };
    }
    const reply = new Promise<{ text: string; from: { address: string; port: number } }>((resolve) => {
      socket.once('message', (msg, rinfo) =>
        resolve({ text: msg.toString(), from: { address: rinfo.address, port: rinfo.port } }),
      );
    });
    await new Promise<void>((resolve, reject) => {
      const done = (err: Error | null) => (err ? reject(err) : resolve());
      if (req.connected) socket.send(req.text, done);
      else socket.send(req.text, req.port, req.host, done);
    });
    const got = await reply;
    return { reply: got.text, from: got.from, peer };
  } finally {
    socket.close();
  }
}

async function handle(req: WorkloadRequest): Promise<unknown> {
  switch (req.op) {
    case 'serve':
      if (req.protocol === 'tcp') await serveTcp(req.name, req.host, req.port);
      else await serveUdp(req.name, req.host, req.port);
      return {};
    case 'tcp-connect': {
      const results = [];
      for (let i = 0; i < (req.count ?? 1); i++) {
        const { socket, name } = await tcpConnect(req.host, req.port);
        results.push({ backend: name, ...peerOf(socket) });
        socket.destroy();
      }
      return results;
    }
    case 'tcp-open': {
      const { socket, lines, name } = await tcpConnect(req.host, req.port);
      open.set(req.handle, { socket, lines });
      return { backend: name, ...peerOf(socket) };
    }
    case 'tcp-send': {
      const conn = open.get(req.handle);
      if (!conn) throw new Error(`no open connection ${req.handle}`);
      conn.socket.write(`${req.text}\n`);
      return { reply: await conn.lines.next(), ...peerOf(conn.socket) };
    }
    case 'tcp-close': {
      open.get(req.handle)?.socket.destroy();
      open.delete(req.handle);
      return {};
    }
    case 'udp-request':
      return udpRequest(req);
  }
}

serveRequests<WorkloadRequest>(handle, () => {
  for (const { socket } of open.values()) socket.destroy();
  for (const s of servers) s.close();
});
