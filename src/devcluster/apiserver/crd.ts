import type { FieldError } from './api-status.js';
import { isObject, type JsonObject, type JsonValue } from './json-value.js';
import { dns1123LabelProblem, dns1123SubdomainProblem } from './object-validation.js';
import { nowRfc3339 } from './managed-fields.js';

/** CustomResourceDefinition: validation, defaults, and the status the server reports. */
export function validateCrd(crd: JsonObject): FieldError[] {
  const errors: FieldError[] = [];
  const spec = crd.spec;
  if (!isObject(spec)) return [{ type: 'FieldValueRequired', field: 'spec' }];
  const group = spec.group;
  if (typeof group !== 'string' || group === '')
    errors.push({ type: 'FieldValueRequired', field: 'spec.group' });
  else if (!group.includes('.'))
    errors.push({
      type: 'FieldValueInvalid',
      field: 'spec.group',
      value: group,
      detail: 'should be a domain with at least one dot',
    });
  else if (dns1123SubdomainProblem(group))
    errors.push({
      type: 'FieldValueInvalid',
      field: 'spec.group',
      value: group,
      detail: dns1123SubdomainProblem(group)!,
    });
  const names = isObject(spec.names) ? spec.names : undefined;
  if (!names) errors.push({ type: 'FieldValueRequired', field: 'spec.names' });
  const plural = names?.plural;
  const kind = names?.kind;
  if (names) {
    if (typeof plural !== 'string' || plural === '')
      errors.push({ type: 'FieldValueRequired', field: 'spec.names.plural' });
    else if (dns1123LabelProblem(plural))
      errors.push({
        type: 'FieldValueInvalid',
        field: 'spec.names.plural',
        value: plural,
        detail: dns1123LabelProblem(plural)!,
      });
    if (typeof kind !== 'string' || kind === '')
      errors.push({ type: 'FieldValueRequired', field: 'spec.names.kind' });
    else if (!/^[A-Za-z][A-Za-z0-9]*$/.test(kind))
      errors.push({
        type: 'FieldValueInvalid',
        field: 'spec.names.kind',
        value: kind,
        detail: 'may have mixed case, but should otherwise match: ^[a-z]([-a-z0-9]*[a-z0-9])?',
      });
    for (const [i, sn] of (Array.isArray(names.shortNames) ? names.shortNames : []).entries()) {
      if (typeof sn !== 'string' || dns1123LabelProblem(sn))
        errors.push({
          type: 'FieldValueInvalid',
          field: `spec.names.shortNames[${i}]`,
          value: sn,
          detail: 'must be a valid DNS label',
        });
    }
  }
  const name = isObject(crd.metadata) ? crd.metadata.name : undefined;
  if (typeof plural === 'string' && typeof group === 'string' && name !== `${plural}.${group}`) {
    errors.push({
      type: 'FieldValueInvalid',
      field: 'metadata.name',
      value: name ?? '',
      detail: 'must be spec.names.plural+"."+spec.group',
    });
  }
  if (spec.scope !== 'Namespaced' && spec.scope !== 'Cluster') {
    errors.push({
      type: 'FieldValueNotSupported',
      field: 'spec.scope',
      value: spec.scope ?? '',
      supported: ['Cluster', 'Namespaced'],
    });
  }
  const versions = Array.isArray(spec.versions) ? spec.versions : [];
  if (versions.length === 0)
    errors.push({
      type: 'FieldValueRequired',
      field: 'spec.versions',
      detail: 'must have exactly one version marked as storage version',
    });
  let storage = 0;
  const seen = new Set<string>();
  versions.forEach((v, i) => {
    const f = `spec.versions[${i}]`;
    if (!isObject(v)) return;
    if (typeof v.name !== 'string' || dns1123LabelProblem(v.name)) {
      errors.push({
        type: 'FieldValueInvalid',
        field: `${f}.name`,
        value: v.name ?? '',
        detail: 'must be a valid DNS label',
      });
    } else if (seen.has(v.name))
      errors.push({ type: 'FieldValueDuplicate', field: `${f}.name`, value: v.name });
    else seen.add(v.name);
    if (v.storage === true) storage++;
    if (typeof v.served !== 'boolean') errors.push({ type: 'FieldValueRequired', field: `${f}.served` });
    const schema = isObject(v.schema) ? v.schema.openAPIV3Schema : undefined;
    if (!isObject(schema))
      errors.push({
        type: 'FieldValueRequired',
        field: `${f}.schema.openAPIV3Schema`,
        detail: 'schemas are required',
      });
    else if (schema.type !== 'object') {
      errors.push({
        type: 'FieldValueInvalid',
        field: `${f}.schema.openAPIV3Schema.type`,
        value: schema.type ?? '',
        detail: 'must be object at the root',
      });
    }
  });
  if (versions.length > 0 && storage !== 1) {
    errors.push({
      type: 'FieldValueInvalid',
      field: 'spec.versions',
      value: versions.map((v) => (isObject(v) ? v.name : '')) as JsonValue,
      detail: 'must have exactly one version marked as storage version',
    });
  }
  return errors;
}

export function defaultCrd(crd: JsonObject): void {
  const spec = crd.spec as JsonObject;
  const names = spec.names as JsonObject;
  if (!names.singular) names.singular = (names.kind as string).toLowerCase();
  if (!names.listKind) names.listKind = `${names.kind as string}List`;
  if (!isObject(spec.conversion)) spec.conversion = { strategy: 'None' };
}

/** Established and NamesAccepted, as the apiextensions controllers would report at once. */
export function crdStatus(crd: JsonObject, previous: JsonObject | undefined): JsonObject {
  const spec = crd.spec as JsonObject;
  const versions = spec.versions as JsonObject[];
  const storageVersion = versions.find((v) => v.storage === true)?.name as string;
  const prevStatus = previous && isObject(previous.status) ? previous.status : {};
  const stored = Array.isArray(prevStatus.storedVersions) ? [...(prevStatus.storedVersions as string[])] : [];
  if (!stored.includes(storageVersion)) stored.push(storageVersion);
  const now = nowRfc3339();
  const previousConditions = Array.isArray(prevStatus.conditions)
    ? (prevStatus.conditions as JsonObject[])
    : [];
  // A condition that stays True keeps its lastTransitionTime, so an unchanged CRD stays unchanged.
  const condition = (type: string, reason: string, message: string) => {
    const before = previousConditions.find((c) => isObject(c) && c.type === type && c.status === 'True');
    return {
      type,
      status: 'True',
      lastTransitionTime: (before?.lastTransitionTime as string | undefined) ?? now,
      reason,
      message,
    };
  };
  return {
    acceptedNames: spec.names as JsonObject,
    conditions: [
      condition('NamesAccepted', 'NoConflicts', 'no conflicts found'),
      condition('Established', 'InitialNamesAccepted', 'the initial names have been accepted'),
    ],
    storedVersions: stored,
  };
}
