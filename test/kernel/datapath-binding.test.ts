import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataType } from 'ffi-rs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attachCgroup, BpfLink } from '../../src/datapath/cgroup.js';
import { checkEnvironment, cgroup2Root } from '../../src/datapath/environment.js';
import { BatchError, BpfMap } from '../../src/datapath/map.js';
import { inNetns } from '../../src/datapath/netns.js';
import { callInt, callPtr, releaseFreeNativeMemory } from '../../src/datapath/native.js';
import { BpfObject } from '../../src/datapath/object.js';
import { RingBufferReader } from '../../src/datapath/ringbuf.js';
import {
  type SelftestEvent,
  selftestCodecs,
  selftestConfig,
  selftestEvent,
  selftestKey,
  selftestStats,
  selftestValue,
} from '../../src/datapath/selftest.js';
import { attachTc, detachTc, queryTc } from '../../src/datapath/tc.js';
import { testRun, testRunInThread } from '../../src/datapath/testrun.js';
import { u32 } from '../../src/datapath/codec.js';
import { bpfObjectPath, projectRoot } from '../../src/shared/self.js';

// Everything this file makes carries this prefix and is removed in afterAll, even on failure.
const tag = `weft-kt-dp-${process.pid}`;
const pinRoot = `/sys/fs/bpf/${tag}`;
const netns = tag;
const selftest = bpfObjectPath('selftest.bpf.o');
let cgroup = '';

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs `script` with bash inside our netns and our cgroup (the cgroup is entered first). */
function inSandbox(script: string): { status: number | null; stdout: string } {
  const r = spawnSync(
    'sh',
    ['-c', `echo $$ > ${cgroup}/cgroup.procs && exec ip netns exec ${netns} bash -c "$0"`, script],
    { encoding: 'utf8' },
  );
  return { status: r.status, stdout: r.stdout };
}

/** One TCP connect() to a closed port on loopback: refused, but the connect4 hook runs. */
const connectOnce = 'exec 3<>/dev/tcp/127.0.0.1/9 2>/dev/null; exit 0';

function stats(obj: BpfObject) {
  const m = obj.typedMap('weft_selftest_stats', u32, selftestStats);
  try {
    return m.lookup(0)!;
  } finally {
    m.close();
  }
}

beforeAll(() => {
  checkEnvironment();
  cgroup = join(cgroup2Root(), tag);
  mkdirSync(cgroup, { recursive: true });
  sh('ip', ['netns', 'add', netns]);
  sh('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
});

afterAll(() => {
  spawnSync('ip', ['netns', 'del', netns]);
  rmSync(pinRoot, { recursive: true, force: true });
  // A cgroup directory goes with rmdir once its processes are gone (ours exited already).
  if (cgroup && existsSync(cgroup)) rmdirSync(cgroup);
});

describe('objects', () => {
  it('a missing object file is a clear error, before libbpf', () => {
    expect(() => BpfObject.open('/nonexistent/sock_lb.bpf.o')).toThrowError(
      expect.objectContaining({
        code: 'WEFT_ERR_OBJECT_MISSING',
        message: expect.stringMatching(/make bpf/),
      }),
    );
  });

  it('an object built for another architecture is refused by name', () => {
    expect(() => BpfObject.open(process.execPath)).toThrowError(
      expect.objectContaining({ code: 'WEFT_ERR_OBJECT_FORMAT', message: expect.stringMatching(/not BPF/) }),
    );
  });

  it('a file that is not ELF at all is refused', () => {
    const junk = join(projectRoot, `.${tag}-junk.o`);
    writeFileSync(junk, 'this is not an object file, just text');
    try {
      expect(() => BpfObject.open(junk)).toThrowError(
        expect.objectContaining({ code: 'WEFT_ERR_OBJECT_FORMAT' }),
      );
    } finally {
      rmSync(junk, { force: true });
    }
  });

  it('asking for a program or map that does not exist names it', () => {
    const obj = BpfObject.open(selftest, { pinRoot: `${pinRoot}/names` });
    try {
      obj.load();
      expect(obj.programNames()).toEqual([
        'weft_selftest_emit',
        'weft_selftest_count',
        'weft_selftest_connect4',
      ]);
      expect(obj.program('weft_selftest_count').type).toBe('sched_cls');
      expect(() => obj.program('nope')).toThrowError(/no program named nope/);
      expect(() => obj.map('nope')).toThrowError(/no map named nope/);
    } finally {
      obj.close();
    }
  });

  it('every TS codec matches the size and member offsets the compiler gave the C struct (BTF)', () => {
    const checker = BpfObject.open(bpfObjectPath('alignchecker.bpf.o'));
    try {
      for (const codec of selftestCodecs) {
        const btf = checker.structLayout(codec.cName);
        expect(btf, `${codec.cName} missing from BTF`).toBeDefined();
        expect(btf!.size, codec.cName).toBe(codec.size);
        const named = codec.fields.filter((f) => !/^pad\d+$/.test(f.name));
        expect(named, codec.cName).toEqual(btf!.members.filter((m) => !/^pad/.test(m.name)));
      }
    } finally {
      checker.close();
    }
  });
});

describe('maps', () => {
  it('single and batch operations read back what was written', async () => {
    const obj = BpfObject.open(selftest, { pinRoot: `${pinRoot}/ops` });
    obj.load();
    const m = obj.typedMap('weft_selftest_hash', selftestKey, selftestValue);
    try {
      m.update({ a: 1, b: 2, c: 3, d: 4 }, { x: 10, y: 20 });
      expect(m.lookup({ a: 1, b: 2, c: 3, d: 4 })).toEqual({ x: 10, y: 20 });
      expect(m.lookup({ a: 9, b: 9, c: 9, d: 9 })).toBeUndefined();
      expect(() => m.update({ a: 1, b: 2, c: 3, d: 4 }, { x: 0, y: 0 }, 'noexist')).toThrowError(
        expect.objectContaining({ code: 'WEFT_ERR_EEXIST' }),
      );

      const entries = Array.from(
        { length: 40_000 },
        (_, i) =>
          [
            { a: i, b: i * 3, c: 7, d: 1 },
            { x: i, y: 1 },
          ] as const,
      );
      await m.updateBatchAsync(entries);
      m.updateBatch(entries.slice(0, 100).map(([k, v]) => [k, { ...v, y: 2 }] as const));
      expect(m.count()).toBe(40_001);
      const back = new Map(m.entries().map(([k, v]) => [`${k.a}/${k.b}`, v]));
      expect(back.get('0/0')).toEqual({ x: 0, y: 2 });
      expect(back.get('39999/119997')).toEqual({ x: 39_999, y: 1 });

      // Keys that are not there are skipped, not an error; the rest go.
      const gone = m.deleteBatch([
        { a: -1 >>> 0, b: 0, c: 0, d: 0 },
        ...entries.map(([k]) => k),
        { a: 5e6, b: 0, c: 0, d: 0 },
      ]);
      expect(gone).toBe(40_000);
      expect(m.keys()).toEqual([{ a: 1, b: 2, c: 3, d: 4 }]);
      expect(m.delete({ a: 1, b: 2, c: 3, d: 4 })).toBe(true);
      expect(m.delete({ a: 1, b: 2, c: 3, d: 4 })).toBe(false);
    } finally {
      m.close();
      obj.close();
    }
  });

  it('a full map refuses new entries with E2BIG and keeps every existing entry', () => {
    const obj = BpfObject.open(selftest, {
      pinRoot: `${pinRoot}/full`,
      maxEntries: { weft_selftest_hash: 8 },
    });
    obj.load();
    const m = obj.typedMap('weft_selftest_hash', selftestKey, selftestValue);
    try {
      const key = (i: number) => ({ a: i, b: 0, c: 0, d: 0 });
      for (let i = 0; i < 8; i++) m.update(key(i), { x: i, y: 0 });
      expect(() => m.update(key(100), { x: 1, y: 1 })).toThrowError(
        expect.objectContaining({
          code: 'WEFT_ERR_E2BIG',
          message: expect.stringMatching(/weft_selftest_hash .*max_entries 8.*map is full/),
        }),
      );
      // Overwriting an existing key still works on a full map.
      m.update(key(3), { x: 33, y: 0 });

      let batchErr: unknown;
      try {
        m.updateBatch([
          [key(4), { x: 44, y: 0 }],
          [key(200), { x: 0, y: 0 }],
          [key(201), { x: 0, y: 0 }],
        ]);
      } catch (err) {
        batchErr = err;
      }
      expect(batchErr).toBeInstanceOf(BatchError);
      expect((batchErr as BatchError).applied).toBe(1);
      expect((batchErr as BatchError).errnoName).toBe('E2BIG');

      const after = new Map(m.entries().map(([k, v]) => [k.a, v.x]));
      expect([...after.keys()].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
      expect(after.get(3)).toBe(33);
      expect(after.get(4)).toBe(44);
    } finally {
      m.close();
      obj.close();
    }
  });

  it('maps pinned by one process are reopened by another and keep their entries', () => {
    const root = `${pinRoot}/shared`;
    const first = BpfObject.open(selftest, { pinRoot: root });
    first.load();
    const m = first.typedMap('weft_selftest_hash', selftestKey, selftestValue);
    m.update({ a: 7, b: 0, c: 0, d: 0 }, { x: 70, y: 0 });
    const pin = first.pinPath('weft_selftest_hash')!;
    expect(pin).toBe(`${root}/weft_selftest_hash`);
    m.close();
    first.close();

    const peer = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'test/kernel/fixtures/pinned-map-peer.ts', pin, '8'],
      {
        cwd: projectRoot,
        encoding: 'utf8',
      },
    );
    expect(peer.status, peer.stderr).toBe(0);
    expect(JSON.parse(peer.stdout)).toEqual([
      [
        { a: 7, b: 0, c: 0, d: 0 },
        { x: 70, y: 0 },
      ],
    ]);

    // A second load of the object (an agent restart) reuses the pinned map, entries included.
    const second = BpfObject.open(selftest, { pinRoot: root });
    second.load();
    const again = second.typedMap('weft_selftest_hash', selftestKey, selftestValue);
    try {
      expect(again.lookup({ a: 7, b: 0, c: 0, d: 0 })).toEqual({ x: 70, y: 0 });
      expect(again.lookup({ a: 8, b: 0, c: 0, d: 0 })).toEqual({ x: 42, y: 0 });
    } finally {
      again.close();
      second.close();
    }
  });

  it('a pinned map whose definition changed is reported by name instead of a bare EINVAL', () => {
    const root = `${pinRoot}/resize`;
    const first = BpfObject.open(selftest, { pinRoot: root, maxEntries: { weft_selftest_hash: 64 } });
    first.load();
    first.close();
    const second = BpfObject.open(selftest, { pinRoot: root, maxEntries: { weft_selftest_hash: 128 } });
    try {
      expect(() => second.load()).toThrowError(
        expect.objectContaining({
          code: 'WEFT_ERR_PINNED_MAP_MISMATCH',
          message: expect.stringMatching(/weft_selftest_hash .*maxEntries 64 pinned vs 128 wanted/),
        }),
      );
    } finally {
      second.close();
    }
  });
});

describe('cgroup links', () => {
  it('a pinned link outlives its process, is replaced atomically, and detaches when unpinned', () => {
    const root = `${pinRoot}/links`;
    const linkPin = `${root}/connect4`;
    const obj = BpfObject.open(selftest, { pinRoot: root });
    obj.load();
    try {
      const link = attachCgroup(obj.program('weft_selftest_connect4'), cgroup, { pinPath: linkPin });
      const firstProg = link.info().progId;
      link.close(); // our fd is gone; the pin keeps the program attached
      const connects = () => stats(obj).connects;

      const before = connects();
      const r = inSandbox(connectOnce);
      expect(r.status).toBe(0);
      expect(connects()).toBe(before + 1);

      // Re-attaching at the same pin (an agent restart) swaps the program, not the link.
      const obj2 = BpfObject.open(selftest, { pinRoot: root });
      obj2.load();
      const again = attachCgroup(obj2.program('weft_selftest_connect4'), cgroup, { pinPath: linkPin });
      expect(again.info().progId).not.toBe(firstProg);
      again.unpin();
      again.close();
      obj2.close();
      expect(existsSync(linkPin)).toBe(false);

      const after = connects();
      inSandbox(connectOnce);
      expect(connects()).toBe(after); // detached: nothing counted
      expect(BpfLink.openPinned(linkPin)).toBeUndefined();
    } finally {
      obj.close();
    }
  });
});

describe('tc', () => {
  it('attaches in another network namespace, replaces instead of stacking, and detaches', () => {
    const obj = BpfObject.open(selftest, { pinRoot: `${pinRoot}/tc` });
    obj.load();
    const prog = obj.program('weft_selftest_count');
    try {
      inNetns(`/run/netns/${netns}`, () => {
        attachTc({ ifname: 'lo', direction: 'ingress', prog });
        attachTc({ ifname: 'lo', direction: 'ingress', prog }); // a restart: REPLACE
        expect(queryTc({ ifname: 'lo', direction: 'ingress' })).toBeGreaterThan(0);
      });
      const filters = sh('ip', ['netns', 'exec', netns, 'tc', 'filter', 'show', 'dev', 'lo', 'ingress']);
      // BPF object names are cut to 15 characters.
      expect(filters.match(/ name weft_selftest_c /g)?.length).toBe(1);
      // Only our namespace's lo got the filter.
      expect(sh('tc', ['filter', 'show', 'dev', 'lo', 'ingress'])).not.toMatch(/weft_selftest_c/);

      const before = stats(obj).packets;
      expect(inSandbox('for i in 1 2 3; do echo x > /dev/udp/127.0.0.1/9; done').status).toBe(0);
      expect(stats(obj).packets).toBeGreaterThanOrEqual(before + 3);

      inNetns(`/run/netns/${netns}`, () => {
        expect(detachTc({ ifname: 'lo', direction: 'ingress' })).toBe(true);
        expect(detachTc({ ifname: 'lo', direction: 'ingress' })).toBe(false);
        expect(queryTc({ ifname: 'lo', direction: 'ingress' })).toBeUndefined();
      });
      expect(() =>
        inNetns(`/run/netns/${netns}`, () => attachTc({ ifname: 'nope0', direction: 'egress', prog })),
      ).toThrowError(/nope0 does not exist/);
    } finally {
      obj.close();
    }
  });
});

describe('ring buffer', () => {
  const packet = Buffer.alloc(64);

  it('drains every event the kernel wrote, in order, with none lost', () => {
    const obj = BpfObject.open(selftest, { pinRoot: `${pinRoot}/ring` });
    obj.load();
    const reader = new RingBufferReader(obj.map('weft_selftest_events'));
    try {
      const cfg = obj.typedMap('weft_selftest_config', u32, selftestConfig);
      cfg.update(0, { events_per_run: 64 });
      cfg.close();
      testRun(obj.program('weft_selftest_emit'), { data: packet, repeat: 500 });
      const seqs: bigint[] = [];
      let lengths = new Set<number>();
      const n = reader.drain((buf, off, len) => {
        lengths.add(len);
        seqs.push((selftestEvent.decode(buf, off) as SelftestEvent).seq);
      });
      expect(n).toBe(32_000);
      expect(lengths).toEqual(new Set([64]));
      expect(seqs.every((s, i) => s === BigInt(i))).toBe(true);
      expect(stats(obj)).toMatchObject({ produced: 32_000, dropped: 0 });
      expect(reader.drain(() => undefined)).toBe(0);
      lengths = new Set();
    } finally {
      reader.close();
      obj.close();
    }
  });

  it('a full ring counts what it could not take: produced = delivered + dropped', () => {
    const obj = BpfObject.open(selftest, {
      pinRoot: `${pinRoot}/ringfull`,
      maxEntries: { weft_selftest_events: 4096 },
    });
    obj.load();
    const reader = new RingBufferReader(obj.map('weft_selftest_events'));
    try {
      const cfg = obj.typedMap('weft_selftest_config', u32, selftestConfig);
      cfg.update(0, { events_per_run: 256 });
      cfg.close();
      testRun(obj.program('weft_selftest_emit'), { data: packet, repeat: 1 });
      const delivered = reader.drain(() => undefined);
      const s = stats(obj);
      expect(s.dropped).toBeGreaterThan(0);
      expect(delivered + s.dropped).toBe(s.produced);
    } finally {
      reader.close();
      obj.close();
    }
  });

  it('wait() sleeps until events arrive, and times out when none do', async () => {
    const obj = BpfObject.open(selftest, { pinRoot: `${pinRoot}/ringwait` });
    obj.load();
    const reader = new RingBufferReader(obj.map('weft_selftest_events'));
    try {
      const cfg = obj.typedMap('weft_selftest_config', u32, selftestConfig);
      cfg.update(0, { events_per_run: 1 });
      cfg.close();
      expect(await reader.wait(50)).toBe(false);
      const waiting = reader.wait(10_000);
      await new Promise((r) => setTimeout(r, 100));
      await testRunInThread(obj.program('weft_selftest_emit'), { data: packet, repeat: 1 });
      expect(await waiting).toBe(true);
      expect(reader.drain(() => undefined)).toBe(1);
    } finally {
      reader.close();
      obj.close();
    }
  });
});

describe('environment', () => {
  it('finds the cgroup2 mount from /proc/mounts', () => {
    const mounts = readFileSync('/proc/mounts', 'utf8');
    expect(mounts).toContain(` ${checkEnvironment().cgroup2Root} cgroup2 `);
  });

  it('opening a pinned map that does not exist names the path', () => {
    expect(() => BpfMap.openPinned(`${pinRoot}/none`, selftestKey, selftestValue)).toThrowError(
      expect.objectContaining({
        code: 'WEFT_ERR_ENOENT',
        message: expect.stringContaining(`${pinRoot}/none`),
      }),
    );
  });
});

describe('pin roots', () => {
  it('loading an object that pins maps by name without a pin root is refused, so nodes never share maps', () => {
    const obj = BpfObject.open(selftest);
    try {
      expect(() => obj.load()).toThrowError(
        expect.objectContaining({
          code: 'WEFT_ERR_PIN_ROOT_REQUIRED',
          message: expect.stringContaining('weft_selftest_hash'),
        }),
      );
      expect(existsSync('/sys/fs/bpf/weft_selftest_hash')).toBe(false);
    } finally {
      obj.close();
    }
  });
});

describe('native memory', () => {
  const rssMiB = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;

  it('memory freed below the top of a malloc arena goes back to the kernel only when trimmed', () => {
    // 48 MiB in 1 KiB blocks, each written to, then all freed but the last, which pins the
    // arena's top: glibc returns nothing of it on free(), as after the agent's first sync.
    const blocks: number[] = [];
    for (let i = 0; i < 48 * 1024; i++) {
      const p = callPtr('libc', 'malloc', [DataType.I64], [1024]);
      expect(p).not.toBe(0);
      callPtr('libc', 'memset', [DataType.I64, DataType.I32, DataType.I64], [p, 0x5a, 1024]);
      blocks.push(p);
    }
    const last = blocks.pop()!;
    for (const p of blocks) callInt('libc', 'free', [DataType.I64], [p]);
    const freed = rssMiB();
    releaseFreeNativeMemory();
    const trimmed = rssMiB();
    callInt('libc', 'free', [DataType.I64], [last]);
    expect(freed - trimmed).toBeGreaterThan(24);
  });
});
