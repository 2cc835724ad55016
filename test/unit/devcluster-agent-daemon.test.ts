import { describe, expect, it } from 'vitest';
import { AGENT_NODE_FLAGS, parseAgentArgs } from '../../src/agent/config.js';
import type { NodeRecord } from '../../src/devcluster/cluster-record.js';
import { agentStateDir, daemonCgroupDir, weftAgentDaemon } from '../../src/devcluster/node-daemons.js';

const node: NodeRecord = {
  name: 'dev-worker',
  index: 1,
  netns: 'dev-worker',
  uplink: 'weftdev-n1',
  ip: '172.18.0.3',
  podCIDR: '10.244.1.0/24',
  routerIP: '10.244.1.1',
  cgroup: '/sys/fs/cgroup/weft-devcluster/dev/dev-worker',
  pinDir: '/sys/fs/bpf/weft/dev-worker',
};

describe('the devcluster node agent', () => {
  const spec = weftAgentDaemon(['/usr/bin/node', '/opt/weft/dist/src/cli/weft.js']);
  const argv = spec.argv(node, { kubeconfig: '/var/lib/weft/devcluster/dev/kubeconfig-internal' });

  it('is `weft agent` for the node, and its flags parse as the agent parses them', () => {
    const flags = AGENT_NODE_FLAGS.length;
    expect(argv.slice(0, 3 + flags)).toEqual([
      '/usr/bin/node',
      ...AGENT_NODE_FLAGS,
      '/opt/weft/dist/src/cli/weft.js',
      'agent',
    ]);
    const config = parseAgentArgs(argv.slice(3 + flags), {});
    if (config === 'help') throw new Error('help');
    expect(config.nodeName).toBe('dev-worker');
    expect(config.kubeconfig).toBe('/var/lib/weft/devcluster/dev/kubeconfig-internal');
    expect(config.cgroupRoot).toBe(node.cgroup);
    expect(config.devices).toEqual(['eth0']);
    expect(config.stateDir).toBe('/var/run/weft/dev-worker');
  });

  it("pins where `down` looks (the node's pin dir) and keeps its socket where the CLI looks", async () => {
    const { pinRootOf } = await import('../../src/agent/config.js');
    const config = parseAgentArgs(argv.slice(3 + AGENT_NODE_FLAGS.length), {});
    if (config === 'help') throw new Error('help');
    expect(pinRootOf(config)).toBe(node.pinDir);
    expect(agentStateDir('dev-worker')).toBe('/var/run/weft/dev-worker');
  });

  it("runs in its own child of the node's cgroup, under the node's socket load-balancer", () => {
    expect(daemonCgroupDir(node, spec)).toBe(`${node.cgroup}/weft-agent`);
  });
});
