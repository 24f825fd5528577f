// AFTER_UPLOAD=archive (src/push/archive.ts): never replaces what ARCHIVE_DIR holds.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import { pidAlive } from '../../src/lock.js';
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

  test('the copy is made under a dot-named temporary and takes its final name only when whole; times kept', { skip }, async () => {
    const archive = fs.mkdtempSync(path.join(other!, 'temp-first-'));
    const watch = fs.mkdtempSync(path.join(root, 'xwatch-'));
    const big = Buffer.alloc(32 * 1024 * 1024, 7);
    const abs = path.join(watch, 'big.dat');
    fs.writeFileSync(abs, big);
    const old = new Date('2024-05-06T07:08:09Z');
    fs.utimesSync(abs, old, old);
    const version = { size: big.length, mtimeMs: old.getTime() };
    const seen: string[] = [];
    const watcher = fs.watch(archive, (_event, name) => {
      if (name && seen.at(-1) !== name) seen.push(String(name));
    });
    try {
      const to = await archiveFile(abs, archive, 'big.dat', version, AT);
      await new Promise((r) => setTimeout(r, 100)); // let the last events arrive
      assert.equal(to, path.join(archive, 'big.dat'));
      assert.ok(seen.length > 0, 'the watcher saw the archive folder change');
      assert.match(seen[0]!, /^\.big\.dat\.tmp-\d+-/, `the first name written is a temporary, not the final name (seen: ${seen.join(', ')})`);
      assert.ok(fs.readFileSync(to).equals(big));
      assert.equal(fs.statSync(to).mtimeMs, old.getTime(), 'modification time kept, as a move keeps it');
      assert.deepEqual(fs.readdirSync(archive), ['big.dat'], 'no temporary left');
      assert.equal(fs.existsSync(abs), false, 'the original is removed once the copy is in place');
    } finally {
      watcher.close();
    }
  });

  test('a temporary left by a run that died mid-copy is removed; a live one is not touched', { skip }, async () => {
    const archive = fs.mkdtempSync(path.join(other!, 'orphan-'));
    let deadPid = 4_000_000;
    while (pidAlive(deadPid)) deadPid--;
    const orphan = path.join(archive, `.d.dat.tmp-${deadPid}-x1`);
    const live = path.join(archive, `.d.dat.tmp-${process.pid}-x2`);
    const old = new Date(Date.now() - 2 * 3_600_000);
    for (const f of [orphan, live]) {
      fs.writeFileSync(f, 'half');
      fs.utimesSync(f, old, old);
    }
    const { abs, version } = uploaded(fs.mkdtempSync(path.join(root, 'xwatch-')), 'd.dat', 'D');
    await archiveFile(abs, archive, 'd.dat', version, AT);
    assert.deepEqual(fs.readdirSync(archive).sort(), [path.basename(live), 'd.dat'].sort());
  });

  test('a copy that fails (ARCHIVE_DIR full) leaves the original and nothing in ARCHIVE_DIR, not even its temporary', async (t) => {
    const archive = fs.mkdtempSync(path.join(root, 'full-'));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', archive], { stdio: 'pipe' });
    } catch {
      return t.skip('mount -t tmpfs refused here: no small filesystem to fill');
    }
    try {
      const data = Buffer.alloc(3 * 1024 * 1024, 1);
      const watch = fs.mkdtempSync(path.join(root, 'xwatch-'));
      const abs = path.join(watch, 'sub', 'c.dat');
      fs.mkdirSync(path.dirname(abs));
      fs.writeFileSync(abs, data);
      const st = fs.statSync(abs);
      await assert.rejects(archiveFile(abs, archive, 'sub/c.dat', { size: st.size, mtimeMs: Math.floor(st.mtimeMs) }, AT), /ENOSPC|no space/i);
      assert.ok(fs.readFileSync(abs).equals(data), 'the original is untouched');
      assert.deepEqual(fs.readdirSync(path.join(archive, 'sub')), [], 'no temporary and no half file under the final name');
    } finally {
      execFileSync('umount', ['-l', archive], { stdio: 'pipe' });
    }
  });
});
