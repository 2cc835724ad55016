import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { WeftError } from '../shared/errors.js';
import { type PodSandboxRecord, readClusterRecord, readPodRecords } from './cluster-record.js';
import { isRunning } from './process-record.js';
import { netnsPath, sandboxArgv } from './sandbox-exec.js';
import { listNetns } from './topology.js';

/**
 * `weft devcluster exec <ns>/<pod> [-c container] -- cmd...`: runs a host command inside a
 * pod's network namespace and cgroup (entered before exec, so none of its connections escape
 * the cgroup), with the container's environment, stdio passed through and its exit code
 * returned, like `kubectl exec`.
 */
export async function execInPod(opts: {
  cluster: string;
  namespace: string;
  pod: string;
  container?: string;
  command: string[];
}): Promise<number> {
  const cluster = readClusterRecord(opts.cluster);
  if (!cluster) {
    throw new WeftError(
      'WEFT_ERR_NOT_FOUND',
      `no devcluster named "${opts.cluster}"; create one with 'weft devcluster up --name ${opts.cluster}'`,
    );
  }
  const matches = readPodRecords(opts.cluster).pods.filter(
    (p) => p.namespace === opts.namespace && p.name === opts.pod,
  );
  const sandbox = matches[0];
  if (!sandbox) {
    throw new WeftError(
      'WEFT_ERR_NOT_FOUND',
      `pods "${opts.pod}" not found in namespace "${opts.namespace}" (or not yet running on a node of cluster "${opts.cluster}")`,
    );
  }
  const container = opts.container ?? sandbox.containers[0];
  if (container === undefined || !sandbox.containers.includes(container)) {
    throw new WeftError(
      'WEFT_ERR_NOT_FOUND',
      `container ${opts.container} is not valid for pod ${opts.pod}; choose one of: [${sandbox.containers.join(' ')}]`,
    );
  }
  const node = cluster.nodes.find((n) => n.name === sandbox.node);
  if (!node)
    throw new WeftError('WEFT_ERR_STATE', `pod ${opts.pod} is recorded on unknown node ${sandbox.node}`);
  const netns = sandbox.hostNetwork ? node.netns : sandbox.netns;
  if (!netns || !listNetns().has(netns)) {
    throw new WeftError(
      'WEFT_ERR_NOT_READY',
      `pod ${opts.namespace}/${opts.pod} has no network namespace yet; wait until it is Running`,
    );
  }
  const argv = sandboxArgv(sandbox.cgroup, netnsPath(netns), opts.command);
  const env = containerEnvironment(sandbox, container) ?? process.env;
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0] ?? 'sh', argv.slice(1), { stdio: 'inherit', env });
    // The terminal's ^C reaches the command too (same process group); we wait for its exit code.
    const forward = (sig: NodeJS.Signals) => child.kill(sig);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0));
    });
  });
}

/** The environment of the container's running process, as `kubectl exec` would give. */
function containerEnvironment(sandbox: PodSandboxRecord, container: string): NodeJS.ProcessEnv | undefined {
  const proc = sandbox.processes.find((p) => p.role === `${sandbox.namespace}/${sandbox.name}/${container}`);
  if (!proc || !isRunning(proc)) return undefined;
  try {
    const raw = readFileSync(`/proc/${proc.pid}/environ`, 'utf8');
    const env: NodeJS.ProcessEnv = {};
    for (const entry of raw.split('\0')) {
      const eq = entry.indexOf('=');
      if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
    }
    return env;
  } catch {
    return undefined;
  }
}
