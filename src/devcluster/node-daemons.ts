import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { AGENT_NODE_FLAGS, DEFAULT_RUN_DIR } from '../agent/config.js';
import type { Logger } from '../shared/log.js';
import type { NodeRecord } from './cluster-record.js';
import {
  isRunning,
  type ProcessRecord,
  recordChild,
  signalRecorded,
  terminateRecorded,
} from './process-record.js';
import { netnsPath, sandboxArgv } from './sandbox-exec.js';

/**
 * Per-node system processes the daemon starts and supervises, the way kind runs a DaemonSet's
 * hostNetwork pods: in the node's network namespace and cgroup, with KUBECONFIG pointing at a
 * kubeconfig that reaches the API server over the bridge. The one node daemon is the weft
 * agent, as Cilium's agent is on a kind cluster without kube-proxy.
 */
export interface NodeDaemonSpec {
  /** Short name, used for logs and the process record: "agent". */
  name: string;
  argv(node: NodeRecord, ctx: { kubeconfig: string }): string[];
}

/** A node daemon's cgroup: a child of its node's, as a hostNetwork pod's would be. */
export function daemonCgroupDir(
  node: Pick<NodeRecord, 'cgroup'>,
  spec: Pick<NodeDaemonSpec, 'name'>,
): string {
  return join(node.cgroup, `weft-${spec.name}`);
}

/** The agents' /metrics, /healthz and /readyz port, on every address of the node (like Cilium's). */
export const AGENT_METRICS_PORT = 9962;

/** Where a node's agent keeps its API socket: the default, so `weft service list --node <node>` finds it. */
export function agentStateDir(node: string): string {
  return join(DEFAULT_RUN_DIR, node);
}

/**
 * `weft agent` for one node: the socket load-balancer on the node's cgroup (its pods' cgroups
 * are children of it, so it sees exactly them), NodePort on the node's eth0, maps and links
 * pinned under the node's own directory, so agents of several nodes on one kernel never share
 * maps (cilium/cilium#14951).
 */
export function weftAgentDaemon(weft: [string, string]): NodeDaemonSpec {
  return {
    name: 'agent',
    argv: (node, ctx) => [
      weft[0],
      ...AGENT_NODE_FLAGS,
      weft[1],
      'agent',
      '--node-name',
      node.name,
      '--kubeconfig',
      ctx.kubeconfig,
      '--cgroup-root',
      node.cgroup,
      '--bpf-root',
      dirname(dirname(node.pinDir)),
      '--state-dir',
      agentStateDir(node.name),
      '--devices',
      'eth0',
      '--prometheus-serve-addr',
      `:${AGENT_METRICS_PORT}`,
    ],
  };
}

/**
 * Back-off before restarting a node daemon that exited: 2 s, doubling up to 60 s for one that
 * keeps exiting. A run of at least STABLE_RUN_MS was healthy, so its exit starts again at 2 s
 * (a killed agent that had run for hours must not wait a minute because of old crashes).
 */
export const STABLE_RUN_MS = 60_000;

export function nextRestart(previousExits: number, ranMs: number): { exits: number; delayMs: number } {
  const exits = ranMs >= STABLE_RUN_MS ? 1 : previousExits + 1;
  return { exits, delayMs: Math.min(1_000 * 2 ** Math.min(exits, 6), 60_000) };
}

/** The record's role of a node daemon: "agent dev-worker". */
export function nodeDaemonRole(node: Pick<NodeRecord, 'name'>, spec: Pick<NodeDaemonSpec, 'name'>): string {
  return `${spec.name} ${node.name}`;
}

/**
 * While this file exists the supervisor does not start the node daemon: one that exits stays
 * down until the file is removed (then it starts at once). `<state dir>/nodes/<node>/<daemon>.hold`.
 */
export function nodeDaemonHoldFile(stateDir: string, node: string, daemon: string): string {
  return join(stateDir, 'nodes', node, `${daemon}.hold`);
}

export type TakeOver =
  /** Still running, and its kubeconfig still reaches the API server: keep it, watch it. */
  | { action: 'adopt'; rec: ProcessRecord }
  /** Still running, but the API server moved to another port it does not know: end it, start a new one. */
  | { action: 'replace'; rec: ProcessRecord }
  | { action: 'launch' };

/**
 * What a daemon that starts does about each node daemon (by role) that the previous daemon of
 * the cluster recorded. Node daemons outlive the daemon, as pods do; starting a second agent
 * next to a running one would fight over its socket and maps.
 */
export function takeOverPlan(
  roles: string[],
  previous: ProcessRecord[],
  opts: { alive: (rec: ProcessRecord) => boolean; apiEndpointChanged: boolean },
): Map<string, TakeOver> {
  const plan = new Map<string, TakeOver>();
  for (const role of roles) {
    const rec = previous.find((p) => p.role === role && opts.alive(p));
    if (!rec) plan.set(role, { action: 'launch' });
    else plan.set(role, opts.apiEndpointChanged ? { action: 'replace', rec } : { action: 'adopt', rec });
  }
  return plan;
}

/** How often adopted daemons (not our children: no exit event) and hold files are looked at. */
const POLL_MS = 250;

export class NodeDaemonSupervisor {
  /** role → the running process. */
  private readonly running = new Map<string, ProcessRecord>();
  /** Roles whose process we did not start (a previous daemon did): their exit is found by polling. */
  private readonly adopted = new Set<string>();
  /** Roles that exited while held: started when the hold file goes. */
  private readonly held = new Set<string>();
  private readonly exits = new Map<string, number>();
  private readonly startedAt = new Map<string, number>();
  private poller?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    private readonly opts: {
      nodes: NodeRecord[];
      specs: NodeDaemonSpec[];
      internalKubeconfig: string;
      logsDir: string;
      log: Logger;
      onProcessesChanged: (procs: ProcessRecord[]) => void;
      /** The cluster's state directory, for hold files; without it nothing is held. */
      stateDir?: string;
      /** What the previous daemon recorded (daemon.json helpers), to adopt what still runs. */
      previous?: ProcessRecord[];
      /** The API server is not where the previous daemon's was: running node daemons cannot reach it. */
      apiEndpointChanged?: boolean;
    },
  ) {}

  start(): void {
    const pairs = this.opts.nodes.flatMap((node) => this.opts.specs.map((spec) => ({ node, spec })));
    const plan = takeOverPlan(
      pairs.map((p) => nodeDaemonRole(p.node, p.spec)),
      this.opts.previous ?? [],
      { alive: isRunning, apiEndpointChanged: this.opts.apiEndpointChanged === true },
    );
    for (const { node, spec } of pairs) {
      const role = nodeDaemonRole(node, spec);
      const step = plan.get(role) ?? { action: 'launch' };
      if (step.action === 'adopt') {
        this.adopted.add(role);
        this.running.set(role, step.rec);
        this.startedAt.set(role, Date.now());
        this.opts.log.info(
          { node: node.name, daemon: spec.name, nodeDaemonPid: step.rec.pid },
          'node daemon adopted',
        );
      } else if (step.action === 'replace') {
        this.opts.log.info(
          { node: node.name, daemon: spec.name, nodeDaemonPid: step.rec.pid },
          'node daemon restarted: the API server moved to another port',
        );
        void terminateRecorded([step.rec], 10_000).then(() => this.launch(node, spec));
      } else {
        this.launch(node, spec);
      }
    }
    this.opts.onProcessesChanged([...this.running.values()]);
    this.poller = setInterval(() => this.poll(pairs), POLL_MS);
    this.poller.unref();
  }

  /** Stops supervising; the processes keep running until `down` (like the pods). */
  detach(): void {
    this.stopped = true;
    if (this.poller) clearInterval(this.poller);
  }

  /** Ends them (used when the daemon is asked to stop everything). */
  terminate(): void {
    this.detach();
    for (const rec of this.running.values()) signalRecorded(rec, 'SIGTERM');
  }

  private isHeld(node: NodeRecord, spec: NodeDaemonSpec): boolean {
    return (
      this.opts.stateDir !== undefined &&
      existsSync(nodeDaemonHoldFile(this.opts.stateDir, node.name, spec.name))
    );
  }

  private poll(pairs: Array<{ node: NodeRecord; spec: NodeDaemonSpec }>): void {
    if (this.stopped) return;
    for (const { node, spec } of pairs) {
      const role = nodeDaemonRole(node, spec);
      const rec = this.running.get(role);
      if (rec && this.adopted.has(role) && !isRunning(rec)) {
        this.adopted.delete(role);
        this.exited(node, spec, rec, { code: null, signal: null });
      } else if (this.held.has(role) && !this.isHeld(node, spec)) {
        this.held.delete(role);
        this.opts.log.info({ node: node.name, daemon: spec.name }, 'hold removed; starting node daemon');
        this.launch(node, spec);
      }
    }
  }

  private exited(
    node: NodeRecord,
    spec: NodeDaemonSpec,
    rec: ProcessRecord,
    how: { code: number | null; signal: NodeJS.Signals | null },
  ): void {
    const role = nodeDaemonRole(node, spec);
    if (this.running.get(role) === rec) this.running.delete(role);
    this.opts.onProcessesChanged([...this.running.values()]);
    if (this.stopped) return;
    const ranMs = Date.now() - (this.startedAt.get(role) ?? Date.now());
    if (this.isHeld(node, spec)) {
      this.held.add(role);
      this.opts.log.warn(
        { node: node.name, daemon: spec.name, nodeDaemonPid: rec.pid, ...how, ranMs },
        'node daemon exited; held, not restarting until the hold file is removed',
      );
      return;
    }
    const next = nextRestart(this.exits.get(role) ?? 0, ranMs);
    this.exits.set(role, next.exits);
    this.opts.log.warn(
      {
        node: node.name,
        daemon: spec.name,
        nodeDaemonPid: rec.pid,
        ...how,
        ranMs,
        restartInMs: next.delayMs,
      },
      'node daemon exited',
    );
    setTimeout(() => this.launch(node, spec), next.delayMs).unref();
  }

  private launch(node: NodeRecord, spec: NodeDaemonSpec): void {
    if (this.stopped) return;
    const role = nodeDaemonRole(node, spec);
    if (this.running.has(role)) return;
    if (this.isHeld(node, spec)) {
      this.held.add(role);
      return;
    }
    const logFile = join(this.opts.logsDir, 'nodes', node.name, `${spec.name}.log`);
    mkdirSync(join(this.opts.logsDir, 'nodes', node.name), { recursive: true });
    const fd = openSync(logFile, 'a');
    try {
      // Its own child of the node's cgroup, like a hostNetwork pod's: under the node's socket
      // load-balancer, and the node's directory itself holds no processes.
      const cgroup = daemonCgroupDir(node, spec);
      mkdirSync(cgroup, { recursive: true });
      const argv = sandboxArgv(
        cgroup,
        netnsPath(node.netns),
        spec.argv(node, { kubeconfig: this.opts.internalKubeconfig }),
      );
      const child = spawn(argv[0] ?? 'sh', argv.slice(1), {
        detached: true,
        stdio: ['ignore', fd, fd],
        env: { ...process.env, KUBECONFIG: this.opts.internalKubeconfig, NODE_NAME: node.name },
      });
      const rec = child.pid === undefined ? undefined : recordChild(child.pid, role);
      if (rec) {
        this.running.set(role, rec);
        this.startedAt.set(role, Date.now());
        this.opts.onProcessesChanged([...this.running.values()]);
      }
      child.unref();
      child.on('exit', (code, signal) => {
        if (rec) this.exited(node, spec, rec, { code, signal });
      });
    } finally {
      closeSync(fd);
    }
  }
}
