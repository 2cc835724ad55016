import { parseArgs } from 'node:util';
import { validateClusterName } from '../devcluster/naming.js';
import { WeftError } from '../shared/errors.js';
import { formatTable, parseOutputFormat, printJson } from './output.js';

/**
 * `weft devcluster`: a kind-like cluster of network namespaces on this host. Subcommands
 * follow kind's verbs and output (up ≈ create cluster, down ≈ delete cluster).
 */

const USAGE = `Usage: weft devcluster <command> [flags]

A local Kubernetes-like cluster made of network namespaces: nodes and pods are network
namespaces on a bridge, the API server is weft's dev server, and kubectl works against it.

Commands:
  up          create a cluster and wait until its nodes are Ready
  down        delete a cluster and everything it made
  start       start a stopped cluster's daemon again (pods and agents kept running)
  status      show a cluster's nodes, pods and API endpoint
  list        list clusters on this host
  kubeconfig  print the path of a cluster's kubeconfig
  exec        run a command inside a pod (its network namespace and cgroup)
  logs        print a container's output

Run 'weft devcluster <command> --help' for a command's flags.`;

const DEFAULT_NAME = 'dev';

const help: Record<string, string> = {
  up: `Usage: weft devcluster up [flags]

Creates a cluster: a bridge, one network namespace per node (<name>-control-plane,
<name>-worker, <name>-worker2, ...), the API server, the EndpointSlice controller, a scheduler,
one kubelet and one weft agent per node; waits until every node is Ready and every agent is
ready. The cluster has no kube-proxy: Services work through weft.

Flags:
      --name string           cluster name (default "dev")
      --nodes int             number of nodes, all schedulable (default 2)
      --pod-cidr string       pod network; each node gets a /24 of it (default "10.244.0.0/16")
      --service-cidr string   Service ClusterIP range (default "10.96.0.0/12")
      --wait duration         how long to wait for the nodes to be Ready (default 2m)
      --retain                keep a half-made cluster when creation fails (for debugging)
      --no-agent              start no weft agent (no Service then works: there is no kube-proxy)`,
  down: `Usage: weft devcluster down [--name dev]

Deletes a cluster: its processes, pods, nodes, bridge, cgroups, BPF pins and record. Works on
half-made or crashed clusters too; deleting a cluster that does not exist is not an error.`,
  start: `Usage: weft devcluster start [--name dev] [--wait 2m]

Starts the daemon (API server, controllers, kubelets, agent supervisor) of a cluster whose daemon
is not running: stopped with SIGTERM, killed or crashed. Pods and agents keep running while it is
down; the new daemon listens on the same API port when that is free (kubeconfigs stay valid) and
takes over the agents that still run instead of starting second ones. Waits until the nodes and
agents are ready.`,
  status: `Usage: weft devcluster status [--name dev] [-o table|json]`,
  list: `Usage: weft devcluster list [-o table|json]`,
  kubeconfig: `Usage: weft devcluster kubeconfig [--name dev] [--internal]

Prints the path of the cluster's kubeconfig (use: export KUBECONFIG=$(weft devcluster kubeconfig)).
--internal prints the one for processes inside the cluster (API server on the bridge IP).`,
  logs: `Usage: weft devcluster logs [--name dev] [-n namespace] <namespace>/<pod>|<pod> [-c container] [-p] [-f] [--tail N]

Prints a container's output (stdout and stderr) from the kubelet's log files.
  -c, --container   the container (default: the pod's only or last container)
  -p, --previous    the previous run of a restarted container
  -f, --follow      keep printing what is written
      --tail int    only the last N lines`,
  exec: `Usage: weft devcluster exec [--name dev] [-n namespace] <namespace>/<pod>|<pod> [-c container] -- <command> [args...]

Runs a host command inside the pod's network namespace and cgroup, with the container's
environment; stdin, stdout, stderr and the exit code are passed through.`,
};

export async function run(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === '-h' || sub === '--help' || sub === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return sub === undefined ? 2 : 0;
  }
  if (rest.includes('-h') || rest.includes('--help')) {
    const text = help[sub];
    if (text && !(sub === 'exec' && rest.indexOf('--') >= 0 && rest.indexOf('--') < rest.indexOf('--help'))) {
      process.stdout.write(`${text}\n`);
      return 0;
    }
  }
  switch (sub) {
    case 'up':
    case 'create':
      return up(rest);
    case 'down':
    case 'delete':
      return down(rest);
    case 'start':
      return start(rest);
    case 'status':
      return status(rest);
    case 'list':
    case 'ls':
      return list(rest);
    case 'kubeconfig':
      return kubeconfig(rest);
    case 'exec':
      return exec(rest);
    case 'logs':
      return logs(rest);
    case 'serve':
      return serve(rest);
    case 'prober': {
      const { runProberHelper } = await import('../devcluster/kubelet/network-prober.js');
      return runProberHelper();
    }
    default:
      throw new WeftError('WEFT_ERR_USAGE', `unknown command "${sub}" for "weft devcluster"\n\n${USAGE}`);
  }
}

/** --name, else $WEFT_DEVCLUSTER_NAME, else "dev"; validated, since it names host paths. */
function nameFlag(value: string | undefined): string {
  return validateClusterName(value ?? process.env.WEFT_DEVCLUSTER_NAME ?? DEFAULT_NAME);
}

async function up(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      name: { type: 'string' },
      nodes: { type: 'string', default: '2' },
      'pod-cidr': { type: 'string', default: '10.244.0.0/16' },
      'service-cidr': { type: 'string', default: '10.96.0.0/12' },
      wait: { type: 'string', default: '2m' },
      retain: { type: 'boolean', default: false },
      'no-agent': { type: 'boolean', default: false },
    },
    allowPositionals: true,
  });
  rejectPositionals('up', positionals);
  const nodes = Number(values.nodes);
  if (!/^\d+$/.test(values.nodes) || !Number.isInteger(nodes)) {
    throw new WeftError(
      'WEFT_ERR_USAGE',
      `invalid argument "${values.nodes}" for "--nodes" flag: not a whole number`,
    );
  }
  const { createCluster } = await import('../devcluster/up.js');
  const name = nameFlag(values.name);
  const rec = await createCluster(
    {
      name,
      nodes,
      podCIDR: values['pod-cidr'],
      serviceCIDR: values['service-cidr'],
      waitMs: parseDuration('--wait', values.wait),
      retain: values.retain,
      agents: !values['no-agent'],
    },
    progressPrinter(),
  );
  const { recordPaths } = await import('../devcluster/cluster-record.js');
  const kubeconfigPath = recordPaths(rec.name).kubeconfig;
  process.stderr.write(
    `Kubeconfig written to ${kubeconfigPath}\nYou can now use your cluster with:\n\nexport KUBECONFIG=${kubeconfigPath}\nkubectl get nodes\n\nDelete it with: weft devcluster down --name ${rec.name}\n`,
  );
  return 0;
}

async function down(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { name: { type: 'string' } },
    allowPositionals: true,
  });
  rejectPositionals('down', positionals);
  const { teardownCluster } = await import('../devcluster/teardown.js');
  const name = nameFlag(values.name);
  requireRoot();
  let announced = false;
  const report = await teardownCluster(name, {
    onStep: () => {
      if (!announced) process.stderr.write(`Deleting cluster "${name}" ...\n`);
      announced = true;
    },
  });
  if (!report.existed) {
    process.stderr.write(`No devcluster named "${name}" exists; nothing to delete.\n`);
    return 0;
  }
  for (const w of report.warnings) process.stderr.write(`Warning: ${w}\n`);
  if (report.errors.length > 0) {
    throw new WeftError(
      'WEFT_ERR_TEARDOWN',
      `cluster "${name}" was not removed completely:\n  ${report.errors.join('\n  ')}\nFix the cause and run 'weft devcluster down --name ${name}' again.`,
    );
  }
  process.stderr.write(`Deleted cluster "${name}".\n`);
  return 0;
}

async function start(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { name: { type: 'string' }, wait: { type: 'string', default: '2m' } },
    allowPositionals: true,
  });
  rejectPositionals('start', positionals);
  const name = nameFlag(values.name);
  const { startClusterDaemon } = await import('../devcluster/up.js');
  await startClusterDaemon(name, parseDuration('--wait', values.wait), progressPrinter());
  process.stderr.write(`Cluster "${name}" is running.\n`);
  return 0;
}

async function status(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { name: { type: 'string' }, output: { type: 'string', short: 'o' } },
    allowPositionals: true,
  });
  rejectPositionals('status', positionals);
  const format = parseOutputFormat(values.output);
  const { clusterStatus } = await import('../devcluster/cluster-status.js');
  const view = await clusterStatus(nameFlag(values.name));
  if (format === 'json') {
    printJson(view);
    return 0;
  }
  const lines = [
    `Cluster:     ${view.name} (${view.state})`,
    `API server:  ${view.api.hostURL ?? '-'}${view.api.reachable ? '' : view.daemon?.running ? ' (not answering)' : ' (not running)'}`,
    `  internal:  ${view.api.internalURL ?? '-'}`,
    `Kubeconfig:  ${view.kubeconfig ?? '-'}`,
    `Networks:    nodes ${view.networks.nodes} (bridge ${view.networks.bridge} ${view.networks.bridgeIP}), pods ${view.networks.pods}, services ${view.networks.services}`,
    '',
    formatTable(
      ['NODE', 'STATUS', 'ROLES', 'INTERNAL-IP', 'POD-CIDR', 'WEFT-AGENT', 'CGROUP'],
      view.nodes.map((n) => [
        n.name,
        n.ready === 'True' ? 'Ready' : n.ready === 'False' ? 'NotReady' : 'Unknown',
        n.roles,
        n.internalIP,
        n.podCIDR,
        n.agent,
        n.cgroup,
      ]),
    ),
    '',
    view.pods.length === 0
      ? 'No pods.'
      : formatTable(
          ['NAMESPACE', 'NAME', 'READY', 'STATUS', 'RESTARTS', 'IP', 'NODE'],
          view.pods.map((p) => [
            p.namespace,
            p.name,
            p.ready,
            p.phase,
            String(p.restarts),
            p.ip || '<none>',
            p.node || '<none>',
          ]),
        ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

async function list(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { output: { type: 'string', short: 'o' } },
    allowPositionals: true,
  });
  rejectPositionals('list', positionals);
  const format = parseOutputFormat(values.output);
  const { listClusters } = await import('../devcluster/cluster-status.js');
  const clusters = listClusters();
  if (format === 'json') {
    printJson(clusters);
    return 0;
  }
  if (clusters.length === 0) {
    process.stderr.write('No devclusters found.\n');
    return 0;
  }
  process.stdout.write(
    `${formatTable(
      ['NAME', 'STATUS', 'NODES', 'API', 'CREATED'],
      clusters.map((c) => [c.name, c.state, String(c.nodes), c.api ?? '-', c.createdAt ?? '-']),
    )}\n`,
  );
  return 0;
}

async function kubeconfig(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { name: { type: 'string' }, internal: { type: 'boolean', default: false } },
    allowPositionals: true,
  });
  rejectPositionals('kubeconfig', positionals);
  const name = nameFlag(values.name);
  const { readClusterRecord, readDaemonRecord, recordPaths } = await import(
    '../devcluster/cluster-record.js'
  );
  if (!readClusterRecord(name)) {
    throw new WeftError(
      'WEFT_ERR_NOT_FOUND',
      `no devcluster named "${name}"; create one with 'weft devcluster up --name ${name}'`,
    );
  }
  const daemon = readDaemonRecord(name);
  const paths = recordPaths(name);
  if (!daemon)
    throw new WeftError(
      'WEFT_ERR_NOT_READY',
      `cluster "${name}" has no API server yet (is it still being created?)`,
    );
  process.stdout.write(`${values.internal ? paths.internalKubeconfig : paths.kubeconfig}\n`);
  return 0;
}

async function exec(args: string[]): Promise<number> {
  const dashdash = args.indexOf('--');
  if (dashdash < 0) {
    throw new WeftError(
      'WEFT_ERR_USAGE',
      'you must specify the command after --, e.g. weft devcluster exec default/web -- curl -s 10.244.1.2:8080',
    );
  }
  const command = args.slice(dashdash + 1);
  const { values, positionals } = parseArgs({
    args: args.slice(0, dashdash),
    options: {
      name: { type: 'string' },
      namespace: { type: 'string', short: 'n' },
      container: { type: 'string', short: 'c' },
    },
    allowPositionals: true,
  });
  if (positionals.length !== 1) {
    throw new WeftError(
      'WEFT_ERR_USAGE',
      'expected exactly one pod: weft devcluster exec <namespace>/<pod> -- <command>',
    );
  }
  if (command.length === 0)
    throw new WeftError('WEFT_ERR_USAGE', 'you must specify at least one command after --');
  const { namespace, pod } = podRef(positionals[0] ?? '', values.namespace);
  const { execInPod } = await import('../devcluster/exec.js');
  return execInPod({ cluster: nameFlag(values.name), namespace, pod, container: values.container, command });
}

async function logs(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      name: { type: 'string' },
      namespace: { type: 'string', short: 'n' },
      container: { type: 'string', short: 'c' },
      previous: { type: 'boolean', short: 'p', default: false },
      follow: { type: 'boolean', short: 'f', default: false },
      tail: { type: 'string' },
    },
    allowPositionals: true,
  });
  if (positionals.length !== 1) {
    throw new WeftError('WEFT_ERR_USAGE', 'expected exactly one pod: weft devcluster logs <namespace>/<pod>');
  }
  const { namespace, pod } = podRef(positionals[0] ?? '', values.namespace);
  let tailLines: number | undefined;
  if (values.tail !== undefined) {
    if (!/^-?\d+$/.test(values.tail)) {
      throw new WeftError(
        'WEFT_ERR_USAGE',
        `invalid argument "${values.tail}" for "--tail" flag: not a whole number`,
      );
    }
    tailLines = Number(values.tail) < 0 ? undefined : Number(values.tail);
  }
  const { containerLogFile, copyLog } = await import('../devcluster/container-logs.js');
  const file = containerLogFile({
    cluster: nameFlag(values.name),
    namespace,
    pod,
    container: values.container,
    previous: values.previous,
  });
  let stopped = false;
  process.once('SIGINT', () => {
    stopped = true;
  });
  await copyLog(file, process.stdout, { follow: values.follow, tailLines, stopped: () => stopped });
  return 0;
}

/** `<namespace>/<pod>`, or `<pod>` in -n's namespace (default "default"), like kubectl. */
function podRef(ref: string, namespaceFlag: string | undefined): { namespace: string; pod: string } {
  const slash = ref.indexOf('/');
  const namespace = slash >= 0 ? ref.slice(0, slash) : (namespaceFlag ?? 'default');
  const pod = slash >= 0 ? ref.slice(slash + 1) : ref;
  if (!namespace || !pod || pod.includes('/')) {
    throw new WeftError('WEFT_ERR_USAGE', `invalid pod "${ref}": expected <namespace>/<pod> or <pod>`);
  }
  return { namespace, pod };
}

async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { name: { type: 'string' } } });
  const { serveCluster } = await import('../devcluster/daemon.js');
  return serveCluster(nameFlag(values.name));
}

function rejectPositionals(cmd: string, positionals: string[]): void {
  if (positionals.length > 0) {
    throw new WeftError(
      'WEFT_ERR_USAGE',
      `unexpected argument "${positionals[0]}" for "weft devcluster ${cmd}"`,
    );
  }
}

function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new WeftError(
      'WEFT_ERR_PRIVILEGES',
      'weft devcluster needs root (network namespaces, cgroups); run it with sudo',
    );
  }
}

/** Go-style durations as kind takes them: 90s, 2m, 1m30s, 500ms; a bare number is seconds. */
export function parseDuration(flag: string, text: string): number {
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let rest = text;
  while (rest.length > 0) {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)/.exec(rest);
    if (!m)
      throw new WeftError(
        'WEFT_ERR_USAGE',
        `invalid argument "${text}" for "${flag}" flag: expected a duration such as 90s or 2m`,
      );
    total += Number(m[1]) * (unit[m[2] ?? 's'] ?? 1000);
    rest = rest.slice(m[0].length);
  }
  if (text.length === 0) throw new WeftError('WEFT_ERR_USAGE', `invalid argument "" for "${flag}" flag`);
  return total;
}

/** kind-like step lines on stderr: "• step ..." while it runs on a terminal, then ✓ or ✗. */
function progressPrinter(): import('../devcluster/up.js').Progress {
  const tty = process.stderr.isTTY === true;
  return {
    line(text) {
      process.stderr.write(`${text}\n`);
    },
    async step(title, fn) {
      if (tty) process.stderr.write(` • ${title} ...`);
      try {
        const result = await fn();
        process.stderr.write(`${tty ? '\r\x1b[K' : ''} ✓ ${title}\n`);
        return result;
      } catch (err) {
        process.stderr.write(`${tty ? '\r\x1b[K' : ''} ✗ ${title}\n`);
        throw err;
      }
    },
  };
}
