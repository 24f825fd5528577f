// The one line every command prints for a failure: secrets of the config never in it, and
// written to stderr only when the logger has not already said it.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';

import { failureLine, secretTakenForFlags, secretsOnCommandLine, wantsJson, type Io } from '../../src/commands/shared.js';
import type { Config } from '../../src/config/load.js';
import { AccessDeniedError } from '../../src/errors.js';

function io(): Io & { err: () => string } {
  const stderr = new PassThrough();
  let text = '';
  stderr.on('data', (d: Buffer) => (text += d.toString()));
  return { stdout: new PassThrough(), stderr, env: {}, cwd: '/', err: () => text };
}

const config = { secrets: ['pw-Quokka-913'] } as unknown as Config;
const failure = new AccessDeniedError('login as ipi with password pw-Quokka-913 refused');

test('the line names the tool, hides the secret, and goes to stderr when nothing was logged', () => {
  const out = io();
  const line = failureLine('ipi-pull', failure, config, out, false);
  assert.ok(line && !line.includes('pw-Quokka-913'), line ?? 'null');
  assert.match(out.err(), /^ipi-pull: login as ipi with password \S+ refused\n$/);
  assert.ok(!out.err().includes('pw-Quokka-913'));
});

test('already logged: returned for --json, not printed twice; no failure: null', () => {
  const out = io();
  assert.ok(failureLine('ipi-push', failure, config, out, true));
  assert.equal(out.err(), '');
  assert.equal(failureLine('ipi-push', null, config, out, false), null);
  assert.equal(out.err(), '');
});

describe('secretsOnCommandLine (pure)', () => {
  test('the value of a secret flag, and every word after it up to the next flag', () => {
    assert.deepEqual(secretsOnCommandLine(['--sftp-pass', 'my', 'Sp4ceP', '--once']), ['my', 'Sp4ceP']);
    assert.deepEqual(secretsOnCommandLine(['--sftp-pass=', 'Sp4ceP']), ['Sp4ceP']);
    assert.deepEqual(secretsOnCommandLine(['--sftp-key-passphrase=open sesame']), ['open sesame']);
    assert.deepEqual(secretsOnCommandLine(['-sftp-pass', 'UrlPw9zz']), ['UrlPw9zz']);
  });

  test('in the camelCase spelling yargs also takes, and in spellings people write', () => {
    assert.deepEqual(secretsOnCommandLine(['--sftpPass', 'my', 'Sp4ceP', '--once']), ['my', 'Sp4ceP']);
    assert.deepEqual(secretsOnCommandLine(['--sftpKeyPassphrase=open', 'sesame']), ['open', 'sesame']);
    assert.deepEqual(secretsOnCommandLine(['--SFTP_PASS', 'Sp4ceP']), ['Sp4ceP']);
  });

  test('nothing when no secret flag is given', () => {
    assert.deepEqual(secretsOnCommandLine(['--once', '--sftp-user', 'ipi', 'extra']), []);
  });
});

describe('wantsJson (pure)', () => {
  test('--json before any --, in either spelling', () => {
    assert.equal(wantsJson(['status', '--json']), true);
    assert.equal(wantsJson(['--json=true', '--bogus']), true);
    assert.equal(wantsJson(['--bogus']), false);
    assert.equal(wantsJson(['--', '--json']), false);
  });
});

describe('secretTakenForFlags (pure)', () => {
  test('a secret flag followed by a word starting with -: says to write FLAG=VALUE, and never shows the word', () => {
    for (const argv of [['--sftp-pass', '-Xyzzy9'], ['--once', '--sftpPass', '--Xyzzy9'], ['--sftp-pass=', '-Xyzzy9']]) {
      const why = secretTakenForFlags(argv);
      const flag = argv.find((a) => /pass/i.test(a))!.replace(/=$/, '');
      assert.equal(why, `${flag} is followed by a word starting with '-', which is read as a flag, not as its value (the word is not shown): for a value that starts with '-', write ${flag}=VALUE`);
    }
    assert.match(secretTakenForFlags(['--sftp-key-passphrase', '-x']) ?? '', /^--sftp-key-passphrase is followed/);
  });

  test('null for a value given with =, a value not starting with -, or a secret flag last', () => {
    assert.equal(secretTakenForFlags(['--sftp-pass=-Xyzzy9', '--once']), null);
    assert.equal(secretTakenForFlags(['--sftp-pass', 'Xyzzy9', '--once']), null);
    assert.equal(secretTakenForFlags(['--once', '--sftp-pass']), null);
    assert.equal(secretTakenForFlags(['--sftp-user', '-x']), null);
  });
});
