import { describe, expect, it } from 'vitest';
import { checkKernel } from '../../src/datapath/environment.js';
import { errnoName, KernelError, WeftError } from '../../src/shared/errors.js';

describe('errno names', () => {
  it.each([
    [2, 'ENOENT'],
    [-2, 'ENOENT'],
    [7, 'E2BIG'],
    [1, 'EPERM'],
    [13, 'EACCES'],
    [28, 'ENOSPC'],
    [524, 'ENOTSUPP'],
    [4007, 'LIBBPF_ERRNO__LOAD'],
  ])('%i is %s', (errno, name) => {
    expect(errnoName(errno)).toBe(name);
  });

  it('an unknown errno is still named by number, never a bare negative', () => {
    expect(errnoName(-9999)).toBe('errno 9999');
  });
});

describe('KernelError', () => {
  it('names the failing call, what it acted on and the errno, with a stable code', () => {
    const err = new KernelError('bpf_map_update_elem', 7, 'map weft_lb4_services (hash, max_entries 8)');
    expect(err).toBeInstanceOf(WeftError);
    expect(err.code).toBe('WEFT_ERR_E2BIG');
    expect(err.errnoName).toBe('E2BIG');
    expect(err.message).toMatch(/^bpf_map_update_elem \(map weft_lb4_services .*\): E2BIG: .*map is full/);
  });

  it('tells the user how to fix a permission error', () => {
    expect(new KernelError('bpf_object__load', 1).message).toMatch(/needs root/);
  });
});

describe('kernel version check', () => {
  it.each(['6.18.44-fc', '5.10.0', '5.15.0-91-generic'])('accepts %s', (v) => {
    expect(() => checkKernel(v)).not.toThrow();
  });
  it.each(['4.19.0', '5.4.0-150-generic', 'garbage'])('refuses %s with WEFT_ERR_KERNEL_TOO_OLD', (v) => {
    expect(() => checkKernel(v)).toThrowError(expect.objectContaining({ code: 'WEFT_ERR_KERNEL_TOO_OLD' }));
  });
});
