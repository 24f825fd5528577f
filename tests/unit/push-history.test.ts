// ipi-push's upload history (src/push/history.ts) and what `ipi-push status` takes from it.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import { gatherPushStatus } from '../../src/commands/push-status.js';
import { buildConfig } from '../../src/config/load.js';
import { isUploadLine, openUploadHistory, recentUploads, uploadHistoryFileFor, type UploadLine } from '../../src/push/history.js';
import { StateStore } from '../../src/push/state.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-push-history-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

const line: UploadLine = {
  path: 'site/a.dat', size: 3, mtime: '2024-01-01T00:00:00.000Z', mtimeMs: Date.parse('2024-01-01T00:00:00.000Z'), sha256: 'a'.repeat(64),
  remotePath: '/in/site/a.dat', uploadedAt: '2024-01-01T00:05:00.000Z', verified: 'sha256', alreadyThere: false, resumedFrom: 0, bytesSent: 3, durationMs: 1,
};

describe('upload history', () => {
  test('lives beside the state file, as its lock does', () => {
    assert.equal(uploadHistoryFileFor('/var/lib/ipi/ipi-push-state.json'), '/var/lib/ipi/ipi-push-state.history.jsonl');
  });

  test('isUploadLine: the fields status shows, with their types', () => {
    assert.equal(isUploadLine(line), true);
    assert.equal(isUploadLine({ ...line, path: 5 }), false);
    assert.equal(isUploadLine({ ...line, verified: 'hash' }), false);
    assert.equal(isUploadLine({ ...line, uploadedAt: 'yesterday' }), false);
    assert.equal(isUploadLine({ name: 'IPI.dat', size: 1, sha256: 'x', deliveredAt: line.uploadedAt, remoteMtime: line.mtime }), false, "an ipi-pull line is not an upload");
    assert.equal(isUploadLine(null), false);
  });

  test('appended one line per upload, never rewritten; read newest first, torn and foreign lines skipped', async () => {
    const state = path.join(root, 'append', 'ipi-push-state.json');
    fs.mkdirSync(path.dirname(state));
    const h = openUploadHistory(state);
    await h.append(line);
    await h.append({ ...line, path: 'b.dat', alreadyThere: true });
    await h.close();
    fs.appendFileSync(uploadHistoryFileFor(state), '{"path":"c.d'); // torn by a crash
    const h2 = openUploadHistory(state);
    await h2.append({ ...line, path: 'd.dat' });
    await h2.close();
    const text = fs.readFileSync(uploadHistoryFileFor(state), 'utf8');
    assert.ok(text.startsWith(`${JSON.stringify(line)}\n`), 'earlier lines kept as written');
    assert.deepEqual((await recentUploads(state)).map((l) => l.path), ['d.dat', 'b.dat', 'site/a.dat']);
  });

  test('no history yet: none', async () => {
    assert.deepEqual(await recentUploads(path.join(root, 'none', 's.json')), []);
  });
});

describe('ipi-push status and the history', () => {
  function config(dir: string) {
    fs.mkdirSync(path.join(dir, 'w'), { recursive: true });
    return buildConfig({ host: '127.0.0.1', user: 'u', password: 'p', watchDir: './w', uploadDir: '/in', stateFile: './s.json' },
      { envFile: null, baseDir: dir, tool: 'push', serverOptional: true });
  }

  test('the last upload comes from the history, which remembers files the state has forgotten', async () => {
    const c = config(path.join(root, 'status-history'));
    const store = await StateStore.open(c.stateFile);
    await store.markUploaded('kept.dat', { size: 1, mtimeMs: 1, sha256: 'k', uploadedAt: '2024-01-01T00:00:00.000Z', remotePath: '/in/kept.dat', verified: 'size' });
    const h = openUploadHistory(c.stateFile);
    await h.append({ ...line, path: 'kept.dat', uploadedAt: '2024-01-01T00:00:00.000Z' });
    await h.append({ ...line, path: 'archived.dat', uploadedAt: '2024-02-01T00:00:00.000Z', alreadyThere: true });
    await h.close();
    const s = await gatherPushStatus(c);
    assert.equal(s.historyFile, uploadHistoryFileFor(c.stateFile));
    assert.equal(s.uploadedCount, 1);
    assert.equal(s.lastUploaded?.path, 'archived.dat');
    assert.equal(s.lastUploaded?.alreadyThere, true);
  });

  test('a state written before there was a history: its newest record', async () => {
    const c = config(path.join(root, 'status-state'));
    const store = await StateStore.open(c.stateFile);
    await store.markUploaded('old.dat', { size: 1, mtimeMs: 1, sha256: 'o', uploadedAt: '2024-01-01T00:00:00.000Z', remotePath: '/in/old.dat', verified: 'size' });
    await store.markUploaded('new.dat', { size: 1, mtimeMs: 1, sha256: 'n', uploadedAt: '2024-01-02T00:00:00.000Z', remotePath: '/in/new.dat', verified: 'size' });
    assert.equal((await gatherPushStatus(c)).lastUploaded?.path, 'new.dat');
  });
});
