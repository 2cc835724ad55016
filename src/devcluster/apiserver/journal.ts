import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import type { JsonObject } from './json-value.js';

/**
 * The write-ahead journal in dataDir: one JSON line per write. Writes are buffered and written
 * together once per event-loop turn (no fsync per write, which would make bulk creates slow);
 * close() and flushSync() write what is buffered and fsync. A torn last line (a crash mid-write)
 * is skipped on replay. Startup rewrites the journal as a snapshot of the live objects.
 */
export type JournalRecord =
  | { rv: number; t: string; k: string; o: JsonObject }
  | { rv: number; t: string; k: string; d: 1 }
  | { rv: number; t: '@rv' };

export interface ReplayResult {
  records: JournalRecord[];
  skippedLines: number;
}

export class Journal {
  private fd: number;
  private pending: string[] = [];
  private scheduled = false;
  private closed = false;

  constructor(path: string) {
    this.fd = openSync(path, 'a');
  }

  static replay(path: string): ReplayResult {
    if (!existsSync(path)) return { records: [], skippedLines: 0 };
    const text = readFileSync(path, 'utf8');
    const records: JournalRecord[] = [];
    let skippedLines = 0;
    for (const line of text.split('\n')) {
      if (line === '') continue;
      try {
        const r = JSON.parse(line) as JournalRecord;
        if (typeof r.rv === 'number' && typeof r.t === 'string') records.push(r);
        else skippedLines++;
      } catch {
        skippedLines++;
      }
    }
    return { records, skippedLines };
  }

  /** Replaces the journal by a snapshot (atomically: temp file, fsync, rename). */
  static writeSnapshot(
    path: string,
    rv: number,
    objects: Iterable<{ t: string; k: string; o: JsonObject }>,
  ): void {
    const tmp = `${path}.tmp`;
    const fd = openSync(tmp, 'w');
    try {
      const chunk: string[] = [`${JSON.stringify({ rv, t: '@rv' })}\n`];
      let size = 0;
      for (const { t, k, o } of objects) {
        const line = `${JSON.stringify({ rv: Number((o.metadata as JsonObject).resourceVersion), t, k, o })}\n`;
        chunk.push(line);
        size += line.length;
        if (size > 1 << 20) {
          writeSync(fd, chunk.join(''));
          chunk.length = 0;
          size = 0;
        }
      }
      writeSync(fd, chunk.join(''));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  }

  append(record: JournalRecord): void {
    this.appendLine(JSON.stringify(record));
  }

  /** A record already serialized (the store serializes each object once for journal and watchers). */
  appendLine(line: string): void {
    if (this.closed) return;
    this.pending.push(`${line}\n`);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flushBuffered());
    }
  }

  /**
   * Why the journal cannot be written (a full disk, an I/O error), or undefined when it can. The
   * store refuses writes while this is set; what is buffered is retried and kept, in order.
   */
  get failure(): Error | undefined {
    return this.writeError;
  }

  private writeError: Error | undefined;

  private flushBuffered(): void {
    this.scheduled = false;
    if (this.pending.length === 0 || this.closed) return;
    const data = Buffer.from(this.pending.join(''));
    this.pending = [];
    let written = 0;
    try {
      while (written < data.length) written += writeSync(this.fd, data, written);
      this.writeError = undefined;
    } catch (err) {
      this.writeError = err as Error;
      this.pending = [data.subarray(written).toString()];
      if (!this.retry) {
        this.retry = setTimeout(() => {
          this.retry = undefined;
          this.flushBuffered();
        }, 1000);
        this.retry.unref();
      }
    }
  }

  private retry: NodeJS.Timeout | undefined;

  /** Writes everything buffered and fsyncs (clean shutdown, SIGTERM). Throws if it cannot. */
  flushSync(): void {
    if (this.closed) return;
    this.flushBuffered();
    if (this.writeError) throw this.writeError;
    fsyncSync(this.fd);
  }

  close(): void {
    if (this.closed) return;
    if (this.retry) clearTimeout(this.retry);
    try {
      this.flushSync();
    } finally {
      this.closed = true;
      closeSync(this.fd);
    }
  }
}
