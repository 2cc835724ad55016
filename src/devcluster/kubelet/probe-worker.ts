import { spawn } from 'node:child_process';
import type { V1Container, V1Probe } from '@kubernetes/client-node';
import { netnsPath, sandboxArgv } from '../sandbox-exec.js';
import type { NetworkProbe, ProbeResult } from './network-prober.js';

/**
 * One probe of one container, on the kubelet's schedule: first run after
 * initialDelaySeconds, then every periodSeconds; the result flips after successThreshold
 * successes or failureThreshold failures in a row.
 */

export type ProbeKind = 'readiness' | 'liveness' | 'startup';

export interface ProbeTarget {
  podIP: string;
  netns: string;
  cgroup: string;
  env: Record<string, string>;
  runNetworkProbe(p: NetworkProbe): Promise<ProbeResult>;
}

/** What to run for a probe, or an error text when the probe cannot be run as written. */
export function probeAction(
  probe: V1Probe,
  container: V1Container,
  podIP: string,
): { network: NetworkProbe } | { exec: string[] } | { invalid: string } {
  const timeoutMs = Math.max(1, probe.timeoutSeconds ?? 1) * 1000;
  if (probe.exec) {
    const cmd = probe.exec.command ?? [];
    return cmd.length > 0 ? { exec: cmd } : { invalid: 'exec probe without a command' };
  }
  if (probe.httpGet) {
    const port = resolvePort(probe.httpGet.port as unknown, container);
    if (port === undefined) return { invalid: `unknown port ${String(probe.httpGet.port)}` };
    return {
      network: {
        kind: 'http',
        host: probe.httpGet.host || podIP,
        port,
        path: probe.httpGet.path || '/',
        scheme: probe.httpGet.scheme === 'HTTPS' ? 'HTTPS' : 'HTTP',
        headers: (probe.httpGet.httpHeaders ?? []).map((h) => ({ name: h.name, value: h.value })),
        timeoutMs,
      },
    };
  }
  if (probe.tcpSocket) {
    const port = resolvePort(probe.tcpSocket.port as unknown, container);
    if (port === undefined) return { invalid: `unknown port ${String(probe.tcpSocket.port)}` };
    return { network: { kind: 'tcp', host: probe.tcpSocket.host || podIP, port, timeoutMs } };
  }
  if (probe.grpc) return { invalid: 'grpc probes are not supported by the devcluster kubelet' };
  return { invalid: 'probe has no handler (exec, httpGet or tcpSocket)' };
}

/** A probe port: a number, a numeric string, or the name of one of the container's ports. */
export function resolvePort(port: unknown, container: V1Container): number | undefined {
  if (typeof port === 'number') return Number.isInteger(port) && port > 0 && port < 65536 ? port : undefined;
  if (typeof port !== 'string') return undefined;
  if (/^\d+$/.test(port)) return resolvePort(Number(port), container);
  return container.ports?.find((p) => p.name === port)?.containerPort;
}

export class ProbeWorker {
  /** Current verdict: readiness and startup start false (not yet passed), liveness true. */
  healthy: boolean;
  /** True once the probe failed past its threshold (liveness and startup: restart the container). */
  failed = false;
  lastMessage = '';
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private successes = 0;
  private failures = 0;
  /** How long the container had run when probing began (taken over after a restart). */
  private runningForMs = 0;

  constructor(
    readonly kind: ProbeKind,
    private readonly probe: V1Probe,
    private readonly container: V1Container,
    private readonly target: ProbeTarget,
    private readonly onChange: (worker: ProbeWorker) => void,
  ) {
    this.healthy = kind !== 'readiness' && kind !== 'startup';
  }

  start(): void {
    this.schedule(Math.max(0, (this.probe.initialDelaySeconds ?? 0) * 1000 - this.runningForMs));
  }

  /**
   * For a container taken over after a daemon restart: it keeps the verdict reported before
   * (a Ready pod stays Ready until the probe says otherwise), and the initial delay counts from
   * the container's start, as the kubelet's does.
   */
  resume(healthy: boolean, runningForMs: number): void {
    this.healthy = healthy;
    this.runningForMs = Math.max(0, runningForMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), ms);
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    const result = await this.runOnce();
    if (this.stopped) return;
    this.lastMessage = result.message;
    const successThreshold = this.kind === 'readiness' ? Math.max(1, this.probe.successThreshold ?? 1) : 1;
    const failureThreshold = Math.max(1, this.probe.failureThreshold ?? 3);
    if (result.ok) {
      this.successes++;
      this.failures = 0;
      if (!this.healthy && this.successes >= successThreshold) this.flip(true);
    } else {
      this.failures++;
      this.successes = 0;
      // Startup probes begin "not yet started": failing past the threshold is what kills.
      if ((this.healthy || this.kind === 'startup') && this.failures >= failureThreshold) this.flip(false);
    }
    // A startup probe stops once it succeeded; the others run for the container's life.
    if (this.kind === 'startup' && this.healthy) return;
    this.schedule(Math.max(1, this.probe.periodSeconds ?? 10) * 1000);
  }

  private flip(healthy: boolean): void {
    this.healthy = healthy;
    this.failed = !healthy;
    this.onChange(this);
  }

  private runOnce(): Promise<ProbeResult> {
    const action = probeAction(this.probe, this.container, this.target.podIP);
    if ('invalid' in action) return Promise.resolve({ ok: false, message: action.invalid });
    if ('network' in action) return this.target.runNetworkProbe(action.network);
    return execProbe(action.exec, this.target, Math.max(1, this.probe.timeoutSeconds ?? 1) * 1000);
  }
}

/** An exec probe runs inside the pod (its netns and cgroup), like `kubectl exec`. */
function execProbe(command: string[], target: ProbeTarget, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const argv = sandboxArgv(target.cgroup, netnsPath(target.netns), command);
    const child = spawn(argv[0] ?? 'sh', argv.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: target.env,
    });
    let output = '';
    const keep = (b: Buffer) => {
      if (output.length < 1024) output += b.toString();
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve({ ok: false, message: `command timed out after ${timeoutMs / 1000}s` });
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ ok: false, message: err.message });
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve(
        code === 0 ? { ok: true, message: '' } : { ok: false, message: output.trim() || `exit code ${code}` },
      );
    });
  });
}
