#!/usr/bin/env node
import './gc-first.js';
import { pushMain } from '../push-cli.js';

pushMain(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`ipi-push: internal error: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
