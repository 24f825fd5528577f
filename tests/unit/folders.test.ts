import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { makeDir, makeDirSync, missingLevels } from '../../src/util/folders.js';

test('missingLevels: the folders to make, outermost first, below the deepest one that exists', () => {
  const existing = new Set(['/', '/srv', '/srv/ipi']);
  assert.deepEqual(missingLevels('/srv/ipi/a/b', (p) => existing.has(p)), ['/srv/ipi/a', '/srv/ipi/a/b']);
  assert.deepEqual(missingLevels('/srv/ipi', (p) => existing.has(p)), []);
});

test('makeDir / makeDirSync: like mkdir -p where it can be done', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-folders-'));
  try {
    assert.equal(await makeDir(path.join(root, 'a', 'b')), path.join(root, 'a'));
    assert.equal(await makeDir(path.join(root, 'a', 'b')), undefined);
    makeDirSync(path.join(root, 'c', 'd'));
    assert.ok(fs.statSync(path.join(root, 'c', 'd')).isDirectory());
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('a read-only parent is reported as EROFS on that folder, not as "no such file" (what Node\'s mkdir -p says)', async (t) => {
  const ro = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-folders-ro-'));
  try {
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', ro], { stdio: 'pipe' });
    } catch {
      return t.skip('mount -t tmpfs refused here (needs root): no read-only filesystem to try');
    }
    try {
      const want = (err: NodeJS.ErrnoException) => err.code === 'EROFS' && err.path === path.join(ro, 'local');
      await assert.rejects(makeDir(path.join(ro, 'local', 'x')), want);
      assert.throws(() => makeDirSync(path.join(ro, 'local', 'x')), want);
    } finally {
      execFileSync('umount', ['-l', ro], { stdio: 'pipe' });
    }
  } finally {
    fs.rmSync(ro, { recursive: true, force: true });
  }
});
