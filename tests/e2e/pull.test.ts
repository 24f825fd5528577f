/**
 * The core promises of one run, through the built CLI against a real OpenSSH sshd
 * (or the embedded ssh2 server where sshd is not installed: the helper says so).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';

import { lockFileFor } from '../../src/lock.js';
import { CLI, childEnv, collect, listDir, makeWorkspace, sha256, sha256File, testBytes, type CliResult, type Workspace } from './helpers/cli.js';
import { startEmbeddedServer } from './helpers/embedded-server.js';
import { startFaultProxy } from './helpers/fault-proxy.js';
import { pullSuite } from './helpers/suite.js';

const suite = pullSuite('pull', 't');
const setup = suite.setup;

function remoteFile(folder: string, name: string): string {
  return path.join(suite.server.root, folder, name);
}

/** No temporary or partial file is left anywhere a consumer or the next run looks. */
function assertNoLeftovers(ws: Workspace): void {
  for (const dir of [ws.localDir, ws.serverDir, ws.dir]) {
    const stray = listDir(dir).filter((n) => n.endsWith('.part') || n.endsWith('.part.json') || /\.(tmp|publishing)-\d+/.test(n) || n.endsWith('.lock'));
    assert.deepEqual(stray, [], `leftover files in ${dir}`);
  }
}

describe('ipi-pull against a real SFTP server', () => {
  test('first run without a marker delivers every IPI file in date order, same-day files included', async () => {
    const files = {
      'IPI_20240103.dat': testBytes(300_000, 3),
      'IPI_20240101.dat': testBytes(5 * 1024 * 1024 + 17, 1),
      'IPI_20240102_b.dat': testBytes(1000, 22),
      'IPI_20240102_a.dat': testBytes(2 * 1024 * 1024, 21),
      'notes.txt': 'not an IPI file',
      'IPI_latest.dat': 'no date in this name',
    };
    const { ws, folder } = setup(files);
    const r = await ws.run();
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const order = ['IPI_20240101.dat', 'IPI_20240102_a.dat', 'IPI_20240102_b.dat', 'IPI_20240103.dat'];
    assert.deepEqual(ws.history().map((h) => h.name), order);
    assert.deepEqual(listDir(ws.serverDir), [...order].sort());
    for (const name of order) {
      assert.equal(sha256File(path.join(ws.serverDir, name)), sha256File(remoteFile(folder, name)), name);
      assert.equal(ws.history().find((h) => h.name === name)!.sha256, sha256(files[name as keyof typeof files]));
    }
    assert.equal(ws.marker(), 'IPI_20240103.dat');
    assert.match(r.stdout + r.stderr, /skipping "IPI_latest.dat": no date/);
    assert.ok(!listDir(ws.serverDir).includes('notes.txt'));
    assertNoLeftovers(ws);
    const log = fs.readFileSync(ws.logFile, 'utf8');
    assert.match(log, /connecting to .*@127\.0\.0\.1/);
    assert.match(log, /IPI_20240101\.dat: delivered/);
  });

  test('a symbolic link on the server to a file is pulled as that file, as `sftp get` would; links it cannot follow are warned about, not fatal; a folder is not a file', async () => {
    const files = { 'IPI_20240201.dat': testBytes(10_000, 201), 'store/kept.bin': testBytes(700_000, 202), 'IPI_20240203.dat': testBytes(10_000, 203) };
    const { ws, folder } = setup(files);
    const dir = path.dirname(remoteFile(folder, 'IPI_20240201.dat'));
    // OpenSSH's READDIR describes a link itself (lstat); its file is what `get` fetches.
    fs.symlinkSync('store/kept.bin', path.join(dir, 'IPI_20240202.dat'));
    fs.symlinkSync('store/missing.bin', path.join(dir, 'IPI_20240204.dat'));
    fs.mkdirSync(path.join(dir, 'IPI_20240205.dat'));
    fs.symlinkSync('IPI_20240206.dat', path.join(dir, 'IPI_20240206.dat'));
    fs.symlinkSync('elsewhere/nothing', path.join(dir, 'unrelated-link'));
    const r = await ws.run();
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stderr, /WARN: skipping "IPI_20240204\.dat": a symbolic link to nothing on the server/);
    // A loop: OpenSSH answers "no such file" for ELOOP.
    assert.match(r.stderr, /WARN: skipping "IPI_20240206\.dat": a symbolic link (to nothing on the server|the server cannot follow)/);
    assert.doesNotMatch(r.stderr, /unrelated-link|IPI_20240205/);
    assert.deepEqual(ws.history().map((h) => h.name), ['IPI_20240201.dat', 'IPI_20240202.dat', 'IPI_20240203.dat']);
    assert.equal(sha256File(path.join(ws.serverDir, 'IPI_20240202.dat')), sha256(files['store/kept.bin']));
    assert.ok(!fs.lstatSync(path.join(ws.serverDir, 'IPI_20240202.dat')).isSymbolicLink(), 'a file, not a link, is published');
    assert.equal(ws.marker(), 'IPI_20240203.dat');
    assertNoLeftovers(ws);
  });

  test('a file that lands before the marker after the marker moved past its place is warned about and shown by status, not silently ignored', async () => {
    const { ws, folder } = setup({ 'IPI_20240302.dat': testBytes(5000, 302), 'IPI_20240303.dat': testBytes(5000, 303) });
    const first = await ws.run();
    assert.equal(first.code, 0, first.stderr + first.stdout);
    assert.equal(ws.marker(), 'IPI_20240303.dat');
    // An upload that comes late: dated before the marker, written after its delivery
    // (a little in the future, as the server's mtime has whole seconds).
    const late = remoteFile(folder, 'IPI_20240301.dat');
    fs.writeFileSync(late, testBytes(5000, 301));
    const later = new Date(Date.now() + 5000);
    fs.utimesSync(late, later, later);
    const r = await ws.run();
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stderr, /WARN: "?IPI_20240301\.dat"? is not delivered: it sorts before the marker \(IPI_20240303\.dat\) but appeared on the server .* after that was delivered, so no run will take it; fetch it by hand, or set the marker before it/);
    assert.equal(ws.marker(), 'IPI_20240303.dat');
    assert.ok(!fs.existsSync(path.join(ws.serverDir, 'IPI_20240301.dat')));
    const st = await ws.run(['status', '--json']);
    assert.deepEqual(JSON.parse(st.stdout).remote.passedOver, ['IPI_20240301.dat']);
    assert.match((await ws.run(['status'])).stdout, /passed over \(before the marker, but new or changed on the server since it moved there; no run takes them\): IPI_20240301\.dat/);
  });

  test('--once pulls exactly one file per run, then the next one', async () => {
    const { ws } = setup({ 'IPI_20240201.dat': testBytes(1234, 5), 'IPI_20240202.dat': testBytes(4321, 6) });
    let r = await ws.run(['--once']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(listDir(ws.serverDir), ['IPI_20240201.dat']);
    assert.equal(ws.marker(), 'IPI_20240201.dat');
    r = await ws.run(['--once']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(listDir(ws.serverDir), ['IPI_20240201.dat', 'IPI_20240202.dat']);
    assert.equal(ws.marker(), 'IPI_20240202.dat');
  });

  test('nothing new: exit 0, says so, changes nothing', async () => {
    const { ws } = setup({ 'IPI_20240301.dat': testBytes(100, 7) });
    assert.equal((await ws.run()).code, 0);
    const before = fs.statSync(ws.markerFile).mtimeMs;
    const r = await ws.run(['--json']);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    assert.equal(summary.outcome, 'nothing-new');
    assert.deepEqual(summary.files, []);
    assert.match(r.stderr, /nothing new after IPI_20240301\.dat/);
    assert.equal(ws.history().length, 1);
    assert.equal(fs.statSync(ws.markerFile).mtimeMs, before);
  });

  test('a marker written by FTP_IPI.py (with CRLF) is honoured and rewritten in the same format', async () => {
    const { ws } = setup({
      'IPI_20240401.dat': testBytes(10, 1), 'IPI_20240402.dat': testBytes(20, 2), 'IPI_20240403.dat': testBytes(30, 3),
    });
    fs.writeFileSync(ws.markerFile, 'IPI_20240402.dat\r\n');
    const r = await ws.run();
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(listDir(ws.serverDir), ['IPI_20240403.dat']);
    assert.equal(fs.readFileSync(ws.markerFile, 'utf8'), 'IPI_20240403.dat');
  });

  test('resume from an existing partial transfers only the rest of the file', async () => {
    const size = 8 * 1024 * 1024 + 333;
    const data = testBytes(size, 42);
    const { ws, folder } = setup({ 'IPI_20240501.dat': data });
    const st = fs.statSync(remoteFile(folder, 'IPI_20240501.dat'));
    const have = 5 * 1024 * 1024;
    fs.mkdirSync(ws.localDir, { recursive: true });
    fs.writeFileSync(path.join(ws.localDir, 'IPI_20240501.dat.part'), data.subarray(0, have));
    fs.writeFileSync(path.join(ws.localDir, 'IPI_20240501.dat.part.json'), JSON.stringify({
      name: 'IPI_20240501.dat', remoteSize: size, remoteMtimeMs: Math.floor(st.mtimeMs / 1000) * 1000, startedAt: new Date().toISOString(),
    }));
    const servedBefore = await suite.server.bytesServed('IPI_20240501.dat');
    const r = await ws.run();
    assert.equal(r.code, 0, r.stderr);
    const served = (await suite.server.bytesServed('IPI_20240501.dat')) - servedBefore;
    const rest = size - have;
    assert.ok(served >= rest && served <= rest + 64 * 1024, `served ${served} bytes, the rest is ${rest}`);
    assert.equal(sha256File(path.join(ws.serverDir, 'IPI_20240501.dat')), sha256(data));
    const h = ws.history()[0]!;
    assert.equal(h.resumedFrom, have);
    assert.equal(h.sha256, sha256(data), 'the SHA-256 covers the resumed prefix too');
    assertNoLeftovers(ws);
  });

  test('a partial left by FTP_IPI.py under the final name is resumed, not trusted blindly', async () => {
    const MiB = 1024 * 1024;
    const size = 3 * MiB;
    const data = testBytes(size, 43);
    const { ws } = setup({ 'IPI_20240502.dat': data });
    fs.mkdirSync(ws.localDir, { recursive: true });
    // 2 MiB whose last 32 KiB are not the server's (a torn write): the tail check must catch it
    // and step back to 1 MiB, where the bytes match. A partial trusted blindly would resume at
    // 2 MiB and splice the wrong bytes in.
    const partial = Buffer.concat([data.subarray(0, 2 * MiB - 32 * 1024), testBytes(32 * 1024, 4302)]);
    assert.notDeepEqual(partial.subarray(2 * MiB - 32 * 1024), data.subarray(2 * MiB - 32 * 1024, 2 * MiB));
    fs.writeFileSync(path.join(ws.localDir, 'IPI_20240502.dat'), partial);
    const servedBefore = await suite.server.bytesServed('IPI_20240502.dat');
    const r = await ws.run();
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout + r.stderr, /IPI_20240502\.dat: the partial's last 1048576 bytes did not match the server \(torn write\?\); resuming at byte 1048576/);
    assert.equal(ws.history()[0]!.resumedFrom, MiB);
    // The rest from 1 MiB, and the two 64 KiB tail windows compared on the way.
    const served = (await suite.server.bytesServed('IPI_20240502.dat')) - servedBefore;
    assert.ok(served <= size - MiB + 2 * 64 * 1024, `served ${served}`);
    assert.equal(sha256File(path.join(ws.serverDir, 'IPI_20240502.dat')), sha256(data));
    assert.equal(sha256File(path.join(ws.localDir, 'IPI_20240502.dat')), sha256(data));
  });

  test('a partial of an older version of the remote file is discarded: the download restarts from zero', async () => {
    const size = 4 * 1024 * 1024;
    const data = testBytes(size, 44);
    const { ws } = setup({ 'IPI_20240503.dat': data });
    fs.mkdirSync(ws.localDir, { recursive: true });
    fs.writeFileSync(path.join(ws.localDir, 'IPI_20240503.dat.part'), testBytes(2 * 1024 * 1024, 999));
    fs.writeFileSync(path.join(ws.localDir, 'IPI_20240503.dat.part.json'), JSON.stringify({
      name: 'IPI_20240503.dat', remoteSize: size, remoteMtimeMs: 1_000_000, startedAt: new Date().toISOString(),
    }));
    const r = await ws.run();
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /changed since the partial was started: starting over/);
    assert.equal(sha256File(path.join(ws.serverDir, 'IPI_20240503.dat')), sha256(data));
    assert.equal(ws.history()[0]!.resumedFrom, 0);
  });

  test('a temporary file left in SERVER_DIR by a run that died is cleaned up; a fresh one is left alone', async () => {
    const { ws } = setup({ 'IPI_20240510.dat': testBytes(1000, 10) });
    fs.mkdirSync(ws.serverDir, { recursive: true });
    const orphan = path.join(ws.serverDir, `.IPI_20240509.dat.publishing-${2 ** 22 + 7}-abc`);
    const fresh = path.join(ws.serverDir, `.IPI_20240508.dat.publishing-${2 ** 22 + 8}-def`);
    fs.writeFileSync(orphan, 'half a file');
    fs.writeFileSync(fresh, 'maybe another machine is writing this');
    const old = new Date(Date.now() - 2 * 3600_000);
    fs.utimesSync(orphan, old, old);
    const r = await ws.run();
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!fs.existsSync(orphan));
    assert.ok(fs.existsSync(fresh));
    assert.match(r.stdout, /a temporary file left by a run that died/);
  });

  test('the temporaries of a run killed mid-publish go at once when its lock is taken over; a dead pid\'s without the lock wait their hour', async () => {
    const { ws } = setup({ 'IPI_20240511.dat': testBytes(1000, 11) });
    fs.mkdirSync(ws.serverDir, { recursive: true });
    const killed = 2 ** 22 + 9;
    fs.writeFileSync(lockFileFor(ws.markerFile), JSON.stringify({ pid: killed, host: os.hostname(), since: new Date().toISOString(), token: 't', refreshSeconds: 30 }));
    const cutShort = path.join(ws.serverDir, `.IPI_20240510.dat.publishing-${killed}-abc`);
    const other = path.join(ws.serverDir, `.IPI_20240509.dat.publishing-${killed + 1}-def`);
    fs.writeFileSync(cutShort, 'the start of a copy');
    fs.writeFileSync(other, 'maybe another machine is writing this');
    const r = await ws.run();
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr + r.stdout, /took over a stale lock left by pid \d+/);
    assert.ok(!fs.existsSync(cutShort));
    assert.ok(fs.existsSync(other));
  });

  test('--dry-run says what would be pulled and changes nothing', async () => {
    const { ws } = setup({ 'IPI_20240601.dat': testBytes(10, 1), 'IPI_20240602.dat': testBytes(10, 2) });
    const r = await ws.run(['--dry-run', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).wouldPull, ['IPI_20240601.dat', 'IPI_20240602.dat']);
    assert.match(r.stderr, /would pull IPI_20240601\.dat/);
    assert.deepEqual(listDir(ws.dir).filter((n) => !['.env', '.ssh', 'logs'].includes(n)), []);
  });

  test('a .env written for FTP_IPI.py pulls files unchanged (host key in ~/.ssh/known_hosts)', async () => {
    const { ws, folder } = setup({ 'IPI_20240701.dat': testBytes(70_000, 7) });
    // Exactly the seed's keys, nothing else: relative paths as in its README.
    ws.env = {
      SFTP_HOST: suite.server.host,
      SFTP_PORT: String(suite.server.port),
      SFTP_USER: suite.server.user,
      SFTP_PASS: suite.server.password ?? 'the-seed-used-a-password',
      SFTP_DIR: `${suite.server.remoteDir}/${folder}`,
      LOCAL_DIR: './local_downloads',
      SERVER_DIR: './synced_server',
      LOG_FILE: './logs/sftp_transfer.log',
      LAST_FILE_RECORD: './last_file.txt',
    };
    ws.writeEnv();
    if (suite.server.kind === 'openssh') {
      // Our sshd has passwords off; like `sftp`, ipi-pull then logs in with ~/.ssh/id_ed25519.
      fs.copyFileSync(suite.server.clientKeyPath, path.join(ws.dir, '.ssh', 'id_ed25519'));
      fs.chmodSync(path.join(ws.dir, '.ssh', 'id_ed25519'), 0o600);
    }
    const r = await ws.run();
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.deepEqual(listDir(ws.serverDir), ['IPI_20240701.dat']);
    assert.equal(ws.marker(), 'IPI_20240701.dat');
  });

  test('a key with a passphrase works, and the passphrase never reaches a log', async () => {
    const { ws } = setup({ 'IPI_20240801.dat': testBytes(5000, 8) }, {}, { auth: 'passphrase' });
    const r = await ws.run(['--sftp-key-passphrase', suite.server.passphrase!, '--log-level', 'debug']);
    assert.equal(r.code, 0, r.stderr);
    const everything = r.stdout + r.stderr + fs.readFileSync(ws.logFile, 'utf8');
    assert.ok(!everything.includes(suite.server.passphrase!), 'passphrase leaked');
    const bad = await ws.run(['--sftp-key-passphrase', 'wrong-passphrase-XYZZY']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /SFTP_KEY_PASSPHRASE does not decrypt it/);
    assert.ok(!(bad.stdout + bad.stderr).includes('XYZZY'));
  });
});

describe('refusals: exit codes and nothing changed', () => {
  test('an unknown host key is refused (exit 4) with the fingerprint and the line to add; --accept-new-host-key records it', async () => {
    const { ws } = setup({ 'IPI_20240901.dat': testBytes(10, 9) });
    fs.writeFileSync(path.join(ws.dir, '.ssh', 'known_hosts'), '');
    const r = await ws.run();
    assert.equal(r.code, 4, r.stderr);
    assert.ok(r.stderr.includes(suite.server.hostKeyFingerprint), r.stderr);
    assert.ok(r.stderr.includes(suite.server.knownHostsLine), 'names the exact known_hosts line');
    assert.equal(ws.marker(), null);
    assert.deepEqual(listDir(ws.serverDir), []);
    const ok = await ws.run(['--accept-new-host-key']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(fs.readFileSync(path.join(ws.dir, '.ssh', 'known_hosts'), 'utf8').includes(suite.server.knownHostsLine));
  });

  test('a changed host key is refused even with --accept-new-host-key', async () => {
    const { ws } = setup({ 'IPI_20240902.dat': testBytes(10, 9) });
    const other = path.join(ws.dir, 'otherkey');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other]);
    const pub = fs.readFileSync(`${other}.pub`, 'utf8').trim().split(/\s+/);
    fs.writeFileSync(path.join(ws.dir, '.ssh', 'known_hosts'), `[127.0.0.1]:${suite.server.port} ${pub[0]} ${pub[1]}\n`);
    const r = await ws.run(['--accept-new-host-key']);
    assert.equal(r.code, 4);
    assert.match(r.stderr, /CHANGED/);
    assert.ok(r.stderr.includes(suite.server.hostKeyFingerprint));
    assert.equal(ws.marker(), null);
  });

  test('--accept-new-host-key, then a failure after the host key step: reported as what it is (a refused login: exit 4 at once; a link lost: retried), not as a refused host key; the key is recorded once a login succeeds', async () => {
    const srv = await startEmbeddedServer();
    const dropping = await startEmbeddedServer({ dropAtLogin: true });
    try {
      const ws = suite.track(makeWorkspace(srv, { auth: 'password', extra: { RETRIES: '1', RETRY_DELAYS: '0.1' } }));
      const knownHosts = path.join(ws.dir, '.ssh', 'known_hosts');
      fs.writeFileSync(knownHosts, '');
      const file = path.join(srv.root, 'IPI_20240904.dat');
      fs.writeFileSync(file, testBytes(10, 9));
      fs.utimesSync(file, new Date(Date.now() - 3600_000), new Date(Date.now() - 3600_000));
      const errors = (text: string) => text.split('\n').filter((l) => /ERROR:/.test(l));

      const wrong = await ws.run(['--accept-new-host-key'], { SFTP_PASS: 'not-the-password' });
      assert.equal(wrong.code, 4, wrong.stderr);
      assert.equal(errors(wrong.stderr).length, 1, wrong.stderr);
      assert.match(errors(wrong.stderr)[0]!, /refused the login/);
      assert.doesNotMatch(wrong.stderr, /host key refused|retrying/);
      assert.equal(fs.readFileSync(knownHosts, 'utf8'), '', 'a key is recorded only once a login succeeds');

      const cut = await ws.run(['--accept-new-host-key', '--sftp-port', String(dropping.port)]);
      assert.equal(cut.code, 1, cut.stderr);
      assert.equal(errors(cut.stderr).length, 1, cut.stderr);
      assert.doesNotMatch(cut.stderr, /host key refused/);
      assert.match(cut.stderr, /retrying in 0\.1 s/, 'a lost link is transient');
      assert.equal(fs.readFileSync(knownHosts, 'utf8'), '');

      const ok = await ws.run(['--accept-new-host-key']);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(fs.readFileSync(knownHosts, 'utf8'), `${srv.knownHostsLine}\n`);
      assert.equal(ws.marker(), 'IPI_20240904.dat');
    } finally {
      await srv.stop();
      await dropping.stop();
    }
  });

  test('a pinned SFTP_HOST_KEY is checked: right pin pulls, wrong pin exits 4', async () => {
    const { ws } = setup({ 'IPI_20240903.dat': testBytes(10, 9) });
    fs.writeFileSync(path.join(ws.dir, '.ssh', 'known_hosts'), '');
    const wrong = await ws.run(['--sftp-host-key', 'SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s']);
    assert.equal(wrong.code, 4);
    assert.match(wrong.stderr, /not the pinned SFTP_HOST_KEY/);
    const right = await ws.run(['--sftp-host-key', suite.server.hostKeyFingerprint]);
    assert.equal(right.code, 0, right.stderr);
    assert.equal(ws.marker(), 'IPI_20240903.dat');
  });

  test('wrong credentials: exit 4 at once, no retries', async () => {
    const { ws } = setup({ 'IPI_20241001.dat': testBytes(10, 10) });
    const stranger = path.join(ws.dir, 'stranger');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', stranger]);
    ws.env.SFTP_KEY = stranger;
    delete ws.env.SFTP_PASS;
    ws.writeEnv();
    const started = Date.now();
    const r = await ws.run();
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /refused the login/);
    assert.doesNotMatch(r.stdout + r.stderr, /retrying/);
    assert.ok(Date.now() - started < 15_000);
    assert.equal(ws.marker(), null);
  });

  test('bad config: one line naming the key, exit 2, nothing created', async () => {
    const { ws } = setup({ 'IPI_20241101.dat': testBytes(10, 11) });
    ws.env.SFTP_PORT = 'twenty-two';
    ws.env.CHUNK_SIZE = '2MiB';
    ws.writeEnv();
    const r = await ws.run();
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /SFTP_PORT \(--sftp-port\): 'twenty-two' is not a whole number\. Example: SFTP_PORT=22/);
    assert.deepEqual(listDir(ws.dir).filter((n) => !['.env', '.ssh'].includes(n)), []);
    const flag = await ws.run(['--retry-delays', '5,,10']);
    assert.equal(flag.code, 2);
  });

  test('an SFTP_KEY that cannot be read: one line, exit 2, and nothing made (no LOG_FILE, no lock, no LOCAL_DIR or SERVER_DIR)', async () => {
    // Read when the settings are loaded, not at connect time: by then the run had opened its
    // log, taken the lock and made its folders.
    const { ws } = setup({ 'IPI_20241102.dat': testBytes(10, 12) });
    const keys = path.join(ws.dir, 'keys');
    fs.mkdirSync(path.join(keys, 'a-folder'), { recursive: true });
    const cases: Array<[string, string]> = [[path.join(keys, 'id_missing'), 'ENOENT'], [path.join(keys, 'a-folder'), 'EISDIR']];
    for (const [key, code] of cases) {
      ws.env.SFTP_KEY = key;
      ws.writeEnv();
      const r = await ws.run();
      assert.equal(r.code, 2, r.stdout + r.stderr);
      assert.equal(r.stderr, `ipi-pull: SFTP_KEY ${key}: cannot read it (${code})\n`);
      assert.equal(r.stdout, '');
      assert.deepEqual(listDir(ws.dir).filter((n) => !['.env', '.ssh', 'keys'].includes(n)), [], `${code}: nothing created`);
    }
  });

  test('an SFTP_KEY we may not read (mode 000): EACCES, one line, exit 2, nothing made; as root too', async (t) => {
    const { ws } = setup({ 'IPI_20241103.dat': testBytes(10, 13) });
    const key = path.join(ws.dir, 'keys', 'id_mode_000');
    fs.mkdirSync(path.dirname(key));
    fs.writeFileSync(key, 'whatever', { mode: 0o000 });
    ws.env.SFTP_KEY = key;
    ws.writeEnv();
    let r: CliResult;
    if (process.getuid?.() === 0) {
      // Root reads a file of mode 000. Without the two capabilities that let it (setpriv is
      // util-linux's), it is refused like anyone else: the same as tests/unit/load.test.ts.
      if (spawnSync('setpriv', ['--version']).error) {
        t.skip('running as root without setpriv (util-linux): root reads a mode-000 key, so EACCES cannot happen');
        return;
      }
      const child = spawn('setpriv', ['--bounding-set=-dac_override,-dac_read_search', '--', process.execPath, CLI], {
        cwd: ws.dir, env: childEnv(ws.dir), stdio: ['ignore', 'pipe', 'pipe'],
      });
      r = await collect(child, 120_000);
    } else {
      r = await ws.run();
    }
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.equal(r.stderr, `ipi-pull: SFTP_KEY ${key}: cannot read it (EACCES)\n`);
    assert.equal(r.stdout, '');
    assert.deepEqual(listDir(ws.dir).filter((n) => !['.env', '.ssh', 'keys'].includes(n)), [], 'nothing created');
  });

  test('a command line yargs cannot parse: one line (and JSON with --json), exit 2, and a password on it is not repeated', async () => {
    const { ws } = setup({});
    // With --json a wrapper parsing stdout gets the failure as JSON too.
    const json = await ws.run(['--json', '--bogus']);
    assert.equal(json.code, 2);
    assert.deepEqual(JSON.parse(json.stdout), { outcome: 'usage', exitCode: 2, error: 'Unknown argument: bogus' });
    for (const args of [['status', '--json', '--sftp-port', 'abc'], ['mark', 'IPI_20250101.dat', '--json', '--sftp-port', 'abc']]) {
      const r = await ws.run(args);
      assert.equal(r.code, 2, args.join(' '));
      assert.match((JSON.parse(r.stdout) as { error: string }).error, /^SFTP_PORT \(--sftp-port\): 'abc' is not a whole number/);
    }
    const dashes = await ws.run(['--', '--once']);
    assert.equal(dashes.code, 2);
    assert.match(dashes.stderr, /^ipi-pull: nothing after '--' is read, so it would be ignored: --once \(see 'ipi-pull --help'\)\n$/);
    for (const args of [['--sftp-pass', 'my', 'Sp4ceWord9'], ['--sftp-pass=', 'Sp4ceWord9'], ['-sftp-pass', 'Sp4ceWord9']]) {
      const r = await ws.run(args);
      assert.equal(r.code, 2, args.join(' '));
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /^ipi-pull: Unknown arguments?: .*\(see 'ipi-pull --help'\)$/m);
      assert.ok(!(r.stdout + r.stderr).includes('Sp4ceWord9'), r.stderr);
    }
  });

  test('a missing remote folder is permanent: exit 1, named, not retried', async () => {
    const { ws } = setup({}, { SFTP_DIR: `${suite.server.remoteDir}/no-such-folder`, LOG_LEVEL: 'debug' });
    const r = await ws.run();
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /SFTP_DIR .*no-such-folder: no such folder/);
    assert.doesNotMatch(r.stdout + r.stderr, /retrying/);
    // At debug level LOG_FILE also gets the stacks down the cause chain (what sftpmonitor logged).
    assert.match(fs.readFileSync(ws.logFile, 'utf8'), /DEBUG ipi-pull\[\d+\] PermanentError: SFTP_DIR .*no such folder.*\n\s+at [^\n]+\n[\s\S]*caused by: RemoteMissingError: listing /);
  });

  test('a live lock: exit 3 naming the holder; a dead run\'s lock is taken over', async () => {
    const { ws } = setup({ 'IPI_20241201.dat': testBytes(10, 12) });
    const lockFile = `${ws.markerFile}.lock`;
    const since = new Date().toISOString();
    fs.writeFileSync(lockFile, JSON.stringify({ pid: process.pid, host: os.hostname(), since, token: 'x' }));
    const held = await ws.run();
    assert.equal(held.code, 3);
    assert.ok(held.stderr.includes(`pid ${process.pid} on ${os.hostname()} since ${since}`), held.stderr);
    assert.equal(ws.marker(), null);
    assert.ok(fs.existsSync(lockFile), 'the holder keeps its lock');
    assert.ok(!fs.existsSync(ws.localDir) && !fs.existsSync(ws.serverDir), 'a run that finds the lock held creates nothing');

    fs.writeFileSync(lockFile, JSON.stringify({ pid: 2 ** 22 + 12345, host: os.hostname(), since, token: 'y' }));
    const taken = await ws.run();
    assert.equal(taken.code, 0, taken.stderr);
    assert.match(taken.stderr, /took over a stale lock/);
    assert.equal(ws.marker(), 'IPI_20241201.dat');
    assert.ok(!fs.existsSync(lockFile), 'released at the end');
  });

  test('a lock from another host (a container that died) is taken over once untouched for 10 min; while it is touched, exit 3 says so', async () => {
    const { ws } = setup({ 'IPI_20241203.dat': testBytes(10, 14) });
    const lockFile = `${ws.markerFile}.lock`;
    const since = new Date(Date.now() - 3_600_000).toISOString();
    fs.writeFileSync(lockFile, JSON.stringify({ pid: 1, host: 'job-7f9c2', since, token: 'c', refreshSeconds: 30 }));
    const held = await ws.run();
    assert.equal(held.code, 3, held.stderr);
    assert.ok(held.stderr.includes(`pid 1 on job-7f9c2 since ${since}`), held.stderr);
    assert.match(held.stderr, /a later run takes the lock over once it has been untouched for 10 min/);
    assert.equal(ws.marker(), null);

    const silent = new Date(Date.now() - 11 * 60_000);
    fs.utimesSync(lockFile, silent, silent);
    const taken = await ws.run();
    assert.equal(taken.code, 0, taken.stderr);
    assert.match(taken.stderr, /took over a stale lock left by pid 1 on job-7f9c2 .*: untouched for 11 min, that run is gone/);
    assert.equal(ws.marker(), 'IPI_20241203.dat');
    assert.ok(!fs.existsSync(lockFile), 'released at the end');
  });

  test('two runs started together: one pulls, the other exits 3; the file is delivered once', async () => {
    const { ws } = setup({ 'IPI_20241202.dat': testBytes(6 * 1024 * 1024, 13) });
    const [a, b] = await Promise.all([ws.run(), ws.run()]);
    assert.deepEqual([a.code, b.code].sort(), [0, 3], a.stderr + b.stderr);
    assert.equal(ws.history().length, 1);
  });
});

describe('signals', () => {
  test('SIGTERM while the connection is being made (logged in, SFTP not started yet) ends the run at once (exit 130) and releases the lock', async () => {
    const stuck = await startEmbeddedServer({ ignoreSftpRequest: true });
    try {
      // CONNECT_TIMEOUT far away: only the stop can end this wait.
      const ws = suite.track(makeWorkspace(stuck, { extra: { CONNECT_TIMEOUT: '120' } }));
      const child = ws.spawn();
      const done = collect(child, 20_000);
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline && !(fs.existsSync(ws.logFile) && fs.readFileSync(ws.logFile, 'utf8').includes('connecting to'))) {
        await new Promise((r) => setTimeout(r, 20));
      }
      // Time to log in and ask for SFTP (loopback takes milliseconds).
      await new Promise((r) => setTimeout(r, 500));
      const stoppedAt = Date.now();
      child.kill('SIGTERM');
      const r = await done;
      assert.equal(r.code, 130, r.stderr);
      assert.ok(Date.now() - stoppedAt < 3000, `took ${Date.now() - stoppedAt} ms after SIGTERM`);
      const errors = r.stderr.split('\n').filter((l) => /ERROR:/.test(l));
      assert.equal(errors.length, 1, r.stderr);
      assert.match(errors[0]!, /stopped by SIGTERM/);
      assert.doesNotMatch(r.stderr, /retrying/);
      assert.ok(!fs.existsSync(`${ws.markerFile}.lock`), 'lock released');
    } finally {
      await stuck.stop();
    }
  });

  test('SIGTERM during a stalled transfer ends the run at once (exit 130), keeps the partial and releases the lock; the next run resumes', async () => {
    const size = 12 * 1024 * 1024;
    const data = testBytes(size, 77);
    const { ws } = setup({ 'IPI_20250901.dat': data });
    const proxy = await startFaultProxy(suite.server.port);
    try {
      proxy.throttle(3 * 1024 * 1024);
      const child = ws.spawn(['--sftp-port', String(proxy.port), '--sftp-host-key', suite.server.hostKeyFingerprint, '--data-timeout', '120']);
      const done = collect(child, 60_000);
      const part = path.join(ws.localDir, 'IPI_20250901.dat.part');
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline && (fs.statSync(part, { throwIfNoEntry: false })?.size ?? 0) < 2 * 1024 * 1024) {
        await new Promise((r) => setTimeout(r, 50));
      }
      proxy.stall();
      await new Promise((r) => setTimeout(r, 300));
      const stoppedAt = Date.now();
      child.kill('SIGTERM');
      const r = await done;
      assert.equal(r.code, 130, r.stderr);
      assert.ok(Date.now() - stoppedAt < 5000, 'did not wait for DATA_TIMEOUT');
      assert.match(r.stderr, /SIGTERM received/);
      const kept = fs.statSync(part).size;
      assert.ok(kept > 0 && kept < size && kept % (2 * 1024 * 1024) === 0, `partial kept at a chunk boundary: ${kept}`);
      assert.equal(ws.marker(), null);
      assert.ok(!fs.existsSync(`${ws.markerFile}.lock`), 'lock released');
      assert.deepEqual(listDir(ws.serverDir), []);

      const again = await ws.run();
      assert.equal(again.code, 0, again.stderr);
      assert.equal(sha256File(path.join(ws.serverDir, 'IPI_20250901.dat')), sha256(data));
      assert.equal(ws.history()[0]!.resumedFrom, kept);
    } finally {
      await proxy.stop();
    }
  });
});
