import { createSocket } from 'node:dgram';
import { request as httpRequest } from 'node:http';
import { formatHostPort, joinHostPort, type ResolvedAddress } from './go-address.js';
import { goDialErrorText, goErrnoText, goReadErrorText } from './go-net-errors.js';

/**
 * The clients behind netexec's /dial: one HTTP GET or one UDP exchange per try, with the
 * real agnhost's limits (5 s per try, 2048-byte UDP replies, up to 10 redirects followed)
 * and its error texts, which the e2e framework logs when connectivity checks fail.
 */

export type DialOutcome = { response: string } | { error: string };

const DIAL_TIMEOUT_MS = 5_000;
const MAX_REDIRECTS = 10;
const MAX_HTTP_BODY_BYTES = 16 * 1024 * 1024;
const UDP_READ_BYTES = 2048;

/** Go's http.Client{Timeout: 5s}.Get("http://<addr>/<request>"): the body, whatever the status. */
export function dialHttp(
  target: ResolvedAddress,
  request: string,
  signal?: AbortSignal,
): Promise<DialOutcome> {
  const hostPort = formatHostPort(target.address, target.port);
  const firstUrl = `http://${hostPort}/${request}`;
  const deadline = Date.now() + DIAL_TIMEOUT_MS;
  return new Promise((resolve) => {
    let settled = false;
    const finish = (outcome: DialOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(outcome);
    };
    let current: ReturnType<typeof httpRequest> | undefined;
    let awaitingHeaders = true;
    let currentUrl = firstUrl;
    const timer = setTimeout(() => {
      current?.destroy();
      const phase = awaitingHeaders
        ? 'context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
        : 'context deadline exceeded (Client.Timeout or context cancellation while reading body)';
      finish({ error: `Get ${JSON.stringify(currentUrl)}: ${phase}` });
    }, deadline - Date.now());
    const onAbort = () => {
      current?.destroy();
      finish({ error: `Get ${JSON.stringify(currentUrl)}: context canceled` });
    };
    signal?.addEventListener('abort', onAbort, { once: true });

    const get = (url: string, redirects: number) => {
      currentUrl = url;
      awaitingHeaders = true;
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch {
        finish({ error: `Get ${JSON.stringify(url)}: unsupported or malformed URL` });
        return;
      }
      if (parsed.protocol !== 'http:') {
        finish({
          error: `Get ${JSON.stringify(url)}: unsupported protocol scheme ${JSON.stringify(parsed.protocol.slice(0, -1))}`,
        });
        return;
      }
      // Go sends the path as written (no dot-segment resolution), escaping what is not URL-safe.
      const afterAuthority = url.slice(url.indexOf('/', parsed.protocol.length + 2));
      const withoutFragment = afterAuthority.includes('#')
        ? afterAuthority.slice(0, afterAuthority.indexOf('#'))
        : afterAuthority;
      const pathAndQuery = (withoutFragment || '/').replace(/[^\x21-\x7e]/gu, (c) => encodeURIComponent(c));
      try {
        current = httpRequest({
          host: parsed.hostname.replace(/^\[|\]$/g, ''),
          port: parsed.port === '' ? 80 : Number(parsed.port),
          path: pathAndQuery,
          method: 'GET',
          agent: false,
          headers: { 'User-Agent': 'Go-http-client/1.1', Host: parsed.host },
        });
      } catch (err) {
        finish({ error: `Get ${JSON.stringify(url)}: ${err instanceof Error ? err.message : String(err)}` });
        return;
      }
      current.on('error', (err) => {
        const code = (err as NodeJS.ErrnoException).code;
        const socket = current?.socket;
        const local = socket ? formatHostPort(socket.localAddress, socket.localPort) : '';
        let text: string;
        if (err.message === 'socket hang up') text = 'EOF';
        else if (code === 'ECONNRESET' || code === 'EPIPE')
          text = `read tcp ${local}->${parsed.host}: read: ${goErrnoText(err)}`;
        else if (code?.startsWith('HPE_'))
          text = 'net/http: HTTP/1.x transport connection broken: malformed HTTP response';
        else text = `dial tcp ${parsed.host}: connect: ${goErrnoText(err)}`;
        finish({ error: `Get ${JSON.stringify(url)}: ${text}` });
      });
      current.on('response', (res) => {
        awaitingHeaders = false;
        const status = res.statusCode ?? 0;
        const location = res.headers.location;
        if ([301, 302, 303, 307, 308].includes(status) && location !== undefined) {
          res.resume();
          if (redirects + 1 > MAX_REDIRECTS) {
            finish({
              error: `Get ${JSON.stringify(new URL(location, url).href)}: stopped after ${MAX_REDIRECTS} redirects`,
            });
            return;
          }
          get(new URL(location, url).href, redirects + 1);
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_HTTP_BODY_BYTES) {
            res.destroy();
            finish({
              error: `Get ${JSON.stringify(url)}: response body larger than ${MAX_HTTP_BODY_BYTES} bytes`,
            });
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => finish({ response: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (err) => finish({ error: `Get ${JSON.stringify(url)}: ${goErrnoText(err)}` }));
      });
      current.end();
    };
    get(firstUrl, 0);
  });
}

/** Go's net.DialUDP + Write + Read with a 5 s read deadline. */
export function dialUdp(
  target: ResolvedAddress,
  request: string,
  signal?: AbortSignal,
): Promise<DialOutcome> {
  const remote = formatHostPort(target.address, target.port);
  return new Promise((resolve) => {
    const socket = createSocket(target.family === 6 ? 'udp6' : 'udp4');
    let local = '';
    let settled = false;
    const finish = (outcome: DialOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      try {
        socket.close();
      } catch {
        // already closed
      }
      resolve(outcome);
    };
    const readFailed = (why: string) =>
      finish({ error: `reading from udp connection failed. err:'read udp ${local}->${remote}: ${why}'` });
    const timer = setTimeout(() => readFailed('i/o timeout'), DIAL_TIMEOUT_MS);
    const onAbort = () => readFailed('use of closed network connection');
    signal?.addEventListener('abort', onAbort, { once: true });
    let connected = false;
    socket.on('error', (err) => {
      if (!connected) finish({ error: `udp dial failed. err:${goDialErrorText('udp', remote, err)}` });
      else if ((err as NodeJS.ErrnoException).syscall === 'send') {
        finish({
          error: `udp connection write failed. err:write udp ${local}->${remote}: write: ${goErrnoText(err)}`,
        });
      } else {
        finish({
          error: `reading from udp connection failed. err:'${goReadErrorText('udp', local, remote, err)}'`,
        });
      }
    });
    socket.on('message', (message) => {
      if (message.length === 0) {
        finish({ error: `reading from udp connection failed. err:'<nil>'` });
        return;
      }
      finish({ response: message.subarray(0, UDP_READ_BYTES).toString('utf8') });
    });
    const host = target.address ?? (target.family === 6 ? '::1' : '127.0.0.1');
    socket.connect(target.port, host, () => {
      connected = true;
      const address = socket.address();
      local = formatHostPort(address.address, address.port);
      socket.send(Buffer.from(request));
    });
  });
}

/** This build has no SCTP client: report what Go reports on a kernel without SCTP. */
export function dialSctp(target: ResolvedAddress): Promise<DialOutcome> {
  const remote = target.address === undefined ? `:${target.port}` : joinHostPort(target.address, target.port);
  return Promise.resolve({
    error: `sctp dial failed. err:dial sctp ${remote}: socket: protocol not supported`,
  });
}
