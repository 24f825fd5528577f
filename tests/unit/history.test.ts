import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { HistoryAppender, isDelivery, recentDeliveries, type Delivery } from '../../src/history.js';
import { withTempDir } from './helpers/tmp.js';

const line: Delivery = {
  name: 'IPI_20240101.dat', size: 3, sha256: 'a'.repeat(64), remoteMtime: '2024-01-01T00:00:00.000Z', deliveredAt: '2024-01-01T00:05:00.000Z',
  durationMs: 1, bytesTransferred: 3, resumedFrom: 0, publishedTo: '/srv/IPI_20240101.dat',
};

test('isDelivery: the fields status and the mtime order rely on, with their types', () => {
  assert.equal(isDelivery(line), true);
  assert.equal(isDelivery({ ...line, name: 5 }), false);
  assert.equal(isDelivery({ ...line, size: 'x' }), false);
  assert.equal(isDelivery({ ...line, remoteMtime: 'yesterday' }), false);
  assert.equal(isDelivery(null), false);
  assert.equal(isDelivery('IPI_20240101.dat'), false);
});

test('recentDeliveries: newest first; torn and hand-edited lines are skipped', async () => {
  await withTempDir('ipi-history-', async (dir) => {
    const file = path.join(dir, 'last_file.history.jsonl');
    const h = new HistoryAppender(file);
    await h.append(line);
    await h.close();
    fs.appendFileSync(file, `${JSON.stringify({ name: 5, size: 'x' })}\n`);
    const h2 = new HistoryAppender(file);
    await h2.append({ ...line, name: 'IPI_20240102.dat' });
    await h2.close();
    fs.appendFileSync(file, '{"name":"IPI_2024010'); // torn by a crash
    assert.deepEqual((await recentDeliveries(file)).map((d) => d.name), ['IPI_20240102.dat', 'IPI_20240101.dat']);
  });
});

test('a line torn by a crash does not swallow the next one: the appender ends it first', async () => {
  await withTempDir('ipi-history-', async (dir) => {
    const file = path.join(dir, 'last_file.history.jsonl');
    const h = new HistoryAppender(file);
    await h.append(line);
    await h.close();
    fs.appendFileSync(file, '{"name":"IPI_2024010'); // torn by a crash
    const h2 = new HistoryAppender(file);
    await h2.append({ ...line, name: 'IPI_20240103.dat' });
    await h2.close();
    assert.deepEqual((await recentDeliveries(file)).map((d) => d.name), ['IPI_20240103.dat', 'IPI_20240101.dat']);
    assert.ok(fs.readFileSync(file, 'utf8').startsWith(`${JSON.stringify(line)}\n{"name":"IPI_2024010\n`), 'earlier bytes kept as they were');
  });
});

test('appends made at once (files in flight) land as whole lines in call order; one that fails does not stop the next', async () => {
  await withTempDir('ipi-history-', async (dir) => {
    const file = path.join(dir, 'last_file.history.jsonl');
    const h = new HistoryAppender(file);
    const names = Array.from({ length: 200 }, (_, i) => `IPI_2024${String(i).padStart(4, '0')}.dat`);
    // Many long lines at once: without the appender's turns the thread pool reorders them in
    // most runs here (measured: 4 of 6), not in every one; the turns make the order certain.
    await Promise.all(names.map((name) => h.append({ ...line, name, publishedTo: `/srv/${'x'.repeat(64 * 1024)}/${name}` })));
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await assert.rejects(h.appendAll([cyclic as unknown as Delivery]));
    await h.append({ ...line, name: 'IPI_20240201.dat' });
    await h.close();
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Delivery);
    assert.deepEqual(lines.map((d) => d.name), [...names, 'IPI_20240201.dat']);
  });
});
