/**
 * One full garbage collection, for a process that has just finished a burst of allocation it
 * will not repeat (the agent's first list and full sync). V8 keeps the old-space pages such a
 * burst filled with garbage committed until its next major collection, which an idle agent may
 * not reach for hours: at 10,000 Services that is ≈30 MiB of RSS (docs/agent.md, Memory).
 * Node exposes gc() only behind --expose-gc; as jest's leak detector does, the flag is turned
 * on just long enough to take gc() from a fresh context.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | undefined;

/** Runs a full, synchronous garbage collection of the whole heap. */
export function collectGarbage(): void {
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
  gc();
}
