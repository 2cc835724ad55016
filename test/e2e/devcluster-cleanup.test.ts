import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import type { V1Pod } from '@kubernetes/client-node';
import { afterAll, describe, expect, it } from 'vitest';
import { clusterStateDir } from '../../src/devcluster/naming.js';
import { isRunning, type ProcessRecord } from '../../src/devcluster/process-record.js';
import { weftCommand } from '../../src/shared/self.js';
import {
  coreApi,
  downCluster,
  leftovers,
  recordedProcesses,
  run,
  uniqueClusterName,
  waitFor,
  weft,
  weftOk,
  AGNHOST,
} from './devcluster-harness.js';

/**
 * `down` removes everything a cluster made however it ended: after the daemon was killed,
 * after `up` itself was killed half-way, and after `up` failed; and `up` never touches what
 * is not its own.
 */

const created = new Set<string>();
const foreignNetns = new Set<string>();

afterAll(async () => {
  for (const name of created) await downCluster(name);
  for (const ns of foreignNetns) await run('ip', ['netns', 'delete', ns]);
});

function clusterNodeCIDR(name: string): string | undefined {
  try {
    return JSON.parse(readFileSync(`${clusterStateDir(name)}/cluster.json`, 'utf8')).plan.nodeCIDR;
  } catch {
    return undefined;
  }
}

const agnhostPod = (name: string, node: string): V1Pod => ({
  metadata: { name },
  spec: {
    nodeName: node,
    containers: [
      {
        name: 'c',
        image: AGNHOST,
        args: ['netexec', '--http-port=8080'],
        readinessProbe: { tcpSocket: { port: 8080 as never }, periodSeconds: 1 },
      },
    ],
  },
});

describe('devcluster cleanup', () => {
  it('removes everything after the daemon was killed with SIGKILL, pods included', async () => {
    const name = uniqueClusterName('kill');
    created.add(name);
    await weftOk(['devcluster', 'up', '--name', name]);
    const core = coreApi(name);
    await core.createNamespacedPod({ namespace: 'default', body: agnhostPod('a', `${name}-control-plane`) });
    await core.createNamespacedPod({ namespace: 'default', body: agnhostPod('b', `${name}-worker`) });
    for (const pod of ['a', 'b']) {
      await waitFor(`pod ${pod} Ready`, async () => {
        const p = await core.readNamespacedPod({ name: pod, namespace: 'default' });
        return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
      });
    }
    const nodeCIDR = clusterNodeCIDR(name);
    const procs = recordedProcesses(name);
    const daemon = procs.find((p) => p.role === 'daemon');
    const containers = procs.filter((p) => p.role.startsWith('default/'));
    expect(daemon).toBeDefined();
    expect(containers).toHaveLength(2);
    process.kill(daemon!.pid, 'SIGKILL');
    await waitFor('the daemon to die', () => !isRunning(daemon!));
    // Pods outlive the daemon, as containers outlive a crashed kubelet...
    expect(containers.every(isRunning)).toBe(true);
    // ...and down removes them with everything else.
    const down = await weft(['devcluster', 'down', '--name', name]);
    expect(down.code, down.stderr).toBe(0);
    expect(down.stderr).toContain(`Deleted cluster "${name}"`);
    expect(await leftovers(name, procs, nodeCIDR)).toEqual([]);
    created.delete(name);
  });

  it('stops the daemon on SIGTERM but leaves the pods running until down', async () => {
    const name = uniqueClusterName('term');
    created.add(name);
    await weftOk(['devcluster', 'up', '--name', name, '--nodes', '1']);
    const core = coreApi(name);
    await core.createNamespacedPod({ namespace: 'default', body: agnhostPod('a', `${name}-control-plane`) });
    await waitFor('pod a Ready', async () => {
      const p = await core.readNamespacedPod({ name: 'a', namespace: 'default' });
      return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
    });
    const procs = recordedProcesses(name);
    const daemon = procs.find((p) => p.role === 'daemon');
    const container = procs.find((p) => p.role === 'default/a/c');
    process.kill(daemon!.pid, 'SIGTERM');
    await waitFor('the daemon to exit', () => !isRunning(daemon!));
    expect(isRunning(container!)).toBe(true);
    const status = JSON.parse(await weftOk(['devcluster', 'status', '--name', name, '-o', 'json']));
    expect(status.state).toBe('Stopped');
    expect(status.pods).toEqual([
      expect.objectContaining({ namespace: 'default', name: 'a', phase: 'Unknown' }),
    ]);
    expect((await weft(['devcluster', 'down', '--name', name])).code).toBe(0);
    expect(await leftovers(name, procs)).toEqual([]);
    created.delete(name);
  });

  it('removes a cluster whose `up` was killed half-way', async () => {
    const name = uniqueClusterName('halfup');
    created.add(name);
    const [node, main] = weftCommand();
    const up = spawn(node, [main, 'devcluster', 'up', '--name', name, '--nodes', '3'], { stdio: 'ignore' });
    const exited = new Promise((r) => up.once('exit', r));
    await waitFor('the first node namespace', () => existsSync(`/run/netns/${name}-control-plane`), 30_000);
    up.kill('SIGKILL');
    await exited;
    const record = JSON.parse(readFileSync(`${clusterStateDir(name)}/cluster.json`, 'utf8'));
    expect(record.phase).toBe('creating');
    // A half-made cluster still exists as far as `up` is concerned...
    const again = await weft(['devcluster', 'up', '--name', name]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('already exists');
    // ...and `down` removes whatever part of it was made.
    const procs = recordedProcesses(name);
    const down = await weft(['devcluster', 'down', '--name', name]);
    expect(down.code, down.stderr).toBe(0);
    expect(await leftovers(name, procs, record.plan.nodeCIDR)).toEqual([]);
    created.delete(name);
  });

  it('removes what a failed `up` made before it reports the failure', async () => {
    const name = uniqueClusterName('fail');
    created.add(name);
    // Nodes cannot be Ready within a millisecond: `up` fails after building the topology and
    // starting the daemon, and must take all of it down again.
    const r = await weft(['devcluster', 'up', '--name', name, '--wait', '1ms']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/✗ /);
    expect(r.stderr).toMatch(/Error: .*(not Ready|did not come up)/);
    expect(await leftovers(name)).toEqual([]);
    created.delete(name);
  });

  it('keeps a half-made cluster with --retain, for down to remove', async () => {
    const name = uniqueClusterName('retain');
    created.add(name);
    const r = await weft(['devcluster', 'up', '--name', name, '--wait', '1ms', '--retain']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`weft devcluster down --name ${name}`);
    expect(existsSync(`/run/netns/${name}-control-plane`)).toBe(true);
    const nodeCIDR = clusterNodeCIDR(name);
    const procs = recordedProcesses(name);
    expect((await weft(['devcluster', 'down', '--name', name])).code).toBe(0);
    expect(await leftovers(name, procs, nodeCIDR)).toEqual([]);
    created.delete(name);
  });

  it('refuses to create a cluster over names that are not its own, and leaves them alone', async () => {
    const name = uniqueClusterName('taken');
    const foreign = `${name}-worker`;
    foreignNetns.add(foreign);
    await run('ip', ['netns', 'add', foreign]);
    const r = await weft(['devcluster', 'up', '--name', name]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`network namespace ${foreign} already exists on this host`);
    expect(existsSync(`/run/netns/${foreign}`)).toBe(true);
    expect(existsSync(`/run/netns/${name}-control-plane`)).toBe(false);
    expect(existsSync(clusterStateDir(name))).toBe(false);
  });

  it.each<[string, string[], number, RegExp]>([
    [
      'a pod CIDR on the host’s uplink',
      ['--pod-cidr', '192.0.2.0/24', '--nodes', '1'],
      1,
      /--pod-cidr 192\.0\.2\.0\/24 overlaps 192\.0\.2\.0\/24/,
    ],
    [
      'a service CIDR overlapping the pod CIDR',
      ['--service-cidr', '10.244.0.0/16'],
      1,
      /overlaps --service-cidr/,
    ],
    ['a bad node count', ['--nodes', 'two'], 2, /invalid argument "two" for "--nodes"/],
    ['an unknown flag', ['--node', '2'], 2, /Unknown option '--node'/],
    ['a bad wait duration', ['--wait', 'soon'], 2, /expected a duration/],
  ])('rejects %s before creating anything', async (_what, flags, code, message) => {
    const name = uniqueClusterName('flags');
    const r = await weft(['devcluster', 'up', '--name', name, ...flags]);
    expect(r.code).toBe(code);
    expect(r.stderr).toMatch(message);
    expect(await leftovers(name)).toEqual([]);
  });

  it('says so, and succeeds, when asked to delete a cluster that does not exist', async () => {
    const r = await weft(['devcluster', 'down', '--name', uniqueClusterName('absent')]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/No devcluster named "e2e-absent-[a-z0-9]+" exists; nothing to delete\./);
  });

  it('leaves no recorded process running after down, even ones that ignore SIGTERM', async () => {
    const name = uniqueClusterName('stubborn');
    created.add(name);
    await weftOk(['devcluster', 'up', '--name', name, '--nodes', '1']);
    const core = coreApi(name);
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'deaf' },
        spec: {
          containers: [
            { name: 'c', image: 'busybox', command: ['sh', '-c', 'trap "" TERM; sleep 3600 & wait'] },
          ],
        },
      },
    });
    await waitFor('deaf to run', async () => {
      const p = await core.readNamespacedPod({ name: 'deaf', namespace: 'default' });
      return p.status?.phase === 'Running';
    });
    const procs: ProcessRecord[] = recordedProcesses(name);
    expect((await weft(['devcluster', 'down', '--name', name])).code).toBe(0);
    expect(await leftovers(name, procs)).toEqual([]);
    created.delete(name);
  });
});
