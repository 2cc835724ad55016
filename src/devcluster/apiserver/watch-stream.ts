import type { ServerResponse } from 'node:http';
import type { ApiCore, Selectors } from './api-core.js';
import { ApiError, badRequest } from './api-status.js';
import type { JsonObject } from './json-value.js';
import type { StoreEvent } from './object-store.js';
import type { RequestContext } from './request-context.js';
import { apiVersionOf } from './resource-types.js';
import { type IncludeObject, toTable } from './table.js';

/**
 * One watch: newline-delimited JSON events on a chunked response. Follows kube-apiserver's
 * rules: resourceVersion unset or "0" starts with synthetic ADDED events for the current
 * state; an exact version replays retained history after it (or sends a 410 Expired ERROR
 * event and ends); selectors apply to both the old and the new object, so an object that stops
 * matching is sent as DELETED; BOOKMARKs carry the current version when asked for;
 * timeoutSeconds ends the stream cleanly.
 */
export interface WatchOptions {
  bookmarkIntervalMs: number;
  /** A watcher that falls this many bytes behind is disconnected (as the real server does). */
  maxBufferedBytes: number;
}

export type WatchFormat = { kind: 'json' } | { kind: 'table'; include: IncludeObject };

export function serveWatch(
  core: ApiCore,
  ctx: RequestContext,
  res: ServerResponse,
  format: WatchFormat,
  opts: WatchOptions,
): void {
  const t = ctx.type;
  const q = ctx.query;
  const sel: Selectors = core.selectors(ctx);
  const filtered = sel.labels.length > 0 || sel.fields.length > 0;
  const ns = t.namespaced ? ctx.namespace : undefined;
  const nameFilter = ctx.name;
  const apiVersion = apiVersionOf(t, ctx.version);
  const bookmarks = q.get('allowWatchBookmarks') === 'true' || q.get('allowWatchBookmarks') === '1';
  const rvText = q.get('resourceVersion') ?? '';
  const sendInitialEventsText = q.get('sendInitialEvents');
  const sendInitialEvents =
    sendInitialEventsText === 'true' ? true : sendInitialEventsText === 'false' ? false : undefined;
  if (sendInitialEvents !== undefined && q.get('resourceVersionMatch') !== 'NotOlderThan') {
    throw badRequest(
      'sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled and resourceVersionMatch is set to NotOlderThan',
    );
  }
  if (sendInitialEvents && !bookmarks)
    throw badRequest(
      'allowWatchBookmarks: Required value: allowWatchBookmarks must be set to true when sendInitialEvents is set',
    );
  if (rvText !== '' && !/^\d+$/.test(rvText))
    throw badRequest(`resourceVersion: Invalid value: "${rvText}": must be an unsigned integer`);
  const timeoutText = q.get('timeoutSeconds');
  let timeoutMs = (1800 + Math.random() * 1800) * 1000;
  if (timeoutText !== null) {
    if (!/^\d+$/.test(timeoutText)) throw badRequest(`timeoutSeconds: Invalid value: "${timeoutText}"`);
    timeoutMs = Number(timeoutText) * 1000 || timeoutMs;
  }

  const relevant = (o: JsonObject | undefined): boolean => {
    if (!o) return false;
    const m = o.metadata as JsonObject;
    if (ns && m.namespace !== ns) return false;
    if (nameFilter && m.name !== nameFilter) return false;
    return !filtered || core.matches(t, sel, o);
  };

  let closed = false;
  let pending: string[] = [];
  let pendingBytes = 0;
  let flushScheduled = false;
  let lastRv = 0;

  const flush = () => {
    flushScheduled = false;
    if (closed || pending.length === 0) return;
    const chunk = pending.length === 1 ? pending[0]! : pending.join('');
    pending = [];
    pendingBytes = 0;
    res.write(chunk);
    if (res.writableLength > opts.maxBufferedBytes) finish(false);
  };
  const send = (line: string) => {
    if (closed) return;
    pending.push(line);
    pendingBytes += line.length;
    if (pendingBytes > 1 << 20) flush();
    else if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flush);
    }
  };

  const objectFor = (o: JsonObject): JsonObject =>
    o.apiVersion === apiVersion ? o : { ...o, apiVersion, kind: t.kind };
  const render = (type: string, o: JsonObject, json?: string): string => {
    if (format.kind === 'table') {
      const table = toTable(
        t,
        ctx.version,
        [objectFor(o)],
        { resourceVersion: String((o.metadata as JsonObject).resourceVersion) },
        format.include,
      );
      return `{"type":"${type}","object":${JSON.stringify(table)}}\n`;
    }
    if (json !== undefined && o.apiVersion === apiVersion) return `{"type":"${type}","object":${json}}\n`;
    return `{"type":"${type}","object":${JSON.stringify(objectFor(o))}}\n`;
  };
  const bookmark = (rv: number, initialEnd = false) => {
    const metadata: JsonObject = { resourceVersion: String(rv) };
    if (initialEnd) metadata.annotations = { 'k8s.io/initial-events-end': 'true' };
    send(`${JSON.stringify({ type: 'BOOKMARK', object: { kind: t.kind, apiVersion, metadata } })}\n`);
  };

  const onEvent = (e: StoreEvent) => {
    lastRv = e.rv;
    if (e.namespace !== (ns ?? e.namespace)) return;
    if (!filtered && !nameFilter) {
      if (format.kind === 'json' && e.object.apiVersion === apiVersion) {
        e.watchLine ??= `{"type":"${e.type}","object":${e.objectJson}}\n`;
        send(e.watchLine);
      } else send(render(e.type, e.object, e.objectJson));
      return;
    }
    const now = e.type !== 'DELETED' && relevant(e.object);
    const before = relevant(e.previous);
    if (e.type === 'DELETED') {
      if (before) send(render('DELETED', e.object, e.objectJson));
    } else if (now && before) send(render('MODIFIED', e.object, e.objectJson));
    else if (now) send(render('ADDED', e.object, e.objectJson));
    else if (before) send(render('DELETED', e.object, e.objectJson));
  };

  let unsubscribe: () => void = () => {};
  let bookmarkTimer: NodeJS.Timeout | undefined;
  let timeoutTimer: NodeJS.Timeout | undefined;
  const finish = (sendBookmark: boolean) => {
    if (closed) return;
    if (sendBookmark && bookmarks) bookmark(Math.max(lastRv, core.store.resourceVersion));
    flush();
    closed = true;
    unsubscribe();
    if (bookmarkTimer) clearInterval(bookmarkTimer);
    if (timeoutTimer) clearTimeout(timeoutTimer);
    if (!res.writableEnded) res.end();
  };

  res.writeHead(200, {
    'content-type': 'application/json',
    'cache-control': 'no-cache, private',
    'x-content-type-options': 'nosniff',
  });
  // Headers go out now: a client waits for them before it considers the watch established.
  res.flushHeaders();
  res.on('close', () => finish(false));

  const current = core.store.resourceVersion;
  lastRv = current;
  const initial = rvText === '' || rvText === '0' || sendInitialEvents === true;
  if (initial) {
    for (const o of core.store.list(t.id, ns)) if (relevant(o)) send(render('ADDED', o));
    if (sendInitialEvents) bookmark(current, true);
  } else {
    const since = Number(rvText);
    let backlog: StoreEvent[];
    try {
      backlog = since > current ? [] : core.store.eventsSince(t.id, since);
    } catch (err) {
      if (err instanceof ApiError) {
        send(`${JSON.stringify({ type: 'ERROR', object: err.toStatus() })}\n`);
        finish(false);
        return;
      }
      throw err;
    }
    for (const e of backlog) onEvent(e);
    lastRv = current;
  }
  const unsubscribeEvents = core.store.subscribe(t.id, onEvent);
  // A deleted CRD ends the watches on its resource, as kube-apiserver does; clients relist and
  // find it gone.
  const unsubscribeDrop = core.store.onDrop(t.id, () => finish(false));
  unsubscribe = () => {
    unsubscribeEvents();
    unsubscribeDrop();
  };
  if (bookmarks) {
    bookmarkTimer = setInterval(
      () => bookmark(Math.max(lastRv, core.store.resourceVersion)),
      opts.bookmarkIntervalMs,
    );
    bookmarkTimer.unref();
  }
  timeoutTimer = setTimeout(() => finish(true), timeoutMs);
  timeoutTimer.unref();
  flush();
}
