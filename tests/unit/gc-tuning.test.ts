// The GC tuning decision (pure), and that both programs apply it first and say so.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import { ATOMIC_MARKING_MAX_CPUS, gcTuningNote, wantAtomicMarking } from '../../src/gc-tuning.js';

const bin = (name: string) => path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/bin', `${name}.js`);

test('marking in one pause on two cores or fewer, unless node was told how to mark', () => {
  assert.equal(wantAtomicMarking(1, []), true);
  assert.equal(wantAtomicMarking(2, ['--max-old-space-size=100']), true);
  assert.equal(wantAtomicMarking(3, []), false, 'with more cores V8\'s helpers have room');
  for (const flag of ['--incremental-marking', '--no-incremental-marking', '--concurrent-marking', '--no-concurrent_marking']) {
    assert.equal(wantAtomicMarking(2, [flag]), false, `${flag}: an explicit flag wins`);
  }
});

test('not applied in a process that did not ask (a library import changes nothing)', () => {
  assert.equal(gcTuningNote(), 'V8 GC defaults');
});

test('both programs apply it before anything else and --version says which', () => {
  const expected = os.availableParallelism() <= ATOMIC_MARKING_MAX_CPUS ? /V8 incremental marking off \(\d+ CPUs\)/ : /V8 GC defaults/;
  for (const name of ['ipi-pull', 'ipi-push']) {
    assert.match(execFileSync(process.execPath, [bin(name), '--version'], { encoding: 'utf8' }), expected, name);
    assert.match(execFileSync(process.execPath, ['--concurrent-marking', bin(name), '--version'], { encoding: 'utf8' }), /V8 GC defaults/, `${name}: node's own flag wins`);
  }
});
