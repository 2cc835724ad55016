import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { formatTable } from '../src/cli/output.js';
import { projectRoot } from '../src/shared/self.js';

/**
 * How every benchmark reports: one JSON document on stdout (and in bench/results/<name>.json),
 * a human table on stderr. The JSON carries the machine it ran on, since figures from a shared
 * 2-core VM are only comparable to a peer measured in the same run.
 */
export function report(
  name: string,
  result: Record<string, unknown>,
  table?: { headers: string[]; rows: string[][] },
) {
  const doc = {
    benchmark: name,
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, kernel: release(), node: process.version },
    ...result,
  };
  const dir = join(projectRoot, 'bench/results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${name}.json`), `${JSON.stringify(doc, null, 2)}\n`);
  if (table) process.stderr.write(`\n${name}\n${formatTable(table.headers, table.rows)}\n\n`);
  process.stdout.write(`${JSON.stringify(doc)}\n`);
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
}

export const fmt = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : String(n));
