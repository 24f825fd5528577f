import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  adoptFinal, partialPaths, readMeta, resumeDecision, sizeOf, tailCheckPoints, writeMeta, type PartialMeta,
} from '../../src/transfer/partial.js';

const MiB = 1024 * 1024;
const remote = { size: 10 * MiB, mtimeMs: 1_700_000_000_000, isFile: true };
const meta = (o: Partial<PartialMeta> = {}): PartialMeta => ({
  name: 'IPI_20240115.csv', remoteSize: remote.size, remoteMtimeMs: remote.mtimeMs, startedAt: '2024-01-15T00:00:00.000Z', ...o,
});

describe('partialPaths', () => {
  test('NAME, NAME.part and NAME.part.json in LOCAL_DIR', () => {
    assert.deepEqual(partialPaths('/data/in', 'IPI_1.csv'), {
      final: path.join('/data/in', 'IPI_1.csv'),
      part: path.join('/data/in', 'IPI_1.csv.part'),
      meta: path.join('/data/in', 'IPI_1.csv.part.json'),
    });
  });
});

describe('resumeDecision', () => {
  test('no partial file: a new download from 0', () => {
    assert.deepEqual(resumeDecision(null, null, remote), { offset: 0, why: 'new download' });
    assert.deepEqual(resumeDecision(meta(), null, remote), { offset: 0, why: 'new download' });
  });

  test('an empty partial file: a new download from 0', () => {
    assert.deepEqual(resumeDecision(meta(), 0, remote), { offset: 0, why: 'new download' });
  });

  test('a partial longer than the remote file starts over', () => {
    const d = resumeDecision(meta(), remote.size + 1, remote);
    assert.equal(d.offset, 0);
    assert.match(d.why, /longer than the remote file/);
    assert.ok(d.why.includes(String(remote.size + 1)) && d.why.includes(String(remote.size)));
  });

  test('the record matches the remote file: resume at the partial\'s size', () => {
    assert.deepEqual(resumeDecision(meta(), 3 * MiB, remote), { offset: 3 * MiB, why: `resuming at byte ${3 * MiB}` });
  });

  test('a complete partial (same size as remote) resumes at its end', () => {
    assert.equal(resumeDecision(meta(), remote.size, remote).offset, remote.size);
  });

  test('the remote size changed since the partial was started: start over', () => {
    const d = resumeDecision(meta({ remoteSize: remote.size - 1 }), 3 * MiB, remote);
    assert.equal(d.offset, 0);
    assert.match(d.why, /remote file changed/);
  });

  test('the remote mtime changed since the partial was started: start over', () => {
    const d = resumeDecision(meta({ remoteMtimeMs: remote.mtimeMs + 1000 }), 3 * MiB, remote);
    assert.equal(d.offset, 0);
    assert.match(d.why, /remote file changed/);
  });

  test('a partial without a record (e.g. left by FTP_IPI.py) resumes, with its tail to be checked', () => {
    const d = resumeDecision(null, 3 * MiB, remote);
    assert.equal(d.offset, 3 * MiB);
    assert.match(d.why, /without a record/);
    assert.match(d.why, /tail is checked/);
  });

  test('a partial longer than the remote file starts over even without a record', () => {
    assert.equal(resumeDecision(null, remote.size + 5, remote).offset, 0);
  });
});

describe('adoptFinal (a file under its final name in LOCAL_DIR, no .part beside it)', () => {
  const local = (o: Partial<{ size: number; mtimeMs: number; nlink: number }> = {}) => ({ size: remote.size, mtimeMs: remote.mtimeMs, nlink: 1, ...o });

  test('ours, verified and renamed before the run ended: the remote size and time, taken (its tail is checked)', () => {
    assert.equal(adoptFinal(local(), remote).adopt, true);
    // Sub-second parts do not count: the server's times are whole seconds.
    assert.equal(adoptFinal(local({ mtimeMs: remote.mtimeMs + 400 }), remote).adopt, true);
  });

  test("FTP_IPI.py's partial under the final name: shorter than the remote file, taken", () => {
    const v = adoptFinal(local({ size: 4 * MiB, mtimeMs: remote.mtimeMs + 3_600_000 }), remote);
    assert.equal(v.adopt, true);
    assert.match(v.why, /shorter than the remote file/);
  });

  test('an earlier delivery of another version (pulled again): not taken, fetched whole', () => {
    // Same size, another time: a re-issued file whose tail may well match.
    const sameSize = adoptFinal(local({ mtimeMs: remote.mtimeMs - 86_400_000 }), remote);
    assert.equal(sameSize.adopt, false);
    assert.match(sameSize.why, /another version .*fetching the file whole/);
    assert.equal(adoptFinal(local({ size: remote.size + 1 }), remote).adopt, false);
  });

  test('a file with other hard links (the published copy in hardlink mode) is never written into', () => {
    const v = adoptFinal(local({ nlink: 2 }), remote);
    assert.equal(v.adopt, false);
    assert.match(v.why, /hard links/);
    assert.equal(adoptFinal(local({ nlink: 2, size: 1 }), remote).adopt, false);
  });
});

describe('tailCheckPoints', () => {
  const check = (partSize: number, window: number) => {
    const pts = tailCheckPoints(partSize, window);
    assert.equal(pts.at(-1), 0, 'ends with 0');
    for (let i = 1; i < pts.length; i++) assert.ok(pts[i]! < pts[i - 1]!, `strictly decreasing: ${pts.join(',')}`);
    for (const p of pts.slice(0, -1)) assert.ok(p >= window, 'every window end but the last resort holds a whole window');
    return pts;
  };

  test('starts at the partial\'s end when it holds at least a window', () => {
    const pts = check(100 * MiB, 64 * 1024);
    assert.equal(pts[0], 100 * MiB);
  });

  test('steps back 1 MiB, then 4x further each time', () => {
    assert.deepEqual(check(100 * MiB, 64 * 1024), [100 * MiB, 99 * MiB, 95 * MiB, 79 * MiB, 15 * MiB, 0]);
  });

  test('a partial exactly one window long: that window, then 0', () => {
    assert.deepEqual(check(64 * 1024, 64 * 1024), [64 * 1024, 0]);
  });

  test('a partial shorter than a window: only 0 (start over)', () => {
    assert.deepEqual(check(1000, 64 * 1024), [0]);
    assert.deepEqual(check(0, 64 * 1024), [0]);
  });

  test('holds for many sizes', () => {
    for (const size of [65_536, 65_537, MiB, MiB + 1, 5 * MiB, 123_456_789, 10 * 1024 * MiB]) {
      const pts = check(size, 64 * 1024);
      assert.equal(pts[0], size);
    }
  });

  test('a large file stays at a handful of points', () => {
    assert.ok(tailCheckPoints(100 * 1024 * MiB, 64 * 1024).length <= 12);
  });
});

describe('readMeta / writeMeta / sizeOf', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-partial-'));
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('round trip, leaving no temporary file', async () => {
    const file = path.join(dir, 'IPI_1.csv.part.json');
    await writeMeta(file, meta());
    assert.deepEqual(await readMeta(file), meta());
    assert.deepEqual(fs.readdirSync(dir), ['IPI_1.csv.part.json']);
  });

  test('a missing, torn or wrong-shaped record reads as none', async () => {
    assert.equal(await readMeta(path.join(dir, 'missing.json')), null);
    fs.writeFileSync(path.join(dir, 'torn.json'), '{"name": "IPI_1.csv", "remoteSi');
    assert.equal(await readMeta(path.join(dir, 'torn.json')), null);
    fs.writeFileSync(path.join(dir, 'shape.json'), JSON.stringify({ name: 'x', remoteSize: '10', remoteMtimeMs: 1 }));
    assert.equal(await readMeta(path.join(dir, 'shape.json')), null);
  });

  test('sizeOf: the size, or null when missing', async () => {
    fs.writeFileSync(path.join(dir, 'five'), '12345');
    assert.equal(await sizeOf(path.join(dir, 'five')), 5);
    assert.equal(await sizeOf(path.join(dir, 'nope')), null);
  });
});
