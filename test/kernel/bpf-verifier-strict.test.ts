import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/shared/self.js';

// Without CAP_PERFMON (and CAP_SYS_ADMIN) the verifier is strict: it rejects reads of stack
// bytes no path initialised, which a privileged load lets through as garbage. The DaemonSet
// may run with CAP_BPF + CAP_NET_ADMIN only, so every product object must load like that.
const pinBase = `/sys/fs/bpf/weft-kt-strict-${process.pid}`;

afterAll(() => rmSync(pinBase, { recursive: true, force: true }));

describe('the strict verifier (no CAP_PERFMON, no CAP_SYS_ADMIN)', () => {
  it.each(['sock_lb.bpf.o', 'nodeport.bpf.o'])('accepts %s', (object) => {
    // Creating directories in bpffs takes CAP_SYS_ADMIN; the DaemonSet's pin dir exists already.
    // (bpffs names may not contain dots.)
    const pinRoot = `${pinBase}/${object.replace(/\..*$/, '')}`;
    mkdirSync(pinRoot, { recursive: true });
    const r = spawnSync(
      'setpriv',
      [
        '--bounding-set=-perfmon,-sys_admin',
        '--inh-caps=-perfmon,-sys_admin',
        process.execPath,
        '--import',
        'tsx',
        'test/kernel/fixtures/load-object.ts',
        object,
        pinRoot,
      ],
      { cwd: projectRoot, encoding: 'utf8' },
    );
    expect(r.stderr).not.toMatch(/invalid read from stack/);
    expect(r.status, r.stderr).toBe(0);
  });
});
