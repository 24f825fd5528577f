#!/usr/bin/env node
import './gc-first.js';
import { pushMain } from '../push-cli.js';
import { exitAfterFlush } from './exit.js';

pushMain(process.argv.slice(2)).then(
  (code) => exitAfterFlush(code),
  (err) => {
    process.stderr.write(`ipi-push: internal error: ${err instanceof Error ? err.stack : String(err)}\n`);
    exitAfterFlush(1);
  },
);
