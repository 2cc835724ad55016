/**
 * Go's encoding/json.Marshal output for the maps and strings agnhost returns: object keys
 * sorted (Go marshals maps in key order), and <, >, &, U+2028, U+2029 escaped as \u003c...
 * Clients that compare /dial or /shell bodies byte for byte get what the real image sends.
 */
export type GoJsonValue = string | number | boolean | null | GoJsonValue[] | { [key: string]: GoJsonValue };

export function goJsonMarshal(value: GoJsonValue): string {
  return JSON.stringify(sortKeys(value)).replace(/[<>&\u2028\u2029]/g, (c) => {
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}

function sortKeys(value: GoJsonValue): GoJsonValue {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value === null || typeof value !== 'object') return value;
  const sorted: { [key: string]: GoJsonValue } = {};
  for (const key of Object.keys(value).sort()) sorted[key] = sortKeys(value[key] as GoJsonValue);
  return sorted;
}
