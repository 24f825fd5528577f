/**
 * ipi-push through the built CLI against a real OpenSSH sshd (or the embedded server where
 * sshd is not installed: the helper says so), with the fault proxy for a server that goes away.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test, type TestContext } from 'node:test';

import { childEnv, collect, makeWorkspace, sha256, sha256File, testBytes, type CliResult, type Workspace } from './helpers/cli.js';
import { startFaultProxy } from './helpers/fault-proxy.js';
import { LockHeldError } from '../../src/errors.js';
import { lockFileFor } from '../../src/lock.js';
import { loadConfig } from '../../src/config/load.js';
import { silentLogger, type Logger } from '../../src/log.js';
import { noProgress } from '../../src/progress.js';
import { runPush } from '../../src/push/run.js';
import { scanDir } from '../../src/push/scan.js';
import type { startWatcher } from '../../src/push/watch.js';
import type { PushSummary } from '../../src/push/summary.js';
import { journalFileFor, stateFromTexts } from '../../src/push/state.js';
import { SftpSession } from '../../src/sftp/session.js';
import { startEmbeddedServer } from './helpers/embedded-server.js';
import { startTestServer, type SftpServerHandle } from './helpers/server.js';
import { startSshd, sshdAvailable } from './helpers/sshd.js';
import { chattr } from './helpers/util.js';

const PUSH_CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/bin/ipi-push.js');

let server: SftpServerHandle;
const cleanups: Array<() => unknown> = [];
let seq = 0;

before(async () => {
  server = await startTestServer();
  process.stderr.write(`e2e push: using ${server.kind} server on port ${server.port}\n`);
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
  await server?.stop();
});

interface PushWs {
  ws: Workspace;
  watchDir: string;
  /** Local folder of the server that SFTP_UPLOAD_DIR maps to. */
  remoteRoot: string;
  stateFile: string;
  run(args?: string[], timeoutMs?: number): Promise<CliResult>;
  spawn(args?: string[]): ChildProcess;
  put(rel: string, data: Buffer | string): string;
  log(): string;
  state(): {
    uploaded: Record<string, { sha256: string; verified: string; size: number }>; failed: Record<string, unknown>; inProgress: unknown;
    folders?: Record<string, { remotePath: string }>;
  };
}

function setup(extra: Record<string, string> = {}, srv: SftpServerHandle = server): PushWs {
  const folder = `push${++seq}`;
  const remoteRoot = path.join(srv.root, folder);
  const ws = makeWorkspace(srv, {
    extra: {
      WATCH_DIR: './outgoing', SFTP_UPLOAD_DIR: `${srv.remoteDir}/${folder}`, STATE_FILE: './ipi-push-state.json',
      PUSH_SETTLE: '0.5', RETRY_DELAYS: '0.3',
      // Through the fault proxy the port differs from known_hosts' entry: pin the key instead.
      ...(extra.SFTP_PORT ? { SFTP_HOST_KEY: srv.hostKeyFingerprint } : {}),
      ...extra,
    },
  });
  cleanups.push(() => ws.cleanup());
  const watchDir = path.join(ws.dir, 'outgoing');
  fs.mkdirSync(watchDir, { recursive: true });
  const spawnIt = (args: string[] = []) => spawn(process.execPath, [PUSH_CLI, ...args], { cwd: ws.dir, env: childEnv(ws.dir), stdio: ['ignore', 'pipe', 'pipe'] });
  return {
    ws, watchDir, remoteRoot, stateFile: path.join(ws.dir, 'ipi-push-state.json'),
    run: (args = [], timeoutMs = 60_000) => collect(spawnIt(args), timeoutMs),
    spawn: spawnIt,
    put(rel, data) {
      const abs = path.join(watchDir, rel);
      fs.mkdirSync(path.dirname(abs), { recursive: true });
      fs.writeFileSync(abs, data);
      return abs;
    },
    log: () => fs.readFileSync(ws.logFile, 'utf8'),
    // As a reader sees it: STATE_FILE with its journal (a --watch run still under way has not folded it in).
    state: () => {
      const file = path.join(ws.dir, 'ipi-push-state.json');
      const read = (f: string) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : null);
      return stateFromTexts(read(file), read(journalFileFor(file)), file);
    },
  };
}

async function waitFor(cond: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const exists = (p: string) => fs.existsSync(p);
/** Every file under a folder, relative, '/' separated. */
function tree(dir: string): string[] {
  if (!exists(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((r) => fs.statSync(path.join(dir, r)).isFile()).map((r) => r.split(path.sep).join('/')).sort();
}
/** Every folder under a folder, relative, '/' separated. */
function folders(dir: string): string[] {
  if (!exists(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((r) => fs.lstatSync(path.join(dir, r)).isDirectory()).map((r) => r.split(path.sep).join('/')).sort();
}
const count = (text: string, re: RegExp) => (text.match(new RegExp(re.source, 'g')) ?? []).length;

/** Start `ipi-push --watch` and collect its output; stop() sends SIGTERM and waits (bounded). */
function watchProcess(p: PushWs, args: string[] = []) {
  const child = p.spawn(['--watch', ...args]);
  const done = collect(child, 120_000);
  return {
    child,
    done,
    async stop(): Promise<CliResult> {
      child.kill('SIGTERM');
      return done;
    },
  };
}

describe('ipi-push --once', () => {
  test('uploads new files identically (SHA-256), mirrors nested folders, keeps mtime, skips ignored names; a second run uploads nothing', async () => {
    const p = setup();
    const files: Record<string, Buffer> = {
      'IPI_20240101.dat': testBytes(3 * 1024 * 1024 + 7, 1),
      'site-a/2024/01/IPI_20240102.dat': testBytes(200_000, 2),
      'empty.dat': Buffer.alloc(0),
    };
    for (const [rel, data] of Object.entries(files)) p.put(rel, data);
    p.put('half.tmp', 'a temporary name');
    p.put('.hidden', 'hidden');
    p.put('report.part', 'partial');
    const old = new Date('2024-01-02T03:04:05Z');
    fs.utimesSync(path.join(p.watchDir, 'IPI_20240101.dat'), old, old);

    const r = await p.run(['--once', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    assert.equal(summary.outcome, 'uploaded');
    assert.deepEqual(tree(p.remoteRoot), Object.keys(files).sort(), 'exactly the files, no temporaries, nothing ignored');
    for (const [rel, data] of Object.entries(files)) {
      assert.equal(sha256File(path.join(p.remoteRoot, rel)), sha256(data), rel);
      assert.equal(p.state().uploaded[rel]!.sha256, sha256(data));
    }
    assert.equal(fs.statSync(path.join(p.remoteRoot, 'IPI_20240101.dat')).mtimeMs, old.getTime(), 'mtime preserved');
    assert.equal(p.state().uploaded['IPI_20240101.dat']!.verified, server.kind === 'openssh' ? 'sha256' : 'size');
    if (server.kind === 'openssh') assert.match(p.log(), /size and SHA-256 checked on the server/);
    assert.equal(summary.files[0].path, 'IPI_20240101.dat', 'oldest first');

    // A restart uploads nothing twice: same inodes on the server, "nothing new".
    const inodes = Object.keys(files).map((rel) => fs.statSync(path.join(p.remoteRoot, rel)).ino);
    const again = await p.run(['--once', '--json']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout).outcome, 'nothing-new');
    assert.deepEqual(Object.keys(files).map((rel) => fs.statSync(path.join(p.remoteRoot, rel)).ino), inodes);

    // A changed file goes again; the unchanged ones do not.
    p.put('site-a/2024/01/IPI_20240102.dat', testBytes(1000, 3));
    const third = await p.run(['--once', '--json']);
    assert.deepEqual(JSON.parse(third.stdout).files.map((f: { path: string }) => f.path), ['site-a/2024/01/IPI_20240102.dat']);
    assert.equal(sha256File(path.join(p.remoteRoot, 'site-a/2024/01/IPI_20240102.dat')), sha256(testBytes(1000, 3)));
  });

  test('new folders are made on the server, empty ones too; not ignored ones, nor links; recorded, so later runs do not ask; never removed there', async () => {
    const p = setup();
    const mk = (rel: string) => fs.mkdirSync(path.join(p.watchDir, rel), { recursive: true });
    mk('empty');
    mk('site/2024/01');
    mk('.cache/x');
    mk('drafts.tmp/inner');
    const outside = path.join(p.ws.dir, 'private');
    fs.mkdirSync(path.join(outside, 'inner'), { recursive: true });
    fs.symlinkSync(outside, path.join(p.watchDir, 'leakdir'));
    fs.symlinkSync(path.join(p.watchDir, 'site'), path.join(p.watchDir, 'alias'));
    p.put('site/a.dat', 'A');
    const expected = ['empty', 'site', 'site/2024', 'site/2024/01'];

    const dry = await p.run(['--dry-run', '--json']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual(JSON.parse(dry.stdout).wouldCreateFolders, expected);
    assert.ok(!exists(p.remoteRoot), 'a dry run makes nothing');

    const r = await p.run(['--once', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).folders, expected);
    assert.deepEqual(folders(p.remoteRoot), expected, 'exactly these folders: nothing ignored, no link followed');
    assert.deepEqual(tree(p.remoteRoot), ['site/a.dat']);
    assert.deepEqual(Object.keys(p.state().folders!).sort(), expected);
    assert.match(p.log(), /created the folder "empty" on the server: .*\/empty/);

    // Recorded: the next run does not ask the server about them (a folder removed there by hand
    // is not made again; a file put into it would make it).
    fs.rmdirSync(path.join(p.remoteRoot, 'empty'));
    const again = await p.run(['--once', '--json']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout).outcome, 'nothing-new');
    assert.ok(!exists(path.join(p.remoteRoot, 'empty')));
    const st = await p.run(['status', '--json']);
    assert.deepEqual(JSON.parse(st.stdout).pendingFolders, []);

    // A folder removed locally is forgotten (never removed on the server); made again, it is mirrored again.
    fs.rmSync(path.join(p.watchDir, 'site'), { recursive: true });
    fs.rmdirSync(path.join(p.watchDir, 'empty'));
    mk('other');
    assert.equal((await p.run(['--once'])).code, 0);
    assert.deepEqual(Object.keys(p.state().folders!).sort(), ['other']);
    assert.ok(exists(path.join(p.remoteRoot, 'site/2024/01')) && exists(path.join(p.remoteRoot, 'site/a.dat')), 'nothing removed on the server');
    mk('empty');
    const st2 = await p.run(['status', '--json']);
    assert.deepEqual(JSON.parse(st2.stdout).pendingFolders, ['empty']);
    assert.equal((await p.run(['--once'])).code, 0);
    assert.ok(fs.statSync(path.join(p.remoteRoot, 'empty')).isDirectory());
  });

  test('a folder the server cannot make (a file holds its name) is reported with exit 1; the other folders and files still go', async () => {
    const p = setup();
    fs.mkdirSync(p.remoteRoot, { recursive: true });
    fs.writeFileSync(path.join(p.remoteRoot, 'clash'), 'a file on the server');
    fs.mkdirSync(path.join(p.watchDir, 'clash'));
    fs.mkdirSync(path.join(p.watchDir, 'fine'));
    p.put('x.dat', 'X');
    const r = await p.run(['--once', '--json']);
    assert.equal(r.code, 1, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(out.failed.map((f: { rel: string }) => f.rel), ['clash/']);
    assert.match(out.failed[0].error, /the folder "clash" of WATCH_DIR: creating remote folder .*\/clash: .*\/clash is a file/);
    assert.deepEqual(out.folders, ['fine']);
    assert.ok(fs.statSync(path.join(p.remoteRoot, 'fine')).isDirectory());
    assert.equal(fs.readFileSync(path.join(p.remoteRoot, 'x.dat'), 'utf8'), 'X');
    assert.deepEqual(Object.keys(p.state().folders!), ['fine']);
  });

  test('a file that vanishes between the scan and its upload is no failure: nothing recorded as failed, nothing waiting', async () => {
    const p = setup({ SFTP_HOST_KEY: server.hostKeyFingerprint, PUSH_SETTLE: '0' });
    p.put('stays.dat', 'uploaded');
    const gone = p.put('gone.dat', 'deleted by its producer once scanned');
    const lines: string[] = [];
    const log: Logger = {
      error: (m) => lines.push(m), warn: (m) => lines.push(m), debug: (m) => lines.push(m), record: () => {},
      info: (m) => {
        lines.push(m);
        // The scan is behind the run now: the producer takes the file back before its upload.
        if (m.startsWith('connected to ')) fs.rmSync(gone, { force: true });
      },
    };
    const config = loadConfig({ envFile: path.join(p.ws.dir, '.env'), cwd: p.ws.dir, env: {}, tool: 'push' });
    const summary = await runPush(config, { mode: 'once', dryRun: false, acceptNewHostKey: false, retryFailed: false, signal: new AbortController().signal },
      { log, progress: noProgress });
    assert.ok(!exists(gone));
    assert.deepEqual(summary.failed, [], lines.join('\n'));
    assert.deepEqual([summary.waiting, summary.pending], [[], []]);
    assert.deepEqual(summary.uploaded.map((u) => u.rel), ['stays.dat']);
    assert.deepEqual(p.state().failed, {});
    assert.ok(lines.some((l) => /^"gone\.dat": gone before its upload: not a failure/.test(l)), lines.join('\n'));
  });

  test('--json output of nearly a megabyte reaches a pipe whole: the process waits for stdout before it exits', async () => {
    const p = setup();
    // Long paths make a large summary from few files: 15 folders and names of 200 characters.
    const deep = Array.from({ length: 15 }, (_, i) => `${String(i).padStart(3, '0')}${'d'.repeat(197)}`).join('/');
    const n = 300;
    for (let i = 0; i < n; i++) p.put(`${deep}/${String(i).padStart(4, '0')}${'f'.repeat(196)}`, 'x');
    const r = await p.run(['--dry-run', '--json']);
    assert.equal(r.code, 0, r.stderr.slice(-2000));
    assert.ok(r.stdout.length > 900_000, `a large summary (${r.stdout.length} bytes)`);
    const summary = JSON.parse(r.stdout);
    assert.equal(summary.outcome, 'dry-run');
    assert.equal(summary.wouldUpload.length, n);
  });

  test('a corrupt state file stops the run with exit 2 and the recovery; following it uploads only what the server lacks', async () => {
    const p = setup();
    p.put('a.dat', testBytes(50_000, 4));
    assert.equal((await p.run(['--once'])).code, 0);
    const ino = fs.statSync(path.join(p.remoteRoot, 'a.dat')).ino;
    fs.writeFileSync(p.stateFile, '{"version":1,"uploaded":{"a.dat":{"size":5');
    p.put('b.dat', testBytes(1000, 5));
    const r = await p.run(['--once']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /STATE_FILE .* is damaged: not valid JSON/);
    assert.match(r.stderr, /mv '.*ipi-push-state\.json' '.*ipi-push-state\.json\.corrupt'/);
    assert.ok(!exists(path.join(p.remoteRoot, 'b.dat')), 'nothing uploaded');
    assert.equal(fs.readFileSync(p.stateFile, 'utf8'), '{"version":1,"uploaded":{"a.dat":{"size":5', 'the damaged state is not overwritten');

    fs.renameSync(p.stateFile, `${p.stateFile}.corrupt`);
    const rec = await p.run(['--once']);
    assert.equal(rec.code, 0, rec.stderr);
    assert.match(p.log(), /"a\.dat": already on the server .*not sent again/);
    assert.equal(fs.statSync(path.join(p.remoteRoot, 'a.dat')).ino, ino, 'a.dat was not uploaded again');
    assert.equal(sha256File(path.join(p.remoteRoot, 'b.dat')), sha256(testBytes(1000, 5)));
    assert.deepEqual(Object.keys(p.state().uploaded).sort(), ['a.dat', 'b.dat']);
  });

  test('hostile local names: links out of WATCH_DIR are not followed; a link inside it is uploaded as a file', async () => {
    const p = setup();
    const outside = path.join(p.ws.dir, 'private');
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, 'secret.txt'), 'do not upload');
    p.put('real.dat', 'real');
    fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(p.watchDir, 'leak.txt'));
    fs.symlinkSync(outside, path.join(p.watchDir, 'leakdir'));
    fs.symlinkSync('../private/secret.txt', path.join(p.watchDir, 'relative-leak.txt'));
    fs.symlinkSync('real.dat', path.join(p.watchDir, 'alias.dat'));
    const r = await p.run(['--once']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(tree(p.remoteRoot), ['alias.dat', 'real.dat']);
    assert.match(p.log(), /skipping "leak\.txt": a symbolic link leading outside WATCH_DIR/);
    assert.match(p.log(), /skipping "leakdir": a symbolic link leading outside WATCH_DIR/);
    assert.match(p.log(), /skipping "relative-leak\.txt"/);
    assert.ok(!JSON.stringify(p.state()).includes('secret'));
  });

  test('SIGKILL mid-upload, then a restart: the upload resumes from the last checkpoint of the acknowledged prefix and the file is identical', async () => {
    const proxy = await startFaultProxy(server.port);
    cleanups.push(() => proxy.stop());
    // Acknowledgements slowed down through the proxy so the kill lands mid-file.
    const p = setup({ SFTP_PORT: String(proxy.port), CHUNK_SIZE: '256KiB', CHUNKS_IN_FLIGHT: '2' });
    const data = testBytes(24 * 1024 * 1024 + 5, 6);
    p.put('big.dat', data);
    const temp = path.join(p.remoteRoot, '.big.dat.ipi-push-part');
    proxy.throttle(6000);
    const child = p.spawn(['--once']);
    const done = collect(child, 60_000);
    await waitFor(() => exists(temp) && fs.statSync(temp).size >= 2 * 1024 * 1024, 40_000, () => `the temporary to reach 2 MiB (${exists(temp) ? fs.statSync(temp).size : 'absent'})`);
    child.kill('SIGKILL');
    await done;
    proxy.throttle(null);
    const have = fs.statSync(temp).size;
    assert.ok(have < data.length, 'killed before the end');
    assert.ok(!exists(path.join(p.remoteRoot, 'big.dat')), 'consumers never see half a file');
    // Checkpoints are at most 100 ms apart: the last one is behind the server's size by what was
    // in flight and what was acknowledged since, and never past it.
    const checkpoint = p.state().inProgress as { rel: string; ackedTo: number };
    assert.equal(checkpoint.rel, 'big.dat');
    assert.ok(checkpoint.ackedTo > 0 && checkpoint.ackedTo <= have, `checkpoint at ${checkpoint.ackedTo}, the server had ${have}`);

    const before = proxy.bytesToServer;
    const r = await p.run(['--once', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const sent = proxy.bytesToServer - before;
    const f = JSON.parse(r.stdout).files[0];
    assert.equal(f.resumedFrom, checkpoint.ackedTo, 'resumed at the last checkpoint');
    assert.equal(f.bytesSent, data.length - f.resumedFrom);
    assert.ok(sent < (data.length - f.resumedFrom) * 1.05, `sent ${sent} bytes on the wire; the rest was ${data.length - f.resumedFrom}`);
    assert.match(p.log(), /resuming the upload at byte \d+ of 25165829/);
    assert.equal(sha256File(path.join(p.remoteRoot, 'big.dat')), sha256(data));
    assert.ok(!exists(temp));
    assert.equal(p.state().inProgress, null);
  });

  test('a WRITE refused mid-file while later ones succeed (a hole on the server): the retry resumes before the hole, cutting the temporary back', async () => {
    const MiB = 1024 * 1024;
    const hole = MiB + 100;
    const faulty = await startEmbeddedServer({ failWrite: { name: '.holey.dat.ipi-push-part', offset: hole } });
    cleanups.push(() => faulty.stop());
    const p = setup({ CHUNK_SIZE: '256KiB', CHUNKS_IN_FLIGHT: '4', VERIFY: 'size' }, faulty);
    const data = testBytes(3 * MiB + 11, 31);
    p.put('holey.dat', data);
    const r = await p.run(['--once', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(p.log(), /the server answered "Failure"/, 'the refused write failed the first attempt');
    const m = /only the first (\d+) acknowledged .*: cut back to byte \1; resuming the upload at byte (\d+)/.exec(p.log());
    assert.ok(m, `the temporary was cut back to the acknowledged prefix:\n${p.log()}`);
    assert.ok(Number(m[2]) <= hole, `resumed at ${m[2]}, at or before the hole at ${hole}`);
    assert.equal(JSON.parse(r.stdout).files[0].resumedFrom, Number(m[2]));
    assert.equal(sha256File(path.join(p.remoteRoot, 'holey.dat')), sha256(data), 'the published file has no hole');
  });

  test('the same hole, then a SIGKILL before the refusal is heard: the checkpointed prefix keeps the resume before the hole', async () => {
    const MiB = 1024 * 1024;
    const hole = MiB + 100;
    const faulty = await startEmbeddedServer({ failWrite: { name: '.killed.dat.ipi-push-part', offset: hole } });
    cleanups.push(() => faulty.stop());
    const proxy = await startFaultProxy(faulty.port);
    cleanups.push(() => proxy.stop());
    const p = setup({ SFTP_PORT: String(proxy.port), SFTP_HOST_KEY: faulty.hostKeyFingerprint, CHUNK_SIZE: '256KiB', CHUNKS_IN_FLIGHT: '4', VERIFY: 'size' }, faulty);
    const data = testBytes(3 * MiB + 17, 34);
    p.put('killed.dat', data);
    const temp = path.join(p.remoteRoot, '.killed.dat.ipi-push-part');
    // The server's answers crawl back, so the server writes past the hole (the refused WRITE)
    // well before the client hears of the refusal: what a link cut or a kill leaves behind.
    proxy.throttle(1500);
    const child = p.spawn(['--once']);
    const done = collect(child, 60_000);
    await waitFor(() => exists(temp) && fs.statSync(temp).size >= hole + 300 * 1024, 40_000,
      () => `the server to hold data past the hole (${exists(temp) ? fs.statSync(temp).size : 'absent'})`);
    child.kill('SIGKILL');
    await done;
    proxy.throttle(null);
    assert.ok(fs.statSync(temp).size > hole, 'data past the hole on the server');
    const rec = p.state().inProgress as { rel: string; ackedTo?: number };
    assert.ok(rec.rel === 'killed.dat' && typeof rec.ackedTo === 'number' && rec.ackedTo <= hole, `the state bounds the resume point: ${JSON.stringify(rec)}`);

    const again = await p.run(['--once', '--json']);
    assert.equal(again.code, 0, again.stderr);
    const resumedFrom = JSON.parse(again.stdout).files[0].resumedFrom as number;
    assert.ok(resumedFrom <= hole, `resumed at ${resumedFrom}, at or before the hole at ${hole}`);
    assert.match(p.log(), new RegExp(`only the first ${resumedFrom} acknowledged in order .*: cut back to byte ${resumedFrom}`));
    assert.equal(sha256File(path.join(p.remoteRoot, 'killed.dat')), sha256(data), 'the published file has no hole');
  });

  test('SftpSession.truncate cuts a remote file open for writing (what a resume before a hole relies on)', async () => {
    const p = setup();
    fs.mkdirSync(p.remoteRoot, { recursive: true });
    fs.writeFileSync(path.join(p.remoteRoot, 'cut.dat'), testBytes(100_000, 33));
    const session = await SftpSession.open({
      host: server.host, port: server.port, user: server.user, key: server.kind === 'openssh' ? fs.readFileSync(server.clientKeyPath) : undefined,
      password: server.kind === 'embedded' ? server.password : undefined, pinnedHostKeys: [server.hostKeyFingerprint],
      knownHostsFile: path.join(p.ws.dir, 'no_known_hosts'), acceptNewHostKey: false, connectTimeoutMs: 10_000, dataTimeoutMs: 10_000,
      keepaliveIntervalMs: 0, keepaliveCountMax: 3, rekeyBytes: 0, log: silentLogger,
    });
    try {
      const h = await session.openWrite(`${p.ws.env.SFTP_UPLOAD_DIR}/cut.dat`, 'r+');
      await session.truncate(h, 40_000);
      await session.close(h);
    } finally {
      await session.end();
    }
    assert.ok(fs.readFileSync(path.join(p.remoteRoot, 'cut.dat')).equals(testBytes(100_000, 33).subarray(0, 40_000)));
  });

  test('the same hole, then the run gives up and a later run resumes: the acknowledged prefix is kept in the state', async () => {
    const MiB = 1024 * 1024;
    const hole = MiB + 100;
    const faulty = await startEmbeddedServer({ failWrite: { name: '.later.dat.ipi-push-part', offset: hole } });
    cleanups.push(() => faulty.stop());
    const p = setup({ CHUNK_SIZE: '256KiB', CHUNKS_IN_FLIGHT: '4', VERIFY: 'size', RETRIES: '0', RETRY_DELAYS: '0.1' }, faulty);
    const data = testBytes(3 * MiB + 13, 32);
    p.put('later.dat', data);
    const first = await p.run(['--once']);
    assert.equal(first.code, 1, first.stderr);
    const temp = path.join(p.remoteRoot, '.later.dat.ipi-push-part');
    const rec = p.state().inProgress as { rel: string; ackedTo?: number };
    assert.equal(rec.rel, 'later.dat');
    assert.ok(typeof rec.ackedTo === 'number' && rec.ackedTo <= hole, `the state bounds the resume point: ${JSON.stringify(rec)}`);
    assert.ok(fs.statSync(temp).size > hole, `the server holds data past the hole (${fs.statSync(temp).size} bytes)`);
    const st = await p.run(['status']);
    assert.match(st.stdout, new RegExp(`cut short: later\\.dat .*at most from byte ${rec.ackedTo}, the end of what the server acknowledged`));

    await new Promise((r) => setTimeout(r, 300)); // RETRY_DELAYS: the file's next try falls due
    const again = await p.run(['--once', '--json']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout).files[0].resumedFrom, rec.ackedTo);
    assert.equal(sha256File(path.join(p.remoteRoot, 'later.dat')), sha256(data), 'the published file has no hole');
    assert.equal(p.state().inProgress, null);
  });

  test('small files go FILES_IN_FLIGHT at a time over a slow link, each identical and recorded once, leaving no in-progress record; FILES_IN_FLIGHT=1 sends them one after another', async () => {
    const proxy = await startFaultProxy(server.port);
    cleanups.push(() => proxy.stop());
    proxy.latency(10);
    for (const inFlight of [4, 1]) {
      const p = setup({ SFTP_PORT: String(proxy.port), PUSH_SETTLE: '0', VERIFY: 'size', FILES_IN_FLIGHT: String(inFlight) });
      const names = Array.from({ length: 12 }, (_, i) => `f${String(i).padStart(2, '0')}.dat`);
      const data = names.map((_, i) => testBytes(20_000 + i, 60 + i));
      names.forEach((rel, i) => p.put(rel, data[i]!));
      const r = await p.run(['--once', '--json']);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(tree(p.remoteRoot), names, 'every file, no temporary left');
      names.forEach((rel, i) => assert.equal(sha256File(path.join(p.remoteRoot, rel)), sha256(data[i]!), rel));
      const history = fs.readFileSync(path.join(p.ws.dir, 'ipi-push-state.history.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).path);
      assert.deepEqual([...history].sort(), names, 'one history line per file');
      assert.deepEqual(Object.keys(p.state().uploaded).sort(), names);
      assert.equal(p.state().inProgress, null, 'a file of one chunk has no resume point to record');
      // The order of the log lines follows the protocol, not the clock: a file started beside
      // the first is opened (two round trips) long before the first is renamed (seven).
      const log = p.log();
      const at = (verb: string, rel: string) => log.indexOf(`${verb} "${rel}"`);
      if (inFlight > 1) {
        assert.ok(at('uploading', 'f01.dat') < at('uploaded', 'f00.dat'), `FILES_IN_FLIGHT=${inFlight}: f01.dat starts before f00.dat is done`);
      } else {
        for (let i = 0; i + 1 < names.length; i++) assert.ok(at('uploaded', names[i]!) < at('uploading', names[i + 1]!), `${names[i]} is done before ${names[i + 1]} starts`);
      }
    }
  });

  test('a server that allows two open files: the refusal is taken as its limit, said once; every file goes in one run, no retries, no warnings', async () => {
    const limited = await startEmbeddedServer({ maxHandles: 2 });
    cleanups.push(() => limited.stop());
    // The default FILES_IN_FLIGHT (8); retry delays long enough to show.
    const p = setup({ VERIFY: 'size', PUSH_SETTLE: '0', RETRY_DELAYS: '5' }, limited);
    const files = Array.from({ length: 20 }, (_, i) => ({ rel: `f${String(i).padStart(2, '0')}.dat`, data: testBytes(10_240, 2100 + i) }));
    for (const f of files) p.put(f.rel, f.data);
    const r = await p.run(['--once']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    for (const f of files) assert.equal(sha256File(path.join(p.remoteRoot, f.rel)), sha256(f.data), f.rel);
    const st = p.state();
    assert.equal(Object.keys(st.uploaded).length, files.length);
    assert.deepEqual(st.failed, {});
    // (The embedded server has no posix-rename@openssh.com, which is warned about, rightly.)
    const out = (r.stdout + r.stderr).split('\n').filter((l) => !/does not offer posix-rename/.test(l)).join('\n');
    assert.doesNotMatch(out, /WARN|ERROR|retry/, out);
    assert.equal(count(out, /taken as its limit on open files, so at most 2 at once on this connection/), 1, out);
  });

  test('the link cut while several small files are in flight: the retry sends what did not arrive; each file arrives identical, recorded once, no temporary left', async () => {
    const proxy = await startFaultProxy(server.port);
    cleanups.push(() => proxy.stop());
    proxy.latency(10);
    const p = setup({ SFTP_PORT: String(proxy.port), PUSH_SETTLE: '0', VERIFY: 'size', RETRY_DELAYS: '0.2' });
    const names = Array.from({ length: 24 }, (_, i) => `g${String(i).padStart(2, '0')}.dat`);
    const data = names.map((_, i) => testBytes(30_000 + i, 90 + i));
    names.forEach((rel, i) => p.put(rel, data[i]!));
    const child = p.spawn(['--once']);
    const done = collect(child, 60_000);
    const arrived = () => tree(p.remoteRoot).filter((r) => !r.startsWith('.')).length;
    await waitFor(() => arrived() >= 4, 30_000, () => `four files on the server (have ${arrived()})`);
    proxy.cutNow();
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(proxy.connections >= 2, 'the link was cut and opened again');
    assert.deepEqual(tree(p.remoteRoot), names, 'every file, no temporary left');
    names.forEach((rel, i) => assert.equal(sha256File(path.join(p.remoteRoot, rel)), sha256(data[i]!), rel));
    const history = fs.readFileSync(path.join(p.ws.dir, 'ipi-push-state.history.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).path);
    assert.deepEqual([...history].sort(), names, 'one history line per file: none lost, none twice');
    assert.deepEqual(p.state().failed, {});
    const log = p.log();
    assert.equal(count(log, /WARN .*lost.*retrying in/), 1, 'the lost link is reported once, not once per file in flight');
    assert.ok(count(log, /cut short by the lost connection/) >= 1, 'the files in flight say so, quietly');
  });

  test('AFTER_UPLOAD=archive moves the verified file out, keeping its path, never over an earlier archived one; delete removes it', async () => {
    const p = setup({ AFTER_UPLOAD: 'archive', ARCHIVE_DIR: './archive' });
    p.put('sub/a.dat', 'A');
    const r = await p.run(['--once']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(fs.readFileSync(path.join(p.ws.dir, 'archive/sub/a.dat'), 'utf8'), 'A');
    assert.ok(!exists(path.join(p.watchDir, 'sub/a.dat')));
    assert.equal(fs.readFileSync(path.join(p.remoteRoot, 'sub/a.dat'), 'utf8'), 'A');
    assert.deepEqual(Object.keys(p.state().uploaded), ['sub/a.dat']);
    // The next run forgets the archived file: the state holds what WATCH_DIR holds, not all history.
    p.put('c.dat', 'C');
    assert.equal((await p.run(['--once'])).code, 0);
    assert.deepEqual(Object.keys(p.state().uploaded), ['c.dat']);

    // The same path uploaded again (a new version): the archived earlier one is kept as it is.
    fs.mkdirSync(path.join(p.ws.dir, 'archive'), { recursive: true });
    fs.writeFileSync(path.join(p.ws.dir, 'archive/b.dat'), 'OLD');
    p.put('b.dat', 'NEW');
    assert.equal((await p.run(['--once'])).code, 0);
    assert.equal(fs.readFileSync(path.join(p.ws.dir, 'archive/b.dat'), 'utf8'), 'OLD', 'an archived file is never replaced');
    const stamped = fs.readdirSync(path.join(p.ws.dir, 'archive')).filter((n) => /^b\.\d{8}T\d{6}Z\.dat$/.test(n));
    assert.equal(stamped.length, 1, fs.readdirSync(path.join(p.ws.dir, 'archive')).join(', '));
    assert.equal(fs.readFileSync(path.join(p.ws.dir, 'archive', stamped[0]!), 'utf8'), 'NEW');
    assert.ok(!exists(path.join(p.watchDir, 'b.dat')));
    assert.match(p.log(), new RegExp(`"b\\.dat": moved to .*archive/${stamped[0]!.replace(/\./g, '\\.')} \\(AFTER_UPLOAD=archive\\): .*archive/b\\.dat holds an earlier archived file, kept as it is`));

    const d = setup({ AFTER_UPLOAD: 'delete' });
    d.put('b.dat', 'B');
    assert.equal((await d.run(['--once'])).code, 0);
    assert.ok(!exists(path.join(d.watchDir, 'b.dat')));
    assert.equal(fs.readFileSync(path.join(d.remoteRoot, 'b.dat'), 'utf8'), 'B');
  });

  test('AFTER_UPLOAD left undone (the state records the upload, the file is still here): a later run archives it without uploading it again', async () => {
    // The state a crash between "recorded as uploaded" and "archived" leaves: built by a run
    // with AFTER_UPLOAD=keep, after which the setting says archive.
    const p = setup({ AFTER_UPLOAD: 'keep' });
    p.put('sub/a.dat', 'A');
    p.put('b.dat', 'B');
    assert.equal((await p.run(['--once'])).code, 0);
    const historyFile = path.join(p.ws.dir, 'ipi-push-state.history.jsonl');
    const historyBefore = fs.readFileSync(historyFile, 'utf8');
    const inodes = ['sub/a.dat', 'b.dat'].map((rel) => fs.statSync(path.join(p.remoteRoot, rel)).ino);
    p.put('b.dat', 'B, edited since its upload');
    p.ws.env.AFTER_UPLOAD = 'archive';
    p.ws.env.ARCHIVE_DIR = './archive';
    p.ws.writeEnv();

    const dry = await p.run(['--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.ok(exists(path.join(p.watchDir, 'sub/a.dat')), 'a dry run moves nothing');

    const r = await p.run(['--once', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).files.map((f: { path: string }) => f.path), ['b.dat'], 'only the changed file is uploaded');
    assert.match(p.log(), /would finish AFTER_UPLOAD=archive for "sub\/a\.dat"/);
    assert.match(p.log(), /"sub\/a\.dat" was uploaded at .* and is unchanged since, but still here: finishing AFTER_UPLOAD=archive, not uploading it again/);
    assert.equal(fs.readFileSync(path.join(p.ws.dir, 'archive/sub/a.dat'), 'utf8'), 'A');
    assert.equal(fs.readFileSync(path.join(p.ws.dir, 'archive/b.dat'), 'utf8'), 'B, edited since its upload');
    assert.deepEqual(tree(p.watchDir), []);
    assert.equal(fs.statSync(path.join(p.remoteRoot, 'sub/a.dat')).ino, inodes[0], 'sub/a.dat not sent again');
    assert.notEqual(fs.statSync(path.join(p.remoteRoot, 'b.dat')).ino, inodes[1]);
    const added = fs.readFileSync(historyFile, 'utf8').slice(historyBefore.length).trim().split('\n').map((l) => JSON.parse(l).path);
    assert.deepEqual(added, ['b.dat'], 'the history gains the new upload only');
  });

  test('a move to ARCHIVE_DIR that fails leaves the file recorded as uploaded; the next run archives it, not uploading it again; --watch does too', async (t) => {
    const p = setup({ AFTER_UPLOAD: 'archive', ARCHIVE_DIR: './archive' });
    const archive = path.join(p.ws.dir, 'archive');
    fs.mkdirSync(archive);
    if (!chattr('+i', archive)) return t.skip('chattr +i refused on this filesystem: an ARCHIVE_DIR that refuses the move cannot be produced');
    p.put('sub/a.dat', 'A');
    try {
      const r = await p.run(['--once']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(p.log(), /"sub\/a\.dat": uploaded, but AFTER_UPLOAD=archive failed/);
    } finally {
      chattr('-i', archive);
    }
    assert.ok(exists(path.join(p.watchDir, 'sub/a.dat')));
    const ino = fs.statSync(path.join(p.remoteRoot, 'sub/a.dat')).ino;
    assert.equal((await p.run(['--once'])).code, 0);
    assert.equal(fs.readFileSync(path.join(archive, 'sub/a.dat'), 'utf8'), 'A');
    assert.ok(!exists(path.join(p.watchDir, 'sub/a.dat')));
    assert.equal(fs.statSync(path.join(p.remoteRoot, 'sub/a.dat')).ino, ino, 'not sent again');

    // The same in --watch, at its first scan, with AFTER_UPLOAD=delete.
    p.put('c.dat', 'C');
    p.ws.env.AFTER_UPLOAD = 'keep';
    p.ws.writeEnv();
    assert.equal((await p.run(['--once'])).code, 0);
    p.ws.env.AFTER_UPLOAD = 'delete';
    p.ws.writeEnv();
    const w = watchProcess(p);
    try {
      await waitFor(() => !exists(path.join(p.watchDir, 'c.dat')), 15_000, () => 'c.dat deleted by --watch');
    } finally {
      assert.equal((await w.stop()).code, 0);
    }
    assert.equal(count(p.log(), /uploaded "c\.dat"/), 1, 'uploaded once, by the keep run');
    assert.equal(fs.readFileSync(path.join(p.remoteRoot, 'c.dat'), 'utf8'), 'C');
  });

  test('the upload history keeps a fsynced line per uploaded file after the state forgets it (AFTER_UPLOAD=delete); status shows the last one', async () => {
    const p = setup({ AFTER_UPLOAD: 'delete' });
    const historyFile = path.join(p.ws.dir, 'ipi-push-state.history.jsonl');
    const a = testBytes(70_000, 40);
    p.put('site/a.dat', a);
    const old = new Date('2024-03-04T05:06:07Z');
    fs.utimesSync(path.join(p.watchDir, 'site/a.dat'), old, old);
    assert.equal((await p.run(['--once'])).code, 0);
    p.put('b.dat', 'B');
    assert.equal((await p.run(['--once'])).code, 0);
    assert.deepEqual(tree(p.watchDir), [], 'both deleted locally');
    assert.deepEqual(Object.keys(p.state().uploaded), ['b.dat'], 'site/a.dat is forgotten by the state (b.dat at the next scan)');

    const lines = fs.readFileSync(historyFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => l.path), ['site/a.dat', 'b.dat']);
    const [la] = lines;
    assert.equal(la.size, a.length);
    assert.equal(la.mtime, old.toISOString());
    assert.equal(la.mtimeMs, old.getTime());
    assert.equal(la.sha256, sha256(a));
    assert.equal(la.remotePath, `${p.ws.env.SFTP_UPLOAD_DIR}/site/a.dat`);
    assert.equal(la.verified, server.kind === 'openssh' ? 'sha256' : 'size');
    assert.equal(la.alreadyThere, false);
    assert.ok(Date.parse(la.uploadedAt) > 0);

    const st = await p.run(['status', '--json']);
    assert.equal(st.code, 0, st.stderr);
    const s = JSON.parse(st.stdout);
    assert.equal(s.uploadedCount, 1);
    assert.equal(s.historyFile, historyFile);
    assert.equal(s.lastUploaded.path, 'b.dat', 'the last upload, from the history');
    assert.equal(s.lastUploaded.mtime, lines[1].mtime);
    const text = await p.run(['status']);
    assert.match(text.stdout, /last uploaded: b\.dat -> .*\/b\.dat, 1 B/);
  });

  test('a history line that cannot be written ends the run before the state records the file; the next run records it without sending it again', async (t) => {
    const p = setup({ AFTER_UPLOAD: 'delete' });
    const historyFile = path.join(p.ws.dir, 'ipi-push-state.history.jsonl');
    fs.writeFileSync(historyFile, '');
    if (!chattr('+i', historyFile)) return t.skip('chattr +i refused on this filesystem: a history that refuses writes cannot be produced');
    p.put('h.dat', 'H');
    try {
      const r = await p.run(['--once']);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stderr, /recording the upload of "h\.dat" .* in the upload history: operation not permitted/);
    } finally {
      chattr('-i', historyFile);
    }
    assert.ok(exists(path.join(p.watchDir, 'h.dat')), 'not deleted: its upload is not recorded');
    assert.deepEqual(Object.keys(p.state().uploaded), []);
    const ino = fs.statSync(path.join(p.remoteRoot, 'h.dat')).ino;
    const again = await p.run(['--once']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(fs.statSync(path.join(p.remoteRoot, 'h.dat')).ino, ino, 'not sent again');
    const lines = fs.readFileSync(historyFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => [l.path, l.alreadyThere]), [['h.dat', true]]);
    assert.ok(!exists(path.join(p.watchDir, 'h.dat')), 'deleted once recorded');
  });

  test('status, --dry-run and metrics say what was uploaded and what waits', async () => {
    const p = setup({ METRICS_FILE: './ipi_push.prom' });
    p.put('one.dat', 'one');
    const dry = await p.run(['--dry-run', '--json']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual(JSON.parse(dry.stdout).wouldUpload, ['one.dat']);
    assert.ok(!exists(p.remoteRoot) || tree(p.remoteRoot).length === 0, 'dry run uploads nothing');
    assert.equal((await p.run(['--once'])).code, 0);
    p.put('two.dat', 'two');
    const st = await p.run(['status', '--json']);
    assert.equal(st.code, 0, st.stderr);
    const s = JSON.parse(st.stdout);
    assert.equal(s.uploadedCount, 1);
    assert.equal(s.lastUploaded.path, 'one.dat');
    assert.deepEqual(s.pending, ['two.dat']);
    assert.equal(s.lock.held, false);
    const prom = fs.readFileSync(path.join(p.ws.dir, 'ipi_push.prom'), 'utf8');
    assert.match(prom, /^ipi_push_last_run_files_uploaded 1$/m);
    assert.match(prom, /^ipi_push_last_success_timestamp_seconds \d+$/m);
  });

  test('a remote folder that refuses writes (immutable, as root) is a permanent failure: reported, recorded, not hammered; --retry-failed sends it once allowed', async (t) => {
    const p = setup({ RETRIES: '5' });
    p.put('denied.dat', 'D');
    fs.mkdirSync(p.remoteRoot, { recursive: true });
    if (!chattr('+i', p.remoteRoot)) return t.skip('chattr +i refused on this filesystem: a write-refusing server folder cannot be produced as root');
    try {
      const r = await p.run(['--once']);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stderr, /denied\.dat.*(permission denied|not permitted)/i);
      assert.doesNotMatch(r.stdout + r.stderr, /retrying in/, 'a permission error is not retried');
      const failed = p.state().failed['denied.dat'] as { permanent: boolean; attempts: number };
      assert.equal(failed.permanent, true);
      assert.equal(failed.attempts, 1);
      // The next run does not try again by itself: the file is unchanged and the refusal permanent.
      const again = await p.run(['--once']);
      assert.equal((p.state().failed['denied.dat'] as { attempts: number }).attempts, 1, again.stdout + again.stderr);
      assert.match(again.stdout + again.stderr, /denied\.dat/, 'the permanent failure is still reported');
    } finally {
      chattr('-i', p.remoteRoot);
    }
    const fixed = await p.run(['--once', '--retry-failed']);
    assert.equal(fixed.code, 0, fixed.stdout + fixed.stderr);
    assert.equal(fs.readFileSync(path.join(p.remoteRoot, 'denied.dat'), 'utf8'), 'D');
    assert.deepEqual(p.state().failed, {});
  });

  test('--once tries a file that failed transiently again at every run, not waiting for its next retry time: exit 1 while it fails, uploaded once it can be', async () => {
    // A full disk that has room again on the third try. RETRY_DELAYS lies far beyond the test:
    // in --once the interval between cron's runs is the backoff.
    const faulty = await startEmbeddedServer({ failWrite: { name: '.full.dat.ipi-push-part', offset: 0, times: 2 } });
    cleanups.push(() => faulty.stop());
    const p = setup({ RETRIES: '0', RETRY_DELAYS: '600', VERIFY: 'size' }, faulty);
    p.put('full.dat', 'waits for room on the server');
    for (const run of [1, 2]) {
      const r = await p.run(['--once', '--json']);
      assert.equal(r.code, 1, `run ${run}: ${r.stderr}`);
      const out = JSON.parse(r.stdout);
      assert.equal(out.outcome, 'failed', `run ${run}`);
      // The run's one error line, and its summary, say which file failed.
      assert.match(out.error, /"full\.dat": /, `run ${run}`);
      assert.deepEqual(out.failed.map((f: { rel: string }) => f.rel), ['full.dat'], `run ${run}`);
      assert.equal((p.state().failed['full.dat'] as { attempts: number }).attempts, run, `run ${run} tried it`);
    }
    const r = await p.run(['--once', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).files.map((f: { path: string }) => f.path), ['full.dat']);
    assert.deepEqual(p.state().failed, {});
    assert.equal(fs.readFileSync(path.join(p.remoteRoot, 'full.dat'), 'utf8'), 'waits for room on the server');
  });

  test('a refused login is reported once with exit 4, not hammered, in --once and in --watch', async () => {
    const p = setup({ RETRIES: '5' });
    p.ws.env.SFTP_KEY = server.passphraseKeyPath ?? server.clientKeyPath;
    p.ws.env.SFTP_KEY_PASSPHRASE = 'wrong-passphrase';
    p.ws.writeEnv();
    p.put('a.dat', 'a');
    const r = await p.run(['--once']);
    assert.equal(r.code, 2, `a key that cannot be decrypted is a configuration error: ${r.stderr}`);
    delete p.ws.env.SFTP_KEY_PASSPHRASE;
    p.ws.env.SFTP_KEY = path.join(p.ws.dir, 'stranger');
    fs.copyFileSync(path.join(server.tempDir, 'host_ed25519'), p.ws.env.SFTP_KEY); // a valid key the server does not authorize
    fs.chmodSync(p.ws.env.SFTP_KEY, 0o600);
    p.ws.writeEnv();
    for (const mode of ['--once', '--watch']) {
      const t0 = Date.now();
      const x = await p.run([mode], 30_000);
      assert.equal(x.code, 4, `${mode}: ${x.stderr}`);
      assert.match(x.stderr, /refused the login/);
      assert.equal(count(x.stdout + x.stderr, /connecting to /), 1, `${mode}: one attempt`);
      assert.ok(Date.now() - t0 < 15_000);
    }
  });
});

describe('ipi-push --watch', () => {
  test('a dropped file, a new nested folder, and a file written slowly are each uploaded once, complete; SIGTERM exits 0', async () => {
    const p = setup({ PUSH_SETTLE: '1.5' });
    const w = watchProcess(p);
    try {
      await waitFor(() => exists(p.ws.logFile) && /watching /.test(p.log()), 15_000, () => 'the watcher to start');
      const dropped = testBytes(1024 * 1024, 7);
      p.put('dropped.dat', dropped);
      await waitFor(() => exists(path.join(p.remoteRoot, 'dropped.dat')), 15_000, () => 'dropped.dat on the server');
      assert.equal(sha256File(path.join(p.remoteRoot, 'dropped.dat')), sha256(dropped));

      fs.mkdirSync(path.join(p.watchDir, 'new/deeper'), { recursive: true });
      p.put('new/deeper/nested.dat', 'nested');
      await waitFor(() => exists(path.join(p.remoteRoot, 'new/deeper/nested.dat')), 15_000, () => 'the nested file on the server');

      // An empty folder, and one made inside a folder already watched.
      fs.mkdirSync(path.join(p.watchDir, 'made/empty'), { recursive: true });
      fs.mkdirSync(path.join(p.watchDir, 'new/sibling'));
      await waitFor(() => exists(path.join(p.remoteRoot, 'made/empty')) && exists(path.join(p.remoteRoot, 'new/sibling')), 15_000,
        () => `the empty folders on the server (have ${folders(p.remoteRoot).join(', ')})`);

      // Written over ~4 s in pieces, pausing less than PUSH_SETTLE between writes.
      const slow = testBytes(400_000, 8);
      const fd = fs.openSync(path.join(p.watchDir, 'slow.dat'), 'w');
      for (let i = 0; i < 10; i++) {
        fs.writeSync(fd, slow, i * 40_000, 40_000);
        await new Promise((r) => setTimeout(r, 400));
        assert.ok(!exists(path.join(p.remoteRoot, 'slow.dat')), `not uploaded while still being written (piece ${i})`);
      }
      fs.closeSync(fd);
      await waitFor(() => exists(path.join(p.remoteRoot, 'slow.dat')), 15_000, () => 'slow.dat on the server');
      assert.equal(sha256File(path.join(p.remoteRoot, 'slow.dat')), sha256(slow));
    } finally {
      const r = await w.stop();
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr + r.stdout, /SIGTERM received/);
    }
    const log = p.log();
    assert.equal(count(log, /uploaded "slow\.dat"/), 1, 'slow.dat uploaded exactly once');
    assert.equal(count(log, /uploaded "dropped\.dat"/), 1);
    assert.deepEqual(Object.keys(p.state().uploaded).sort(), ['dropped.dat', 'new/deeper/nested.dat', 'slow.dat']);
    assert.deepEqual(tree(p.remoteRoot), ['dropped.dat', 'new/deeper/nested.dat', 'slow.dat']);
    assert.deepEqual(folders(p.remoteRoot), ['made', 'made/empty', 'new', 'new/deeper', 'new/sibling']);
    assert.deepEqual(Object.keys(p.state().folders!).sort(), ['made', 'made/empty', 'new', 'new/deeper', 'new/sibling']);
  });

  test('a folder removed on the server while the connection stays open is made again when the next file goes into it', async () => {
    const p = setup();
    p.put('site/a.dat', 'first');
    const w = watchProcess(p);
    const b = path.join(p.remoteRoot, 'site/b.dat');
    try {
      await waitFor(() => exists(path.join(p.remoteRoot, 'site/a.dat')), 15_000, () => 'site/a.dat on the server');
      // A consumer on the server clears the folder away; this connection made it earlier.
      fs.rmSync(path.join(p.remoteRoot, 'site'), { recursive: true });
      p.put('site/b.dat', 'second');
      await waitFor(() => exists(b) || /b\.dat.*not retried/.test(p.log()), 15_000, () => `site/b.dat on the server, or its failure:\n${p.log()}`);
    } finally {
      assert.equal((await w.stop()).code, 0);
    }
    assert.equal(fs.readFileSync(b, 'utf8'), 'second', p.log());
    assert.match(p.log(), /the folder .*\/site was gone from the server: made again/);
    assert.deepEqual(p.state().failed, {});
    assert.deepEqual(tree(p.remoteRoot), ['site/b.dat']);
  });

  test('a folder removed on the server during an upload into it: the file is sent again, whole, in the same run', async () => {
    const proxy = await startFaultProxy(server.port);
    cleanups.push(() => proxy.stop());
    const p = setup({ SFTP_PORT: String(proxy.port), CHUNK_SIZE: '256KiB', CHUNKS_IN_FLIGHT: '2', VERIFY: 'size' });
    const data = testBytes(4 * 1024 * 1024 + 3, 13);
    p.put('site/big.dat', data);
    const temp = path.join(p.remoteRoot, 'site/.big.dat.ipi-push-part');
    proxy.throttle(6000);
    const done = p.run(['--once']);
    await waitFor(() => exists(temp) && fs.statSync(temp).size >= 512 * 1024, 40_000, () => 'the upload to be under way');
    fs.rmSync(path.join(p.remoteRoot, 'site'), { recursive: true });
    proxy.throttle(null);
    const r = await done;
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(p.log(), /went away on the server during the upload/);
    assert.equal(sha256File(path.join(p.remoteRoot, 'site/big.dat')), sha256(data));
    assert.deepEqual(p.state().failed, {});
  });

  test('SIGTERM mid-upload: no new file taken, the upload checkpointed on the server, state saved, exit 0; the next run resumes it', async () => {
    const proxy = await startFaultProxy(server.port);
    cleanups.push(() => proxy.stop());
    const p = setup({ SFTP_PORT: String(proxy.port), CHUNK_SIZE: '256KiB', CHUNKS_IN_FLIGHT: '2' });
    const data = testBytes(16 * 1024 * 1024 + 3, 11);
    p.put('a-big.dat', data);
    const temp = path.join(p.remoteRoot, '.a-big.dat.ipi-push-part');
    proxy.throttle(6000);
    const w = watchProcess(p);
    await waitFor(() => exists(temp) && fs.statSync(temp).size >= 1024 * 1024, 40_000, () => 'the upload to be under way');
    p.put('b-later.dat', 'arrives during the upload');
    const t0 = Date.now();
    const r = await w.stop();
    proxy.throttle(null);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Date.now() - t0 < 15_000, 'stops promptly');
    assert.match(r.stderr + r.stdout, /SIGTERM received: taking no new file/);
    assert.ok(!exists(path.join(p.remoteRoot, 'a-big.dat')), 'half a file is never published');
    assert.ok(!exists(path.join(p.remoteRoot, 'b-later.dat')), 'no new file taken');
    const st = p.state();
    assert.equal((st.inProgress as { rel: string }).rel, 'a-big.dat', 'the state says what to resume');
    const have = fs.statSync(temp).size;
    assert.ok(have > 0 && have < data.length);

    const again = await p.run(['--once', '--json']);
    assert.equal(again.code, 0, again.stderr);
    const files = JSON.parse(again.stdout).files as Array<{ path: string; resumedFrom: number }>;
    assert.equal(files.find((f) => f.path === 'a-big.dat')!.resumedFrom, have, 'resumed exactly where the checkpoint left it');
    assert.equal(sha256File(path.join(p.remoteRoot, 'a-big.dat')), sha256(data));
    assert.equal(fs.readFileSync(path.join(p.remoteRoot, 'b-later.dat'), 'utf8'), 'arrives during the upload');
  });

  test('the server goes away (link stalled, then sshd restarted) and comes back: the queue drains, nothing lost or duplicated', async () => {
    const proxy = await startFaultProxy(server.port);
    cleanups.push(() => proxy.stop());
    const p = setup({
      SFTP_PORT: String(proxy.port), PUSH_SETTLE: '0.3', DATA_TIMEOUT: '2', CONNECT_TIMEOUT: '2',
      KEEPALIVE_INTERVAL: '1', KEEPALIVE_COUNT_MAX: '2', RETRY_DELAYS: '0.5,1',
    });
    const w = watchProcess(p);
    const files: Record<string, Buffer> = {};
    try {
      await waitFor(() => exists(p.ws.logFile) && /watching /.test(p.log()), 15_000, () => 'the watcher to start');
      files['first.dat'] = testBytes(100_000, 10);
      p.put('first.dat', files['first.dat']);
      // Its log line, not its name on the server: a stall between the rename and its answer
      // would cut it short, and the retry would find it there and not upload it again.
      await waitFor(() => /uploaded "first\.dat"/.test(p.log()), 15_000, () => 'first.dat uploaded');

      proxy.stall();
      for (let i = 0; i < 4; i++) {
        const rel = `during/outage-${i}.dat`;
        files[rel] = testBytes(i === 0 ? 6 * 1024 * 1024 : 30_000 + i, 20 + i);
        p.put(rel, files[rel]);
      }
      // The client notices (DATA_TIMEOUT / keepalive), reconnects and cannot get through.
      await waitFor(() => /file\(s\) wait/.test(p.log()), 20_000, () => 'the client to report the queue waiting');
      await server.restart(1000);
      proxy.unstall();
      await waitFor(() => Object.keys(files).every((rel) => exists(path.join(p.remoteRoot, rel))), 40_000,
        () => `all files on the server (have ${tree(p.remoteRoot).join(', ')})`);
    } finally {
      const r = await w.stop();
      assert.equal(r.code, 0, r.stderr);
    }
    assert.deepEqual(tree(p.remoteRoot), Object.keys(files).sort(), 'nothing lost, no temporaries left');
    for (const [rel, data] of Object.entries(files)) assert.equal(sha256File(path.join(p.remoteRoot, rel)), sha256(data), rel);
    const log = p.log();
    for (const rel of Object.keys(files)) {
      assert.equal(count(log, new RegExp(`uploaded "${rel.replace(/[./]/g, '\\$&')}"`)), 1, `${rel} uploaded exactly once`);
    }
    assert.match(log, /reachable again: draining the queue/);
    assert.deepEqual(p.state().failed, {});
  });
});

describe('ipi-push --watch: what the watcher sees, misses, and what changes under an upload', () => {
  test('a folder of files moved into WATCH_DIR at once (mv) is uploaded completely, its empty subfolder made, by the watcher alone', async () => {
    // RESCAN_INTERVAL=0: only the watcher (addDir, then a walk of the folder) can find them.
    const p = setup({ RESCAN_INTERVAL: '0', PUSH_SETTLE: '0.5' });
    const staging = path.join(p.ws.dir, 'staging', 'batch');
    const files: Record<string, Buffer> = { 'big.dat': testBytes(2 * 1024 * 1024 + 1, 50) };
    for (let i = 0; i < 24; i++) files[`sub${i % 3}/deeper/f${String(i).padStart(2, '0')}.dat`] = testBytes(1000 + i * 37, 51 + i);
    for (const [rel, data] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(staging, rel)), { recursive: true });
      fs.writeFileSync(path.join(staging, rel), data);
    }
    fs.mkdirSync(path.join(staging, 'empty'));
    const w = watchProcess(p);
    try {
      await waitFor(() => exists(p.ws.logFile) && /watching /.test(p.log()), 15_000, () => 'the watcher to start');
      fs.renameSync(staging, path.join(p.watchDir, 'batch'));
      await waitFor(() => Object.keys(files).every((rel) => exists(path.join(p.remoteRoot, 'batch', rel))) && exists(path.join(p.remoteRoot, 'batch/empty')),
        30_000, () => `the moved folder on the server (have ${tree(p.remoteRoot).length} files)`);
    } finally {
      assert.equal((await w.stop()).code, 0);
    }
    assert.deepEqual(tree(p.remoteRoot), Object.keys(files).map((rel) => `batch/${rel}`).sort(), 'every file, no temporaries');
    for (const [rel, data] of Object.entries(files)) assert.equal(sha256File(path.join(p.remoteRoot, 'batch', rel)), sha256(data), rel);
    assert.ok(fs.statSync(path.join(p.remoteRoot, 'batch/empty')).isDirectory());
    for (const rel of Object.keys(files)) assert.equal(count(p.log(), new RegExp(`uploaded "batch/${rel.replace(/[./]/g, '\\$&')}"`)), 1, `${rel} once`);
  });

  test('a file that changes while it is being uploaded is not published; once it settles it goes again, complete, once', async () => {
    const proxy = await startFaultProxy(server.port);
    cleanups.push(() => proxy.stop());
    const p = setup({ SFTP_PORT: String(proxy.port), CHUNK_SIZE: '256KiB', CHUNKS_IN_FLIGHT: '2', PUSH_SETTLE: '0.5' });
    const first = testBytes(8 * 1024 * 1024 + 9, 60);
    const more = testBytes(300_000, 61);
    p.put('grows.dat', first);
    const temp = path.join(p.remoteRoot, '.grows.dat.ipi-push-part');
    const final = path.join(p.remoteRoot, 'grows.dat');
    proxy.throttle(6000);
    const w = watchProcess(p);
    const published: string[] = [];
    try {
      await waitFor(() => exists(temp) && fs.statSync(temp).size >= 1024 * 1024, 40_000, () => 'the upload to be under way');
      fs.appendFileSync(path.join(p.watchDir, 'grows.dat'), more); // the producer writes on
      proxy.throttle(null);
      await waitFor(() => {
        if (exists(final)) published.push(sha256File(final));
        return exists(final);
      }, 40_000, () => 'grows.dat on the server');
    } finally {
      assert.equal((await w.stop()).code, 0);
    }
    const whole = Buffer.concat([first, more]);
    assert.deepEqual(published, [sha256(whole)], 'the first thing published is the whole, new file');
    assert.equal(sha256File(final), sha256(whole));
    const log = p.log();
    assert.match(log, /"grows\.dat" changed while it was being uploaded: not published; it goes again once it settles/);
    assert.equal(count(log, /uploaded "grows\.dat"/), 1);
    assert.equal(p.state().uploaded['grows.dat']!.size, whole.length);
    assert.deepEqual(tree(p.remoteRoot), ['grows.dat'], 'no temporary left');
  });

  test('a file changed while its upload is checked on the server is uploaded again, with no rescan to find it', async (t) => {
    if (server.kind !== 'openssh') return t.skip('needs sha256sum on the server: the check is where the file changes');
    const p = setup({ SFTP_HOST_KEY: server.hostKeyFingerprint, PUSH_SETTLE: '0.2', RESCAN_INTERVAL: '0' });
    const abs = p.put('x.dat', 'version one');
    const remote = path.join(p.remoteRoot, 'x.dat');
    const lines: string[] = [];
    let tell: (rel: string) => void = () => {};
    let changed = false;
    const log: Logger = {
      error: (m) => lines.push(m), warn: (m) => lines.push(m), info: (m) => lines.push(m), record: () => {},
      debug: (m) => {
        lines.push(m);
        // The last local look is behind the upload now: the producer writes on, and the watcher says so.
        if (!changed && m.startsWith('sha256sum of')) {
          changed = true;
          fs.appendFileSync(abs, ', then two');
          tell('x.dat');
        }
      },
    };
    const config = loadConfig({ envFile: path.join(p.ws.dir, '.env'), cwd: p.ws.dir, env: {}, tool: 'push' });
    const stop = new AbortController();
    const done = runPush(config, { mode: 'watch', dryRun: false, acceptNewHostKey: false, retryFailed: false, signal: stop.signal }, {
      log, progress: noProgress,
      startWatcher: async (_root, _ignored, on) => {
        tell = on.changed;
        return { close: async () => {} };
      },
    });
    done.catch(() => {});
    try {
      await waitFor(() => exists(remote) && fs.readFileSync(remote, 'utf8') === 'version one, then two', 15_000,
        () => `the second version on the server:\n${lines.join('\n')}`);
    } finally {
      stop.abort('test');
      await done;
    }
    assert.ok(changed);
    assert.equal(p.state().uploaded['x.dat']!.size, 'version one, then two'.length);
  });
});

describe('ipi-push --watch in process, with a watcher that misses everything (a network share)', () => {
  /** runPush --watch in this process, with a watcher that never reports a change. */
  function deafWatch(p: PushWs) {
    const lines: string[] = [];
    const log: Logger = {
      error: (m) => lines.push(m), warn: (m) => lines.push(m), info: (m) => lines.push(m), debug: (m) => lines.push(m), record: () => {},
    };
    const config = loadConfig({ envFile: path.join(p.ws.dir, '.env'), cwd: p.ws.dir, env: {}, tool: 'push' });
    const stop = new AbortController();
    const done: Promise<PushSummary> = runPush(config, { mode: 'watch', dryRun: false, acceptNewHostKey: false, retryFailed: false, signal: stop.signal }, {
      log, progress: noProgress, startWatcher: async () => ({ close: async () => {} }),
    });
    done.catch(() => {});
    return { lines, done, stop: () => (stop.abort('test'), done) };
  }

  test('a skipped name is warned about once while it stays, and again if it comes back after going', async () => {
    const p = setup({ SFTP_HOST_KEY: server.hostKeyFingerprint, PUSH_SETTLE: '0.2', RESCAN_INTERVAL: '1' });
    const outside = path.join(p.ws.dir, 'outside.txt');
    fs.writeFileSync(outside, 'not to be uploaded');
    const link = path.join(p.watchDir, 'leak.txt');
    fs.symlinkSync(outside, link);
    const w = deafWatch(p);
    const warned = () => w.lines.filter((l) => /^skipping "leak\.txt": a symbolic link leading outside WATCH_DIR/.test(l)).length;
    const rescans = async (n: number) => new Promise((r) => setTimeout(r, n * 1000 + 300));
    try {
      await waitFor(() => w.lines.some((l) => l.startsWith('watching ')), 15_000, () => w.lines.join('\n'));
      await rescans(3);
      assert.equal(warned(), 1, w.lines.join('\n'));
      fs.rmSync(link);
      await rescans(2);
      fs.symlinkSync(outside, link);
      await waitFor(() => warned() === 2, 5_000, () => `a second warning once it came back:\n${w.lines.join('\n')}`);
      await rescans(2);
      assert.equal(warned(), 2, w.lines.join('\n'));
    } finally {
      await w.stop();
    }
    assert.equal(exists(path.join(p.remoteRoot, 'leak.txt')), false);
  });

  test('RESCAN_INTERVAL: the periodic rescan finds and uploads a file and a folder the watcher missed; with it off, they wait', async () => {
    const pin = { SFTP_HOST_KEY: server.hostKeyFingerprint, PUSH_SETTLE: '0.2' };
    const off = setup({ ...pin, RESCAN_INTERVAL: '0' });
    const on = setup({ ...pin, RESCAN_INTERVAL: '1' });
    const a = deafWatch(off);
    const b = deafWatch(on);
    try {
      await waitFor(() => [a, b].every((x) => x.lines.some((l) => l.startsWith('watching '))), 15_000, () => 'both to start watching');
      for (const p of [off, on]) {
        p.put('missed.dat', 'the watcher never said');
        fs.mkdirSync(path.join(p.watchDir, 'missed-folder'));
      }
      await waitFor(() => exists(path.join(on.remoteRoot, 'missed.dat')) && exists(path.join(on.remoteRoot, 'missed-folder')), 10_000,
        () => `the rescan to find them:\n${b.lines.join('\n')}`);
      await new Promise((r) => setTimeout(r, 2500)); // more than the other's interval would have been
      assert.ok(!exists(path.join(off.remoteRoot, 'missed.dat')) && !exists(path.join(off.remoteRoot, 'missed-folder')),
        'without the rescan, nothing found them: it was the rescan');
    } finally {
      const [ra, rb] = await Promise.all([a.stop(), b.stop()]);
      assert.equal(rb.uploaded.length, 1);
      assert.deepEqual(rb.folders, ['missed-folder']);
      assert.equal(ra.uploaded.length, 0);
    }
    assert.equal(fs.readFileSync(path.join(on.remoteRoot, 'missed.dat'), 'utf8'), 'the watcher never said');
  });
});

describe('ipi-push --watch in process, with a watcher the test speaks for and a walk it can hold', () => {
  /** What the watcher calls: changed, removed, dirAdded. */
  type Handlers = Parameters<typeof startWatcher>[2];

  /**
   * runPush --watch in this process. Its watcher reports only what the test says (`on`), and
   * each walk of WATCH_DIR is counted and, once `hold()` is called, held after it has walked
   * until the test releases it: what happens meanwhile happens while a rescan is under way.
   */
  function drivenWatch(p: PushWs) {
    const lines: string[] = [];
    const log: Logger = {
      error: (m) => lines.push(m), warn: (m) => lines.push(m), info: (m) => lines.push(m), debug: (m) => lines.push(m), record: () => {},
    };
    const config = loadConfig({ envFile: path.join(p.ws.dir, '.env'), cwd: p.ws.dir, env: {}, tool: 'push' });
    const stop = new AbortController();
    let on: Handlers | null = null;
    let gate: { walked: () => void; released: Promise<void> } | null = null;
    const walks = { started: 0, inside: 0, most: 0 };
    let live: PushSummary | null = null;
    const done: Promise<PushSummary> = runPush(config, { mode: 'watch', dryRun: false, acceptNewHostKey: false, retryFailed: false, signal: stop.signal }, {
      log, progress: noProgress,
      onActivity: (summary) => (live = summary),
      startWatcher: async (_root, _ignored, handlers) => {
        on = handlers;
        return { close: async () => {} };
      },
      scanDir: async (root, ignored) => {
        walks.started++;
        walks.most = Math.max(walks.most, ++walks.inside);
        try {
          const found = await scanDir(root, ignored);
          const g = gate;
          gate = null;
          if (g) {
            g.walked();
            await g.released;
          }
          return found;
        } finally {
          walks.inside--;
        }
      },
    });
    done.catch(() => {});
    return {
      lines, done, walks,
      on: () => on!,
      /** The run's summary as it is now (what the metrics are written from), once a file has had an outcome. */
      summary: () => live,
      stop: () => (stop.abort('test'), done),
      /** Hold the next walk once it has walked: resolves then, with the way to let it finish. */
      hold(): Promise<() => void> {
        let release!: () => void;
        const released = new Promise<void>((r) => (release = r));
        return new Promise((walked) => {
          gate = { walked: () => walked(release), released };
        });
      },
    };
  }

  test('what the watcher reports while a rescan walks stays: a file renamed in behind the walk is uploaded, one uploaded during it stays recorded', async () => {
    // RESCAN_INTERVAL=0: nothing but the watcher brings back what a rescan drops. PUSH_SETTLE is
    // long enough that late.dat, reported a second after sent.dat, is not yet taken when
    // sent.dat is recorded and the walk is let go.
    const p = setup({ SFTP_HOST_KEY: server.hostKeyFingerprint, PUSH_SETTLE: '2', RESCAN_INTERVAL: '0' });
    fs.mkdirSync(path.join(p.watchDir, 'a'));
    const w = drivenWatch(p);
    let release = () => {};
    try {
      await waitFor(() => w.lines.some((l) => l.startsWith('watching ')) && exists(path.join(p.remoteRoot, 'a')), 15_000, () => w.lines.join('\n'));
      const held = w.hold();
      fs.mkdirSync(path.join(p.watchDir, 'new'));
      w.on().dirAdded('new');
      release = await held;
      // The walk has passed a/: both files come behind it, as a producer renames them in.
      p.put('a/sent.dat', 'uploaded while the walk was under way');
      w.on().changed('a/sent.dat');
      await new Promise((r) => setTimeout(r, 1000));
      fs.writeFileSync(path.join(p.ws.dir, 'late.staging'), 'renamed in behind the walk');
      fs.renameSync(path.join(p.ws.dir, 'late.staging'), path.join(p.watchDir, 'a/late.dat'));
      w.on().changed('a/late.dat');
      await waitFor(() => p.state().uploaded['a/sent.dat'] !== undefined, 15_000, () => `sent.dat recorded:\n${w.lines.join('\n')}`);
      assert.equal(exists(path.join(p.remoteRoot, 'a/late.dat')), false, 'late.dat still settling when the walk ends');
      release();
      await waitFor(() => exists(path.join(p.remoteRoot, 'a/late.dat')), 10_000, () => `late.dat uploaded after the walk ended:\n${w.lines.join('\n')}`);
      assert.deepEqual(Object.keys(p.state().uploaded).sort(), ['a/late.dat', 'a/sent.dat'], 'both recorded: the next run sends neither again');
      assert.equal(w.lines.filter((l) => /^state: forgot/.test(l)).length, 0, w.lines.join('\n'));
      // What has truly gone is still forgotten: sent.dat, taken away while a walk that saw it
      // goes (so queued again, as every file there is), by the walk after.
      const again = w.hold();
      fs.mkdirSync(path.join(p.watchDir, 'newer'));
      w.on().dirAdded('newer');
      release = await again;
      fs.rmSync(path.join(p.watchDir, 'a/sent.dat'));
      release();
      fs.mkdirSync(path.join(p.watchDir, 'newest'));
      w.on().dirAdded('newest');
    } finally {
      // A run stops only once its rescan is done.
      release();
      await w.stop();
    }
    assert.equal(w.walks.started, 4, 'the start-up walk, the two held ones and the last one, nothing else');
    assert.deepEqual(Object.keys(p.state().uploaded), ['a/late.dat'], w.lines.join('\n'));
  });

  test('rescans asked for while one walks (a burst of new folders) wait for it, and share one more walk', async () => {
    const p = setup({ SFTP_HOST_KEY: server.hostKeyFingerprint, PUSH_SETTLE: '0.2', RESCAN_INTERVAL: '0' });
    const w = drivenWatch(p);
    let release = () => {};
    try {
      await waitFor(() => w.lines.some((l) => l.startsWith('watching ')), 15_000, () => w.lines.join('\n'));
      const held = w.hold();
      for (const d of ['d1', 'd2', 'd3']) fs.mkdirSync(path.join(p.watchDir, d));
      w.on().dirAdded('d1');
      release = await held;
      w.on().dirAdded('d2');
      w.on().dirAdded('d3');
      assert.equal(w.walks.started, 2, 'no second walk beside the held one');
      release();
      await waitFor(() => ['d1', 'd2', 'd3'].every((d) => exists(path.join(p.remoteRoot, d))), 10_000, () => `the folders made:\n${w.lines.join('\n')}`);
    } finally {
      // A run stops only once its rescan is done.
      release();
      await w.stop();
    }
    assert.equal(w.walks.most, 1, 'one walk at a time');
    assert.equal(w.walks.started, 3, 'the start-up walk, the held one, and one more for both requests made meanwhile');
  });

  test('a failed file that leaves WATCH_DIR leaves the failed list (and the pending metric), whether the watcher or a rescan sees it go', async () => {
    const p = setup({ SFTP_HOST_KEY: server.hostKeyFingerprint, PUSH_SETTLE: '0.2', RESCAN_INTERVAL: '0' });
    // A folder on the server where each file's name goes: its upload cannot be put in place.
    for (const name of ['told.dat', 'walked.dat']) {
      fs.mkdirSync(path.join(p.remoteRoot, name, 'blocker'), { recursive: true });
      p.put(name, `${name}, taken back by its producer`);
    }
    const w = drivenWatch(p);
    const failedNow = () => w.summary()?.failed.map((f) => f.rel).sort() ?? [];
    try {
      await waitFor(() => failedNow().length === 2, 15_000, () => `both to fail:\n${w.lines.join('\n')}`);
      fs.rmSync(path.join(p.watchDir, 'told.dat'));
      w.on().removed('told.dat');
      assert.deepEqual(failedNow(), ['walked.dat'], 'the watcher saw told.dat go');
      fs.rmSync(path.join(p.watchDir, 'walked.dat'));
      fs.mkdirSync(path.join(p.watchDir, 'new'));
      w.on().dirAdded('new');
    } finally {
      await w.stop();
    }
    // The rescan asked for is done before the run returns.
    assert.deepEqual(failedNow(), [], `the rescan saw walked.dat go:\n${w.lines.join('\n')}`);
    assert.deepEqual((await w.done).failed, []);
  });
});

describe('ipi-push --watch losing its lock (in process: the heartbeat shortened to 50 ms)', () => {
  test('the lock deleted under a running service: it stops taking files, saves its state, and fails with exit 3 saying so', async () => {
    const p = setup({ SFTP_HOST_KEY: server.hostKeyFingerprint, PUSH_SETTLE: '0.2' });
    p.put('before.dat', 'uploaded while the lock was ours');
    const lines: string[] = [];
    const log: Logger = {
      error: (m) => lines.push(m), warn: (m) => lines.push(m), info: (m) => lines.push(m), debug: (m) => lines.push(m), record: () => {},
    };
    const config = loadConfig({ envFile: path.join(p.ws.dir, '.env'), cwd: p.ws.dir, env: {}, tool: 'push' });
    const stop = new AbortController();
    const done = runPush(config, { mode: 'watch', dryRun: false, acceptNewHostKey: false, retryFailed: false, signal: stop.signal },
      { log, progress: noProgress, lockRefreshMs: 50 });
    done.catch(() => {});
    try {
      await waitFor(() => exists(path.join(p.remoteRoot, 'before.dat')) && lines.some((l) => l.startsWith('watching ')), 15_000,
        () => `the first upload and the watch:\n${lines.join('\n')}`);
      fs.rmSync(lockFileFor(config.stateFile));
      await assert.rejects(done, (err: unknown) => err instanceof LockHeldError && err.exitCode === 3
        && /lost the lock .*: it was deleted while this ipi-push run held it/.test(err.message));
    } finally {
      stop.abort('test');
      await done.catch(() => {});
    }
    assert.ok(lines.some((l) => /^stopped by losing the lock: no new file taken, state saved/.test(l)), lines.join('\n'));
    assert.equal(p.state().uploaded['before.dat']!.size, 'uploaded while the lock was ours'.length);
    assert.equal(exists(lockFileFor(config.stateFile)), false, 'no lock recreated');
  });
});

/**
 * An sshd of its own with these extra settings, or null (the test skipped, loudly) where sshd is
 * not installed: the embedded server never allows exec, so these cases need the real one.
 */
async function ownSshd(t: TestContext, extraConfig: string[]): Promise<SftpServerHandle | null> {
  if (!sshdAvailable()) {
    t.skip(`SKIPPED LOUDLY: needs OpenSSH sshd to run a server with ${extraConfig.join(', ')}`);
    process.stderr.write(`e2e push: SKIPPED "${t.name}": sshd not installed\n`);
    return null;
  }
  const srv = await startSshd({ extraConfig });
  cleanups.push(() => srv.stop());
  return srv;
}

describe('ipi-push against a server whose sha256sum disagrees', () => {
  test('VERIFY=sha256: a digest that differs is sent again once, then refused: exit 1, nothing under the final name, nothing recorded as uploaded', async (t) => {
    // A sha256sum first on the server's PATH that answers zeros for every file, as a disk
    // returning other bytes than were written would make the real one answer.
    const fake = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-fake-sha256sum-'));
    cleanups.push(() => fs.rmSync(fake, { recursive: true, force: true }));
    fs.writeFileSync(path.join(fake, 'sha256sum'), `#!/bin/sh\n[ "$1" = "--" ] && shift\nfor f in "$@"; do echo "${'0'.repeat(64)}  $f"; done\n`, { mode: 0o755 });
    const lying = await ownSshd(t, [`SetEnv PATH=${fake}:/usr/bin:/bin`]);
    if (!lying) return;
    const p = setup({ VERIFY: 'sha256' }, lying);
    const data = testBytes(10_000, 14);
    p.put('a.dat', data);
    const r = await p.run(['--once', '--json'], 60_000);
    assert.equal(r.code, 1, r.stderr);
    assert.match(p.log(), /the server's SHA-256 of the upload differs from the local file's/);
    assert.match(r.stderr, /again: not published/);
    assert.ok(!exists(path.join(p.remoteRoot, 'a.dat')), 'nothing under the final name');
    assert.deepEqual(tree(p.remoteRoot), [], 'no temporary left either');
    assert.equal(p.state().uploaded['a.dat'], undefined);
    assert.equal((p.state().failed['a.dat'] as { permanent: boolean }).permanent, true);
    assert.deepEqual(JSON.parse(r.stdout).failed.map((f: { rel: string }) => f.rel), ['a.dat']);
  });
});

describe('ipi-push against a server that allows SFTP only', () => {
  test('VERIFY=sha256 says clearly that the server cannot hash, checks the size, and records that', async (t) => {
    const sftpOnly = await ownSshd(t, ['ForceCommand internal-sftp']);
    if (!sftpOnly) return;
    const p = setup({}, sftpOnly);
    p.put('a.dat', testBytes(10_000, 9));
    const r = await p.run(['--once'], 60_000);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(sha256File(path.join(p.remoteRoot, 'a.dat')), sha256(testBytes(10_000, 9)));
    assert.match(p.log(), /VERIFY=sha256: the server cannot compute SHA-256 \(.*\); uploads on this connection are checked by size only/);
    assert.match(p.log(), /uploaded "a\.dat" .* size checked;/);
    assert.equal(p.state().uploaded['a.dat']!.verified, 'size');
  });
});

describe('ipi-push against a server that takes a command\'s channel and never starts the command (embedded ssh2 server)', () => {
  test('VERIFY=sha256: the connection is given up after DATA_TIMEOUT, retried, then exit 1; the file waits for the next run', async () => {
    const hanging = await startEmbeddedServer({ ignoreExec: true });
    cleanups.push(() => hanging.stop());
    const p = setup({ PUSH_SETTLE: '0', VERIFY: 'sha256', DATA_TIMEOUT: '1', RETRIES: '1', RETRY_DELAYS: '0.1' }, hanging);
    p.put('a.dat', testBytes(10_000, 11));
    const started = Date.now();
    // Before, the run never ended: the bound here is what fails.
    const r = await p.run(['--once'], 20_000);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(Date.now() - started < 15_000, `took ${Date.now() - started} ms`);
    assert.match(r.stderr, /ERROR: no answer from the server to starting `sha256sum -- [^`]*a\.dat[^`]*` for 1 s \(DATA_TIMEOUT\)/);
    assert.equal(count(r.stderr, /ERROR:/), 1, r.stderr);
    assert.equal(p.state().uploaded['a.dat'], undefined);
    assert.equal(exists(lockFileFor(p.stateFile)), false, 'lock released');
  });
});

describe('ipi-push stopped while connecting (embedded ssh2 server that never starts SFTP)', () => {
  test('SIGTERM ends the run at once as a clean stop (exit 0), the file left for the next run, the lock released', async () => {
    const stuck = await startEmbeddedServer({ ignoreSftpRequest: true });
    cleanups.push(() => stuck.stop());
    // CONNECT_TIMEOUT far away: only the stop can end this wait.
    const p = setup({ PUSH_SETTLE: '0', CONNECT_TIMEOUT: '120' }, stuck);
    p.put('a.dat', testBytes(10_000, 12));
    const child = p.spawn(['--once']);
    const done = collect(child, 20_000);
    await waitFor(() => exists(p.ws.logFile) && p.log().includes('connecting to'), 10_000, () => 'the connection attempt');
    // Time to log in and ask for SFTP (loopback takes milliseconds).
    await new Promise((r) => setTimeout(r, 500));
    const stoppedAt = Date.now();
    child.kill('SIGTERM');
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Date.now() - stoppedAt < 3000, `took ${Date.now() - stoppedAt} ms after SIGTERM`);
    assert.match(r.stderr, /stopped by a signal/);
    assert.doesNotMatch(r.stderr, /ERROR:|retrying/);
    assert.equal(p.state().uploaded['a.dat'], undefined);
    assert.equal(exists(lockFileFor(p.stateFile)), false, 'lock released');
  });
});

describe('ipi-push against a server that allows few channels per connection', () => {
  test('VERIFY=sha256: files that finish together share one sha256sum on the server, odd names included, every one checked', async () => {
    const p = setup({ PUSH_SETTLE: '0', FILES_IN_FLIGHT: '8', LOG_LEVEL: 'debug' });
    const names = Array.from({ length: 24 }, (_, i) => (i % 5 === 2 ? `it's file ${i} $HOME.dat` : `b${String(i).padStart(2, '0')}.dat`));
    names.forEach((rel, i) => p.put(rel, testBytes(7_000 + i, 300 + i)));
    const r = await p.run(['--once'], 60_000);
    assert.equal(r.code, 0, r.stderr);
    const commands = [...p.log().matchAll(/sha256sum of (\d+) file\(s\) on the server/g)].map((m) => Number(m[1]));
    assert.equal(commands.reduce((a, b) => a + b, 0), names.length, 'each file checked once');
    assert.ok(commands.length < names.length && Math.max(...commands) > 1, `files share commands: ${commands.join(', ')}`);
    for (const [i, rel] of names.entries()) {
      assert.equal(p.state().uploaded[rel]!.verified, 'sha256', rel);
      assert.equal(sha256File(path.join(p.remoteRoot, rel)), sha256(testBytes(7_000 + i, 300 + i)), rel);
    }
  });

  test('a file sent and waiting for its check makes room: with FILES_IN_FLIGHT=2, the fourth file starts before the first is checked', async () => {
    const proxy = await startFaultProxy(server.port);
    cleanups.push(() => proxy.stop());
    proxy.latency(10);
    const p = setup({ SFTP_PORT: String(proxy.port), PUSH_SETTLE: '0', FILES_IN_FLIGHT: '2' });
    const names = Array.from({ length: 8 }, (_, i) => `w${i}.dat`);
    names.forEach((rel, i) => p.put(rel, testBytes(8_000 + i, 50 + i)));
    const r = await p.run(['--once'], 60_000);
    assert.equal(r.code, 0, r.stderr);
    // By the protocol, not the clock: w2 and w3 start once w0 and w1 are sent, one round trip
    // before their "uploading" line; w0 is "uploaded" only after its sha256sum (an exec channel:
    // open, request, answer) and its rename, three round trips or more after it was sent.
    const log = p.log();
    const at = (verb: string, rel: string) => log.indexOf(`${verb} "${rel}"`);
    assert.ok(at('uploading', 'w3.dat') < at('uploaded', 'w0.dat'), 'w3.dat starts while w0.dat waits for its check');
    for (const [i, rel] of names.entries()) {
      assert.equal(p.state().uploaded[rel]!.verified, 'sha256', rel);
      assert.equal(sha256File(path.join(p.remoteRoot, rel)), sha256(testBytes(8_000 + i, 50 + i)), rel);
    }
  });

  test('MaxSessions 2 (the SFTP channel and one more): eight files in flight still get every SHA-256 checked on the server, one sha256sum at a time', async (t) => {
    const strict = await ownSshd(t, ['MaxSessions 2']);
    if (!strict) return;
    // The server really refuses a second exec channel beside the SFTP one: the case is real.
    const probe = await SftpSession.open({
      host: strict.host, port: strict.port, user: strict.user, key: fs.readFileSync(strict.clientKeyPath), pinnedHostKeys: [strict.hostKeyFingerprint],
      knownHostsFile: path.join(strict.root, 'no_known_hosts'), acceptNewHostKey: false, connectTimeoutMs: 10_000, dataTimeoutMs: 10_000,
      keepaliveIntervalMs: 0, keepaliveCountMax: 3, rekeyBytes: 0, log: silentLogger,
    });
    try {
      const both = await Promise.allSettled([probe.exec('sleep 0.2', 10_000), probe.exec('sleep 0.2', 10_000)]);
      assert.deepEqual(both.map((s) => s.status).sort(), ['fulfilled', 'rejected']);
    } finally {
      await probe.end();
    }
    // A round trip long enough that the files' checks would overlap if they could.
    const proxy = await startFaultProxy(strict.port);
    cleanups.push(() => proxy.stop());
    proxy.latency(10);
    const p = setup({ SFTP_PORT: String(proxy.port), PUSH_SETTLE: '0', FILES_IN_FLIGHT: '8' }, strict);
    const names = Array.from({ length: 12 }, (_, i) => `h${String(i).padStart(2, '0')}.dat`);
    names.forEach((rel, i) => p.put(rel, testBytes(5_000 + i, 120 + i)));
    const r = await p.run(['--once'], 60_000);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(p.log(), /cannot compute SHA-256/, 'a second exec channel at once would be refused and read as a server that cannot hash');
    for (const rel of names) {
      assert.equal(p.state().uploaded[rel]!.verified, 'sha256', rel);
      assert.equal(sha256File(path.join(p.remoteRoot, rel)), sha256(testBytes(5_000 + names.indexOf(rel), 120 + names.indexOf(rel))), rel);
    }
  });
});
