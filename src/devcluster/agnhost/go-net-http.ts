import type { IncomingMessage, ServerResponse } from 'node:http';
import { STATUS_CODES } from 'node:http';

/**
 * The parts of Go's net/http that shape what an agnhost client sees: the sniffed Content-Type
 * of a body written without one, http.Error, http.Redirect, ServeMux's path cleaning and
 * canonical header keys. Kept to what agnhost's handlers use.
 */

/** http.DetectContentType for the bodies agnhost writes (text, HTML-looking text, bytes). */
export function detectContentType(body: Buffer): string {
  let start = 0;
  while (start < body.length && [0x09, 0x0a, 0x0c, 0x0d, 0x20].includes(body[start] as number)) start++;
  const head = body.subarray(start, start + 512);
  const upper = head.toString('latin1').toUpperCase();
  for (const tag of HTML_SIGNATURES) {
    if (upper.startsWith(tag)) {
      const next = upper.charCodeAt(tag.length);
      if (next === 0x20 || next === 0x3e) return 'text/html; charset=utf-8';
    }
  }
  if (upper.startsWith('<?XML')) return 'text/xml; charset=utf-8';
  if (upper.startsWith('%PDF-')) return 'application/pdf';
  for (const byte of body.subarray(0, 512)) {
    if (byte <= 0x08 || byte === 0x0b || (byte >= 0x0e && byte <= 0x1a) || (byte >= 0x1c && byte <= 0x1f)) {
      return 'application/octet-stream';
    }
  }
  return 'text/plain; charset=utf-8';
}

const HTML_SIGNATURES = [
  '<!DOCTYPE HTML',
  '<HTML',
  '<HEAD',
  '<SCRIPT',
  '<IFRAME',
  '<H1',
  '<DIV',
  '<FONT',
  '<TABLE',
  '<A',
  '<STYLE',
  '<TITLE',
  '<B',
  '<BODY',
  '<BR',
  '<P',
  '<!--',
];

/** Go's WriteHeader accepts 100-999 and panics otherwise, which aborts the connection. */
export function isWritableStatus(code: number): boolean {
  return Number.isInteger(code) && code >= 100 && code <= 999;
}

/** Writes a handler's response the way Go's ResponseWriter does when the handler sets no type. */
export function writeGoResponse(res: ServerResponse, status: number, body: string | Buffer = ''): void {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  if (!isWritableStatus(status)) {
    res.socket?.destroy();
    return;
  }
  // 1xx, 204 and 304 carry no body: Go drops what the handler writes.
  const bodyless = status < 200 || status === 204 || status === 304;
  if (bodyless) {
    res.writeHead(status, STATUS_CODES[status] ?? '');
    res.end();
    return;
  }
  if (bytes.length > 0 && !res.hasHeader('content-type'))
    res.setHeader('Content-Type', detectContentType(bytes));
  res.setHeader('Content-Length', bytes.length);
  res.writeHead(status, STATUS_CODES[status] ?? '');
  res.end(bytes);
}

/** http.Error. */
export function writeGoError(res: ServerResponse, message: string, status: number): void {
  res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  writeGoResponse(res, status, `${message}\n`);
}

/** http.Redirect, including its resolution of relative locations against the request path. */
export function writeGoRedirect(
  res: ServerResponse,
  method: string,
  requestPath: string,
  location: string,
  status: number,
): void {
  let target = location;
  if (!/^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(target) && !target.startsWith('//')) {
    if (!target.startsWith('/')) {
      const oldPath = requestPath === '' ? '/' : requestPath;
      target = oldPath.slice(0, oldPath.lastIndexOf('/') + 1) + target;
    }
    const queryAt = target.indexOf('?');
    const query = queryAt === -1 ? '' : target.slice(queryAt);
    const path = queryAt === -1 ? target : target.slice(0, queryAt);
    let cleaned = cleanGoPath(path);
    if (path.endsWith('/') && !cleaned.endsWith('/')) cleaned += '/';
    target = cleaned + query;
  }
  // Go escapes non-ASCII bytes and turns CR/LF into spaces in header values.
  const headerValue = Array.from(Buffer.from(target.replace(/[\r\n]/g, ' ')))
    .map((b) => (b >= 0x80 ? `%${b.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(b)))
    .join('');
  res.setHeader('Location', headerValue);
  if (method === 'GET' || method === 'HEAD') res.setHeader('Content-Type', 'text/html; charset=utf-8');
  const body =
    method === 'GET' ? `<a href="${htmlEscape(headerValue)}">${STATUS_CODES[status] ?? ''}</a>.\n\n` : '';
  writeGoResponse(res, status, body);
}

function htmlEscape(text: string): string {
  return text.replace(
    /[&'<>"]/g,
    (c) => ({ '&': '&amp;', "'": '&#39;', '<': '&lt;', '>': '&gt;', '"': '&#34;' })[c] ?? c,
  );
}

/** path.Clean for URL paths: resolves `.`/`..`, collapses slashes, always rooted. */
export function cleanGoPath(path: string): string {
  const parts: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return `/${parts.join('/')}`;
}

/** The path ServeMux would redirect to, or undefined when the path is already clean. */
export function serveMuxRedirectPath(path: string): string | undefined {
  if (path === '') return '/';
  let cleaned = cleanGoPath(path);
  if (path.endsWith('/') && cleaned !== '/') cleaned += '/';
  return cleaned === path ? undefined : cleaned;
}

/** textproto.CanonicalMIMEHeaderKey: "x-forwarded-for" → "X-Forwarded-For". */
export function canonicalHeaderKey(key: string): string {
  if (!/^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/.test(key)) return key;
  return key
    .toLowerCase()
    .replace(/(^|-)([a-z])/g, (_m, dash: string, letter: string) => dash + letter.toUpperCase());
}

/** r.Header as Go holds it: canonical keys, every value, and no Host (Go moves it to r.Host). */
export function goRequestHeader(req: IncomingMessage): Record<string, string[]> {
  const header: Record<string, string[]> = {};
  for (const [key, values] of Object.entries(req.headersDistinct)) {
    if (key === 'host' || values === undefined) continue;
    header[canonicalHeaderKey(key)] = values;
  }
  return header;
}
