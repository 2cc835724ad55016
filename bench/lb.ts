// Load balancing, weft against kube-proxy's iptables mode, in one run, side by side:
//   1. new-connection rate and p50/p99 latency to a pod IP directly, to a ClusterIP through
//      weft's socket LB, and to a ClusterIP through kube-proxy-shaped iptables rules, at 1,
//      1,000 and 10,000 Services of 3 endpoints (bench/lb-connections.ts);
//   2-4. the agent: full sync of 10,000 Services / 30,000 endpoints from the API server to the
//      maps (against iptables-restore of the same rules), EndpointSlice change → map update p99,
//      and agent RSS (bench/lb-agent.ts).
// Everything runs in network namespaces and cgroups the run creates and removes (named
// weft-bench-lb-<pid>...), also on failure and Ctrl-C.
//
//   node --import tsx bench/lb.ts [--quick] [--rounds N] [--seconds S] [--concurrency C] [--threads T]
//                                 [--counts 1,1000,10000] [--iptables nft|legacy] [--parts 1,2]
import { parseArgs } from 'node:util';
import { checkEnvironment } from '../src/datapath/environment.js';
import { type AgentResult, runAgent } from './lb-agent.js';
import { type ConnectionResult, runConnections } from './lb-connections.js';
import { BENCH_PREFIX, checkHostRanges, prepareBench, Teardown } from './lb-topology.js';
import { formatTable } from '../src/cli/output.js';
import { fmt, median, report } from './report.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    seconds: { type: 'string' },
    concurrency: { type: 'string' },
    threads: { type: 'string' },
    counts: { type: 'string' },
    iptables: { type: 'string', default: 'nft' },
    parts: { type: 'string', default: '1,2' },
    'agent-services': { type: 'string' },
    changes: { type: 'string' },
  },
});

const quick = args.quick ?? false;
const opts = {
  counts: (args.counts ?? (quick ? '1,10000' : '1,1000,10000')).split(',').map(Number),
  rounds: Number(args.rounds ?? (quick ? 1 : 9)),
  seconds: Number(args.seconds ?? (quick ? 1 : 1.5)),
  warmupSeconds: quick ? 0.2 : 0.3,
  concurrency: Number(args.concurrency ?? 8),
  threads: Number(args.threads ?? 2),
  iptablesRestore: args.iptables === 'legacy' ? 'iptables-legacy-restore' : 'iptables-restore',
};
const parts = new Set((args.parts ?? '1,2').split(','));
const agentOpts = {
  services: Number(args['agent-services'] ?? 10_000),
  coldStarts: quick ? 1 : 3,
  changes: Number(args.changes ?? (quick ? 40 : 200)),
  concurrency: opts.concurrency,
  threads: opts.threads,
};
for (const n of opts.counts) {
  if (!Number.isInteger(n) || n < 1 || n > 60_000)
    throw new Error(`--counts: ${n} is not a count from 1 to 60000`);
}

const tag = `${BENCH_PREFIX}${process.pid}`;
const teardown = new Teardown();
const log = (line: string) => process.stderr.write(`${line}\n`);

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    log(`lb: ${signal}: cleaning up`);
    void teardown.run().finally(() => process.exit(130));
  });
}

const GOAL_RATE_RATIO = 0.95;

async function main() {
  checkEnvironment();
  checkHostRanges();
  let connections: ConnectionResult | undefined;
  let agent: AgentResult | undefined;
  try {
    const env = await prepareBench(tag, opts.iptablesRestore, teardown);
    if (parts.has('1')) connections = await runConnections(opts, env, teardown, log);
    if (parts.has('2')) agent = await runAgent(agentOpts, env, teardown, log);
  } finally {
    await teardown.run();
  }

  /** met null: not measured, or (with a note) not resolvable from these figures. */
  const goals: Array<{ goal: string; met: boolean | null; figure: string; note?: string }> = [];
  const rows: string[][] = [];
  if (connections) {
    // Judged on the rate per CPU second: every run is CPU-bound and other work on this shared
    // machine takes 0.5-1.5 of its 2 cores at random, which moves the measured rate of a 1.5 s run
    // by ±30% (see each count's middle half) but CPU per connection by a few percent.
    const worstCpu = Math.min(...connections.perCount.map((c) => c.cpuRatios.weftOverDirect));
    goals.push({
      goal: `ClusterIP through weft at least ${GOAL_RATE_RATIO}x the direct pod-IP rate at every Service count (rate per CPU second)`,
      met: worstCpu >= GOAL_RATE_RATIO,
      figure: connections.perCount
        .map((c) => `${c.services}: ${fmt(c.cpuRatios.weftOverDirect)}x`)
        .join(', '),
    });
    // The measured rate settles it only when the middle half of the rounds is on one side.
    const low = Math.min(...connections.perCount.map((c) => c.ratioIqr.weftOverDirect[0]));
    const high = Math.min(...connections.perCount.map((c) => c.ratioIqr.weftOverDirect[1]));
    goals.push({
      goal: 'the same, from the measured rate (median of per-round ratios)',
      met: low >= GOAL_RATE_RATIO ? true : high < GOAL_RATE_RATIO ? false : null,
      note: 'within noise',
      figure: connections.perCount
        .map(
          (c) =>
            `${c.services}: ${fmt(c.ratios.weftOverDirect)}x (middle half ${fmt(c.ratioIqr.weftOverDirect[0])}-${fmt(c.ratioIqr.weftOverDirect[1])})`,
        )
        .join(', '),
    });
    for (const c of connections.perCount) {
      for (const name of ['direct', 'weft', 'iptables'] as const) {
        const s = c.cases[name];
        const key = name === 'weft' ? 'weftOverDirect' : 'iptablesOverDirect';
        const iqr = name === 'direct' ? undefined : c.ratioIqr[key];
        rows.push([
          String(c.services),
          name === 'direct'
            ? 'pod IP direct'
            : name === 'weft'
              ? 'ClusterIP via weft'
              : 'ClusterIP via iptables',
          fmt(s.rate, 0),
          name === 'direct' ? '1.00x' : `${fmt(c.ratios[key])}x`,
          iqr ? `${fmt(iqr[0])}-${fmt(iqr[1])}` : '',
          fmt(s.cpuUsPerConnection, 0),
          name === 'direct' ? '1.00x' : `${fmt(c.cpuRatios[key])}x`,
          fmt(s.p50Us, 0),
          fmt(s.p99Us, 0),
          fmt(s.otherCores, 1),
        ]);
      }
    }
  }
  if (agent) {
    const a = agent;
    goals.push({
      goal: `full sync of ${a.services} Services under 300 ms (informers synced → maps programmed)`,
      met: a.fullSync.medianSeconds < 0.3,
      figure: `${fmt(a.fullSync.medianSeconds * 1000, 0)} ms (median of ${a.fullSync.agentSeconds.length}); iptables-restore ${fmt(a.iptablesRestorePeer.medianSeconds * 1000, 0)} ms`,
    });
    goals.push({
      goal: 'EndpointSlice change to datapath p99 under 100 ms',
      met: a.endpointChange.p99Ms < 100 && a.endpointChange.timedOut === 0,
      figure: `p99 ${fmt(a.endpointChange.p99Ms, 1)} ms over ${a.endpointChange.changes} changes${a.endpointChange.timedOut ? `, ${a.endpointChange.timedOut} not seen within 5 s` : ''}`,
    });
    const rss = Math.max(...a.rss.afterColdSyncMiB, a.rss.afterWarmSyncMiB, a.rss.afterChangesMiB);
    goals.push({
      goal: `agent RSS under 150 MB at ${a.services} Services`,
      met: rss * 1.048576 < 150,
      figure: `${fmt(rss * 1.048576, 0)} MB (VmRSS; after cold sync ${a.rss.afterColdSyncMiB.map((x) => fmt(x, 0)).join('/')} MiB, after changes ${fmt(a.rss.afterChangesMiB, 0)} MiB)`,
    });
  } else if (parts.has('2')) {
    goals.push({ goal: 'agent goals', met: null, figure: 'part 2 did not run' });
  }
  const agentRows: string[][] = agent
    ? [
        [
          `full sync, ${agent.services} Services / ${agent.endpoints} endpoints (cold, median)`,
          `${fmt(agent.fullSync.medianSeconds * 1000, 0)} ms`,
          `${fmt(agent.iptablesRestorePeer.medianSeconds * 1000, 0)} ms (iptables-restore)`,
        ],
        [
          'list + full sync (agent log: started → first full sync done)',
          `${fmt(median(agent.fullSync.listAndSyncSeconds) * 1000, 0)} ms`,
          '',
        ],
        [
          'restart over programmed maps: full sync',
          `${fmt(agent.fullSync.warmRestart.agentSeconds * 1000, 0)} ms`,
          '',
        ],
        [
          `EndpointSlice change → pinned map, ${agent.endpointChange.changes} changes`,
          `p50 ${fmt(agent.endpointChange.p50Ms, 1)} / p99 ${fmt(agent.endpointChange.p99Ms, 1)} ms`,
          '',
        ],
        [
          'agent VmRSS after sync / after changes',
          `${fmt(median(agent.rss.afterColdSyncMiB), 0)} / ${fmt(agent.rss.afterChangesMiB, 0)} MiB`,
          '',
        ],
      ]
    : [];
  const measured = rows.length > 0;
  report(
    'lb',
    {
      config: { ...opts, quick, parts: [...parts], agent: agentOpts },
      connections,
      agent,
      goals,
    },
    measured
      ? {
          headers: [
            'services',
            'path',
            'conn/s',
            'vs direct',
            'middle half',
            'CPU µs/conn',
            'vs direct (CPU)',
            'p50 µs',
            'p99 µs',
            'others (cores)',
          ],
          rows,
        }
      : { headers: ['agent', 'weft', 'peer'], rows: agentRows },
  );
  if (measured && agentRows.length > 0) {
    process.stderr.write(`${formatTable(['agent', 'weft', 'peer'], agentRows)}\n\n`);
  }
  process.stderr.write(
    `${formatTable(
      ['goal', 'met', 'figure'],
      goals.map((g) => [g.goal, g.met === null ? (g.note ?? 'n/a') : g.met ? 'MET' : 'NOT MET', g.figure]),
    )}\n`,
  );
}

main().catch(async (err) => {
  log(`lb: ${(err as Error).stack ?? err}`);
  await teardown.run();
  process.exit(1);
});
