import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DamagedMarkerError, parseMarker, prepareMarker, readMarker, removeStaleMarkerTemporaries, writeMarker } from '../../src/marker.js';
import { ConfigError, EXIT } from '../../src/errors.js';

describe('parseMarker', () => {
  test('the bare name, as FTP_IPI.py writes it', () => {
    assert.equal(parseMarker('IPI_20240115.csv'), 'IPI_20240115.csv');
  });

  test('a trailing newline, CRLF, or trailing spaces are tolerated', () => {
    assert.equal(parseMarker('IPI_20240115.csv\n'), 'IPI_20240115.csv');
    assert.equal(parseMarker('IPI_20240115.csv\r\n'), 'IPI_20240115.csv');
    assert.equal(parseMarker('IPI_20240115.csv   \r\n'), 'IPI_20240115.csv');
    assert.equal(parseMarker('  IPI_20240115.csv\t\n'), 'IPI_20240115.csv');
  });

  test('a BOM (Notepad) is ignored', () => {
    assert.equal(parseMarker('\uFEFFIPI_20240115.csv\r\n'), 'IPI_20240115.csv');
  });

  test('only the first line counts', () => {
    assert.equal(parseMarker('IPI_20240115.csv\nIPI_20240116.csv\n'), 'IPI_20240115.csv');
  });

  test('empty or blank content means no marker', () => {
    for (const c of ['', '\n', '   ', '\r\n', '\uFEFF', '\uFEFF \r\n']) assert.equal(parseMarker(c), null, JSON.stringify(c));
  });

  test('spaces inside the name are kept', () => {
    assert.equal(parseMarker('IPI data 2024-01-15.txt\n'), 'IPI data 2024-01-15.txt');
  });
});

describe('readMarker / writeMarker', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-marker-'));
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a missing marker file means first run (null)', async () => {
    assert.equal(await readMarker(path.join(dir, 'nope.txt')), null);
  });

  test('a damaged marker (control characters, a path) is refused with exit 2 and the way out, not placed', async () => {
    const file = path.join(dir, 'damaged.txt');
    for (const content of ['\x00\x01garbage', '../../etc/passwd']) {
      fs.writeFileSync(file, content);
      await assert.rejects(readMarker(file), (err: unknown) => err instanceof DamagedMarkerError && err.exitCode === EXIT.usage
        && err.message.includes(file) && /ipi-pull mark NAME/.test(err.message) && !err.message.includes('\x00'));
    }
  });

  test('a folder where the marker belongs: bad configuration (exit 2), naming the path', async () => {
    const file = path.join(dir, 'a-folder.txt');
    fs.mkdirSync(file);
    await assert.rejects(readMarker(file), (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.equal(err.exitCode, EXIT.usage);
      assert.equal(err.message, `LAST_FILE_RECORD ${file} is a folder, not a file`);
      return true;
    });
  });

  test('round trip: the file holds exactly the bare name, no newline', async () => {
    const file = path.join(dir, 'last_file.txt');
    await writeMarker(file, 'IPI_20240115.csv');
    assert.equal(fs.readFileSync(file, 'utf8'), 'IPI_20240115.csv');
    assert.equal(await readMarker(file), 'IPI_20240115.csv');
  });

  test('overwrites the previous marker and leaves no temporary files', async () => {
    const sub = fs.mkdtempSync(path.join(dir, 'sub-'));
    const file = path.join(sub, 'last_file.txt');
    await writeMarker(file, 'IPI_20240101.csv');
    await writeMarker(file, 'IPI_20240102.csv');
    await writeMarker(file, 'IPI_20240103.csv');
    assert.equal(await readMarker(file), 'IPI_20240103.csv');
    assert.deepEqual(fs.readdirSync(sub), ['last_file.txt']);
  });

  test('a prepared marker moves nothing until commit; a dead run\'s prepared marker is removed under the lock', async () => {
    const sub = fs.mkdtempSync(path.join(dir, 'prep-'));
    const file = path.join(sub, 'last_file.txt');
    await writeMarker(file, 'IPI_20240101.csv');
    const next = await prepareMarker(file, 'IPI_20240102.csv');
    assert.equal(await readMarker(file), 'IPI_20240101.csv', 'not moved before commit');
    const discarded = await prepareMarker(file, 'IPI_20240103.csv');
    await discarded.discard();
    await next.commit();
    assert.equal(await readMarker(file), 'IPI_20240102.csv');
    assert.deepEqual(fs.readdirSync(sub), ['last_file.txt']);
    // A run killed between prepare and commit leaves its temporary: fresh, so the hour-old
    // sweep would keep it; the lock holder removes it, and nothing else in the folder.
    await prepareMarker(file, 'IPI_20240104.csv');
    fs.writeFileSync(path.join(sub, '.other.txt.tmp-1-abc'), 'x');
    const removed = await removeStaleMarkerTemporaries(file);
    assert.equal(removed.length, 1);
    assert.deepEqual(fs.readdirSync(sub).sort(), ['.other.txt.tmp-1-abc', 'last_file.txt']);
    assert.equal(await readMarker(file), 'IPI_20240102.csv');
  });

  test('reads a marker written by the seed on Windows (BOM + CRLF)', async () => {
    const file = path.join(dir, 'seed.txt');
    fs.writeFileSync(file, '\uFEFFIPI_20231231.csv\r\n');
    assert.equal(await readMarker(file), 'IPI_20231231.csv');
  });

  test('an empty marker file reads as no marker', async () => {
    const file = path.join(dir, 'empty.txt');
    fs.writeFileSync(file, '');
    assert.equal(await readMarker(file), null);
  });

  test('non-ASCII names survive the round trip as UTF-8', async () => {
    const file = path.join(dir, 'utf8.txt');
    await writeMarker(file, 'IPI_été_20240115.csv');
    assert.equal(fs.readFileSync(file).toString('utf8'), 'IPI_été_20240115.csv');
    assert.equal(await readMarker(file), 'IPI_été_20240115.csv');
  });

  test('reading a folder is an error, not "no marker"', async () => {
    await assert.rejects(readMarker(dir), ConfigError);
  });

  test('writing into a missing folder fails and leaves nothing behind', async () => {
    await assert.rejects(writeMarker(path.join(dir, 'no-such-dir', 'last.txt'), 'IPI_x'), (err: NodeJS.ErrnoException) => err.code === 'ENOENT');
    assert.equal(fs.existsSync(path.join(dir, 'no-such-dir')), false);
  });
});
