import { describe, expect, it } from 'vitest';
import { IdSpace, revNatSpace } from '../../src/agent/services/allocator.js';
import {
  assignSlots,
  frontendIs,
  lbFrontendOf,
  sameFrontend,
  slotsFor,
} from '../../src/agent/services/plan.js';
import { backendKeyOf, compareBackendKeys, type DesiredFrontend } from '../../src/agent/services/types.js';

describe('IdSpace', () => {
  it('hands out ids next-fit from a cursor past the seeds, skipping those taken, and wraps', () => {
    const taken = new Set([3, 7]);
    const space = new IdSpace(1, 8);
    space.seed([3, 7]);
    const next = () => {
      const id = space.next((i) => taken.has(i));
      if (id !== undefined) taken.add(id);
      return id;
    };
    expect(next()).toBe(8);
    expect(next()).toBe(1);
    taken.delete(8);
    space.release();
    // 8 is free again, but the cursor goes through the rest of the range first.
    expect([next(), next(), next(), next(), next()]).toEqual([2, 4, 5, 6, 8]);
    expect(space.size).toBe(8);
    expect(next()).toBeUndefined();
  });

  it('holds only integers of its range', () => {
    const space = revNatSpace();
    expect([0, 1, 0xffff, 0x10000, 1.5, Number.NaN].map((i) => space.holds(i))).toEqual([
      false,
      true,
      true,
      false,
      false,
      false,
    ]);
    expect(() => new IdSpace(0, 10)).toThrow(RangeError);
  });
});

describe('backend keys', () => {
  const key = (address: string, port = 80, protocol: 'TCP' | 'UDP' | 'SCTP' = 'TCP') =>
    backendKeyOf({ address, port, protocol });

  it('one per address, port and protocol: IPv4 as an exact integer, IPv6 as text', () => {
    const keys = [
      key('10.0.0.1'),
      key('10.0.0.1', 81),
      key('10.0.0.1', 80, 'UDP'),
      key('10.0.0.1', 80, 'SCTP'),
      key('10.0.1.0'),
      key('0.0.0.0', 1),
      key('255.255.255.255', 65535, 'SCTP'),
      key('fd00::1'),
      key('fd00::1', 80, 'UDP'),
    ];
    expect(new Set(keys).size).toBe(keys.length);
    for (const k of keys.slice(0, 7)) expect(Number.isSafeInteger(k)).toBe(true);
    expect(key('fd00::1', 8080, 'UDP')).toBe('fd00::1|8080|UDP');
    expect(key('10.0.0.1')).toBe(key('10.0.0.1'));
  });

  it('sort IPv4 by address (as numbers), then port, then protocol; IPv6 after, as text', () => {
    const sorted = [
      key('fd00::2'),
      key('10.0.0.10'),
      key('fd00::1'),
      key('10.0.0.9', 443),
      key('10.0.0.9', 80, 'UDP'),
      key('10.0.0.9', 80),
    ].sort(compareBackendKeys);
    expect(sorted).toEqual([
      key('10.0.0.9', 80),
      key('10.0.0.9', 80, 'UDP'),
      key('10.0.0.9', 443),
      key('10.0.0.10'),
      key('fd00::1'),
      key('fd00::2'),
    ]);
  });
});

describe('assignSlots', () => {
  const cases: Array<[string, number[] | undefined, number[], number[]]> = [
    ['a new frontend lists its backends by id', undefined, [9, 3, 5], [3, 5, 9]],
    ['no change keeps the order, whatever it is', [5, 3, 9], [3, 5, 9], [5, 3, 9]],
    ['a new backend goes at the end', [5, 3], [3, 5, 7], [5, 3, 7]],
    ['a backend that goes leaves its slot to a new one', [5, 3, 9], [3, 9, 7], [7, 3, 9]],
    [
      'two go, one comes: the hole is filled, the last moves into the other',
      [1, 2, 3, 4],
      [1, 3, 8],
      [1, 8, 3],
    ],
    ['the last one goes: the list just gets shorter', [1, 2, 3], [1, 2], [1, 2]],
    ['the first one goes: the last moves into its slot', [1, 2, 3], [2, 3], [3, 2]],
    ['all go', [1, 2], [], []],
    ['a duplicate slot (should not happen) is dropped', [1, 1, 2], [1, 2], [1, 2]],
    ['a duplicate slot with a new backend of the same count', [1, 1, 2], [1, 2, 3], [1, 3, 2]],
    ['a new frontend listing an id twice gets it once', undefined, [4, 2, 4], [2, 4]],
    ['a new frontend already in order', [], [1, 2, 3], [1, 2, 3]],
    ['same count, one swapped for another', [5, 3, 9], [3, 5, 8], [5, 3, 8]],
    ['same count, a wanted id twice', [5, 3, 9], [3, 5, 5], [5, 3]],
  ];
  it.each(cases)('%s', (_name, previous, wanted, slots) => {
    expect(assignSlots(previous, wanted)).toEqual(slots);
  });

  it('one backend changing in a large frontend moves at most two slots', () => {
    const previous = Array.from({ length: 1000 }, (_, i) => i + 1);
    const wanted = previous.filter((id) => id !== 500).concat([2000]);
    const next = assignSlots(previous, wanted);
    expect(next.filter((id, i) => previous[i] !== id)).toEqual([2000]);
    const shrunk = assignSlots(
      previous,
      previous.filter((id) => id !== 10),
    );
    expect(shrunk.filter((id, i) => previous[i] !== id)).toEqual([1000]);
    expect(new Set(shrunk).size).toBe(999);
  });

  it('a large frontend whose backends did not change keeps every slot, whatever the order', () => {
    const previous = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(
      assignSlots(
        previous,
        [...previous].sort((a, b) => a - b),
      ),
    ).toEqual(previous);
    const dup = [...previous.slice(0, 99), 100];
    expect(assignSlots(dup, previous)).toEqual([...previous.slice(0, 99), 1]);
  });

  it('never returns the array it was given', () => {
    const wanted = [1, 2, 3];
    expect(assignSlots(undefined, wanted)).not.toBe(wanted);
    expect(assignSlots(wanted, wanted)).not.toBe(wanted);
  });
});

describe('slotsFor', () => {
  it('gives what assignSlots gives, reusing `wanted` or `previous` instead of a copy', () => {
    const wanted = [1, 2, 3];
    expect(slotsFor(undefined, wanted)).toBe(wanted);
    expect(slotsFor([], wanted)).toBe(wanted);
    const previous = [3, 1, 2];
    expect(slotsFor(previous, wanted)).toBe(previous);
    const cases: Array<[number[] | undefined, number[]]> = [
      [undefined, [3, 1, 2]],
      [undefined, [1, 1, 2]],
      [[], [2, 1]],
      [
        [3, 1, 2],
        [1, 2, 4],
      ],
      [
        [3, 1, 2],
        [1, 2],
      ],
      [
        [3, 1],
        [1, 2, 3],
      ],
      [
        [1, 1, 2],
        [1, 2, 3],
      ],
      [
        [5, 4, 3, 2, 1],
        [1, 2, 3, 4, 5],
      ],
    ];
    for (const [p, w] of cases) {
      expect(slotsFor(p, [...w])).toEqual(assignSlots(p, [...w]));
    }
  });
});

describe('frontendIs', () => {
  const f: DesiredFrontend = {
    name: '203.0.113.10:80/TCP',
    address: '203.0.113.10',
    port: 80,
    protocol: 'TCP',
    type: 'LoadBalancer',
    portName: 'http',
    backends: [],
    externalTrafficPolicy: 'Local',
    internalTrafficPolicy: 'Cluster',
  };
  const variants: Array<[DesiredFrontend, number, number[], number[] | undefined]> = [
    [f, 7, [1, 2], undefined],
    [f, 7, [1, 2], [1, 2, 3]],
    [f, 8, [1, 2], [1, 2, 3]],
    [f, 7, [2, 1], undefined],
    [f, 7, [], []],
    [{ ...f, affinityTimeoutSeconds: 10800 }, 7, [1, 2], undefined],
    [{ ...f, sourceRanges: ['192.0.2.0/24'] }, 7, [1, 2], undefined],
    [{ ...f, sourceRanges: ['198.51.100.0/24'] }, 7, [1, 2], undefined],
    [{ ...f, port: 443 }, 7, [1, 2], undefined],
    [{ ...f, type: 'ExternalIP', externalTrafficPolicy: 'Cluster' }, 7, [1, 2], undefined],
  ];

  it('agrees with sameFrontend on what lbFrontendOf builds', () => {
    for (const [hf, hRevNat, hExt, hInt] of variants) {
      const have = lbFrontendOf(hf, hRevNat, hExt, hInt);
      for (const [wf, wRevNat, wExt, wInt] of variants) {
        const same = sameFrontend(have, lbFrontendOf(wf, wRevNat, [...wExt], wInt && [...wInt]));
        expect(frontendIs(have, wf, wRevNat, [...wExt], wInt && [...wInt])).toBe(same);
      }
    }
    expect(frontendIs(undefined, f, 7, [1, 2], undefined)).toBe(false);
  });
});
