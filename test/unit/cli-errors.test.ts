import { parseArgs } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { reportError } from '../../src/cli/main.js';

/** What `weft` prints for flags node:util parseArgs refuses: one line, exit 2, never a stack. */
function refusal(args: string[]): { code: number; stderr: string } {
  const write = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    parseArgs({ args, options: { name: { type: 'string' } }, allowPositionals: false });
    throw new Error('parseArgs accepted it');
  } catch (err) {
    const code = reportError(err);
    return { code, stderr: write.mock.calls.map((c) => String(c[0])).join('') };
  }
}

describe('weft: refused flags', () => {
  afterEach(() => vi.restoreAllMocks());

  it.each([
    [['extra'], 'Error: unexpected argument "extra"\n'],
    [['--bogus'], "Error: Unknown option '--bogus'\n"],
    [['--name'], "Error: Option '--name <value>' argument missing\n"],
  ])('%j is a usage error', (args, stderr) => {
    expect(refusal(args)).toEqual({ code: 2, stderr });
  });
});
