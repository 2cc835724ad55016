import { isIP } from 'node:net';
import type { FieldError } from './api-status.js';
import { deepEqual, isObject, type JsonObject, type JsonValue } from './json-value.js';
import {
  labelKeyProblem,
  validateLabelSelectorObject,
  validateLabels,
  fromLabelSelectorObject,
  matchesLabels,
} from './label-selector.js';
import type { ResourceType } from './resource-types.js';
import { parseCidr } from './service-allocator.js';

/**
 * Validation of object metadata and of the built-in kinds weft relies on, worded like
 * k8s.io/apimachinery validation so that kubectl prints what users already know.
 */
const dns1123LabelRe = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const dns1123SubdomainRe = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const dns1035LabelRe = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const ianaSvcNameRe = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const configKeyRe = /^[-._a-zA-Z0-9]+$/;

export function dns1123LabelProblem(v: string): string | undefined {
  if (v.length > 63) return 'must be no more than 63 characters';
  if (!dns1123LabelRe.test(v)) {
    return "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
  }
  return undefined;
}

export function dns1123SubdomainProblem(v: string): string | undefined {
  if (v.length > 253) return 'must be no more than 253 characters';
  if (!dns1123SubdomainRe.test(v)) {
    return "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
  }
  return undefined;
}

function dns1035LabelProblem(v: string): string | undefined {
  if (v.length > 63) return 'must be no more than 63 characters';
  if (!dns1035LabelRe.test(v)) {
    return "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
  }
  return undefined;
}

function pathSegmentProblem(v: string): string | undefined {
  if (v === '.' || v === '..') return `may not be '${v}'`;
  if (v.includes('/') || v.includes('%')) return `may not contain '/' or '%'`;
  return undefined;
}

/** Which rule a kind's names follow (apimachinery's ValidateObjectMeta name functions). */
export function nameProblem(t: ResourceType, name: string): string | undefined {
  if (t.kind === 'Namespace') return dns1123LabelProblem(name);
  if (t.kind === 'Service') return dns1035LabelProblem(name);
  if (t.group === 'rbac.authorization.k8s.io') return pathSegmentProblem(name);
  return dns1123SubdomainProblem(name);
}

export function validateMetadata(t: ResourceType, obj: JsonObject): FieldError[] {
  const errors: FieldError[] = [];
  const meta = obj.metadata;
  if (!isObject(meta))
    return [
      { type: 'FieldValueRequired', field: 'metadata.name', detail: 'name or generateName is required' },
    ];
  const name = meta.name;
  if (typeof name !== 'string' || name === '') {
    errors.push({
      type: 'FieldValueRequired',
      field: 'metadata.name',
      detail: 'name or generateName is required',
    });
  } else {
    const problem = nameProblem(t, name);
    if (problem)
      errors.push({ type: 'FieldValueInvalid', field: 'metadata.name', value: name, detail: problem });
  }
  for (const field of ['labels', 'annotations'] as const) {
    const v = meta[field];
    if (v === undefined || v === null) continue;
    if (!isObject(v)) {
      errors.push({
        type: 'FieldValueTypeInvalid',
        field: `metadata.${field}`,
        value: v,
        detail: 'must be a map of strings',
      });
      continue;
    }
    if (field === 'labels') errors.push(...validateLabels(v, 'metadata.labels'));
    else {
      let size = 0;
      for (const [k, value] of Object.entries(v)) {
        const problem = labelKeyProblem(k);
        if (problem)
          errors.push({
            type: 'FieldValueInvalid',
            field: 'metadata.annotations',
            value: k,
            detail: problem,
          });
        if (typeof value !== 'string') {
          errors.push({
            type: 'FieldValueTypeInvalid',
            field: `metadata.annotations[${k}]`,
            value,
            detail: 'must be a string',
          });
        } else size += k.length + value.length;
      }
      if (size > 256 * 1024) {
        errors.push({
          type: 'FieldValueTooLong',
          field: 'metadata.annotations',
          detail: 'must have at most 262144 bytes',
        });
      }
    }
  }
  if (meta.finalizers !== undefined && meta.finalizers !== null) {
    if (!Array.isArray(meta.finalizers) || meta.finalizers.some((f) => typeof f !== 'string')) {
      errors.push({
        type: 'FieldValueTypeInvalid',
        field: 'metadata.finalizers',
        value: meta.finalizers,
        detail: 'must be a list of strings',
      });
    } else {
      meta.finalizers.forEach((f, i) => {
        const problem = labelKeyProblem(f as string);
        if (problem)
          errors.push({
            type: 'FieldValueInvalid',
            field: `metadata.finalizers[${i}]`,
            value: f,
            detail: problem,
          });
      });
    }
  }
  return errors;
}

const protocols = ['TCP', 'UDP', 'SCTP'];

function portNumberProblem(v: JsonValue | undefined): boolean {
  return typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535;
}

function validatePortNumber(
  v: JsonValue | undefined,
  field: string,
  errors: FieldError[],
  required = true,
): void {
  if (v === undefined || v === null) {
    if (required) errors.push({ type: 'FieldValueRequired', field });
    return;
  }
  if (portNumberProblem(v))
    errors.push({
      type: 'FieldValueInvalid',
      field,
      value: v,
      detail: 'must be between 1 and 65535, inclusive',
    });
}

function validateProtocol(v: JsonValue | undefined, field: string, errors: FieldError[]): void {
  if (v === undefined || v === null) return;
  if (typeof v !== 'string' || !protocols.includes(v)) {
    errors.push({ type: 'FieldValueNotSupported', field, value: v, supported: protocols });
  }
}

function validateNamedOrNumberedPort(v: JsonValue | undefined, field: string, errors: FieldError[]): void {
  if (v === undefined || v === null) return;
  if (typeof v === 'number') {
    if (portNumberProblem(v))
      errors.push({
        type: 'FieldValueInvalid',
        field,
        value: v,
        detail: 'must be between 1 and 65535, inclusive',
      });
  } else if (typeof v === 'string') {
    if (/^\d+$/.test(v)) {
      if (portNumberProblem(Number(v)))
        errors.push({
          type: 'FieldValueInvalid',
          field,
          value: v,
          detail: 'must be between 1 and 65535, inclusive',
        });
    } else if (v.length > 15 || !ianaSvcNameRe.test(v) || !/[a-z]/.test(v) || v.includes('--')) {
      errors.push({
        type: 'FieldValueInvalid',
        field,
        value: v,
        detail:
          'must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-); must contain at least one letter; must be no more than 15 characters',
      });
    }
  } else {
    errors.push({ type: 'FieldValueTypeInvalid', field, value: v, detail: 'must be an integer or a string' });
  }
}

function list(v: JsonValue | undefined): JsonValue[] {
  return Array.isArray(v) ? v : [];
}

function validateContainers(
  containers: JsonValue | undefined,
  field: string,
  errors: FieldError[],
  required: boolean,
): void {
  if (!Array.isArray(containers) || containers.length === 0) {
    if (required) errors.push({ type: 'FieldValueRequired', field });
    return;
  }
  const names = new Set<string>();
  containers.forEach((c, i) => {
    const p = `${field}[${i}]`;
    if (!isObject(c)) {
      errors.push({ type: 'FieldValueTypeInvalid', field: p, value: c, detail: 'must be an object' });
      return;
    }
    if (typeof c.name !== 'string' || c.name === '')
      errors.push({ type: 'FieldValueRequired', field: `${p}.name` });
    else {
      const problem = dns1123LabelProblem(c.name);
      if (problem)
        errors.push({ type: 'FieldValueInvalid', field: `${p}.name`, value: c.name, detail: problem });
      if (names.has(c.name)) errors.push({ type: 'FieldValueDuplicate', field: `${p}.name`, value: c.name });
      names.add(c.name);
    }
    if (typeof c.image !== 'string' || c.image.trim() === '')
      errors.push({ type: 'FieldValueRequired', field: `${p}.image` });
    list(c.ports).forEach((port, j) => {
      const pp = `${p}.ports[${j}]`;
      if (!isObject(port)) return;
      validatePortNumber(port.containerPort, `${pp}.containerPort`, errors);
      validateProtocol(port.protocol, `${pp}.protocol`, errors);
      if (port.hostPort !== undefined) validatePortNumber(port.hostPort, `${pp}.hostPort`, errors);
      if (port.name !== undefined) validateNamedOrNumberedPort(String(port.name), `${pp}.name`, errors);
    });
    list(c.env).forEach((e, j) => {
      if (!isObject(e) || typeof e.name !== 'string' || e.name === '') {
        errors.push({ type: 'FieldValueRequired', field: `${p}.env[${j}].name` });
      }
    });
  });
}

export function validatePodSpec(spec: JsonValue | undefined, field: string): FieldError[] {
  const errors: FieldError[] = [];
  if (!isObject(spec)) return [{ type: 'FieldValueRequired', field }];
  validateContainers(spec.containers, `${field}.containers`, errors, true);
  validateContainers(spec.initContainers, `${field}.initContainers`, errors, false);
  const restart = spec.restartPolicy;
  if (restart !== undefined && !['Always', 'OnFailure', 'Never'].includes(restart as string)) {
    errors.push({
      type: 'FieldValueNotSupported',
      field: `${field}.restartPolicy`,
      value: restart,
      supported: ['Always', 'OnFailure', 'Never'],
    });
  }
  const dns = spec.dnsPolicy;
  const dnsPolicies = ['ClusterFirstWithHostNet', 'ClusterFirst', 'Default', 'None'];
  if (dns !== undefined && !dnsPolicies.includes(dns as string)) {
    errors.push({
      type: 'FieldValueNotSupported',
      field: `${field}.dnsPolicy`,
      value: dns,
      supported: dnsPolicies,
    });
  }
  if (spec.nodeName !== undefined && spec.nodeName !== '') {
    const problem =
      typeof spec.nodeName === 'string' ? dns1123SubdomainProblem(spec.nodeName) : 'must be a string';
    if (problem)
      errors.push({
        type: 'FieldValueInvalid',
        field: `${field}.nodeName`,
        value: spec.nodeName,
        detail: problem,
      });
  }
  const grace = spec.terminationGracePeriodSeconds;
  if (grace !== undefined && (typeof grace !== 'number' || grace < 0)) {
    errors.push({
      type: 'FieldValueInvalid',
      field: `${field}.terminationGracePeriodSeconds`,
      value: grace,
      detail: 'must be greater than or equal to 0',
    });
  }
  return errors;
}

const serviceTypes = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'];

function validateService(obj: JsonObject): FieldError[] {
  const errors: FieldError[] = [];
  const spec = obj.spec;
  if (!isObject(spec)) return [{ type: 'FieldValueRequired', field: 'spec' }];
  const type = (spec.type ?? 'ClusterIP') as string;
  if (!serviceTypes.includes(type)) {
    errors.push({ type: 'FieldValueNotSupported', field: 'spec.type', value: type, supported: serviceTypes });
    return errors;
  }
  const headless = spec.clusterIP === 'None';
  const ports = list(spec.ports);
  if (type !== 'ExternalName' && !headless && ports.length === 0)
    errors.push({ type: 'FieldValueRequired', field: 'spec.ports' });
  if (type === 'ExternalName') {
    const name = spec.externalName;
    if (typeof name !== 'string' || name === '')
      errors.push({ type: 'FieldValueRequired', field: 'spec.externalName' });
    else {
      const problem = dns1123SubdomainProblem(name.replace(/\.$/, ''));
      if (problem)
        errors.push({ type: 'FieldValueInvalid', field: 'spec.externalName', value: name, detail: problem });
    }
  }
  const names = new Set<string>();
  ports.forEach((port, i) => {
    const p = `spec.ports[${i}]`;
    if (!isObject(port)) {
      errors.push({ type: 'FieldValueTypeInvalid', field: p, value: port, detail: 'must be an object' });
      return;
    }
    if (ports.length > 1 && (typeof port.name !== 'string' || port.name === '')) {
      errors.push({ type: 'FieldValueRequired', field: `${p}.name` });
    } else if (typeof port.name === 'string' && port.name !== '') {
      const problem = dns1123LabelProblem(port.name);
      if (problem)
        errors.push({ type: 'FieldValueInvalid', field: `${p}.name`, value: port.name, detail: problem });
      if (names.has(port.name))
        errors.push({ type: 'FieldValueDuplicate', field: `${p}.name`, value: port.name });
      names.add(port.name);
    }
    validatePortNumber(port.port, `${p}.port`, errors);
    validateProtocol(port.protocol, `${p}.protocol`, errors);
    validateNamedOrNumberedPort(port.targetPort, `${p}.targetPort`, errors);
    if (port.nodePort !== undefined && port.nodePort !== null && port.nodePort !== 0) {
      if (type !== 'NodePort' && type !== 'LoadBalancer') {
        errors.push({
          type: 'FieldValueForbidden',
          field: `${p}.nodePort`,
          detail: `may not be used when \`type\` is '${type}'`,
        });
      } else validatePortNumber(port.nodePort, `${p}.nodePort`, errors);
    }
  });
  const ip = spec.clusterIP;
  if (ip !== undefined && ip !== '' && ip !== 'None') {
    if (typeof ip !== 'string' || isIP(ip) === 0) {
      errors.push({
        type: 'FieldValueInvalid',
        field: 'spec.clusterIPs[0]',
        value: ip,
        detail: "must be empty, 'None', or a valid IP address",
      });
    } else if (type === 'ExternalName') {
      errors.push({
        type: 'FieldValueForbidden',
        field: 'spec.clusterIPs',
        detail: 'may not be set for ExternalName services',
      });
    }
  }
  if (spec.selector !== undefined && spec.selector !== null) {
    if (!isObject(spec.selector))
      errors.push({
        type: 'FieldValueTypeInvalid',
        field: 'spec.selector',
        value: spec.selector,
        detail: 'must be a map of strings',
      });
    else errors.push(...validateLabels(spec.selector, 'spec.selector'));
  }
  const affinity = spec.sessionAffinity;
  if (affinity !== undefined && affinity !== 'None' && affinity !== 'ClientIP') {
    errors.push({
      type: 'FieldValueNotSupported',
      field: 'spec.sessionAffinity',
      value: affinity,
      supported: ['ClientIP', 'None'],
    });
  }
  for (const f of ['externalTrafficPolicy', 'internalTrafficPolicy'] as const) {
    const v = spec[f];
    if (v !== undefined && v !== 'Cluster' && v !== 'Local') {
      errors.push({
        type: 'FieldValueNotSupported',
        field: `spec.${f}`,
        value: v,
        supported: ['Cluster', 'Local'],
      });
    }
  }
  if (spec.externalTrafficPolicy !== undefined && type !== 'NodePort' && type !== 'LoadBalancer') {
    errors.push({
      type: 'FieldValueInvalid',
      field: 'spec.externalTrafficPolicy',
      value: spec.externalTrafficPolicy,
      detail: "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
    });
  }
  list(spec.externalIPs).forEach((e, i) => {
    if (typeof e !== 'string' || isIP(e) === 0) {
      errors.push({
        type: 'FieldValueInvalid',
        field: `spec.externalIPs[${i}]`,
        value: e,
        detail: 'must be a valid IP address',
      });
    }
  });
  return errors;
}

function validateCidr(v: JsonValue | undefined, field: string, errors: FieldError[]): boolean {
  if (typeof v !== 'string' || (parseCidr(v) === undefined && !isIPv6Cidr(v))) {
    errors.push({
      type: 'FieldValueInvalid',
      field,
      value: v ?? '',
      detail: 'must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)',
    });
    return false;
  }
  return true;
}

function isIPv6Cidr(v: string): boolean {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(v);
  return !!m && isIP(m[1]!) === 6 && Number(m[2]) <= 128;
}

function validateNetworkPolicyPeer(peer: JsonValue, field: string, errors: FieldError[]): void {
  if (!isObject(peer)) return;
  const hasSelectors = peer.podSelector !== undefined || peer.namespaceSelector !== undefined;
  if (!hasSelectors && peer.ipBlock === undefined) {
    errors.push({ type: 'FieldValueRequired', field, detail: 'must specify a peer' });
    return;
  }
  if (hasSelectors && peer.ipBlock !== undefined) {
    errors.push({ type: 'FieldValueForbidden', field, detail: 'may not specify more than 1 peer type' });
  }
  errors.push(...validateLabelSelectorObject(peer.podSelector, `${field}.podSelector`));
  errors.push(...validateLabelSelectorObject(peer.namespaceSelector, `${field}.namespaceSelector`));
  if (isObject(peer.ipBlock)) {
    const cidr = peer.ipBlock.cidr;
    if (validateCidr(cidr, `${field}.ipBlock.cidr`, errors)) {
      const outer = parseCidr(cidr as string);
      list(peer.ipBlock.except).forEach((e, i) => {
        const ef = `${field}.ipBlock.except[${i}]`;
        if (!validateCidr(e, ef, errors) || !outer) return;
        const inner = parseCidr(e as string);
        if (
          inner &&
          !(inner.prefix > outer.prefix && inner.base >= outer.base && inner.base < outer.base + outer.size)
        ) {
          errors.push({
            type: 'FieldValueInvalid',
            field: ef,
            value: e,
            detail: 'must be a strict subset of `cidr`',
          });
        }
      });
    }
  }
}

function validateNetworkPolicy(obj: JsonObject): FieldError[] {
  const errors: FieldError[] = [];
  const spec = obj.spec;
  if (!isObject(spec)) return [{ type: 'FieldValueRequired', field: 'spec' }];
  errors.push(...validateLabelSelectorObject(spec.podSelector, 'spec.podSelector'));
  list(spec.policyTypes).forEach((p, i) => {
    if (p !== 'Ingress' && p !== 'Egress') {
      errors.push({
        type: 'FieldValueNotSupported',
        field: `spec.policyTypes[${i}]`,
        value: p,
        supported: ['Ingress', 'Egress'],
      });
    }
  });
  for (const [direction, peersField] of [
    ['ingress', 'from'],
    ['egress', 'to'],
  ] as const) {
    list(spec[direction]).forEach((rule, i) => {
      if (!isObject(rule)) return;
      const rf = `spec.${direction}[${i}]`;
      list(rule.ports).forEach((port, j) => {
        if (!isObject(port)) return;
        const pf = `${rf}.ports[${j}]`;
        validateProtocol(port.protocol, `${pf}.protocol`, errors);
        validateNamedOrNumberedPort(port.port, `${pf}.port`, errors);
        if (port.endPort !== undefined && port.endPort !== null) {
          if (typeof port.port !== 'number') {
            errors.push({
              type: 'FieldValueRequired',
              field: `${pf}.port`,
              detail: 'must be specified when endPort is specified',
            });
          } else if (typeof port.endPort !== 'number' || port.endPort < port.port) {
            errors.push({
              type: 'FieldValueInvalid',
              field: `${pf}.endPort`,
              value: port.endPort,
              detail: 'must be greater than or equal to `port`',
            });
          }
        }
      });
      list(rule[peersField]).forEach((peer, j) => {
        validateNetworkPolicyPeer(peer, `${rf}.${peersField}[${j}]`, errors);
      });
    });
  }
  return errors;
}

function validateEndpointSlice(obj: JsonObject): FieldError[] {
  const errors: FieldError[] = [];
  const types = ['IPv4', 'IPv6', 'FQDN'];
  const addressType = obj.addressType;
  if (addressType === undefined) errors.push({ type: 'FieldValueRequired', field: 'addressType' });
  else if (!types.includes(addressType as string)) {
    errors.push({
      type: 'FieldValueNotSupported',
      field: 'addressType',
      value: addressType,
      supported: types,
    });
  }
  const endpoints = list(obj.endpoints);
  if (endpoints.length > 1000)
    errors.push({ type: 'FieldValueTooLong', field: 'endpoints', detail: 'must have at most 1000 items' });
  endpoints.forEach((ep, i) => {
    const f = `endpoints[${i}]`;
    if (!isObject(ep)) return;
    const addresses = list(ep.addresses);
    if (addresses.length === 0)
      errors.push({
        type: 'FieldValueRequired',
        field: `${f}.addresses`,
        detail: 'must contain at least 1 address',
      });
    addresses.forEach((a, j) => {
      const family = typeof a === 'string' ? isIP(a) : 0;
      const ok =
        addressType === 'IPv4'
          ? family === 4
          : addressType === 'IPv6'
            ? family === 6
            : typeof a === 'string' && !dns1123SubdomainProblem(a);
      if (!ok) {
        errors.push({
          type: 'FieldValueInvalid',
          field: `${f}.addresses[${j}]`,
          value: a,
          detail: `must be a valid ${addressType === 'FQDN' ? 'FQDN' : `${addressType} address`}`,
        });
      }
    });
  });
  const ports = list(obj.ports);
  if (ports.length > 100)
    errors.push({ type: 'FieldValueTooLong', field: 'ports', detail: 'must have at most 100 items' });
  ports.forEach((port, i) => {
    if (!isObject(port)) return;
    if (port.port !== undefined && port.port !== null)
      validatePortNumber(port.port, `ports[${i}].port`, errors);
    validateProtocol(port.protocol, `ports[${i}].protocol`, errors);
  });
  return errors;
}

function validateDataMap(
  obj: JsonObject,
  field: 'data' | 'binaryData' | 'stringData',
  errors: FieldError[],
  base64: boolean,
): void {
  const data = obj[field];
  if (data === undefined || data === null) return;
  if (!isObject(data)) {
    errors.push({ type: 'FieldValueTypeInvalid', field, value: data, detail: 'must be a map of strings' });
    return;
  }
  for (const [k, v] of Object.entries(data)) {
    if (!configKeyRe.test(k) || k.length > 253) {
      errors.push({
        type: 'FieldValueInvalid',
        field: `${field}[${k}]`,
        value: k,
        detail:
          "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
      });
    }
    if (typeof v !== 'string')
      errors.push({
        type: 'FieldValueTypeInvalid',
        field: `${field}[${k}]`,
        value: v,
        detail: 'must be a string',
      });
    else if (base64 && !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) {
      errors.push({
        type: 'FieldValueInvalid',
        field: `${field}[${k}]`,
        value: '<secret contents redacted>',
        detail: 'illegal base64 data',
      });
    }
  }
}

function validateWorkload(obj: JsonObject): FieldError[] {
  const errors: FieldError[] = [];
  const spec = obj.spec;
  if (!isObject(spec)) return [{ type: 'FieldValueRequired', field: 'spec' }];
  if (!isObject(spec.selector)) errors.push({ type: 'FieldValueRequired', field: 'spec.selector' });
  else errors.push(...validateLabelSelectorObject(spec.selector, 'spec.selector'));
  const template = spec.template;
  if (!isObject(template)) {
    errors.push({ type: 'FieldValueRequired', field: 'spec.template' });
    return errors;
  }
  const labels =
    isObject(template.metadata) && isObject(template.metadata.labels)
      ? (template.metadata.labels as Record<string, string>)
      : {};
  if (isObject(spec.selector) && errors.length === 0) {
    const selector = fromLabelSelectorObject(spec.selector);
    if (selector.length === 0)
      errors.push({
        type: 'FieldValueInvalid',
        field: 'spec.selector',
        value: spec.selector,
        detail: 'empty selector is invalid for deployment',
      });
    else if (!matchesLabels(selector, labels)) {
      errors.push({
        type: 'FieldValueInvalid',
        field: 'spec.template.metadata.labels',
        value: labels,
        detail: '`selector` does not match template `labels`',
      });
    }
  }
  errors.push(...validatePodSpec(template.spec, 'spec.template.spec'));
  return errors;
}

/** Kind-specific validation of a new or updated object (metadata is checked separately). */
export function validateBuiltin(t: ResourceType, obj: JsonObject): FieldError[] {
  switch (`${t.group}/${t.kind}`) {
    case '/Pod':
      return validatePodSpec(obj.spec, 'spec');
    case '/Service':
      return validateService(obj);
    case 'networking.k8s.io/NetworkPolicy':
      return validateNetworkPolicy(obj);
    case 'discovery.k8s.io/EndpointSlice':
      return validateEndpointSlice(obj);
    case '/ConfigMap': {
      const errors: FieldError[] = [];
      validateDataMap(obj, 'data', errors, false);
      validateDataMap(obj, 'binaryData', errors, true);
      return errors;
    }
    case '/Secret': {
      const errors: FieldError[] = [];
      validateDataMap(obj, 'data', errors, true);
      return errors;
    }
    case '/Node': {
      const errors: FieldError[] = [];
      const spec = isObject(obj.spec) ? obj.spec : {};
      if (spec.podCIDR !== undefined && spec.podCIDR !== '')
        validateCidr(spec.podCIDR, 'spec.podCIDR', errors);
      list(spec.podCIDRs).forEach((c, i) => {
        validateCidr(c, `spec.podCIDRs[${i}]`, errors);
      });
      return errors;
    }
    case 'apps/Deployment':
    case 'apps/DaemonSet':
    case 'apps/StatefulSet':
    case 'apps/ReplicaSet':
      return validateWorkload(obj);
    default:
      return [];
  }
}

/** Pod spec fields an update may change (the rest is immutable once created). */
export function podUpdateProblem(oldSpec: JsonObject, newSpec: JsonObject): FieldError[] {
  const strip = (spec: JsonObject): JsonObject => {
    const copy = JSON.parse(JSON.stringify(spec)) as JsonObject;
    for (const k of ['activeDeadlineSeconds', 'tolerations', 'terminationGracePeriodSeconds']) delete copy[k];
    for (const key of ['containers', 'initContainers']) {
      for (const c of list(copy[key])) if (isObject(c)) delete c.image;
    }
    return copy;
  };
  if (deepEqual(strip(oldSpec), strip(newSpec))) return [];
  return [
    {
      type: 'FieldValueForbidden',
      field: 'spec',
      detail:
        'pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)',
    },
  ];
}
