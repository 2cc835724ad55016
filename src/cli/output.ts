import { WeftError } from '../shared/errors.js';

export type OutputFormat = 'table' | 'json';

/** Validates `-o/--output` the way kubectl does: a clear error naming the allowed values. */
export function parseOutputFormat(
  value: string | undefined,
  allowed: OutputFormat[] = ['table', 'json'],
): OutputFormat {
  if (value === undefined) return 'table';
  if ((allowed as string[]).includes(value)) return value as OutputFormat;
  throw new WeftError(
    'WEFT_ERR_USAGE',
    `unable to match a printer suitable for the output format "${value}", allowed formats are: ${allowed.join(',')}`,
  );
}

/** A left-aligned table with upper-case headers and two spaces between columns, like kubectl. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('   ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
