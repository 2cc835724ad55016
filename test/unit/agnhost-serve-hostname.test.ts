import { createSocket } from 'node:dgram';
import { request } from 'node:http';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type ServeHostnameConfig,
  type ServeHostnameServer,
  ServeHostnameStartError,
  startServeHostname,
} from '../../src/devcluster/agnhost/serve-hostname.js';

const running: ServeHostnameServer[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((server) => server.close()));
});

async function serve(overrides: Partial<ServeHostnameConfig>): Promise<ServeHostnameServer> {
  const server = await startServeHostname({
    tcp: false,
    udp: false,
    http: true,
    close: false,
    port: 0,
    hostname: 'serve-hostname-pod',
    listenHost: '127.0.0.1',
    log: () => {},
    ...overrides,
  });
  running.push(server);
  return server;
}

function httpGet(port: number, path: string): Promise<{ body: string; connection: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ body: Buffer.concat(chunks).toString(), connection: res.headers.connection }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

describe('agnhost serve-hostname', () => {
  it('answers its hostname over HTTP on every path by default', async () => {
    const server = await serve({});
    expect((await httpGet(server.httpPort as number, '/')).body).toBe('serve-hostname-pod');
    expect((await httpGet(server.httpPort as number, '/any/path')).body).toBe('serve-hostname-pod');
  });

  it('--close asks the client to close the connection after each reply', async () => {
    const server = await serve({ close: true });
    expect((await httpGet(server.httpPort as number, '/')).connection).toBe('close');
  });

  it('--tcp writes the hostname raw and closes', async () => {
    const server = await serve({ http: false, tcp: true });
    const received = await new Promise<string>((resolve, reject) => {
      const socket = connect(server.tcpPort as number, '127.0.0.1');
      let text = '';
      socket.on('data', (chunk) => {
        text += chunk.toString();
      });
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    expect(received).toBe('serve-hostname-pod');
  });

  it('--udp answers any datagram with the hostname', async () => {
    const server = await serve({ http: false, udp: true });
    const socket = createSocket('udp4');
    const reply = await new Promise<string>((resolve) => {
      socket.on('message', (m) => resolve(m.toString()));
      socket.send('anything', server.udpPort as number, '127.0.0.1');
    });
    socket.close();
    expect(reply).toBe('serve-hostname-pod');
  });

  it.each([{ tcp: true }, { udp: true }])(
    'refuses %o together with the default --http, as agnhost does',
    async (mode) => {
      await expect(serve(mode)).rejects.toThrow(
        new ServeHostnameStartError("Can't server TCP/UDP mode and HTTP mode at the same time"),
      );
    },
  );
});
