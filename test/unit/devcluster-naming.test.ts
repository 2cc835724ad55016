import { describe, expect, it } from 'vitest';
import {
  bridgeName,
  isHostLinkOf,
  isNodeNetnsOf,
  isPodNetnsOf,
  nodeNames,
  nodeUplinkName,
  podNetnsName,
  podVethName,
  validateClusterName,
} from '../../src/devcluster/naming.js';

describe('devcluster naming', () => {
  it('names nodes like kind', () => {
    expect(nodeNames('dev', 4)).toEqual(['dev-control-plane', 'dev-worker', 'dev-worker2', 'dev-worker3']);
    expect(nodeNames('dev', 1)).toEqual(['dev-control-plane']);
  });

  it.each([
    ['dev', 'dev-control-plane', true],
    ['dev', 'dev-worker', true],
    ['dev', 'dev-worker2', true],
    ['dev', 'dev-worker17', true],
    ['dev', 'dev-worker1', false],
    ['dev', 'dev-worker02', false],
    ['dev', 'dev-workers', false],
    // another cluster whose name starts like ours is not ours
    ['dev', 'dev-worker-control-plane', false],
    ['dev', 'dev-worker2-worker', false],
    ['dev-worker', 'dev-worker', false],
    ['dev-worker', 'dev-worker-worker', true],
  ])('cluster %s owns node netns %s: %s', (cluster, netns, owned) => {
    expect(isNodeNetnsOf(cluster, netns)).toBe(owned);
  });

  it('gives each pod a netns attributable to its cluster only', () => {
    const ns = podNetnsName('dev', '7d3c0c8e-1f7b-4c1e-9a57-0c2f0f9b1a11');
    expect(ns).toMatch(/^dev-pod-[0-9a-f]{10}$/);
    expect(isPodNetnsOf('dev', ns)).toBe(true);
    expect(isPodNetnsOf('de', ns)).toBe(false);
    expect(isPodNetnsOf('dev-pod', podNetnsName('dev-pod', 'x'))).toBe(true);
    expect(isPodNetnsOf('dev', podNetnsName('dev-pod', 'x'))).toBe(false);
  });

  it('keeps every link name within 15 characters and recognisable', () => {
    const longest = 'a'.repeat(40);
    for (const name of [bridgeName(longest), nodeUplinkName(longest, 99), podVethName(longest, 'uid')]) {
      expect(name.length).toBeLessThanOrEqual(15);
    }
    expect(podVethName('dev', 'uid')).toMatch(/^lxc[0-9a-f]{12}$/);
    expect(isHostLinkOf('dev', bridgeName('dev'))).toBe(true);
    expect(isHostLinkOf('dev', nodeUplinkName('dev', 3))).toBe(true);
    expect(isHostLinkOf('dev', bridgeName('dev2'))).toBe(false);
    expect(isHostLinkOf('dev', 'eth0')).toBe(false);
  });

  it.each(['Dev', '-dev', 'dev-', 'dev_1', 'a'.repeat(41), '', 'dev/x', '../etc'])(
    'rejects cluster name %j',
    (name) => {
      expect(() => validateClusterName(name)).toThrow(/invalid cluster name/);
    },
  );

  it.each(['dev', 'e2e-net-1234', 'a', 'a'.repeat(40)])('accepts cluster name %j', (name) => {
    expect(validateClusterName(name)).toBe(name);
  });
});
