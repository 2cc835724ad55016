import type { V1Container } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { probeAction, resolvePort } from '../../src/devcluster/kubelet/probe-worker.js';

const container: V1Container = {
  name: 'web',
  ports: [{ name: 'http', containerPort: 8080 }, { containerPort: 9090 }],
};

describe('probes', () => {
  it.each<[unknown, number | undefined]>([
    [8080, 8080],
    ['8080', 8080],
    ['http', 8080],
    ['grpc', undefined],
    [0, undefined],
    [70000, undefined],
    [null, undefined],
  ])('port %j resolves to %s', (port, expected) => {
    expect(resolvePort(port, container)).toBe(expected);
  });

  it('sends httpGet probes to the pod IP unless a host is given', () => {
    expect(
      probeAction(
        { httpGet: { path: '/healthz', port: 'http' as never }, timeoutSeconds: 2 },
        container,
        '10.244.0.5',
      ),
    ).toEqual({
      network: {
        kind: 'http',
        host: '10.244.0.5',
        port: 8080,
        path: '/healthz',
        scheme: 'HTTP',
        headers: [],
        timeoutMs: 2000,
      },
    });
    expect(
      probeAction({ tcpSocket: { port: 9090 as never, host: '10.244.0.9' } }, container, '10.244.0.5'),
    ).toEqual({
      network: { kind: 'tcp', host: '10.244.0.9', port: 9090, timeoutMs: 1000 },
    });
  });

  it('runs exec probes as given', () => {
    expect(probeAction({ exec: { command: ['cat', '/tmp/ready'] } }, container, '10.244.0.5')).toEqual({
      exec: ['cat', '/tmp/ready'],
    });
  });

  it.each([
    [{}, /no handler/],
    [{ exec: { command: [] } }, /without a command/],
    [{ httpGet: { port: 'nope' as never } }, /unknown port nope/],
    [{ grpc: { port: 9090 } }, /grpc probes are not supported/],
  ])('reports a probe it cannot run (%j)', (probe, message) => {
    const action = probeAction(probe, container, '10.244.0.5');
    expect('invalid' in action && action.invalid).toMatch(message);
  });
});
