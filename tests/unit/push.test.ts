// ipi-push's pure decisions, its state file and its pipelined send, without a server.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import {
  afterUploadDue, foldersToMirror, goneFromWatchDir, ignoreMatcher, isInside, isSettled, needsUpload, nextRetryAt, observe, parseSha256sums, queueOrder,
  remoteAncestors, remoteFolder, remoteTarget, sameAsRemote, sha256sumBatch, shellQuote, unsafeRelReason, type StateView,
} from '../../src/push/decide.js';
import {
  StateCorruptError, StateStore, applyChanges, emptyState, journalFileFor, parseJournal, parseState, readState, stateFromTexts, type StateChange,
} from '../../src/push/state.js';
import { scanDir } from '../../src/push/scan.js';
import { LocalChangedError, sendRange, type RemoteWriter } from '../../src/transfer/upload-engine.js';
import { buildConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { pushMetrics } from '../../src/commands/push.js';
import type { writeMetrics } from '../../src/metrics.js';
import { newPushSummary, noteFolders, noteUpload, type PushSummary } from '../../src/push/summary.js';
import { fakeLog } from './helpers/fake-log.js';

/** Temporary folders of this file, removed after its tests (they were left in /tmp before). */
const tmpDirs: string[] = [];
function tmp(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tmpDirs.push(dir);
  return dir;
}
after(() => {
  for (const dir of tmpDirs) fs.rmSync(dir, { recursive: true, force: true });
});

const DEFAULT_IGNORE = '.*,*.tmp,*.temp,*.part,*.partial,*.crdownload,*.download,*.swp,*~,~$*'.split(',');

describe('ignore rules', () => {
  const ignored = ignoreMatcher(DEFAULT_IGNORE);
  test('temporary, partial, hidden and editor names are ignored by default', () => {
    for (const rel of ['a.tmp', 'x/y.part', '.hidden', 'dir/.~lock.doc#', 'f.swp', 'notes~', '~$report.docx', 'big.crdownload', '.git/config', 'sub/.cache/x.dat']) {
      assert.equal(ignored(rel), true, rel);
    }
  });
  test('ordinary names are not', () => {
    for (const rel of ['IPI_20240101.dat', 'a/b/c.csv', 'part1.dat', 'tmp/file.dat']) assert.equal(ignored(rel), false, rel);
  });
  test('our own remote temporary suffix is always ignored, even with IGNORE=none', () => {
    assert.equal(ignoreMatcher([])('x/.a.dat.ipi-push-part'), true);
    assert.equal(ignoreMatcher([])('x/a.dat'), false);
  });
  test('a glob with a slash matches the relative path', () => {
    const m = ignoreMatcher(['drafts/**']);
    assert.equal(m('drafts/a/b.dat'), true);
    assert.equal(m('final/drafts.dat'), false);
  });
});

describe('paths', () => {
  test('isInside: the root, below it, never beside or above it', () => {
    assert.equal(isInside('/w', '/w'), true);
    assert.equal(isInside('/w', '/w/a/b'), true);
    assert.equal(isInside('/w', '/wx/a'), false);
    assert.equal(isInside('/w', '/'), false);
    assert.equal(isInside('/w', '/w/../etc/passwd'), false);
    assert.equal(isInside('C:\\w', 'C:\\w\\a', path.win32), true);
    assert.equal(isInside('C:\\w', 'D:\\w\\a', path.win32), false);
  });
  test('unsafe relative names are refused with a reason', () => {
    assert.equal(unsafeRelReason('a/b.dat'), null);
    assert.match(unsafeRelReason('a/\nb.dat')!, /control/);
    assert.match(unsafeRelReason('a/../b')!, /\.\./);
    assert.match(unsafeRelReason('a\\b')!, /backslash/);
    assert.match(unsafeRelReason('/abs')!, /relative/);
  });
  test('remote target: relative path kept under the upload folder, temporary beside the final name', () => {
    assert.deepEqual(remoteTarget('/in/', 'a/b/c.dat'), { dir: '/in/a/b', final: '/in/a/b/c.dat', temp: '/in/a/b/.c.dat.ipi-push-part' });
    assert.deepEqual(remoteTarget('/in', 'c.dat'), { dir: '/in', final: '/in/c.dat', temp: '/in/.c.dat.ipi-push-part' });
    assert.deepEqual(remoteTarget('/', 'c.dat'), { dir: '/', final: '/c.dat', temp: '/.c.dat.ipi-push-part' });
  });
});

describe('what to upload, and when', () => {
  const up = (size: number, mtimeMs: number) => ({ size, mtimeMs, sha256: 'x', uploadedAt: 'now', remotePath: '/r', verified: 'size' as const });
  const state: StateView = {
    uploaded: { 'done.dat': up(10, 1000), 'edited.dat': up(10, 1000) },
    failed: {
      'perm.dat': { size: 5, mtimeMs: 1, error: 'denied', attempts: 1, lastAttemptAt: 'x', nextRetryAt: null, permanent: true },
      'later.dat': { size: 5, mtimeMs: 1, error: 'reset', attempts: 2, lastAttemptAt: 'x', nextRetryAt: new Date(60_000).toISOString(), permanent: false },
    },
  };
  test('new, changed, uploaded', () => {
    assert.deepEqual(needsUpload({ rel: 'new.dat', size: 1, mtimeMs: 1 }, state, 0), { upload: true, why: 'new' });
    assert.deepEqual(needsUpload({ rel: 'done.dat', size: 10, mtimeMs: 1000 }, state, 0), { upload: false, why: 'uploaded' });
    assert.deepEqual(needsUpload({ rel: 'edited.dat', size: 10, mtimeMs: 2000 }, state, 0), { upload: true, why: 'changed' });
    assert.deepEqual(needsUpload({ rel: 'edited.dat', size: 11, mtimeMs: 1000 }, state, 0), { upload: true, why: 'changed' });
  });
  test('a permanent failure waits for a change of the file or --retry-failed', () => {
    assert.equal(needsUpload({ rel: 'perm.dat', size: 5, mtimeMs: 1 }, state, 0).upload, false);
    assert.equal(needsUpload({ rel: 'perm.dat', size: 5, mtimeMs: 1 }, state, 0, { retryFailed: true }).upload, true);
    assert.equal(needsUpload({ rel: 'perm.dat', size: 5, mtimeMs: 1 }, state, 0, { waitForRetry: false }).upload, false, 'not by --once alone');
    assert.equal(needsUpload({ rel: 'perm.dat', size: 6, mtimeMs: 1 }, state, 0).upload, true);
  });
  test('AFTER_UPLOAD left undone (a crash after the state recorded the upload, a move that failed): due for the very version uploaded, only', () => {
    for (const action of ['archive', 'delete'] as const) {
      assert.equal(afterUploadDue({ rel: 'done.dat', size: 10, mtimeMs: 1000 }, state, action), true, action);
      assert.equal(afterUploadDue({ rel: 'edited.dat', size: 10, mtimeMs: 2000 }, state, action), false, `${action}: changed since, so uploaded again first`);
      assert.equal(afterUploadDue({ rel: 'new.dat', size: 1, mtimeMs: 1 }, state, action), false, `${action}: never uploaded`);
      assert.equal(afterUploadDue({ rel: 'perm.dat', size: 5, mtimeMs: 1 }, state, action), false, `${action}: failed`);
    }
    assert.equal(afterUploadDue({ rel: 'done.dat', size: 10, mtimeMs: 1000 }, state, 'keep'), false);
    const both: StateView = { uploaded: { 'x.dat': up(5, 1) }, failed: { 'x.dat': state.failed['perm.dat']! } };
    assert.equal(afterUploadDue({ rel: 'x.dat', size: 5, mtimeMs: 1 }, both, 'delete'), false, 'a failure of this version since: not done');
  });
  test('a transient failure waits for its next retry time', () => {
    assert.deepEqual(needsUpload({ rel: 'later.dat', size: 5, mtimeMs: 1 }, state, 59_999), { upload: false, why: 'retry-later' });
    assert.deepEqual(needsUpload({ rel: 'later.dat', size: 5, mtimeMs: 1 }, state, 60_000), { upload: true, why: 'retry' });
  });
  test('--once does not wait for it: cron\'s interval between runs is its backoff', () => {
    assert.deepEqual(needsUpload({ rel: 'later.dat', size: 5, mtimeMs: 1 }, state, 0, { waitForRetry: false }), { upload: true, why: 'retry' });
  });
  test('queue order is oldest first, ties by path, whatever order they were found in', () => {
    const files = [{ rel: 'b', size: 1, mtimeMs: 5 }, { rel: 'a', size: 1, mtimeMs: 5 }, { rel: 'z', size: 1, mtimeMs: 1 }];
    assert.deepEqual([...files].sort(queueOrder).map((f) => f.rel), ['z', 'a', 'b']);
    assert.deepEqual([...files].reverse().sort(queueOrder).map((f) => f.rel), ['z', 'a', 'b']);
  });
  test('settling: two looks settle apart that agree; any change starts the clock again', () => {
    let o = observe(undefined, { size: 1, mtimeMs: 1 }, 1000);
    assert.equal(isSettled(o, 2999, 2000), false);
    o = observe(o, { size: 2, mtimeMs: 2 }, 2500);
    assert.equal(isSettled(o, 3000, 2000), false);
    o = observe(o, { size: 2, mtimeMs: 2 }, 4500);
    assert.equal(isSettled(o, 4500, 2000), true);
  });
  test('retry backoff follows RETRY_DELAYS by attempt, the last repeating', () => {
    const d = [5000, 10_000, 30_000];
    assert.deepEqual([1, 2, 3, 4, 9].map((a) => nextRetryAt(a, d, 0)), [5000, 10_000, 30_000, 30_000, 30_000]);
  });
  test('a remote copy with the same size and second-resolution mtime counts as this file', () => {
    assert.equal(sameAsRemote({ size: 3, mtimeMs: 1500 }, { size: 3, mtimeMs: 1000, isFile: true }), true);
    assert.equal(sameAsRemote({ size: 3, mtimeMs: 2500 }, { size: 3, mtimeMs: 1000, isFile: true }), false);
    assert.equal(sameAsRemote({ size: 3, mtimeMs: 1500 }, { size: 4, mtimeMs: 1000, isFile: true }), false);
  });
});

describe('sha256sum over SSH', () => {
  test('output parsing: one digest per name, GNU escaping of odd names undone, noise ignored', () => {
    const h = 'a'.repeat(64);
    const g = 'b'.repeat(64);
    const out = [
      `${h}  /in/a.dat`,
      `\\${g}  /in/a\\nb\\\\c.dat`,
      `${g} */in/bin mode.dat`,
      'sha256sum: /in/gone.dat: No such file or directory',
      'This service allows sftp connections only.',
      `${h.slice(1)}  /in/short-digest.dat`,
      '',
    ].join('\n');
    assert.deepEqual([...parseSha256sums(out)], [
      ['/in/a.dat', h],
      ['/in/a\nb\\c.dat', g],
      ['/in/bin mode.dat', g],
    ]);
    assert.equal(parseSha256sums('').size, 0);
  });
  test('a command takes at most maxFiles names and maxChars of quoted names, and always one', () => {
    const paths = Array.from({ length: 10 }, (_, i) => `/in/f${i}`); // each quoted word and a space: 9 chars
    assert.equal(sha256sumBatch(paths, 64, 32 * 1024), 10);
    assert.equal(sha256sumBatch(paths, 4, 32 * 1024), 4);
    assert.equal(sha256sumBatch(paths, 64, 27), 3);
    assert.equal(sha256sumBatch(paths, 64, 26), 2);
    assert.equal(sha256sumBatch(['/x'.repeat(100)], 64, 10), 1);
  });
  test('shell quoting survives quotes, spaces and $', () => {
    assert.equal(shellQuote("/in/it's $HOME a"), `'/in/it'\\''s $HOME a'`);
  });
});

describe('state file', () => {
  const dir = tmp('ipi-push-state-');
  test('a missing state file is an empty state', async () => {
    assert.deepEqual(await readState(path.join(dir, 'none.json')), emptyState());
  });
  test('round trip through the store, written atomically, failures counted per version of the file', async () => {
    const file = path.join(dir, 's.json');
    const store = await StateStore.open(file);
    await store.markInProgress({ rel: 'a', size: 1, mtimeMs: 2, remoteTemp: '/t', startedAt: 'x' });
    const f1 = await store.markFailed('a', { size: 1, mtimeMs: 2 }, 'reset', false, () => 5000);
    const f2 = await store.markFailed('a', { size: 1, mtimeMs: 2 }, 'reset', false, () => 6000);
    assert.equal(f1.attempts, 1);
    assert.equal(f2.attempts, 2);
    assert.equal(f2.nextRetryAt, new Date(6000).toISOString());
    const f3 = await store.markFailed('a', { size: 9, mtimeMs: 2 }, 'denied', true, () => 1);
    assert.equal(f3.attempts, 1, 'a changed file starts counting again');
    assert.equal(f3.nextRetryAt, null);
    await store.markUploaded('a', { size: 9, mtimeMs: 2, sha256: 'h', uploadedAt: 'now', remotePath: '/r/a', verified: 'sha256' });
    const again = await readState(file);
    assert.deepEqual(again.failed, {});
    assert.equal(again.inProgress, null);
    assert.equal(again.uploaded.a!.sha256, 'h');
    assert.deepEqual(fs.readdirSync(dir).filter((n) => n.startsWith('.')), [], 'no temporary left');
  });
  test('records of files gone from WATCH_DIR are dropped, so the state does not grow forever; an empty scan drops nothing', async () => {
    assert.deepEqual(goneFromWatchDir(['a', 'sub/b', 'c'], new Set(['a', 'c', 'new'])), ['sub/b']);
    assert.deepEqual(goneFromWatchDir(['a', 'b'], new Set()), [], 'an unmounted share looks empty: keep everything');
    assert.deepEqual(goneFromWatchDir(['a', 'locked/x', 'locked/deep/y', 'lockedness', 'odd'], new Set(['a']), ['locked', 'odd']), ['lockedness'],
      'records under a folder that could not be read, or a name that was skipped, are not forgotten');
    const file = path.join(dir, 'forget.json');
    const store = await StateStore.open(file);
    const rec = { size: 1, mtimeMs: 2, sha256: 'h', uploadedAt: 'now', remotePath: '/r', verified: 'size' as const };
    await store.markUploaded('a', rec);
    await store.markUploaded('sub/b', rec);
    await store.markFailed('c', { size: 1, mtimeMs: 2 }, 'denied', true, () => null);
    await store.forget(['sub/b', 'c', 'never-recorded']);
    const again = await readState(file);
    assert.deepEqual(Object.keys(again.uploaded), ['a']);
    assert.deepEqual(again.failed, {});
    const before = fs.readFileSync(journalFileFor(file), 'utf8');
    await store.forget(['nothing-here']);
    assert.equal(fs.readFileSync(journalFileFor(file), 'utf8'), before, 'nothing to forget: nothing written');
    await store.close();
  });
  test('overlapping saves land in order, the last one holding every change', async () => {
    const file = path.join(dir, 'overlap.json');
    const store = await StateStore.open(file);
    const rec = { size: 1, mtimeMs: 2, sha256: 'h', uploadedAt: 'now', remotePath: '/r', verified: 'size' as const };
    await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? store.markUploaded(`f${i}`, rec) : store.markFoldersMirrored([{ rel: `d${i}`, remotePath: `/in/d${i}` }]))));
    const again = await readState(file);
    assert.equal(Object.keys(again.uploaded).length, 10);
    assert.equal(Object.keys(again.folders).length, 10);
    assert.deepEqual(fs.readdirSync(dir).filter((n) => n.startsWith('.overlap')), [], 'no temporary left');
  });
  test('an upload cut short keeps the acknowledged prefix (ackedTo) through a save and a read', async () => {
    const file = path.join(dir, 'acked.json');
    const store = await StateStore.open(file);
    await store.markInProgress({ rel: 'a', size: 10, mtimeMs: 2, remoteTemp: '/t', startedAt: 'x', ackedTo: 4 });
    assert.equal((await readState(file)).inProgress?.ackedTo, 4);
    await store.markInProgress({ rel: 'a', size: 10, mtimeMs: 2, remoteTemp: '/t', startedAt: 'y' });
    assert.equal((await readState(file)).inProgress?.ackedTo, undefined, 'a new attempt (temporary cut back) clears it');
    const bad = '{"version":1,"uploaded":{},"failed":{},"inProgress":{"rel":"a","size":1,"mtimeMs":1,"remoteTemp":"/t","startedAt":"x","ackedTo":"4"}}';
    assert.throws(() => parseState(bad, '/s.json'), /"inProgress" is incomplete/);
  });
  test('a damaged state is refused with what is wrong and the recovery steps, never overwritten', async () => {
    for (const [text, why] of [['{"version":1,"uploaded":{}', /not valid JSON/], ['[]', /not a JSON object/], ['{"version":2,"uploaded":{},"failed":{}}', /unknown version/],
      ['{"version":1,"uploaded":{"a":{"size":"x"}},"failed":{}}', /uploaded entry "a"/]] as const) {
      assert.throws(() => parseState(text, '/s.json'), (err: unknown) => {
        assert.ok(err instanceof StateCorruptError);
        assert.ok(err instanceof ConfigError, 'exit code 2');
        assert.match(err.message, why);
        assert.match(err.message, /mv '\/s\.json' '\/s\.json\.corrupt'/);
        return true;
      });
    }
  });
});

describe('state journal', () => {
  const dir = tmp('ipi-push-journal-');
  const rec = (n: number) => ({ size: n, mtimeMs: 2, sha256: 'h', uploadedAt: 'now', remotePath: `/r/${n}`, verified: 'size' as const });
  const lines = (file: string) => fs.readFileSync(journalFileFor(file), 'utf8').split('\n').filter(Boolean).length;

  test('a change is one journal line, not a rewrite of the state; closing folds the journal in and removes it', async () => {
    const file = path.join(dir, 'plain.json');
    fs.writeFileSync(file, JSON.stringify({ ...emptyState(), uploaded: { old: rec(1) } }));
    const before = fs.readFileSync(file, 'utf8');
    const store = await StateStore.open(file);
    await store.markInProgress({ rel: 'a', size: 1, mtimeMs: 2, remoteTemp: '/t', startedAt: 'x' });
    await store.markUploaded('a', rec(5));
    assert.equal(fs.readFileSync(file, 'utf8'), before, 'STATE_FILE not rewritten per change');
    assert.equal(lines(file), 3, 'in progress; uploaded, and in progress cleared');
    const seen = await readState(file);
    assert.deepEqual(Object.keys(seen.uploaded).sort(), ['a', 'old'], 'a reader replays the journal');
    assert.equal(seen.inProgress, null);
    await store.close();
    assert.equal(fs.existsSync(journalFileFor(file)), false);
    assert.deepEqual(parseState(fs.readFileSync(file, 'utf8'), file), seen, 'STATE_FILE alone holds it all');
  });

  test('the journal is folded in once it has as many lines as the state had entries (at least 1,000): each change costs O(1)', async () => {
    const file = path.join(dir, 'compact.json');
    const store = await StateStore.open(file);
    for (let i = 0; i < 999; i++) await store.markUploaded(`f${i}`, rec(i));
    assert.equal(fs.existsSync(file), false, 'not yet');
    assert.equal(lines(file), 999);
    await store.markUploaded('f999', rec(999));
    assert.equal(Object.keys(parseState(fs.readFileSync(file, 'utf8'), file).uploaded).length, 1000, 'rewritten with everything');
    assert.equal(lines(file), 0, 'journal emptied');
    for (let i = 1000; i < 1999; i++) await store.markUploaded(`f${i}`, rec(i));
    assert.equal(Object.keys(parseState(fs.readFileSync(file, 'utf8'), file).uploaded).length, 1000, 'next fold after as many lines as entries');
    assert.equal(Object.keys((await readState(file)).uploaded).length, 1999);
    await store.close();
  });

  test('a line torn by a crash is left out by readers and cut off by the next writer, whose lines then read cleanly', async () => {
    const file = path.join(dir, 'torn.json');
    const whole = `${JSON.stringify({ k: 'uploaded', rel: 'kept', v: rec(1) })}\n`;
    fs.writeFileSync(journalFileFor(file), `${whole}{"k":"uploaded","rel":"torn","v":{"si`);
    assert.deepEqual(Object.keys((await readState(file)).uploaded), ['kept']);
    const ro = await StateStore.open(file, { readOnly: true });
    await ro.close();
    assert.ok(fs.readFileSync(journalFileFor(file), 'utf8').endsWith('{"si'), 'a read-only store (--dry-run) writes nothing');
    await assert.rejects(ro.markUploaded('x', rec(1)), /read-only/);
    const store = await StateStore.open(file);
    assert.equal(fs.readFileSync(journalFileFor(file), 'utf8'), whole, 'the torn line cut off');
    await store.markUploaded('next', rec(2));
    assert.deepEqual(Object.keys((await readState(file)).uploaded).sort(), ['kept', 'next']);
    await store.close({ fold: false });
    assert.equal(lines(file), 2, 'fold: false (a run that lost its lock) leaves the journal as it is');
    assert.equal(fs.existsSync(file), false);
  });

  test('replaying a journal over a state that already holds it changes nothing (a crash between the fold and emptying the journal)', () => {
    const changes: StateChange[] = [
      { k: 'inProgress', v: { rel: 'a', size: 1, mtimeMs: 2, remoteTemp: '/t', startedAt: 'x' } },
      { k: 'failed', rel: 'a', v: { size: 1, mtimeMs: 2, error: 'e', attempts: 2, lastAttemptAt: 't', nextRetryAt: null, permanent: false } },
      { k: 'uploaded', rel: 'a', v: rec(1) }, { k: 'failed', rel: 'a', v: null }, { k: 'inProgress', v: null },
      { k: 'folders', rel: 'd', v: { remotePath: '/r/d', mirroredAt: 't' } }, { k: 'uploaded', rel: 'gone', v: null },
    ];
    const once = emptyState();
    applyChanges(once, changes);
    const twice = structuredClone(once);
    applyChanges(twice, changes);
    assert.deepEqual(twice, once);
    const text = changes.map((c) => `${JSON.stringify(c)}\n`).join('');
    assert.deepEqual(stateFromTexts(JSON.stringify(once), text, '/s.json'), once);
  });

  test('a fold holds only changes already in the journal: one under way during it is not in STATE_FILE, so a crash before the journal is emptied brings back nothing older', async () => {
    const file = path.join(dir, 'fold-under-way.json');
    const store = await StateStore.open(file);
    await store.markFoldersMirrored(Array.from({ length: 997 }, (_, i) => ({ rel: `d${i}`, remotePath: `/r/d${i}` })));
    await store.markUploaded('f', rec(1));
    const journalled = fs.readFileSync(journalFileFor(file), 'utf8');
    // Line 1,000 folds the journal in; a newer version of f is recorded meanwhile (another
    // file in flight), in memory at once, its line still to come.
    const folding = store.markFoldersMirrored([{ rel: 'x', remotePath: '/r/x' }, { rel: 'y', remotePath: '/r/y' }]);
    const newer = store.markUploaded('f', rec(2));
    await folding;
    const folded = fs.readFileSync(file, 'utf8');
    await newer;
    // A crash after the fold's rename, before the journal was emptied: that journal, replayed over the fold.
    const xy = ['x', 'y'].map((rel) => JSON.stringify({ k: 'folders', rel, v: store.state.folders[rel] })).join('\n');
    const afterCrash = stateFromTexts(folded, `${journalled}${xy}\n`, file);
    assert.deepEqual(afterCrash, parseState(folded, file), 'replaying the journal over the fold changes nothing');
    assert.equal(afterCrash.uploaded.f!.size, 1, 'the newer version, not yet in the journal, is not in the fold either');
    await store.close();
    assert.equal((await readState(file)).uploaded.f!.size, 2);
  });

  test('files and folders named __proto__, constructor or toString are recorded like any other', async () => {
    const file = path.join(dir, 'names.json');
    const names = ['__proto__', 'constructor', 'toString', 'sub/__proto__'];
    const local = (rel: string) => ({ rel, size: 7, mtimeMs: 2 });
    assert.deepEqual(names.map((n) => needsUpload(local(n), emptyState(), 0).why), ['new', 'new', 'new', 'new'], 'nothing inherited counts as a record');
    assert.deepEqual(foldersToMirror(names, emptyState().folders, '/in'), [...names].sort());
    const store = await StateStore.open(file);
    for (const n of names) await store.markUploaded(n, { ...rec(7), remotePath: `/in/${n}` });
    await store.markFoldersMirrored(names.map((n) => ({ rel: n, remotePath: `/in/${n}` })));
    for (const read of [() => readState(file), async () => (await store.close(), readState(file))]) {
      const state = await read();
      assert.deepEqual(Object.keys(state.uploaded).sort(), [...names].sort());
      assert.equal(Object.getPrototypeOf(state.uploaded), Object.prototype, 'the map itself untouched');
      assert.deepEqual(names.map((n) => needsUpload(local(n), state, 0).why), ['uploaded', 'uploaded', 'uploaded', 'uploaded']);
      assert.deepEqual(foldersToMirror(names, state.folders, '/in'), []);
    }
    const again = await StateStore.open(file);
    await again.forget(['__proto__', 'constructor']);
    assert.deepEqual(Object.keys((await readState(file)).uploaded).sort(), ['sub/__proto__', 'toString']);
    await again.close();
  });

  test('a damaged line inside the journal is refused with the recovery steps for both files', () => {
    const good = `${JSON.stringify({ k: 'uploaded', rel: 'a', v: rec(1) })}\n`;
    for (const line of ['not json', '{"k":"uploaded","rel":"b","v":{"size":"x"}}', '{"k":"elsewhere","rel":"b","v":null}', '{"k":"inProgress","v":5}']) {
      assert.throws(() => parseJournal(`${good}${line}\n${good}`, '/s.json'), (err: unknown) => {
        assert.ok(err instanceof StateCorruptError && err instanceof ConfigError);
        assert.match(err.message, /journal \/s\.json\.journal is damaged: line 2 /);
        assert.match(err.message, /mv '\/s\.json' '\/s\.json\.corrupt'; mv '\/s\.json\.journal' '\/s\.json\.journal\.corrupt'/);
        return true;
      });
    }
  });
});

describe('scan', () => {
  test('stable order, ignored names skipped, symbolic links out of WATCH_DIR not followed', async () => {
    const root = tmp('ipi-push-scan-');
    const outside = tmp('ipi-push-out-');
    fs.writeFileSync(path.join(outside, 'secret.txt'), 'secret');
    fs.mkdirSync(path.join(root, 'b/c'), { recursive: true });
    fs.writeFileSync(path.join(root, 'b/c/x.dat'), 'x');
    fs.writeFileSync(path.join(root, 'a.dat'), 'a');
    fs.writeFileSync(path.join(root, 'a.tmp'), 'tmp');
    fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(root, 'link-out.txt'));
    fs.symlinkSync(outside, path.join(root, 'dir-out'));
    fs.symlinkSync(path.join(root, 'a.dat'), path.join(root, 'link-in.dat'));
    const r = await scanDir(root, ignoreMatcher(DEFAULT_IGNORE));
    assert.deepEqual(r.files.map((f) => f.rel).sort(), ['a.dat', 'b/c/x.dat', 'link-in.dat']);
    assert.deepEqual(r.skipped.map((s) => s.rel).sort(), ['dir-out', 'link-out.txt']);
    assert.match(r.skipped.find((s) => s.rel === 'link-out.txt')!.reason, /outside WATCH_DIR/);
  });
  test('folders: every real one, empty ones too, parents first; ignored folders and links to folders are not among them', async () => {
    const root = tmp('ipi-push-scan-');
    const outside = tmp('ipi-push-out-');
    for (const d of ['empty', 'site/2024/01', 'site/2024/02', '.git/objects', 'drafts.tmp/inner', 'z']) fs.mkdirSync(path.join(root, d), { recursive: true });
    fs.writeFileSync(path.join(root, 'z/f.dat'), 'f');
    fs.symlinkSync(outside, path.join(root, 'dir-out'));
    fs.symlinkSync(path.join(root, 'site'), path.join(root, 'dir-in'));
    const r = await scanDir(root, ignoreMatcher(DEFAULT_IGNORE));
    assert.deepEqual(r.dirs, ['empty', 'site', 'site/2024', 'site/2024/01', 'site/2024/02', 'z']);
    assert.deepEqual(r.files.map((f) => f.rel), ['z/f.dat']);
    assert.deepEqual(r.skipped.map((s) => s.rel).sort(), ['dir-in', 'dir-out'], 'links to folders are skipped, with a reason, never walked');
  });
});

describe('folders mirrored on the server', () => {
  const rec = (remotePath: string) => ({ remotePath, mirroredAt: 'x' });
  test('the folders to make: seen and not recorded for this SFTP_UPLOAD_DIR, parents first', () => {
    assert.deepEqual(foldersToMirror(['b', 'a/x', 'a', 'c', 'a b'], { c: rec('/in/c') }, '/in'), ['a', 'a b', 'a/x', 'b']);
    assert.deepEqual(foldersToMirror(['c'], { c: rec('/in/c') }, '/in/'), [], 'recorded: no remote call');
    assert.deepEqual(foldersToMirror(['c'], { c: rec('/old/c') }, '/in'), ['c'], 'recorded for another upload folder: made again');
    assert.deepEqual(foldersToMirror([], { c: rec('/in/c') }, '/in'), []);
  });
  test('remote paths', () => {
    assert.equal(remoteFolder('/in/', 'a/b'), '/in/a/b');
    assert.equal(remoteFolder('/', 'a'), '/a');
    assert.deepEqual(remoteAncestors('/in/a/b'), ['/in/a/b', '/in/a', '/in']);
    assert.deepEqual(remoteAncestors('in/a'), ['in/a', 'in']);
  });
  test('recorded in the state in one save, kept through a read, forgotten with the folder; older states without them still read', async () => {
    const dir = tmp('ipi-push-folders-');
    const file = path.join(dir, 's.json');
    const store = await StateStore.open(file);
    await store.markFoldersMirrored([{ rel: 'a', remotePath: '/in/a' }, { rel: 'a/b', remotePath: '/in/a/b' }]);
    const again = await readState(file);
    assert.deepEqual(Object.keys(again.folders), ['a', 'a/b']);
    assert.equal(again.folders['a/b']!.remotePath, '/in/a/b');
    assert.ok(Date.parse(again.folders.a!.mirroredAt) > 0);
    await store.forget(['a/b']);
    assert.deepEqual(Object.keys((await readState(file)).folders), ['a']);
    assert.deepEqual(parseState('{"version":1,"uploaded":{},"failed":{},"inProgress":null}', '/s.json').folders, {}, 'a state from before folders were recorded');
    assert.throws(() => parseState('{"version":1,"uploaded":{},"failed":{},"folders":{"a":{"remotePath":5}}}', '/s.json'), /folders entry "a" is incomplete/);
    assert.throws(() => parseState('{"version":1,"uploaded":{},"failed":{},"folders":[]}', '/s.json'), /"folders" must be an object/);
    assert.deepEqual(goneFromWatchDir(['a', 'a/b', 'f.dat'], new Set(['a', 'f.dat'])), ['a/b'], 'a folder gone from WATCH_DIR is forgotten like a file');
  });
});

describe('push settings', () => {
  const base = { SFTP_HOST: 'h', SFTP_USER: 'u', SFTP_PASS: 'p' } as const;
  const ctx = (tool: 'pull' | 'push') => ({ envFile: null, baseDir: '/base', tool });
  const raw = (o: Record<string, string>) => {
    const out: Record<string, string> = {};
    const names: Record<string, string> = { SFTP_HOST: 'host', SFTP_USER: 'user', SFTP_PASS: 'password', SFTP_DIR: 'remoteDir', WATCH_DIR: 'watchDir', SFTP_UPLOAD_DIR: 'uploadDir', AFTER_UPLOAD: 'afterUpload', ARCHIVE_DIR: 'archiveDir', STATE_FILE: 'stateFile' };
    for (const [k, v] of Object.entries(o)) out[names[k]!] = v;
    return out;
  };
  test('ipi-pull needs SFTP_DIR and not the push folders; ipi-push the reverse', () => {
    assert.doesNotThrow(() => buildConfig(raw({ ...base, SFTP_DIR: '/d' }), ctx('pull')));
    assert.throws(() => buildConfig(raw({ ...base, SFTP_DIR: '/d' }), ctx('push')), /WATCH_DIR is not set/);
    assert.throws(() => buildConfig(raw({ ...base, WATCH_DIR: './w' }), ctx('push')), /SFTP_UPLOAD_DIR is not set/);
    const c = buildConfig(raw({ ...base, WATCH_DIR: './w', SFTP_UPLOAD_DIR: '/in' }), ctx('push'));
    assert.equal(c.watchDir, path.resolve('/base', 'w'));
    assert.equal(c.stateFile, path.resolve('/base', 'ipi-push-state.json'));
    assert.equal(c.verify, 'sha256');
    assert.equal(c.afterUpload, 'keep');
  });
  test('archive needs ARCHIVE_DIR outside WATCH_DIR; the state file stays outside WATCH_DIR', () => {
    const p = { ...base, WATCH_DIR: './w', SFTP_UPLOAD_DIR: '/in' };
    assert.throws(() => buildConfig(raw({ ...p, AFTER_UPLOAD: 'archive' }), ctx('push')), /needs ARCHIVE_DIR/);
    assert.throws(() => buildConfig(raw({ ...p, AFTER_UPLOAD: 'archive', ARCHIVE_DIR: './w/done' }), ctx('push')), /inside WATCH_DIR/);
    assert.doesNotThrow(() => buildConfig(raw({ ...p, AFTER_UPLOAD: 'archive', ARCHIVE_DIR: './done' }), ctx('push')));
    assert.throws(() => buildConfig(raw({ ...p, STATE_FILE: './w/state.json' }), ctx('push')), /STATE_FILE .* inside WATCH_DIR/);
  });
});

describe('pipelined send (fake server)', () => {
  async function withFile(data: Buffer, fn: (fh: fsp.FileHandle) => Promise<void>): Promise<void> {
    const file = path.join(tmp('ipi-send-'), 'f');
    fs.writeFileSync(file, data);
    const fh = await fsp.open(file, 'r');
    try {
      await fn(fh);
    } finally {
      await fh.close();
    }
  }
  function fakeServer(maxWriteLen: number, opts: { delayMs?: number } = {}) {
    const got = Buffer.alloc(1 << 20);
    let inFlight = 0;
    let maxInFlight = 0;
    let largest = 0;
    const writer: RemoteWriter = {
      maxWriteLen,
      async write(_h, buf, off, len, position) {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        largest = Math.max(largest, len);
        const copy = Buffer.from(buf.subarray(off, off + len));
        await new Promise((r) => setTimeout(r, opts.delayMs ?? 1));
        copy.copy(got, position);
        inFlight--;
      },
    };
    return { writer, got, stats: () => ({ maxInFlight, largest }) };
  }
  const data = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7) & 0xff));

  test('many WRITEs in flight, none larger than the server allows, bounded by the chunk window; bytes land in place', async () => {
    const srv = fakeServer(10_000);
    const acked: number[] = [];
    let hashed = 0;
    await withFile(data, async (fh) => {
      const r = await sendRange({
        writer: srv.writer, handle: Buffer.from('h'), local: fh, from: 0, size: data.length, chunkSize: 64 * 1024, chunksInFlight: 3,
        dataTimeoutMs: 5000, onStall: () => {}, onRead: (d) => {
          hashed += d.length;
        }, onAcked: (e) => acked.push(e),
      });
      assert.equal(r.bytesSent, data.length);
      assert.equal(r.ackedTo, data.length);
    });
    assert.ok(srv.got.subarray(0, data.length).equals(data));
    assert.equal(hashed, data.length);
    assert.ok(srv.stats().largest <= 10_000);
    assert.ok(srv.stats().maxInFlight > 3, `in flight: ${srv.stats().maxInFlight}`);
    assert.ok(srv.stats().maxInFlight <= 3 * Math.ceil((64 * 1024) / 10_000));
    assert.deepEqual(acked, [...acked].sort((a, b) => a - b), 'the resume point only moves forward');
    assert.equal(acked[acked.length - 1], data.length);
  });

  test('onRead sees every chunk in order after its WRITEs are out, and a buffer is reused only once its promise settles', async () => {
    const srv = fakeServer(10_000, { delayMs: 0 });
    const events: string[] = [];
    const seen: Buffer[] = [];
    const writer: RemoteWriter = {
      maxWriteLen: srv.writer.maxWriteLen,
      write(h, buf, off, len, position) {
        events.push(`write ${position}`);
        return srv.writer.write(h, buf, off, len, position);
      },
    };
    await withFile(data, async (fh) => {
      await sendRange({
        writer, handle: Buffer.from('h'), local: fh, from: 0, size: data.length, chunkSize: 32 * 1024, chunksInFlight: 2,
        dataTimeoutMs: 5000, onStall: () => {}, onAcked: () => {},
        // A slow hash: it copies the bytes only after a pause, so a buffer handed back to the
        // pool before this settles would be read over by a later chunk first.
        onRead: async (d, end) => {
          events.push(`read ${end - d.length}`);
          await new Promise((r) => setTimeout(r, 3));
          seen.push(Buffer.from(d));
        },
      });
    });
    assert.ok(Buffer.concat(seen).equals(data), 'the hash saw the file, in order');
    for (let at = 0; at < data.length; at += 32 * 1024) {
      assert.ok(events.indexOf(`write ${at}`) < events.indexOf(`read ${at}`), `the WRITEs of the chunk at ${at} went out first`);
    }
    assert.ok(srv.got.subarray(0, data.length).equals(data));
  });

  test('a refused WRITE: sendRange rejects only once no onRead is still using a buffer', async () => {
    const writer: RemoteWriter = { maxWriteLen: 10_000, write: (_h, _b, _o, _l, position) => (position === 0 ? Promise.reject(new Error('refused')) : Promise.resolve()) };
    let reading = 0;
    await withFile(data, async (fh) => {
      await assert.rejects(sendRange({
        writer, handle: Buffer.from('h'), local: fh, from: 0, size: data.length, chunkSize: 32 * 1024, chunksInFlight: 3,
        dataTimeoutMs: 5000, onStall: () => {}, onAcked: () => {},
        // The refused chunk's own hashing is the slowest: the others are done long before it.
        onRead: async (d, end) => {
          reading++;
          await new Promise((r) => setTimeout(r, end === d.length ? 50 : 0));
          reading--;
        },
      }), /refused/);
      assert.equal(reading, 0);
    });
  });

  test('resuming sends only the rest', async () => {
    const srv = fakeServer(32_000);
    await withFile(data, async (fh) => {
      const r = await sendRange({
        writer: srv.writer, handle: Buffer.from('h'), local: fh, from: 100_000, size: data.length, chunkSize: 64 * 1024, chunksInFlight: 2,
        dataTimeoutMs: 5000, onStall: () => {}, onRead: () => {}, onAcked: () => {},
      });
      assert.equal(r.bytesSent, data.length - 100_000);
    });
    assert.ok(srv.got.subarray(100_000, data.length).equals(data.subarray(100_000)));
    assert.equal(srv.got[0], 0, 'the prefix was not sent again');
  });

  test('a signal stops taking chunks but waits for the writes already sent: a clean prefix', async () => {
    const srv = fakeServer(8000, { delayMs: 5 });
    const ac = new AbortController();
    let acked = 0;
    await withFile(data, async (fh) => {
      await assert.rejects(sendRange({
        writer: srv.writer, handle: Buffer.from('h'), local: fh, from: 0, size: data.length, chunkSize: 32 * 1024, chunksInFlight: 2,
        dataTimeoutMs: 5000, onStall: () => {}, onRead: () => {}, onAcked: (e) => {
          acked = e;
          if (e >= 64 * 1024) ac.abort('SIGTERM');
        },
        signal: ac.signal,
      }), /stopped by SIGTERM/);
    });
    assert.ok(acked > 0 && acked < data.length);
    assert.ok(srv.got.subarray(0, acked).equals(data.subarray(0, acked)), 'everything up to the resume point is on the server');
  });

  test('a file shorter than announced is "still being written"', async () => {
    const srv = fakeServer(8000);
    await withFile(data.subarray(0, 1000), async (fh) => {
      await assert.rejects(sendRange({
        writer: srv.writer, handle: Buffer.from('h'), local: fh, from: 0, size: 5000, chunkSize: 32 * 1024, chunksInFlight: 2,
        dataTimeoutMs: 5000, onStall: () => {}, onRead: () => {}, onAcked: () => {},
      }), LocalChangedError);
    });
  });

  test('no acknowledgement within DATA_TIMEOUT: the stall is reported (the caller drops the link) and the send fails', async () => {
    let stalled = '';
    // Like SftpSession: destroying the connection rejects every pending request.
    const pending: Array<(e: Error) => void> = [];
    const writer: RemoteWriter = { maxWriteLen: 8000, write: () => new Promise((_, reject) => pending.push(reject)) };
    // The engine's watchdog is unref'd (a socket keeps a real run alive); here a timer does.
    const keepAlive = setTimeout(() => {}, 5000);
    after(() => clearTimeout(keepAlive));
    await withFile(data, async (fh) => {
      await assert.rejects(sendRange({
        writer, handle: Buffer.from('h'), local: fh, from: 0, size: data.length, chunkSize: 32 * 1024, chunksInFlight: 2,
        dataTimeoutMs: 200, onRead: () => {}, onAcked: () => {},
        onStall: (m) => {
          stalled = m;
          for (const r of pending) r(new Error('connection destroyed'));
        },
      }), /no acknowledgement/);
    });
    assert.match(stalled, /no acknowledgement from the server/);
  });
});

describe('the summary of a long --watch run', () => {
  const result = (i: number, adopted = false) => ({
    rel: `f${i}`, remotePath: `/in/f${i}`, size: 10, mtimeMs: 1, sha256: 'h', verified: 'size' as const, adopted, resumedFrom: 0, bytesSent: adopted ? 0 : 10, durationMs: 1, identity: { dev: 1, ino: i },
  });

  test('lists only about the latest `keep` uploads and folders, and counts every one', () => {
    const s = newPushSummary();
    for (let i = 0; i < 10_000; i++) noteUpload(s, result(i, i % 10 === 0), 100);
    for (let i = 0; i < 1_000; i++) noteFolders(s, [`d${i}`, `d${i}/e`], 100);
    assert.ok(s.uploaded.length >= 100 && s.uploaded.length < 200, String(s.uploaded.length));
    assert.equal(s.uploaded.at(-1)!.rel, 'f9999', 'the latest kept');
    assert.deepEqual(s.uploaded.map((u) => Number(u.rel.slice(1))), Array.from({ length: s.uploaded.length }, (_, i) => 10_000 - s.uploaded.length + i));
    assert.ok(s.folders.length >= 100 && s.folders.length < 200 && s.folders.at(-1) === 'd999/e');
    assert.deepEqual(s.totals, { uploaded: 9_000, alreadyThere: 1_000, bytes: 100_000, bytesSent: 90_000, folders: 2_000 });
  });

  test('without `keep` (--once) every upload is listed', () => {
    const s = newPushSummary();
    for (let i = 0; i < 3_000; i++) noteUpload(s, result(i));
    noteFolders(s, ['a', 'b']);
    assert.equal(s.uploaded.length, 3_000);
    assert.deepEqual(s.folders, ['a', 'b']);
  });
});

describe('METRICS_FILE of ipi-push', () => {
  const summary = (uploaded: number): PushSummary => {
    const s = newPushSummary();
    for (let i = 0; i < uploaded; i++) {
      noteUpload(s, { rel: `f${i}`, remotePath: `/in/f${i}`, size: 1, mtimeMs: 1, sha256: 'h', verified: 'size', adopted: false, resumedFrom: 0, bytesSent: 1, durationMs: 1, identity: { dev: 1, ino: i } });
    }
    return s;
  };

  test('counts every file of a service, not only those its summary still lists', async () => {
    const s = newPushSummary();
    for (let i = 0; i < 5_000; i++) {
      noteUpload(s, { rel: `f${i}`, remotePath: `/in/f${i}`, size: 3, mtimeMs: 1, sha256: 'h', verified: 'size', adopted: false, resumedFrom: 0, bytesSent: 3, durationMs: 1, identity: { dev: 1, ino: i } }, 10);
    }
    let got: { files: number; bytes: number } | null = null;
    await pushMetrics('/metrics.prom', Date.now(), fakeLog(), async (_file, m) => {
      got = { files: m.filesDelivered, bytes: m.bytesDelivered };
    })(s, 0);
    assert.deepEqual(got, { files: 5_000, bytes: 15_000 });
  });

  test('writes land one at a time and in the order asked: a slow early one never overwrites the final one', async () => {
    const landed: Array<{ files: number; exitCode: number }> = [];
    let writing = 0;
    let overlapped = false;
    let calls = 0;
    const write: typeof writeMetrics = async (_file, m) => {
      overlapped ||= writing > 0;
      writing++;
      // The first write (a per-file one of the service) is slow, later ones fast.
      await new Promise((r) => setTimeout(r, calls++ === 0 ? 80 : 1));
      landed.push({ files: m.filesDelivered, exitCode: m.exitCode });
      writing--;
    };
    const metrics = pushMetrics('/metrics.prom', Date.now(), fakeLog(), write);
    void metrics(summary(1), 0); // after the first file (watch mode's onActivity)
    void metrics(summary(2), 1); // after a failed connection
    void metrics(summary(3), 0); // after the third file
    await metrics(summary(3), 1); // the final write, in `after`
    assert.equal(overlapped, false, 'one write at a time');
    assert.deepEqual(landed.at(-1), { files: 3, exitCode: 1 }, 'the last write on disk is the final state');
    assert.deepEqual(landed[0], { files: 1, exitCode: 0 });
    assert.ok(landed.length <= 4);
  });

  test('no METRICS_FILE: nothing is written', async () => {
    let called = false;
    await pushMetrics(undefined, 0, fakeLog(), async () => {
      called = true;
    })(summary(1), 0);
    assert.equal(called, false);
  });
});
