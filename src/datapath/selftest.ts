import { bytes, struct, u32, u64, u64n } from './codec.js';

/**
 * Codecs for bpf/include/selftest.h: the self-test object the binding's kernel tests and the
 * benchmarks load (bpf/dist/selftest.bpf.o). Not part of the product datapath.
 */

export interface SelftestEvent {
  seq: bigint;
  ktime_ns: bigint;
  cpu: number;
  len: number;
  payload: Uint8Array;
}
export const selftestEvent = struct<SelftestEvent>('selftest_event', 64, [
  ['seq', u64],
  ['ktime_ns', u64],
  ['cpu', u32],
  ['len', u32],
  ['payload', bytes(40)],
]);

export interface SelftestKey {
  a: number;
  b: number;
  c: number;
  d: number;
}
export const selftestKey = struct<SelftestKey>('selftest_key', 16, [
  ['a', u32],
  ['b', u32],
  ['c', u32],
  ['d', u32],
]);

export interface SelftestValue {
  x: number;
  y: number;
}
export const selftestValue = struct<SelftestValue>('selftest_value', 16, [
  ['x', u64n],
  ['y', u64n],
]);

export interface SelftestConfig {
  events_per_run: number;
}
export const selftestConfig = struct<SelftestConfig>('selftest_config', 8, [
  ['events_per_run', u32],
  ['pad', 4],
]);

export interface SelftestStats {
  produced: number;
  dropped: number;
  packets: number;
  connects: number;
}
export const selftestStats = struct<SelftestStats>('selftest_stats', 32, [
  ['produced', u64n],
  ['dropped', u64n],
  ['packets', u64n],
  ['connects', u64n],
]);

export const selftestCodecs = [selftestEvent, selftestKey, selftestValue, selftestConfig, selftestStats];
