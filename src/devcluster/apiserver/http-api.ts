import type { IncomingMessage, ServerResponse } from 'node:http';
import yaml from 'js-yaml';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../../shared/log.js';
import type { ApiCore } from './api-core.js';
import { ApiError, badRequest, methodNotAllowed } from './api-status.js';
import type { TokenAuthority } from './bearer-tokens.js';
import {
  aggregatedDiscovery,
  apiGroup,
  apiGroupList,
  apiResourceList,
  apiVersions,
  serverVersion,
} from './discovery.js';
import type { JsonObject, JsonValue } from './json-value.js';
import { jsonOf } from './object-store.js';
import { getScale, hasScaleSubresource, patchScale, updateScale } from './scale-subresource.js';
import type { OpenApiDocuments } from './openapi.js';
import { decodeProtobufObject } from './protobuf-body.js';
import type { RequestContext } from './request-context.js';
import { bodyFormat, maxBodyBytes, parseBody } from './request-body.js';
import { apiVersionOf, type ResourceType } from './resource-types.js';
import { type IncludeObject, toTable } from './table.js';
import { serveWatch, type WatchFormat, type WatchOptions } from './watch-stream.js';

/**
 * The HTTP face of the API server on fastify: authentication, URL → resource resolution,
 * content negotiation (JSON, YAML, Table, PartialObjectMetadata, aggregated discovery), verbs,
 * and Status errors. Bodies arrive as raw bytes and are parsed in request-body.ts.
 */
export interface HttpApiOptions {
  core: ApiCore;
  tokens: TokenAuthority;
  openapi: OpenApiDocuments;
  log: Logger;
  serverAddress: () => string;
  watch: WatchOptions;
}

type ResponseFormat =
  | { kind: 'json' }
  | { kind: 'yaml' }
  | { kind: 'table'; include: IncludeObject }
  | { kind: 'partial' };

interface AcceptEntry {
  mime: string;
  params: Record<string, string>;
}

function parseAccept(header: string | undefined): AcceptEntry[] {
  if (!header) return [{ mime: '*/*', params: {} }];
  return header.split(',').map((part) => {
    const [mime, ...rest] = part.split(';').map((s) => s.trim());
    const params: Record<string, string> = {};
    for (const p of rest) {
      const eq = p.indexOf('=');
      if (eq > 0) params[p.slice(0, eq).trim()] = p.slice(eq + 1).trim();
    }
    return { mime: (mime ?? '').toLowerCase(), params };
  });
}

/** The first representation in the Accept header this server can produce. */
function negotiate(header: string | undefined, query: URLSearchParams, allowTable: boolean): ResponseFormat {
  for (const a of parseAccept(header)) {
    if (a.mime === 'application/json' || a.mime === 'application/*' || a.mime === '*/*') {
      if (a.params.as === 'Table' && a.params.g === 'meta.k8s.io') {
        if (!allowTable) continue;
        const include = (query.get('includeObject') ?? 'Metadata') as IncludeObject;
        if (!['None', 'Metadata', 'Object'].includes(include))
          throw badRequest(`includeObject: Unsupported value: "${include}"`);
        return { kind: 'table', include };
      }
      if (a.params.as === 'PartialObjectMetadata' || a.params.as === 'PartialObjectMetadataList')
        return { kind: 'partial' };
      if (a.params.as !== undefined) continue;
      return { kind: 'json' };
    }
    if (a.mime === 'application/yaml') return { kind: 'yaml' };
  }
  throw new ApiError(
    406,
    'NotAcceptable',
    `only the following media types are accepted: application/json, application/yaml`,
  );
}

function wantsAggregatedDiscovery(header: string | undefined): 'v2' | 'v2beta1' | undefined {
  for (const a of parseAccept(header)) {
    if (
      a.mime === 'application/json' &&
      a.params.g === 'apidiscovery.k8s.io' &&
      a.params.as === 'APIGroupDiscoveryList'
    ) {
      if (a.params.v === 'v2' || a.params.v === 'v2beta1') return a.params.v;
    }
    if (a.mime === 'application/json' && a.params.as === undefined) return undefined;
  }
  return undefined;
}

function sendJson(
  reply: FastifyReply,
  code: number,
  body: unknown,
  contentType = 'application/json',
): FastifyReply {
  return reply.code(code).header('content-type', contentType).send(JSON.stringify(body));
}

function sendStatus(reply: FastifyReply, err: ApiError): FastifyReply {
  return sendJson(reply, err.code, err.toStatus());
}

const publicPaths = new Set([
  '/healthz',
  '/livez',
  '/readyz',
  '/version',
  '/healthz/ping',
  '/livez/ping',
  '/readyz/ping',
]);

interface ResolvedPath {
  type: ResourceType;
  version: string;
  namespace: string | undefined;
  name: string | undefined;
  subresource: string | undefined;
  watchPath: boolean;
}

export function registerHttpApi(app: FastifyInstance, o: HttpApiOptions): void {
  const { core, tokens, log } = o;
  const registry = core.registry;

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: maxBodyBytes }, (_req, body, done) =>
    done(null, body),
  );

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    if (err instanceof ApiError) return sendStatus(reply, err);
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return sendStatus(
        reply,
        new ApiError(413, 'RequestEntityTooLarge', `the request body is larger than ${maxBodyBytes} bytes`),
      );
    }
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500)
      return sendStatus(reply, badRequest(err.message));
    log.error({ err }, 'request failed');
    return sendStatus(reply, new ApiError(500, 'InternalError', `Internal error occurred: ${err.message}`));
  });
  app.setNotFoundHandler((_req, reply) =>
    sendStatus(reply, new ApiError(404, 'NotFound', 'the server could not find the requested resource')),
  );

  app.addHook('onRequest', async (req, reply) => {
    const path = req.url.split('?')[0]!;
    if (publicPaths.has(path)) return;
    if (!tokens.authenticate(req.headers.authorization)) {
      await sendJson(reply, 401, new ApiError(401, 'Unauthorized', 'Unauthorized').toStatus());
    }
  });

  for (const path of ['/healthz', '/livez', '/readyz']) {
    app.get(path, (_req, reply) =>
      reply.code(200).header('content-type', 'text/plain; charset=utf-8').send('ok'),
    );
    app.get(`${path}/ping`, (_req, reply) =>
      reply.code(200).header('content-type', 'text/plain; charset=utf-8').send('ok'),
    );
  }
  app.get('/version', (_req, reply) => sendJson(reply, 200, serverVersion));

  app.get('/api', (req, reply) => {
    const aggregated = wantsAggregatedDiscovery(req.headers.accept);
    if (aggregated) {
      return sendJson(
        reply,
        200,
        aggregatedDiscovery(registry, true, aggregated),
        `application/json;g=apidiscovery.k8s.io;v=${aggregated};as=APIGroupDiscoveryList`,
      );
    }
    return sendJson(reply, 200, apiVersions(o.serverAddress()));
  });
  app.get('/apis', (req, reply) => {
    const aggregated = wantsAggregatedDiscovery(req.headers.accept);
    if (aggregated) {
      return sendJson(
        reply,
        200,
        aggregatedDiscovery(registry, false, aggregated),
        `application/json;g=apidiscovery.k8s.io;v=${aggregated};as=APIGroupDiscoveryList`,
      );
    }
    return sendJson(reply, 200, apiGroupList(registry));
  });
  app.get('/openapi/v3', (_req, reply) => sendJson(reply, 200, o.openapi.v3Root()));
  app.get('/openapi/v3/*', (req, reply) => {
    const gv = (req.params as { '*': string })['*'];
    const doc = o.openapi.v3(gv);
    if (!doc) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    return sendJson(reply, 200, doc);
  });

  const handler = async (req: FastifyRequest, reply: FastifyReply) => handleResource(req, reply);
  app.route({ method: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'], url: '/api/*', handler });
  app.route({
    method: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'],
    url: '/apis/*',
    handler,
  });

  function resolve(path: string): ResolvedPath | JsonObject {
    const segs = path
      .split('/')
      .filter((s) => s !== '')
      .map((s) => decodeURIComponent(s));
    let group: string;
    let version: string;
    let rest: string[];
    if (segs[0] === 'api') {
      if (segs.length === 1) return apiVersions(o.serverAddress());
      group = '';
      version = segs[1]!;
      rest = segs.slice(2);
    } else {
      if (segs.length === 1) return apiGroupList(registry);
      group = segs[1]!;
      if (segs.length === 2) {
        const g = apiGroup(registry, group);
        if (!g) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
        return g;
      }
      version = segs[2]!;
      rest = segs.slice(3);
    }
    if (rest.length === 0) {
      const list = apiResourceList(registry, group, version);
      if (!list) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
      return list;
    }
    let watchPath = false;
    if (rest[0] === 'watch') {
      watchPath = true;
      rest = rest.slice(1);
    }
    let namespace: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      const candidate = registry.lookup(group, version, rest[2]!);
      if (candidate?.namespaced) {
        namespace = rest[1];
        rest = rest.slice(2);
      }
    }
    const type = registry.lookup(group, version, rest[0]!);
    if (!type || rest.length > 3 || (type.namespaced === false && namespace !== undefined)) {
      throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    }
    const name = rest[1];
    const subresource = rest[2];
    if (subresource !== undefined) {
      const known =
        (subresource === 'status' && type.statusSubresource) ||
        (subresource === 'binding' && type.id === '/pods') ||
        (subresource === 'finalize' && type.id === '/namespaces') ||
        (subresource === 'token' && type.id === '/serviceaccounts') ||
        (subresource === 'scale' && hasScaleSubresource(type));
      if (!known) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    }
    return { type, version, namespace, name, subresource, watchPath };
  }

  async function handleResource(req: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    const url = new URL(req.url, 'https://apiserver.local');
    const resolved = resolve(url.pathname);
    if (!('type' in resolved) || typeof (resolved as ResolvedPath).type !== 'object') {
      if (req.method !== 'GET')
        throw methodNotAllowed(`the server does not allow this method on the requested resource`);
      return sendJson(reply, 200, resolved);
    }
    const r = resolved as ResolvedPath;
    const ctx: RequestContext = {
      type: r.type,
      version: r.version,
      namespace: r.namespace,
      name: r.name,
      subresource: r.subresource,
      query: url.searchParams,
      userAgent: String(req.headers['user-agent'] ?? ''),
      identity: tokens.authenticate(req.headers.authorization) ?? { kind: 'admin' },
      warnings: [],
    };
    if (r.type.namespaced && ctx.namespace === undefined && ctx.name !== undefined && req.method !== 'GET') {
      // Namespaced objects addressed without a namespace: not a valid URL for a single object.
      throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    }
    const q = url.searchParams;
    if (r.type.review && (req.method !== 'POST' || ctx.name !== undefined)) {
      throw methodNotAllowed('the server does not allow this method on the requested resource');
    }
    const isWatch = r.watchPath || q.get('watch') === 'true' || q.get('watch') === '1';
    const method = req.method;
    const body = (): JsonValue => {
      const raw = req.body;
      if (!Buffer.isBuffer(raw) || raw.length === 0) throw badRequest('the request body is empty');
      const contentType = String(req.headers['content-type'] ?? '')
        .split(';')[0]!
        .trim()
        .toLowerCase();
      if (contentType === 'application/vnd.kubernetes.protobuf') return decodeProtobufObject(raw);
      const format = bodyFormat(req.headers['content-type']);
      if (!format) {
        throw new ApiError(
          415,
          'UnsupportedMediaType',
          `the body of the request was in an unknown format - accepted media types include: application/json, application/yaml`,
        );
      }
      return parseBody(raw, format);
    };
    const optionalBody = (): JsonValue | undefined => {
      const raw = req.body;
      if (!Buffer.isBuffer(raw) || raw.length === 0) return undefined;
      const contentType = String(req.headers['content-type'] ?? '')
        .split(';')[0]!
        .trim()
        .toLowerCase();
      if (contentType === 'application/vnd.kubernetes.protobuf') {
        throw new ApiError(415, 'UnsupportedMediaType', 'send DeleteOptions as application/json');
      }
      return parseBody(raw, bodyFormat(req.headers['content-type']) ?? 'json');
    };
    const respond = (code: number, obj: JsonObject, format: ResponseFormat): FastifyReply => {
      if (ctx.warnings.length > 0) {
        reply.header('warning', ctx.warnings.map((w) => `299 - ${JSON.stringify(w)}`).join(', '));
      }
      if (format.kind === 'yaml')
        return reply
          .code(code)
          .header('content-type', 'application/yaml')
          .send(yaml.dump(obj, { noRefs: true }));
      if (format.kind === 'table' && obj.kind !== 'Status') {
        return sendJson(
          reply,
          code,
          toTable(
            r.type,
            r.version,
            [obj],
            { resourceVersion: String((obj.metadata as JsonObject).resourceVersion ?? '') },
            format.include,
          ),
        );
      }
      if (format.kind === 'partial' && obj.kind !== 'Status') {
        return sendJson(reply, code, {
          kind: 'PartialObjectMetadata',
          apiVersion: 'meta.k8s.io/v1',
          metadata: obj.metadata ?? {},
        });
      }
      return sendJson(reply, code, obj);
    };

    switch (method) {
      case 'GET':
      case 'HEAD': {
        if (isWatch) {
          if (r.subresource) throw methodNotAllowed('watch is not supported on subresources');
          const format = negotiate(req.headers.accept, q, true);
          const watchFormat: WatchFormat = format.kind === 'table' ? format : { kind: 'json' };
          if (ctx.name) {
            // /watch/namespaces/ns/pods/name: a watch of one object.
            ctx.query.set(
              'fieldSelector',
              [q.get('fieldSelector'), `metadata.name=${ctx.name}`].filter(Boolean).join(','),
            );
            ctx.name = undefined;
          }
          core.selectors(ctx);
          reply.hijack();
          serveWatch(core, ctx, reply.raw as ServerResponse<IncomingMessage>, watchFormat, o.watch);
          return reply;
        }
        const format = negotiate(req.headers.accept, q, true);
        if (ctx.name) {
          if (r.subresource === 'binding' || r.subresource === 'token')
            throw methodNotAllowed('the server does not allow this method on the requested resource');
          if (r.subresource === 'scale') return respond(200, getScale(core, ctx), { kind: 'json' });
          return respond(200, core.get(ctx), format);
        }
        const list = core.list(ctx);
        if (format.kind === 'table')
          return sendJson(reply, 200, toTable(r.type, r.version, list.items, list.metadata, format.include));
        if (format.kind === 'partial') {
          return sendJson(reply, 200, {
            kind: 'PartialObjectMetadataList',
            apiVersion: 'meta.k8s.io/v1',
            metadata: list.metadata,
            items: list.items.map((i) => ({
              kind: 'PartialObjectMetadata',
              apiVersion: 'meta.k8s.io/v1',
              metadata: i.metadata ?? {},
            })),
          });
        }
        if (format.kind === 'json') {
          // Stored objects keep their JSON: a list is those strings joined, not a new serialization.
          const head = `{"kind":${JSON.stringify(r.type.listKind)},"apiVersion":${JSON.stringify(apiVersionOf(r.type, r.version))},"metadata":${JSON.stringify(list.metadata)},"items":[`;
          return reply
            .code(200)
            .header('content-type', 'application/json')
            .send(`${head}${list.items.map(jsonOf).join(',')}]}`);
        }
        const listObject = {
          kind: r.type.listKind,
          apiVersion: apiVersionOf(r.type, r.version),
          metadata: list.metadata,
          items: list.items,
        };
        if (format.kind === 'yaml')
          return reply
            .code(200)
            .header('content-type', 'application/yaml')
            .send(yaml.dump(listObject, { noRefs: true }));
        return sendJson(reply, 200, listObject);
      }
      case 'POST': {
        const format = negotiate(req.headers.accept, q, true);
        if (r.subresource === 'binding') return respond(201, core.bind(ctx, body()), { kind: 'json' });
        if (r.subresource === 'token') return respond(201, core.tokenRequest(ctx, body()), { kind: 'json' });
        if (ctx.name !== undefined)
          throw methodNotAllowed('the server does not allow this method on the requested resource');
        return respond(201, core.create(ctx, body()), format);
      }
      case 'PUT': {
        const format = negotiate(req.headers.accept, q, true);
        if (!ctx.name)
          throw methodNotAllowed('the server does not allow this method on the requested resource');
        if (r.subresource === 'binding' || r.subresource === 'token')
          throw methodNotAllowed('the server does not allow this method on the requested resource');
        if (r.subresource === 'finalize') ctx.subresource = undefined;
        if (r.subresource === 'scale') return respond(200, updateScale(core, ctx, body()), { kind: 'json' });
        return respond(200, core.update(ctx, body()), format);
      }
      case 'PATCH': {
        const format = negotiate(req.headers.accept, q, true);
        if (!ctx.name || r.subresource === 'binding' || r.subresource === 'token')
          throw methodNotAllowed('the server does not allow this method on the requested resource');
        const contentType = String(req.headers['content-type'] ?? '');
        const patchTypes = [
          'application/json-patch+json',
          'application/merge-patch+json',
          'application/strategic-merge-patch+json',
          'application/apply-patch+yaml',
        ];
        const mime = contentType.split(';')[0]!.trim().toLowerCase();
        if (!patchTypes.includes(mime)) {
          throw new ApiError(
            415,
            'UnsupportedMediaType',
            `the body of the request was in an unknown format - accepted media types include: ${patchTypes.join(', ')}`,
          );
        }
        if (r.subresource === 'scale')
          return respond(200, patchScale(core, ctx, contentType, body()), { kind: 'json' });
        const result = core.patch(ctx, contentType, body());
        return respond(result.created ? 201 : 200, result.object, format);
      }
      case 'DELETE': {
        const format = negotiate(req.headers.accept, q, true);
        if (r.subresource)
          throw methodNotAllowed('the server does not allow this method on the requested resource');
        if (ctx.name) return respond(200, core.delete(ctx, optionalBody()), format);
        const list = core.deleteCollection(ctx, optionalBody());
        return sendJson(reply, 200, {
          kind: r.type.listKind,
          apiVersion: apiVersionOf(r.type, r.version),
          metadata: list.metadata,
          items: list.items,
        });
      }
      default:
        throw methodNotAllowed(`the server does not allow this method on the requested resource`);
    }
  }
}
