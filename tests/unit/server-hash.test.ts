// VERIFY=sha256's server side: which files share a `sha256sum` command, and what a refusal,
// a missing tool or a missing file means. The runner stands in for the exec channel; the real
// sshd is exercised by the push e2e tests.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InterruptedError, PermanentError, TransientError } from '../../src/errors.js';
import { SHA256SUM_MAX_FILES, ServerHasher, type CommandRunner } from '../../src/push/server-hash.js';
import { fakeLog } from './helpers/fake-log.js';

const digestOf = (p: string) => Buffer.from(p).toString('hex').padEnd(64, '0').slice(0, 64);

type Answer = { code: number | null; stdout: string; stderr: string };

/** A runner whose commands wait until the test answers them; `paths` lists each command's files. */
function heldRunner() {
  const calls: Array<{ paths: string[]; answer: (a: Answer | Error) => void }> = [];
  const runner: CommandRunner = {
    exec: (command) => new Promise((resolve, reject) => {
      const paths = [...command.matchAll(/'([^']*)'/g)].map((m) => m[1]!);
      assert.ok(command.startsWith('sha256sum -- '), command);
      calls.push({ paths, answer: (a) => (a instanceof Error ? reject(a) : resolve(a)) });
    }),
  };
  const sums = (paths: string[]) => ({ code: 0, stdout: paths.map((p) => `${digestOf(p)}  ${p}\n`).join(''), stderr: '' });
  return { runner, calls, sums };
}

const turn = () => new Promise((r) => setImmediate(r));

describe('ServerHasher', () => {
  test('files that finish while a sha256sum runs are checked together by the next one', async () => {
    const { runner, calls, sums } = heldRunner();
    const h = new ServerHasher(runner, fakeLog());
    const first = h.digest('/up/a', 10);
    await turn();
    const later = ['/up/b', '/up/c', '/up/d'].map((p) => h.digest(p, 10));
    await turn();
    assert.deepEqual(calls.map((c) => c.paths), [['/up/a']], 'one channel at a time');
    calls[0]!.answer(sums(['/up/a']));
    assert.equal(await first, digestOf('/up/a'));
    await turn();
    assert.deepEqual(calls.map((c) => c.paths), [['/up/a'], ['/up/b', '/up/c', '/up/d']]);
    calls[1]!.answer(sums(['/up/b', '/up/c', '/up/d']));
    assert.deepEqual(await Promise.all(later), ['/up/b', '/up/c', '/up/d'].map(digestOf));
  });

  test(`no more than ${SHA256SUM_MAX_FILES} files in one command`, async () => {
    const { runner, calls, sums } = heldRunner();
    const h = new ServerHasher(runner, fakeLog());
    const all = Array.from({ length: SHA256SUM_MAX_FILES + 7 }, (_, i) => `/up/f${i}`);
    const asked = all.map((p) => h.digest(p, 1));
    for (let i = 0; i < 3; i++) {
      await turn();
      calls[i]!.answer(sums(calls[i]!.paths));
    }
    assert.deepEqual(await Promise.all(asked), all.map(digestOf));
    // The first file does not wait for company; the rest queued behind it.
    assert.deepEqual(calls.map((c) => c.paths.length), [1, SHA256SUM_MAX_FILES, 6]);
  });

  test('a server without sha256sum: every file is checked by size, said once, not asked again', async () => {
    const { runner, calls } = heldRunner();
    const log = fakeLog();
    const h = new ServerHasher(runner, log);
    const a = h.digest('/up/a', 1);
    const b = h.digest('/up/b', 1);
    await turn();
    calls[0]!.answer({ code: 127, stdout: '', stderr: 'bash: sha256sum: command not found' });
    assert.equal(await a, null);
    assert.equal(await b, null);
    assert.equal(await h.digest('/up/c', 1), null);
    assert.equal(calls.length, 1, 'not asked again once it is known');
    const warned = log.lines.filter(([level]) => level === 'warn');
    assert.equal(warned.length, 1);
    assert.match(warned[0]![1], /sha256sum is not installed there/);
  });

  test('an SFTP-only server refusing the channel at first: size checks, said once', async () => {
    const log = fakeLog();
    const h = new ServerHasher({ exec: async () => { throw new PermanentError('running `sha256sum` on the server: refused (open failed)'); } }, log);
    assert.equal(await h.digest('/up/a', 1), null);
    assert.equal(await h.digest('/up/b', 1), null);
    assert.equal(log.lines.filter(([level]) => level === 'warn').length, 1);
  });

  test('once it has hashed, a file it cannot read fails alone (transient), and the rest stay checked', async () => {
    const { runner, calls, sums } = heldRunner();
    const log = fakeLog();
    const h = new ServerHasher(runner, log);
    const a = h.digest('/up/a', 1);
    await turn();
    const b = h.digest('/up/b', 1);
    const gone = h.digest('/up/gone', 1);
    calls[0]!.answer(sums(['/up/a']));
    await a;
    await turn();
    assert.deepEqual(calls[1]!.paths, ['/up/b', '/up/gone']);
    calls[1]!.answer({ code: 1, stdout: sums(['/up/b']).stdout, stderr: 'sha256sum: /up/gone: No such file or directory\n' });
    assert.equal(await b, digestOf('/up/b'));
    await assert.rejects(gone, (err: Error) => err instanceof TransientError && /no digest for \/up\/gone: "sha256sum: \/up\/gone: No such file/.test(err.message));
    assert.equal(log.lines.filter(([level]) => level === 'warn').length, 0, 'the connection is not dropped to size checks');
  });

  test('a channel refused after one was granted is asked for again, never taken for "cannot hash"', async () => {
    let n = 0;
    const log = fakeLog();
    const h = new ServerHasher({
      exec: async (command) => {
        n++;
        if (n === 2 || n === 3) throw new PermanentError('running `sha256sum` on the server: refused (open failed)');
        const p = /'([^']*)'/.exec(command)![1]!;
        return { code: 0, stdout: `${digestOf(p)}  ${p}\n`, stderr: '' };
      },
    }, log);
    assert.equal(await h.digest('/up/a', 1), digestOf('/up/a'));
    assert.equal(await h.digest('/up/b', 1), digestOf('/up/b'));
    assert.equal(n, 4);
    assert.equal(log.lines.filter(([level]) => level === 'warn').length, 0);
  });

  test('a stop cuts short the wait for a refused channel: no further asking, the file is left unchecked', async () => {
    let n = 0;
    const stop = new AbortController();
    const h = new ServerHasher({
      exec: async (command) => {
        n++;
        if (n >= 2) {
          // Refused while the run is being stopped.
          setImmediate(() => stop.abort('SIGTERM'));
          throw new PermanentError('running `sha256sum` on the server: refused (open failed)');
        }
        const p = /'([^']*)'/.exec(command)![1]!;
        return { code: 0, stdout: `${digestOf(p)}  ${p}\n`, stderr: '' };
      },
    }, fakeLog(), stop.signal);
    assert.equal(await h.digest('/up/a', 1), digestOf('/up/a'));
    await assert.rejects(h.digest('/up/b', 1), (err: Error) => err instanceof InterruptedError && /SIGTERM/.test(err.message));
    assert.equal(n, 2, 'asked once, refused, and not asked again after the stop');
  });

  test('exec is asked to keep the whole answer, also for long names full of backslashes (which GNU doubles)', async () => {
    const names = Array.from({ length: 40 }, (_, i) => `/up/${'\\'.repeat(200)}${i}`);
    let kept = -1;
    let answer = '';
    const h = new ServerHasher({
      exec: async (command, _timeoutMs, maxOutput) => {
        kept = maxOutput ?? -1;
        const paths = [...command.matchAll(/'([^']*)'/g)].map((m) => m[1]!);
        // What GNU sha256sum prints for such names: a leading backslash, the name's backslashes doubled.
        answer = paths.map((p) => `\\${digestOf(p)}  ${p.replace(/\\/g, '\\\\')}\n`).join('');
        return { code: 0, stdout: answer, stderr: '' };
      },
    }, fakeLog());
    const first = h.digest(names[0]!, 1);
    await turn();
    const rest = names.slice(1).map((p) => h.digest(p, 1));
    await first;
    assert.deepEqual(await Promise.all(rest), names.slice(1).map(digestOf));
    assert.ok(Buffer.byteLength(answer) > 16 * 1024 && kept >= Buffer.byteLength(answer), `kept ${kept} of an answer of ${Buffer.byteLength(answer)} bytes`);
  });

  test('a transient failure (no answer in time) fails the files of that command only', async () => {
    const { runner, calls, sums } = heldRunner();
    const h = new ServerHasher(runner, fakeLog());
    const a = h.digest('/up/a', 1);
    await turn();
    const b = h.digest('/up/b', 1);
    calls[0]!.answer(new TransientError('running `sha256sum` on the server: no answer within 30 s'));
    await assert.rejects(a, TransientError);
    await turn();
    calls[1]!.answer(sums(['/up/b']));
    assert.equal(await b, digestOf('/up/b'));
  });
});
