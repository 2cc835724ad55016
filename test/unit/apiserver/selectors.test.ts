import { describe, expect, it } from 'vitest';
import { matchesFields, parseFieldSelector } from '../../../src/devcluster/apiserver/field-selector.js';
import {
  fromLabelSelectorObject,
  matchesLabels,
  parseLabelSelector,
  SelectorParseError,
  validateLabelSelectorObject,
} from '../../../src/devcluster/apiserver/label-selector.js';

const labels = { app: 'echo', tier: 'backend', version: '3' };

describe('label selectors select what kubectl -l means', () => {
  it.each([
    ['app=echo', true],
    ['app==echo', true],
    ['app!=echo', false],
    ['app!=web', true],
    ['missing!=x', true],
    ['app in (web,echo)', true],
    ['app notin (web,echo)', false],
    ['missing notin (a)', true],
    ['tier', true],
    ['missing', false],
    ['!missing', true],
    ['!app', false],
    ['app=echo,tier=backend', true],
    ['app=echo,tier=frontend', false],
    ['version>2', true],
    ['version<3', false],
    ['app=', false],
    ['', true],
    ['  app = echo ,  tier in ( backend )', true],
    ['example.com/role', false],
  ])('%j matches %j', (selector, expected) => {
    expect(matchesLabels(parseLabelSelector(selector), labels)).toBe(expected);
  });

  it.each([
    ['app in (a,', "unable to parse requirement: found '', expected: ')'"],
    ['app in ()', "for 'in', 'notin' operators, values set can't be empty"],
    ['-bad=x', 'invalid label key "-bad"'],
    ['app=bad value', "found 'value', expected: ',' or 'end of string'"],
    ['app=' + 'x'.repeat(64), 'must be no more than 63 characters'],
    ['app>x', "for 'Gt', 'Lt' operators"],
    ['app=(x)', "found '('"],
  ])('%j is rejected with a parse error', (selector, message) => {
    expect(() => parseLabelSelector(selector)).toThrow(SelectorParseError);
    expect(() => parseLabelSelector(selector)).toThrow(message);
  });

  it('structured selectors (matchLabels + matchExpressions) select like the string form', () => {
    const sel = fromLabelSelectorObject({
      matchLabels: { app: 'echo' },
      matchExpressions: [
        { key: 'tier', operator: 'In', values: ['backend', 'db'] },
        { key: 'canary', operator: 'DoesNotExist' },
      ],
    });
    expect(matchesLabels(sel, labels)).toBe(true);
    expect(matchesLabels(sel, { ...labels, canary: 'yes' })).toBe(false);
  });

  it('reports each invalid matchExpression with its field path', () => {
    const errors = validateLabelSelectorObject(
      {
        matchExpressions: [
          { key: 'app', operator: 'Foo' },
          { key: 'x', operator: 'In', values: [] },
        ],
      },
      'spec.podSelector',
    );
    expect(errors.map((e) => `${e.field}:${e.type}`)).toEqual([
      'spec.podSelector.matchExpressions[0].operator:FieldValueInvalid',
      'spec.podSelector.matchExpressions[1].values:FieldValueRequired',
    ]);
  });
});

describe('field selectors', () => {
  const fields = { 'metadata.name': 'a,b', 'spec.nodeName': 'node-1', 'status.phase': 'Running' };
  it.each([
    ['spec.nodeName=node-1', true],
    ['spec.nodeName==node-1', true],
    ['spec.nodeName!=node-1', false],
    ['spec.nodeName=node-1,status.phase!=Failed', true],
    ['spec.nodeName=', false],
    ['metadata.name=a\\,b', true],
    ['status.phase=Pending', false],
  ])('%j matches %j', (selector, expected) => {
    expect(matchesFields(parseFieldSelector(selector), fields)).toBe(expected);
  });

  it('rejects terms without an operator and bad escapes', () => {
    expect(() => parseFieldSelector('spec.nodeName')).toThrow(SelectorParseError);
    expect(() => parseFieldSelector('a=b\\x')).toThrow('invalid escape sequence');
  });
});
