// devcluster: `weft devcluster up` with 2 nodes, then 100 agnhost netexec pods (tcpSocket
// readiness probes) until every one is Ready, then `down`. The peer, in the same run, is the
// floor of the same work without Kubernetes: 100 network namespaces with a veth each into a
// node namespace, addressed by `ip -batch`, and the same 100 `weft agnhost netexec` processes
// started with nsenter, until each has printed that it listens. Goal: up + 100 pods Ready < 30 s.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { weftCommand } from '../src/shared/self.js';
import { fmt, report } from './report.js';

const PODS = Number(process.env.WEFT_BENCH_PODS ?? 100);
const CREATE_CONCURRENCY = 20;
const GOAL_SECONDS = 30;
const run = promisify(execFile);
const tag = `${process.pid.toString(36)}${Date.now().toString(36).slice(-3)}`;
const cluster = `bench-${tag}`;
const weft = weftCommand();

const seconds = (fromMs: number) => (performance.now() - fromMs) / 1000;

async function weftCli(args: string[]): Promise<void> {
  await run(weft[0], [weft[1], ...args], { maxBuffer: 16 * 1024 * 1024 });
}

function agnhostPod(i: number): V1Pod {
  return {
    metadata: { name: `netexec-${i}`, labels: { app: 'bench' } },
    spec: {
      containers: [
        {
          name: 'agnhost',
          image: 'registry.k8s.io/e2e-test-images/agnhost:2.53',
          args: ['netexec', '--http-port=8080', '--udp-port=-1'],
          readinessProbe: { tcpSocket: { port: 8080 as never }, periodSeconds: 1 },
        },
      ],
    },
  };
}

async function measureDevcluster() {
  const tUp = performance.now();
  await weftCli(['devcluster', 'up', '--name', cluster, '--nodes', '2']);
  const upSeconds = seconds(tUp);
  const kc = new KubeConfig();
  kc.loadFromFile(`/var/lib/weft/devcluster/${cluster}/kubeconfig`);
  const core = kc.makeApiClient(CoreV1Api);

  const tPods = performance.now();
  for (let i = 0; i < PODS; i += CREATE_CONCURRENCY) {
    const batch = Array.from({ length: Math.min(CREATE_CONCURRENCY, PODS - i) }, (_, j) => i + j);
    await Promise.all(
      batch.map((n) => core.createNamespacedPod({ namespace: 'default', body: agnhostPod(n) })),
    );
  }
  const createdSeconds = seconds(tPods);
  let ready = 0;
  const perNode = new Map<string, number>();
  for (;;) {
    const list = await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=bench' });
    ready = list.items.filter((p) =>
      p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
    ).length;
    if (ready === PODS) {
      for (const p of list.items)
        perNode.set(p.spec?.nodeName ?? '', (perNode.get(p.spec?.nodeName ?? '') ?? 0) + 1);
      break;
    }
    if (seconds(tPods) > 300) throw new Error(`only ${ready}/${PODS} pods Ready after 300 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const podsReadySeconds = seconds(tPods);
  const tDown = performance.now();
  await weftCli(['devcluster', 'down', '--name', cluster]);
  const downSeconds = seconds(tDown);
  return { upSeconds, createdSeconds, podsReadySeconds, downSeconds, perNode: Object.fromEntries(perNode) };
}

/** The peer: the same namespaces and processes, made directly, no API server or kubelet. */
async function measureRawFloor() {
  const nodeNs = `wbench-${tag}-n`;
  const podNs = Array.from({ length: PODS }, (_, i) => `wbench-${tag}-p${i}`);
  const children: ChildProcess[] = [];
  const t0 = performance.now();
  try {
    await batch(undefined, [`netns add ${nodeNs}`, ...podNs.map((n) => `netns add ${n}`)]);
    await batch(nodeNs, [
      'link set lo up',
      'address add 10.250.0.1/32 dev lo',
      ...podNs.flatMap((n, i) => [
        `link add rb${tag}${i} type veth peer name eth0 netns ${n}`,
        `link set rb${tag}${i} up`,
        `route add 10.250.${1 + (i >> 8)}.${i & 255}/32 dev rb${tag}${i}`,
      ]),
    ]);
    await Promise.all(
      podNs.map((n, i) =>
        batch(n, [
          'link set lo up',
          'link set eth0 up',
          `address add 10.250.${1 + (i >> 8)}.${i & 255}/32 dev eth0`,
          'route add 10.250.0.1/32 dev eth0 scope link',
          'route add default via 10.250.0.1 dev eth0',
        ]),
      ),
    );
    const networkSeconds = seconds(t0);
    await Promise.all(
      podNs.map(
        (n) =>
          new Promise<void>((resolve, reject) => {
            const child = spawn(
              'nsenter',
              [
                `--net=/run/netns/${n}`,
                '--',
                ...weft,
                'agnhost',
                'netexec',
                '--http-port=8080',
                '--udp-port=-1',
              ],
              { stdio: ['ignore', 'pipe', 'pipe'] },
            );
            children.push(child);
            const onLine = (line: string) => {
              if (line.includes('Started HTTP server')) resolve();
            };
            createInterface({ input: child.stdout! }).on('line', onLine);
            createInterface({ input: child.stderr! }).on('line', onLine);
            child.once('exit', (code) => reject(new Error(`agnhost in ${n} exited ${code}`)));
          }),
      ),
    );
    return { networkSeconds, totalSeconds: seconds(t0) };
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await batch(undefined, [...podNs.map((n) => `netns delete ${n}`), `netns delete ${nodeNs}`], true).catch(
      () => {},
    );
  }
}

async function batch(netns: string | undefined, lines: string[], force = false): Promise<void> {
  const args = [...(netns ? ['-n', netns] : []), ...(force ? ['-force'] : []), '-batch', '-'];
  await new Promise<void>((resolve, reject) => {
    const child = execFile('ip', args, (err) => (err ? reject(err) : resolve()));
    child.stdin?.end(`${lines.join('\n')}\n`);
  });
}

async function main() {
  let dev: Awaited<ReturnType<typeof measureDevcluster>>;
  try {
    dev = await measureDevcluster();
  } finally {
    await weftCli(['devcluster', 'down', '--name', cluster]).catch(() => {});
  }
  const raw = await measureRawFloor();
  const total = dev.upSeconds + dev.podsReadySeconds;
  report(
    'devcluster',
    {
      pods: PODS,
      nodes: 2,
      up_seconds: dev.upSeconds,
      pods_created_seconds: dev.createdSeconds,
      pods_ready_seconds: dev.podsReadySeconds,
      up_plus_pods_ready_seconds: total,
      down_seconds: dev.downSeconds,
      pods_per_node: dev.perNode,
      goal_seconds: GOAL_SECONDS,
      goal_met: total < GOAL_SECONDS,
      peer: {
        name: 'raw namespaces + processes, no Kubernetes',
        network_seconds: raw.networkSeconds,
        total_seconds: raw.totalSeconds,
      },
      ratio_pods_ready_to_raw: dev.podsReadySeconds / raw.totalSeconds,
    },
    {
      headers: ['what', 'seconds', 'vs raw floor'],
      rows: [
        ['devcluster up (2 nodes)', fmt(dev.upSeconds), ''],
        [`${PODS} pods created (API)`, fmt(dev.createdSeconds), ''],
        [`${PODS} pods Ready`, fmt(dev.podsReadySeconds), `${fmt(dev.podsReadySeconds / raw.totalSeconds)}x`],
        [
          'up + pods Ready',
          fmt(total),
          total < GOAL_SECONDS ? `goal < ${GOAL_SECONDS}s met` : `goal < ${GOAL_SECONDS}s MISSED`,
        ],
        ['devcluster down', fmt(dev.downSeconds), ''],
        [`raw floor: ${PODS} netns + processes`, fmt(raw.totalSeconds), '1.00x'],
      ],
    },
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`bench devcluster failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
