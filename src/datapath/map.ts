import { load } from 'ffi-rs';
import { KernelError, WeftError } from '../shared/errors.js';
import type { Codec } from './codec.js';
import { callInt, callPtr, checkLibbpf, closeFd, DataType, NativeBuffer, readCString } from './native.js';

export interface BpfMapInfo {
  name: string;
  /** libbpf's name for the map type: "hash", "lru_hash", "array", "ringbuf", ... */
  type: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
}

export type UpdateFlag = 'any' | 'noexist' | 'exist';
const updateFlags: Record<UpdateFlag, number> = { any: 0, noexist: 1, exist: 2 };

const ENOENT = 2;
const ENOSPC = 28;
const BATCH_CHUNK = 16_384;

/** A batch write that stopped part-way: the first `applied` entries are in the map. */
export class BatchError extends KernelError {
  readonly applied: number;
  constructor(call: string, errno: number, detail: string, applied: number) {
    super(call, errno, `${detail}; ${applied} entries applied before the error`);
    this.applied = applied;
  }
}

/** The batch buffers of BpfMap.updateBatchEncoded, for a caller that writes entries' bytes. */
export interface BatchEncoder {
  readonly keys: Buffer;
  readonly values: Buffer;
  /** Room for one more entry: its index in the buffers (a full chunk is written first). */
  next(): number;
}

/**
 * A BPF map with typed keys and values. Single-entry calls reuse two scratch buffers; batch
 * calls encode every entry into one native buffer and cross into C once per 16k entries
 * (bpf_map_update_batch ≈ 1 µs/entry against ≈ 12 µs per single update).
 */
export class BpfMap<K, V> {
  readonly fd: number;
  readonly name: string;
  readonly type: string;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  private readonly key: Codec<K>;
  private readonly value: Codec<V>;
  private readonly scratchKey: NativeBuffer;
  private readonly scratchNextKey: NativeBuffer;
  private readonly scratchValue: NativeBuffer;
  private batch?: {
    keys: NativeBuffer;
    values: NativeBuffer;
    count: NativeBuffer;
    opts: NativeBuffer;
    token: NativeBuffer;
  };
  private batch2?: { keys: NativeBuffer; values: NativeBuffer; count: NativeBuffer; opts: NativeBuffer };
  private closed = false;

  constructor(fd: number, info: BpfMapInfo, key: Codec<K>, value: Codec<V>) {
    if (info.type.startsWith('percpu_') || info.type.startsWith('lru_percpu_')) {
      // A per-CPU lookup writes one value per possible CPU; these scratch buffers hold one.
      closeFd(fd);
      throw new WeftError(
        'WEFT_ERR_UNSUPPORTED',
        `map ${info.name} is ${info.type}: per-CPU maps are not supported by BpfMap yet (use a plain map with atomic adds)`,
      );
    }
    if (key.size !== info.keySize || value.size !== info.valueSize) {
      closeFd(fd);
      throw new WeftError(
        'WEFT_ERR_CODEC_MISMATCH',
        `map ${info.name}: kernel key/value sizes ${info.keySize}/${info.valueSize} differ from the codecs' ${key.size}/${value.size}`,
      );
    }
    this.fd = fd;
    this.name = info.name;
    this.type = info.type;
    this.keySize = info.keySize;
    this.valueSize = info.valueSize;
    this.maxEntries = info.maxEntries;
    this.key = key;
    this.value = value;
    this.scratchKey = new NativeBuffer(this.keySize);
    this.scratchNextKey = new NativeBuffer(this.keySize);
    this.scratchValue = new NativeBuffer(this.valueSize);
  }

  /** Opens a map pinned in bpffs (by this or another process). */
  static openPinned<K, V>(path: string, key: Codec<K>, value: Codec<V>): BpfMap<K, V> {
    const fd = callInt('libbpf', 'bpf_obj_get', [DataType.String], [path]);
    if (fd < 0) throw new KernelError('bpf_obj_get', -fd, path);
    try {
      return new BpfMap(fd, mapInfoByFd(fd, path), key, value);
    } catch (err) {
      closeFd(fd);
      throw err;
    }
  }

  lookup(key: K): V | undefined {
    this.assertOpen();
    this.key.encode(key, this.scratchKey.buffer, 0);
    const ret = callInt(
      'libbpf',
      'bpf_map_lookup_elem',
      [DataType.I32, DataType.I64, DataType.I64],
      [this.fd, this.scratchKey.address, this.scratchValue.address],
    );
    if (ret === -ENOENT) return undefined;
    checkLibbpf(ret, 'bpf_map_lookup_elem', this.name);
    return this.value.decode(this.scratchValue.buffer, 0);
  }

  update(key: K, value: V, flag: UpdateFlag = 'any'): void {
    this.assertOpen();
    this.key.encode(key, this.scratchKey.buffer, 0);
    this.value.encode(value, this.scratchValue.buffer, 0);
    const ret = callInt(
      'libbpf',
      'bpf_map_update_elem',
      [DataType.I32, DataType.I64, DataType.I64, DataType.I64],
      [this.fd, this.scratchKey.address, this.scratchValue.address, updateFlags[flag]],
    );
    if (ret < 0) throw new KernelError('bpf_map_update_elem', -ret, this.describe());
  }

  /** Removes the entry; false when there was none. */
  delete(key: K): boolean {
    this.assertOpen();
    this.key.encode(key, this.scratchKey.buffer, 0);
    const ret = callInt(
      'libbpf',
      'bpf_map_delete_elem',
      [DataType.I32, DataType.I64],
      [this.fd, this.scratchKey.address],
    );
    if (ret === -ENOENT) return false;
    checkLibbpf(ret, 'bpf_map_delete_elem', this.name);
    return true;
  }

  /** Every key, walked with bpf_map_get_next_key (one call per key). */
  keys(): K[] {
    this.assertOpen();
    const out: K[] = [];
    let prev = 0;
    for (;;) {
      const ret = callInt(
        'libbpf',
        'bpf_map_get_next_key',
        [DataType.I32, DataType.I64, DataType.I64],
        [this.fd, prev, this.scratchNextKey.address],
      );
      if (ret === -ENOENT) return out;
      checkLibbpf(ret, 'bpf_map_get_next_key', this.name);
      out.push(this.key.decode(this.scratchNextKey.buffer, 0));
      this.scratchNextKey.buffer.copy(this.scratchKey.buffer, 0, 0, this.keySize);
      prev = this.scratchKey.address;
    }
  }

  /**
   * Every entry, read with bpf_map_lookup_batch (16k entries per call); maps whose type has no
   * batch support fall back to one lookup per key.
   */
  entries(): Array<[K, V]> {
    this.assertOpen();
    const out: Array<[K, V]> = [];
    if (!this.visitBatch((k, v) => out.push([k, v]))) {
      for (const k of this.keys()) {
        const v = this.lookup(k);
        if (v !== undefined) out.push([k, v]);
      }
    }
    return out;
  }

  /** Number of entries (a full walk: use for reports, not on a hot path). */
  count(): number {
    this.assertOpen();
    let n = 0;
    if (!this.visitBatch(() => n++)) n = this.keys().length;
    return n;
  }

  /**
   * updateBatch for a caller that builds its entries one at a time: `entry(i, value)` is called
   * for i = 0 .. count-1 in order, fills `value` (one object the caller owns and reuses) and
   * returns the key (which may be reused too); both are encoded straight into the batch
   * buffers, so no tuple or object is made per entry. Same error contract as updateBatch.
   */
  updateBatchWith(
    count: number,
    value: V,
    entry: (i: number, value: V) => K,
    flag: UpdateFlag = 'any',
  ): void {
    this.assertOpen();
    const b = this.batchBuffers();
    b.opts.buffer.writeBigUInt64LE(BigInt(updateFlags[flag]), 8);
    for (let start = 0; start < count; start += BATCH_CHUNK) {
      const n = Math.min(BATCH_CHUNK, count - start);
      for (let i = 0; i < n; i++) {
        const k = entry(start + i, value);
        this.key.encode(k, b.keys.buffer, i * this.keySize);
        this.value.encode(value, b.values.buffer, i * this.valueSize);
      }
      this.submitUpdateChunk(b, start, n);
    }
    b.opts.buffer.writeBigUInt64LE(0n, 8);
  }

  /**
   * updateBatch for a caller that writes each entry's bytes itself, straight into the batch
   * buffers: `fill(batch)` calls batch.next() once per entry, in order, and writes that entry's
   * key at next() × keySize in batch.keys and its value at next() × valueSize in batch.values
   * (every byte, padding included: the buffers are reused). No tuple, object or call per entry
   * in between; same error contract as updateBatch.
   */
  updateBatchEncoded(fill: (batch: BatchEncoder) => void, flag: UpdateFlag = 'any'): void {
    this.assertOpen();
    const b = this.batchBuffers();
    b.opts.buffer.writeBigUInt64LE(BigInt(updateFlags[flag]), 8);
    let start = 0;
    let n = 0;
    const batch: BatchEncoder = {
      keys: b.keys.buffer,
      values: b.values.buffer,
      next: () => {
        if (n === BATCH_CHUNK) {
          this.submitUpdateChunk(b, start, n);
          start += n;
          n = 0;
        }
        return n++;
      },
    };
    try {
      fill(batch);
      if (n > 0) this.submitUpdateChunk(b, start, n);
    } finally {
      b.opts.buffer.writeBigUInt64LE(0n, 8);
    }
  }

  /**
   * Writes many entries with bpf_map_update_batch. On an error (a full map: E2BIG) the entries
   * before the failing one are applied and a BatchError says how many.
   */
  updateBatch(entries: ReadonlyArray<readonly [K, V]>, flag: UpdateFlag = 'any'): void {
    this.assertOpen();
    const b = this.batchBuffers();
    b.opts.buffer.writeBigUInt64LE(BigInt(updateFlags[flag]), 8);
    for (let start = 0; start < entries.length; start += BATCH_CHUNK) {
      const n = Math.min(BATCH_CHUNK, entries.length - start);
      for (let i = 0; i < n; i++) {
        const [k, v] = entries[start + i]!;
        this.key.encode(k, b.keys.buffer, i * this.keySize);
        this.value.encode(v, b.values.buffer, i * this.valueSize);
      }
      this.submitUpdateChunk(b, start, n);
    }
    b.opts.buffer.writeBigUInt64LE(0n, 8);
  }

  /**
   * bpf_map_update_batch of the `n` entries encoded in `b`, items `start`.. of the caller's
   * list; on an error the flags go back to 0 and a BatchError counts what was applied.
   */
  private submitUpdateChunk(b: ReturnType<BpfMap<K, V>['batchBuffers']>, start: number, n: number): void {
    b.count.buffer.writeUInt32LE(n, 0);
    const ret = callInt(
      'libbpf',
      'bpf_map_update_batch',
      [DataType.I32, DataType.I64, DataType.I64, DataType.I64, DataType.I64],
      [this.fd, b.keys.address, b.values.address, b.count.address, b.opts.address],
    );
    if (ret < 0) {
      const done = Math.min(b.count.buffer.readUInt32LE(0), n);
      b.opts.buffer.writeBigUInt64LE(0n, 8);
      throw new BatchError('bpf_map_update_batch', -ret, this.describe(), start + done);
    }
  }

  /**
   * updateBatch, pipelined: the kernel applies one chunk in another thread while JavaScript
   * encodes the next, so a large sync costs about max(encode, kernel) instead of their sum.
   * Same error contract as updateBatch. Do not touch the map from elsewhere until it resolves.
   */
  async updateBatchAsync(entries: ReadonlyArray<readonly [K, V]>, flag: UpdateFlag = 'any'): Promise<void> {
    this.assertOpen();
    if (entries.length <= BATCH_CHUNK) return this.updateBatch(entries, flag);
    const sides = [this.batchBuffers(), this.secondBatchBuffers()];
    for (const side of sides) side.opts.buffer.writeBigUInt64LE(BigInt(updateFlags[flag]), 8);
    let inFlight:
      | { promise: Promise<number>; start: number; n: number; side: (typeof sides)[number] }
      | undefined;
    const settle = async () => {
      if (!inFlight) return;
      const { promise, start, n, side } = inFlight;
      inFlight = undefined;
      const ret = await promise;
      if (ret < 0) {
        const done = Math.min(side.count.buffer.readUInt32LE(0), n);
        throw new BatchError('bpf_map_update_batch', -ret, this.describe(), start + done);
      }
    };
    try {
      for (let start = 0, turn = 0; start < entries.length; start += BATCH_CHUNK, turn ^= 1) {
        const side = sides[turn]!;
        const n = Math.min(BATCH_CHUNK, entries.length - start);
        for (let i = 0; i < n; i++) {
          const [k, v] = entries[start + i]!;
          this.key.encode(k, side.keys.buffer, i * this.keySize);
          this.value.encode(v, side.values.buffer, i * this.valueSize);
        }
        side.count.buffer.writeUInt32LE(n, 0);
        await settle();
        inFlight = {
          promise: load({
            library: 'libbpf',
            funcName: 'bpf_map_update_batch',
            retType: DataType.I32,
            paramsType: [DataType.I32, DataType.I64, DataType.I64, DataType.I64, DataType.I64],
            paramsValue: [
              this.fd,
              side.keys.address,
              side.values.address,
              side.count.address,
              side.opts.address,
            ],
            runInNewThread: true,
          }) as Promise<number>,
          start,
          n,
          side,
        };
      }
      await settle();
    } finally {
      if (inFlight) await inFlight.promise.catch(() => undefined);
      for (const side of sides) side.opts.buffer.writeBigUInt64LE(0n, 8);
    }
  }

  /** Deletes many keys with bpf_map_delete_batch; absent keys are skipped. Returns how many went. */
  deleteBatch(keys: readonly K[]): number {
    this.assertOpen();
    const b = this.batchBuffers();
    let deleted = 0;
    let i = 0;
    while (i < keys.length) {
      const n = Math.min(BATCH_CHUNK, keys.length - i);
      for (let j = 0; j < n; j++) this.key.encode(keys[i + j]!, b.keys.buffer, j * this.keySize);
      b.count.buffer.writeUInt32LE(n, 0);
      const ret = callInt(
        'libbpf',
        'bpf_map_delete_batch',
        [DataType.I32, DataType.I64, DataType.I64, DataType.I64],
        [this.fd, b.keys.address, b.count.address, b.opts.address],
      );
      const done = Math.min(b.count.buffer.readUInt32LE(0), n);
      deleted += done;
      if (ret === -ENOENT) {
        // The key at `done` is absent: skip it and carry on with the rest.
        i += done + 1;
        continue;
      }
      if (ret < 0) throw new BatchError('bpf_map_delete_batch', -ret, this.describe(), deleted);
      i += n;
    }
    return deleted;
  }

  /** Pins the map at `path` in bpffs so other processes (and our next start) can open it. */
  pin(path: string): void {
    this.assertOpen();
    checkLibbpf(
      callInt('libbpf', 'bpf_obj_pin', [DataType.I32, DataType.String], [this.fd, path]),
      'bpf_obj_pin',
      `${this.name} at ${path}`,
    );
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeFd(this.fd);
    this.scratchKey.free();
    this.scratchNextKey.free();
    this.scratchValue.free();
    if (this.batch) for (const nb of Object.values(this.batch)) nb.free();
    if (this.batch2) for (const nb of Object.values(this.batch2)) nb.free();
  }

  /** Walks the map with bpf_map_lookup_batch; false if this map type has no batch lookup. */
  private visitBatch(visit: (k: K, v: V) => void): boolean {
    const b = this.batchBuffers();
    let inToken = 0;
    let chunk = BATCH_CHUNK;
    for (;;) {
      b.count.buffer.writeUInt32LE(chunk, 0);
      const ret = callInt(
        'libbpf',
        'bpf_map_lookup_batch',
        [DataType.I32, DataType.I64, DataType.I64, DataType.I64, DataType.I64, DataType.I64, DataType.I64],
        [
          this.fd,
          inToken,
          b.token.address,
          b.keys.address,
          b.values.address,
          b.count.address,
          b.opts.address,
        ],
      );
      if (ret < 0 && ret !== -ENOENT) {
        if (inToken === 0 && (ret === -22 || ret === -95 || ret === -524)) return false; // EINVAL/EOPNOTSUPP/ENOTSUPP
        if (ret === -ENOSPC && chunk < BATCH_CHUNK * 8) {
          // One hash bucket holds more entries than fit in `chunk`: retry bigger from here.
          chunk *= 2;
          this.growBatch(chunk);
          continue;
        }
        throw new KernelError('bpf_map_lookup_batch', -ret, this.name);
      }
      const n = b.count.buffer.readUInt32LE(0);
      for (let i = 0; i < n; i++) {
        visit(
          this.key.decode(b.keys.buffer, i * this.keySize),
          this.value.decode(b.values.buffer, i * this.valueSize),
        );
      }
      if (ret === -ENOENT) return true;
      // out_batch becomes the next call's in_batch: copy it into the token's second half.
      b.token.buffer.copy(b.token.buffer, this.tokenSize, 0, this.tokenSize);
      inToken = b.token.address + this.tokenSize;
    }
  }

  private batchBuffers() {
    if (!this.batch) {
      const opts = new NativeBuffer(24); // struct bpf_map_batch_opts { sz; elem_flags; flags }
      opts.buffer.writeBigUInt64LE(24n, 0);
      this.batch = {
        keys: new NativeBuffer(this.keySize * BATCH_CHUNK),
        values: new NativeBuffer(this.valueSize * BATCH_CHUNK),
        count: new NativeBuffer(4),
        opts,
        token: new NativeBuffer(2 * this.tokenSize),
      };
    }
    return this.batch;
  }

  private secondBatchBuffers() {
    if (!this.batch2) {
      const opts = new NativeBuffer(24);
      opts.buffer.writeBigUInt64LE(24n, 0);
      this.batch2 = {
        keys: new NativeBuffer(this.keySize * BATCH_CHUNK),
        values: new NativeBuffer(this.valueSize * BATCH_CHUNK),
        count: new NativeBuffer(4),
        opts,
      };
    }
    return this.batch2;
  }

  private growBatch(entries: number): void {
    const b = this.batchBuffers();
    b.keys.free();
    b.values.free();
    b.keys = new NativeBuffer(this.keySize * entries);
    b.values = new NativeBuffer(this.valueSize * entries);
  }

  /** Batch tokens are a u32 bucket for hash maps and a key for arrays: room for either. */
  private get tokenSize(): number {
    return Math.max(this.keySize, 8);
  }

  private describe(): string {
    return `map ${this.name} (${this.type}, max_entries ${this.maxEntries})`;
  }

  private assertOpen(): void {
    if (this.closed) throw new WeftError('WEFT_ERR_CLOSED', `map ${this.name} is closed`);
  }
}

/** A map's definition, asked of the kernel by fd (bpf_obj_get_info_by_fd). */
export function mapInfoByFd(fd: number, what: string): BpfMapInfo {
  const info = new NativeBuffer(88); // struct bpf_map_info, as far as name[16] at 24
  const len = new NativeBuffer(4);
  try {
    len.buffer.writeUInt32LE(88, 0);
    checkLibbpf(
      callInt(
        'libbpf',
        'bpf_obj_get_info_by_fd',
        [DataType.I32, DataType.I64, DataType.I64],
        [fd, info.address, len.address],
      ),
      'bpf_obj_get_info_by_fd',
      what,
    );
    const b = info.buffer;
    const nameEnd = b.indexOf(0, 24);
    return {
      name: b.toString('utf8', 24, nameEnd < 0 || nameEnd > 40 ? 40 : nameEnd),
      type: readCString(callPtr('libbpf', 'libbpf_bpf_map_type_str', [DataType.I32], [b.readUInt32LE(0)])),
      keySize: b.readUInt32LE(8),
      valueSize: b.readUInt32LE(12),
      maxEntries: b.readUInt32LE(16),
    };
  } finally {
    info.free();
    len.free();
  }
}
