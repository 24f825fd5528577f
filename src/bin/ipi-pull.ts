#!/usr/bin/env node
import './gc-first.js';
import { main } from '../cli.js';

/**
 * process.exit() does not wait for stdout: a pipe that is not drained yet (a --json summary
 * of a thousand files is a few hundred KB) would be cut off. An empty write's callback runs
 * once everything before it has been handed to the OS.
 */
function exitAfterFlush(code: number): void {
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}

main(process.argv.slice(2)).then(
  (code) => exitAfterFlush(code),
  (err) => {
    process.stderr.write(`ipi-pull: internal error: ${err instanceof Error ? err.stack : String(err)}\n`);
    exitAfterFlush(1);
  },
);
