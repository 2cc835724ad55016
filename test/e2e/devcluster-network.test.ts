import { existsSync, readFileSync, rmSync } from 'node:fs';
import { readClusterRecord } from '../../src/devcluster/cluster-record.js';
import { NodeDaemonSupervisor } from '../../src/devcluster/node-daemons.js';
import { subsysLogger } from '../../src/shared/log.js';
import type { CoreV1Api, V1Pod } from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { weftCommand } from '../../src/shared/self.js';
import {
  coreApi,
  kubectl,
  uniqueClusterName,
  waitFor,
  weft,
  weftOk,
  AGNHOST,
  removeClusterAfterAll,
} from './devcluster-harness.js';

/**
 * A 2-node cluster: pods on both nodes reach each other by pod IP over TCP, UDP and HTTP, each
 * pod's processes sit in its node's cgroup, and `down` leaves nothing behind.
 */

const cluster = uniqueClusterName('net');
let core: CoreV1Api;
let nodeCIDR: string;
const pods: Record<string, V1Pod> = {};

function netexecPod(name: string, node: string): V1Pod {
  return {
    metadata: { name, namespace: 'default', labels: { app: 'netexec' } },
    spec: {
      nodeName: node,
      containers: [
        {
          name: 'agnhost',
          image: AGNHOST,
          args: ['netexec', '--http-port=8080', '--udp-port=8081'],
          readinessProbe: { httpGet: { path: '/healthz', port: 8080 as never }, periodSeconds: 1 },
        },
      ],
    },
  };
}

async function readyPod(name: string, namespace = 'default'): Promise<V1Pod> {
  return waitFor(`pod ${namespace}/${name} to be Ready`, async () => {
    const p = await core.readNamespacedPod({ name, namespace });
    return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? p : undefined;
  });
}

async function execIn(pod: string, command: string[]) {
  return weft(['devcluster', 'exec', '--name', cluster, pod, '--', ...command]);
}

beforeAll(async () => {
  await weftOk(['devcluster', 'up', '--name', cluster, '--nodes', '2']);
  core = coreApi(cluster);
  const status = JSON.parse(await weftOk(['devcluster', 'status', '--name', cluster, '-o', 'json']));
  nodeCIDR = status.networks.nodes;
  await core.createNamespacedPod({
    namespace: 'default',
    body: netexecPod('net-a', `${cluster}-control-plane`),
  });
  // One pod with kubectl apply, as a user would, and left to the scheduler's choice of node.
  const applied = await kubectl(
    cluster,
    ['apply', '-f', '-'],
    JSON.stringify({
      ...netexecPod('net-b', ''),
      apiVersion: 'v1',
      kind: 'Pod',
      spec: {
        ...netexecPod('net-b', '').spec,
        nodeName: undefined,
        nodeSelector: { 'kubernetes.io/hostname': `${cluster}-worker` },
      },
    }),
  );
  expect(applied.stderr).toBe('');
  expect(applied.stdout).toContain('pod/net-b created');
  pods.a = await readyPod('net-a');
  pods.b = await readyPod('net-b');
});

removeClusterAfterAll(cluster, { nodeCIDR: () => nodeCIDR });

describe('a 2-node devcluster', () => {
  it('has two Ready nodes, named and labelled like kind’s', async () => {
    const nodes = (await core.listNode()).items;
    expect(nodes.map((n) => n.metadata?.name).sort()).toEqual([
      `${cluster}-control-plane`,
      `${cluster}-worker`,
    ]);
    const cp = nodes.find((n) => n.metadata?.name === `${cluster}-control-plane`);
    expect(cp?.metadata?.labels).toMatchObject({
      'kubernetes.io/hostname': `${cluster}-control-plane`,
      'kubernetes.io/os': 'linux',
      'node-role.kubernetes.io/control-plane': '',
    });
    for (const n of nodes) {
      expect(n.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
      expect(n.status?.addresses?.find((a) => a.type === 'InternalIP')?.address).toMatch(
        /^\d+\.\d+\.0\.\d+$/,
      );
      expect(n.spec?.podCIDR).toMatch(/^10\.244\.\d+\.0\/24$/);
    }
    const leases = await kubectl(cluster, ['get', 'leases', '-n', 'kube-node-lease', '-o', 'json']);
    const held = JSON.parse(leases.stdout).items.map(
      (l: { spec: { holderIdentity: string } }) => l.spec.holderIdentity,
    );
    expect(held.sort()).toEqual([`${cluster}-control-plane`, `${cluster}-worker`]);
    const out = await kubectl(cluster, ['get', 'nodes']);
    expect(out.stdout).toMatch(new RegExp(`${cluster}-worker\\s+Ready`));
  });

  it('puts the pods on different nodes with IPs from their nodes’ pod CIDRs', async () => {
    const nodes = new Map((await core.listNode()).items.map((n) => [n.metadata?.name, n]));
    expect(pods.a?.spec?.nodeName).toBe(`${cluster}-control-plane`);
    expect(pods.b?.spec?.nodeName).toBe(`${cluster}-worker`);
    for (const p of [pods.a, pods.b]) {
      const node = nodes.get(p?.spec?.nodeName);
      const prefix = node?.spec?.podCIDR?.replace(/0\/24$/, '');
      expect(p?.status?.podIP?.startsWith(prefix ?? 'none')).toBe(true);
      expect(p?.status?.hostIP).toBe(node?.status?.addresses?.find((a) => a.type === 'InternalIP')?.address);
      expect(p?.status?.phase).toBe('Running');
    }
  });

  it('connects pod to pod across nodes over TCP', async () => {
    const connect = await execIn('default/net-a', [
      ...weftCommand(),
      'agnhost',
      'connect',
      `${pods.b?.status?.podIP}:8080`,
      '--timeout=5s',
    ]);
    expect(connect).toMatchObject({ code: 0, stderr: '' });
    // and a port nobody listens on is refused, not silently dropped
    const refused = await execIn('default/net-a', [
      ...weftCommand(),
      'agnhost',
      'connect',
      `${pods.b?.status?.podIP}:8099`,
      '--timeout=5s',
    ]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/REFUSED/);
  });

  it('answers HTTP pod to pod across nodes, from inside the client pod', async () => {
    const r = await execIn('default/net-a', [
      'curl',
      '-sS',
      '--max-time',
      '5',
      `http://${pods.b?.status?.podIP}:8080/hostname`,
    ]);
    expect(r).toMatchObject({ code: 0, stdout: 'net-b' });
    const back = await execIn('default/net-b', [
      'curl',
      '-sS',
      '--max-time',
      '5',
      `http://${pods.a?.status?.podIP}:8080/hostname`,
    ]);
    expect(back).toMatchObject({ code: 0, stdout: 'net-a' });
    // Between nodes too, the server sees the client pod's own IP (policy depends on it).
    const seen = await execIn('default/net-a', [
      'curl',
      '-sS',
      '--max-time',
      '5',
      `http://${pods.b?.status?.podIP}:8080/clientip`,
    ]);
    expect(seen.stdout.split(':')[0]).toBe(pods.a?.status?.podIP);
  });

  it('answers HTTP between two pods of the same node, through the node', async () => {
    await core.createNamespacedPod({
      namespace: 'default',
      body: netexecPod('net-c', `${cluster}-control-plane`),
    });
    const c = await readyPod('net-c');
    const r = await execIn('default/net-a', [
      'curl',
      '-sS',
      '--max-time',
      '5',
      `http://${c.status?.podIP}:8080/clientip`,
    ]);
    expect(r.code).toBe(0);
    // The server sees the client's own pod IP: no NAT between pods.
    expect(r.stdout.split(':')[0]).toBe(pods.a?.status?.podIP);
  });

  it('exchanges UDP datagrams pod to pod across nodes', async () => {
    const script = `const s=require('dgram').createSocket('udp4');s.on('message',m=>{process.stdout.write(String(m));process.exit(0)});s.send('hostname',8081,'${pods.b?.status?.podIP}');setTimeout(()=>process.exit(3),5000)`;
    const r = await execIn('default/net-a', [process.execPath, '-e', script]);
    expect(r).toMatchObject({ code: 0, stdout: 'net-b' });
  });

  it.each(['http', 'udp'])('dials the other pod over %s through agnhost /dial', async (protocol) => {
    const port = protocol === 'udp' ? 8081 : 8080;
    const url = `http://${pods.a?.status?.podIP}:8080/dial?request=hostname&protocol=${protocol}&host=${pods.b?.status?.podIP}&port=${port}&tries=1`;
    const r = await execIn('default/net-a', ['curl', '-sS', '--max-time', '10', url]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ responses: ['net-b'] });
  });

  it('passes the exec’d command’s exit code and stdin through', async () => {
    expect((await execIn('default/net-b', ['sh', '-c', 'exit 7'])).code).toBe(7);
    const r = await weft(['devcluster', 'exec', '--name', cluster, 'net-b', '--', 'cat'], {
      input: 'through stdin',
    });
    expect(r).toMatchObject({ code: 0, stdout: 'through stdin' });
  });

  it('runs exec’d commands in the pod’s network namespace, cgroup and environment', async () => {
    const r = await execIn('default/net-b', [
      'sh',
      '-c',
      'cat /proc/self/cgroup; ip -4 -o addr show dev eth0; echo "$POD_NAME $HOSTNAME"',
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      new RegExp(`^0::/weft-devcluster/${cluster}/${cluster}-worker/pod${pods.b?.metadata?.uid}$`, 'm'),
    );
    expect(r.stdout).toContain(`inet ${pods.b?.status?.podIP}/32`);
    expect(r.stdout).toContain('net-b net-b');
  });

  it('keeps every process of a pod in a child cgroup of its node’s cgroup', async () => {
    const status = JSON.parse(await weftOk(['devcluster', 'status', '--name', cluster, '-o', 'json']));
    const workerCgroup: string = status.nodes.find(
      (n: { name: string }) => n.name === `${cluster}-worker`,
    ).cgroup;
    const podCgroup = `${workerCgroup}/pod${pods.b?.metadata?.uid}`;
    const pids = readFileSync(`${podCgroup}/cgroup.procs`, 'utf8').trim().split('\n').filter(Boolean);
    expect(pids.length).toBeGreaterThan(0);
    for (const pid of pids) {
      expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toContain('agnhost');
    }
    // The node's own directory holds no pod processes of its own (only hostNetwork pods would).
    expect(readFileSync(`${workerCgroup}/cgroup.procs`, 'utf8').trim()).toBe('');
  });

  it('runs hostNetwork pods in the node’s netns and cgroup with the node IP', async () => {
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'host-net' },
        spec: {
          hostNetwork: true,
          nodeName: `${cluster}-worker`,
          containers: [
            { name: 'c', image: AGNHOST, args: ['netexec', '--http-port=18080', '--udp-port=-1'] },
          ],
        },
      },
    });
    const p = await readyPod('host-net');
    expect(p.status?.podIP).toBe(p.status?.hostIP);
    const r = await execIn('default/host-net', [
      'sh',
      '-c',
      'cat /proc/self/cgroup; ip -4 -o addr show dev eth0',
    ]);
    expect(r.stdout).toMatch(new RegExp(`^0::/weft-devcluster/${cluster}/${cluster}-worker$`, 'm'));
    expect(r.stdout).toContain(`inet ${p.status?.hostIP}/`);
    const fromPod = await execIn('default/net-a', [
      'curl',
      '-sS',
      '--max-time',
      '5',
      `http://${p.status?.podIP}:18080/hostname`,
    ]);
    expect(fromPod).toMatchObject({ code: 0, stdout: 'host-net' });
  });

  it('gives containers the downward API in their environment', async () => {
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'env', labels: { tier: 'gold' } },
        spec: {
          restartPolicy: 'Never',
          containers: [
            {
              name: 'c',
              image: 'busybox',
              command: ['sh', '-c', 'echo "$MY_IP $MY_NODE $MY_TIER"; sleep 3600'],
              env: [
                { name: 'MY_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
                { name: 'MY_NODE', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
                { name: 'MY_TIER', valueFrom: { fieldRef: { fieldPath: "metadata.labels['tier']" } } },
              ],
            },
          ],
        },
      },
    });
    const p = await readyPod('env');
    const r = await execIn('default/env', ['sh', '-c', 'echo "$MY_IP $MY_NODE $MY_TIER"']);
    expect(r.stdout.trim()).toBe(`${p.status?.podIP} ${p.spec?.nodeName} gold`);
  });

  it('runs node daemons in each node’s netns, in a child of its cgroup, with a kubeconfig that reaches the API', async () => {
    const rec = readClusterRecord(cluster);
    const out = `/tmp/weft-${cluster}-node-daemon`;
    const reports = new Map<string, string>();
    const supervisor = new NodeDaemonSupervisor({
      nodes: rec?.nodes ?? [],
      specs: [
        {
          name: 'probe',
          argv: (node) => [
            'sh',
            '-c',
            `{ grep '^0::' /proc/self/cgroup; ip -4 -o addr show dev eth0 | awk '{print $4}'; kubectl get node "$NODE_NAME" -o name; } > ${out}-${node.name}.tmp && mv ${out}-${node.name}.tmp ${out}-${node.name}; exec sleep 3600`,
          ],
        },
      ],
      internalKubeconfig: `/var/lib/weft/devcluster/${cluster}/kubeconfig-internal`,
      logsDir: `/var/lib/weft/devcluster/${cluster}/logs`,
      log: subsysLogger('test'),
      onProcessesChanged: () => {},
    });
    try {
      supervisor.start();
      for (const node of rec?.nodes ?? []) {
        reports.set(
          node.name,
          await waitFor(
            `node daemon on ${node.name}`,
            () => existsSync(`${out}-${node.name}`) && readFileSync(`${out}-${node.name}`, 'utf8'),
          ),
        );
        expect(reports.get(node.name)).toBe(
          `0::/weft-devcluster/${cluster}/${node.name}/weft-probe\n${node.ip}/16\nnode/${node.name}\n`,
        );
      }
    } finally {
      supervisor.terminate();
      for (const node of rec?.nodes ?? []) rmSync(`${out}-${node.name}`, { force: true });
    }
  });

  it('shows nodes, their weft agents, pods and the API endpoint in status', async () => {
    const table = await weftOk(['devcluster', 'status', '--name', cluster]);
    expect(table).toMatch(/API server:\s+https:\/\/127\.0\.0\.1:\d+/);
    expect(table).toMatch(new RegExp(`${cluster}-worker\\s+Ready`));
    const view = JSON.parse(await weftOk(['devcluster', 'status', '--name', cluster, '-o', 'json']));
    expect(view.nodes.map((n: { agent: string }) => n.agent)).toEqual(['Ready', 'Ready']);
    expect(table).toMatch(/default\s+net-b\s+1\/1\s+Running/);
    const list = JSON.parse(await weftOk(['devcluster', 'list', '-o', 'json']));
    expect(list).toContainEqual(expect.objectContaining({ name: cluster, state: 'Running', nodes: 2 }));
    const kubeconfig = (await weftOk(['devcluster', 'kubeconfig', '--name', cluster])).trim();
    expect(kubeconfig).toBe(`/var/lib/weft/devcluster/${cluster}/kubeconfig`);
  });

  it('refuses to create a cluster that exists, like kind', async () => {
    const r = await weft(['devcluster', 'up', '--name', cluster]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`a devcluster named "${cluster}" already exists`);
    expect((await core.listNode()).items).toHaveLength(2);
  });

  it('reports an unknown pod the way kubectl does', async () => {
    const r = await execIn('default/nope', ['true']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: pods "nope" not found/);
  });
});
