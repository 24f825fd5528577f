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

test('a file in the way: EEXIST for the folder itself, ENOTDIR below it, as mkdir -p says', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-folders-file-'));
  try {
    const file = path.join(root, '.env');
    fs.writeFileSync(file, 'x');
    await assert.rejects(makeDir(file), { code: 'EEXIST' });
    assert.throws(() => makeDirSync(file), { code: 'EEXIST' });
    await assert.rejects(makeDir(path.join(file, 'sub')), { code: 'ENOTDIR' });
    assert.throws(() => makeDirSync(path.join(file, 'sub', 'deeper')), { code: 'ENOTDIR' });
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('a folder the filesystem will not make, its parent being there (procfs): an error, not a loop for ever', { timeout: 10_000 }, async (t) => {
  // Node's recursive mkdir spun at 100% CPU here (LOG_FILE=/proc/nope/x.log), synchronously:
  // only a child process can be timed out. The child tries both forms.
  if (!fs.existsSync('/proc/self')) return t.skip('no procfs on this machine');
  const folders = new URL('../../src/util/folders.js', import.meta.url).href;
  const script = `import { makeDir, makeDirSync } from ${JSON.stringify(folders)};
    try { makeDirSync('/proc/nope/x'); } catch (e) { console.log('sync', e.code); }
    await makeDir('/proc/nope/x').catch((e) => console.log('async', e.code));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { timeout: 5000, encoding: 'utf8' });
  assert.equal(out, 'sync ENOENT\nasync ENOENT\n');
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
