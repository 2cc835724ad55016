import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  ContainerConfigError,
  containerArgv,
  containerEnv,
  type EnvContext,
  expandVars,
} from '../../src/devcluster/kubelet/container-command.js';

const weft = ['/usr/bin/node', '/weft/dist/src/cli/weft.js'];
const agnhost = 'registry.k8s.io/e2e-test-images/agnhost:2.53';

describe('containerArgv', () => {
  it.each<[string, Partial<V1Container>, string[]]>([
    [
      'agnhost with args',
      { image: agnhost, args: ['netexec', '--http-port=8080'] },
      [...weft, 'agnhost', 'netexec', '--http-port=8080'],
    ],
    [
      'agnhost with command /agnhost',
      { image: agnhost, command: ['/agnhost', 'netexec'], args: ['--udp-port=8081'] },
      [...weft, 'agnhost', 'netexec', '--udp-port=8081'],
    ],
    [
      'agnhost by digest, command agnhost',
      { image: 'registry.k8s.io/e2e-test-images/agnhost@sha256:abc', command: ['agnhost'], args: ['pause'] },
      [...weft, 'agnhost', 'pause'],
    ],
    [
      'agnhost image running a shell',
      { image: agnhost, command: ['sh', '-c', 'echo hi'] },
      ['sh', '-c', 'echo hi'],
    ],
    ['pause image', { image: 'registry.k8s.io/pause:3.10' }, [...weft, 'agnhost', 'pause']],
    [
      'any image with command and args',
      { image: 'busybox', command: ['sleep'], args: ['3600'] },
      ['sleep', '3600'],
    ],
  ])('%s', (_what, c, argv) => {
    expect(containerArgv({ name: 'c', ...c }, {}, weft)).toEqual(argv);
  });

  it('expands $(VAR) from the environment in command and args', () => {
    expect(
      containerArgv(
        { name: 'c', image: 'x', command: ['echo', '$(POD_IP)', '$$(POD_IP)', '$(MISSING)'] },
        { POD_IP: '10.244.0.5' },
        weft,
      ),
    ).toEqual(['echo', '10.244.0.5', '$(POD_IP)', '$(MISSING)']);
  });

  it('refuses an image whose entrypoint it cannot know', () => {
    expect(() => containerArgv({ name: 'c', image: 'nginx:1.27' }, {}, weft)).toThrow(ContainerConfigError);
    expect(() => containerArgv({ name: 'c', image: 'nginx:1.27' }, {}, weft)).toThrow(
      /set the container's command/,
    );
  });

  it('refuses agnhost without a subcommand', () => {
    expect(() => containerArgv({ name: 'c', image: agnhost }, {}, weft)).toThrow(/needs a subcommand/);
  });
});

describe('containerEnv', () => {
  const pod: V1Pod = {
    metadata: {
      name: 'web-0',
      namespace: 'shop',
      uid: 'u-1',
      labels: { app: 'web' },
      annotations: { team: 'blue' },
    },
    spec: { nodeName: 'dev-worker', serviceAccountName: 'web', containers: [] },
  };
  const ctx: EnvContext = {
    podIP: '10.244.1.7',
    hostIP: '172.18.0.3',
    nodeName: 'dev-worker',
    kubernetesServiceIP: '10.96.0.1',
    hostEnv: { PATH: '/usr/bin:/bin', HOME: '/root' },
  };

  it('resolves the downward API and $(VAR) references in order', () => {
    const env = containerEnv(
      pod,
      {
        name: 'c',
        env: [
          { name: 'MY_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
          { name: 'MY_NS', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
          { name: 'MY_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
          { name: 'MY_HOST', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } },
          { name: 'MY_NODE', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
          { name: 'MY_SA', valueFrom: { fieldRef: { fieldPath: 'spec.serviceAccountName' } } },
          { name: 'APP', valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } },
          { name: 'TEAM', valueFrom: { fieldRef: { fieldPath: "metadata.annotations['team']" } } },
          { name: 'URL', value: 'http://$(MY_IP):8080/$(MY_NAME)' },
        ],
      },
      ctx,
    );
    expect(env).toMatchObject({
      MY_NAME: 'web-0',
      MY_NS: 'shop',
      MY_IP: '10.244.1.7',
      MY_HOST: '172.18.0.3',
      MY_NODE: 'dev-worker',
      MY_SA: 'web',
      APP: 'web',
      TEAM: 'blue',
      URL: 'http://10.244.1.7:8080/web-0',
      HOSTNAME: 'web-0',
      POD_NAME: 'web-0',
      POD_NAMESPACE: 'shop',
      POD_IP: '10.244.1.7',
      NODE_NAME: 'dev-worker',
      KUBERNETES_SERVICE_HOST: '10.96.0.1',
      KUBERNETES_SERVICE_PORT: '443',
      PATH: '/usr/bin:/bin',
    });
  });

  it('lets the spec override the devcluster’s own variables', () => {
    expect(containerEnv(pod, { name: 'c', env: [{ name: 'POD_NAME', value: 'mine' }] }, ctx).POD_NAME).toBe(
      'mine',
    );
  });

  it.each([
    [{ configMapKeyRef: { name: 'cm', key: 'k' } }, /configMapKeyRef is not supported/],
    [{ secretKeyRef: { name: 's', key: 'k' } }, /secretKeyRef is not supported/],
    [{ fieldRef: { fieldPath: 'spec.bogus' } }, /unsupported fieldRef.fieldPath "spec.bogus"/],
  ])('reports an environment it cannot build (%j) as CreateContainerConfigError', (valueFrom, message) => {
    const build = () => containerEnv(pod, { name: 'c', env: [{ name: 'X', valueFrom }] }, ctx);
    expect(build).toThrow(message);
    try {
      build();
    } catch (err) {
      expect((err as ContainerConfigError).reason).toBe('CreateContainerConfigError');
    }
  });
});

describe('expandVars', () => {
  it.each([
    ['$(A)-$(B)', 'a-b'],
    ['$$(A)', '$(A)'],
    ['$$', '$'],
    ['$(C)', '$(C)'],
    ['no refs', 'no refs'],
    ['$(A', '$(A'],
  ])('%s → %s', (text, out) => {
    expect(expandVars(text, { A: 'a', B: 'b' })).toBe(out);
  });
});
