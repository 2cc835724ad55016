#!/usr/bin/env node
// The `weft` executable (package.json bin): run the command, map errors to an exit code.
import { main, reportError } from './main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.exitCode = reportError(err);
  },
);
