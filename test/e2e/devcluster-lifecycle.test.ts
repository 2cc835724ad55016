import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { CoreV1Api, V1Pod } from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { readPodRecords } from '../../src/devcluster/cluster-record.js';
import { isRunning, type ProcessRecord } from '../../src/devcluster/process-record.js';
import {
  coreApi,
  recordedProcesses,
  uniqueClusterName,
  waitFor,
  weftOk,
  removeClusterAfterAll,
} from './devcluster-harness.js';

/**
 * The kubelet's side of a pod's life on a 2-node cluster: scheduling, readiness probes,
 * restarts under each restartPolicy, and graceful deletion within the grace period.
 */

const cluster = uniqueClusterName('life');
let core: CoreV1Api;
const markerDir = `/tmp/weft-${cluster}`;

async function pod(name: string): Promise<V1Pod | undefined> {
  try {
    return await core.readNamespacedPod({ name, namespace: 'default' });
  } catch {
    return undefined;
  }
}

const condition = (p: V1Pod | undefined, type: string) =>
  p?.status?.conditions?.find((c) => c.type === type)?.status;

function recordedContainer(name: string): ProcessRecord | undefined {
  return recordedProcesses(cluster).find((p) => p.role === `default/${name}/c`);
}

beforeAll(async () => {
  rmSync(markerDir, { recursive: true, force: true });
  await weftOk(['devcluster', 'up', '--name', cluster, '--nodes', '2']);
  core = coreApi(cluster);
});

removeClusterAfterAll(cluster, { cleanup: () => rmSync(markerDir, { recursive: true, force: true }) });

describe('pod lifecycle on the devcluster kubelet', () => {
  it('spreads pods without a nodeName over the nodes through the scheduler', async () => {
    for (const i of [1, 2, 3, 4]) {
      await core.createNamespacedPod({
        namespace: 'default',
        body: {
          metadata: { name: `spread-${i}` },
          spec: { containers: [{ name: 'c', image: 'registry.k8s.io/pause:3.10' }] },
        },
      });
    }
    const nodes = await waitFor('all spread pods to be bound', async () => {
      const list = await Promise.all([1, 2, 3, 4].map((i) => pod(`spread-${i}`)));
      const names = list.map((p) => p?.spec?.nodeName);
      return names.every(Boolean) ? names : undefined;
    });
    expect(new Set(nodes).size).toBe(2);
    const scheduled = await pod('spread-1');
    expect(condition(scheduled, 'PodScheduled')).toBe('True');
  });

  it('leaves a pod whose nodeSelector matches no node Pending, saying why', async () => {
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'nowhere' },
        spec: {
          nodeSelector: { disk: 'ssd' },
          containers: [{ name: 'c', image: 'registry.k8s.io/pause:3.10' }],
        },
      },
    });
    const p = await waitFor('nowhere to be marked unschedulable', async () => {
      const got = await pod('nowhere');
      return condition(got, 'PodScheduled') === 'False' ? got : undefined;
    });
    const c = p.status?.conditions?.find((x) => x.type === 'PodScheduled');
    expect(c?.reason).toBe('Unschedulable');
    expect(c?.message).toBe("0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.");
    expect(p.spec?.nodeName).toBeUndefined();
  });

  it('is Ready only while its readiness probe passes', async () => {
    const flag = `${markerDir}/ready`;
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'probed' },
        spec: {
          containers: [
            {
              name: 'c',
              image: 'busybox',
              command: ['sh', '-c', 'sleep 3600'],
              readinessProbe: {
                exec: { command: ['test', '-e', flag] },
                periodSeconds: 1,
                failureThreshold: 1,
              },
            },
          ],
        },
      },
    });
    const running = await waitFor('probed to run', async () => {
      const p = await pod('probed');
      return p?.status?.phase === 'Running' ? p : undefined;
    });
    expect(condition(running, 'Ready')).toBe('False');
    expect(running.status?.containerStatuses?.[0]?.ready).toBe(false);
    mkdirSync(markerDir, { recursive: true });
    writeFileSync(flag, '');
    await waitFor('probed to become Ready', async () => condition(await pod('probed'), 'Ready') === 'True');
    rmSync(flag);
    await waitFor(
      'probed to become unready again',
      async () => condition(await pod('probed'), 'Ready') === 'False',
    );
  });

  it('restarts a failing container under restartPolicy Always, counting restarts', async () => {
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'crasher' },
        spec: { containers: [{ name: 'c', image: 'busybox', command: ['sh', '-c', 'exit 3'] }] },
      },
    });
    const p = await waitFor('crasher to have restarted', async () => {
      const got = await pod('crasher');
      const s = got?.status?.containerStatuses?.[0];
      return s && (s.restartCount ?? 0) >= 1 && s.lastState?.terminated ? got : undefined;
    });
    const s = p.status?.containerStatuses?.[0];
    expect(s?.lastState?.terminated?.exitCode).toBe(3);
    expect(s?.lastState?.terminated?.reason).toBe('Error');
    expect(p.status?.phase).toBe('Running');
  });

  it('restarts a container whose liveness probe fails', async () => {
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'unlively' },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: [
            {
              name: 'c',
              image: 'busybox',
              command: ['sleep', '3600'],
              livenessProbe: { exec: { command: ['false'] }, periodSeconds: 1, failureThreshold: 2 },
            },
          ],
        },
      },
    });
    const p = await waitFor('unlively to be restarted', async () => {
      const got = await pod('unlively');
      return (got?.status?.containerStatuses?.[0]?.restartCount ?? 0) >= 1 ? got : undefined;
    });
    expect(p.status?.containerStatuses?.[0]?.lastState?.terminated?.signal).toBe(15);
  });

  it('stops a force-deleted pod’s containers although its object is already gone', async () => {
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'forced' },
        spec: { containers: [{ name: 'c', image: 'busybox', command: ['sleep', '3600'] }] },
      },
    });
    await waitFor('forced to run', async () => condition(await pod('forced'), 'Ready') === 'True');
    const proc = recordedContainer('forced');
    expect(proc && isRunning(proc)).toBe(true);
    await core.deleteNamespacedPod({ name: 'forced', namespace: 'default', gracePeriodSeconds: 0 });
    expect(await pod('forced')).toBeUndefined();
    await waitFor('the forced pod’s process to end', () => proc !== undefined && !isRunning(proc));
    await waitFor('the forced pod’s sandbox record to go', () =>
      readPodRecords(cluster).pods.every((r) => r.name !== 'forced'),
    );
  });

  it.each([
    ['Never', 0, 'Succeeded', 0],
    ['Never', 5, 'Failed', 0],
    ['OnFailure', 0, 'Succeeded', 0],
  ])(
    'under restartPolicy %s a container exiting %i leaves the pod %s',
    async (policy, code, phase, restarts) => {
      const name = `exit-${policy.toLowerCase()}-${code}`;
      await core.createNamespacedPod({
        namespace: 'default',
        body: {
          metadata: { name },
          spec: {
            restartPolicy: policy,
            containers: [{ name: 'c', image: 'busybox', command: ['sh', '-c', `exit ${code}`] }],
          },
        },
      });
      const p = await waitFor(`${name} to finish`, async () => {
        const got = await pod(name);
        return got?.status?.phase === phase ? got : undefined;
      });
      const s = p.status?.containerStatuses?.[0];
      expect(s?.state?.terminated?.exitCode).toBe(code);
      expect(s?.restartCount).toBe(restarts);
      expect(condition(p, 'Ready')).toBe('False');
    },
  );

  it('keeps each run’s output for weft devcluster logs, the previous run included', async () => {
    const counter = `${markerDir}/runs`;
    mkdirSync(markerDir, { recursive: true });
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'twice' },
        spec: {
          containers: [
            {
              name: 'c',
              image: 'busybox',
              command: [
                'sh',
                '-c',
                `n=$(( $(cat ${counter} 2>/dev/null || echo 0) + 1 )); echo $n > ${counter}; echo "run $n"; echo "err $n" >&2; [ $n -ge 2 ] && exec sleep 3600; exit 1`,
              ],
            },
          ],
        },
      },
    });
    await waitFor('twice to run its second time', async () => {
      const s = (await pod('twice'))?.status?.containerStatuses?.[0];
      return s?.restartCount === 1 && s.state?.running !== undefined;
    });
    const current = await waitFor('the second run’s output', async () => {
      const r = await weftOk(['devcluster', 'logs', '--name', cluster, 'default/twice']);
      return r.includes('err 2') ? r : undefined;
    });
    expect(current).toBe('run 2\nerr 2\n');
    expect(await weftOk(['devcluster', 'logs', '--name', cluster, 'twice', '-c', 'c', '--previous'])).toBe(
      'run 1\nerr 1\n',
    );
    expect(await weftOk(['devcluster', 'logs', '--name', cluster, 'default/twice', '--tail', '1'])).toBe(
      'err 2\n',
    );
  });

  it('runs init containers to completion, in order, before the containers', async () => {
    const log = `${markerDir}/init-order`;
    mkdirSync(markerDir, { recursive: true });
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'with-init' },
        spec: {
          initContainers: [
            { name: 'first', image: 'busybox', command: ['sh', '-c', `echo first >> ${log}`] },
            { name: 'second', image: 'busybox', command: ['sh', '-c', `echo second >> ${log}`] },
          ],
          containers: [
            { name: 'c', image: 'busybox', command: ['sh', '-c', `echo main >> ${log}; sleep 3600`] },
          ],
        },
      },
    });
    const p = await waitFor('with-init to run', async () => {
      const got = await pod('with-init');
      return condition(got, 'Ready') === 'True' ? got : undefined;
    });
    expect(condition(p, 'Initialized')).toBe('True');
    expect(p.status?.initContainerStatuses?.map((s) => s.state?.terminated?.reason)).toEqual([
      'Completed',
      'Completed',
    ]);
    await waitFor(
      'the main container to write',
      () => existsSync(log) && readFileSync(log, 'utf8').includes('main'),
    );
    expect(readFileSync(log, 'utf8')).toBe('first\nsecond\nmain\n');
  });

  it('gives a container that ignores SIGTERM its grace period, then kills it and removes the pod', async () => {
    const marker = `${markerDir}/got-term`;
    mkdirSync(markerDir, { recursive: true });
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'stubborn' },
        spec: {
          terminationGracePeriodSeconds: 5,
          containers: [
            {
              name: 'c',
              image: 'busybox',
              command: ['sh', '-c', `trap 'echo term > ${marker}' TERM; while true; do sleep 0.1; done`],
            },
          ],
        },
      },
    });
    await waitFor('stubborn to run', async () => condition(await pod('stubborn'), 'Ready') === 'True');
    const proc = recordedContainer('stubborn');
    expect(proc).toBeDefined();
    await core.deleteNamespacedPod({ name: 'stubborn', namespace: 'default' });
    // The API object stays, marked for deletion, while the container has SIGTERM and is alive.
    await waitFor('the container to get SIGTERM', () => existsSync(marker));
    const terminating = await pod('stubborn');
    expect(terminating?.metadata?.deletionTimestamp).toBeDefined();
    expect(terminating?.metadata?.deletionGracePeriodSeconds).toBe(5);
    expect(proc && isRunning(proc)).toBe(true);
    // After the grace period: SIGKILL, sandbox gone, pod object gone.
    await waitFor('stubborn to be removed', async () => (await pod('stubborn')) === undefined, 60_000);
    expect(proc && isRunning(proc)).toBe(false);
  });

  it('removes a pod whose container exits on SIGTERM without waiting out the grace period', async () => {
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'polite' },
        spec: {
          terminationGracePeriodSeconds: 3600,
          containers: [{ name: 'c', image: 'busybox', command: ['sleep', '3600'] }],
        },
      },
    });
    await waitFor('polite to run', async () => condition(await pod('polite'), 'Ready') === 'True');
    const proc = recordedContainer('polite');
    await core.deleteNamespacedPod({ name: 'polite', namespace: 'default' });
    // An hour's grace would outlast this test's timeout: the pod goes because its process did.
    await waitFor('polite to be removed', async () => (await pod('polite')) === undefined, 60_000);
    expect(proc && isRunning(proc)).toBe(false);
  });

  it('frees a deleted pod’s IP, sandbox and cgroup', async () => {
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'ephemeral' },
        spec: {
          nodeName: `${cluster}-worker`,
          containers: [{ name: 'c', image: 'busybox', command: ['sleep', '3600'] }],
        },
      },
    });
    const p = await waitFor('ephemeral to run', async () => {
      const got = await pod('ephemeral');
      return condition(got, 'Ready') === 'True' ? got : undefined;
    });
    const status = JSON.parse(await weftOk(['devcluster', 'status', '--name', cluster, '-o', 'json']));
    const worker = status.nodes.find((n: { name: string }) => n.name === `${cluster}-worker`);
    const podCgroup = `${worker.cgroup}/pod${p.metadata?.uid}`;
    expect(existsSync(podCgroup)).toBe(true);
    await core.deleteNamespacedPod({ name: 'ephemeral', namespace: 'default', gracePeriodSeconds: 1 });
    await waitFor('ephemeral to be removed', async () => (await pod('ephemeral')) === undefined);
    expect(existsSync(podCgroup)).toBe(false);
    // Every pod network namespace left belongs to a pod that still has a sandbox record.
    const sandboxes = readPodRecords(cluster).pods;
    expect(sandboxes.map((r) => r.uid)).not.toContain(p.metadata?.uid);
    const netns = readdirSync('/run/netns').filter((n) => n.startsWith(`${cluster}-pod-`));
    expect(netns.sort()).toEqual(sandboxes.flatMap((r) => (r.netns ? [r.netns] : [])).sort());
  });
});
