import { closeSync, existsSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { WeftError } from '../shared/errors.js';
import { readClusterRecord, readPodRecords, recordPaths } from './cluster-record.js';
import { sleep } from './process-record.js';

/**
 * `weft devcluster logs`: a container's output, from the files the kubelet writes for each run
 * (logs/pods/<namespace>_<name>_<uid>/<container>/<run>.log, as /var/log/pods is laid out).
 * The dev API server has no pods/log subresource, so `kubectl logs` cannot reach them.
 */
export function containerLogFile(opts: {
  cluster: string;
  namespace: string;
  pod: string;
  container?: string;
  previous: boolean;
}): string {
  if (!readClusterRecord(opts.cluster))
    throw new WeftError('WEFT_ERR_NOT_FOUND', `no devcluster named "${opts.cluster}"`);
  const rec = readPodRecords(opts.cluster).pods.find(
    (p) => p.namespace === opts.namespace && p.name === opts.pod,
  );
  if (!rec) {
    throw new WeftError(
      'WEFT_ERR_NOT_FOUND',
      `pods "${opts.pod}" not found in namespace "${opts.namespace}"`,
    );
  }
  const container = opts.container ?? rec.containers.at(-1) ?? '';
  if (!rec.containers.includes(container)) {
    throw new WeftError(
      'WEFT_ERR_NOT_FOUND',
      `container ${container} is not valid for pod ${opts.pod}; choose one of: [${rec.containers.join(' ')}]`,
    );
  }
  const dir = join(
    recordPaths(opts.cluster).logs,
    'pods',
    `${rec.namespace}_${rec.name}_${rec.uid}`,
    container,
  );
  const runs = existsSync(dir)
    ? readdirSync(dir)
        .map((f) => /^(\d+)\.log$/.exec(f)?.[1])
        .filter((n): n is string => n !== undefined)
        .map(Number)
        .sort((a, b) => a - b)
    : [];
  const wanted = opts.previous ? runs.at(-2) : runs.at(-1);
  if (wanted === undefined) {
    throw new WeftError(
      'WEFT_ERR_NOT_FOUND',
      opts.previous
        ? `previous terminated container "${container}" in pod "${opts.pod}" not found`
        : `container "${container}" in pod "${opts.pod}" has not started yet`,
    );
  }
  return join(dir, `${wanted}.log`);
}

/** Copies the file to `out`; with `follow`, keeps copying what is appended until `stop()`. */
export async function copyLog(
  path: string,
  out: NodeJS.WritableStream,
  opts: { follow: boolean; tailLines?: number; stopped: () => boolean },
): Promise<void> {
  let offset = 0;
  if (opts.tailLines !== undefined) offset = tailOffset(path, opts.tailLines);
  const buf = Buffer.alloc(64 * 1024);
  for (;;) {
    const fd = openSync(path, 'r');
    try {
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, offset);
        if (n <= 0) break;
        offset += n;
        out.write(Buffer.from(buf.subarray(0, n)));
      }
    } finally {
      closeSync(fd);
    }
    if (!opts.follow || opts.stopped()) return;
    await sleep(250);
    if (!existsSync(path)) return;
  }
}

/** Byte offset where the last `lines` lines of the file begin. */
function tailOffset(path: string, lines: number): number {
  const size = statSync(path).size;
  if (lines <= 0) return size;
  const fd = openSync(path, 'r');
  try {
    const chunk = Buffer.alloc(64 * 1024);
    let pos = size;
    let seen = 0;
    while (pos > 0) {
      const len = Math.min(chunk.length, pos);
      pos -= len;
      readSync(fd, chunk, 0, len, pos);
      for (let i = len - 1; i >= 0; i--) {
        // A final newline ends the last line; it does not start another.
        if (chunk[i] === 0x0a && pos + i !== size - 1) {
          seen++;
          if (seen === lines) return pos + i + 1;
        }
      }
    }
    return 0;
  } finally {
    closeSync(fd);
  }
}
