import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SHORT_SECRET, createLogger, scrub, silentLogger } from '../../src/log.js';

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
    assert.equal(scrub('hunter2hunter2', ['hunter2']), '******');
  });

  test('a secret shorter than SHORT_SECRET is hidden only where it stands alone', () => {
    assert.equal(SHORT_SECRET, 6);
    const secrets = ['ipi'];
    // Standing alone: between delimiters or at either end.
    assert.equal(scrub('ipi', secrets), '***');
    assert.equal(scrub('password=ipi, user ipi:ipi@host (ipi) "ipi"', secrets), 'password=***, user ***:***@host (***) "***"');
    assert.equal(scrub('the server said: bad password ipi.', secrets), 'the server said: bad password ***.');
    // Inside a word, a path or a program name it is left alone: it is not the password there.
    assert.equal(scrub('ipi-push: uploaded /opt/ipi/IPI_1.csv; pipit', secrets), 'ipi-push: uploaded /opt/ipi/IPI_1.csv; pipit');
    assert.equal(scrub('would upload "sub/a.dat"', ['p']), 'would upload "sub/a.dat"');
    // Doubled, neither half stands alone.
    assert.equal(scrub('ipiipi', secrets), 'ipiipi');
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

  const base = { tool: 'ipi-test', maxSize: 10 * 1024 * 1024, maxFiles: 2, allToStderr: false, quietConsole: true } as const;

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

  test('file lines carry an ISO timestamp, the level, the program and the pid', async () => {
    const file = path.join(dir, 'format.log');
    const log = createLogger({ ...base, level: 'info', file, secrets: [] });
    log.info('hello');
    log.warn('careful');
    await log.close();
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
    assert.match(lines[0]!, new RegExp(`^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z INFO  ipi-test\\[${process.pid}\\] hello$`));
    assert.match(lines[1]!, new RegExp(`^\\S+ WARN  ipi-test\\[${process.pid}\\] careful$`));
  });

  test('record(): an info line in LOG_FILE that the console does not get', async () => {
    const file = path.join(dir, 'record.log');
    const printed: string[] = [];
    const originals = { out: process.stdout.write, err: process.stderr.write };
    const capture = (chunk: string | Uint8Array) => (printed.push(String(chunk)), true);
    process.stdout.write = capture as typeof process.stdout.write;
    process.stderr.write = capture as typeof process.stderr.write;
    try {
      const log = createLogger({ ...base, quietConsole: false, level: 'info', file, secrets: ['hunter2'] });
      log.record('IPI_1.csv: 50 % with hunter2');
      log.info('on both');
      await log.close();
    } finally {
      process.stdout.write = originals.out;
      process.stderr.write = originals.err;
    }
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
    assert.deepEqual(lines.map((l) => l.replace(/^.*\] /, '')), ['IPI_1.csv: 50 % with ***', 'on both']);
    assert.match(lines[0]!, / INFO  /);
    assert.equal(printed.filter((p) => p.includes('IPI_1.csv')).length, 0);
    assert.equal(printed.filter((p) => p.includes('on both')).length, 1);
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

  test('a LOG_FILE that cannot be opened fails at once, naming it (winston would only emit an event)', () => {
    const file = path.join(dir, 'a-folder.log');
    fs.mkdirSync(file);
    assert.throws(() => createLogger({ ...base, level: 'info', file, secrets: [] }), (err: NodeJS.ErrnoException) => err.code === 'EISDIR' && err.path === file);
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

  test('close() right after a burst of long lines loses none and does not crash (winston "write after end")', async () => {
    const file = path.join(dir, 'burst.log');
    const log = createLogger({ ...base, level: 'info', file, secrets: [] });
    const n = 400;
    for (let i = 0; i < n; i++) log.info(`line ${i} ${'x'.repeat(3000)}`);
    await log.close();
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
    assert.equal(lines.length, n);
    assert.match(lines[n - 1]!, / line 399 x+$/);
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
    for (const level of ['error', 'warn', 'info', 'debug', 'record'] as const) {
      assert.equal(silentLogger[level]('x'), undefined);
    }
  });
});
