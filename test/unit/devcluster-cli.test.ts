import { describe, expect, it } from 'vitest';
import { parseDuration, run } from '../../src/cli/devcluster.js';
import { WeftError } from '../../src/shared/errors.js';

describe('weft devcluster flags', () => {
  it.each([
    ['90s', 90_000],
    ['2m', 120_000],
    ['1m30s', 90_000],
    ['500ms', 500],
    ['1h', 3_600_000],
    ['1.5s', 1_500],
    ['45', 45_000],
  ])('--wait %s is %i ms', (text, ms) => {
    expect(parseDuration('--wait', text)).toBe(ms);
  });

  it.each(['', 'soon', '5 m', '-1s', '1d'])('--wait %j is refused', (text) => {
    expect(() => parseDuration('--wait', text)).toThrow(/invalid argument/);
  });

  it.each<[string[], RegExp]>([
    [['up', '--nodes', 'two'], /invalid argument "two" for "--nodes" flag/],
    [['up', '--name', 'Bad_Name'], /invalid cluster name "Bad_Name"/],
    [['up', 'extra'], /unexpected argument "extra" for "weft devcluster up"/],
    [['down', '--name', '../etc'], /invalid cluster name/],
    [['status', '--name', '../../etc'], /invalid cluster name/],
    [['exec', '--name', 'a/b', 'default/web', '--', 'true'], /invalid cluster name/],
    [['exec', 'default/web'], /you must specify the command after --/],
    [['exec', 'a', 'b', '--', 'true'], /expected exactly one pod/],
    [['exec', 'a/b/c', '--', 'true'], /invalid pod "a\/b\/c"/],
    [['exec', 'default/web', '--'], /at least one command after --/],
    [['logs', 'default/web', '--tail', 'ten'], /invalid argument "ten" for "--tail" flag/],
    [['status', '-o', 'yaml'], /allowed formats are: table,json/],
    [['frobnicate'], /unknown command "frobnicate" for "weft devcluster"/],
  ])('rejects %j with a usage error', async (args, message) => {
    const failure = await run(args).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(WeftError);
    expect((failure as WeftError).code).toBe('WEFT_ERR_USAGE');
    expect((failure as Error).message).toMatch(message);
  });
});
