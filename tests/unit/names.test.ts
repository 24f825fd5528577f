import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { printableName, unsafeNameReason } from '../../src/names.js';

describe('unsafeNameReason', () => {
  test('ordinary IPI names are accepted', () => {
    for (const n of [
      'IPI_20240115.csv', 'IPI20240115.dat', 'IPI_2024-01-15T12-30-45.zip', 'IPI data 2024-01-15.txt',
      'IPI_20240115.csv.gz', 'ipi-é-ünïcode-20240115.csv', 'IPI_(1)_20240115.csv', "IPI_o'brien.csv",
      'IPI.partial', 'IPI.part2', 'IPI_part', 'x'.repeat(200),
    ]) {
      assert.equal(unsafeNameReason(n), null, n);
    }
  });

  test('an empty name', () => {
    assert.equal(unsafeNameReason(''), 'empty name');
  });

  test('. and .. are path components', () => {
    assert.equal(unsafeNameReason('.'), 'a path component, not a file name');
    assert.equal(unsafeNameReason('..'), 'a path component, not a file name');
  });

  test('path separators, forward and back', () => {
    for (const n of ['a/b', '/etc/passwd', '../IPI_x', 'IPI_x/', 'a\\b', '..\\..\\Windows\\x', 'C:\\x']) {
      assert.equal(unsafeNameReason(n), 'contains a path separator', n);
    }
  });

  test('NUL, newline, tab, escape, DEL and other control characters', () => {
    for (const n of ['IPI\u0000.csv', 'IPI\n.csv', 'IPI\r.csv', 'IPI\t.csv', 'IPI\u001b[31m.csv', 'IPI\u007f.csv', 'IPI\u0001']) {
      assert.equal(unsafeNameReason(n), 'contains a control character', JSON.stringify(n));
    }
  });

  test('characters Windows does not allow', () => {
    for (const c of ['<', '>', ':', '"', '|', '?', '*']) {
      assert.equal(unsafeNameReason(`IPI${c}x.csv`, 'win32'), 'contains a character Windows does not allow in file names', c);
      assert.equal(unsafeNameReason(`IPI${c}x.csv`, 'linux'), null, `${c} is a legal name character on POSIX`);
    }
  });

  test('Windows reserved device names, any case, with or without extension', () => {
    for (const n of ['CON', 'con', 'PRN', 'AUX', 'NUL', 'nul.txt', 'Nul.tar.gz', 'COM1', 'com9', 'LPT1', 'LPT9', 'lpt9.log', 'COM¹']) {
      assert.equal(unsafeNameReason(n), 'is a reserved device name on Windows', n);
    }
  });

  test('names that only start like a device name are fine', () => {
    for (const n of ['CONSOLE', 'nullable.txt', 'COM10', 'LPT', 'AUXILIARY.csv', 'ICON.png', 'con_20240101.csv']) {
      assert.equal(unsafeNameReason(n), null, n);
    }
  });

  test('a trailing dot or space', () => {
    for (const n of ['IPI_20240115.csv.', 'IPI_20240115.csv ', 'IPI ', 'IPI...']) {
      assert.equal(unsafeNameReason(n, 'win32'), 'ends with a dot or space (Windows would silently change it)', JSON.stringify(n));
      assert.equal(unsafeNameReason(n, 'linux'), null, `${JSON.stringify(n)} is a legal POSIX name`);
    }
  });

  test('hidden dot-names are refused (our temporary files use them)', () => {
    assert.equal(unsafeNameReason('.IPI_20240115.csv'), 'is a hidden name (we use dot-names for our own temporary files)');
    assert.equal(unsafeNameReason('.env'), 'is a hidden name (we use dot-names for our own temporary files)');
  });

  test('names longer than 200 bytes (UTF-8) are refused', () => {
    assert.equal(unsafeNameReason('x'.repeat(300)), 'longer than 200 bytes');
    assert.equal(unsafeNameReason('x'.repeat(201)), 'longer than 200 bytes');
    // 100 two-byte characters are exactly 200 bytes; one more is over.
    assert.equal(unsafeNameReason('é'.repeat(100)), null);
    assert.equal(unsafeNameReason('é'.repeat(101)), 'longer than 200 bytes');
  });

  test('names ending like our own partial-download files', () => {
    for (const n of ['IPI_20240115.csv.part', 'IPI.part', 'IPI_20240115.csv.part.json']) {
      assert.equal(unsafeNameReason(n), 'ends like our own partial-download files', n);
    }
  });
});

describe('printableName', () => {
  test('escapes control characters so a name cannot forge a log line', () => {
    assert.equal(printableName('IPI\n12:00 INFO fake'), '"IPI\\n12:00 INFO fake"');
    assert.equal(printableName('IPI\u001b[2J'), '"IPI\\u001b[2J"');
    assert.ok(!printableName('a\r\nb').includes('\n'));
  });

  test('plain names are just quoted', () => {
    assert.equal(printableName('IPI_20240115.csv'), '"IPI_20240115.csv"');
  });
});
