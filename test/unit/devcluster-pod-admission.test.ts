import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { podAdmissionError } from '../../src/devcluster/kubelet/pod-admission.js';

const valid: V1Pod = {
  metadata: { name: 'web-0.a', namespace: 'shop', uid: '6ccf0196-67c0-49dd-bb6f-5b94bd08911b' },
  spec: { initContainers: [{ name: 'setup' }], containers: [{ name: 'app' }, { name: 'side-car' }] },
};

describe('pod admission on the devcluster kubelet', () => {
  it('admits a well-formed pod', () => {
    expect(podAdmissionError(valid)).toBeUndefined();
  });

  it.each<[string, V1Pod, RegExp]>([
    [
      'a UID that walks up the cgroup tree',
      { ...valid, metadata: { ...valid.metadata, uid: '../../../x' } },
      /pod UID "..\/..\/..\/x" is not a UID/,
    ],
    [
      'a missing UID',
      { ...valid, metadata: { ...valid.metadata, uid: undefined } },
      /pod UID "" is not a UID/,
    ],
    [
      'a namespace with a slash',
      { ...valid, metadata: { ...valid.metadata, namespace: 'a/b' } },
      /namespace "a\/b" is not a DNS label/,
    ],
    [
      'a name with ..',
      { ...valid, metadata: { ...valid.metadata, name: 'a..b' } },
      /pod name "a..b" is not a DNS subdomain/,
    ],
    ['an upper-case name', { ...valid, metadata: { ...valid.metadata, name: 'Web' } }, /pod name "Web"/],
    ['no containers', { ...valid, spec: { containers: [] } }, /no containers/],
    [
      'a container named ../x',
      { ...valid, spec: { containers: [{ name: '../x' }] } },
      /container name "..\/x" is not a DNS label/,
    ],
    [
      'two containers of one name',
      { ...valid, spec: { initContainers: [{ name: 'app' }], containers: [{ name: 'app' }] } },
      /"app" is used twice/,
    ],
  ])('rejects %s', (_what, pod, message) => {
    expect(podAdmissionError(pod)).toMatch(message);
  });
});
