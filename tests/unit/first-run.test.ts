// The first run of either program on a new machine, through its command line (in process,
// no server): with no settings at all it says how to make some, and `init` makes them.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import { runInProcess } from './helpers/in-process.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-first-run-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

/** Run a program in `cwd` with an empty environment (nothing from the developer's shell). */
function run(program: 'ipi-pull' | 'ipi-push', argv: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  return runInProcess(program, argv, cwd, env);
}

describe('no settings at all', () => {
  for (const program of ['ipi-push', 'ipi-pull'] as const) {
    test(`${program} with no .env, no --env-file and no SFTP_HOST: exit 2, and the line ends pointing to \`${program} init\``, async () => {
      const cwd = fs.mkdtempSync(path.join(root, 'empty-'));
      const r = await run(program, [], cwd);
      assert.equal(r.code, 2, r.stderr);
      const lines = r.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, new RegExp(`^${program}: SFTP_HOST is not set: .*\`${program} init\`$`));
      assert.match(lines[0]!, new RegExp(`No \\.env in ${cwd.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
      assert.deepEqual(fs.readdirSync(cwd), [], 'nothing written');
    });
  }

  test('settings that exist but lack SFTP_HOST get the plain error: there is a .env to fix', async () => {
    const cwd = fs.mkdtempSync(path.join(root, 'partial-'));
    fs.writeFileSync(path.join(cwd, '.env'), 'SFTP_USER=ipi\n');
    const r = await run('ipi-push', [], cwd);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^ipi-push: SFTP_HOST is not set: /);
    assert.doesNotMatch(r.stderr, /init/);
    const named = await run('ipi-push', ['--env-file', path.join(cwd, '.env')], fs.mkdtempSync(path.join(root, 'elsewhere-')));
    assert.equal(named.code, 2);
    assert.doesNotMatch(named.stderr, /init/);
  });
});

describe('ipi-push init', () => {
  test('writes a commented .env for ipi-push, readable only by its owner, and says what to do next', async () => {
    const cwd = fs.mkdtempSync(path.join(root, 'init-'));
    const r = await run('ipi-push', ['init'], cwd);
    assert.equal(r.code, 0, r.stderr);
    const file = path.join(cwd, '.env');
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    const text = fs.readFileSync(file, 'utf8');
    // The keys ipi-push needs are live, with an example; ipi-pull's own required key is not.
    for (const key of ['SFTP_HOST', 'SFTP_USER', 'WATCH_DIR', 'SFTP_UPLOAD_DIR']) assert.match(text, new RegExp(`^${key}=\\S`, 'm'), key);
    assert.doesNotMatch(text, /^SFTP_DIR=/m);
    assert.match(text, /^#SFTP_DIR=/m);
    // The other push keys are there, commented, with their defaults.
    for (const line of ['#AFTER_UPLOAD=keep', '#VERIFY=sha256', '#STATE_FILE=./ipi-push-state.json', '#PUSH_SETTLE=3', '#ARCHIVE_DIR=']) {
      assert.ok(text.split('\n').some((l) => l.startsWith(line)), line);
    }
    assert.ok(text.split('\n').filter((l) => l.startsWith('# ')).length > 20, 'every key is explained');
    assert.match(r.stdout, new RegExp(`wrote ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(readable only by you\\)`));
    assert.match(r.stdout, /set SFTP_HOST, SFTP_USER, WATCH_DIR, SFTP_UPLOAD_DIR/);
    assert.match(r.stdout, /ipi-push --dry-run/);
  });

  test('never overwrites an existing file, the default .env or one named with --env-file', async () => {
    const cwd = fs.mkdtempSync(path.join(root, 'init-again-'));
    fs.writeFileSync(path.join(cwd, '.env'), 'SFTP_HOST=mine\n', { mode: 0o640 });
    const r = await run('ipi-push', ['init'], cwd);
    assert.equal(r.code, 0);
    assert.match(r.stderr, /already exists; left unchanged/);
    assert.equal(fs.readFileSync(path.join(cwd, '.env'), 'utf8'), 'SFTP_HOST=mine\n');
    assert.equal(fs.statSync(path.join(cwd, '.env')).mode & 0o777, 0o640);

    const named = await run('ipi-push', ['init', '--env-file', 'site-a.env'], cwd);
    assert.equal(named.code, 0, named.stderr);
    assert.match(fs.readFileSync(path.join(cwd, 'site-a.env'), 'utf8'), /^WATCH_DIR=/m);
    const namedAgain = await run('ipi-push', ['init', '--env-file', 'site-a.env'], cwd);
    assert.match(namedAgain.stderr, /site-a\.env already exists; left unchanged/);
  });
});

describe('ipi-push --dry-run connects to nothing', () => {
  test('so it needs no way to log in; a real run still does', async () => {
    const dir = fs.mkdtempSync(path.join(root, 'dry-'));
    fs.mkdirSync(path.join(dir, 'out', 'sub'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'out', 'sub', 'a.dat'), 'hi');
    fs.writeFileSync(path.join(dir, '.env'), 'SFTP_HOST=sftp.example.com\nSFTP_USER=ipi\nWATCH_DIR=./out\nSFTP_UPLOAD_DIR=/in\nPUSH_SETTLE=0\nLOG_FILE=none\n');
    // HOME with no ~/.ssh: no default key to fall back on.
    const env = { HOME: dir };
    const dry = await run('ipi-push', ['--dry-run', '--json'], dir, env);
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual((JSON.parse(dry.stdout) as { wouldUpload: string[] }).wouldUpload, ['sub/a.dat']);
    const real = await run('ipi-push', ['--once'], dir, env);
    assert.equal(real.code, 2);
    assert.match(real.stderr, /no way to log in/);
  });

  test('nor a usable SFTP_KEY: a bad one is a warning; a real run stops at it, before the state or the lock is made', async () => {
    const dir = fs.mkdtempSync(path.join(root, 'dry-key-'));
    fs.mkdirSync(path.join(dir, 'out'));
    fs.writeFileSync(path.join(dir, 'out', 'a.dat'), 'hi');
    fs.writeFileSync(path.join(dir, '.env'), 'SFTP_HOST=sftp.example.com\nSFTP_USER=ipi\nWATCH_DIR=./out\nSFTP_UPLOAD_DIR=/in\nPUSH_SETTLE=0\nLOG_FILE=./push.log\nSFTP_KEY=./id_missing\n');
    const problem = `SFTP_KEY ${path.join(dir, 'id_missing')}: cannot read it (ENOENT)`;
    const dry = await run('ipi-push', ['--dry-run', '--json'], dir, { HOME: dir });
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual((JSON.parse(dry.stdout) as { wouldUpload: string[] }).wouldUpload, ['a.dat']);
    // In process, the console half of the log is this process's own stderr: read the file.
    const log = fs.readFileSync(path.join(dir, 'push.log'), 'utf8');
    const warning = log.split('\n').find((l) => l.endsWith(` ${problem}; nothing logs in now, but a run that does stops here`));
    assert.match(warning ?? '', / WARN /, log);
    fs.rmSync(path.join(dir, 'push.log'));
    const real = await run('ipi-push', ['--once'], dir, { HOME: dir });
    assert.equal(real.code, 2);
    assert.equal(real.stderr, `ipi-push: ${problem}\n`);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['.env', 'out'], 'no log, no state file, no lock');
  });
});
