// Map sync: write 100,000 load-balancing entries (50,000 frontend slots in weft_lb4_services,
// 50,000 backends in weft_lb4_backends) from Node with one bpf_map_update_elem per entry, with
// bpf_map_update_batch, and with the pipelined batch writer; `bpftool batch` writing the same
// entries is the reference, in the same run. Goal: batch at least 1,000,000 entries/s.
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkEnvironment } from '../src/datapath/environment.js';
import type { BpfMap } from '../src/datapath/map.js';
import { BpfObject } from '../src/datapath/object.js';
import {
  type Lb4Backend,
  type Lb4Key,
  type LbService,
  lb4Backend,
  lb4Key,
  lbService,
} from '../src/datapath/lbmap.js';
import { bpfObjectPath } from '../src/shared/self.js';
import { fmt, median, report } from './report.js';

const FRONTENDS = 50_000;
const BACKENDS = 50_000;
const ROUNDS = Number(process.env.WEFT_BENCH_ROUNDS ?? 3);
const pinRoot = `/sys/fs/bpf/weft-bench-mapsync-${process.pid}`;

const ip = (base: number, i: number) =>
  `${(base >>> 24) & 255}.${(base >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`;
const serviceEntries: Array<[Lb4Key, LbService]> = [];
for (let i = 0; i < FRONTENDS; i++) {
  // 12,500 frontends × (master + 3 slots) = 50,000 service-map entries.
  const f = Math.floor(i / 4);
  const slot = i % 4;
  serviceEntries.push([
    { address: ip(0x0a600000, f), dport: 80 + (f >>> 16), backend_slot: slot, proto: 6, scope: 0 },
    {
      backend_id: slot === 0 ? 0 : f * 3 + slot,
      count: slot === 0 ? 3 : 0,
      rev_nat_index: (f % 65535) + 1,
      flags: 0,
      flags2: 0,
    },
  ]);
}
const backendEntries: Array<[number, Lb4Backend]> = [];
for (let i = 0; i < BACKENDS; i++) {
  backendEntries.push([
    i + 1,
    { address: ip(0x0af40000, i), port: 8080, proto: 6, flags: 0, cluster_id: 0, zone: 0 },
  ]);
}
const u32key = {
  size: 4,
  encode: (v: number, b: Buffer, o: number) => void b.writeUInt32LE(v, o),
  decode: (b: Buffer, o: number) => b.readUInt32LE(o),
};

interface Maps {
  services: BpfMap<Lb4Key, LbService>;
  backends: BpfMap<number, Lb4Backend>;
}

function clear(m: Maps) {
  m.services.deleteBatch(serviceEntries.map(([k]) => k));
  m.backends.deleteBatch(backendEntries.map(([k]) => k));
  if (m.services.count() + m.backends.count() !== 0) throw new Error('maps not empty after clear');
}

function verify(m: Maps) {
  const n = m.services.count() + m.backends.count();
  if (n !== FRONTENDS + BACKENDS) throw new Error(`expected ${FRONTENDS + BACKENDS} entries, found ${n}`);
}

async function time(label: string, m: Maps, write: () => void | Promise<void>): Promise<number> {
  const runs: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    clear(m);
    const t0 = performance.now();
    await write();
    runs.push(performance.now() - t0);
    verify(m);
  }
  process.stderr.write(`  ${label}: ${runs.map((x) => fmt(x, 1)).join(', ')} ms\n`);
  return median(runs);
}

function bpftoolBatchFile(): string {
  const hex = (codec: { size: number; encode(v: never, b: Buffer, o: number): void }, v: unknown) => {
    const b = Buffer.alloc(codec.size);
    codec.encode(v as never, b, 0);
    return [...b].map((x) => x.toString()).join(' ');
  };
  const lines: string[] = [];
  for (const [k, v] of serviceEntries) {
    lines.push(
      `map update pinned ${pinRoot}/weft_lb4_services key ${hex(lb4Key, k)} value ${hex(lbService, v)}`,
    );
  }
  for (const [k, v] of backendEntries) {
    lines.push(
      `map update pinned ${pinRoot}/weft_lb4_backends key ${hex(u32key, k)} value ${hex(lb4Backend, v)}`,
    );
  }
  const file = join(tmpdir(), `weft-bench-bpftool-${process.pid}.txt`);
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

async function main() {
  checkEnvironment();
  const obj = BpfObject.open(bpfObjectPath('sock_lb.bpf.o'), { pinRoot });
  const batchFile = bpftoolBatchFile();
  try {
    obj.load();
    const m: Maps = {
      services: obj.typedMap('weft_lb4_services', lb4Key, lbService),
      backends: obj.typedMap('weft_lb4_backends', u32key, lb4Backend),
    };
    const total = FRONTENDS + BACKENDS;
    process.stderr.write(`map-sync: ${total} entries, ${ROUNDS} rounds each (median)\n`);
    const perCall = await time('per-call update', m, () => {
      for (const [k, v] of serviceEntries) m.services.update(k, v);
      for (const [k, v] of backendEntries) m.backends.update(k, v);
    });
    const batch = await time('batch', m, () => {
      m.backends.updateBatch(backendEntries);
      m.services.updateBatch(serviceEntries);
    });
    const pipelined = await time('batch, pipelined', m, async () => {
      await m.backends.updateBatchAsync(backendEntries);
      await m.services.updateBatchAsync(serviceEntries);
    });
    const bpftool = await time('bpftool batch', m, () => {
      execFileSync('bpftool', ['batch', 'file', batchFile], { stdio: 'ignore' });
    });
    clear(m);
    m.services.close();
    m.backends.close();
    const rate = (ms: number) => total / (ms / 1000);
    report(
      'map-sync',
      {
        entries: total,
        rounds: ROUNDS,
        medianMs: { perCall, batch, batchPipelined: pipelined, bpftoolBatch: bpftool },
        entriesPerSecond: {
          perCall: rate(perCall),
          batch: rate(batch),
          batchPipelined: rate(pipelined),
          bpftoolBatch: rate(bpftool),
        },
        ratios: {
          batchOverPerCall: perCall / batch,
          batchOverBpftool: bpftool / batch,
          pipelinedOverBatch: batch / pipelined,
        },
        goal: 'batch at least 1,000,000 entries/s',
        goalMet: Math.max(rate(batch), rate(pipelined)) >= 1_000_000,
      },
      {
        headers: ['method', 'median ms', 'entries/s', 'vs bpftool'],
        rows: [
          [
            'per-call bpf_map_update_elem',
            fmt(perCall, 1),
            fmt(rate(perCall), 0),
            `${fmt(bpftool / perCall)}x`,
          ],
          ['bpf_map_update_batch', fmt(batch, 1), fmt(rate(batch), 0), `${fmt(bpftool / batch)}x`],
          ['batch, pipelined', fmt(pipelined, 1), fmt(rate(pipelined), 0), `${fmt(bpftool / pipelined)}x`],
          ['bpftool batch (reference)', fmt(bpftool, 1), fmt(rate(bpftool), 0), '1.00x'],
        ],
      },
    );
  } finally {
    obj.close();
    rmSync(pinRoot, { recursive: true, force: true });
    rmSync(batchFile, { force: true });
  }
}

await main();
