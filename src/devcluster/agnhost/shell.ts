import { spawn } from 'node:child_process';

/**
 * netexec's /shell: `sh -c <command>` with stdout and stderr interleaved as they arrive
 * (Go's CombinedOutput), reported as {"output": ..., "error": "exit status 1"}. Loaded only
 * when a pod is asked to run a command.
 */
const MAX_OUTPUT_BYTES = 16 * 1024 * 1024;

export function runShell(shellPath: string, command: string): Promise<{ output?: string; error?: string }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let truncated = false;
    const child = spawn(shellPath, ['-c', command], { stdio: ['ignore', 'pipe', 'pipe'] });
    const collect = (chunk: Buffer) => {
      if (truncated) return;
      size += chunk.length;
      if (size > MAX_OUTPUT_BYTES) {
        truncated = true;
        child.kill('SIGKILL');
        return;
      }
      chunks.push(chunk);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    let startError: string | undefined;
    child.on('error', (err: NodeJS.ErrnoException) => {
      startError = `fork/exec ${shellPath}: ${err.code === 'ENOENT' ? 'no such file or directory' : err.message}`;
    });
    child.on('close', (code, signal) => {
      const result: { output?: string; error?: string } = {};
      const output = Buffer.concat(chunks).toString('utf8');
      if (output.length > 0) result.output = output;
      if (startError !== undefined) result.error = startError;
      else if (truncated) result.error = `output larger than ${MAX_OUTPUT_BYTES} bytes; command killed`;
      else if (signal !== null) result.error = `signal: ${signalText(signal)}`;
      else if (code !== 0) result.error = `exit status ${code}`;
      resolve(result);
    });
  });
}

function signalText(signal: NodeJS.Signals): string {
  const texts: Partial<Record<NodeJS.Signals, string>> = {
    SIGKILL: 'killed',
    SIGTERM: 'terminated',
    SIGINT: 'interrupt',
    SIGSEGV: 'segmentation fault',
    SIGABRT: 'aborted',
    SIGPIPE: 'broken pipe',
    SIGHUP: 'hangup',
  };
  return texts[signal] ?? signal;
}
