// Publishing: every method leaves the same bytes, mode and mtime under the final name and
// no temporary behind; the O_DIRECT copy handles a size that is not a multiple of 4 KiB.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';

import { publish } from '../../src/publish.js';
import { ChunkPool } from '../../src/transfer/buffers.js';
import { O_DIRECT } from '../../src/util/direct.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-publish-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
let seq = 0;

function setup(size: number): { file: string; serverDir: string; data: Buffer } {
  const dir = path.join(root, `t${++seq}`);
  const serverDir = path.join(dir, 'server');
  fs.mkdirSync(serverDir, { recursive: true });
  const data = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, Math.min(i, size - 4));
  const file = path.join(dir, 'IPI_20240101.dat');
  fs.writeFileSync(file, data, { mode: 0o640 });
  fs.utimesSync(file, new Date('2024-01-01T00:00:00Z'), new Date('2024-01-01T00:00:00Z'));
  return { file, serverDir, data };
}

function check(r: { path: string }, file: string, serverDir: string, data: Buffer): void {
  assert.ok(fs.readFileSync(r.path).equals(data), 'same bytes');
  const st = fs.statSync(r.path);
  assert.equal(st.mtime.toISOString(), '2024-01-01T00:00:00.000Z');
  assert.deepEqual(fs.readdirSync(serverDir), [path.basename(file)], 'no temporary left');
}

test('copy: O_DIRECT for a large file of odd size where allowed, a plain copy otherwise; same bytes either way', async () => {
  for (const [directIo, pool] of [['on', new ChunkPool(2 * 1024 * 1024, 3)], ['on', undefined], ['off', undefined]] as const) {
    const { file, serverDir, data } = setup(9 * 1024 * 1024 + 123);
    const r = await publish(file, serverDir, path.basename(file), 'copy', { directIo, pool });
    check(r, file, serverDir, data);
    assert.equal(fs.statSync(r.path).mode & 0o777, 0o640);
    assert.ok(fs.existsSync(file), 'copy keeps the LOCAL_DIR file');
    if (directIo === 'off') assert.match(r.method, /^(clone|copy)$/);
    else if (O_DIRECT !== undefined) assert.match(r.method, /^(clone|copy|copy \(O_DIRECT\))$/);
  }
});

test('hardlink and move publish the same file', async () => {
  for (const mode of ['hardlink', 'move'] as const) {
    const { file, serverDir, data } = setup(100_000);
    const r = await publish(file, serverDir, path.basename(file), mode);
    check(r, file, serverDir, data);
    assert.equal(fs.existsSync(file), mode === 'hardlink');
  }
});

/** A target the final rename cannot replace: a folder that is not empty. */
function blockTarget(serverDir: string, name: string): void {
  fs.mkdirSync(path.join(serverDir, name, 'occupied'), { recursive: true });
}

test('a failed final rename in copy or hardlink mode removes only our temporary; the LOCAL_DIR file stays', async () => {
  for (const mode of ['copy', 'hardlink'] as const) {
    const { file, serverDir, data } = setup(100_000);
    blockTarget(serverDir, path.basename(file));
    await assert.rejects(publish(file, serverDir, path.basename(file), mode));
    assert.deepEqual(fs.readdirSync(serverDir), [path.basename(file)], 'no temporary left beside the blocked name');
    assert.ok(fs.readFileSync(file).equals(data), `${mode}: the verified file is intact`);
  }
});

test('move mode: a failed final rename puts the file back in LOCAL_DIR (the temporary was its only copy)', async () => {
  const { file, serverDir, data } = setup(100_000);
  blockTarget(serverDir, path.basename(file));
  await assert.rejects(publish(file, serverDir, path.basename(file), 'move'));
  assert.ok(fs.readFileSync(file).equals(data), 'back under its LOCAL_DIR name, whole');
  assert.deepEqual(fs.readdirSync(serverDir), [path.basename(file)]);
});

// /dev/shm is another filesystem on Linux: a rename from there is refused with EXDEV.
const otherFs = fs.existsSync('/dev/shm') && fs.statSync('/dev/shm').dev !== fs.statSync(root).dev ? '/dev/shm' : null;

test('move mode across filesystems: copied, and the source removed only once the copy has its final name', { skip: otherFs ? false : 'no second filesystem (/dev/shm) on this machine' }, async () => {
  const dir = fs.mkdtempSync(path.join(otherFs!, 'ipi-move-'));
  try {
    const { serverDir, data } = setup(100_000);
    const file = path.join(dir, 'IPI_20240101.dat');
    fs.writeFileSync(file, data);
    fs.utimesSync(file, new Date('2024-01-01T00:00:00Z'), new Date('2024-01-01T00:00:00Z'));
    // First the final name is blocked: the copy is not published, so the source must stay.
    blockTarget(serverDir, 'IPI_20240101.dat');
    await assert.rejects(publish(file, serverDir, 'IPI_20240101.dat', 'move'));
    assert.ok(fs.readFileSync(file).equals(data), 'source intact after a failed publish');
    assert.deepEqual(fs.readdirSync(serverDir), ['IPI_20240101.dat'], 'no temporary left');
    fs.rmSync(path.join(serverDir, 'IPI_20240101.dat'), { recursive: true });
    const r = await publish(file, serverDir, 'IPI_20240101.dat', 'move');
    check(r, file, serverDir, data);
    assert.equal(fs.existsSync(file), false, 'source removed after the publish');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
