import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { CoreV1Api, V1Container, V1Pod } from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { readDaemonRecord, readPodRecords, recordPaths } from '../../src/devcluster/cluster-record.js';
import { isRunning, type ProcessRecord, signalRecorded } from '../../src/devcluster/process-record.js';
import { listNetns } from '../../src/devcluster/topology.js';
import {
  coreApi,
  uniqueClusterName,
  waitFor,
  weft,
  weftOk,
  AGNHOST,
  removeClusterAfterAll,
} from './devcluster-harness.js';

/**
 * The daemon stopped (SIGTERM) and started again: its kubelets take over the running pods as
 * a restarted kubelet does — same processes, IPs and status, still Ready — restart a container
 * that died while nobody watched, and keep supervising (exits, graceful deletion). No agents:
 * this is about the kubelet, and the agents' own take-over is agent-restart.test.ts's.
 */

const cluster = uniqueClusterName('kubelet-restart');
const work = `/tmp/weft-${cluster}`;
let core: CoreV1Api;

const pause: V1Container = { name: 'c', image: 'registry.k8s.io/pause:3.10' };

function podSpec(name: string, node: string, spec: Partial<V1Pod['spec']>): V1Pod {
  return {
    metadata: { name },
    spec: { nodeName: node, containers: [pause], terminationGracePeriodSeconds: 30, ...spec },
  };
}

async function readPod(name: string): Promise<V1Pod> {
  return core.readNamespacedPod({ name, namespace: 'default' });
}

const ready = (p: V1Pod) => p.status?.conditions?.find((c) => c.type === 'Ready');

function containerProcess(name: string): ProcessRecord | undefined {
  const rec = readPodRecords(cluster).pods.find((p) => p.name === name);
  return rec?.processes.find((p) => p.role === `default/${name}/c`);
}

/** What must not change across the restart, per pod. */
interface Seen {
  uid: string;
  ip: string;
  netns?: string;
  pid: number;
  startedAt: string;
  containerID: string;
  readySince: string;
}

async function seen(name: string): Promise<Seen> {
  const p = await readPod(name);
  const cs = p.status?.containerStatuses?.[0];
  const proc = containerProcess(name);
  const rec = readPodRecords(cluster).pods.find((r) => r.name === name);
  return {
    uid: p.metadata?.uid ?? '',
    ip: p.status?.podIP ?? '',
    netns: rec?.netns,
    pid: proc?.pid ?? 0,
    startedAt: String(cs?.state?.running?.startedAt?.toISOString()),
    containerID: cs?.containerID ?? '',
    readySince: String(ready(p)?.lastTransitionTime?.toISOString()),
  };
}

beforeAll(async () => {
  mkdirSync(work, { recursive: true });
  await weftOk(['devcluster', 'up', '--name', cluster, '--nodes', '2', '--no-agent']);
  core = coreApi(cluster);
});

removeClusterAfterAll(cluster, { cleanup: () => rmSync(work, { recursive: true, force: true }) });

describe('devcluster daemon restart: the kubelets take over running pods', () => {
  it('keeps processes, IPs and Ready status, restarts what died meanwhile, and supervises on', async () => {
    const cp = `${cluster}-control-plane`;
    const worker = `${cluster}-worker`;
    const initMarker = join(work, 'init-runs');
    const termMarker = join(work, 'sigterm');
    await core.createNamespacedPod({
      namespace: 'default',
      body: podSpec('web', cp, {
        containers: [
          {
            name: 'c',
            image: AGNHOST,
            args: ['netexec', '--http-port=8080'],
            readinessProbe: { httpGet: { path: '/hostname', port: 8080 }, periodSeconds: 1 },
          },
        ],
      }),
    });
    await core.createNamespacedPod({
      namespace: 'default',
      body: podSpec('graceful', worker, {
        containers: [
          {
            name: 'c',
            image: 'shell',
            command: [
              'sh',
              '-c',
              `trap 'echo term > ${termMarker}; exit 0' TERM; while :; do sleep 0.2; done`,
            ],
          },
        ],
      }),
    });
    await core.createNamespacedPod({
      namespace: 'default',
      body: podSpec('with-init', cp, {
        initContainers: [
          { name: 'init', image: 'shell', command: ['sh', '-c', `echo ran >> ${initMarker}`] },
        ],
      }),
    });
    await core.createNamespacedPod({ namespace: 'default', body: podSpec('victim', worker, {}) });
    const pods = ['web', 'graceful', 'with-init', 'victim'];
    const before: Record<string, Seen> = {};
    for (const name of pods) {
      await waitFor(`${name} to be Ready`, async () => ready(await readPod(name))?.status === 'True');
      before[name] = await seen(name);
    }

    const daemon = readDaemonRecord(cluster);
    if (!daemon) throw new Error('no daemon record');
    const daemonProc = { pid: daemon.pid, startTime: daemon.startTime, role: 'daemon' };
    expect(signalRecorded(daemonProc, 'SIGTERM')).toBe(true);
    await waitFor('the daemon to exit', () => !isRunning(daemonProc), 15_000);
    for (const name of pods) expect(isRunning(containerProcess(name) as ProcessRecord), name).toBe(true);
    // The victim's container dies while no kubelet watches.
    const victimProc = containerProcess('victim') as ProcessRecord;
    expect(signalRecorded(victimProc, 'SIGKILL')).toBe(true);
    await waitFor('the victim container to end', () => !isRunning(victimProc), 5_000);

    const start = await weft(['devcluster', 'start', '--name', cluster]);
    expect(start.code, start.stderr).toBe(0);

    // Past the 5 s after which the old kubelet had recreated every sandbox.
    await new Promise((r) => setTimeout(r, 7_000));
    for (const name of ['web', 'graceful', 'with-init']) {
      const p = await readPod(name);
      expect(await seen(name), name).toEqual(before[name]);
      expect(isRunning(containerProcess(name) as ProcessRecord), name).toBe(true);
      expect(ready(p)?.status, name).toBe('True');
      expect(p.status?.containerStatuses?.[0]?.restartCount, name).toBe(0);
      expect(listNetns().has(before[name]?.netns ?? ''), name).toBe(true);
    }
    // The init container ran once; it is not run again for a pod taken over.
    expect(readFileSync(initMarker, 'utf8')).toBe('ran\n');
    const log = readFileSync(recordPaths(cluster).daemonLog, 'utf8');
    expect(log).not.toContain('creating the pod sandbox failed');

    // The victim restarted in its own sandbox: same IP, restartCount 1, an unknown exit.
    const victim = await waitFor('the victim to run again, Ready', async () => {
      const p = await readPod('victim');
      return p.status?.containerStatuses?.[0]?.restartCount === 1 && ready(p)?.status === 'True'
        ? p
        : undefined;
    });
    expect(victim.status?.podIP).toBe(before.victim?.ip);
    expect(victim.status?.containerStatuses?.[0]?.lastState?.terminated?.reason).toBe(
      'ContainerStatusUnknown',
    );
    expect(containerProcess('victim')?.pid).not.toBe(victimProc.pid);
    expect(isRunning(containerProcess('victim') as ProcessRecord)).toBe(true);

    // Supervision goes on: a taken-over container that exits now is restarted (init not rerun).
    const initPod = containerProcess('with-init') as ProcessRecord;
    expect(signalRecorded(initPod, 'SIGKILL')).toBe(true);
    await waitFor('with-init to restart its container', async () => {
      const p = await readPod('with-init');
      return p.status?.containerStatuses?.[0]?.restartCount === 1 && ready(p)?.status === 'True';
    });
    expect(readFileSync(initMarker, 'utf8')).toBe('ran\n');
    expect((await readPod('with-init')).status?.podIP).toBe(before['with-init']?.ip);

    // ... and a taken-over pod deleted now ends gracefully: SIGTERM, not the grace period's SIGKILL.
    const graceful = containerProcess('graceful') as ProcessRecord;
    const deletedAt = Date.now();
    await core.deleteNamespacedPod({ name: 'graceful', namespace: 'default' });
    await waitFor(
      'graceful to be gone',
      async () => {
        try {
          await readPod('graceful');
          return false;
        } catch {
          return true;
        }
      },
      25_000,
    );
    expect(Date.now() - deletedAt).toBeLessThan(20_000);
    expect(existsSync(termMarker)).toBe(true);
    expect(isRunning(graceful)).toBe(false);
    expect(listNetns().has(before.graceful?.netns ?? '')).toBe(false);
    expect(readPodRecords(cluster).pods.map((p) => p.name)).not.toContain('graceful');
  });
});
