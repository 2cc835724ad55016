import { randomUUID } from 'node:crypto';
import type { Logger } from '../../shared/log.js';
import {
  ApiError,
  alreadyExists,
  badRequest,
  conflict,
  type FieldError,
  gone,
  invalid,
  notFound,
  type ResourceRef,
} from './api-status.js';
import { crdStatus, defaultCrd, validateCrd } from './crd.js';
import { type FieldRequirement, matchesFields, parseFieldSelector } from './field-selector.js';
import { applyJsonPatch } from './json-patch.js';
import { clone, deepEqual, isObject, type JsonObject, type JsonValue } from './json-value.js';
import {
  type LabelSelector,
  matchesLabels,
  parseLabelSelector,
  SelectorParseError,
} from './label-selector.js';
import { nowRfc3339, recordUpdate, type Scope, serverSideApply } from './managed-fields.js';
import { applyMergePatch } from './merge-patch.js';
import { applyDefaults } from './object-defaults.js';
import { objectKey, type ObjectStore } from './object-store.js';
import { podUpdateProblem, validateBuiltin, validateMetadata } from './object-validation.js';
import type { RequestContext } from './request-context.js';
import {
  apiVersionOf,
  customResourceType,
  type ResourceRegistry,
  type ResourceType,
} from './resource-types.js';
import { type OpenApiV3Schema, validateCustomResource } from './schema-validation.js';
import type { ClusterIPAllocator, NodePortAllocator } from './service-allocator.js';
import { applyStrategicMergePatch } from './strategic-merge-patch.js';

/**
 * The REST semantics of kube-apiserver over the object store: create, get, list, update,
 * patch (JSON, merge, strategic, apply), delete with graceful deletion and finalizers, status
 * subresources, Service allocations, CRDs, namespaces. Every write is computed in full and
 * validated before anything is stored or allocated, so a failed request changes nothing.
 */
export const crdTypeId = 'apiextensions.k8s.io/customresourcedefinitions';
const namespaceTypeId = '/namespaces';
const serviceTypeId = '/services';
const podTypeId = '/pods';

export interface ListResult {
  items: JsonObject[];
  metadata: JsonObject;
}

export interface Selectors {
  labels: LabelSelector;
  fields: FieldRequirement[];
}

function ref(t: ResourceType): ResourceRef {
  return { group: t.group, resource: t.plural, kind: t.kind };
}

function meta(o: JsonObject): JsonObject {
  return isObject(o.metadata) ? o.metadata : {};
}

const generateNameAlphabet = 'bcdfghjklmnpqrstvwxz2456789';
function randomSuffix(): string {
  let s = '';
  for (let i = 0; i < 5; i++)
    s += generateNameAlphabet[Math.floor(Math.random() * generateNameAlphabet.length)];
  return s;
}

/** The fields a write compares for "did the spec change" (generation) and "is this a no-op". */
function specPart(o: JsonObject): JsonObject {
  const { metadata: _m, status: _s, ...rest } = o;
  return rest;
}

function withoutVolatile(o: JsonObject): JsonObject {
  const m = { ...meta(o) };
  delete m.resourceVersion;
  delete m.managedFields;
  return { ...o, metadata: m };
}

export interface ApiCoreOptions {
  registry: ResourceRegistry;
  store: ObjectStore;
  clusterIPs: ClusterIPAllocator;
  nodePorts: NodePortAllocator;
  log: Logger;
  /** Signs ServiceAccount tokens for serviceaccounts/token (kubectl create token). */
  issueToken?: (namespace: string, name: string, expirationSeconds: number) => string;
  /** Called after a namespace is created, to add what controllers would (default SA, CA ConfigMap). */
  onNamespaceCreated?: (name: string) => void;
}

type WriteKind = 'create' | 'update';

export class ApiCore {
  readonly registry: ResourceRegistry;
  readonly store: ObjectStore;
  private readonly clusterIPs: ClusterIPAllocator;
  private readonly nodePorts: NodePortAllocator;
  private readonly log: Logger;
  private readonly onNamespaceCreated: ((name: string) => void) | undefined;
  private readonly issueToken:
    | ((namespace: string, name: string, expirationSeconds: number) => string)
    | undefined;
  private namespaceSweep: NodeJS.Timeout | undefined;

  constructor(o: ApiCoreOptions) {
    this.registry = o.registry;
    this.store = o.store;
    this.clusterIPs = o.clusterIPs;
    this.nodePorts = o.nodePorts;
    this.log = o.log;
    this.onNamespaceCreated = o.onNamespaceCreated;
    this.issueToken = o.issueToken;
  }

  /** After a restart: register the stored CRDs and rebuild Service allocations. */
  restore(): void {
    for (const crd of this.store.list(crdTypeId)) {
      try {
        this.registry.add(customResourceType(crd));
      } catch (err) {
        this.log.warn({ err, crd: meta(crd).name }, 'stored CRD could not be served');
      }
    }
    for (const svc of this.store.list(serviceTypeId)) this.reserveServiceAllocations(svc);
    if (this.store.list(namespaceTypeId).some((ns) => meta(ns).deletionTimestamp))
      this.scheduleNamespaceSweep();
  }

  close(): void {
    if (this.namespaceSweep) clearTimeout(this.namespaceSweep);
    this.namespaceSweep = undefined;
  }

  // ---- reads ---------------------------------------------------------------------------------

  private key(ctx: RequestContext, name: string): string {
    return objectKey(ctx.type.namespaced ? ctx.namespace : undefined, name);
  }

  /** The object as the client asked for it: in the URL's version. */
  present(t: ResourceType, version: string, o: JsonObject): JsonObject {
    const apiVersion = apiVersionOf(t, version);
    return o.apiVersion === apiVersion && o.kind === t.kind ? o : { ...o, apiVersion, kind: t.kind };
  }

  get(ctx: RequestContext): JsonObject {
    const o = this.store.get(ctx.type.id, this.key(ctx, ctx.name!));
    if (!o) throw notFound(ref(ctx.type), ctx.name!);
    return this.present(ctx.type, ctx.version, o);
  }

  selectors(ctx: RequestContext): Selectors {
    let labels: LabelSelector = [];
    let fields: FieldRequirement[] = [];
    try {
      labels = parseLabelSelector(ctx.query.get('labelSelector') ?? '');
      fields = parseFieldSelector(ctx.query.get('fieldSelector') ?? '');
    } catch (err) {
      if (err instanceof SelectorParseError) throw badRequest(err.message);
      throw err;
    }
    for (const f of fields) {
      if (
        f.field === 'metadata.name' ||
        f.field === 'metadata.namespace' ||
        ctx.type.selectableFields[f.field]
      )
        continue;
      if (ctx.type.custom) {
        const known = ['metadata.name', 'metadata.namespace', ...Object.keys(ctx.type.selectableFields)];
        throw badRequest(
          `"${f.field}" is not a known field selector: only ${known.map((k) => `"${k}"`).join(', ')}`,
        );
      }
      throw badRequest(`field label not supported: ${f.field}`);
    }
    return { labels, fields };
  }

  matches(t: ResourceType, sel: Selectors, o: JsonObject): boolean {
    const m = meta(o);
    if (sel.labels.length > 0 && !matchesLabels(sel.labels, m.labels as Record<string, string> | undefined))
      return false;
    if (sel.fields.length === 0) return true;
    const values: Record<string, string> = {
      'metadata.name': String(m.name ?? ''),
      'metadata.namespace': String(m.namespace ?? ''),
    };
    for (const f of sel.fields) {
      const extract = t.selectableFields[f.field];
      if (extract) values[f.field] = extract(o);
    }
    return matchesFields(sel.fields, values);
  }

  list(ctx: RequestContext): ListResult {
    const sel = this.selectors(ctx);
    const q = ctx.query;
    const limitText = q.get('limit');
    const limit = limitText ? Number(limitText) : 0;
    if (limitText && (!Number.isInteger(limit) || limit < 0)) throw badRequest(`invalid limit: ${limitText}`);
    const continueToken = q.get('continue');
    const rvText = q.get('resourceVersion');
    const rvMatch = q.get('resourceVersionMatch');
    if (rvMatch && !['Exact', 'NotOlderThan'].includes(rvMatch)) {
      throw badRequest(
        `resourceVersionMatch: Unsupported value: "${rvMatch}": supported values: "Exact", "NotOlderThan"`,
      );
    }
    if (rvMatch && !rvText)
      throw badRequest('resourceVersionMatch is forbidden unless resourceVersion is provided');
    if (continueToken && rvText)
      throw badRequest('specifying resource version is not allowed when using continue');

    const current = this.store.resourceVersion;
    let atRv = current;
    let startAfter = '';
    if (continueToken) {
      const token = decodeContinue(continueToken);
      if (token.rv < this.store.oldestRetainedVersion) {
        throw gone(
          'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.',
        );
      }
      atRv = token.rv;
      startAfter = token.start;
    } else if (rvText && rvText !== '0') {
      const rv = Number(rvText);
      if (!/^\d+$/.test(rvText))
        throw badRequest(`resourceVersion: Invalid value: "${rvText}": must be an unsigned integer`);
      if (rv > current) {
        throw new ApiError(504, 'Timeout', `Too large resource version: ${rv}, current: ${current}`, {
          retryAfterSeconds: 1,
        });
      }
      if (rvMatch === 'Exact') atRv = rv;
    }

    const keys = this.store.keysOf(ctx.type.id);
    const ns = ctx.type.namespaced ? ctx.namespace : undefined;
    let source: Map<string, JsonObject> | undefined;
    let orderedKeys = keys;
    if (atRv !== current) {
      source = this.store.snapshotAt(ctx.type.id, atRv);
      orderedKeys = [...source.keys()].sort();
    }
    const items: JsonObject[] = [];
    let next = '';
    let remaining = 0;
    let i = 0;
    if (startAfter) {
      let lo = 0;
      let hi = orderedKeys.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (orderedKeys[mid]! <= startAfter) lo = mid + 1;
        else hi = mid;
      }
      i = lo;
    }
    const filtered = sel.labels.length > 0 || sel.fields.length > 0;
    for (; i < orderedKeys.length; i++) {
      const k = orderedKeys[i]!;
      if (ns && !k.startsWith(`${ns}/`)) continue;
      const o = source ? source.get(k) : this.store.get(ctx.type.id, k);
      if (!o || (filtered && !this.matches(ctx.type, sel, o))) continue;
      if (limit > 0 && items.length === limit) {
        next = encodeContinue(
          atRv,
          meta(items[items.length - 1]!) && keyOfObject(ctx.type, items[items.length - 1]!),
        );
        if (!filtered) {
          for (; i < orderedKeys.length; i++) if (!ns || orderedKeys[i]!.startsWith(`${ns}/`)) remaining++;
        }
        break;
      }
      items.push(this.present(ctx.type, ctx.version, o));
    }
    const metadata: JsonObject = { resourceVersion: String(atRv) };
    if (next) {
      metadata.continue = next;
      if (!filtered) metadata.remainingItemCount = remaining;
    }
    return { items, metadata };
  }

  // ---- writes ----------------------------------------------------------------------------------

  private dryRun(ctx: RequestContext): boolean {
    const values = ctx.query.getAll('dryRun');
    for (const v of values)
      if (v !== 'All') throw badRequest(`dryRun: Unsupported value: "${v}": supported values: "All"`);
    return values.length > 0;
  }

  private fieldManager(ctx: RequestContext, fallback?: string): string {
    const m = ctx.query.get('fieldManager');
    if (m !== null) {
      if (m.length > 128) throw badRequest('fieldManager: Too long: must have at most 128 bytes');
      return m;
    }
    if (fallback) return fallback;
    const ua = ctx.userAgent.split('/')[0] ?? '';
    return ua.length > 0 ? ua.slice(0, 128) : 'unknown';
  }

  private checkTypeMeta(ctx: RequestContext, body: JsonValue): JsonObject {
    if (!isObject(body)) throw badRequest('the request body must be a JSON or YAML object');
    const t = ctx.type;
    const expected = apiVersionOf(t, ctx.version);
    if (body.kind !== undefined && body.kind !== t.kind) {
      throw badRequest(
        `the kind in the body (${String(body.kind)}) does not match the kind of the resource ${t.plural} (${t.kind})`,
      );
    }
    if (body.apiVersion !== undefined && body.apiVersion !== expected) {
      throw badRequest(
        `the API version in the data (${String(body.apiVersion)}) does not match the expected API version (${expected})`,
      );
    }
    if (body.metadata !== undefined && body.metadata !== null && !isObject(body.metadata)) {
      throw badRequest('metadata must be an object');
    }
    return {
      ...body,
      apiVersion: expected,
      kind: t.kind,
      metadata: { ...(isObject(body.metadata) ? body.metadata : {}) },
    };
  }

  private checkNamespace(ctx: RequestContext, o: JsonObject): void {
    const m = meta(o);
    if (!ctx.type.namespaced) {
      delete m.namespace;
      return;
    }
    if (m.namespace !== undefined && m.namespace !== '' && m.namespace !== ctx.namespace) {
      throw badRequest(
        'the namespace of the provided object does not match the namespace sent on the request',
      );
    }
    m.namespace = ctx.namespace!;
  }

  private requireNamespace(ctx: RequestContext): void {
    if (!ctx.type.namespaced) return;
    const ns = this.store.get(namespaceTypeId, ctx.namespace!);
    if (!ns) throw notFound({ group: '', resource: 'namespaces', kind: 'Namespace' }, ctx.namespace!);
    if (meta(ns).deletionTimestamp) {
      throw new ApiError(
        403,
        'Forbidden',
        `${ctx.type.plural} "${String(ctx.name ?? '')}" is forbidden: unable to create new content in namespace ${ctx.namespace} because it is being terminated`,
        { name: ctx.name, kind: ctx.type.plural },
      );
    }
  }

  create(ctx: RequestContext, body: JsonValue): JsonObject {
    if (ctx.type.review) return this.review(ctx, body);
    const o = this.checkTypeMeta(ctx, body);
    this.checkNamespace(ctx, o);
    const m = meta(o);
    if (
      (m.name === undefined || m.name === '') &&
      typeof m.generateName === 'string' &&
      m.generateName !== ''
    ) {
      m.name = `${m.generateName}${randomSuffix()}`;
    }
    const manager = this.fieldManager(ctx);
    return this.commitCreate(ctx, o, (candidate) =>
      recordUpdate({ oldObj: undefined, newObj: candidate, manager, ...this.scopeOf(ctx, 'main') }),
    );
  }

  private scopeOf(ctx: RequestContext, scope: Scope) {
    return {
      schema: ctx.type.mergeSchema,
      scope,
      statusIsSubresource: ctx.type.statusSubresource,
      apiVersion: apiVersionOf(ctx.type, ctx.version),
    };
  }

  private commitCreate(
    ctx: RequestContext,
    o: JsonObject,
    track: (candidate: JsonObject) => JsonObject,
  ): JsonObject {
    const t = ctx.type;
    const m = meta(o);
    const name = typeof m.name === 'string' ? m.name : '';
    const metaErrors = validateMetadata(t, o);
    if (metaErrors.some((e) => e.field === 'metadata.name' && e.type === 'FieldValueRequired')) {
      throw invalid(t.kind, t.group, name, metaErrors);
    }
    if (ctx.name && ctx.name !== name)
      throw badRequest(`the name of the object (${name}) does not match the name on the URL (${ctx.name})`);
    const ctxWithName = { ...ctx, name };
    this.requireNamespace(ctxWithName);
    const key = this.key(ctx, name);
    if (this.store.get(t.id, key)) throw alreadyExists(ref(t), name);

    for (const k of ['resourceVersion', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'selfLink'])
      delete m[k];
    m.uid = randomUUID();
    m.creationTimestamp = nowRfc3339();
    if (t.tracksGeneration) m.generation = 1;
    else delete m.generation;
    delete m.managedFields;
    this.prepareForCreate(t, o);
    const candidate = this.finish(ctx, o, undefined, 'create', metaErrors);
    const tracked = track(candidate);
    const allocations = this.planServiceAllocations(t, tracked, undefined);
    if (this.dryRun(ctx)) return this.present(t, ctx.version, tracked);
    // Stored first: a write the journal refuses must not leave an allocation behind.
    const stored = this.store.put(t.id, key, tracked);
    allocations?.commit();
    this.afterWrite(t, stored, undefined);
    return this.present(t, ctx.version, stored);
  }

  private prepareForCreate(t: ResourceType, o: JsonObject): void {
    switch (t.id) {
      case '/pods':
        o.status = { phase: 'Pending', qosClass: 'BestEffort' };
        return;
      case '/services':
        o.status = { loadBalancer: {} };
        return;
      case '/namespaces':
        o.status = { phase: 'Active' };
        return;
      case '/nodes':
        return;
      default:
        if (t.statusSubresource) delete o.status;
    }
  }

  /** Defaults, kind rules and validation shared by every write; returns the object to store. */
  private finish(
    ctx: RequestContext,
    o: JsonObject,
    old: JsonObject | undefined,
    kind: WriteKind,
    earlier: FieldError[] = [],
  ): JsonObject {
    const t = ctx.type;
    const name = String(meta(o).name ?? '');
    applyDefaults(t, o);
    let result = o;
    const errors: FieldError[] = [...earlier];
    if (t.id === crdTypeId) {
      const crdErrors = validateCrd(o);
      if (crdErrors.length === 0) {
        defaultCrd(o);
        o.status = crdStatus(o, old);
        if (old && (old.spec as JsonObject).scope !== (o.spec as JsonObject).scope) {
          errors.push({
            type: 'FieldValueInvalid',
            field: 'spec.scope',
            value: (o.spec as JsonObject).scope,
            detail: 'field is immutable',
          });
        }
        const clash = this.registry.byGroupResource(
          (o.spec as JsonObject).group as string,
          ((o.spec as JsonObject).names as JsonObject).plural as string,
        );
        if (clash && !clash.custom) {
          errors.push({
            type: 'FieldValueInvalid',
            field: 'spec.names.plural',
            value: clash.plural,
            detail: 'conflicts with a built-in resource',
          });
        }
      }
      errors.push(...crdErrors);
    } else if (t.custom) {
      const schema = t.custom.schemas[ctx.version] as OpenApiV3Schema | undefined;
      const checked = validateCustomResource(o, schema);
      result = checked.value;
      errors.push(...checked.errors);
      this.handleUnknownFields(ctx, checked.unknownFields);
    } else {
      errors.push(...validateBuiltin(t, o));
    }
    if (old && t.id === podTypeId && isObject(old.spec) && isObject(o.spec))
      errors.push(...podUpdateProblem(old.spec, o.spec));
    if (old && t.id === serviceTypeId) errors.push(...serviceUpdateProblems(old, o));
    if (kind === 'update') errors.push(...validateMetadata(t, o));
    if (errors.length > 0) throw invalid(t.kind, t.group, name, dedupe(errors));
    return result;
  }

  private handleUnknownFields(ctx: RequestContext, unknown: string[]): void {
    if (unknown.length === 0) return;
    const mode = ctx.query.get('fieldValidation') ?? 'Warn';
    if (mode === 'Strict') {
      const list = unknown.map((f) => `unknown field "${f}"`).join(', ');
      throw badRequest(
        `${ctx.type.kind} in version "${ctx.version}" cannot be handled as a ${ctx.type.kind}: strict decoding error: ${list}`,
      );
    }
    if (mode === 'Warn') for (const f of unknown) ctx.warnings.push(`unknown field "${f}"`);
  }

  update(ctx: RequestContext, body: JsonValue): JsonObject {
    const scope: Scope = ctx.subresource === 'status' ? 'status' : 'main';
    const o = this.checkTypeMeta(ctx, body);
    this.checkNamespace(ctx, o);
    const m = meta(o);
    if (m.name !== undefined && m.name !== ctx.name) {
      throw badRequest(
        `the name of the object (${String(m.name)}) does not match the name on the URL (${ctx.name})`,
      );
    }
    m.name = ctx.name!;
    const old = this.store.get(ctx.type.id, this.key(ctx, ctx.name!));
    if (!old) throw notFound(ref(ctx.type), ctx.name!);
    if (
      m.resourceVersion !== undefined &&
      m.resourceVersion !== '' &&
      m.resourceVersion !== meta(old).resourceVersion
    ) {
      throw conflict(
        ref(ctx.type),
        ctx.name!,
        'the object has been modified; please apply your changes to the latest version and try again',
      );
    }
    const manager = this.fieldManager(ctx);
    return this.commitUpdate(ctx, old, o, scope, (candidate) =>
      this.keepOrTrack(old, candidate, (c) =>
        recordUpdate({ oldObj: old, newObj: c, manager, ...this.scopeOf(ctx, scope) }),
      ),
    );
  }

  /** A request may set managedFields itself (kubectl does when migrating to server-side apply). */
  private keepOrTrack(
    old: JsonObject,
    candidate: JsonObject,
    track: (c: JsonObject) => JsonObject,
  ): JsonObject {
    const requested = meta(candidate).managedFields;
    if (Array.isArray(requested) && !deepEqual(requested, meta(old).managedFields)) {
      if (
        !requested.every((e) => isObject(e) && typeof e.manager === 'string' && isObject(e.fieldsV1 ?? {}))
      ) {
        throw badRequest('metadata.managedFields: Invalid value: must be a list of managed fields entries');
      }
      return candidate;
    }
    return track(candidate);
  }

  private commitUpdate(
    ctx: RequestContext,
    old: JsonObject,
    incoming: JsonObject,
    scope: Scope,
    track: (candidate: JsonObject) => JsonObject,
  ): JsonObject {
    const t = ctx.type;
    const oldMeta = meta(old);
    let o: JsonObject;
    if (scope === 'status') {
      o = { ...clone(old), status: clone(incoming.status ?? null) };
      if (o.status === null) delete o.status;
      // kubectl and controllers may send metadata with a status update; only managedFields may move.
      if (meta(incoming).managedFields !== undefined) meta(o).managedFields = meta(incoming).managedFields!;
    } else {
      o = incoming;
      if (t.statusSubresource) {
        if (old.status !== undefined) o.status = clone(old.status);
        else delete o.status;
      }
    }
    const m = meta(o);
    m.uid = oldMeta.uid!;
    m.creationTimestamp = oldMeta.creationTimestamp!;
    m.namespace = oldMeta.namespace!;
    if (!t.namespaced) delete m.namespace;
    for (const k of ['deletionTimestamp', 'deletionGracePeriodSeconds'] as const) {
      if (oldMeta[k] !== undefined) m[k] = oldMeta[k]!;
      else delete m[k];
    }
    if (m.generateName === undefined && oldMeta.generateName !== undefined)
      m.generateName = oldMeta.generateName!;
    if (t.id === serviceTypeId) preserveServiceAllocations(old, o);
    if (t.id === crdTypeId || t.id === namespaceTypeId || t.id === '/nodes') {
      if (scope === 'main' && t.id === namespaceTypeId) o.status = clone(old.status ?? { phase: 'Active' });
    }
    const candidate = this.finish(ctx, o, old, 'update');
    if (t.tracksGeneration) {
      const gen = typeof oldMeta.generation === 'number' ? oldMeta.generation : 1;
      meta(candidate).generation = deepEqual(specPart(old), specPart(candidate)) ? gen : gen + 1;
    }
    let tracked = track(candidate);
    if (
      deepEqual(withoutVolatile(old), withoutVolatile(tracked)) &&
      deepEqual(oldMeta.managedFields, meta(tracked).managedFields)
    ) {
      return this.present(t, ctx.version, old);
    }
    if (deepEqual(withoutVolatile(old), withoutVolatile(tracked))) {
      // Nothing but ownership timestamps moved: like the real server, no new resourceVersion.
      return this.present(t, ctx.version, old);
    }
    const dry = this.dryRun(ctx);
    const allocations = this.planServiceAllocations(t, tracked, old);
    if (dry) return this.present(t, ctx.version, tracked);
    const finalizers = meta(tracked).finalizers;
    if (meta(tracked).deletionTimestamp && (!Array.isArray(finalizers) || finalizers.length === 0)) {
      const graceLeft = t.id === podTypeId && Number(meta(tracked).deletionGracePeriodSeconds ?? 0) > 0;
      if (!graceLeft) {
        // The object goes: removing it releases what the stored one held; nothing new is reserved.
        return this.present(t, ctx.version, this.removeNow(t, keyOfObject(t, tracked))!);
      }
    }
    tracked = this.store.put(t.id, keyOfObject(t, tracked), tracked);
    allocations?.commit();
    this.afterWrite(t, tracked, old);
    return this.present(t, ctx.version, tracked);
  }

  patch(ctx: RequestContext, contentType: string, body: JsonValue): { object: JsonObject; created: boolean } {
    const t = ctx.type;
    const scope: Scope = ctx.subresource === 'status' ? 'status' : 'main';
    const mime = contentType.split(';')[0]!.trim().toLowerCase();
    const key = this.key(ctx, ctx.name!);
    const old = this.store.get(t.id, key);
    if (mime === 'application/apply-patch+yaml') return this.apply(ctx, old, body, scope);
    if (!old) throw notFound(ref(t), ctx.name!);
    const current = this.present(t, ctx.version, old);
    let patched: JsonValue;
    switch (mime) {
      case 'application/json-patch+json':
        patched = applyJsonPatch(current, body);
        break;
      case 'application/merge-patch+json':
        if (!isObject(body)) throw badRequest('the merge patch must be a JSON object');
        patched = applyMergePatch(current, body);
        break;
      case 'application/strategic-merge-patch+json':
        if (t.custom) {
          throw new ApiError(
            415,
            'UnsupportedMediaType',
            'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml',
          );
        }
        patched = applyStrategicMergePatch(current, body, t.mergeSchema);
        break;
      default:
        throw new ApiError(
          415,
          'UnsupportedMediaType',
          `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml${t.custom ? '' : ', application/strategic-merge-patch+json'}`,
        );
    }
    if (!isObject(patched)) throw badRequest('the patched object must be a JSON object');
    const o = this.checkTypeMeta(ctx, patched);
    this.checkNamespace(ctx, o);
    const m = meta(o);
    if (m.name !== ctx.name)
      throw badRequest(
        `the name of the object (${String(m.name)}) does not match the name on the URL (${ctx.name})`,
      );
    if (m.resourceVersion !== undefined && m.resourceVersion !== meta(old).resourceVersion) {
      throw conflict(
        ref(t),
        ctx.name!,
        'the object has been modified; please apply your changes to the latest version and try again',
      );
    }
    const manager = this.fieldManager(ctx);
    const object = this.commitUpdate(ctx, old, o, scope, (candidate) =>
      this.keepOrTrack(old, candidate, (c) =>
        recordUpdate({ oldObj: old, newObj: c, manager, ...this.scopeOf(ctx, scope) }),
      ),
    );
    return { object, created: false };
  }

  private apply(
    ctx: RequestContext,
    old: JsonObject | undefined,
    body: JsonValue,
    scope: Scope,
  ): { object: JsonObject; created: boolean } {
    const t = ctx.type;
    const manager = ctx.query.get('fieldManager');
    if (!manager)
      throw badRequest('PATCH, application/apply-patch+yaml: fieldManager is required for apply requests');
    const forceText = ctx.query.get('force');
    if (forceText !== null && forceText !== 'true' && forceText !== 'false')
      throw badRequest(`force: Invalid value: "${forceText}"`);
    const force = forceText === 'true';
    const applied = this.checkTypeMeta(ctx, body);
    if (!isObject(body) || body.apiVersion === undefined || body.kind === undefined) {
      throw badRequest('apiVersion and kind must be set in an applied configuration');
    }
    const m = meta(applied);
    if (m.name !== undefined && m.name !== ctx.name) {
      throw badRequest(
        `the name of the object (${String(m.name)}) does not match the name on the URL (${ctx.name})`,
      );
    }
    m.name = ctx.name!;
    this.checkNamespace(ctx, applied);
    if (m.managedFields !== undefined) throw badRequest('metadata.managedFields must be nil');
    const input = { manager, force, ...this.scopeOf(ctx, scope) };
    if (!old) {
      if (scope === 'status') throw notFound(ref(t), ctx.name!);
      const object = this.commitCreate(ctx, clone(applied), (candidate) => {
        const withFields = serverSideApply({ live: undefined, applied, ...input });
        return {
          ...candidate,
          metadata: { ...meta(candidate), managedFields: meta(withFields).managedFields! },
        };
      });
      return { object, created: true };
    }
    if (m.resourceVersion !== undefined && m.resourceVersion !== meta(old).resourceVersion) {
      throw conflict(
        ref(t),
        ctx.name!,
        'the object has been modified; please apply your changes to the latest version and try again',
      );
    }
    const live = this.present(t, ctx.version, old);
    const merged = serverSideApply({ live, applied, ...input });
    const object = this.commitUpdate(ctx, old, merged, scope, (candidate) => candidate);
    return { object, created: false };
  }

  // ---- deletes ---------------------------------------------------------------------------------

  delete(ctx: RequestContext, body: JsonValue | undefined): JsonObject {
    const t = ctx.type;
    const key = this.key(ctx, ctx.name!);
    const old = this.store.get(t.id, key);
    if (!old) throw notFound(ref(t), ctx.name!);
    const opts = this.deleteOptions(ctx, body);
    const oldMeta = meta(old);
    if (opts.preconditions.uid !== undefined && opts.preconditions.uid !== oldMeta.uid) {
      throw conflict(
        ref(t),
        ctx.name!,
        `Precondition failed: UID in precondition: ${opts.preconditions.uid}, UID in object meta: ${String(oldMeta.uid)}`,
      );
    }
    if (
      opts.preconditions.resourceVersion !== undefined &&
      opts.preconditions.resourceVersion !== oldMeta.resourceVersion
    ) {
      throw conflict(
        ref(t),
        ctx.name!,
        `Precondition failed: ResourceVersion in precondition: ${opts.preconditions.resourceVersion}, ResourceVersion in object meta: ${String(oldMeta.resourceVersion)}`,
      );
    }
    if (this.dryRun(ctx)) return this.present(t, ctx.version, old);
    if (opts.propagationPolicy === 'Orphan') this.orphanDependents(t, old);
    return this.present(t, ctx.version, this.deleteObject(t, key, old, opts.gracePeriodSeconds));
  }

  /**
   * propagationPolicy=Orphan (`kubectl delete --cascade=orphan`): what kube-apiserver's orphan
   * finalizer and the garbage collector do together, done at once because the devcluster's
   * garbage collector runs outside the server and would otherwise see the dependents' owner
   * gone and delete them: every ownerReference to the deleted object is removed from the
   * objects of its namespace (of every namespace for a cluster-scoped owner).
   */
  private orphanDependents(ownerType: ResourceType, owner: JsonObject): void {
    const uid = meta(owner).uid;
    if (typeof uid !== 'string') return;
    const namespace = ownerType.namespaced ? String(meta(owner).namespace ?? '') : undefined;
    for (const t of this.registry.all()) {
      if (!t.namespaced && namespace !== undefined) continue;
      for (const o of this.store.list(t.id, t.namespaced ? namespace : undefined)) {
        const refs = meta(o).ownerReferences;
        if (!Array.isArray(refs) || !refs.some((r) => isObject(r) && r.uid === uid)) continue;
        const next = clone(o);
        const kept = refs.filter((r) => !(isObject(r) && r.uid === uid));
        if (kept.length > 0) meta(next).ownerReferences = kept;
        else delete meta(next).ownerReferences;
        this.store.put(t.id, keyOfObject(t, o), next);
      }
    }
  }

  private deleteOptions(ctx: RequestContext, body: JsonValue | undefined) {
    const o = isObject(body) ? body : {};
    if (o.kind !== undefined && o.kind !== 'DeleteOptions')
      throw badRequest(`the request body must be DeleteOptions, not ${String(o.kind)}`);
    const q = ctx.query;
    const graceText = q.get('gracePeriodSeconds');
    let gracePeriodSeconds: number | undefined;
    if (graceText !== null) {
      if (!/^-?\d+$/.test(graceText)) throw badRequest(`gracePeriodSeconds: Invalid value: "${graceText}"`);
      gracePeriodSeconds = Number(graceText);
    } else if (typeof o.gracePeriodSeconds === 'number') gracePeriodSeconds = o.gracePeriodSeconds;
    const propagation =
      q.get('propagationPolicy') ??
      (typeof o.propagationPolicy === 'string' ? o.propagationPolicy : undefined);
    if (propagation !== undefined && !['Orphan', 'Background', 'Foreground'].includes(propagation)) {
      throw new ApiError(
        422,
        'Invalid',
        `DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "${propagation}": supported values: "Foreground", "Background", "Orphan"`,
      );
    }
    if (isObject(o) && Array.isArray(o.dryRun))
      for (const v of o.dryRun) ctx.query.append('dryRun', String(v));
    const pre = isObject(o.preconditions) ? o.preconditions : {};
    return {
      gracePeriodSeconds,
      propagationPolicy: propagation,
      preconditions: {
        uid: typeof pre.uid === 'string' ? pre.uid : undefined,
        resourceVersion: typeof pre.resourceVersion === 'string' ? pre.resourceVersion : undefined,
      },
    };
  }

  /** Deletion with the real server's rules: finalizers hold, bound pods terminate gracefully. */
  private deleteObject(t: ResourceType, key: string, old: JsonObject, grace: number | undefined): JsonObject {
    const oldMeta = meta(old);
    const finalizers = Array.isArray(oldMeta.finalizers) ? oldMeta.finalizers : [];
    const now = new Date();
    if (t.id === namespaceTypeId) {
      if (oldMeta.deletionTimestamp) return old;
      const next = clone(old);
      meta(next).deletionTimestamp = nowRfc3339();
      next.status = { ...(isObject(next.status) ? next.status : {}), phase: 'Terminating' };
      const stored = this.store.put(t.id, key, next);
      this.scheduleNamespaceSweep(0);
      return stored;
    }
    if (t.id === podTypeId) {
      const spec = isObject(old.spec) ? old.spec : {};
      const phase = isObject(old.status) ? old.status.phase : undefined;
      const bound = typeof spec.nodeName === 'string' && spec.nodeName !== '';
      const terminal = phase === 'Succeeded' || phase === 'Failed';
      let period =
        grace ??
        (typeof spec.terminationGracePeriodSeconds === 'number' ? spec.terminationGracePeriodSeconds : 30);
      if (period < 0) period = 1;
      if (!bound || terminal) period = 0;
      const current =
        typeof oldMeta.deletionGracePeriodSeconds === 'number'
          ? oldMeta.deletionGracePeriodSeconds
          : undefined;
      if (period > 0 || finalizers.length > 0) {
        if (oldMeta.deletionTimestamp && current !== undefined && current <= period) return old;
        if (period === 0 && current === 0 && oldMeta.deletionTimestamp) return old;
        const next = clone(old);
        const m = meta(next);
        m.deletionTimestamp = `${new Date(now.getTime() + period * 1000).toISOString().slice(0, 19)}Z`;
        m.deletionGracePeriodSeconds = period;
        if (period > 0 || finalizers.length > 0) {
          const stored = this.store.put(t.id, key, next);
          return stored;
        }
      }
      return this.removeNow(t, key)!;
    }
    if (finalizers.length > 0) {
      if (oldMeta.deletionTimestamp) return old;
      const next = clone(old);
      meta(next).deletionTimestamp = nowRfc3339();
      meta(next).deletionGracePeriodSeconds = 0;
      if (t.tracksGeneration) meta(next).generation = Number(oldMeta.generation ?? 1) + 1;
      return this.store.put(t.id, key, next);
    }
    return this.removeNow(t, key)!;
  }

  /** Removes an object from the store and releases what it held. */
  private removeNow(t: ResourceType, key: string): JsonObject | undefined {
    const gone = this.store.delete(t.id, key);
    if (!gone) return undefined;
    if (t.id === serviceTypeId) this.releaseServiceAllocations(gone);
    if (t.id === crdTypeId) this.dropCustomResource(gone);
    if (t.namespaced && this.terminatingNamespace(String(meta(gone).namespace ?? '')))
      this.scheduleNamespaceSweep(0);
    return gone;
  }

  deleteCollection(ctx: RequestContext, body: JsonValue | undefined): ListResult {
    const t = ctx.type;
    const sel = this.selectors(ctx);
    const opts = this.deleteOptions(ctx, body);
    const dry = this.dryRun(ctx);
    const ns = t.namespaced ? ctx.namespace : undefined;
    const items: JsonObject[] = [];
    for (const o of this.store.list(t.id, ns)) {
      if (!this.matches(t, sel, o)) continue;
      const key = keyOfObject(t, o);
      if (!dry && opts.propagationPolicy === 'Orphan') this.orphanDependents(t, o);
      items.push(
        this.present(t, ctx.version, dry ? o : this.deleteObject(t, key, o, opts.gracePeriodSeconds)),
      );
    }
    return { items, metadata: { resourceVersion: String(this.store.resourceVersion) } };
  }

  // ---- reviews -------------------------------------------------------------------------------------

  /**
   * `kubectl auth can-i` and `kubectl auth whoami`: this server authenticates but does not
   * authorize (RBAC objects are stored, not enforced), so every authenticated caller may do
   * everything, and the answer says so.
   */
  private review(ctx: RequestContext, body: JsonValue): JsonObject {
    const o = this.checkTypeMeta(ctx, body);
    const who =
      ctx.identity.kind === 'admin'
        ? { username: 'weft-devcluster-admin', groups: ['system:masters', 'system:authenticated'] }
        : {
            username: `system:serviceaccount:${ctx.identity.namespace}:${ctx.identity.name}`,
            groups: [
              'system:serviceaccounts',
              `system:serviceaccounts:${ctx.identity.namespace}`,
              'system:authenticated',
            ],
          };
    switch (ctx.type.kind) {
      case 'SelfSubjectAccessReview':
        return { ...o, status: { allowed: true, reason: 'the devcluster API server does not enforce RBAC' } };
      case 'SelfSubjectRulesReview':
        return {
          ...o,
          status: {
            resourceRules: [{ verbs: ['*'], apiGroups: ['*'], resources: ['*'] }],
            nonResourceRules: [{ verbs: ['*'], nonResourceURLs: ['*'] }],
            incomplete: false,
          },
        };
      default:
        return { ...o, status: { userInfo: who } };
    }
  }

  // ---- serviceaccounts/token ----------------------------------------------------------------------

  /** TokenRequest: a signed token for an existing ServiceAccount (default one hour, 10 min to 48 h). */
  tokenRequest(ctx: RequestContext, body: JsonValue): JsonObject {
    if (!isObject(body) || (body.kind !== undefined && body.kind !== 'TokenRequest')) {
      throw badRequest('the request body must be an authentication.k8s.io/v1 TokenRequest');
    }
    const sa = this.store.get('/serviceaccounts', this.key(ctx, ctx.name!));
    if (!sa) throw notFound(ref(ctx.type), ctx.name!);
    const spec = isObject(body.spec) ? body.spec : {};
    const requested = spec.expirationSeconds ?? 3600;
    if (
      typeof requested !== 'number' ||
      !Number.isInteger(requested) ||
      requested < 600 ||
      requested > 48 * 3600
    ) {
      throw invalid('TokenRequest', 'authentication.k8s.io', ctx.name!, [
        {
          type: 'FieldValueInvalid',
          field: 'spec.expirationSeconds',
          value: requested as JsonValue,
          detail: 'may not specify a duration less than 10 minutes or more than 48 hours',
        },
      ]);
    }
    if (!this.issueToken)
      throw new ApiError(500, 'InternalError', 'Internal error occurred: this server issues no tokens');
    const token = this.issueToken(ctx.namespace!, ctx.name!, requested);
    return {
      kind: 'TokenRequest',
      apiVersion: 'authentication.k8s.io/v1',
      metadata: { name: ctx.name!, namespace: ctx.namespace!, creationTimestamp: null },
      spec: {
        audiences: ['https://kubernetes.default.svc.cluster.local'],
        expirationSeconds: requested,
        boundObjectRef: null,
      },
      status: {
        token,
        expirationTimestamp: `${new Date(Date.now() + requested * 1000).toISOString().slice(0, 19)}Z`,
      },
    };
  }

  // ---- pods/binding ------------------------------------------------------------------------------

  bind(ctx: RequestContext, body: JsonValue): JsonObject {
    if (
      !isObject(body) ||
      !isObject(body.target) ||
      typeof body.target.name !== 'string' ||
      body.target.name === ''
    ) {
      throw invalid('Binding', '', ctx.name!, [{ type: 'FieldValueRequired', field: 'target.name' }]);
    }
    const key = this.key(ctx, ctx.name!);
    const pod = this.store.get(podTypeId, key);
    if (!pod) throw notFound(ref(ctx.type), ctx.name!);
    const spec = isObject(pod.spec) ? pod.spec : {};
    if (spec.nodeName) {
      throw conflict(
        ref(ctx.type),
        ctx.name!,
        `pod ${ctx.name} is already assigned to node "${String(spec.nodeName)}"`,
      );
    }
    if (meta(pod).deletionTimestamp)
      throw conflict(
        ref(ctx.type),
        ctx.name!,
        `pod ${ctx.name} is being deleted, cannot be assigned to a host`,
      );
    if (this.dryRun(ctx)) return successStatus();
    const next = clone(pod);
    (next.spec as JsonObject).nodeName = body.target.name;
    const status = isObject(next.status) ? next.status : {};
    const conditions = Array.isArray(status.conditions)
      ? status.conditions.filter((c) => !(isObject(c) && c.type === 'PodScheduled'))
      : [];
    conditions.push({
      type: 'PodScheduled',
      status: 'True',
      lastProbeTime: null,
      lastTransitionTime: nowRfc3339(),
    });
    status.conditions = conditions;
    next.status = status;
    this.store.put(podTypeId, key, next);
    return successStatus();
  }

  // ---- built-in controllers ---------------------------------------------------------------------

  private afterWrite(t: ResourceType, stored: JsonObject, old: JsonObject | undefined): void {
    if (t.id === crdTypeId) {
      this.registry.add(customResourceType(stored));
      if (old) {
        const before = customResourceType(old);
        const after = customResourceType(stored);
        if (before.id !== after.id) this.registry.remove(before.id);
      }
    }
    if (t.id === namespaceTypeId && !old) this.onNamespaceCreated?.(String(meta(stored).name));
  }

  private dropCustomResource(crd: JsonObject): void {
    let t: ResourceType;
    try {
      t = customResourceType(crd);
    } catch {
      return;
    }
    const removed = this.store.dropCollection(t.id);
    this.registry.remove(t.id);
    this.log.info({ crd: meta(crd).name, removed }, 'custom resource definition deleted with its objects');
  }

  private terminatingNamespace(name: string): boolean {
    const ns = this.store.get(namespaceTypeId, name);
    return !!ns && !!meta(ns).deletionTimestamp;
  }

  private scheduleNamespaceSweep(delayMs = 1000): void {
    if (this.namespaceSweep) {
      if (delayMs > 0) return;
      clearTimeout(this.namespaceSweep);
    }
    this.namespaceSweep = setTimeout(() => {
      this.namespaceSweep = undefined;
      try {
        this.sweepNamespaces();
      } catch (err) {
        this.log.error({ err }, 'namespace cleanup failed; retrying');
        this.scheduleNamespaceSweep();
      }
    }, delayMs);
    this.namespaceSweep.unref();
  }

  /** The namespace controller: delete what terminating namespaces hold, then the namespaces. */
  private sweepNamespaces(): void {
    let pending = false;
    for (const ns of this.store.list(namespaceTypeId)) {
      const m = meta(ns);
      if (!m.deletionTimestamp) continue;
      const name = String(m.name);
      let remaining = 0;
      for (const t of this.registry.all()) {
        if (!t.namespaced) continue;
        for (const o of this.store.list(t.id, name)) {
          const key = keyOfObject(t, o);
          const after = meta(o).deletionTimestamp ? o : this.deleteObject(t, key, o, undefined);
          if (this.store.get(t.id, key) && after) remaining++;
        }
      }
      const finalizers = Array.isArray(m.finalizers) ? m.finalizers : [];
      if (remaining === 0 && finalizers.length === 0) this.store.delete(namespaceTypeId, name);
      else pending = true;
    }
    if (pending) this.scheduleNamespaceSweep();
  }

  // ---- Service allocations ----------------------------------------------------------------------

  private reserveServiceAllocations(svc: JsonObject): void {
    const spec = isObject(svc.spec) ? svc.spec : {};
    if (typeof spec.clusterIP === 'string' && spec.clusterIP !== 'None' && spec.clusterIP !== '')
      this.clusterIPs.reserve(spec.clusterIP);
    for (const p of Array.isArray(spec.ports) ? spec.ports : []) {
      if (isObject(p) && typeof p.nodePort === 'number') this.nodePorts.reserve(p.nodePort);
    }
  }

  private releaseServiceAllocations(svc: JsonObject): void {
    const spec = isObject(svc.spec) ? svc.spec : {};
    if (typeof spec.clusterIP === 'string' && spec.clusterIP !== 'None' && spec.clusterIP !== '')
      this.clusterIPs.release(spec.clusterIP);
    for (const p of Array.isArray(spec.ports) ? spec.ports : []) {
      if (isObject(p) && typeof p.nodePort === 'number') this.nodePorts.release(p.nodePort);
    }
  }

  /**
   * Fills in the ClusterIP and NodePorts a Service needs (checking user-chosen ones) without
   * reserving anything; `commit` reserves the new ones and releases the ones given up.
   */
  private planServiceAllocations(
    t: ResourceType,
    svc: JsonObject,
    old: JsonObject | undefined,
  ): { commit(): void } | undefined {
    if (t.id !== serviceTypeId) return undefined;
    const spec = svc.spec as JsonObject;
    const oldSpec = old && isObject(old.spec) ? old.spec : {};
    const name = String(meta(svc).name);
    const type = String(spec.type ?? 'ClusterIP');
    const errors: FieldError[] = [];
    const oldIP =
      typeof oldSpec.clusterIP === 'string' && oldSpec.clusterIP !== 'None' ? oldSpec.clusterIP : '';
    let newIP = '';
    if (type === 'ExternalName') {
      delete spec.clusterIP;
      delete spec.clusterIPs;
    } else if (spec.clusterIP === 'None') {
      spec.clusterIPs = ['None'];
    } else {
      const wanted = typeof spec.clusterIP === 'string' ? spec.clusterIP : '';
      if (wanted !== '' && wanted !== oldIP) {
        const problem = this.clusterIPs.check(wanted);
        if (problem === 'taken') {
          errors.push({
            type: 'FieldValueInvalid',
            field: 'spec.clusterIPs',
            value: [wanted],
            detail: `failed to allocate IP ${wanted}: provided IP is already allocated`,
          });
        } else if (problem === 'out-of-range') {
          errors.push({
            type: 'FieldValueInvalid',
            field: 'spec.clusterIPs',
            value: [wanted],
            detail: `failed to allocate IP ${wanted}: the provided IP (${wanted}) is not in the valid range. The range of valid IPs is ${this.clusterIPs.cidrText}`,
          });
        }
        newIP = wanted;
      } else if (wanted === '') {
        const next = this.clusterIPs.next();
        if (!next)
          errors.push({
            type: 'FieldValueInvalid',
            field: 'spec.clusterIPs',
            value: [],
            detail: 'failed to allocate a serviceIP: range is full',
          });
        else newIP = next;
      } else newIP = wanted;
      if (newIP) {
        spec.clusterIP = newIP;
        spec.clusterIPs = [newIP];
      }
    }
    const wantsNodePorts =
      type === 'NodePort' || (type === 'LoadBalancer' && spec.allocateLoadBalancerNodePorts !== false);
    const oldPorts = new Set<number>();
    for (const p of Array.isArray(oldSpec.ports) ? oldSpec.ports : [])
      if (isObject(p) && typeof p.nodePort === 'number') oldPorts.add(p.nodePort);
    const newPorts = new Set<number>();
    const ports = Array.isArray(spec.ports) ? spec.ports : [];
    ports.forEach((p, i) => {
      if (!isObject(p)) return;
      if (!wantsNodePorts) {
        if (type !== 'LoadBalancer' || typeof p.nodePort !== 'number') delete p.nodePort;
        if (typeof p.nodePort === 'number') newPorts.add(p.nodePort);
        return;
      }
      if (typeof p.nodePort === 'number' && p.nodePort !== 0) {
        if (!oldPorts.has(p.nodePort)) {
          const problem = this.nodePorts.check(p.nodePort);
          if (problem === 'taken' || newPorts.has(p.nodePort)) {
            errors.push({
              type: 'FieldValueInvalid',
              field: `spec.ports[${i}].nodePort`,
              value: p.nodePort,
              detail: 'provided port is already allocated',
            });
          } else if (problem === 'out-of-range') {
            errors.push({
              type: 'FieldValueInvalid',
              field: `spec.ports[${i}].nodePort`,
              value: p.nodePort,
              detail: `provided port is not in the valid range. The range of valid ports is ${this.nodePorts.range[0]}-${this.nodePorts.range[1]}`,
            });
          }
        }
        newPorts.add(p.nodePort);
      } else {
        const next = this.nodePorts.next(new Set([...newPorts]));
        if (next === undefined)
          errors.push({
            type: 'FieldValueInvalid',
            field: `spec.ports[${i}].nodePort`,
            value: 0,
            detail: 'range is full',
          });
        else {
          p.nodePort = next;
          newPorts.add(next);
        }
      }
    });
    if (errors.length > 0) throw invalid('Service', '', name, errors);
    return {
      commit: () => {
        if (oldIP && oldIP !== newIP) this.clusterIPs.release(oldIP);
        if (newIP && newIP !== 'None') this.clusterIPs.reserve(newIP);
        for (const p of oldPorts) if (!newPorts.has(p)) this.nodePorts.release(p);
        for (const p of newPorts) this.nodePorts.reserve(p);
      },
    };
  }

  /** Writes an object on the server's own behalf (bootstrap objects, controllers). */
  upsertSystemObject(typeId: string, o: JsonObject): JsonObject {
    const t = this.registry.all().find((x) => x.id === typeId)!;
    const m = meta(o);
    const key = objectKey(t.namespaced ? String(m.namespace) : undefined, String(m.name));
    const ctx: RequestContext = {
      type: t,
      version: t.version,
      namespace: t.namespaced ? String(m.namespace) : undefined,
      name: String(m.name),
      subresource: undefined,
      query: new URLSearchParams({ fieldManager: 'kube-apiserver' }),
      userAgent: 'kube-apiserver',
      identity: { kind: 'admin' },
      warnings: [],
    };
    const existing = this.store.get(t.id, key);
    if (!existing) return this.create(ctx, o);
    const merged = {
      ...clone(existing),
      ...clone(o),
      metadata: { ...meta(existing), ...m, resourceVersion: meta(existing).resourceVersion! },
    };
    return this.update(ctx, merged);
  }
}

function keyOfObject(t: ResourceType, o: JsonObject): string {
  const m = meta(o);
  return objectKey(t.namespaced ? String(m.namespace) : undefined, String(m.name));
}

function dedupe(errors: FieldError[]): FieldError[] {
  const seen = new Set<string>();
  return errors.filter((e) => {
    const k = `${e.field}|${e.type}|${e.detail ?? ''}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

function successStatus(): JsonObject {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 201 };
}

/** An update that leaves out spec.clusterIP or a port's nodePort keeps the allocated ones. */
function preserveServiceAllocations(old: JsonObject, o: JsonObject): void {
  const oldSpec = isObject(old.spec) ? old.spec : {};
  const spec = isObject(o.spec) ? o.spec : undefined;
  if (!spec) return;
  const type = spec.type ?? 'ClusterIP';
  if (type !== 'ExternalName' && oldSpec.type !== 'ExternalName') {
    if ((spec.clusterIP === undefined || spec.clusterIP === '') && oldSpec.clusterIP !== undefined)
      spec.clusterIP = oldSpec.clusterIP;
    if (spec.clusterIPs === undefined && oldSpec.clusterIPs !== undefined)
      spec.clusterIPs = clone(oldSpec.clusterIPs);
  }
  if (type === 'NodePort' || type === 'LoadBalancer') {
    const oldPorts = Array.isArray(oldSpec.ports) ? oldSpec.ports.filter(isObject) : [];
    for (const p of Array.isArray(spec.ports) ? spec.ports : []) {
      if (!isObject(p) || (p.nodePort !== undefined && p.nodePort !== 0)) continue;
      const match = oldPorts.find(
        (q) => q.port === p.port && (q.protocol ?? 'TCP') === (p.protocol ?? 'TCP'),
      );
      if (match && typeof match.nodePort === 'number') p.nodePort = match.nodePort;
    }
  }
}

function serviceUpdateProblems(old: JsonObject, o: JsonObject): FieldError[] {
  const oldSpec = isObject(old.spec) ? old.spec : {};
  const spec = isObject(o.spec) ? o.spec : {};
  if (oldSpec.type === 'ExternalName' || spec.type === 'ExternalName') return [];
  const before = oldSpec.clusterIP;
  const after = spec.clusterIP;
  if (before !== undefined && after !== undefined && before !== after) {
    return [
      {
        type: 'FieldValueInvalid',
        field: 'spec.clusterIPs[0]',
        value: [String(after)],
        detail: 'may not change once set',
      },
    ];
  }
  return [];
}

interface ContinueToken {
  rv: number;
  start: string;
}

function encodeContinue(rv: number, start: string): string {
  return Buffer.from(JSON.stringify({ v: 'meta.k8s.io/v1', rv, start })).toString('base64url');
}

function decodeContinue(token: string): ContinueToken {
  try {
    const parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as {
      v?: string;
      rv?: number;
      start?: string;
    };
    if (parsed.v !== 'meta.k8s.io/v1' || typeof parsed.rv !== 'number' || typeof parsed.start !== 'string')
      throw new Error('shape');
    return { rv: parsed.rv, start: parsed.start };
  } catch {
    throw badRequest('continue key is not valid: the continue token could not be decoded');
  }
}
