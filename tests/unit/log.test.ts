import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger, scrub, silentLogger } from '../../src/log.js';

describe('scrub', () => {
  test('replaces every occurrence of every secret', () => {
    const out = scrub('pw=hunter2 again hunter2, phrase=open sesame!hunter2', ['hunter2', 'open sesame']);
    assert.equal(out, 'pw=*** again ***, phrase=***!***');
  });

  test('secrets with regex and $ characters are matched literally', () => {
    assert.equal(scrub('login pa$$w.rd* ok', ['pa$$w.rd*']), 'login *** ok');
    assert.equal(scrub('a (b) [c] \\d', ['(b)', '[c]', '\\d']), 'a *** *** ***');
  });

  test('empty secrets are ignored (they would match everywhere)', () => {
    assert.equal(scrub('nothing secret', ['']), 'nothing secret');
  });

  test('no secrets: unchanged', () => {
    assert.equal(scrub('plain', []), 'plain');
  });

  test('adjacent occurrences', () => {
    assert.equal(scrub('xxxx', ['xx']), '******');
  });

  test('one secret inside another: neither is left readable', () => {
    const out = scrub('password123 and pass', ['password123', 'pass']);
    assert.ok(!out.includes('pass'));
    assert.ok(!out.includes('word123'));
  });

  test('a short secret listed before a longer one that contains it does not leave the rest of the longer one',
    () => {
      const out = scrub('login with password123', ['pass', 'password123']);
      assert.ok(!out.includes('word123'), out);
    });
});

describe('createLogger', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-log-'));
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const base = { maxSize: 10 * 1024 * 1024, maxFiles: 2, allToStderr: false, quietConsole: true } as const;

  test('the log file never contains a secret', async () => {
    const file = path.join(dir, 'logs', 'sftp_transfer.log'); // the folder does not exist yet
    const secrets = ['S3cr3t#pass$', 'key phrase'];
    const log = createLogger({ ...base, level: 'debug', file, secrets });
    log.info('connecting as ipi with password S3cr3t#pass$');
    log.warn('retrying: server said "bad password S3cr3t#pass$S3cr3t#pass$"');
    log.error('key phrase rejected for key phrase');
    log.debug('debug S3cr3t#pass$');
    await log.close();
    const content = fs.readFileSync(file, 'utf8');
    for (const s of secrets) assert.ok(!content.includes(s), `log contains ${s}`);
    const lines = content.trim().split('\n');
    assert.equal(lines.length, 4);
    assert.match(lines[0]!, /connecting as ipi with password \*\*\*$/);
    assert.match(lines[1]!, /bad password \*\*\*\*\*\*"$/);
    assert.match(lines[2]!, /\*\*\* rejected for \*\*\*$/);
    assert.match(lines[3]!, /debug \*\*\*$/);
  });

  test('file lines carry an ISO timestamp, the level and the pid', async () => {
    const file = path.join(dir, 'format.log');
    const log = createLogger({ ...base, level: 'info', file, secrets: [] });
    log.info('hello');
    log.warn('careful');
    await log.close();
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
    assert.match(lines[0]!, new RegExp(`^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z INFO  \\[${process.pid}\\] hello$`));
    assert.match(lines[1]!, new RegExp(`^\\S+ WARN  \\[${process.pid}\\] careful$`));
  });

  test('LOG_LEVEL filters lower levels out of the file', async () => {
    const file = path.join(dir, 'level.log');
    const log = createLogger({ ...base, level: 'warn', file, secrets: [] });
    log.debug('d');
    log.info('i');
    log.warn('w');
    log.error('e');
    await log.close();
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
    assert.deepEqual(lines.map((l) => l.split(' ').at(-1)), ['w', 'e']);
  });

  test('appends to an existing log file', async () => {
    const file = path.join(dir, 'append.log');
    fs.writeFileSync(file, 'earlier line\n');
    const log = createLogger({ ...base, level: 'info', file, secrets: [] });
    log.info('later line');
    await log.close();
    const content = fs.readFileSync(file, 'utf8');
    assert.ok(content.startsWith('earlier line\n'));
    assert.match(content, /later line\n$/);
  });

  test('file: null and a quiet console makes a logger that writes nowhere and still closes', async () => {
    const beforeFiles = fs.readdirSync(dir).sort();
    const log = createLogger({ ...base, level: 'info', file: null, secrets: ['x'] });
    log.info('nothing');
    await log.close();
    assert.deepEqual(fs.readdirSync(dir).sort(), beforeFiles);
  });
});

describe('silentLogger', () => {
  test('has every level and does nothing', () => {
    for (const level of ['error', 'warn', 'info', 'debug'] as const) {
      assert.equal(silentLogger[level]('x'), undefined);
    }
  });
});
