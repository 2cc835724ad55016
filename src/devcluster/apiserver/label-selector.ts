import type { FieldError } from './api-status.js';

/**
 * Label selectors: the string form used in ?labelSelector= (k8s.io/apimachinery/pkg/labels)
 * and the structured form in objects (metav1.LabelSelector: matchLabels + matchExpressions).
 */
export type Requirement =
  | { key: string; op: 'in' | 'notin'; values: string[] }
  | { key: string; op: 'exists' | 'notexists' }
  | { key: string; op: 'gt' | 'lt'; value: number };

export type LabelSelector = Requirement[];

export class SelectorParseError extends Error {}

const qualifiedNamePart = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const dns1123Subdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Why a label key is not valid, or undefined when it is (same rules as IsQualifiedName). */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.indexOf('/');
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (slash >= 0) {
    const prefix = key.slice(0, slash);
    if (prefix.length === 0) return 'prefix part must be non-empty';
    if (prefix.length > 253 || !dns1123Subdomain.test(prefix)) {
      return "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
    }
  }
  if (name.length === 0) return 'name part must be non-empty';
  if (name.length > 63) return 'name part must be no more than 63 characters';
  if (!qualifiedNamePart.test(name)) {
    return "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
  }
  return undefined;
}

/** Why a label value is not valid, or undefined when it is. */
export function labelValueProblem(value: string): string | undefined {
  if (value.length === 0) return undefined;
  if (value.length > 63) return 'must be no more than 63 characters';
  if (!qualifiedNamePart.test(value)) {
    return "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
  }
  return undefined;
}

type Token = { kind: 'ident'; text: string } | { kind: 'op'; text: string };

function tokenize(input: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < input.length) {
    const c = input[i]!;
    if (c === ' ' || c === '\t') {
      i++;
      continue;
    }
    const two = input.slice(i, i + 2);
    if (two === '==' || two === '!=') {
      tokens.push({ kind: 'op', text: two });
      i += 2;
      continue;
    }
    if ('=!(),<>'.includes(c)) {
      tokens.push({ kind: 'op', text: c });
      i++;
      continue;
    }
    let j = i;
    while (j < input.length && !' \t=!(),<>'.includes(input[j]!)) j++;
    tokens.push({ kind: 'ident', text: input.slice(i, j) });
    i = j;
  }
  return tokens;
}

/** Parses "a=b,c!=d,e in (x,y),!f,g>3" into requirements; throws SelectorParseError. */
export function parseLabelSelector(input: string): LabelSelector {
  const tokens = tokenize(input);
  const result: Requirement[] = [];
  let pos = 0;
  const peek = () => tokens[pos];
  const next = () => tokens[pos++];
  const fail = (msg: string): never => {
    throw new SelectorParseError(`unable to parse requirement: ${msg}`);
  };
  const checkKey = (key: string) => {
    const problem = labelKeyProblem(key);
    if (problem) fail(`invalid label key "${key}": ${problem}`);
  };
  const checkValue = (value: string) => {
    const problem = labelValueProblem(value);
    if (problem) fail(`invalid label value: "${value}": at key: ${problem}`);
  };
  if (tokens.length === 0) return result;
  for (;;) {
    let token = next();
    if (!token) fail("found '', expected: identifier");
    if (token!.kind === 'op' && token!.text === '!') {
      const key = next();
      if (key?.kind !== 'ident') fail("found '', expected: identifier after '!'");
      checkKey(key!.text);
      result.push({ key: key!.text, op: 'notexists' });
    } else {
      if (token!.kind !== 'ident')
        fail(`found '${token!.text}', expected: !, identifier, or 'end of string'`);
      const key = token!.text;
      checkKey(key);
      const op = peek();
      if (!op || (op.kind === 'op' && op.text === ',')) {
        result.push({ key, op: 'exists' });
      } else if (op.kind === 'op' && ['=', '==', '!='].includes(op.text)) {
        next();
        const value = peek();
        let text = '';
        if (value && value.kind === 'ident') {
          text = value.text;
          next();
        }
        checkValue(text);
        result.push({ key, op: op.text === '!=' ? 'notin' : 'in', values: [text] });
      } else if (op.kind === 'op' && (op.text === '<' || op.text === '>')) {
        next();
        const value = next();
        if (value?.kind !== 'ident' || !/^-?\d+$/.test(value.text)) {
          fail(`for 'Gt', 'Lt' operators, exactly one value is required and it must be an integer`);
        }
        result.push({ key, op: op.text === '>' ? 'gt' : 'lt', value: Number(value!.text) });
      } else if (op.kind === 'ident' && (op.text === 'in' || op.text === 'notin')) {
        next();
        const open = next();
        if (open?.text !== '(') fail(`found '${open?.text ?? ''}', expected: '('`);
        const values: string[] = [];
        for (;;) {
          token = next();
          if (!token) fail("found '', expected: ')'");
          if (token!.kind === 'op' && token!.text === ')') break;
          if (token!.kind === 'op' && token!.text === ',') {
            continue;
          }
          if (token!.kind !== 'ident') fail(`found '${token!.text}', expected: ',' or ')'`);
          checkValue(token!.text);
          values.push(token!.text);
        }
        if (values.length === 0) fail(`for 'in', 'notin' operators, values set can't be empty`);
        result.push({ key, op: op.text as 'in' | 'notin', values });
      } else {
        fail(`found '${op.text}', expected: '=', '!=', '==', 'in', notin'`);
      }
    }
    const sep = next();
    if (!sep) break;
    if (sep.kind !== 'op' || sep.text !== ',') fail(`found '${sep.text}', expected: ',' or 'end of string'`);
  }
  return result;
}

export function matchesLabels(selector: LabelSelector, labels: Record<string, string> | undefined): boolean {
  for (const r of selector) {
    const has = labels !== undefined && Object.hasOwn(labels, r.key);
    const value = has ? labels![r.key] : undefined;
    switch (r.op) {
      case 'in':
        if (!has || !r.values.includes(value!)) return false;
        break;
      case 'notin':
        if (has && r.values.includes(value!)) return false;
        break;
      case 'exists':
        if (!has) return false;
        break;
      case 'notexists':
        if (has) return false;
        break;
      case 'gt':
      case 'lt': {
        if (!has || !/^-?\d+$/.test(value!)) return false;
        const n = Number(value);
        if (r.op === 'gt' ? !(n > r.value) : !(n < r.value)) return false;
        break;
      }
    }
  }
  return true;
}

/** Structured selector (metav1.LabelSelector) → requirements; undefined/null selects nothing. */
export function fromLabelSelectorObject(sel: unknown): LabelSelector {
  const out: Requirement[] = [];
  if (!sel || typeof sel !== 'object') return out;
  const { matchLabels, matchExpressions } = sel as {
    matchLabels?: Record<string, string>;
    matchExpressions?: Array<{ key: string; operator: string; values?: string[] }>;
  };
  for (const [key, value] of Object.entries(matchLabels ?? {})) out.push({ key, op: 'in', values: [value] });
  for (const e of matchExpressions ?? []) {
    const op = e.operator;
    if (op === 'In') out.push({ key: e.key, op: 'in', values: e.values ?? [] });
    else if (op === 'NotIn') out.push({ key: e.key, op: 'notin', values: e.values ?? [] });
    else if (op === 'Exists') out.push({ key: e.key, op: 'exists' });
    else if (op === 'DoesNotExist') out.push({ key: e.key, op: 'notexists' });
  }
  return out;
}

/** Validation of a metav1.LabelSelector inside an object, as ValidateLabelSelector does. */
export function validateLabelSelectorObject(sel: unknown, path: string): FieldError[] {
  const errors: FieldError[] = [];
  if (sel === undefined || sel === null) return errors;
  if (typeof sel !== 'object' || Array.isArray(sel)) {
    return [
      { type: 'FieldValueInvalid', field: path, value: sel, detail: 'must be a label selector object' },
    ];
  }
  const { matchLabels, matchExpressions } = sel as { matchLabels?: unknown; matchExpressions?: unknown };
  if (matchLabels !== undefined && matchLabels !== null) {
    if (typeof matchLabels !== 'object' || Array.isArray(matchLabels)) {
      errors.push({
        type: 'FieldValueInvalid',
        field: `${path}.matchLabels`,
        value: matchLabels,
        detail: 'must be a map of strings',
      });
    } else {
      errors.push(...validateLabels(matchLabels as Record<string, unknown>, `${path}.matchLabels`));
    }
  }
  if (matchExpressions !== undefined && matchExpressions !== null) {
    if (!Array.isArray(matchExpressions)) {
      errors.push({
        type: 'FieldValueInvalid',
        field: `${path}.matchExpressions`,
        value: matchExpressions,
        detail: 'must be a list',
      });
    } else {
      matchExpressions.forEach((e: unknown, i) => {
        const p = `${path}.matchExpressions[${i}]`;
        const expr = (e ?? {}) as { key?: unknown; operator?: unknown; values?: unknown };
        if (typeof expr.key !== 'string' || expr.key === '') {
          errors.push({ type: 'FieldValueRequired', field: `${p}.key` });
        } else {
          const problem = labelKeyProblem(expr.key);
          if (problem)
            errors.push({ type: 'FieldValueInvalid', field: `${p}.key`, value: expr.key, detail: problem });
        }
        const values = Array.isArray(expr.values) ? expr.values : [];
        switch (expr.operator) {
          case 'In':
          case 'NotIn':
            if (values.length === 0) {
              errors.push({
                type: 'FieldValueRequired',
                field: `${p}.values`,
                detail: "must be specified when `operator` is 'In' or 'NotIn'",
              });
            }
            break;
          case 'Exists':
          case 'DoesNotExist':
            if (values.length > 0) {
              errors.push({
                type: 'FieldValueForbidden',
                field: `${p}.values`,
                detail: "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
              });
            }
            break;
          default:
            errors.push({
              type: 'FieldValueInvalid',
              field: `${p}.operator`,
              value: expr.operator,
              detail: 'not a valid selector operator',
            });
        }
      });
    }
  }
  return errors;
}

export function validateLabels(labels: Record<string, unknown>, path: string): FieldError[] {
  const errors: FieldError[] = [];
  for (const [key, value] of Object.entries(labels)) {
    const keyProblem = labelKeyProblem(key);
    if (keyProblem) errors.push({ type: 'FieldValueInvalid', field: path, value: key, detail: keyProblem });
    if (typeof value !== 'string') {
      errors.push({
        type: 'FieldValueTypeInvalid',
        field: `${path}[${key}]`,
        value,
        detail: 'must be a string',
      });
      continue;
    }
    const valueProblem = labelValueProblem(value);
    if (valueProblem)
      errors.push({ type: 'FieldValueInvalid', field: `${path}[${key}]`, value, detail: valueProblem });
  }
  return errors;
}
