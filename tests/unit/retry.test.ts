import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { retryDelay, withRetries, type Attempt } from '../../src/retry.js';
import { AccessDeniedError, EXIT, InterruptedError, PermanentError, TransientError } from '../../src/errors.js';
import { fakeLog } from './helpers/fake-log.js';


describe('retryDelay (pure)', () => {
  const delays = [5000, 10000, 30000];

  test('the n-th retry waits the n-th delay', () => {
    assert.equal(retryDelay(1, delays, false), 5000);
    assert.equal(retryDelay(2, delays, false), 10000);
    assert.equal(retryDelay(3, delays, false), 30000);
  });

  test('the last delay repeats', () => {
    assert.equal(retryDelay(4, delays, false), 30000);
    assert.equal(retryDelay(100, delays, false), 30000);
  });

  test('0 retries used is treated as the first', () => {
    assert.equal(retryDelay(0, delays, false), 5000);
  });

  test('after progress the wait goes back to the first delay', () => {
    assert.equal(retryDelay(3, delays, true), 5000);
    assert.equal(retryDelay(100, delays, true), 5000);
  });

  test('no delays at all: no wait', () => {
    assert.equal(retryDelay(1, [], false), 0);
    assert.equal(retryDelay(5, [], true), 0);
  });

  test('a single delay is used every time', () => {
    assert.equal(retryDelay(1, [7], false), 7);
    assert.equal(retryDelay(9, [7], false), 7);
  });
});

describe('withRetries', () => {
  const policy = { retries: 2, delaysMs: [1, 2] };

  test('the first success is returned; no warnings', async () => {
    const log = fakeLog();
    const ns: number[] = [];
    const v = await withRetries(async (_a, n) => {
      ns.push(n);
      return 'done';
    }, policy, log);
    assert.equal(v, 'done');
    assert.deepEqual(ns, [1]);
    assert.deepEqual(log.lines, []);
  });

  test('transient errors are retried, then the result of a later success is returned', async () => {
    const log = fakeLog();
    const ns: number[] = [];
    const v = await withRetries(async (_a, n) => {
      ns.push(n);
      if (n < 3) throw new TransientError(`link dropped ${n}`);
      return n;
    }, policy, log);
    assert.equal(v, 3);
    assert.deepEqual(ns, [1, 2, 3]);
    assert.equal(log.lines.length, 2);
    assert.ok(log.lines.every(([level]) => level === 'warn'));
  });

  test('transient errors are retried RETRIES times, then the last error is the result', async () => {
    const log = fakeLog();
    let attempts = 0;
    const last = new TransientError('still down');
    await assert.rejects(withRetries(async () => {
      attempts++;
      throw attempts === 3 ? last : new TransientError(`down ${attempts}`);
    }, policy, log), (err: unknown) => err === last);
    assert.equal(attempts, 3, '1 attempt + 2 retries');
    assert.equal(log.lines.length, 2);
    assert.match(log.lines[0]![1], /^down 1; retrying in 0\.0 s \(1 retries left\)$/);
    assert.match(log.lines[1]![1], /^down 2; retrying in 0\.0 s \(0 retries left\)$/);
  });

  test('RETRIES=0 means one attempt only', async () => {
    let attempts = 0;
    await assert.rejects(withRetries(async () => {
      attempts++;
      throw new TransientError('down');
    }, { retries: 0, delaysMs: [1] }, fakeLog()), TransientError);
    assert.equal(attempts, 1);
  });

  test('raw errors are classified: a reset connection is retried, with context in the message', async () => {
    let attempts = 0;
    await assert.rejects(withRetries(async () => {
      attempts++;
      throw Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    }, policy, fakeLog()), (err: unknown) => {
      assert.ok(err instanceof TransientError);
      assert.equal(err.message, 'the run: read ECONNRESET');
      return true;
    });
    assert.equal(attempts, 3);
  });

  test('a permanent error is not retried', async () => {
    const log = fakeLog();
    let attempts = 0;
    const denied = new AccessDeniedError('the server refused the login');
    await assert.rejects(withRetries(async () => {
      attempts++;
      throw denied;
    }, policy, log), (err: unknown) => err === denied);
    assert.equal(attempts, 1);
    assert.deepEqual(log.lines, []);
  });

  test('a raw permanent error (login refused by ssh2) is not retried', async () => {
    let attempts = 0;
    await assert.rejects(withRetries(async () => {
      attempts++;
      throw Object.assign(new Error('All configured authentication methods failed'), { level: 'client-authentication' });
    }, { retries: 5, delaysMs: [1] }, fakeLog()), AccessDeniedError);
    assert.equal(attempts, 1);
  });

  test('a permanent error after transient ones ends the run at once', async () => {
    let attempts = 0;
    await assert.rejects(withRetries(async () => {
      attempts++;
      if (attempts === 1) throw new TransientError('blip');
      throw new PermanentError('no such folder');
    }, { retries: 5, delaysMs: [1] }, fakeLog()), PermanentError);
    assert.equal(attempts, 2);
  });

  test('an attempt that made progress does not use up a retry', async () => {
    const log = fakeLog();
    let attempts = 0;
    await assert.rejects(withRetries(async (attempt: Attempt) => {
      attempts++;
      if (attempts <= 3) attempt.progressed = true; // three attempts that each moved data
      throw new TransientError(`drop ${attempts}`);
    }, { retries: 1, delaysMs: [1, 2] }, log), TransientError);
    // 3 progressing attempts (free) + 1 that used the single retry + the final one.
    assert.equal(attempts, 5);
    const warns = log.lines.map(([, m]) => m);
    assert.equal(warns.length, 4);
    assert.match(warns[0]!, /data moved, so the retry count starts again/);
    assert.match(warns[3]!, /^drop 4; retrying in .* \(0 retries left\)$/);
  });

  test('each attempt gets a fresh Attempt object with progressed = false', async () => {
    const seen: boolean[] = [];
    await withRetries(async (attempt, n) => {
      seen.push(attempt.progressed);
      attempt.progressed = true;
      if (n < 3) throw new TransientError('x');
      return null;
    }, { retries: 1, delaysMs: [1] }, fakeLog());
    assert.deepEqual(seen, [false, false, false]);
  });

  test('the waits follow RETRY_DELAYS, the last one repeating, and are announced', async () => {
    const log = fakeLog();
    let attempts = 0;
    const started = Date.now();
    await assert.rejects(withRetries(async () => {
      attempts++;
      throw new TransientError('down');
    }, { retries: 4, delaysMs: [0, 100, 200] }, log), TransientError);
    assert.equal(attempts, 5);
    assert.deepEqual(log.lines.map(([, m]) => m), [
      'down; retrying in 0 s (3 retries left)',
      'down; retrying in 0.1 s (2 retries left)',
      'down; retrying in 0.2 s (1 retries left)',
      'down; retrying in 0.2 s (0 retries left)',
    ]);
    assert.ok(Date.now() - started >= 450, 'the waits really happened');
  });

  test('after progress the wait is the first delay again', async () => {
    const log = fakeLog();
    let attempts = 0;
    await withRetries(async (attempt) => {
      attempts++;
      if (attempts === 1) throw new TransientError('down'); // first retry: 0 s
      if (attempts === 2) throw new TransientError('down'); // second retry: 0.1 s
      if (attempts === 3) {
        attempt.progressed = true;
        throw new TransientError('dropped'); // progress: back to the first delay
      }
      return 'ok';
    }, { retries: 3, delaysMs: [0, 100, 200] }, log);
    assert.deepEqual(log.lines.map(([, m]) => m), [
      'down; retrying in 0 s (2 retries left)',
      'down; retrying in 0.1 s (1 retries left)',
      'dropped; data moved, so the retry count starts again; retrying in 0 s',
    ]);
  });

  test('an abort during the wait ends the run with the abort reason', async () => {
    const ac = new AbortController();
    const reason = new Error('stopped by SIGINT');
    const started = Date.now();
    setTimeout(() => ac.abort(reason), 20);
    await assert.rejects(withRetries(async () => {
      throw new TransientError('down');
    }, { retries: 3, delaysMs: [60_000] }, fakeLog(), ac.signal), (err: unknown) => err === reason);
    assert.ok(Date.now() - started < 5000, 'did not wait the full delay');
  });

  test('an attempt that fails because a signal dropped the link ends the run as interrupted, with no "retrying" line', async () => {
    const ac = new AbortController();
    const log = fakeLog();
    let attempts = 0;
    await assert.rejects(withRetries(async (attempt: Attempt) => {
      attempts++;
      attempt.progressed = true;
      ac.abort('SIGTERM');
      throw new TransientError('reading remote data: interrupted');
    }, { retries: 3, delaysMs: [0] }, log, ac.signal), (err: unknown) => err instanceof InterruptedError && err.exitCode === EXIT.interrupted && /stopped by SIGTERM/.test(err.message));
    assert.equal(attempts, 1);
    assert.deepEqual(log.lines, []);
  });

  test('an already aborted signal runs nothing', async () => {
    const ac = new AbortController();
    ac.abort(new Error('early'));
    let attempts = 0;
    await assert.rejects(withRetries(async () => {
      attempts++;
      return 1;
    }, policy, fakeLog(), ac.signal), /early/);
    assert.equal(attempts, 0);
  });

  test('the retry count starts again after an attempt that moved data (as the RETRIES help says)',
    async () => {
      let attempts = 0;
      const v = await withRetries(async (attempt) => {
        attempts++;
        if (attempts === 1) throw new TransientError('connect failed'); // uses the only retry
        if (attempts === 2) {
          attempt.progressed = true; // moved data, then the link dropped
          throw new TransientError('link dropped');
        }
        return 'finished';
      }, { retries: 1, delaysMs: [1] }, fakeLog());
      assert.equal(v, 'finished');
      assert.equal(attempts, 3);
    });

  test('after progress, the fresh budget is a full RETRIES again', async () => {
    let attempts = 0;
    await assert.rejects(withRetries(async (attempt) => {
      attempts++;
      if (attempts === 3) attempt.progressed = true; // after two plain failures (budget spent)
      throw new TransientError(`fail ${attempts}`);
    }, { retries: 2, delaysMs: [1] }, fakeLog()), /fail 6/);
    // 1 + 2 retries, then the progressing attempt starts a new budget: 1 + 2 more.
    assert.equal(attempts, 6);
  });

  test('attempt numbers keep counting across budgets', async () => {
    const ns: number[] = [];
    await withRetries(async (attempt, n) => {
      ns.push(n);
      if (n === 2) attempt.progressed = true;
      if (n < 4) throw new TransientError('x');
      return n;
    }, { retries: 5, delaysMs: [1] }, fakeLog());
    assert.deepEqual(ns, [1, 2, 3, 4]);
  });

  test('a permanent error ends the run even after an attempt that moved data', async () => {
    let attempts = 0;
    const denied = new AccessDeniedError('refused');
    await assert.rejects(withRetries(async (attempt) => {
      attempts++;
      attempt.progressed = true;
      throw attempts === 1 ? new TransientError('drop') : denied;
    }, { retries: 3, delaysMs: [1] }, fakeLog()), (err: unknown) => err === denied);
    assert.equal(attempts, 2);
  });

  test('an abort during the wait after progress ends the run with the abort reason', async () => {
    const ac = new AbortController();
    const reason = new Error('stopped by SIGTERM');
    const started = Date.now();
    setTimeout(() => ac.abort(reason), 20);
    let attempts = 0;
    await assert.rejects(withRetries(async (attempt) => {
      attempts++;
      attempt.progressed = true;
      throw new TransientError('drop');
    }, { retries: 3, delaysMs: [60_000] }, fakeLog(), ac.signal), (err: unknown) => err === reason);
    assert.equal(attempts, 1);
    assert.ok(Date.now() - started < 5000, 'did not wait the full delay');
  });

  test('RETRIES=0 means one attempt only, even when that attempt moved data',
    async () => {
      let attempts = 0;
      await assert.rejects(withRetries(async (attempt) => {
        attempts++;
        attempt.progressed = true;
        if (attempts > 3) return 'should not get here';
        throw new TransientError('drop');
      }, { retries: 0, delaysMs: [1] }, fakeLog()), TransientError);
      assert.equal(attempts, 1);
    });
});
