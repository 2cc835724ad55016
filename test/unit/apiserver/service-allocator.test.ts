import { describe, expect, it } from 'vitest';
import {
  ClusterIPAllocator,
  NodePortAllocator,
  parseCidr,
} from '../../../src/devcluster/apiserver/service-allocator.js';

describe('ClusterIP allocation', () => {
  it('keeps the first address for default/kubernetes and hands out the others once', () => {
    const a = new ClusterIPAllocator('10.96.0.0/29');
    expect(a.first).toBe('10.96.0.1');
    const got = new Set<string>();
    for (;;) {
      const ip = a.next();
      if (!ip) break;
      a.reserve(ip);
      got.add(ip);
    }
    expect([...got].sort()).toEqual(['10.96.0.2', '10.96.0.3', '10.96.0.4', '10.96.0.5', '10.96.0.6']);
  });

  it.each([
    ['10.96.0.10', undefined],
    ['10.96.0.0', 'out-of-range'],
    ['10.96.0.255', 'out-of-range'],
    ['10.97.0.1', 'out-of-range'],
    ['not-an-ip', 'out-of-range'],
  ])('checks a user-chosen %s → %s', (ip, problem) => {
    expect(new ClusterIPAllocator('10.96.0.0/24').check(ip)).toBe(problem);
  });

  it('reports taken addresses and frees them on release', () => {
    const a = new ClusterIPAllocator('10.96.0.0/24');
    a.reserve('10.96.0.10');
    expect(a.check('10.96.0.10')).toBe('taken');
    a.release('10.96.0.10');
    expect(a.check('10.96.0.10')).toBeUndefined();
  });

  it('refuses CIDRs it cannot serve', () => {
    expect(() => new ClusterIPAllocator('10.96.0.0/31')).toThrow('serviceCIDR 10.96.0.0/31 must be');
    expect(parseCidr('10.96.3.7/12')).toEqual({
      base: parseCidr('10.96.0.0/12')!.base,
      prefix: 12,
      size: 2 ** 20,
    });
  });
});

describe('NodePort allocation', () => {
  it('allocates within the range, never twice, and checks user-chosen ports', () => {
    const a = new NodePortAllocator([30000, 30002]);
    const ports = [a.next(), a.next(new Set([30000]))];
    expect(ports).toEqual([30000, 30001]);
    a.reserve(30000);
    a.reserve(30001);
    a.reserve(30002);
    expect(a.next()).toBeUndefined();
    expect(a.check(30001)).toBe('taken');
    expect(a.check(29999)).toBe('out-of-range');
    a.release(30001);
    expect(a.next()).toBe(30001);
  });
});
