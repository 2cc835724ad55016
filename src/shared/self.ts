import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WeftError } from './errors.js';

/** The project root (where package.json and bpf/ live), from src/ or from dist/src/. */
export const projectRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new WeftError('WEFT_ERR_LAYOUT', 'cannot find the weft project root');
    dir = up;
  }
  return dir;
})();

/**
 * argv that runs the built `weft` CLI in a child process: [node, dist/src/cli/weft.js].
 * Child processes (agents, kubelet containers, the devcluster server) always run the compiled
 * JavaScript, never the TypeScript sources, so they start fast.
 */
export function weftCommand(): [string, string] {
  const main = resolve(projectRoot, 'dist/src/cli/weft.js');
  if (!existsSync(main)) {
    throw new WeftError('WEFT_ERR_NOT_BUILT', `${main} is missing; run 'make build' first`);
  }
  return [process.execPath, main];
}

/** Path of a file under bpf/dist/, the committed eBPF objects. */
export function bpfObjectPath(name: string): string {
  return resolve(projectRoot, 'bpf/dist', name);
}
