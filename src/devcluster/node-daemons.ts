import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { DEFAULT_RUN_DIR } from '../agent/config.js';
import type { Logger } from '../shared/log.js';
import type { NodeRecord } from './cluster-record.js';
import { type ProcessRecord, recordChild, signalRecorded } from './process-record.js';
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
export function daemonCgroupDir(node: Pick<NodeRecord, 'cgroup'>, spec: Pick<NodeDaemonSpec, 'name'>): string {
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
      ...weft,
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

export class NodeDaemonSupervisor {
  private readonly running = new Map<string, ProcessRecord>();
  private readonly restarts = new Map<string, number>();
  private stopped = false;

  constructor(
    private readonly opts: {
      nodes: NodeRecord[];
      specs: NodeDaemonSpec[];
      internalKubeconfig: string;
      logsDir: string;
      log: Logger;
      onProcessesChanged: (procs: ProcessRecord[]) => void;
    },
  ) {}

  start(): void {
    for (const node of this.opts.nodes) for (const spec of this.opts.specs) this.launch(node, spec);
  }

  /** Stops supervising; the processes keep running until `down` (like the pods). */
  detach(): void {
    this.stopped = true;
  }

  /** Ends them (used when the daemon is asked to stop everything). */
  terminate(): void {
    this.stopped = true;
    for (const rec of this.running.values()) signalRecorded(rec, 'SIGTERM');
  }

  private launch(node: NodeRecord, spec: NodeDaemonSpec): void {
    if (this.stopped) return;
    const key = `${node.name}/${spec.name}`;
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
      const rec = child.pid === undefined ? undefined : recordChild(child.pid, `${spec.name} ${node.name}`);
      if (rec) {
        this.running.set(key, rec);
        this.opts.onProcessesChanged([...this.running.values()]);
      }
      child.unref();
      child.on('exit', (code, signal) => {
        this.running.delete(key);
        this.opts.onProcessesChanged([...this.running.values()]);
        if (this.stopped) return;
        const n = (this.restarts.get(key) ?? 0) + 1;
        this.restarts.set(key, n);
        const delay = Math.min(1_000 * 2 ** Math.min(n, 6), 60_000);
        this.opts.log.warn(
          { node: node.name, daemon: spec.name, code, signal, restartInMs: delay },
          'node daemon exited',
        );
        setTimeout(() => this.launch(node, spec), delay).unref();
      });
    } finally {
      closeSync(fd);
    }
  }
}
