#!/usr/bin/env node
import './gc-first.js';
import { main } from '../cli.js';
import { exitAfterFlush } from './exit.js';

main(process.argv.slice(2)).then(
  (code) => exitAfterFlush(code),
  (err) => {
    process.stderr.write(`ipi-pull: internal error: ${err instanceof Error ? err.stack : String(err)}\n`);
    exitAfterFlush(1);
  },
);
