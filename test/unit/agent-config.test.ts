import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { parseServeAddress } from '../../src/agent/api/server.js';
import { AGENT_NODE_FLAGS, parseAgentArgs, pinRootOf } from '../../src/agent/config.js';
import { lbSizesFor } from '../../src/agent/datapath.js';

describe('weft agent flags', () => {
  it('defaults: pins, state dir and metrics address follow the node name', () => {
    const c = parseAgentArgs(['--node-name', 'kind-worker'], {});
    expect(c).toEqual({
      nodeName: 'kind-worker',
      bpfRoot: '/sys/fs/bpf',
      devices: [],
      stateDir: '/var/run/weft/kind-worker',
      lbMapMax: 65536,
      logLevel: 'info',
      metricsAddress: { host: '0.0.0.0', port: 9962 },
    });
    expect(c !== 'help' && pinRootOf(c)).toBe('/sys/fs/bpf/weft/kind-worker');
  });

  it('every flag, in both --flag value and --flag=value forms', () => {
    const c = parseAgentArgs(
      [
        '--node-name=n1',
        '--kubeconfig',
        '/etc/kubeconfig',
        '--bpf-root=/run/bpf/',
        '--cgroup-root',
        '/sys/fs/cgroup/node1',
        '--devices=eth0,eth1',
        '--devices',
        'eth2',
        '--state-dir',
        '/run/weft-n1',
        '--prometheus-serve-addr=127.0.0.1:19962',
        '--bpf-lb-map-max',
        '128',
        '--log-level',
        'debug',
      ],
      {},
    );
    expect(c).toEqual({
      nodeName: 'n1',
      kubeconfig: '/etc/kubeconfig',
      bpfRoot: '/run/bpf',
      cgroupRoot: '/sys/fs/cgroup/node1',
      devices: ['eth0', 'eth1', 'eth2'],
      stateDir: '/run/weft-n1',
      metricsAddress: { host: '127.0.0.1', port: 19962 },
      lbMapMax: 128,
      logLevel: 'debug',
    });
  });

  it('the node name can come from NODE_NAME or K8S_NODE_NAME, as in a DaemonSet', () => {
    expect(parseAgentArgs([], { NODE_NAME: 'a' })).toMatchObject({ nodeName: 'a' });
    expect(parseAgentArgs([], { K8S_NODE_NAME: 'b' })).toMatchObject({ nodeName: 'b' });
    expect(parseAgentArgs(['--node-name', 'c'], { NODE_NAME: 'a' })).toMatchObject({ nodeName: 'c' });
  });

  it('an empty --prometheus-serve-addr disables the metrics server', () => {
    expect(parseAgentArgs(['--node-name', 'n', '--prometheus-serve-addr='], {})).not.toHaveProperty(
      'metricsAddress',
    );
  });

  it('-h and --help ask for the usage', () => {
    expect(parseAgentArgs(['-h'], {})).toBe('help');
    expect(parseAgentArgs(['--help'], {})).toBe('help');
  });

  const errors: Array<[string[], RegExp]> = [
    [[], /--node-name is required \(or set NODE_NAME\)/],
    [['--node-name', 'Node_1'], /--node-name "Node_1" is not a valid node name/],
    [['--node-name', 'n', '--bogus'], /unknown flag: --bogus/],
    [['--node-name', 'n', 'extra'], /unexpected argument "extra"/],
    [['--node-name'], /--node-name/],
    [
      ['--node-name', 'n', '--bpf-root', 'relative/dir'],
      /--bpf-root "relative\/dir" must be an absolute path/,
    ],
    [['--node-name', 'n', '--state-dir', ''], /--state-dir "" must be an absolute path/],
    [['--node-name', 'n', '--cgroup-root', 'cg'], /--cgroup-root "cg" must be an absolute path/],
    [['--node-name', 'n', '--devices', 'a/b'], /--devices: "a\/b" is not an interface name/],
    [['--node-name', 'n', '--devices', 'averyveryverylongname'], /is not an interface name/],
    [
      ['--node-name', 'n', '--bpf-lb-map-max', '0'],
      /--bpf-lb-map-max "0" must be an integer from 1 to 4194304/,
    ],
    [['--node-name', 'n', '--bpf-lb-map-max', '1e3'], /--bpf-lb-map-max "1e3" must be an integer/],
    [['--node-name', 'n', '--bpf-lb-map-max', '99999999'], /must be an integer from 1 to 4194304/],
    [['--node-name', 'n', '--log-level', 'loud'], /--log-level "loud" must be one of trace, debug, info/],
    [
      ['--node-name', 'n', '--prometheus-serve-addr', '9962'],
      /--prometheus-serve-addr "9962" is not \[host\]:port/,
    ],
    [['--node-name', 'n', '--prometheus-serve-addr', ':99999'], /is not \[host\]:port/],
    [['--node-name', 'n', '--kubeconfig='], /--kubeconfig needs a file/],
  ];
  it.each(errors)('%j is refused with a clear message', (args, message) => {
    let error: unknown;
    try {
      parseAgentArgs(args, {});
    } catch (err) {
      error = err;
    }
    expect(error).toMatchObject({ code: 'WEFT_ERR_USAGE', message: expect.stringMatching(message) });
    expect((error as Error).message).toMatch(/Run 'weft agent --help' for usage\./);
  });

  it.each([
    [':9962', { host: '0.0.0.0', port: 9962 }],
    ['127.0.0.1:9', { host: '127.0.0.1', port: 9 }],
    ['[::1]:9962', { host: '::1', port: 9962 }],
    ['localhost:80', { host: 'localhost', port: 80 }],
  ])('serve address %s', (text, want) => {
    expect(parseServeAddress(text)).toEqual(want);
  });

  it('--bpf-lb-map-max sizes every LB map, the services map four times over', () => {
    expect(lbSizesFor(65536)).toEqual({
      services: 262144,
      backends: 65536,
      reverseNat: 65536,
      sockRevnat: 65536,
      affinity: 65536,
    });
  });
});

describe("the agent's V8 flags", () => {
  // Keeps 150,000 objects (the young generation's survivors during a first sync) and reports
  // how big V8 let its new space grow.
  const probe = `
    const keep = [];
    for (let i = 0; i < 150000; i++) keep.push({ i, s: 'x' + i });
    const v8 = require('node:v8');
    const s = v8.getHeapSpaceStatistics().find((x) => x.space_name === 'new_space');
    console.log(s.space_size / 2 ** 20, keep.length);`;
  const newSpaceMiB = (argv: string[], env: NodeJS.ProcessEnv) =>
    Number(execFileSync(process.execPath, [...argv, '-e', probe], { env, encoding: 'utf8' }).split(' ')[0]);

  it('keep the new space at its smallest, on the command line and in NODE_OPTIONS', () => {
    const { NODE_OPTIONS: _, ...env } = process.env;
    expect(newSpaceMiB([], env)).toBeGreaterThanOrEqual(8);
    expect(newSpaceMiB([...AGENT_NODE_FLAGS], env)).toBeLessThanOrEqual(2);
    expect(newSpaceMiB([], { ...env, NODE_OPTIONS: AGENT_NODE_FLAGS.join(' ') })).toBeLessThanOrEqual(2);
  });
});
