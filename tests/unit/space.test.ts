import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { ensureRoom, formatBytes, freeBytes } from '../../src/util/space.js';
import { PermanentError } from '../../src/errors.js';

describe('formatBytes', () => {
  test('bytes are shown whole', () => {
    assert.equal(formatBytes(0), '0 B');
    assert.equal(formatBytes(1), '1 B');
    assert.equal(formatBytes(1023), '1023 B');
  });

  test('binary units with one decimal', () => {
    assert.equal(formatBytes(1024), '1.0 KiB');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(2 * 1024 * 1024), '2.0 MiB');
    assert.equal(formatBytes(255 * 1024), '255.0 KiB');
    assert.equal(formatBytes(1024 ** 3), '1.0 GiB');
    assert.equal(formatBytes(3.5 * 1024 ** 4), '3.5 TiB');
  });

  test('the largest unit is TiB', () => {
    assert.equal(formatBytes(1024 ** 5), '1024.0 TiB');
  });

  test('just under a unit stays in the smaller one', () => {
    assert.equal(formatBytes(1024 * 1024 - 1), '1024.0 KiB');
  });
});

describe('freeBytes / ensureRoom', () => {
  test('the temp folder has some free space', async (t) => {
    const free = await freeBytes(os.tmpdir());
    // Linux always answers statfs, so null there is a bug, not a platform limit.
    if (process.platform === 'linux') assert.ok(free !== null && free > 0, `free: ${free}`);
    else if (free === null) t.skip(`statfs gives no answer for ${os.tmpdir()} on ${process.platform}`);
    else assert.ok(free > 0, `free: ${free}`);
  });

  test('a missing folder answers null rather than throwing', async () => {
    assert.equal(await freeBytes(path.join(os.tmpdir(), `ipi-no-such-${process.pid}-${Date.now()}`)), null);
  });

  test('ensureRoom passes when there is room and refuses an impossible size with a clear message', async (t) => {
    await ensureRoom(os.tmpdir(), 1, 'downloading IPI_1');
    const free = await freeBytes(os.tmpdir());
    if (process.platform === 'linux') assert.ok(free !== null, 'statfs answers on Linux');
    if (free === null) {
      // Without a statfs answer ensureRoom cannot refuse anything: the write itself is the check.
      t.skip(`statfs gives no answer for ${os.tmpdir()} on ${process.platform}`);
      return;
    }
    await assert.rejects(ensureRoom(os.tmpdir(), free + 1024 ** 5, 'downloading IPI_1'), (err: unknown) => {
      assert.ok(err instanceof PermanentError);
      assert.ok(err.message.startsWith(`downloading IPI_1: ${os.tmpdir()} has `), err.message);
      assert.match(err.message, / free, .* needed$/);
      return true;
    });
  });
});
