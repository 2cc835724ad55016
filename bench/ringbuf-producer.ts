// The ring-buffer benchmark's producer, in its own process so the reader's CPU is its own:
// runs the pinned weft_selftest_emit program through BPF_PROG_TEST_RUN, paced to `rate`
// events/s (0 = as fast as the kernel goes), until `total` events are produced.
import { openLibraries } from '../src/datapath/native.js';
import { openPinnedProgram, testRun } from '../src/datapath/testrun.js';

const [progPin, rateArg, totalArg, perRunArg] = process.argv.slice(2);
const rate = Number(rateArg);
const total = Number(totalArg);
const perRun = Number(perRunArg);
openLibraries();
const prog = openPinnedProgram(progPin!);
const packet = Buffer.alloc(64);
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const start = performance.now();
let produced = 0;
// At most ~1 ms of events per syscall, so pacing stays smooth.
const maxRuns = rate > 0 ? Math.max(1, Math.ceil(rate / 1000 / perRun)) : 2048;
while (produced < total) {
  const due = rate > 0 ? (rate * (performance.now() - start)) / 1000 : total;
  if (produced >= due) {
    Atomics.wait(sleeper, 0, 0, 0.2);
    continue;
  }
  const runs = Math.min(maxRuns, Math.ceil((Math.min(due, total) - produced) / perRun));
  testRun(prog, { data: packet, repeat: runs });
  produced += runs * perRun;
}
process.stdout.write(`${JSON.stringify({ produced, seconds: (performance.now() - start) / 1000 })}\n`);
