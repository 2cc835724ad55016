/**
 * Go's time.ParseDuration and Duration.String(), because agnhost's flags (`connect --timeout`)
 * and query parameters (`/exit?timeout=&wait=`) take Go durations, and manifests written for
 * the real image pass them as they are ("5s", "1m30s", "250ms", "0").
 */

const NANOS_PER_UNIT: Record<string, number> = {
  ns: 1,
  us: 1e3,
  µs: 1e3, // U+00B5 micro sign
  μs: 1e3, // U+03BC Greek mu
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};

export class GoDurationError extends Error {
  override readonly name = 'GoDurationError';
}

/** Parses a Go duration into milliseconds (fractional when it has sub-millisecond parts). */
export function parseGoDuration(text: string): number {
  const quoted = JSON.stringify(text);
  let rest = text;
  let sign = 1;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    if (rest[0] === '-') sign = -1;
    rest = rest.slice(1);
  }
  if (rest === '0') return 0;
  if (rest === '') throw new GoDurationError(`time: invalid duration ${quoted}`);
  let nanos = 0;
  while (rest !== '') {
    const number = /^(\d*)(?:\.(\d*))?/.exec(rest);
    const whole = number?.[1] ?? '';
    const fraction = number?.[2];
    if (whole === '' && (fraction === undefined || fraction === '')) {
      throw new GoDurationError(`time: invalid duration ${quoted}`);
    }
    rest = rest.slice(number?.[0].length ?? 0);
    const unit = /^[^\d.]*/.exec(rest)?.[0] ?? '';
    if (unit === '') throw new GoDurationError(`time: missing unit in duration ${quoted}`);
    const scale = NANOS_PER_UNIT[unit];
    if (scale === undefined) {
      throw new GoDurationError(`time: unknown unit ${JSON.stringify(unit)} in duration ${quoted}`);
    }
    rest = rest.slice(unit.length);
    nanos += Number(`${whole || '0'}.${fraction || '0'}`) * scale;
  }
  // Go's Duration is an int64 of nanoseconds: about 292 years.
  if (nanos > 9.223372036854775e18) throw new GoDurationError(`time: invalid duration ${quoted}`);
  return (sign * nanos) / 1e6;
}

/** Duration.String(): "0s", "250ms", "1.5s", "1m30s", "2h0m0s". */
export function formatGoDuration(ms: number): string {
  if (ms === 0) return '0s';
  const sign = ms < 0 ? '-' : '';
  const abs = Math.abs(ms);
  if (abs < 1000) {
    const nanos = Math.round(abs * 1e6);
    if (nanos < 1e3) return `${sign}${nanos}ns`;
    if (nanos < 1e6) return `${sign}${trimFraction(nanos / 1e3)}µs`;
    return `${sign}${trimFraction(nanos / 1e6)}ms`;
  }
  const hours = Math.floor(abs / 3_600_000);
  const minutes = Math.floor((abs % 3_600_000) / 60_000);
  const seconds = trimFraction((abs % 60_000) / 1000);
  if (hours > 0) return `${sign}${hours}h${minutes}m${seconds}s`;
  if (minutes > 0) return `${sign}${minutes}m${seconds}s`;
  return `${sign}${seconds}s`;
}

function trimFraction(value: number): string {
  return String(Number(value.toFixed(9)));
}
