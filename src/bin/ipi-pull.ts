#!/usr/bin/env node
import { main } from '../cli.js';

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`ipi-pull: internal error: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
