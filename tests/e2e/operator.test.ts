/**
 * What the people who run ipi-pull every five minutes see: init, status, mark, --json,
 * metrics, --latest / START_FROM, POST_ACTION, progress lines and log rotation.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';

import { CLI, listDir, runCli, sha256, testBytes } from './helpers/cli.js';
import { toolRuns } from './helpers/util.js';
import { startFaultProxy } from './helpers/fault-proxy.js';
import { writeRemoteFile } from './helpers/server.js';
import { pullSuite } from './helpers/suite.js';

const suite = pullSuite('operator', 'op');
const setup = suite.setup;

/** Prometheus text format: `name value` lines, with # HELP / # TYPE comments. */
function parseProm(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*) (-?\d+(?:\.\d+)?)$/.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${JSON.stringify(line)}`);
    out.set(m[1]!, Number(m[2]));
  }
  return out;
}

describe('operator commands', () => {
  test('init writes a commented .env once and never overwrites it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-init-'));
    try {
      const r = await runCli(['init'], { cwd: dir });
      assert.equal(r.code, 0, r.stderr);
      const written = fs.readFileSync(path.join(dir, '.env'), 'utf8');
      assert.match(written, /^SFTP_HOST=/m);
      assert.match(written, /^#RETRY_DELAYS=5,10,30,60,120,300,600$/m);
      assert.equal(fs.statSync(path.join(dir, '.env')).mode & 0o777, 0o600);
      fs.writeFileSync(path.join(dir, '.env'), 'SFTP_HOST=mine\n');
      const again = await runCli(['init'], { cwd: dir });
      assert.equal(again.code, 0);
      assert.match(again.stderr, /already exists; left unchanged/);
      assert.equal(fs.readFileSync(path.join(dir, '.env'), 'utf8'), 'SFTP_HOST=mine\n');
      // Elsewhere, by a positional: `init --env-file NEW` cannot work, Node stops on a missing --env-file first.
      const elsewhere = await runCli(['init', 'site-a/ipi.env'], { cwd: dir });
      assert.notEqual(elsewhere.code, 0, 'the folder does not exist');
      fs.mkdirSync(path.join(dir, 'site-a'));
      const made = await runCli(['init', 'site-a/ipi.env'], { cwd: dir });
      assert.equal(made.code, 0, made.stderr);
      assert.match(fs.readFileSync(path.join(dir, 'site-a', 'ipi.env'), 'utf8'), /^SFTP_HOST=/m);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('--json summary and status --json tell the same story', async () => {
    const { ws } = setup({ 'IPI_20250101.dat': testBytes(3000, 1), 'IPI_20250102.dat': testBytes(4000, 2), 'IPI_20250103.dat': testBytes(5000, 3) });
    const r = await ws.run(['--once', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    assert.equal(summary.outcome, 'delivered');
    assert.equal(summary.exitCode, 0);
    assert.deepEqual(summary.files.map((f: { name: string }) => f.name), ['IPI_20250101.dat']);
    assert.equal(summary.bytes, 3000);
    assert.deepEqual(summary.pending, ['IPI_20250102.dat', 'IPI_20250103.dat']);
    assert.equal(r.stdout.trim().split('\n').length, 1, 'stdout holds only the JSON');

    // A partial in progress and a lock held by a live process show up too.
    fs.writeFileSync(path.join(ws.localDir, 'IPI_20250102.dat.part'), Buffer.alloc(1000));
    fs.writeFileSync(path.join(ws.localDir, 'IPI_20250102.dat.part.json'), JSON.stringify({ name: 'IPI_20250102.dat', remoteSize: 4000, remoteMtimeMs: 1, startedAt: 'x' }));
    // One without a record (a one-chunk file's, or FTP_IPI.py's): status cannot promise a resume.
    fs.writeFileSync(path.join(ws.localDir, 'IPI_20250103.dat.part'), Buffer.alloc(500));
    fs.writeFileSync(`${ws.markerFile}.lock`, JSON.stringify({ pid: process.pid, host: os.hostname(), since: '2025-01-01T00:00:00Z', token: 't' }));
    const markerBefore = ws.marker();
    const st = await ws.run(['status', '--json']);
    assert.equal(st.code, 0, st.stderr);
    const s = JSON.parse(st.stdout);
    assert.equal(s.marker, 'IPI_20250101.dat');
    assert.equal(s.lastDelivery.name, 'IPI_20250101.dat');
    assert.equal(s.lastDelivery.size, 3000);
    assert.match(s.lastDelivery.sha256, /^[0-9a-f]{64}$/);
    assert.deepEqual(s.inProgress, [{ name: 'IPI_20250102.dat', bytes: 1000, size: 4000, percent: 25 }, { name: 'IPI_20250103.dat', bytes: 500, size: null, percent: null }]);
    assert.equal(s.lock.held, true);
    assert.equal(s.lock.holder.pid, process.pid);
    assert.deepEqual(s.remote, { checked: true, pending: ['IPI_20250102.dat', 'IPI_20250103.dat'], waiting: null, passedOver: [], error: null });
    assert.equal(ws.marker(), markerBefore, 'status changes nothing');
    const human = await ws.run(['status']);
    assert.match(human.stdout, /in progress: IPI_20250102\.dat: 1000 B of 3\.9 KiB \(25%\), resumes on the next run/);
    assert.match(human.stdout, /in progress: IPI_20250103\.dat: 500 B, with no record of the remote file: the next run resumes it if its tail matches the server, else \(or for a file of one chunk\) fetches it again/);
    assert.match(human.stdout, /waiting on the server: 2 file\(s\), in order: IPI_20250102\.dat, IPI_20250103\.dat/);
  });

  test('mark NAME is checked against the server; --force sets it without connecting', async () => {
    const { ws } = setup({ 'IPI_20250201.dat': testBytes(10, 1), 'IPI_20250202.dat': testBytes(10, 2), 'IPI_20250203.dat': testBytes(10, 3) });
    const missing = await ws.run(['mark', 'IPI_20250228.dat']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no such file/);
    assert.equal(ws.marker(), null);
    const unsafe = await ws.run(['mark', '../etc/passwd']);
    assert.equal(unsafe.code, 2);
    const ok = await ws.run(['mark', 'IPI_20250202.dat']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ws.marker(), 'IPI_20250202.dat');
    const pulled = await ws.run();
    assert.equal(pulled.code, 0);
    assert.deepEqual(listDir(ws.serverDir), ['IPI_20250203.dat']);
    const forced = await ws.run(['mark', 'IPI_20250101.dat', '--force', '--sftp-port', '1']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(ws.marker(), 'IPI_20250101.dat');
    // A name no run could place in date order is refused even with --force.
    const undated = await ws.run(['mark', 'IPI_latest.dat', '--force']);
    assert.equal(undated.code, 2);
    assert.match(undated.stderr, /has no date in its name/);
    assert.equal(ws.marker(), 'IPI_20250101.dat');
  });

  test('--dry-run=yes is refused, not read as false: nothing pulled, published or marked', async () => {
    // yargs reads a yes/no flag's =VALUE as false unless it is the word true: this was a real run.
    const { ws } = setup({ 'IPI_20250213.dat': testBytes(1000, 8) });
    for (const args of [['--dry-run=yes'], ['--dry-run=1', '--json'], ['--once=yes', '--dry-run']]) {
      const r = await ws.run(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      const flag = args[0]!.replace(/=.*/, '');
      assert.match(r.stderr, new RegExp(`^ipi-pull: ${flag} is a yes/no flag and takes no other value than true or false: write ${flag} alone \\(or ${flag}=false\\) \\(see 'ipi-pull --help'\\)\\n$`));
    }
    assert.equal(ws.marker(), null);
    assert.deepEqual(listDir(ws.dir).filter((n) => !['.env', '.ssh'].includes(n)), [], 'no log, no folders, no marker');
    const dry = await ws.run(['--dry-run=true', '--json']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual((JSON.parse(dry.stdout) as { wouldPull: string[] }).wouldPull, ['IPI_20250213.dat']);
    assert.equal(ws.marker(), null);
  });

  test('a quote left open in the .env: one line, exit 2, and the password it took in is nowhere', async () => {
    // SFTP_PORT's value runs on to X=1", taking SFTP_PASS's line in; it was quoted, lines and all.
    const { ws } = setup({ 'IPI_20250214.dat': testBytes(1000, 9) });
    delete ws.env.SFTP_PORT;
    delete ws.env.SFTP_PASS;
    ws.writeEnv();
    fs.appendFileSync(path.join(ws.dir, '.env'), 'SFTP_PORT="22\nSFTP_PASS=hunter2xyz\nX=1"\n');
    for (const args of [[], ['--json'], ['status']]) {
      const r = await ws.run(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.split('\n').length, 2, r.stderr);
      assert.match(r.stderr, /^ipi-pull: SFTP_PORT \(--sftp-port\): the value holds a line break, which no setting can: is a quote of the \.env left open/);
      assert.ok(!(r.stdout + r.stderr).includes('hunter2xyz'), r.stdout + r.stderr);
    }
    assert.ok(!fs.existsSync(ws.logFile) || !fs.readFileSync(ws.logFile, 'utf8').includes('hunter2xyz'));
    assert.equal(ws.marker(), null);
  });

  test('LOG_FILE a folder, LOCAL_DIR a file: bad configuration, exit 2, one line saying so', async () => {
    // They ended with exit 1 ("is a folder", "cannot create it (EEXIST)"), as if retrying could help.
    const { ws } = setup({ 'IPI_20250215.dat': testBytes(1000, 10) });
    const folder = path.join(ws.dir, 'a-folder');
    fs.mkdirSync(folder);
    const envFile = path.join(ws.dir, '.env');
    const cases: Array<[Record<string, string>, string]> = [
      [{ LOG_FILE: folder }, `ipi-pull: LOG_FILE ${folder} is a folder, not a file\n`],
      [{ LOG_FILE: './.env/ipi.log' }, `ipi-pull: LOG_FILE ${envFile}/ipi.log: ${envFile} is a file, not a folder\n`],
      [{ LOCAL_DIR: './.env', LOG_FILE: 'none' }, `LOCAL_DIR ${envFile} is a file, not a folder`],
      [{ SERVER_DIR: './.env/pub', LOG_FILE: 'none' }, `SERVER_DIR ${envFile}/pub: ${envFile} is a file, not a folder`],
    ];
    for (const [extra, line] of cases) {
      Object.assign(ws.env, { LOG_FILE: './logs/sftp_transfer.log' }, extra);
      ws.writeEnv();
      const r = await ws.run();
      assert.equal(r.code, 2, `${JSON.stringify(extra)}: ${r.stderr}`);
      if (line.endsWith('\n')) assert.equal(r.stderr, line);
      else assert.ok(r.stderr.split('\n').some((l) => l.endsWith(`ERROR: ${line}`)), r.stderr);
      delete ws.env.LOCAL_DIR;
      delete ws.env.SERVER_DIR;
    }
    assert.equal(ws.marker(), null);
  });

  test('status lists what a run would pull: companion checksum files are not pending files', async () => {
    const data = testBytes(1000, 7);
    const { ws } = setup({ 'IPI_20250212.dat': data, 'IPI_20250212.dat.sha256': `${sha256(data)}  IPI_20250212.dat\n` });
    const st = await ws.run(['status', '--json']);
    assert.equal(st.code, 0, st.stderr);
    assert.deepEqual((JSON.parse(st.stdout) as { remote: { pending: string[] } }).remote.pending, ['IPI_20250212.dat']);
    const dry = await ws.run(['--dry-run', '--json']);
    assert.deepEqual((JSON.parse(dry.stdout) as { wouldPull: string[] }).wouldPull, ['IPI_20250212.dat']);
  });

  test('a damaged marker: the run and status stop with one line and the way out (exit 2); mark repairs it', async () => {
    const { ws } = setup({ 'IPI_20250211.dat': testBytes(10, 1) });
    fs.writeFileSync(ws.markerFile, '\x00\x01garbage');
    for (const args of [[], ['status', '--local']]) {
      const r = await ws.run(args);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /LAST_FILE_RECORD .* is damaged: .*ipi-pull mark NAME/);
      assert.ok(!r.stderr.includes('\x00') && !r.stdout.includes('\x00'), 'no raw control bytes on the terminal');
    }
    assert.deepEqual(listDir(ws.serverDir), []);
    const mark = await ws.run(['mark', 'IPI_20250210.dat', '--force']);
    assert.equal(mark.code, 0, mark.stderr);
    assert.equal((await ws.run()).code, 0);
    assert.deepEqual(listDir(ws.serverDir), ['IPI_20250211.dat']);
  });

  test('--latest pulls only the newest file; START_FROM=latest does so on a first run only', async () => {
    const files = { 'IPI_20250301.dat': testBytes(10, 1), 'IPI_20250302.dat': testBytes(10, 2), 'IPI_20250303.dat': testBytes(10, 3) };
    const a = setup(files);
    assert.equal((await a.ws.run(['--latest'])).code, 0);
    assert.deepEqual(listDir(a.ws.serverDir), ['IPI_20250303.dat']);
    const b = setup(files, { START_FROM: 'latest' });
    assert.equal((await b.ws.run()).code, 0);
    assert.deepEqual(listDir(b.ws.serverDir), ['IPI_20250303.dat']);
    writeRemoteFile(suite.server, `${b.folder}/IPI_20250304.dat`, 'a');
    writeRemoteFile(suite.server, `${b.folder}/IPI_20250305.dat`, 'b');
    fs.utimesSync(path.join(suite.server.root, b.folder, 'IPI_20250305.dat'), new Date(0), new Date(Date.now() - 120_000));
    fs.utimesSync(path.join(suite.server.root, b.folder, 'IPI_20250304.dat'), new Date(0), new Date(Date.now() - 120_000));
    assert.equal((await b.ws.run()).code, 0);
    assert.deepEqual(listDir(b.ws.serverDir), ['IPI_20250303.dat', 'IPI_20250304.dat', 'IPI_20250305.dat'], 'with a marker, every later file');
  });

  test('POST_ACTION=delete and move:DIR act on the server only after delivery', async () => {
    const del = setup({ 'IPI_20250401.dat': testBytes(100, 1) }, { POST_ACTION: 'delete' });
    assert.equal((await del.ws.run()).code, 0);
    assert.deepEqual(listDir(path.join(suite.server.root, del.folder)), []);
    assert.deepEqual(listDir(del.ws.serverDir), ['IPI_20250401.dat']);

    const mv = setup({ 'IPI_20250402.dat': testBytes(100, 2) });
    fs.mkdirSync(path.join(suite.server.root, mv.folder, 'done'));
    mv.ws.env.POST_ACTION = `move:${suite.server.remoteDir}/${mv.folder}/done`;
    mv.ws.writeEnv();
    assert.equal((await mv.ws.run()).code, 0);
    assert.deepEqual(listDir(path.join(suite.server.root, mv.folder, 'done')), ['IPI_20250402.dat']);

    const broken = setup({ 'IPI_20250403.dat': testBytes(100, 3) }, { POST_ACTION: `move:${suite.server.remoteDir}/no/such/dir` });
    const r = await broken.ws.run();
    assert.equal(r.code, 0, 'a failed post-action never fails the delivery');
    assert.match(r.stderr, /delivered, but POST_ACTION move failed/);
    assert.equal(broken.ws.marker(), 'IPI_20250403.dat');
  });

  test('METRICS_FILE is valid Prometheus text; a failed run keeps the last success time', async () => {
    const { ws } = setup({ 'IPI_20250501.dat': testBytes(2500, 1), 'IPI_20250502.dat': testBytes(10, 2) }, { METRICS_FILE: './metrics/ipi_pull.prom' });
    fs.mkdirSync(path.join(ws.dir, 'metrics'));
    const metricsFile = path.join(ws.dir, 'metrics', 'ipi_pull.prom');
    assert.equal((await ws.run(['--once'])).code, 0);
    const ok = parseProm(fs.readFileSync(metricsFile, 'utf8'));
    assert.equal(ok.get('ipi_pull_last_run_success'), 1);
    assert.equal(ok.get('ipi_pull_last_run_files_delivered'), 1);
    assert.equal(ok.get('ipi_pull_last_run_bytes_delivered'), 2500);
    assert.equal(ok.get('ipi_pull_files_pending'), 1);
    const lastSuccess = ok.get('ipi_pull_last_success_timestamp_seconds')!;
    assert.ok(Math.abs(lastSuccess - Date.now() / 1000) < 60);

    const failed = await ws.run(['--sftp-dir', '/no/such/dir']);
    assert.equal(failed.code, 1);
    const bad = parseProm(fs.readFileSync(metricsFile, 'utf8'));
    assert.equal(bad.get('ipi_pull_last_run_success'), 0);
    assert.equal(bad.get('ipi_pull_last_run_exit_code'), 1);
    assert.equal(bad.get('ipi_pull_last_success_timestamp_seconds'), lastSuccess);
    assert.deepEqual(listDir(path.join(ws.dir, 'metrics')), ['ipi_pull.prom'], 'written atomically: no temp file left');
  });

  test('without a terminal, progress is a log line every 10 %, and each file ends with a summary line', async () => {
    const { ws } = setup({ 'IPI_20250601.dat': testBytes(24 * 1024 * 1024, 6) }, { CHUNKS_IN_FLIGHT: '1' });
    const r = await ws.run();
    assert.equal(r.code, 0, r.stderr);
    const progress = r.stdout.split('\n').filter((l) => /IPI_20250601\.dat: [\d.]+ MiB of 24\.0 MiB \(\d+%\), [\d.]+ MB\/s, ETA/.test(l));
    assert.ok(progress.length >= 5 && progress.length <= 11, `progress lines:\n${progress.join('\n')}`);
    const pcts = progress.map((l) => Number(/\((\d+)%\)/.exec(l)![1]));
    for (let i = 1; i < pcts.length; i++) assert.ok(pcts[i]! - pcts[i - 1]! >= 8, `steps of about 10 %: ${pcts}`);
    assert.match(r.stdout, /IPI_20250601\.dat: delivered 24\.0 MiB in [\d.]+ s \([\d.]+ MB\/s\), sha256 [0-9a-f]{64}, published to .+; marker -> IPI_20250601\.dat/);
  });

  test('LOG_FILE rotates by size and keeps LOG_MAX_FILES files', async () => {
    const { ws } = setup({ 'IPI_20250701.dat': testBytes(10, 7) }, { LOG_MAX_SIZE: '1KiB', LOG_MAX_FILES: '3', LOG_LEVEL: 'debug' });
    for (let i = 0; i < 6; i++) assert.equal((await ws.run()).code, 0);
    const logs = listDir(path.dirname(ws.logFile));
    assert.ok(logs.length >= 2 && logs.length <= 3, `log files: ${logs}`);
    for (const f of logs) assert.ok(fs.statSync(path.join(path.dirname(ws.logFile), f)).size < 4096, `${f} stays small`);
  });
});

describe('ipi-pull demo', () => {
  test('runs with no configuration at all and delivers the samples with every real step', async () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-demo-'));
    try {
      const r = await runCli(['demo'], { cwd });
      assert.equal(r.code, 0, r.stderr + r.stdout);
      const dir = path.join(cwd, 'ipi-pull-demo');
      const delivered = ['IPI_20250101.dat', 'IPI_20250102_a.dat', 'IPI_20250102_b.dat', 'IPI_20250103.dat'];
      assert.deepEqual(listDir(path.join(dir, 'synced_server')), delivered);
      assert.equal(fs.readFileSync(path.join(dir, 'last_file.txt'), 'utf8'), 'IPI_20250103.dat');
      const history = fs.readFileSync(path.join(dir, 'last_file.history.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      assert.deepEqual(history.map((h) => h.name), delivered);
      assert.ok(history[0].resumedFrom > 0, 'the first file resumed from the half left behind');
      for (const h of history) {
        const published = fs.readFileSync(path.join(dir, 'synced_server', h.name));
        assert.equal(createHash('sha256').update(published).digest('hex'), h.sha256, h.name);
      }
      assert.match(r.stdout, /IPI_20250101\.dat: resuming at byte \d+/);
      assert.match(r.stdout, /IPI_20250103\.dat: sha256 matches IPI_20250103\.dat\.sha256/);
      assert.match(r.stdout, /waiting for a later run: +IPI_20250104\.dat \(younger than MIN_AGE/);
      assert.match(r.stdout, /ipi-pull init/);
      const metrics = fs.readFileSync(path.join(dir, 'metrics', 'ipi_pull.prom'), 'utf8');
      assert.match(metrics, /^ipi_pull_last_run_files_delivered 4$/m);
      assert.match(fs.readFileSync(path.join(dir, 'logs', 'sftp_transfer.log'), 'utf8'), /IPI_20250103\.dat: delivered/);

      const again = await runCli(['demo', '--json'], { cwd });
      assert.equal(again.code, 0, again.stderr);
      assert.equal(JSON.parse(again.stdout).files.length, 4, 'a second demo starts afresh in its own folder');

      fs.mkdirSync(path.join(cwd, 'precious'));
      fs.writeFileSync(path.join(cwd, 'precious', 'keep.txt'), 'mine');
      const refused = await runCli(['demo', '--dir', 'precious'], { cwd });
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, /is not a demo folder/);
      assert.equal(fs.readFileSync(path.join(cwd, 'precious', 'keep.txt'), 'utf8'), 'mine');
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });
});

describe('progress on a terminal', () => {
  test('a live bar with percent, speed and ETA, cleared when the file is done (driven in tmux)', async (t) => {
    if (!toolRuns('tmux')) return t.skip('tmux is not installed: the terminal progress bar cannot be driven here (apt-get install tmux)');
    const { ws } = setup({ 'IPI_20250801.dat': testBytes(6 * 1024 * 1024, 8) });
    const proxy = await startFaultProxy(suite.server.port);
    proxy.throttle(2 * 1024 * 1024); // about 3 s for the file: long enough to see the bar move
    const session = `ipi-progress-${process.pid}`;
    const script = path.join(ws.dir, 'run.sh');
    fs.writeFileSync(script, [
      '#!/bin/sh',
      `cd '${ws.dir}'`,
      `export HOME='${ws.dir}' PATH='${process.env.PATH}'`,
      `'${process.execPath}' '${CLI}' --sftp-port ${proxy.port} --sftp-host-key '${suite.server.hostKeyFingerprint}'`,
      'echo "exit=$?"',
      'sleep 30',
    ].join('\n'), { mode: 0o755 });
    try {
      execFileSync('tmux', ['new-session', '-d', '-s', session, '-x', '160', '-y', '40', script]);
      const screens: string[] = [];
      const deadline = Date.now() + 30_000;
      let final = '';
      while (Date.now() < deadline) {
        const screen = execFileSync('tmux', ['capture-pane', '-p', '-t', session]).toString();
        screens.push(screen);
        if (/exit=\d+/.test(screen)) {
          final = screen;
          break;
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.match(final, /exit=0/, final);
      const bars = screens.flatMap((s) => s.split('\n')).filter((l) => /IPI_20250801\.dat \[#*-*\] [\d.]+ MiB of 6\.0 MiB \(\d+%\), [\d.]+ MB\/s, ETA \d+:\d\d/.test(l));
      assert.ok(bars.length >= 3, `saw the bar ${bars.length} times`);
      const pcts = new Set(bars.map((l) => /\((\d+)%\)/.exec(l)![1]));
      assert.ok(pcts.size >= 2, `the bar moved: ${[...pcts]}`);
      assert.match(final, /IPI_20250801\.dat: delivered 6\.0 MiB/);
      assert.doesNotMatch(final, /\[#+-*\]/, 'the bar is cleared once the file is done');
    } finally {
      try {
        execFileSync('tmux', ['kill-session', '-t', session], { stdio: 'ignore' });
      } catch {
        /* already gone */
      }
      await proxy.stop();
    }
  });
});

describe('the README path for a newcomer', () => {
  test('init, fill in the server, --dry-run, run, then status shows the delivery', async () => {
    const { ws, folder } = setup({ 'IPI_20250901.dat': testBytes(100_000, 9), 'IPI_20250902.dat': testBytes(200_000, 10) });
    fs.rmSync(path.join(ws.dir, '.env'));
    assert.equal((await ws.run(['init'])).code, 0);
    // What the README tells a person to do: set the server, the folder and a way to log in.
    const edited = fs.readFileSync(path.join(ws.dir, '.env'), 'utf8')
      .replace(/^SFTP_HOST=.*$/m, `SFTP_HOST=${suite.server.host}`)
      .replace(/^#SFTP_PORT=.*$/m, `SFTP_PORT=${suite.server.port}`)
      .replace(/^SFTP_USER=.*$/m, `SFTP_USER=${suite.server.user}`)
      .replace(/^SFTP_DIR=.*$/m, `SFTP_DIR=${suite.server.remoteDir}/${folder}`)
      .replace(suite.server.kind === 'openssh' ? /^#SFTP_KEY=.*$/m : /^#SFTP_PASS=.*$/m,
        suite.server.kind === 'openssh' ? `SFTP_KEY=${suite.server.clientKeyPath}` : `SFTP_PASS=${suite.server.password}`);
    fs.writeFileSync(path.join(ws.dir, '.env'), edited);
    const dry = await ws.run(['--dry-run']);
    assert.equal(dry.code, 0, dry.stderr + dry.stdout);
    assert.match(dry.stdout, /would pull IPI_20250901\.dat/);
    const run = await ws.run();
    assert.equal(run.code, 0, run.stderr);
    const st = await ws.run(['status']);
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, /marker \(.*last_file\.txt\): IPI_20250902\.dat/);
    assert.match(st.stdout, /last delivered: IPI_20250902\.dat, 195\.3 KiB/);
    assert.match(st.stdout, /waiting on the server: nothing new/);
  });
});
