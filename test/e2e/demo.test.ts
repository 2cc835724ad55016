import { existsSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { ServicesDemoReport } from '../../src/cli/demo-services.js';
import { leftovers, weft } from './devcluster-harness.js';

/**
 * The README's demo, run as a user runs it (`weft demo`, what `make demo` calls), with -o json
 * so the test reads what the tables show. Both demos must leave nothing behind.
 */

function ownNetns(prefix: string): string[] {
  const dir = '/run/netns';
  return existsSync(dir) ? readdirSync(dir).filter((n) => n.startsWith(prefix)) : [];
}

describe('weft demo', () => {
  it('services (the default): ClusterIP over TCP and UDP, NodePort from the host, a deleted backend avoided', async () => {
    const r = await weft(['demo', '-o', 'json', '-n', '24']);
    expect(r.stderr).not.toContain('Error');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as ServicesDemoReport;
    expect(report.problems).toEqual([]);
    const backends = ['echo-1', 'echo-2', 'echo-3'];
    const { clusterIPTcp, clusterIPUdp, nodePortFromHost, afterDelete } = report.rounds;
    for (const round of [clusterIPTcp, clusterIPUdp, nodePortFromHost]) {
      expect(round.failures).toEqual([]);
      expect(Object.keys(round.spread).sort()).toEqual(backends);
    }
    const http = report.service.ports.find((p) => p.protocol === 'TCP')!;
    const udp = report.service.ports.find((p) => p.protocol === 'UDP')!;
    // The client only ever sees the ClusterIP: getpeername and the UDP replies' source.
    expect(clusterIPTcp.seen).toEqual([`${report.service.clusterIP}:${http.port}`]);
    expect(clusterIPUdp.seen).toEqual([`${report.service.clusterIP}:${udp.port}`]);
    expect(afterDelete.failures).toEqual([]);
    expect(afterDelete.spread[afterDelete.removed]).toBeUndefined();
    expect(Object.values(afterDelete.spread).reduce((a, b) => a + b, 0)).toBe(24);
    expect(afterDelete.appliedWithinMs).toBeLessThan(1_000);
    // `weft service list` showed the Service's ClusterIP and NodePort frontends with all backends
    // (TCP and UDP; NodePorts on the client's node's own address only).
    const frontends = report.weftServiceList.filter((s) => s.service?.name === 'echo');
    expect(frontends.map((f) => f.type).sort()).toEqual(['ClusterIP', 'ClusterIP', 'NodePort', 'NodePort']);
    for (const f of frontends) expect(f.backends).toHaveLength(3);

    expect(await leftovers(report.cluster)).toEqual([]);
  }, 180_000);

  it('socket-lb: a fake ClusterIP in a namespace the demo makes, without Kubernetes', async () => {
    const r = await weft(['demo', 'socket-lb', '-o', 'json', '-n', '24']);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as {
      problems: string[];
      sandbox: { netns: string; cgroup: string; pinRoot: string };
      rounds: {
        allBackends: { spread: Record<string, number>; peers: string[] };
        afterRemoval: { spread: Record<string, number>; removed: string };
      };
    };
    expect(report.problems).toEqual([]);
    expect(Object.keys(report.rounds.allBackends.spread).sort()).toEqual(['web-1', 'web-2', 'web-3']);
    expect(report.rounds.allBackends.peers).toEqual(['10.96.0.10:80']);
    expect(report.rounds.afterRemoval.spread[report.rounds.afterRemoval.removed]).toBeUndefined();
    expect(ownNetns(report.sandbox.netns)).toEqual([]);
    expect(existsSync(report.sandbox.cgroup)).toBe(false);
    expect(existsSync(report.sandbox.pinRoot)).toBe(false);
  }, 60_000);

  it('an unknown demo is a usage error that names the demos', async () => {
    const r = await weft(['demo', 'nope']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('unknown demo "nope"');
    expect(r.stderr).toContain('services, socket-lb');
  });
});
