import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { BpfLbResponse, ServiceEntry, StatusResponse } from '../../src/agent/api/types.js';
import {
  agentGet,
  parseAgentCommand,
  resolveAgentSocket,
  shortDuration,
} from '../../src/cli/agent-client.js';
import { lbServicesTable } from '../../src/cli/bpf.js';
import { serviceTable } from '../../src/cli/service.js';
import { statusExitCode, statusText } from '../../src/cli/status.js';

const dir = mkdtempSync(join(tmpdir(), 'weft-agent-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('finding the agent', () => {
  it('--state-dir and --node name the socket directly', () => {
    expect(resolveAgentSocket({ stateDir: '/run/x' })).toEqual({ socket: '/run/x/agent.sock' });
    expect(resolveAgentSocket({ node: 'n1' }, '/var/run/weft')).toEqual({
      socket: '/var/run/weft/n1/agent.sock',
      node: 'n1',
    });
  });

  it('with neither, the only agent on the machine is found; none or several is a clear error', () => {
    const run = join(dir, 'run');
    expect(() => resolveAgentSocket({}, run)).toThrow(
      /no weft agent runs on this machine.*weft agent --node-name/,
    );
    mkdirSync(join(run, 'a'), { recursive: true });
    writeFileSync(join(run, 'a', 'agent.sock'), '');
    mkdirSync(join(run, 'stale'), { recursive: true }); // a state dir without a socket
    expect(resolveAgentSocket({}, run)).toEqual({ socket: join(run, 'a', 'agent.sock'), node: 'a' });
    mkdirSync(join(run, 'b'), { recursive: true });
    writeFileSync(join(run, 'b', 'agent.sock'), '');
    expect(() => resolveAgentSocket({}, run)).toThrow(
      /2 agents run on this machine \(nodes a, b\); pick one with --node/,
    );
  });

  it('an agent that is not there: the error says what to do', async () => {
    await expect(
      agentGet({ socket: join(dir, 'none.sock'), node: 'n1' }, '/v1/status'),
    ).rejects.toMatchObject({
      code: 'WEFT_ERR_AGENT_UNREACHABLE',
      message: expect.stringMatching(
        /cannot reach the weft agent of node n1: no socket at .*; start one with: weft agent/,
      ),
    });
  });

  it.each([
    [['--bogus'], /unknown flag: --bogus\nRun 'weft status --help' for usage\./],
    [['-o', 'yaml'], /allowed formats are: table,json/],
    [['--node'], /--node/],
    [['--node', ''], /--node needs a node name/],
  ])('flags %j are refused', (args, message) => {
    expect(() => parseAgentCommand('weft status', args)).toThrow(message);
  });

  it('-h wins over everything else', () => {
    expect(parseAgentCommand('weft status', ['-o', 'json', '-h'])).toEqual({ help: true });
  });
});

const services: ServiceEntry[] = [
  {
    id: 1,
    frontend: { address: '10.96.0.10', port: 53, protocol: 'UDP' },
    type: 'ClusterIP',
    service: { namespace: 'kube-system', name: 'kube-dns', port: 'dns' },
    trafficPolicy: { external: 'Cluster', internal: 'Cluster' },
    backends: [
      { id: 4, address: '10.244.1.2', port: 53, protocol: 'UDP', state: 'active' },
      { id: 7, address: '10.244.2.2', port: 53, protocol: 'UDP', state: 'terminating' },
    ],
  },
  {
    id: 2,
    frontend: { address: 'fd00::30', port: 30080, protocol: 'TCP' },
    type: 'NodePort',
    service: { namespace: 'default', name: 'web', port: '' },
    trafficPolicy: { external: 'Local', internal: 'Cluster' },
    affinityTimeoutSeconds: 60,
    backends: [],
    internalBackends: [{ id: 9, address: 'fd00:244::2', port: 8080, protocol: 'TCP', state: 'active' }],
  },
];

describe('tables', () => {
  it('weft service list: one line per backend, in-cluster scope marked /i, refusal spelled out', () => {
    const lines = serviceTable(services).split('\n');
    expect(lines[0]).toMatch(/^ID\s+FRONTEND\s+SERVICE TYPE\s+BACKEND\s+SERVICE$/);
    expect(lines[1]).toMatch(
      /^1\s+10\.96\.0\.10:53\/UDP\s+ClusterIP\s+1 => 10\.244\.1\.2:53\/UDP \(active\)\s+kube-system\/kube-dns$/,
    );
    expect(lines[2]).toMatch(/^\s+2 => 10\.244\.2\.2:53\/UDP \(terminating\)$/);
    expect(lines[3]).toMatch(
      /^2\s+\[fd00::30\]:30080\/TCP\s+NodePort, affinity, eTP=Local\s+\(no backends: refused\)\s+default\/web$/,
    );
    expect(lines[4]).toMatch(
      /^2\s+\[fd00::30\]:30080\/TCP\/i\s+NodePort, .*1 => \[fd00:244::2\]:8080\/TCP \(active\)/,
    );
    expect(lines).toHaveLength(5);
  });

  it('weft bpf lb list: masters as 0.0.0.0:0 with count and flags, slots with their backends', () => {
    const lb: BpfLbResponse = {
      services: [
        {
          key: { address: '10.96.0.10', port: 53, protocol: 'UDP', slot: 0, scope: 'external' },
          value: { backendId: 0, count: 1, revNatIndex: 1, flags: 0, flags2: 0 },
        },
        {
          key: { address: '10.96.0.10', port: 53, protocol: 'UDP', slot: 1, scope: 'external' },
          value: { backendId: 4, count: 0, revNatIndex: 1, flags: 0, flags2: 0 },
        },
        {
          key: { address: '172.30.0.2', port: 30080, protocol: 'TCP', slot: 0, scope: 'internal' },
          value: { backendId: 60, count: 1, revNatIndex: 2, flags: 0b11010, flags2: 2 },
        },
        {
          key: { address: '172.30.0.2', port: 30080, protocol: 'TCP', slot: 1, scope: 'internal' },
          value: { backendId: 99, count: 0, revNatIndex: 2, flags: 0, flags2: 0 },
        },
      ],
      backends: [{ id: 4, address: '10.244.1.2', port: 53, protocol: 'UDP', state: 'active' }],
      reverseNat: [],
    };
    const lines = lbServicesTable(lb).split('\n');
    expect(lines[0]).toMatch(/^SERVICE ADDRESS\s+BACKEND ADDRESS \(REVNAT_ID\) \(SLOT\)$/);
    expect(lines[1]).toMatch(
      /^10\.96\.0\.10:53\/UDP \(0\)\s+0\.0\.0\.0:0 \(1\) \(0\) \[ClusterIP\] count 1$/,
    );
    expect(lines[2]).toMatch(/^10\.96\.0\.10:53\/UDP \(1\)\s+10\.244\.1\.2:53\/UDP \(1\) \(1\)$/);
    expect(lines[3]).toMatch(
      /^172\.30\.0\.2:30080\/TCP\/i \(0\)\s+0\.0\.0\.0:0 \(2\) \(0\) \[NodePort, affinity, eTP=Local, two-scopes, timeout 60s\] count 1$/,
    );
    expect(lines[4]).toMatch(/backend 99 missing \(2\) \(1\)$/);
  });

  it('weft status: health, API connectivity, syncs, attachments, map pressure and problems', () => {
    const now = Date.parse('2026-01-01T00:10:00Z');
    const status: StatusResponse = {
      node: 'n1',
      version: '0.1.0',
      pid: 42,
      startedAt: '2026-01-01T00:00:00Z',
      uptimeSeconds: 600,
      restarts: 2,
      ready: true,
      health: 'Degraded',
      problems: ['Service default/big not applied: LB map weft_lb4_services is full'],
      kubernetes: {
        server: 'https://10.0.0.1:6443',
        configSource: 'in-cluster',
        connected: false,
        resources: [
          {
            kind: 'Service',
            path: '/api/v1/services',
            synced: true,
            connected: false,
            objects: 3,
            reconnects: 1,
            lastError: 'connect ECONNREFUSED',
          },
        ],
      },
      sync: {
        count: 5,
        pending: 0,
        failedServices: [
          { service: 'default/big', code: 'WEFT_ERR_MAP_FULL', error: 'full', since: now, attempts: 3 },
        ],
        last: {
          kind: 'incremental',
          startedAt: now - 2000,
          durationSeconds: 0.0012,
          services: 1,
          frontendsWritten: 1,
          frontendsDeleted: 0,
          backendsWritten: 1,
          backendsDeleted: 0,
          failed: 1,
        },
      },
      invalidObjects: [],
      maps: [{ name: 'weft_lb4_services', entries: 16, capacity: 16, pressure: 1 }],
      socketLb: { attached: true, cgroup: '/sys/fs/cgroup', programs: [], stats: { translated: 10 } },
      nodePort: { enabled: false, devices: [], waiting: 'no --devices given' },
      paths: {
        pinRoot: '/sys/fs/bpf/weft/n1',
        stateDir: '/var/run/weft/n1',
        socket: '/var/run/weft/n1/agent.sock',
      },
    };
    const text = statusText(status, now);
    expect(text).toMatch(/^Agent:\s+Degraded\s+weft 0\.1\.0 on node n1 \(pid 42, up 10m, restarts 2\)$/m);
    expect(text).toMatch(/^Kubernetes:\s+Disconnected\s+https:\/\/10\.0\.0\.1:6443 \(config: in-cluster\)$/m);
    expect(text).toMatch(
      /^ {2}Service\s+synced, disconnected: connect ECONNREFUSED, 3 objects, 1 reconnects$/m,
    );
    expect(text).toMatch(/^Last sync:\s+incremental, 2s ago, took 1\.20ms: 1 Services, .*1 failed$/m);
    expect(text).toMatch(/^Last full sync:\s+none yet$/m);
    expect(text).toMatch(/^Failed Services:\s+default\/big \(WEFT_ERR_MAP_FULL, 3 attempts\)$/m);
    expect(text).toMatch(
      /^Socket LB:\s+attached to \/sys\/fs\/cgroup \(0 programs\); 10 translated, 0 refused$/m,
    );
    expect(text).toMatch(/^NodePort:\s+disabled \(no --devices given\)$/m);
    expect(text).toMatch(/^ {2}weft_lb4_services\s+16\s+16\s+100\.0%$/m);
    expect(text).toMatch(/^Problems:\n {2}- Service default\/big not applied/m);
  });

  it.each([
    [5, '5s'],
    [65, '1m5s'],
    [3600, '1h'],
    [3720, '1h2m'],
    [90000, '1d1h'],
  ])('%d s reads %s', (s, text) => {
    expect(shortDuration(s)).toBe(text);
  });
});

describe('weft status exit code', () => {
  it('is 0 only for a healthy agent, as cilium status', () => {
    expect(statusExitCode({ health: 'Ok' })).toBe(0);
    expect(statusExitCode({ health: 'Degraded' })).toBe(1);
    expect(statusExitCode({ health: 'Starting' })).toBe(1);
  });
});
