import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runConnect } from '../../src/devcluster/agnhost/connect.js';

/** `agnhost connect` as a test pod runs it; TIMEOUT for TCP needs a namespace (test/e2e). */

let listener: Server;
let listeningPort: number;
let closedPort: number;
let udpEcho: UdpSocket;
let udpSilent: UdpSocket;

function portOf(server: Server): number {
  const address = server.address();
  return typeof address === 'object' && address ? address.port : 0;
}

beforeAll(async () => {
  listener = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  listeningPort = portOf(listener);
  const released = createServer();
  await new Promise<void>((resolve) => released.listen(0, '127.0.0.1', resolve));
  closedPort = portOf(released);
  await new Promise((resolve) => released.close(resolve));
  udpEcho = createSocket('udp4');
  udpEcho.on('message', (message, peer) => udpEcho.send(message, peer.port, peer.address));
  udpSilent = createSocket('udp4');
  await Promise.all(
    [udpEcho, udpSilent].map(
      (socket) => new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve)),
    ),
  );
});

afterAll(async () => {
  await new Promise((resolve) => listener.close(resolve));
  udpEcho.close();
  udpSilent.close();
});

const tcp = (destination: string, timeoutMs = 0) =>
  runConnect({ destination, timeoutMs, protocol: 'tcp', udpData: 'hostname' });

describe('agnhost connect over TCP', () => {
  it('exits 0 silently when the connection opens', async () => {
    expect(await tcp(`127.0.0.1:${listeningPort}`, 5000)).toEqual({ exitCode: 0, stderr: '' });
  });

  it('prints REFUSED and exits 1 when nothing listens', async () => {
    expect(await tcp(`127.0.0.1:${closedPort}`)).toEqual({ exitCode: 1, stderr: 'REFUSED\n' });
  });

  it.each([
    { destination: '127.0.0.1', stderr: 'UNKNOWN: address 127.0.0.1: missing port in address\n' },
    { destination: 'fd00::1:80', stderr: 'UNKNOWN: address fd00::1:80: too many colons in address\n' },
    { destination: '127.0.0.1:99999', stderr: 'DNS: address 99999: invalid port\n' },
    { destination: '127.0.0.1:http-alt', stderr: 'DNS: lookup tcp/http-alt: unknown port\n' },
  ])('reports $destination as $stderr', async ({ destination, stderr }) => {
    expect(await tcp(destination)).toEqual({ exitCode: 1, stderr });
  });
});

describe('agnhost connect over UDP', () => {
  const udp = (destination: string, timeoutMs: number) =>
    runConnect({ destination, timeoutMs, protocol: 'udp', udpData: 'hostname' });

  it('exits 0 when the server answers', async () => {
    const port = (udpEcho.address() as { port: number }).port;
    expect(await udp(`127.0.0.1:${port}`, 5000)).toEqual({ exitCode: 0, stderr: '' });
  });

  it('prints REFUSED with the read error when the port is closed', async () => {
    const result = await udp(`127.0.0.1:${closedPort}`, 5000);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(
      new RegExp(
        `^REFUSED: read udp 127\\.0\\.0\\.1:\\d+->127\\.0\\.0\\.1:${closedPort}: read: connection refused\\n$`,
      ),
    );
  });

  it('prints TIMEOUT when the server never answers within --timeout', async () => {
    const port = (udpSilent.address() as { port: number }).port;
    const result = await udp(`127.0.0.1:${port}`, 200);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(
      new RegExp(`^TIMEOUT: read udp 127\\.0\\.0\\.1:\\d+->127\\.0\\.0\\.1:${port}: i/o timeout\\n$`),
    );
  });
});

describe('agnhost connect with other protocols', () => {
  it('reports SCTP as unsupported by the kernel, as agnhost does without SCTP', async () => {
    const result = await runConnect({
      destination: '127.0.0.1:9',
      timeoutMs: 0,
      protocol: 'sctp',
      udpData: '',
    });
    expect(result).toEqual({ exitCode: 1, stderr: 'OTHER: protocol not supported\n' });
  });

  it("rejects an unknown protocol with agnhost's exact text", async () => {
    const result = await runConnect({
      destination: '127.0.0.1:9',
      timeoutMs: 0,
      protocol: 'quic',
      udpData: '',
    });
    expect(result).toEqual({ exitCode: 1, stderr: 'Unsupported protocol\nquic' });
  });
});
