#!/usr/bin/env node
// Runs every compiled test file with node's own test runner. Node 20's `--test` takes no
// globs, so we list the files; unit tests first (fast feedback), then end-to-end.
// Usage: node scripts/run-tests.mjs [unit|e2e|chaos|all]   (default: unit + e2e)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const which = process.argv[2] ?? 'default';
const suites = { default: ['unit', 'e2e'], all: ['unit', 'e2e', 'chaos'], unit: ['unit'], e2e: ['e2e'], chaos: ['chaos'] }[which];
if (!suites) {
  console.error(`unknown suite ${which}: use unit, e2e, chaos or all`);
  process.exit(2);
}

function testFiles(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'helpers' ? [] : testFiles(p);
    return e.name.endsWith('.test.js') ? [p] : [];
  }).sort();
}

const files = suites.flatMap((s) => testFiles(path.join(root, 'dist', 'tests', s)));
if (files.length === 0) {
  console.error('no test files found under dist/tests: run `npm run build` first');
  process.exit(1);
}
// One file at a time: the e2e files start servers and child processes, and this machine has 2 cores.
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-timeout=300000', ...files], { stdio: 'inherit', cwd: root });
process.exit(r.status ?? 1);
