// What both programs make of their command line before any command runs (in process, no
// server): a flag yargs would read other than as written is a usage error, never a run.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import { misreadFlag } from '../../src/commands/shared.js';
import { runInProcess } from './helpers/in-process.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-cli-args-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

function run(program: 'ipi-pull' | 'ipi-push', argv: string[], cwd: string, env: NodeJS.ProcessEnv = { HOME: cwd }) {
  return runInProcess(program, argv, cwd, env);
}

/** An ipi-push folder whose --dry-run works with no server and no way to log in. */
function pushDir(): string {
  const dir = fs.mkdtempSync(path.join(root, 'push-'));
  fs.mkdirSync(path.join(dir, 'out'));
  fs.writeFileSync(path.join(dir, 'out', 'a.dat'), 'hi');
  fs.writeFileSync(path.join(dir, '.env'), 'SFTP_HOST=sftp.example.com\nSFTP_USER=ipi\nWATCH_DIR=./out\nSFTP_UPLOAD_DIR=/in\nPUSH_SETTLE=0\nLOG_FILE=none\n');
  return dir;
}

describe('a yes/no flag given a value', () => {
  test('other than true or false: exit 2, one line naming the flag, nothing run (ipi-push --dry-run=yes would upload)', async () => {
    const dir = pushDir();
    for (const word of ['yes', '1', 'on', 'TRUE', 'no', '']) {
      const r = await run('ipi-push', [`--dry-run=${word}`], dir);
      assert.equal(r.code, 2, `--dry-run=${word}: ${r.stderr}`);
      assert.equal(r.stderr, "ipi-push: --dry-run is a yes/no flag and takes no other value than true or false: write --dry-run alone (or --dry-run=false) (see 'ipi-push --help')\n");
      assert.equal(r.stdout, '');
    }
    for (const args of [['--once=yes', '--watch'], ['--watch=1'], ['--retry-failed=on'], ['--accept-new-host-key=yes'], ['--json=yes', '--dry-run'], ['status', '--json=1']]) {
      const r = await run('ipi-push', args, dir);
      assert.equal(r.code, 2, args.join(' '));
      const flag = args.find((a) => a.includes('='))!.replace(/=.*/, '');
      assert.match(r.stderr, new RegExp(`^ipi-push: ${flag} is a yes/no flag .*\\n$`), args.join(' '));
    }
    assert.deepEqual(fs.readdirSync(dir).sort(), ['.env', 'out'], 'no state file, no lock');
  });

  test('ipi-pull: every command\'s yes/no flags, and the camelCase and short spellings', async () => {
    const cwd = fs.mkdtempSync(path.join(root, 'pull-'));
    const cases = [
      ['--dry-run=yes'], ['--once=1'], ['--latest=on'], ['--accept-new-host-key=TRUE'], ['--json=yes'], ['--dryRun=yes'],
      ['status', '--local=yes'], ['mark', 'IPI_20250101.dat', '--force=yes'], ['-h=yes'], ['--version=1'],
    ];
    for (const args of cases) {
      const r = await run('ipi-pull', args, cwd);
      const flag = args.find((a) => a.includes('='))!.replace(/=.*/, '');
      assert.equal(r.code, 2, args.join(' '));
      assert.equal(r.stderr.split('\n').length, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`^ipi-pull: ${flag} is a yes/no flag and takes no other value than true or false: write ${flag} alone`), args.join(' '));
    }
    assert.deepEqual(fs.readdirSync(cwd), [], 'nothing written');
  });

  test('true and false are read as written', async () => {
    const dir = pushDir();
    const dry = await run('ipi-push', ['--dry-run=true', '--json=true'], dir);
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual((JSON.parse(dry.stdout) as { wouldUpload: string[] }).wouldUpload, ['a.dat']);
    // A real run: here it stops at logging in, which it needs and this folder lacks.
    const real = await run('ipi-push', ['--dry-run=false'], dir);
    assert.equal(real.code, 2);
    assert.match(real.stderr, /no way to log in/);
  });
});

test('--no-FLAG is unknown: yargs read --no-sftp-pass and --no-sftp-host as the value "false"', async () => {
  const dir = pushDir();
  for (const flag of ['--no-sftp-pass', '--no-sftp-host', '--no-watch-dir', '--no-json']) {
    const r = await run('ipi-push', ['--dry-run', flag], dir);
    assert.equal(r.code, 2, `${flag}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, new RegExp(`^ipi-push: Unknown arguments?: ${flag.slice(2)}\\b.*\\n$`));
  }
});

describe('misreadFlag (pure)', () => {
  test('names the first yes/no flag whose value is not true or false, as it was written', () => {
    assert.equal(misreadFlag(['--sftp-port=22', '--once=yes'], { 'sftp-port': '22', once: false }),
      '--once is a yes/no flag and takes no other value than true or false: write --once alone (or --once=false)');
    assert.match(misreadFlag(['-h=1'], { h: false, help: false }) ?? '', /^-h is a yes\/no flag/);
  });

  test('null for true, false, a flag alone, and a string flag whatever its value', () => {
    assert.equal(misreadFlag(['--once=true', '--json=false', '--dry-run'], { once: true, json: false, 'dry-run': true }), null);
    assert.equal(misreadFlag(['--sftp-user=yes', '--log-level=1'], { 'sftp-user': 'yes', 'log-level': '1' }), null);
  });
});

describe('a password on the command line is never echoed, not even a letter of it', () => {
  test('--sftp-pass -Xyzzy9: one line saying to write --sftp-pass=VALUE (yargs listed X, y, z as unknown flags)', async () => {
    const cwd = fs.mkdtempSync(path.join(root, 'secret-'));
    for (const args of [['--sftp-pass', '-Xyzzy9'], ['--sftp-pass=', '-Xyzzy9'], ['status', '--sftpPass', '-Xyzzy9'], ['--sftp-key-passphrase', '-Xyzzy9']]) {
      const r = await run('ipi-pull', args, cwd);
      assert.equal(r.code, 2, args.join(' '));
      const flag = args.find((a) => /pass/i.test(a))!.replace(/=$/, '');
      assert.equal(r.stderr, `ipi-pull: ${flag} is followed by a word starting with '-', which is read as a flag, not as its value (the word is not shown): for a value that starts with '-', write ${flag}=VALUE (see 'ipi-pull --help')\n`);
    }
  });

  test('--sftpPass and --sftpKeyPassphrase are scrubbed as their kebab-case spellings are', async () => {
    const cwd = fs.mkdtempSync(path.join(root, 'secret-camel-'));
    for (const args of [['--sftpPass', 'my', 'Sp4ceWord9'], ['--sftpKeyPassphrase', 'open', 'Sp4ceWord9']]) {
      const r = await run('ipi-pull', args, cwd);
      assert.equal(r.code, 2, args.join(' '));
      assert.equal(r.stderr, "ipi-pull: Unknown argument: *** (see 'ipi-pull --help')\n");
    }
  });

  test('--sftp-pass=-Xyzzy9 is the password, and kept out of an error quoting it', async () => {
    const r = await run('ipi-push', ['--dry-run', '--sftp-pass=-Xyzzy9', '--log-level=-Xyzzy9'], pushDir());
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^ipi-push: LOG_LEVEL \(--log-level\): '\*\*\*' is not one of error, warn, info, debug/);
  });
});
