// AFTER_UPLOAD (src/push/after-upload.ts): only the very file that was uploaded, only inside WATCH_DIR.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import { afterUpload } from '../../src/push/after-upload.js';
import type { ScannedFile } from '../../src/push/scan.js';
import { fakeLog } from './helpers/fake-log.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-after-upload-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

const T = new Date('2024-01-02T03:04:05Z');

/** WATCH_DIR with sub/keys.dat uploaded (as scanned, and which file was read), and a file of the same size and time outside it. */
function uploadedAndOutside() {
  const dir = fs.mkdtempSync(path.join(root, 'case-'));
  const watchDir = path.join(dir, 'watch');
  const outside = path.join(dir, 'outside');
  fs.mkdirSync(path.join(watchDir, 'sub'), { recursive: true });
  fs.mkdirSync(outside);
  const abs = path.join(watchDir, 'sub', 'keys.dat');
  const victim = path.join(outside, 'keys.dat');
  for (const [f, data] of [[abs, 'AAAA'], [victim, 'BBBB']] as const) {
    fs.writeFileSync(f, data);
    fs.utimesSync(f, T, T);
  }
  const st = fs.statSync(abs);
  const file: ScannedFile = { rel: 'sub/keys.dat', abs, size: st.size, mtimeMs: Math.floor(st.mtimeMs) };
  return { dir, watchDir, outside, abs, victim, file, identity: { dev: st.dev, ino: st.ino } };
}

describe('AFTER_UPLOAD', () => {
  for (const action of ['delete', 'archive'] as const) {
    test(`${action}: the uploaded file, unchanged, goes from WATCH_DIR`, async () => {
      const c = uploadedAndOutside();
      const archiveDir = path.join(c.dir, 'archive');
      await afterUpload(c.file, { afterUpload: action, archiveDir, watchDir: c.watchDir }, fakeLog(), c.identity);
      assert.equal(fs.existsSync(c.abs), false);
      assert.equal(fs.existsSync(path.join(archiveDir, 'sub', 'keys.dat')), action === 'archive');
    });

    test(`${action}: a folder swapped for a link out of WATCH_DIR after the upload is not followed; the file outside is untouched`, async () => {
      const c = uploadedAndOutside();
      const archiveDir = path.join(c.dir, 'archive');
      fs.rmSync(path.join(c.watchDir, 'sub'), { recursive: true });
      fs.symlinkSync(c.outside, path.join(c.watchDir, 'sub'));
      const log = fakeLog();
      await afterUpload(c.file, { afterUpload: action, archiveDir, watchDir: c.watchDir }, log, c.identity);
      assert.equal(fs.readFileSync(c.victim, 'utf8'), 'BBBB', 'the file outside WATCH_DIR is still there');
      assert.equal(fs.existsSync(archiveDir), false, 'nothing archived');
      assert.ok(log.lines.some(([level, m]) => level === 'warn' && /"sub\/keys\.dat": .*outside WATCH_DIR.*left alone/.test(m)), JSON.stringify(log.lines));
    });

    test(`${action} left undone by an earlier run (which file it read is not known): a folder swapped for a link is not followed either`, async () => {
      const c = uploadedAndOutside();
      fs.rmSync(path.join(c.watchDir, 'sub'), { recursive: true });
      fs.symlinkSync(c.outside, path.join(c.watchDir, 'sub'));
      await afterUpload(c.file, { afterUpload: action, archiveDir: path.join(c.dir, 'archive'), watchDir: c.watchDir }, fakeLog());
      assert.equal(fs.readFileSync(c.victim, 'utf8'), 'BBBB');
    });

    test(`${action}: another file given the name since, even of the same size and time, is left alone`, async () => {
      const c = uploadedAndOutside();
      const archiveDir = path.join(c.dir, 'archive');
      const other = path.join(c.watchDir, 'sub', 'other');
      fs.writeFileSync(other, 'CCCC');
      fs.utimesSync(other, T, T);
      fs.renameSync(other, c.abs);
      const log = fakeLog();
      await afterUpload(c.file, { afterUpload: action, archiveDir, watchDir: c.watchDir }, log, c.identity);
      assert.equal(fs.readFileSync(c.abs, 'utf8'), 'CCCC');
      assert.ok(log.lines.some(([level, m]) => level === 'warn' && /"sub\/keys\.dat": not the file that was uploaded.*left/.test(m)), JSON.stringify(log.lines));
    });
  }
});
