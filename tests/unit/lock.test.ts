import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  acquireLock, describeHolder, heartbeatSilenceMs, isStale, lockFileFor, lockStatus, pidAlive, readLock, STALE_AFTER_REFRESHES, type LockInfo,
} from '../../src/lock.js';
import { EXIT, LockHeldError } from '../../src/errors.js';

let root: string;
let n = 0;
before(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-lock-'));
});
after(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

/** A fresh folder and the lock file path in it. */
function lockPath(): { dir: string; file: string } {
  const dir = path.join(root, `case-${++n}`);
  fs.mkdirSync(dir);
  return { dir, file: lockFileFor(path.join(dir, 'last_file.txt')) };
}

const host = os.hostname();
const noTakeover = (msg: string) => assert.fail(`unexpected takeover: ${msg}`);

function writeLock(file: string, info: Partial<LockInfo> | string, ageMs = 0): void {
  fs.writeFileSync(file, typeof info === 'string' ? info : JSON.stringify(info));
  if (ageMs > 0) {
    const t = new Date(Date.now() - ageMs);
    fs.utimesSync(file, t, t);
  }
}

describe('lockFileFor', () => {
  test('is the marker file with .lock appended', () => {
    assert.equal(lockFileFor('/x/last_file.txt'), '/x/last_file.txt.lock');
  });
});

describe('pidAlive', () => {
  test('our own process is alive', () => {
    assert.equal(pidAlive(process.pid), true);
  });

  test('a pid that cannot exist is not alive', () => {
    assert.equal(pidAlive(2 ** 30), false);
  });
});

describe('isStale (pure)', () => {
  const here = { host: 'me', alive: (pid: number) => pid === 42 };

  test('unreadable content younger than 10 s is held (a writer may still be busy)', () => {
    assert.equal(isStale(null, 0, here), false);
    assert.equal(isStale(null, 9_999, here), false);
    assert.equal(isStale(null, 10_000, here), false);
  });

  test('unreadable content older than 10 s is stale', () => {
    assert.equal(isStale(null, 10_001, here), true);
    assert.equal(isStale(null, 3_600_000, here), true);
  });

  test('a lock from another host is never stale, however old or dead', () => {
    const info: LockInfo = { pid: 1, host: 'other', since: 'x', token: 't' };
    assert.equal(isStale(info, 365 * 86_400_000, { host: 'me', alive: () => false }), false);
  });

  test('a lock from this host is stale exactly when its pid is dead', () => {
    assert.equal(isStale({ pid: 42, host: 'me', since: 'x', token: 't' }, 0, here), false);
    assert.equal(isStale({ pid: 43, host: 'me', since: 'x', token: 't' }, 0, here), true);
  });

  test('a heartbeat silent for 20 periods is stale wherever it ran: another host, a pid alive here (reused, or our own)', () => {
    const silence = heartbeatSilenceMs(30);
    assert.equal(silence, 30 * 1000 * STALE_AFTER_REFRESHES);
    assert.equal(silence, 600_000, '10 minutes at the default period');
    for (const info of [
      { pid: 1, host: 'other', since: 'x', token: 't', refreshSeconds: 30 },
      { pid: 42, host: 'me', since: 'x', token: 't', refreshSeconds: 30 },
    ]) {
      assert.equal(isStale(info, silence, here), false, `${JSON.stringify(info)} at the limit`);
      assert.equal(isStale(info, silence + 1, here), true, `${JSON.stringify(info)} past the limit`);
    }
  });

  test('a beating lock from another host is held; one from a dead pid here is stale at once, as before', () => {
    assert.equal(isStale({ pid: 1, host: 'other', since: 'x', token: 't', refreshSeconds: 30 }, 60_000, here), false);
    assert.equal(isStale({ pid: 43, host: 'me', since: 'x', token: 't', refreshSeconds: 30 }, 0, here), true);
  });

  test('another pid namespace on this host (a container sharing the folder and host name): its pid cannot be looked up here, only the heartbeat tells', () => {
    const mine = { host: 'me', alive: (pid: number) => pid === 42, pid: 42, pidNs: 'pid:[1]' };
    const theirs = { pid: 43, host: 'me', since: 'x', token: 't', refreshSeconds: 30, pidNs: 'pid:[2]' };
    assert.equal(isStale(theirs, 60_000, mine), false, 'pid 43 is dead here, but it is another namespace\'s pid');
    assert.equal(isStale({ ...theirs, pid: 42 }, 60_000, mine), false, 'our own pid number, in another namespace');
    assert.equal(isStale(theirs, heartbeatSilenceMs(30) + 1, mine), true);
  });

  test('the same pid namespace: a dead pid is stale at once, a live one and our own are held', () => {
    const mine = { host: 'me', alive: (pid: number) => pid === 42, pid: 42, pidNs: 'pid:[1]' };
    assert.equal(isStale({ pid: 43, host: 'me', since: 'x', token: 't', refreshSeconds: 30, pidNs: 'pid:[1]' }, 0, mine), true);
    assert.equal(isStale({ pid: 42, host: 'me', since: 'x', token: 't', refreshSeconds: 30, pidNs: 'pid:[1]' }, 0, mine), false);
    assert.equal(isStale({ pid: 44, host: 'me', since: 'x', token: 't', refreshSeconds: 30, pidNs: 'pid:[1]' }, 0, { ...mine, alive: () => true }), false);
  });

  test('a lock of an earlier version (no namespace) is judged by its pid, as before', () => {
    const mine = { host: 'me', alive: (pid: number) => pid === 42, pid: 42, pidNs: 'pid:[1]' };
    assert.equal(isStale({ pid: 43, host: 'me', since: 'x', token: 't', refreshSeconds: 30 }, 0, mine), true);
  });

  test('the silence is judged by the period the holder promised, not ours', () => {
    const info = { pid: 1, host: 'other', since: 'x', token: 't', refreshSeconds: 300 };
    assert.equal(isStale(info, 600_001, here), false);
    assert.equal(isStale(info, heartbeatSilenceMs(300) + 1, here), true);
  });
});

describe('describeHolder', () => {
  test('names pid, host, since and the file', () => {
    assert.equal(
      describeHolder({ pid: 7, host: 'box', since: '2024-01-01T00:00:00.000Z', token: 't' }, '/l.lock'),
      'pid 7 on box since 2024-01-01T00:00:00.000Z (lock file /l.lock)',
    );
  });

  test('an unreadable lock says so', () => {
    assert.equal(describeHolder(null, '/l.lock'), 'an unreadable lock file /l.lock');
  });
});

describe('acquireLock', () => {
  test('creates the lock file with our pid, host, start time and a token', async () => {
    const { file } = lockPath();
    const before = Date.now();
    const lock = await acquireLock(file, noTakeover);
    assert.equal(lock.file, file);
    const info = JSON.parse(fs.readFileSync(file, 'utf8')) as LockInfo;
    assert.equal(info.pid, process.pid);
    assert.equal(info.host, host);
    assert.ok(Date.parse(info.since) >= before - 1000 && Date.parse(info.since) <= Date.now() + 1000);
    assert.equal(typeof info.token, 'string');
    assert.ok(info.token.length >= 16);
    await lock.release();
  });

  test('a second acquire throws LockHeldError (exit 3) naming pid, host and since', async () => {
    const { file } = lockPath();
    const lock = await acquireLock(file, noTakeover);
    const info = JSON.parse(fs.readFileSync(file, 'utf8')) as LockInfo;
    await assert.rejects(acquireLock(file, noTakeover), (err: unknown) => {
      assert.ok(err instanceof LockHeldError);
      assert.equal(err.exitCode, EXIT.locked);
      assert.equal(err.exitCode, 3);
      assert.equal(err.kind, 'permanent');
      assert.ok(err.message.includes(`pid ${process.pid}`), err.message);
      assert.ok(err.message.includes(`on ${host}`), err.message);
      assert.ok(err.message.includes(`since ${info.since}`), err.message);
      assert.ok(err.message.includes(file), err.message);
      assert.match(err.message, /delete the lock file/);
      return true;
    });
    // The failed attempt left the holder's lock alone.
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), info);
    await lock.release();
  });

  test('release removes the lock, and the lock can then be taken again', async () => {
    const { dir, file } = lockPath();
    const lock = await acquireLock(file, noTakeover);
    await lock.release();
    assert.equal(fs.existsSync(file), false);
    assert.deepEqual(fs.readdirSync(dir), []);
    const again = await acquireLock(file, noTakeover);
    assert.equal(fs.existsSync(file), true);
    await again.release();
  });

  test('release twice is harmless', async () => {
    const { file } = lockPath();
    const lock = await acquireLock(file, noTakeover);
    assert.equal(lock.tookOverFromPid, null, 'a free lock was taken from no one');
    await lock.release();
    await lock.release();
    assert.equal(fs.existsSync(file), false);
  });

  test('a lock left by a dead pid on this host is taken over, with a message', async () => {
    const { dir, file } = lockPath();
    writeLock(file, { pid: 999_999, host, since: '2024-01-01T00:00:00.000Z', token: 'old' });
    const messages: string[] = [];
    const lock = await acquireLock(file, (m) => messages.push(m), { alive: () => false });
    assert.equal(messages.length, 1);
    assert.equal(messages[0], `took over a stale lock left by pid 999999 on ${host} since 2024-01-01T00:00:00.000Z (lock file ${file}): that run is gone`);
    assert.equal(lock.tookOverFromPid, 999_999, 'its temporaries are leftovers at once');
    const info = JSON.parse(fs.readFileSync(file, 'utf8')) as LockInfo;
    assert.equal(info.pid, process.pid);
    assert.notEqual(info.token, 'old');
    assert.deepEqual(fs.readdirSync(dir), [path.basename(file)], 'no .stale-* file left behind');
    await lock.release();
    assert.equal(fs.existsSync(file), false);
  });

  test('a beating lock of this host from another pid namespace is not taken over, though its pid is dead here', async () => {
    const { file } = lockPath();
    writeLock(file, { pid: 4242, host, since: 's', token: 'theirs', refreshSeconds: 30, pidNs: 'pid:[1]' });
    await assert.rejects(acquireLock(file, noTakeover, { alive: () => false }), LockHeldError);
    assert.equal((JSON.parse(fs.readFileSync(file, 'utf8')) as LockInfo).token, 'theirs');
  });

  test('the lock records this process\'s pid namespace where the system has one', async () => {
    const { file } = lockPath();
    const lock = await acquireLock(file, noTakeover);
    const info = JSON.parse(fs.readFileSync(file, 'utf8')) as LockInfo;
    if (process.platform === 'linux') assert.match(info.pidNs ?? '', /^pid:\[\d+\]$/);
    else assert.equal(info.pidNs, undefined);
    await lock.release();
  });

  test('the injected liveness check is asked about the holder\'s pid', async () => {
    const { file } = lockPath();
    writeLock(file, { pid: 4321, host, since: 's', token: 'old' });
    const asked: number[] = [];
    await assert.rejects(acquireLock(file, noTakeover, {
      alive: (pid) => {
        asked.push(pid);
        return true;
      },
    }), LockHeldError);
    assert.deepEqual(asked, [4321]);
  });

  test('a lock from another host is never stolen, even if that pid is dead here', async () => {
    const { file } = lockPath();
    const theirs = { pid: 999_999, host: `not-${host}`, since: '2020-01-01T00:00:00.000Z', token: 'theirs' };
    writeLock(file, theirs, 30 * 86_400_000);
    await assert.rejects(acquireLock(file, noTakeover, { alive: () => false }), (err: unknown) => {
      assert.ok(err instanceof LockHeldError);
      assert.ok(err.message.includes(`pid 999999 on not-${host} since 2020-01-01T00:00:00.000Z`), err.message);
      return true;
    });
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), theirs);
  });

  test('garbage lock content younger than 10 s is held', async () => {
    const { file } = lockPath();
    writeLock(file, '{"pid": 12');
    await assert.rejects(acquireLock(file, noTakeover, { alive: () => false }), (err: unknown) => {
      assert.ok(err instanceof LockHeldError);
      assert.ok(err.message.includes(`an unreadable lock file ${file}`), err.message);
      return true;
    });
    assert.equal(fs.readFileSync(file, 'utf8'), '{"pid": 12');
  });

  test('garbage lock content older than 10 s is stale and taken over', async () => {
    const { file } = lockPath();
    writeLock(file, 'garbage', 60_000);
    const messages: string[] = [];
    const lock = await acquireLock(file, (m) => messages.push(m));
    assert.deepEqual(messages, [`took over a stale lock left by an unreadable lock file ${file}: that run is gone`]);
    assert.equal(lock.tookOverFromPid, null, 'no pid to go by');
    assert.equal((JSON.parse(fs.readFileSync(file, 'utf8')) as LockInfo).pid, process.pid);
    await lock.release();
  });

  test('JSON of the wrong shape counts as unreadable', async () => {
    const { file } = lockPath();
    writeLock(file, JSON.stringify({ pid: '12', host, since: 's', token: 't' }));
    const held = await readLock(file);
    assert.ok(held);
    assert.equal(held.info, null);
    assert.ok(held.ageMs >= 0 && held.ageMs < 10_000);
  });

  test('a lock that comes alive between our read and our rename is given back', async () => {
    const { dir, file } = lockPath();
    const content = { pid: 5555, host, since: 's', token: 'fresh' };
    writeLock(file, content);
    let calls = 0;
    // First look: dead. Second look (after moving it aside): alive, i.e. a new run took it meanwhile.
    await assert.rejects(acquireLock(file, noTakeover, { alive: () => ++calls > 1 }), LockHeldError);
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), content);
    assert.deepEqual(fs.readdirSync(dir), [path.basename(file)]);
  });

  test('a lock naming our own pid is not taken over (it may be a live run in another container); the message says what it may be', async () => {
    const { file } = lockPath();
    writeLock(file, { pid: process.pid, host, since: 's', token: 'a-dead-run-or-another-container' });
    await assert.rejects(acquireLock(file, noTakeover), (err: unknown) => err instanceof LockHeldError
      && err.message.includes(`names this process's own pid ${process.pid}`) && /delete the lock file/.test(err.message));
    assert.equal((JSON.parse(fs.readFileSync(file, 'utf8')) as LockInfo).token, 'a-dead-run-or-another-container');
  });

  test('giving a fresh lock back never replaces a lock a third run took meanwhile', async () => {
    const { dir, file } = lockPath();
    writeLock(file, { pid: 5555, host, since: 's', token: 'second' });
    const third = { pid: 6666, host, since: 's', token: 'third' };
    let calls = 0;
    // First look: dead. Second look (after moving it aside): alive; a third run has taken the free name meanwhile.
    await assert.rejects(acquireLock(file, noTakeover, {
      alive: () => {
        if (++calls === 2) writeLock(file, third);
        return calls > 1;
      },
    }), LockHeldError);
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), third);
    assert.deepEqual(fs.readdirSync(dir), [path.basename(file)], 'nothing set aside is left behind');
  });

  test('release does not delete a lock that someone else took over', async () => {
    const { file } = lockPath();
    const lock = await acquireLock(file, noTakeover);
    const other = { pid: 777, host, since: 's', token: 'someone-else' };
    writeLock(file, other);
    await lock.release();
    assert.equal(fs.existsSync(file), true);
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), other);
  });

  test('release does not delete garbage that replaced our lock', async () => {
    const { file } = lockPath();
    const lock = await acquireLock(file, noTakeover);
    writeLock(file, 'not json');
    await lock.release();
    assert.equal(fs.readFileSync(file, 'utf8'), 'not json');
  });

  test('a missing folder is an error, not a held lock', async () => {
    const file = path.join(root, 'no-such-dir', 'last_file.txt.lock');
    await assert.rejects(acquireLock(file, noTakeover), (err: NodeJS.ErrnoException) => err.code === 'ENOENT' && !(err instanceof LockHeldError));
  });
});

describe('the heartbeat', () => {
  const waitFor = async (what: string, ok: () => boolean): Promise<void> => {
    for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(ok(), what);
  };

  test('the lock records its period, and the holder keeps touching it', async () => {
    const { file } = lockPath();
    const lock = await acquireLock(file, noTakeover, { refreshMs: 20 });
    assert.equal((JSON.parse(fs.readFileSync(file, 'utf8')) as LockInfo).refreshSeconds, 0.02);
    const old = new Date(Date.now() - 3_600_000);
    fs.utimesSync(file, old, old);
    await waitFor('the mtime is fresh again', () => Date.now() - fs.statSync(file).mtimeMs < 60_000);
    assert.equal(lock.lost.aborted, false);
    await lock.release();
    assert.equal(fs.existsSync(file), false);
  });

  test('the default period is 30 s', async () => {
    const { file } = lockPath();
    const lock = await acquireLock(file, noTakeover);
    assert.equal((JSON.parse(fs.readFileSync(file, 'utf8')) as LockInfo).refreshSeconds, 30);
    await lock.release();
  });

  test('a lock deleted under its holder is lost: the signal says so, and nothing is recreated', async () => {
    const { dir, file } = lockPath();
    const lock = await acquireLock(file, noTakeover, { refreshMs: 20 });
    fs.rmSync(file);
    await waitFor('lost', () => lock.lost.aborted);
    assert.ok(lock.lost.reason instanceof LockHeldError);
    assert.equal((lock.lost.reason as LockHeldError).exitCode, 3);
    assert.match((lock.lost.reason as Error).message, new RegExp(`lost the lock ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: it was deleted`));
    assert.throws(() => lock.lost.throwIfAborted(), LockHeldError);
    await lock.release();
    assert.deepEqual(fs.readdirSync(dir), []);
  });

  test('a lock taken over by another run is lost, names the new holder, and is not touched nor removed', async () => {
    const { file } = lockPath();
    const lock = await acquireLock(file, noTakeover, { refreshMs: 20 });
    const theirs = { pid: 4242, host: 'elsewhere', since: '2026-01-01T00:00:00.000Z', token: 'theirs', refreshSeconds: 30 };
    writeLock(file, theirs, 3_600_000);
    await waitFor('lost', () => lock.lost.aborted);
    assert.match((lock.lost.reason as Error).message, /lost the lock .* to pid 4242 on elsewhere/);
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(Date.now() - fs.statSync(file).mtimeMs > 3_000_000, 'their lock is not touched by us');
    await lock.release();
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), theirs);
  });

  test('after release the heartbeat stops: a new holder is neither touched nor reported lost', async () => {
    const { file } = lockPath();
    const lock = await acquireLock(file, noTakeover, { refreshMs: 20 });
    await lock.release();
    writeLock(file, { pid: 4242, host: 'elsewhere', since: 's', token: 'next' }, 3_600_000);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(lock.lost.aborted, false);
    assert.ok(Date.now() - fs.statSync(file).mtimeMs > 3_000_000);
  });

  test('a lock from another host, silent past its limit, is taken over with a message saying how long', async () => {
    const { file } = lockPath();
    writeLock(file, { pid: 1, host: `not-${host}`, since: '2026-01-01T00:00:00.000Z', token: 'gone', refreshSeconds: 30 }, 11 * 60_000);
    const messages: string[] = [];
    const lock = await acquireLock(file, (m) => messages.push(m));
    assert.deepEqual(messages, [`took over a stale lock left by pid 1 on not-${host} since 2026-01-01T00:00:00.000Z (lock file ${file}): untouched for 11 min, that run is gone`]);
    assert.equal(lock.tookOverFromPid, null, 'a pid of another host says nothing here');
    assert.equal((JSON.parse(fs.readFileSync(file, 'utf8')) as LockInfo).pid, process.pid);
    await lock.release();
  });

  test('a beating lock from another host is held, and the message says when it will be taken over', async () => {
    const { file } = lockPath();
    const theirs = { pid: 1, host: `not-${host}`, since: 's', token: 'live', refreshSeconds: 30 };
    writeLock(file, theirs, 60_000);
    await assert.rejects(acquireLock(file, noTakeover), (err: unknown) => err instanceof LockHeldError
      && /once it has been untouched for 10 min/.test(err.message) && /delete the lock file/.test(err.message));
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), theirs);
  });

  test('a period that is not a positive number makes the lock unreadable', async () => {
    for (const refreshSeconds of [0, -5, '30']) {
      const { file } = lockPath();
      writeLock(file, JSON.stringify({ pid: 1, host, since: 's', token: 't', refreshSeconds }));
      assert.equal((await readLock(file))?.info, null, String(refreshSeconds));
    }
  });
});

describe('lockStatus (what `status` shows)', () => {
  test('free', async () => {
    const { file } = lockPath();
    assert.deepEqual(await lockStatus(file), { held: false, holder: null, description: null, touchedSecondsAgo: null, stale: false });
  });

  test('a lock without a heartbeat (an older version\'s): the holder, no freshness', async () => {
    const { file } = lockPath();
    const info = { pid: 7, host: 'box', since: 's', token: 't' };
    writeLock(file, info, 3_600_000);
    assert.deepEqual(await lockStatus(file), {
      held: true, holder: info, description: `pid 7 on box since s (lock file ${file})`, touchedSecondsAgo: null, stale: false,
    });
  });

  test('a beating lock says when it was last touched; a silent one that the next run takes it over', async () => {
    const { file } = lockPath();
    writeLock(file, { pid: 7, host: 'box', since: 's', token: 't', refreshSeconds: 30 }, 20_000);
    const fresh = await lockStatus(file);
    assert.equal(fresh.stale, false);
    assert.ok(fresh.touchedSecondsAgo! >= 19 && fresh.touchedSecondsAgo! < 60, String(fresh.touchedSecondsAgo));
    assert.match(fresh.description!, /^pid 7 on box since s \(lock file .*\), last touched \d+ s ago$/);
    writeLock(file, { pid: 7, host: 'box', since: 's', token: 't', refreshSeconds: 30 }, 11 * 60_000);
    const silent = await lockStatus(file);
    assert.equal(silent.stale, true);
    assert.match(silent.description!, /last touched 6\d\d s ago: silent too long, the next run takes it over$/);
  });
});

describe('readLock', () => {
  test('null when there is no lock', async () => {
    const { file } = lockPath();
    assert.equal(await readLock(file), null);
  });

  test('the parsed content and its age', async () => {
    const { file } = lockPath();
    const info = { pid: 1, host: 'h', since: 's', token: 't' };
    writeLock(file, info, 20_000);
    const held = await readLock(file);
    assert.deepEqual(held?.info, info);
    assert.ok(held!.ageMs >= 19_000 && held!.ageMs < 60_000, String(held!.ageMs));
  });
});
