// What the agent gives the NodePort programs, in the real kernel: attached to the --devices
// once the node's IPv4 address is known (and again when it changes), with that address as the
// SNAT source, and the set of this node's backends kept in weft_np4_local_backends. The devices
// are a veth pair in a network namespace of the test's own; everything is named
// weft-kt-agent-<pid> and removed in afterAll.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentDatapath, removeNodePins } from '../../src/agent/datapath.js';
import { ServiceCache } from '../../src/agent/services/cache.js';
import { Reconciler } from '../../src/agent/services/reconciler.js';
import { cgroup2Root, checkEnvironment } from '../../src/datapath/environment.js';
import { NodePortMaps } from '../../src/datapath/nodeport.js';
import { node, service, slice } from '../unit/agent-fixtures.js';

const tag = `weft-kt-agent-np-${process.pid}`;
const pinRoot = `/sys/fs/bpf/weft/${tag}`;
const netns = tag;
const work = `/tmp/${tag}`;
const log = pino({ level: 'silent' });
let cgroup = '';
let dp: AgentDatapath | undefined;

function sh(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
}

beforeAll(() => {
  checkEnvironment();
  cgroup = join(cgroup2Root(), tag);
  mkdirSync(cgroup, { recursive: true });
  sh(['netns', 'add', netns]);
  sh(['-n', netns, 'link', 'add', 'wkt0', 'type', 'veth', 'peer', 'name', 'wkt1']);
  for (const dev of ['lo', 'wkt0', 'wkt1']) sh(['-n', netns, 'link', 'set', dev, 'up']);
  sh(['-n', netns, 'addr', 'add', '10.250.0.2/24', 'dev', 'wkt0']);
});

afterAll(() => {
  dp?.close();
  spawnSync('ip', ['netns', 'del', netns]);
  if (existsSync(pinRoot)) removeNodePins(pinRoot);
  rmSync(work, { recursive: true, force: true });
  if (cgroup && existsSync(cgroup)) rmdirSync(cgroup);
});

describe('NodePort programs driven by the agent', () => {
  it('wait for the node address, then attach to every device; a missing device is reported', () => {
    dp = AgentDatapath.open({
      pinRoot,
      cgroup,
      mapMax: 64,
      devices: ['wkt0', 'nosuchdev'],
      nodePortNetns: `/run/netns/${netns}`,
      stateDir: work,
      log,
    });
    expect(dp.nodePortStatus()).toMatchObject({
      enabled: true,
      waiting: "the node's IPv4 InternalIP is not known yet",
      devices: [
        { device: 'wkt0', attached: false },
        { device: 'nosuchdev', attached: false },
      ],
    });
    dp.ensureNodePort('10.250.0.2');
    const status = dp.nodePortStatus();
    expect(status.nodeIPv4).toBe('10.250.0.2');
    expect(status.waiting).toBeUndefined();
    expect(status.devices[0]).toMatchObject({ device: 'wkt0', attached: true });
    expect(status.devices[0]?.ingressProgramId).toBeGreaterThan(0);
    expect(status.devices[1]).toMatchObject({
      device: 'nosuchdev',
      attached: false,
      error: expect.stringMatching(/nosuchdev/),
    });
    const maps = NodePortMaps.openPinned(pinRoot);
    try {
      expect(maps.configs().map((c) => c.node_ipv4)).toEqual(['10.250.0.2']);
    } finally {
      maps.close();
    }
  });

  it("the node's backends (IPv4, this node only) reach weft_np4_local_backends, and follow changes", () => {
    const cache = new ServiceCache();
    const reconciler = new Reconciler({ nodeName: 'node-a', cache, lb: dp!.lb, log });
    reconciler.restore(dp!.readBack());
    cache.upsert('Node', node('node-a', ['10.250.0.2']));
    cache.upsert(
      'Service',
      service('np', {
        type: 'NodePort',
        ports: [{ port: 80, nodePort: 30080 }],
        externalTrafficPolicy: 'Local',
      }),
    );
    cache.upsert(
      'EndpointSlice',
      slice('np-1', 'np', [
        { ip: '10.244.0.5', node: 'node-a' },
        { ip: '10.244.0.6', node: 'node-a' },
        { ip: '10.244.1.5', node: 'node-b' },
      ]),
    );
    reconciler.sync(true);
    const write = () => {
      const { addresses, changed } = reconciler.localIPv4Backends();
      if (changed) dp!.setLocalBackends(addresses);
    };
    write();
    const read = () => {
      const maps = NodePortMaps.openPinned(pinRoot);
      try {
        return maps.localBackendAddresses();
      } finally {
        maps.close();
      }
    };
    expect(read()).toEqual(['10.244.0.5', '10.244.0.6']);
    cache.upsert(
      'EndpointSlice',
      slice('np-1', 'np', [
        { ip: '10.244.0.6', node: 'node-a' },
        { ip: '10.244.1.5', node: 'node-b' },
      ]),
    );
    reconciler.sync(false);
    write();
    expect(read()).toEqual(['10.244.0.6']);
    // The EXT scope of the NodePort frontend lists the local backend only (externalTrafficPolicy Local).
    const f = dp!.lb.frontends().find((x) => x.address === '10.250.0.2');
    expect(f?.backends.map((id) => dp!.lb.backend(id)?.address)).toEqual(['10.244.0.6']);
    expect(f?.internalBackends?.map((id) => dp!.lb.backend(id)?.address).sort()).toEqual([
      '10.244.0.6',
      '10.244.1.5',
    ]);
  });

  it('a new node address re-attaches with it', () => {
    dp!.ensureNodePort('10.250.0.3');
    expect(dp!.nodePortStatus()).toMatchObject({
      nodeIPv4: '10.250.0.3',
      devices: [{ device: 'wkt0', attached: true }, {}],
    });
    const maps = NodePortMaps.openPinned(pinRoot);
    try {
      expect(maps.configs().map((c) => c.node_ipv4)).toEqual(['10.250.0.3']);
    } finally {
      maps.close();
    }
  });
});
