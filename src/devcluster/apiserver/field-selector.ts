import { SelectorParseError } from './label-selector.js';

/** ?fieldSelector= terms: "spec.nodeName=n1,status.phase!=Failed" (k8s.io/apimachinery/pkg/fields). */
export interface FieldRequirement {
  field: string;
  op: '=' | '!=';
  value: string;
}

function splitUnescaped(input: string, sep: string): string[] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < input.length; i++) {
    const c = input[i]!;
    if (c === '\\' && i + 1 < input.length) {
      current += c + input[i + 1];
      i++;
    } else if (c === sep) {
      parts.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  parts.push(current);
  return parts;
}

function unescapeValue(value: string): string {
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === '\\') {
      const n = value[i + 1];
      if (n === undefined || !'\\,=!'.includes(n)) {
        throw new SelectorParseError(`invalid field selector: invalid escape sequence in "${value}"`);
      }
      out += n;
      i++;
    } else if (c === '=' || c === ',' || c === '!') {
      throw new SelectorParseError(`invalid field selector: unescaped ${c} in value "${value}"`);
    } else {
      out += c;
    }
  }
  return out;
}

export function parseFieldSelector(input: string): FieldRequirement[] {
  if (input.trim() === '') return [];
  return splitUnescaped(input, ',').map((term) => {
    for (const op of ['!=', '==', '='] as const) {
      const at = term.indexOf(op);
      if (at > 0) {
        return {
          field: term.slice(0, at).trim(),
          op: op === '!=' ? '!=' : '=',
          value: unescapeValue(term.slice(at + op.length)),
        };
      }
    }
    throw new SelectorParseError(`invalid selector: '${input}'; can't understand '${term}'`);
  });
}

export function matchesFields(reqs: FieldRequirement[], fields: Record<string, string>): boolean {
  for (const r of reqs) {
    const value = fields[r.field] ?? '';
    if (r.op === '=' ? value !== r.value : value === r.value) return false;
  }
  return true;
}
