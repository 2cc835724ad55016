// Ring buffer: how many 64-byte events/s the JavaScript reader drains with zero loss, and its
// CPU share, against libbpf's C ring_buffer__poll reading the same ring in the same run.
// Producer: weft_selftest_emit (64 events per program run) driven by BPF_PROG_TEST_RUN in a
// separate process at a paced rate. Goal: 1,000,000 events/s with no loss.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { u32 } from '../src/datapath/codec.js';
import { checkEnvironment } from '../src/datapath/environment.js';
import { BpfObject, pinFd } from '../src/datapath/object.js';
import { RingBufferReader } from '../src/datapath/ringbuf.js';
import { selftestConfig, selftestStats } from '../src/datapath/selftest.js';
import { bpfObjectPath, projectRoot } from '../src/shared/self.js';
import { fmt, report } from './report.js';

const PER_RUN = 64;
const SECONDS = Number(process.env.WEFT_BENCH_SECONDS ?? 3);
const rates = [500_000, 1_000_000, 2_000_000, 0]; // 0 = unpaced: the kernel producer's own limit
const pinBase = `/sys/fs/bpf/weft-bench-ringbuf-${process.pid}`;

interface Trial {
  reader: 'weft-js' | 'libbpf-c';
  targetRate: number | 'max';
  produced: number;
  delivered: number;
  dropped: number;
  gaps: number;
  seconds: number;
  eventsPerSecond: number;
  readerCpuShare: number;
  lossFree: boolean;
}

function setUp(n: number) {
  const root = `${pinBase}/${n}`;
  const obj = BpfObject.open(bpfObjectPath('selftest.bpf.o'), { pinRoot: root });
  obj.load();
  const cfg = obj.typedMap('weft_selftest_config', u32, selftestConfig);
  cfg.update(0, { events_per_run: PER_RUN });
  cfg.close();
  pinFd(obj.program('weft_selftest_emit').fd, `${root}/emit`);
  pinFd(obj.map('weft_selftest_events').fd, `${root}/events`);
  pinFd(obj.map('weft_selftest_stats').fd, `${root}/stats`);
  const stats = obj.typedMap('weft_selftest_stats', u32, selftestStats);
  return { root, obj, stats };
}

function producer(root: string, rate: number, total: number) {
  return spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(projectRoot, 'bench/ringbuf-producer.ts'),
      `${root}/emit`,
      String(rate),
      String(total),
      String(PER_RUN),
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
}

async function jsTrial(n: number, rate: number): Promise<Trial> {
  const { root, obj, stats } = setUp(n);
  const reader = new RingBufferReader(obj.map('weft_selftest_events'));
  const total = (rate || 4_000_000) * SECONDS;
  let delivered = 0;
  let gaps = 0;
  let next = 0n;
  let first = 0;
  const onEvent = (buf: Buffer, off: number) => {
    const seq = buf.readBigUInt64LE(off);
    if (seq !== next) gaps++;
    next = seq + 1n;
  };
  const child = producer(root, rate, total);
  const exited = once(child, 'exit');
  let producerDone = false;
  void exited.then(() => {
    producerDone = true;
  });
  const cpu0 = process.cpuUsage();
  let t1 = 0;
  for (;;) {
    const got = reader.drain(onEvent);
    if (got > 0 && first === 0) first = performance.now();
    delivered += got;
    if (got > 0) t1 = performance.now();
    if (producerDone) {
      const s = stats.lookup(0)!;
      if (delivered + s.dropped >= s.produced && reader.pending() === 0) break;
    }
    if (got === 0) await reader.wait(20);
  }
  const cpu = process.cpuUsage(cpu0);
  const s = stats.lookup(0)!;
  const seconds = (t1 - first) / 1000;
  reader.close();
  stats.close();
  obj.close();
  rmSync(root, { recursive: true, force: true });
  return {
    reader: 'weft-js',
    targetRate: rate || 'max',
    produced: s.produced,
    delivered,
    dropped: s.dropped,
    gaps,
    seconds,
    eventsPerSecond: delivered / seconds,
    readerCpuShare: (cpu.user + cpu.system) / 1e6 / seconds,
    lossFree: s.dropped === 0 && gaps === 0 && delivered === s.produced,
  };
}

async function cTrial(n: number, rate: number, peer: string): Promise<Trial> {
  const { root, obj, stats } = setUp(n);
  const total = (rate || 4_000_000) * SECONDS;
  const reader = spawn(peer, [`${root}/events`, `${root}/stats`, String(total)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: reader.stdout! })[Symbol.asyncIterator]();
  await lines.next(); // "ready"
  const child = producer(root, rate, total);
  const result = JSON.parse(String((await lines.next()).value)) as {
    delivered: number;
    gaps: number;
    produced: number;
    dropped: number;
    seconds: number;
    cpuSeconds: number;
  };
  await once(child, 'exit').catch(() => undefined);
  stats.close();
  obj.close();
  rmSync(root, { recursive: true, force: true });
  return {
    reader: 'libbpf-c',
    targetRate: rate || 'max',
    produced: result.produced,
    delivered: result.delivered,
    dropped: result.dropped,
    gaps: result.gaps,
    seconds: result.seconds,
    eventsPerSecond: result.delivered / result.seconds,
    readerCpuShare: result.cpuSeconds / result.seconds,
    lossFree: result.dropped === 0 && result.gaps === 0 && result.delivered === result.produced,
  };
}

function buildPeer(): string {
  const out = join(tmpdir(), `weft-ringbuf-reader-${process.pid}`);
  execFileSync('gcc', ['-O2', '-o', out, join(projectRoot, 'bench/peers/ringbuf-reader.c'), '-lbpf'], {
    stdio: 'inherit',
  });
  return out;
}

async function main() {
  checkEnvironment();
  const peer = buildPeer();
  const trials: Trial[] = [];
  try {
    let n = 0;
    for (const rate of rates) {
      trials.push(await jsTrial(n++, rate));
      trials.push(await cTrial(n++, rate, peer));
    }
  } finally {
    rmSync(peer, { force: true });
    if (existsSync(pinBase)) rmSync(pinBase, { recursive: true, force: true });
  }
  const js = trials.filter((t) => t.reader === 'weft-js');
  const c = trials.filter((t) => t.reader === 'libbpf-c');
  const bestLossFree = (ts: Trial[]) =>
    Math.max(0, ...ts.filter((t) => t.lossFree).map((t) => t.eventsPerSecond));
  const oneMillion = js.find((t) => t.targetRate === 1_000_000);
  report(
    'ringbuf',
    {
      eventSize: 64,
      secondsPerTrial: SECONDS,
      trials,
      summary: {
        jsBestLossFreeEventsPerSecond: bestLossFree(js),
        cBestLossFreeEventsPerSecond: bestLossFree(c),
        jsOverC: bestLossFree(js) / bestLossFree(c),
        goal: '1,000,000 64-byte events/s with no loss',
        goalMet: Boolean(oneMillion?.lossFree && oneMillion.eventsPerSecond >= 950_000),
      },
    },
    {
      headers: [
        'reader',
        'target/s',
        'delivered/s',
        'produced',
        'dropped',
        'gaps',
        'reader CPU',
        'loss-free',
      ],
      rows: trials.map((t) => [
        t.reader,
        String(t.targetRate),
        fmt(t.eventsPerSecond / 1e6, 3) + 'M',
        String(t.produced),
        String(t.dropped),
        String(t.gaps),
        `${fmt(t.readerCpuShare * 100, 0)}%`,
        t.lossFree ? 'yes' : 'NO',
      ]),
    },
  );
}

await main();
