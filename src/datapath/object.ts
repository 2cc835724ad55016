import { closeSync, existsSync, mkdirSync, openSync, readSync } from 'node:fs';
import { KernelError, WeftError } from '../shared/errors.js';
import type { Codec } from './codec.js';
import { BpfMap, type BpfMapInfo, mapInfoByFd } from './map.js';
import {
  callInt,
  callPtr,
  callWithErrno,
  checkLibbpf,
  closeFd,
  DataType,
  dupFd,
  NativeBuffer,
  readCString,
  viewAt,
} from './native.js';

/** A loaded program: its fd, and what it attaches to (for cgroup links). */
export interface BpfProgram {
  readonly name: string;
  readonly fd: number;
  /** libbpf's name for the program type, e.g. "cgroup_sock_addr", "sched_cls". */
  readonly type: string;
  /** enum bpf_attach_type the program expects (BPF_CGROUP_INET4_CONNECT = 10, ...). */
  readonly expectedAttachType: number;
}

export interface StructLayout {
  name: string;
  size: number;
  members: Array<{ name: string; offset: number; size: number }>;
}

export interface OpenObjectOptions {
  /**
   * Maps declared with `__uint(pinning, LIBBPF_PIN_BY_NAME)` are pinned in this directory on
   * load, or reused from it when already pinned there (created if missing).
   */
  pinRoot?: string;
  /** max_entries per map name, applied before load. */
  maxEntries?: Record<string, number>;
}

const EM_BPF = 247;
const BTF_KIND_STRUCT = 4;
const VERIFIER_LOG_SIZE = 1 << 20;

/**
 * A BPF ELF object (bpf/dist/*.bpf.o) opened and loaded by the system libbpf.
 *
 *   const obj = BpfObject.open(path, { pinRoot }); obj.load();
 *   obj.program('weft_sock4_connect'); obj.typedMap('weft_lb4_services', keyCodec, valueCodec);
 *
 * close() frees libbpf's object; maps and links pinned in bpffs stay, so traffic keeps flowing
 * while no agent runs.
 */
export class BpfObject {
  readonly path: string;
  private ptr: number;
  private loaded = false;
  private readonly keepAlive: NativeBuffer[];
  private readonly log: NativeBuffer;
  private readonly hasPinRoot: boolean;

  private constructor(
    path: string,
    ptr: number,
    keepAlive: NativeBuffer[],
    log: NativeBuffer,
    hasPinRoot: boolean,
  ) {
    this.path = path;
    this.hasPinRoot = hasPinRoot;
    this.ptr = ptr;
    this.keepAlive = keepAlive;
    this.log = log;
  }

  static open(path: string, opts: OpenObjectOptions = {}): BpfObject {
    checkElfObject(path);
    const keepAlive: NativeBuffer[] = [];
    const log = new NativeBuffer(VERIFIER_LOG_SIZE);
    // struct bpf_object_open_opts (libbpf 1.1): sz@0, pin_root_path@24, kernel_log_buf@56,
    // kernel_log_size@64, kernel_log_level@72; sizeof 80.
    const o = new NativeBuffer(80);
    try {
      o.buffer.writeBigUInt64LE(80n, 0);
      if (opts.pinRoot) {
        mkdirSync(opts.pinRoot, { recursive: true });
        const root = NativeBuffer.cString(opts.pinRoot);
        keepAlive.push(root);
        o.buffer.writeBigUInt64LE(BigInt(root.address), 24);
      }
      o.buffer.writeBigUInt64LE(BigInt(log.address), 56);
      o.buffer.writeBigUInt64LE(BigInt(VERIFIER_LOG_SIZE), 64);
      const r = callWithErrno(
        'libbpf',
        'bpf_object__open_file',
        DataType.I64,
        [DataType.String, DataType.I64],
        [path, o.address],
      );
      if (r.value === 0) throw new KernelError('bpf_object__open_file', r.errno, path);
      const obj = new BpfObject(path, r.value, keepAlive, log, Boolean(opts.pinRoot));
      for (const [name, entries] of Object.entries(opts.maxEntries ?? {})) {
        checkLibbpf(
          callInt(
            'libbpf',
            'bpf_map__set_max_entries',
            [DataType.I64, DataType.I32],
            [obj.mapPtr(name), entries],
          ),
          'bpf_map__set_max_entries',
          `${name}=${entries}`,
        );
      }
      return obj;
    } catch (err) {
      for (const k of keepAlive) k.free();
      log.free();
      throw err;
    } finally {
      o.free();
    }
  }

  /** Names of the maps libbpf will pin (declared with LIBBPF_PIN_BY_NAME). */
  pinnedMapNames(): string[] {
    this.assertOpen();
    const names: string[] = [];
    let m = 0;
    for (;;) {
      m = callPtr('libbpf', 'bpf_object__next_map', [DataType.I64, DataType.I64], [this.ptr, m]);
      if (m === 0) return names;
      if (callPtr('libbpf', 'bpf_map__pin_path', [DataType.I64], [m]) !== 0) {
        names.push(readCString(callPtr('libbpf', 'bpf_map__name', [DataType.I64], [m])));
      }
    }
  }

  /** Loads every program and creates (or reuses pinned) maps. */
  load(): void {
    this.assertOpen();
    if (!this.hasPinRoot) {
      // Without a pin root libbpf pins LIBBPF_PIN_BY_NAME maps at the bpffs root, shared by
      // every user of the object on this kernel (every node of a devcluster or of Kind).
      const pinned = this.pinnedMapNames();
      if (pinned.length > 0) {
        throw new WeftError(
          'WEFT_ERR_PIN_ROOT_REQUIRED',
          `${this.path} pins maps by name (${pinned.join(', ')}): open it with a pinRoot, e.g. /sys/fs/bpf/weft/<node>`,
        );
      }
    }
    this.checkPinnedMaps();
    const ret = callInt('libbpf', 'bpf_object__load', [DataType.I64], [this.ptr]);
    if (ret < 0) {
      const verifier = this.log.buffer.toString('utf8', 0, this.log.buffer.indexOf(0)).trim();
      const tail = verifier.split('\n').slice(-30).join('\n');
      throw new KernelError(
        'bpf_object__load',
        -ret,
        `${this.path}${tail ? `\nverifier log (tail):\n${tail}` : ''}`,
      );
    }
    this.loaded = true;
  }

  /**
   * libbpf reuses a map pinned at a map's pin path only when its definition matches, and
   * otherwise fails the load with a bare EINVAL. Say which map differs, and how, first.
   */
  private checkPinnedMaps(): void {
    let m = 0;
    for (;;) {
      m = callPtr('libbpf', 'bpf_object__next_map', [DataType.I64, DataType.I64], [this.ptr, m]);
      if (m === 0) return;
      const pinPtr = callPtr('libbpf', 'bpf_map__pin_path', [DataType.I64], [m]);
      const pin = pinPtr === 0 ? '' : readCString(pinPtr);
      if (!pin || !existsSync(pin)) continue;
      const name = readCString(callPtr('libbpf', 'bpf_map__name', [DataType.I64], [m]));
      const want = {
        keySize: callInt('libbpf', 'bpf_map__key_size', [DataType.I64], [m]),
        valueSize: callInt('libbpf', 'bpf_map__value_size', [DataType.I64], [m]),
        maxEntries: callInt('libbpf', 'bpf_map__max_entries', [DataType.I64], [m]),
      };
      const fd = callInt('libbpf', 'bpf_obj_get', [DataType.String], [pin]);
      if (fd < 0) throw new KernelError('bpf_obj_get', -fd, pin);
      let have: BpfMapInfo;
      try {
        have = mapInfoByFd(fd, pin);
      } finally {
        closeFd(fd);
      }
      const diffs = (['keySize', 'valueSize', 'maxEntries'] as const)
        .filter((k) => have[k] !== want[k])
        .map((k) => `${k} ${have[k]} pinned vs ${want[k]} wanted`);
      if (diffs.length > 0) {
        throw new WeftError(
          'WEFT_ERR_PINNED_MAP_MISMATCH',
          `map ${name} pinned at ${pin} does not match ${this.path} (${diffs.join(', ')}); remove the pin to recreate the map (its entries are lost)`,
        );
      }
    }
  }

  program(name: string): BpfProgram {
    this.assertLoaded();
    const p = callPtr(
      'libbpf',
      'bpf_object__find_program_by_name',
      [DataType.I64, DataType.String],
      [this.ptr, name],
    );
    if (p === 0) throw new WeftError('WEFT_ERR_NO_PROGRAM', `${this.path} has no program named ${name}`);
    const fd = checkLibbpf(
      callInt('libbpf', 'bpf_program__fd', [DataType.I64], [p]),
      'bpf_program__fd',
      name,
    );
    const type = callInt('libbpf', 'bpf_program__type', [DataType.I64], [p]);
    const expectedAttachType = callInt('libbpf', 'bpf_program__expected_attach_type', [DataType.I64], [p]);
    return {
      name,
      fd,
      type: readCString(callPtr('libbpf', 'libbpf_bpf_prog_type_str', [DataType.I32], [type])),
      expectedAttachType,
    };
  }

  /** Names of every program in the object, in ELF order. */
  programNames(): string[] {
    this.assertOpen();
    const names: string[] = [];
    let p = 0;
    for (;;) {
      p = callPtr('libbpf', 'bpf_object__next_program', [DataType.I64, DataType.I64], [this.ptr, p]);
      if (p === 0) return names;
      names.push(readCString(callPtr('libbpf', 'bpf_program__name', [DataType.I64], [p])));
    }
  }

  /** The map's fd and definition. The fd belongs to the object: dup it to keep it longer. */
  map(name: string): BpfMapInfo & { fd: number } {
    this.assertLoaded();
    const m = this.mapPtr(name);
    const type = callInt('libbpf', 'bpf_map__type', [DataType.I64], [m]);
    return {
      name,
      fd: checkLibbpf(callInt('libbpf', 'bpf_map__fd', [DataType.I64], [m]), 'bpf_map__fd', name),
      type: readCString(callPtr('libbpf', 'libbpf_bpf_map_type_str', [DataType.I32], [type])),
      keySize: callInt('libbpf', 'bpf_map__key_size', [DataType.I64], [m]),
      valueSize: callInt('libbpf', 'bpf_map__value_size', [DataType.I64], [m]),
      maxEntries: callInt('libbpf', 'bpf_map__max_entries', [DataType.I64], [m]),
    };
  }

  /** A typed handle on one of the object's maps, with its own fd (valid after close()). */
  typedMap<K, V>(name: string, key: Codec<K>, value: Codec<V>): BpfMap<K, V> {
    const info = this.map(name);
    return new BpfMap(dupFd(info.fd, name), info, key, value);
  }

  /** Where libbpf pinned (or would pin) a map, e.g. /sys/fs/bpf/weft/node/weft_lb4_services. */
  pinPath(name: string): string | undefined {
    const p = callPtr('libbpf', 'bpf_map__pin_path', [DataType.I64], [this.mapPtr(name)]);
    return p === 0 ? undefined : readCString(p);
  }

  /**
   * A struct's size and member offsets as the compiler laid them out, read from the object's
   * BTF. Codecs are checked against this so TS and C cannot drift apart.
   */
  structLayout(cName: string): StructLayout | undefined {
    this.assertOpen();
    const btf = callPtr('libbpf', 'bpf_object__btf', [DataType.I64], [this.ptr]);
    if (btf === 0) throw new WeftError('WEFT_ERR_NO_BTF', `${this.path} has no BTF (build with -g)`);
    const id = callInt(
      'libbpf',
      'btf__find_by_name_kind',
      [DataType.I64, DataType.String, DataType.I32],
      [btf, cName, BTF_KIND_STRUCT],
    );
    if (id < 0) return undefined;
    const t = callPtr('libbpf', 'btf__type_by_id', [DataType.I64, DataType.I32], [btf, id]);
    const head = viewAt(t, 12);
    const info = head.readUInt32LE(4);
    const vlen = info & 0xffff;
    const kindFlag = info >>> 31;
    const size = head.readUInt32LE(8);
    const members: StructLayout['members'] = [];
    if (vlen > 0) {
      const m = viewAt(t + 12, vlen * 12);
      for (let i = 0; i < vlen; i++) {
        const nameOff = m.readUInt32LE(i * 12);
        const typeId = m.readUInt32LE(i * 12 + 4);
        const rawOffset = m.readUInt32LE(i * 12 + 8);
        const bitOffset = kindFlag ? rawOffset & 0xffffff : rawOffset;
        const name = readCString(
          callPtr('libbpf', 'btf__name_by_offset', [DataType.I64, DataType.I32], [btf, nameOff]),
        );
        const memberSize = callPtr(
          'libbpf',
          'btf__resolve_size',
          [DataType.I64, DataType.I32],
          [btf, typeId],
        );
        members.push({ name, offset: bitOffset / 8, size: memberSize });
      }
    }
    return { name: cName, size, members };
  }

  close(): void {
    if (this.ptr === 0) return;
    callInt('libbpf', 'bpf_object__close', [DataType.I64], [this.ptr]);
    this.ptr = 0;
    for (const k of this.keepAlive) k.free();
    this.log.free();
  }

  private mapPtr(name: string): number {
    this.assertOpen();
    const m = callPtr(
      'libbpf',
      'bpf_object__find_map_by_name',
      [DataType.I64, DataType.String],
      [this.ptr, name],
    );
    if (m === 0) throw new WeftError('WEFT_ERR_NO_MAP', `${this.path} has no map named ${name}`);
    return m;
  }

  private assertOpen(): void {
    if (this.ptr === 0) throw new WeftError('WEFT_ERR_CLOSED', `${this.path} is closed`);
  }

  private assertLoaded(): void {
    this.assertOpen();
    if (!this.loaded)
      throw new WeftError('WEFT_ERR_NOT_LOADED', `${this.path} is not loaded; call load() first`);
  }
}

/**
 * Checks that `path` is a little-endian 64-bit BPF ELF object before libbpf sees it, so a
 * missing file or an object built for another architecture gets an error that says so.
 */
function checkElfObject(path: string): void {
  if (!existsSync(path)) {
    throw new WeftError(
      'WEFT_ERR_OBJECT_MISSING',
      `BPF object ${path} not found; the prebuilt objects live in bpf/dist/ (rebuild with 'make bpf')`,
    );
  }
  const head = Buffer.alloc(20);
  const fd = openSync(path, 'r');
  let n: number;
  try {
    n = readSync(fd, head, 0, 20, 0);
  } finally {
    closeSync(fd);
  }
  if (n < 20 || head.readUInt32BE(0) !== 0x7f454c46) {
    throw new WeftError('WEFT_ERR_OBJECT_FORMAT', `${path} is not an ELF object; rebuild it with 'make bpf'`);
  }
  const machine = head[5] === 1 ? head.readUInt16LE(18) : head.readUInt16BE(18);
  if (machine !== EM_BPF) {
    throw new WeftError(
      'WEFT_ERR_OBJECT_FORMAT',
      `${path} is an ELF object for machine ${machine}, not BPF (${EM_BPF}); rebuild it with 'make bpf'`,
    );
  }
  if (head[4] !== 2 || head[5] !== 1) {
    throw new WeftError(
      'WEFT_ERR_OBJECT_FORMAT',
      `${path} is not a 64-bit little-endian BPF object (built for another byte order?); rebuild with 'make bpf'`,
    );
  }
}

/** Pins a program or map (by fd) in bpffs, so another process can open it by path. */
export function pinFd(fd: number, path: string): void {
  checkLibbpf(
    callInt('libbpf', 'bpf_obj_pin', [DataType.I32, DataType.String], [fd, path]),
    'bpf_obj_pin',
    path,
  );
}
