// AFTER_UPLOAD=archive (src/push/archive.ts): never replaces what ARCHIVE_DIR holds.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import { archiveFile } from '../../src/push/archive.js';
import { archiveName } from '../../src/push/decide.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-archive-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

const AT = new Date('2025-01-02T03:04:05.678Z');

/** A file in a fresh WATCH_DIR, and the version ipi-push uploaded. */
function uploaded(watchDir: string, rel: string, content: string) {
  const abs = path.join(watchDir, ...rel.split('/'));
  fs.mkdirSync(path.dirname(abs), { recursive: true });
  fs.writeFileSync(abs, content);
  const st = fs.statSync(abs);
  return { abs, version: { size: st.size, mtimeMs: Math.floor(st.mtimeMs) } };
}

describe('archive names', () => {
  test('its own name first; when taken, the UTC time of the move before the extension, then -2, -3', () => {
    assert.equal(archiveName('b.dat', AT, 0), 'b.dat');
    assert.equal(archiveName('b.dat', AT, 1), 'b.20250102T030405Z.dat');
    assert.equal(archiveName('b.dat', AT, 2), 'b.20250102T030405Z-2.dat');
    assert.equal(archiveName('b.dat', AT, 3), 'b.20250102T030405Z-3.dat');
    assert.equal(archiveName('README', AT, 1), 'README.20250102T030405Z');
    assert.equal(archiveName('.profile', AT, 1), '.profile.20250102T030405Z');
    assert.equal(archiveName('a.tar.gz', AT, 1), 'a.tar.20250102T030405Z.gz');
  });
});

describe('archiveFile on one filesystem', () => {
  test('moves the file keeping its relative path', async () => {
    const dir = fs.mkdtempSync(path.join(root, 'same-'));
    const archive = path.join(dir, 'archive');
    const { abs, version } = uploaded(path.join(dir, 'watch'), 'sub/a.dat', 'A');
    const ino = fs.statSync(abs).ino;
    const to = await archiveFile(abs, archive, 'sub/a.dat', version, AT);
    assert.equal(to, path.join(archive, 'sub', 'a.dat'));
    assert.equal(fs.readFileSync(to, 'utf8'), 'A');
    assert.equal(fs.statSync(to).ino, ino, 'moved, not copied');
    assert.equal(fs.existsSync(abs), false);
  });

  test('an earlier archived file of the same path is never replaced: the new one gets a stamped name beside it', async () => {
    const dir = fs.mkdtempSync(path.join(root, 'taken-'));
    const archive = path.join(dir, 'archive');
    fs.mkdirSync(path.join(archive, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(archive, 'sub', 'b.dat'), 'OLD');
    const watch = path.join(dir, 'watch');

    const first = uploaded(watch, 'sub/b.dat', 'NEW');
    const to = await archiveFile(first.abs, archive, 'sub/b.dat', first.version, AT);
    assert.equal(to, path.join(archive, 'sub', 'b.20250102T030405Z.dat'));
    const second = uploaded(watch, 'sub/b.dat', 'NEWER');
    const to2 = await archiveFile(second.abs, archive, 'sub/b.dat', second.version, AT);
    assert.equal(to2, path.join(archive, 'sub', 'b.20250102T030405Z-2.dat'));

    assert.equal(fs.readFileSync(path.join(archive, 'sub', 'b.dat'), 'utf8'), 'OLD');
    assert.equal(fs.readFileSync(to, 'utf8'), 'NEW');
    assert.equal(fs.readFileSync(to2, 'utf8'), 'NEWER');
    assert.deepEqual(fs.readdirSync(path.join(watch, 'sub')), []);
  });
});

/** A folder on another filesystem than os.tmpdir(), or null (the cross-filesystem tests then skip). */
function otherFilesystem(): string | null {
  for (const candidate of ['/dev/shm']) {
    try {
      const dir = fs.mkdtempSync(path.join(candidate, 'ipi-archive-'));
      if (fs.statSync(dir).dev !== fs.statSync(root).dev) {
        after(() => fs.rmSync(dir, { recursive: true, force: true }));
        return dir;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      /* not there, or not writable */
    }
  }
  return null;
}

describe('archiveFile to another filesystem (EXDEV)', () => {
  const other = otherFilesystem();
  const skip = other ? false : 'no second filesystem (/dev/shm) to archive to';

  test('an earlier archived file of the same path is never replaced', { skip }, async () => {
    const archive = fs.mkdtempSync(path.join(other!, 'taken-'));
    fs.writeFileSync(path.join(archive, 'b.dat'), 'OLD');
    const { abs, version } = uploaded(fs.mkdtempSync(path.join(root, 'xwatch-')), 'b.dat', 'NEW');
    const to = await archiveFile(abs, archive, 'b.dat', version, AT);
    assert.equal(to, path.join(archive, 'b.20250102T030405Z.dat'));
    assert.equal(fs.readFileSync(path.join(archive, 'b.dat'), 'utf8'), 'OLD');
    assert.equal(fs.readFileSync(to, 'utf8'), 'NEW');
    assert.equal(fs.existsSync(abs), false);
  });
});
