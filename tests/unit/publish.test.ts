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
