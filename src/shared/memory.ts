/**
 * Full garbage collections, for a process that has just finished a burst of allocation it will
 * not repeat (the agent's first list and full sync). V8 keeps the old-space pages such a burst
 * filled with garbage committed until its next major collection, which an idle agent may not
 * reach for hours: at 10,000 Services that is ≈30 MiB of RSS, and ≈30 more in pages the
 * survivors share with garbage (docs/agent.md, Memory). Node exposes gc() only behind
 * --expose-gc; as jest's leak detector does, the flag is turned on just long enough to take
 * gc() from a fresh context.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | undefined;

/**
 * Runs a full, synchronous garbage collection of the whole heap. `compact`: evacuate every
 * old-space page, not only the ones V8's heuristics pick, so the pages the garbage shared with
 * what lives on go back too (V8's --compact-on-every-full-gc, on for this collection only). A
 * burst like the agent's first list and sync leaves its survivors scattered over pages that are
 * mostly garbage: without it V8 kept ≈75 MiB of old space committed for ≈45 MiB live.
 */
export function collectGarbage(opts: { compact?: boolean } = {}): void {
  if (!gc) {
    const exposed = (globalThis as { gc?: unknown }).gc;
    if (typeof exposed === 'function') gc = exposed as () => void;
    else {
      setFlagsFromString('--expose-gc');
      try {
        gc = runInNewContext('gc') as () => void;
      } finally {
        setFlagsFromString('--no-expose-gc');
      }
    }
  }
  if (!opts.compact) {
    gc();
    return;
  }
  setFlagsFromString('--compact-on-every-full-gc');
  try {
    gc();
  } finally {
    setFlagsFromString('--no-compact-on-every-full-gc');
  }
}
