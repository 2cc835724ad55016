import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type NetexecConfig,
  type NetexecServer,
  NetexecStartError,
  startNetexec,
} from '../../src/devcluster/agnhost/netexec.js';
import { selfSignedCertificate } from './support/self-signed.js';

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  clientPort: number;
}

function get(
  port: number,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: string; tls?: boolean } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const send = options.tls ? httpsRequest : httpRequest;
    const req = send(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        headers: options.headers,
        agent: false,
        rejectUnauthorized: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
            clientPort: req.socket?.localPort ?? 0,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

function askUdp(port: number, text: string): Promise<{ reply: string; clientPort: number }> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    socket.on('error', reject);
    socket.on('message', (message) => {
      const clientPort = socket.address().port;
      socket.close();
      resolve({ reply: message.toString(), clientPort });
    });
    socket.send(text, port, '127.0.0.1');
  });
}

/** A loopback port nobody listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  return typeof address === 'object' && address ? address.port : 0;
}

const logLines: string[] = [];
const started: NetexecServer[] = [];

async function netexec(overrides: Partial<NetexecConfig> = {}): Promise<NetexecServer> {
  const server = await startNetexec({
    httpPort: 0,
    udpPort: 0,
    sctpPort: -1,
    httpOverride: '',
    tlsCertFile: '',
    tlsPrivateKeyFile: '',
    udpListenAddresses: '',
    delayShutdownSeconds: 0,
    hostname: 'netexec-pod-7',
    listenHost: '127.0.0.1',
    log: (line) => logLines.push(line),
    ...overrides,
  });
  started.push(server);
  return server;
}

afterEach(async () => {
  await Promise.all(started.splice(0).map((server) => server.close()));
});

describe('netexec HTTP endpoints answer like agnhost', () => {
  let server: NetexecServer;
  beforeAll(async () => {
    server = await startNetexec({
      httpPort: 0,
      udpPort: 0,
      sctpPort: -1,
      httpOverride: '',
      tlsCertFile: '',
      tlsPrivateKeyFile: '',
      udpListenAddresses: '',
      delayShutdownSeconds: 0,
      hostname: 'netexec-pod-7',
      listenHost: '127.0.0.1',
      log: () => {},
    });
  });
  afterAll(() => server.close());

  it.each(['/hostname', '/hostName'])('%s returns the pod name as text', async (path) => {
    const reply = await get(server.httpPort, path);
    expect(reply).toMatchObject({ status: 200, body: 'netexec-pod-7' });
    expect(reply.headers['content-type']).toBe('text/plain; charset=utf-8');
  });

  it.each(['/', '/anything/else'])('%s returns the time, as the root handler does', async (path) => {
    const reply = await get(server.httpPort, path);
    expect(reply.status).toBe(200);
    expect(reply.body).toMatch(/^NOW: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9} [+-]\d{4} \S+ m=\+\d+\.\d{9}$/);
  });

  it('/clientip returns the caller ip:port', async () => {
    const reply = await get(server.httpPort, '/clientip');
    expect(reply.body).toBe(`127.0.0.1:${reply.clientPort}`);
  });

  it('/serverport returns the port the request came in on', async () => {
    expect((await get(server.httpPort, '/serverport')).body).toBe(String(server.httpPort));
  });

  it.each([
    { path: '/echo?msg=hello%20world', status: 200, body: 'hello world' },
    { path: '/echo?msg=teapot&code=418', status: 418, body: 'teapot' },
    {
      path: '/echo?msg=x&code=abc',
      status: 200,
      body: `argument 'code' must be an integer or empty, got "abc"\n`,
    },
    { path: '/echo', status: 200, body: '' },
  ])('$path answers $status', async ({ path, status, body }) => {
    expect(await get(server.httpPort, path)).toMatchObject({ status, body });
  });

  it('/echo reads a urlencoded POST body before the query, as FormValue does', async () => {
    const reply = await get(server.httpPort, '/echo?msg=from-query', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'msg=from-body',
    });
    expect(reply.body).toBe('from-body');
  });

  it('/header?key= returns one request header, case-insensitively', async () => {
    const reply = await get(server.httpPort, '/header?key=x-forwarded-for', {
      headers: { 'X-Forwarded-For': '203.0.113.9' },
    });
    expect(reply.body).toBe('203.0.113.9');
  });

  it('/header returns every header as Go JSON: canonical keys, sorted, without Host', async () => {
    const reply = await get(server.httpPort, '/header', {
      headers: { 'x-b': '2', 'x-a': '1', 'user-agent': 'probe' },
    });
    expect(reply.body).toBe('{"Connection":["close"],"User-Agent":["probe"],"X-A":["1"],"X-B":["2"]}');
  });

  it('/healthz is 200 and /readyz is "ok" once the UDP server listens', async () => {
    expect((await get(server.httpPort, '/healthz')).status).toBe(200);
    expect(await get(server.httpPort, '/readyz')).toMatchObject({ status: 200, body: 'ok' });
  });

  it.each([
    { path: '/redirect?location=/echo%3Fmsg%3Dfoobar', status: 302, location: '/echo?msg=foobar' },
    { path: '/redirect?location=/hostname&code=307', status: 307, location: '/hostname' },
    { path: '/redirect?location=hostname', status: 302, location: '/hostname' },
    {
      path: '/redirect?location=http://example.invalid/x',
      status: 302,
      location: 'http://example.invalid/x',
    },
  ])('$path redirects to $location', async ({ path, status, location }) => {
    const reply = await get(server.httpPort, path);
    expect(reply.status).toBe(status);
    expect(reply.headers.location).toBe(location);
    expect(reply.body).toContain(`<a href="${location}">`);
  });

  it("redirects unclean paths like Go's ServeMux", async () => {
    const reply = await get(server.httpPort, '//hostname?x=1');
    expect(reply.status).toBe(301);
    expect(reply.headers.location).toBe('/hostname?x=1');
  });

  it.each([
    { path: '/shell?shellCommand=echo%20out;%20echo%20err%201>%262', body: '{"output":"out\\nerr\\n"}' },
    {
      path: '/shell?cmd=echo%20partial;%20exit%203',
      body: '{"error":"exit status 3","output":"partial\\n"}',
    },
    { path: '/shell?cmd=true', body: '{}' },
  ])('$path runs the command and reports its output', async ({ path, body }) => {
    expect(await get(server.httpPort, path)).toMatchObject({ status: 200, body });
  });

  it('/upload says it is not supported rather than pretending', async () => {
    expect((await get(server.httpPort, '/upload')).status).toBe(501);
  });
});

describe('netexec /dial reports responses and errors like agnhost', () => {
  it('collects one response per try over HTTP', async () => {
    const server = await netexec();
    const reply = await get(
      server.httpPort,
      `/dial?request=hostname&host=127.0.0.1&port=${server.httpPort}&protocol=http&tries=3`,
    );
    expect(reply).toMatchObject({
      status: 200,
      body: '{"responses":["netexec-pod-7","netexec-pod-7","netexec-pod-7"]}',
    });
  });

  it('passes the request path and query through to the target', async () => {
    const server = await netexec();
    const reply = await get(
      server.httpPort,
      `/dial?request=${encodeURIComponent('echo?msg=via-dial')}&host=127.0.0.1&port=${server.httpPort}`,
    );
    expect(JSON.parse(reply.body)).toEqual({ responses: ['via-dial'] });
  });

  it('asks the UDP server of another pod', async () => {
    const target = await netexec({ hostname: 'udp-target' });
    const client = await netexec();
    const reply = await get(
      client.httpPort,
      `/dial?request=hostname&host=127.0.0.1&port=${target.udpPorts[0]}&protocol=udp&tries=2`,
    );
    expect(JSON.parse(reply.body)).toEqual({ responses: ['udp-target', 'udp-target'] });
  });

  it("lists a refused HTTP connection under errors, in Go's words", async () => {
    const server = await netexec();
    const port = await closedPort();
    const reply = await get(server.httpPort, `/dial?request=hostname&host=127.0.0.1&port=${port}&tries=2`);
    expect(reply.status).toBe(200);
    const error = `Get "http://127.0.0.1:${port}/hostname": dial tcp 127.0.0.1:${port}: connect: connection refused`;
    expect(JSON.parse(reply.body)).toEqual({ errors: [error, error] });
  });

  it('lists a refused UDP exchange under errors', async () => {
    const server = await netexec();
    const port = await closedPort();
    const reply = await get(
      server.httpPort,
      `/dial?request=hostname&host=127.0.0.1&port=${port}&protocol=udp`,
    );
    const body = JSON.parse(reply.body) as { errors: string[] };
    expect(body.errors).toHaveLength(1);
    expect(body.errors[0]).toMatch(
      new RegExp(
        `^reading from udp connection failed\\. err:'read udp 127\\.0\\.0\\.1:\\d+->127\\.0\\.0\\.1:${port}: read: connection refused'$`,
      ),
    );
  });

  it.each([
    { query: 'host=127.0.0.1&port=1', status: 400, body: 'request parameter not specified. <nil>\n' },
    {
      query: 'request=x&host=127.0.0.1&port=1&tries=many',
      status: 400,
      body: 'tries parameter is invalid. strconv.Atoi: parsing "many": invalid syntax\n',
    },
    {
      query: 'request=x&host=127.0.0.1&port=1&protocol=quic',
      status: 400,
      body: 'unsupported protocol. quic\n',
    },
    {
      query: 'request=x&host=127.0.0.1&port=99999',
      status: 400,
      body: 'host and/or port param are invalid. address 99999: invalid port\n',
    },
    { query: 'request=x&host=127.0.0.1&port=1&tries=0', status: 200, body: '{}' },
  ])('answers $status to $query', async ({ query, status, body }) => {
    const server = await netexec();
    expect(await get(server.httpPort, `/dial?${query}`)).toMatchObject({ status, body });
  });
});

describe('netexec UDP server', () => {
  it.each([
    { text: 'hostname', reply: 'netexec-pod-7' },
    { text: '  HOSTNAME\n', reply: 'netexec-pod-7' },
    { text: 'echo Hello There', reply: 'hello there' },
  ])('answers $text with $reply', async ({ text, reply }) => {
    const server = await netexec();
    expect((await askUdp(server.udpPorts[0] as number, text)).reply).toBe(reply);
  });

  it('answers clientip with the sender ip:port', async () => {
    const server = await netexec();
    const { reply, clientPort } = await askUdp(server.udpPorts[0] as number, 'clientip');
    expect(reply).toBe(`127.0.0.1:${clientPort}`);
  });

  it('ignores unknown commands and keeps serving', async () => {
    const server = await netexec();
    const socket = createSocket('udp4');
    const replies: string[] = [];
    const second = new Promise<void>((resolve) =>
      socket.on('message', (m) => {
        replies.push(m.toString());
        resolve();
      }),
    );
    socket.send('what is this', server.udpPorts[0] as number, '127.0.0.1');
    socket.send('hostname', server.udpPorts[0] as number, '127.0.0.1');
    await second;
    socket.close();
    expect(replies).toEqual(['netexec-pod-7']);
    expect(logLines).toContainEqual(
      expect.stringMatching(/^Unknown UDP command received from 127\.0\.0\.1:\d+: what is this$/),
    );
  });

  it('with --udp-port=-1 serves no UDP, and reports unhealthy as the real one does', async () => {
    const server = await netexec({ udpPort: -1 });
    expect(server.udpPorts).toEqual([]);
    expect((await get(server.httpPort, '/healthz')).status).toBe(412);
    expect((await get(server.httpPort, '/readyz')).status).toBe(412);
  });
});

describe('netexec connections', () => {
  it("keeps an idle keep-alive connection open, as agnhost's Go http.Server (no IdleTimeout) does", async () => {
    const server = await netexec();
    const socket = connect(server.httpPort, '127.0.0.1');
    try {
      const closed = new Promise<'closed'>((resolve) => socket.once('close', () => resolve('closed')));
      const ask = () =>
        new Promise<string>((resolve) => {
          socket.once('data', (d: Buffer) => resolve(d.toString()));
          socket.write('GET /hostname HTTP/1.1\r\nHost: netexec\r\n\r\n');
        });
      expect(await ask()).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nnetexec-pod-7$/);
      // Idle for longer than Node's default keepAliveTimeout (5 s), which would close it.
      const idle = await Promise.race([
        closed,
        new Promise<'open'>((r) => setTimeout(() => r('open'), 6_000)),
      ]);
      expect(idle).toBe('open');
      expect(await ask()).toMatch(/\r\n\r\nnetexec-pod-7$/);
    } finally {
      socket.destroy();
    }
  });
});

describe('netexec shutdown', () => {
  it('SIGTERM with --delay-shutdown: /readyz turns 503 while traffic is still served, then exit 0', async () => {
    const server = await netexec({ delayShutdownSeconds: 1 });
    server.terminate();
    expect(await get(server.httpPort, '/readyz')).toMatchObject({ status: 503, body: 'shutting down' });
    expect((await get(server.httpPort, '/healthz')).status).toBe(200);
    expect((await get(server.httpPort, '/hostname')).body).toBe('netexec-pod-7');
    expect(await server.exited).toBe(0);
  });

  it('SIGTERM without a delay exits 0 and stops listening', async () => {
    const server = await netexec();
    server.terminate();
    expect(await server.exited).toBe(0);
    await server.close();
    await expect(get(server.httpPort, '/hostname')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('/exit with a timeout answers 200, then exits with the code', async () => {
    const server = await netexec();
    expect((await get(server.httpPort, '/exit?code=3&timeout=2s')).status).toBe(200);
    expect(await server.exited).toBe(3);
  });

  it.each([
    { path: '/exit?code=5', code: 5 },
    { path: '/shutdown', code: 0 },
  ])('$path exits at once without answering', async ({ path, code }) => {
    const server = await netexec();
    await expect(get(server.httpPort, path)).rejects.toThrow();
    expect(await server.exited).toBe(code);
  });

  it.each([
    {
      path: '/exit?timeout=soon',
      body: `argument 'timeout' must be a valid golang duration or empty, got "soon"\n`,
    },
    { path: '/exit?code=x', body: `argument 'code' must be an integer [0-127] or empty, got "x"\n` },
  ])('$path is refused and the server keeps running', async ({ path, body }) => {
    const server = await netexec();
    expect(await get(server.httpPort, path)).toMatchObject({ status: 200, body });
    expect((await get(server.httpPort, '/hostname')).status).toBe(200);
  });
});

describe('netexec options', () => {
  it('--http-override answers every request as a GET of the override', async () => {
    const server = await netexec({ httpOverride: '/echo?msg=overridden' });
    expect((await get(server.httpPort, '/hostname')).body).toBe('overridden');
    expect((await get(server.httpPort, '/', { method: 'POST' })).body).toBe('overridden');
  });

  it('--http-override=/clientip has no client address, like the real synthetic request', async () => {
    const server = await netexec({ httpOverride: '/clientip' });
    expect((await get(server.httpPort, '/whatever')).body).toBe('');
  });

  it('--udp-listen-addresses binds the UDP server to those addresses only', async () => {
    const server = await netexec({ udpListenAddresses: '127.0.0.1', listenHost: undefined, httpPort: 0 });
    expect((await askUdp(server.udpPorts[0] as number, 'hostname')).reply).toBe('netexec-pod-7');
  });

  it('rejects a malformed --udp-listen-addresses', async () => {
    await expect(netexec({ udpListenAddresses: '127.0.0.1,not-an-ip' })).rejects.toThrow(
      'parseAddress: invalid address not-an-ip',
    );
  });

  it("fails to start, with Go's listen error, when the HTTP port is taken", async () => {
    const first = await netexec();
    const attempt = netexec({ httpPort: first.httpPort });
    await expect(attempt).rejects.toBeInstanceOf(NetexecStartError);
    await expect(attempt).rejects.toThrow(
      `listen tcp 127.0.0.1:${first.httpPort}: bind: address already in use`,
    );
  });

  it('logs that SCTP is not served when --sctp-port is given', async () => {
    await netexec({ sctpPort: 5060 });
    expect(logLines).toContain('weft agnhost: SCTP is not supported; --sctp-port=5060 is ignored');
  });

  describe('with --tls-cert-file', () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'weft-agnhost-tls-'));
      selfSignedCertificate(dir, 'localhost');
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('serves HTTPS', async () => {
      const server = await netexec({
        tlsCertFile: join(dir, 'cert.pem'),
        tlsPrivateKeyFile: join(dir, 'key.pem'),
      });
      expect((await get(server.httpPort, '/hostname', { tls: true })).body).toBe('netexec-pod-7');
    });

    it('fails to start when the key file is missing', async () => {
      await expect(
        netexec({ tlsCertFile: join(dir, 'cert.pem'), tlsPrivateKeyFile: join(dir, 'missing.pem') }),
      ).rejects.toThrow(`open ${join(dir, 'missing.pem')}: no such file or directory`);
    });
  });
});
