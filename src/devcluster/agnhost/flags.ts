import { parseArgs } from 'node:util';
import { GoDurationError, parseGoDuration } from './go-duration.js';

/**
 * agnhost's flags as spf13/pflag (cobra) reads them, so container args written for the real
 * image mean the same here: `--flag=value` and `--flag value` (the value may start with a
 * dash: `--udp-port -1`), booleans as `--flag` or `--flag=false`, Go integers and durations,
 * `-h/--help`, and the klog flags agnhost accepts on every subcommand (ignored). node:util
 * parseArgs tokenizes; pflag's rules decide what the tokens mean.
 */

export type FlagSpec =
  | { type: 'int'; default: number; usage: string }
  | { type: 'string'; default: string; usage: string }
  | { type: 'bool'; default: boolean; usage: string }
  | { type: 'duration'; default: number; usage: string };

export type FlagSpecs = Record<string, FlagSpec>;

type ValueOf<F extends FlagSpec> = F extends { type: 'bool' }
  ? boolean
  : F extends { type: 'string' }
    ? string
    : number;

/** Parsed values by flag name; durations are in milliseconds. */
export type FlagValues<S extends FlagSpecs> = { [K in keyof S]: ValueOf<S[K]> };

export interface ParsedFlags<S extends FlagSpecs> {
  values: FlagValues<S>;
  positionals: string[];
  help: boolean;
}

/** A flag or argument error, worded as pflag/cobra word it (tests match on these texts). */
export class AgnhostUsageError extends Error {
  override readonly name = 'AgnhostUsageError';
}

// klog's flags: agnhost adds them to its root command because some e2e tests pass them.
const KLOG_FLAGS: FlagSpecs = {
  v: { type: 'string', default: '0', usage: 'number for the log level verbosity' },
  vmodule: { type: 'string', default: '', usage: 'comma-separated list of pattern=N settings' },
  logtostderr: { type: 'bool', default: true, usage: 'log to standard error instead of files' },
  alsologtostderr: { type: 'bool', default: false, usage: 'log to standard error as well as files' },
  log_dir: { type: 'string', default: '', usage: 'If non-empty, write log files in this directory' },
  log_file: { type: 'string', default: '', usage: 'If non-empty, use this log file' },
  log_file_max_size: { type: 'string', default: '1800', usage: 'Maximum size a log file can grow to' },
  skip_headers: { type: 'bool', default: false, usage: 'avoid header prefixes in the log messages' },
  skip_log_headers: { type: 'bool', default: false, usage: 'avoid headers when opening log files' },
  stderrthreshold: { type: 'string', default: '2', usage: 'logs at or above this threshold go to stderr' },
  one_output: { type: 'bool', default: false, usage: 'only write logs to their native severity level' },
  add_dir_header: { type: 'bool', default: false, usage: 'add the file directory to the header' },
  log_backtrace_at: { type: 'string', default: ':0', usage: 'emit a stack trace at file:N' },
};

export function isKlogFlag(name: string): boolean {
  return Object.hasOwn(KLOG_FLAGS, name);
}

export function parseAgnhostFlags<S extends FlagSpecs>(args: string[], specs: S): ParsedFlags<S> {
  const { tokens } = parseArgs({ args, strict: false, allowPositionals: true, tokens: true });
  const rawValues = new Map<string, string>();
  const positionals: string[] = [];
  const consumed = new Set<number>();
  let help = false;

  const specFor = (name: string): FlagSpec | undefined =>
    Object.hasOwn(specs, name) ? specs[name] : Object.hasOwn(KLOG_FLAGS, name) ? KLOG_FLAGS[name] : undefined;

  // The value of a non-boolean flag given as `--flag value` is the next argument, whatever it is.
  const takeNext = (index: number, display: string): string => {
    const next = index + 1;
    if (next >= args.length) throw new AgnhostUsageError(`flag needs an argument: ${display}`);
    consumed.add(next);
    return args[next] as string;
  };

  for (const token of tokens) {
    if (consumed.has(token.index)) continue;
    if (token.kind === 'option-terminator') {
      positionals.push(...args.slice(token.index + 1));
      break;
    }
    if (token.kind === 'positional') {
      positionals.push(token.value);
      continue;
    }
    consumed.add(token.index);
    const raw = args[token.index] as string;
    if (!raw.startsWith('--')) {
      // Shorthands: pflag knows -h, and -v (klog's level, registered as shorthand of --v).
      const letter = raw.slice(1, 2);
      if (letter === 'h') {
        help = true;
        continue;
      }
      if (letter === 'v') {
        const inline = raw.slice(2);
        rawValues.set(
          'v',
          inline.startsWith('=') ? inline.slice(1) : inline || takeNext(token.index, "'v' in -v"),
        );
        continue;
      }
      throw new AgnhostUsageError(`unknown shorthand flag: '${letter}' in ${raw}`);
    }
    const name = token.name;
    if (name === 'help') {
      help = true;
      continue;
    }
    const spec = specFor(name);
    if (!spec) throw new AgnhostUsageError(`unknown flag: --${name}`);
    const inline = token.inlineValue ? (token.value ?? '') : undefined;
    if (spec.type === 'bool') rawValues.set(name, inline ?? 'true');
    else rawValues.set(name, inline ?? takeNext(token.index, `--${name}`));
  }

  const values: Record<string, number | string | boolean> = {};
  for (const [name, spec] of Object.entries(specs)) {
    const raw = rawValues.get(name);
    values[name] = raw === undefined ? spec.default : convert(name, spec, raw);
  }
  for (const [name, raw] of rawValues) {
    const spec = KLOG_FLAGS[name];
    if (spec && !Object.hasOwn(specs, name)) convert(name, spec, raw);
  }
  return { values: values as FlagValues<S>, positionals, help };
}

function convert(name: string, spec: FlagSpec, raw: string): number | string | boolean {
  const invalid = (reason: string) =>
    new AgnhostUsageError(`invalid argument ${JSON.stringify(raw)} for "--${name}" flag: ${reason}`);
  switch (spec.type) {
    case 'string':
      return raw;
    case 'bool': {
      const parsed = parseGoBool(raw);
      if (parsed === undefined)
        throw invalid(`strconv.ParseBool: parsing ${JSON.stringify(raw)}: invalid syntax`);
      return parsed;
    }
    case 'int': {
      const parsed = parseGoInt(raw);
      if (parsed === undefined)
        throw invalid(`strconv.ParseInt: parsing ${JSON.stringify(raw)}: invalid syntax`);
      if (!Number.isSafeInteger(parsed)) {
        throw invalid(`strconv.ParseInt: parsing ${JSON.stringify(raw)}: value out of range`);
      }
      return parsed;
    }
    case 'duration':
      try {
        return parseGoDuration(raw);
      } catch (err) {
        if (err instanceof GoDurationError) throw invalid(err.message);
        throw err;
      }
  }
}

/** strconv.ParseBool. */
export function parseGoBool(text: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(text)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(text)) return false;
  return undefined;
}

/** strconv.ParseInt(text, 0, 64): decimal, 0x, 0o, 0b, leading-0 octal, underscores between digits. */
export function parseGoInt(text: string): number | undefined {
  const match = /^([+-]?)(0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|0[0-7_]*|[1-9][0-9_]*)$/.exec(text);
  if (!match) return undefined;
  const sign = match[1] === '-' ? -1 : 1;
  let digits = match[2] as string;
  if (digits.includes('_')) {
    // Underscores only between digits, and only with a base prefix (Go's rule for base 0).
    if (!/^0[xXoObB]?/.test(digits) || /__|_$/.test(digits) || digits === '0_') return undefined;
    digits = digits.replaceAll('_', '');
  }
  let value: number;
  if (/^0[xX]/.test(digits)) value = Number.parseInt(digits.slice(2), 16);
  else if (/^0[oO]/.test(digits)) value = Number.parseInt(digits.slice(2), 8);
  else if (/^0[bB]/.test(digits)) value = Number.parseInt(digits.slice(2), 2);
  else if (digits.length > 1 && digits.startsWith('0')) value = Number.parseInt(digits.slice(1), 8);
  else value = Number.parseInt(digits, 10);
  return Number.isNaN(value) ? undefined : sign * value;
}

/** The Flags: section of a subcommand's help, in pflag's layout. */
export function formatFlagUsage(specs: FlagSpecs): string {
  const rows = Object.entries(specs).map(([name, spec]) => {
    const typeName = spec.type === 'bool' ? '' : ` ${spec.type}`;
    const fallback =
      spec.type === 'bool'
        ? spec.default
          ? ' (default true)'
          : ''
        : spec.type === 'string'
          ? spec.default === ''
            ? ''
            : ` (default ${JSON.stringify(spec.default)})`
          : spec.type === 'duration'
            ? spec.default === 0
              ? ''
              : ` (default ${spec.default}ms)`
            : spec.default === 0
              ? ''
              : ` (default ${spec.default})`;
    return [`      --${name}${typeName}`, `${spec.usage}${fallback}`] as [string, string];
  });
  rows.push(['  -h, --help', 'help for this command']);
  const width = Math.max(...rows.map(([left]) => left.length));
  return rows.map(([left, right]) => `${left.padEnd(width)}   ${right}`).join('\n');
}
