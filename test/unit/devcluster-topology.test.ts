import { describe, expect, it } from 'vitest';
import { planAddresses } from '../../src/devcluster/address-plan.js';
import { cgroup2MountFrom } from '../../src/devcluster/cgroup2.js';
import {
  nodeSideCommands,
  podSideCommands,
  sandboxRecordFor,
  sandboxScript,
} from '../../src/devcluster/pod-sandbox.js';
import { parseStat } from '../../src/devcluster/process-record.js';
import { sandboxArgv } from '../../src/devcluster/sandbox-exec.js';
import {
  clusterRecordFor,
  conflictingNames,
  masqueradeRule,
  nodeNetworkCommands,
} from '../../src/devcluster/topology.js';

const plan = planAddresses({ nodeCount: 3, podCIDR: '10.244.0.0/16', serviceCIDR: '10.96.0.0/12', used: [] });
const rec = clusterRecordFor('dev', plan, '/sys/fs/cgroup/unified', new Date('2025-01-01T00:00:00Z'));

describe('cluster record', () => {
  it('lays out nodes, cgroups and pins from the plan', () => {
    expect(rec.nodes.map((n) => [n.name, n.netns, n.ip, n.podCIDR, n.cgroup, n.pinDir])).toEqual([
      [
        'dev-control-plane',
        'dev-control-plane',
        '172.18.0.2',
        '10.244.0.0/24',
        '/sys/fs/cgroup/unified/weft-devcluster/dev/dev-control-plane',
        '/sys/fs/bpf/weft/dev-control-plane',
      ],
      [
        'dev-worker',
        'dev-worker',
        '172.18.0.3',
        '10.244.1.0/24',
        '/sys/fs/cgroup/unified/weft-devcluster/dev/dev-worker',
        '/sys/fs/bpf/weft/dev-worker',
      ],
      [
        'dev-worker2',
        'dev-worker2',
        '172.18.0.4',
        '10.244.2.0/24',
        '/sys/fs/cgroup/unified/weft-devcluster/dev/dev-worker2',
        '/sys/fs/bpf/weft/dev-worker2',
      ],
    ]);
    expect(rec.daemonCgroup).toBe('/sys/fs/cgroup/unified/weft-devcluster/dev/daemon');
    expect(rec.phase).toBe('creating');
  });

  it('routes every other node’s pod CIDR via that node, and nothing else leaves', () => {
    const worker = rec.nodes[1]!;
    expect(nodeNetworkCommands(rec, worker)).toEqual([
      'link set lo up',
      'link set eth0 up',
      'address add 172.18.0.3/16 dev eth0',
      'address add 10.244.1.1/32 dev lo',
      'route add unreachable 10.244.0.0/16',
      'route add unreachable 10.96.0.0/12',
      'route add 10.244.0.0/24 via 172.18.0.2 dev eth0',
      'route add 10.244.2.0/24 via 172.18.0.4 dev eth0',
    ]);
  });

  it('masquerades only pod traffic that leaves the cluster’s pod network', () => {
    expect(masqueradeRule(rec, rec.nodes[0]!).join(' ')).toBe(
      '-w -t nat -A POSTROUTING -s 10.244.0.0/24 ! -d 10.244.0.0/16 -o eth0 -m comment --comment weft devcluster: pod traffic leaving the cluster -j MASQUERADE',
    );
  });

  it('finds names somebody else holds before creating anything', () => {
    expect(
      conflictingNames(rec, { netns: new Set(['dev-worker', 'other']), links: new Set([rec.bridge]) }),
    ).toEqual([`link ${rec.bridge}`, 'network namespace dev-worker']);
    expect(conflictingNames(rec, { netns: new Set(), links: new Set(['eth0']) })).toEqual([]);
  });
});

describe('pod sandbox', () => {
  const node = rec.nodes[1]!;
  const base = { cluster: 'dev', node, uid: 'uid-1', namespace: 'default', name: 'web', containers: ['c'] };

  it('gives a pod a /32, its node’s router as gateway, and a host route on the node', () => {
    const sandbox = sandboxRecordFor({ ...base, hostNetwork: false, ip: '10.244.1.5' });
    expect(sandbox).toMatchObject({
      hostNetwork: false,
      ip: '10.244.1.5',
      cgroup: `${node.cgroup}/poduid-1`,
    });
    expect(sandbox.veth).toMatch(/^lxc[0-9a-f]{12}$/);
    expect(podSideCommands(node, sandbox)).toEqual([
      'link set lo up',
      'link set eth0 up',
      'address add 10.244.1.5/32 dev eth0',
      'route add 10.244.1.1/32 dev eth0 scope link',
      'route add default via 10.244.1.1 dev eth0 src 10.244.1.5',
    ]);
    expect(nodeSideCommands(node, sandbox)).toEqual([
      `link set ${sandbox.veth} up`,
      `route add 10.244.1.5/32 dev ${sandbox.veth} scope link src 10.244.1.1`,
    ]);
  });

  it('builds the sandbox in one script: netns, veth straight into node and pod, then both sides', () => {
    const sandbox = sandboxRecordFor({ ...base, hostNetwork: false, ip: '10.244.1.5' });
    const script = sandboxScript(node, sandbox).split('\n');
    expect(script.slice(0, 4)).toEqual([
      'set -e',
      `ip netns add ${sandbox.netns}`,
      `ip link add ${sandbox.veth} netns dev-worker type veth peer name eth0 netns ${sandbox.netns}`,
      "ip -n dev-worker -batch - <<'NODE'",
    ]);
    expect(script).toContain(`ip -n ${sandbox.netns} -batch - <<'POD'`);
    expect(script.at(-1)).toBe('POD');
  });

  it('puts hostNetwork pods in the node’s netns and cgroup with the node IP', () => {
    expect(sandboxRecordFor({ ...base, hostNetwork: true })).toEqual({
      uid: 'uid-1',
      namespace: 'default',
      name: 'web',
      node: 'dev-worker',
      hostNetwork: true,
      ip: '172.18.0.3',
      cgroup: node.cgroup,
      containers: ['c'],
      processes: [],
    });
  });

  it('enters the cgroup before the namespace, and execs so the PID stays the command’s', () => {
    const argv = sandboxArgv('/cg/pod', '/run/netns/p', ['curl', '-s', 'http://x']);
    expect(argv.slice(0, 2)).toEqual(['sh', '-c']);
    expect(argv[2]).toMatch(/^echo \$\$ > "\$1\/cgroup\.procs" .*exec nsenter --net="\$ns" -- "\$@"$/);
    expect(argv.slice(3)).toEqual(['weft-sandbox', '/cg/pod', '/run/netns/p', 'curl', '-s', 'http://x']);
  });
});

describe('host facts', () => {
  it('finds the cgroup2 mount on a hybrid host', () => {
    const mounts = [
      'tmpfs /sys/fs/cgroup tmpfs rw 0 0',
      'cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0',
      'cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0',
    ].join('\n');
    expect(cgroup2MountFrom(mounts)).toBe('/sys/fs/cgroup/unified');
    expect(cgroup2MountFrom('cgroup2 /run/my\\040cg cgroup2 rw 0 0')).toBe('/run/my cg');
    expect(cgroup2MountFrom('proc /proc proc rw 0 0')).toBeUndefined();
  });

  it('reads a process start time even when its name has spaces and parentheses', () => {
    const stat = '4242 (node (my) app) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10';
    expect(parseStat(stat)).toEqual({ state: 'S', startTime: '987654' });
    expect(parseStat(stat.replace(') S ', ') Z '))).toEqual({ state: 'Z', startTime: '987654' });
    expect(parseStat('garbage')).toBeUndefined();
  });
});
