import { describe, expect, it } from 'vitest';
import {
  AgnhostUsageError,
  parseAgnhostFlags,
  parseGoBool,
  parseGoInt,
} from '../../src/devcluster/agnhost/flags.js';
import { formatGoDuration, parseGoDuration } from '../../src/devcluster/agnhost/go-duration.js';

const netexecFlags = {
  'http-port': { type: 'int', default: 8080, usage: '' },
  'udp-port': { type: 'int', default: 8081, usage: '' },
  'http-override': { type: 'string', default: '', usage: '' },
} as const;
const serveHostnameFlags = {
  http: { type: 'bool', default: true, usage: '' },
  udp: { type: 'bool', default: false, usage: '' },
  port: { type: 'int', default: 9376, usage: '' },
} as const;
const connectFlags = { timeout: { type: 'duration', default: 0, usage: '' } } as const;

describe('agnhost flags read container args the way pflag does', () => {
  it.each([
    { args: [], expected: { 'http-port': 8080, 'udp-port': 8081, 'http-override': '' } },
    { args: ['--http-port=80'], expected: { 'http-port': 80, 'udp-port': 8081, 'http-override': '' } },
    { args: ['--http-port', '80'], expected: { 'http-port': 80, 'udp-port': 8081, 'http-override': '' } },
    { args: ['--udp-port', '-1'], expected: { 'http-port': 8080, 'udp-port': -1, 'http-override': '' } },
    { args: ['--udp-port=-1'], expected: { 'http-port': 8080, 'udp-port': -1, 'http-override': '' } },
    { args: ['--http-port=0x1f90'], expected: { 'http-port': 8080, 'udp-port': 8081, 'http-override': '' } },
    {
      args: ['--http-override', '/hostname?x=1'],
      expected: { 'http-port': 8080, 'udp-port': 8081, 'http-override': '/hostname?x=1' },
    },
    {
      args: ['--http-port=1', '--http-port=2'],
      expected: { 'http-port': 2, 'udp-port': 8081, 'http-override': '' },
    },
  ])('netexec $args', ({ args, expected }) => {
    expect(parseAgnhostFlags(args, netexecFlags).values).toEqual(expected);
  });

  it.each([
    { args: [], expected: { http: true, udp: false, port: 9376 } },
    { args: ['--http=false', '--udp'], expected: { http: false, udp: true, port: 9376 } },
    { args: ['--http=0', '--udp=T'], expected: { http: false, udp: true, port: 9376 } },
    { args: ['--udp', '--port', '9000'], expected: { http: true, udp: true, port: 9000 } },
  ])('serve-hostname $args', ({ args, expected }) => {
    expect(parseAgnhostFlags(args, serveHostnameFlags).values).toEqual(expected);
  });

  it('takes Go durations for duration flags', () => {
    expect(parseAgnhostFlags(['--timeout=1m30s'], connectFlags).values.timeout).toBe(90_000);
    expect(parseAgnhostFlags(['--timeout', '250ms'], connectFlags).values.timeout).toBe(250);
  });

  it('keeps positionals, and everything after -- as positionals', () => {
    const parsed = parseAgnhostFlags(['10.0.0.1:80', '--timeout=5s', '--', '--not-a-flag'], connectFlags);
    expect(parsed.positionals).toEqual(['10.0.0.1:80', '--not-a-flag']);
    expect(parsed.values.timeout).toBe(5000);
  });

  it('accepts and ignores the klog flags agnhost registers on every subcommand', () => {
    const parsed = parseAgnhostFlags(
      ['--v=4', '-v', '2', '--logtostderr', '--alsologtostderr=false'],
      netexecFlags,
    );
    expect(parsed.values).toEqual({ 'http-port': 8080, 'udp-port': 8081, 'http-override': '' });
  });

  it.each([['-h'], ['--help']])('%s asks for help', (flag) => {
    expect(parseAgnhostFlags([flag], netexecFlags).help).toBe(true);
  });

  it.each([
    { args: ['--bogus'], message: 'unknown flag: --bogus' },
    { args: ['--http-port'], message: 'flag needs an argument: --http-port' },
    { args: ['-x'], message: "unknown shorthand flag: 'x' in -x" },
    {
      args: ['--http-port=abc'],
      message:
        'invalid argument "abc" for "--http-port" flag: strconv.ParseInt: parsing "abc": invalid syntax',
    },
    {
      args: ['--udp=maybe'],
      flags: serveHostnameFlags,
      message:
        'invalid argument "maybe" for "--udp" flag: strconv.ParseBool: parsing "maybe": invalid syntax',
    },
    {
      args: ['--timeout=5'],
      flags: connectFlags,
      message: 'invalid argument "5" for "--timeout" flag: time: missing unit in duration "5"',
    },
    {
      args: ['--timeout=5d'],
      flags: connectFlags,
      message: 'invalid argument "5d" for "--timeout" flag: time: unknown unit "d" in duration "5d"',
    },
    { args: ['--no-http'], flags: serveHostnameFlags, message: 'unknown flag: --no-http' },
  ])("rejects $args with pflag's message", ({ args, flags, message }) => {
    const run = () => parseAgnhostFlags(args, flags ?? netexecFlags);
    expect(run).toThrow(AgnhostUsageError);
    expect(run).toThrow(message);
  });
});

describe('Go number and duration syntax', () => {
  it.each([
    ['8080', 8080],
    ['-1', -1],
    ['+5', 5],
    ['0x1F', 31],
    ['0o17', 15],
    ['017', 15],
    ['0b101', 5],
    ['1_000', undefined],
    ['0x_1F', 31],
    ['', undefined],
    ['08', undefined],
    ['12abc', undefined],
    ['1.5', undefined],
  ])('strconv.ParseInt(%j, 0, 64) = %j', (text, expected) => {
    expect(parseGoInt(text)).toBe(expected);
  });

  it.each([
    ['true', true],
    ['1', true],
    ['T', true],
    ['False', false],
    ['0', false],
    ['yes', undefined],
  ])('strconv.ParseBool(%j) = %j', (text, expected) => {
    expect(parseGoBool(text)).toBe(expected);
  });

  it.each([
    ['0', 0],
    ['5s', 5000],
    ['1.5s', 1500],
    ['1m30s', 90_000],
    ['2h', 7_200_000],
    ['100ms', 100],
    ['1500us', 1.5],
    ['1500µs', 1.5],
    ['-2s', -2000],
    ['.5s', 500],
  ])('time.ParseDuration(%j) = %j ms', (text, ms) => {
    expect(parseGoDuration(text)).toBeCloseTo(ms, 9);
  });

  it.each([
    ['', 'time: invalid duration ""'],
    ['5', 'time: missing unit in duration "5"'],
    ['s', 'time: invalid duration "s"'],
    ['1x', 'time: unknown unit "x" in duration "1x"'],
    ['.s', 'time: invalid duration ".s"'],
  ])('time.ParseDuration(%j) fails with %j', (text, message) => {
    expect(() => parseGoDuration(text)).toThrow(message);
  });

  it.each([
    [0, '0s'],
    [250, '250ms'],
    [1500, '1.5s'],
    [90_000, '1m30s'],
    [7_200_000, '2h0m0s'],
    [0.5, '500µs'],
  ])('Duration(%j ms).String() = %j', (ms, text) => {
    expect(formatGoDuration(ms)).toBe(text);
  });
});
