import { describe, expect, it } from 'vitest';
import { PodIPAllocator } from '../../src/devcluster/pod-ipam.js';

describe('PodIPAllocator', () => {
  it('hands out .2 upwards, never the router .1 nor the broadcast address', () => {
    const ipam = new PodIPAllocator('10.244.1.0/24');
    const ips = Array.from({ length: 253 }, (_, i) => ipam.allocate(`pod-${i}`));
    expect(ips[0]).toBe('10.244.1.2');
    expect(ips.at(-1)).toBe('10.244.1.254');
    expect(new Set(ips).size).toBe(253);
    expect(() => ipam.allocate('one-too-many')).toThrow(/no free pod IP in 10\.244\.1\.0\/24/);
  });

  it('gives a pod the same IP when asked twice', () => {
    const ipam = new PodIPAllocator('10.244.1.0/24');
    expect(ipam.allocate('a')).toBe(ipam.allocate('a'));
    expect(ipam.inUse).toBe(1);
  });

  it('reuses a released IP only after the rest of the range', () => {
    const ipam = new PodIPAllocator('10.244.1.0/29'); // pods .2-.6
    expect(ipam.allocate('a')).toBe('10.244.1.2');
    expect(ipam.allocate('b')).toBe('10.244.1.3');
    ipam.release('a');
    expect(ipam.allocate('c')).toBe('10.244.1.4');
    expect(ipam.allocate('d')).toBe('10.244.1.5');
    expect(ipam.allocate('e')).toBe('10.244.1.6');
    expect(ipam.allocate('f')).toBe('10.244.1.2');
  });

  it('restores recorded IPs and refuses to give one to two pods', () => {
    const ipam = new PodIPAllocator('10.244.1.0/24');
    ipam.restore('a', '10.244.1.7');
    expect(() => ipam.restore('b', '10.244.1.7')).toThrow(/already held by a/);
    expect(() => ipam.restore('c', '10.244.2.7')).toThrow(/not a pod address/);
    expect(() => ipam.restore('c', '10.244.1.1')).toThrow(/not a pod address/);
  });
});
