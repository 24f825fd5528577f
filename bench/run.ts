// `npm run bench`: ipi-pull against OpenSSH's sftp and ssh2's fastGet, and ipi-push against
// OpenSSH's sftp put; same machine, same sshd, same run, contenders alternating. See BENCHMARKS.md for how to read the output.
//
// Everything is a child process timed from spawn to exit (start-up, connect, log-in, transfer,
// exit), so ipi-pull is measured through the built CLI, the product path, with no bench-only
// code in it. All traffic goes to an OpenSSH sshd on 127.0.0.1 started for the run.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { parseSize } from '../src/config/parse.js';
import { writeMeta } from '../src/transfer/partial.js';
import { nativeCryptoAvailable } from '../src/version.js';
import { CLI, childEnv, makeWorkspace, type Workspace } from '../tests/e2e/helpers/cli.js';
import { startFaultProxy } from '../tests/e2e/helpers/fault-proxy.js';
import { sshdAvailable, startSshd, type SftpServerHandle } from '../tests/e2e/helpers/sshd.js';
import { knownHostsLine } from '../tests/e2e/helpers/util.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const RESULTS_DIR = path.join(ROOT, 'bench', 'results');
const FASTGET = path.join(HERE, 'fastget.js');
const PUSH_CLI = path.join(ROOT, 'dist', 'src', 'bin', 'ipi-push.js');
const CIPHER_PROBE = path.join(HERE, 'cipher-probe.js');
const CIPHERS = ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'chacha20-poly1305@openssh.com', 'aes128-ctr'];
const MiB = 1024 * 1024;
const SMALL_FILE_SIZE = 10 * 1024;
const CIPHER = 'aes128-gcm@openssh.com';

// ---------------------------------------------------------------- options

interface Options {
  size: number;
  rounds: number;
  smallFiles: number;
  quick: boolean;
  warmup: boolean;
  cpuProf: boolean;
  ciphers: boolean;
  upload: boolean;
  /** Round trip (ms) of the small-files-over-a-link case; 0 skips it. */
  rtt: number;
  rttFiles: number;
}

const HELP = `usage: npm run bench -- [options]

  --size SIZE        big file size (default 1GiB; units as in .env: 256MiB, 1GiB)
  --rounds N         timed rounds per contender, at least 3 (default 7)
  --small-files N    number of 10 KiB files in the many-small-files case (default 1000; 0 skips it)
  --quick            256MiB, 3 rounds, 200 small files (explicit options still win)
  --no-upload        skip the upload case (ipi-push --once against OpenSSH sftp put)
  --no-warmup        skip the untimed warm-up round
  --cpu-prof         after the rounds, profile one ipi-pull run of each case (node --cpu-prof)
                     and print where the time goes; profiles saved in bench/results/
  --ciphers          after the rounds, time ssh2 receiving the big file with each cipher
                     (aes128-gcm, aes256-gcm, chacha20-poly1305, aes128-ctr), no disk writes
  --rtt MS           also the small files over a link with this round trip (a proxy on
                     127.0.0.1 holding every byte MS/2 each way): ipi-pull against sftp get *,
                     and ipi-push against sftp put * (unless --no-upload)
  --rtt-files N      number of 10 KiB files in that case (default 200)
  -h, --help         this text

Needs OpenSSH's sshd, sftp-server, ssh-keygen and sftp (Debian/Ubuntu: apt-get install
openssh-server openssh-client). Data is created in a temporary folder and removed at the end.`;

function parseArgs(argv: string[]): Options {
  const given: Partial<Options> = {};
  let quick = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--size': given.size = parseSize(value()); break;
      case '--rounds': given.rounds = Number(value()); break;
      case '--small-files': given.smallFiles = Number(value()); break;
      case '--quick': quick = true; break;
      case '--no-warmup': given.warmup = false; break;
      case '--no-upload': given.upload = false; break;
      case '--cpu-prof': given.cpuProf = true; break;
      case '--ciphers': given.ciphers = true; break;
      case '--rtt': given.rtt = Number(value()); break;
      case '--rtt-files': given.rttFiles = Number(value()); break;
      case '-h': case '--help': console.log(HELP); process.exit(0); break;
      default: throw new Error(`unknown option ${a}\n\n${HELP}`);
    }
  }
  const opts: Options = {
    size: given.size ?? (quick ? 256 * MiB : 1024 * MiB),
    rounds: given.rounds ?? (quick ? 3 : 7),
    smallFiles: given.smallFiles ?? (quick ? 200 : 1000),
    quick,
    warmup: given.warmup ?? true,
    cpuProf: given.cpuProf ?? false,
    ciphers: given.ciphers ?? false,
    upload: given.upload ?? true,
    rtt: given.rtt ?? 0,
    rttFiles: given.rttFiles ?? 200,
  };
  if (!Number.isInteger(opts.rounds) || opts.rounds < 3) throw new Error('--rounds must be a whole number of at least 3');
  if (!Number.isInteger(opts.smallFiles) || opts.smallFiles < 0) throw new Error('--small-files must be a whole number');
  if (opts.size < 4 * MiB) throw new Error('--size must be at least 4MiB');
  if (!(opts.rtt >= 0 && opts.rtt <= 1000)) throw new Error('--rtt must be a round trip in milliseconds, 0 to 1000');
  if (!Number.isInteger(opts.rttFiles) || opts.rttFiles < 1) throw new Error('--rtt-files must be a whole number of at least 1');
  return opts;
}

// ---------------------------------------------------------------- measuring a child

interface ChildRun {
  code: number | null;
  wallMs: number;
  /** Peak resident set size in KiB, or null when it could not be measured. */
  rssKb: number | null;
  /** User + system CPU of the child (and children it waited for), or null. */
  cpuMs: number | null;
  /** CPU the sshd serving this run used (its session processes), or null. */
  serverCpuMs: number | null;
  stdout: string;
  stderr: string;
}

/** GNU time reports the child's ru_maxrss; without it we poll VmHWM in /proc. */
const GNU_TIME = '/usr/bin/time';
const useGnuTime = fs.existsSync(GNU_TIME) && spawnSync(GNU_TIME, ['-f', '%M %U %S', '-o', '/dev/null', 'true']).status === 0;
const RSS_METHOD = useGnuTime
  ? 'peak RSS and client CPU from GNU time (%M = the child\'s ru_maxrss, for sftp the larger of sftp and its ssh child; %U+%S include that child)'
  : 'peak RSS polled from /proc/PID/status VmHWM every 20 ms (a lower bound); client CPU not measured';
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100;

/**
 * CPU used so far by the sshd's finished session processes: the listener's cutime + cstime
 * (a session's sshd and sftp-server are waited for by it, so their time lands there).
 */
let sshdPid: number | null = null;
function serverCpuNow(): number | null {
  if (sshdPid === null) return null;
  try {
    const st = fs.readFileSync(`/proc/${sshdPid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[13]) + Number(f[14])) * 1000) / CLK_TCK;
  } catch {
    return null;
  }
}

async function settledServerCpu(before: number | null): Promise<number | null> {
  if (before === null) return null;
  // The session's processes exit just after the client: wait until the figure stops moving.
  let last = serverCpuNow();
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 25));
    const now = serverCpuNow();
    if (now === last && i >= 3) break;
    last = now;
  }
  return last === null ? null : last - before;
}

async function timeChild(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs = 600_000): Promise<ChildRun> {
  const rssFile = path.join(os.tmpdir(), `ipi-bench-rss-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const [bin, argv] = useGnuTime ? [GNU_TIME, ['-f', '%M %U %S', '-o', rssFile, cmd, ...args]] : [cmd, args];
  const serverBefore = serverCpuNow();
  const started = performance.now();
  const child = spawn(bin, argv, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let polled = null as number | null;
  const poll = useGnuTime ? null : setInterval(() => {
    try {
      const m = /VmHWM:\s*(\d+)/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      if (m) polled = Math.max(polled ?? 0, Number(m[1]));
    } catch { /* exited between polls */ }
  }, 20);
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c) => resolve(c));
  });
  const wallMs = performance.now() - started;
  clearTimeout(timer);
  if (poll) clearInterval(poll);
  let rssKb = polled;
  let cpuMs: number | null = null;
  if (useGnuTime) {
    const text = await fsp.readFile(rssFile, 'utf8').catch(() => '');
    await fsp.rm(rssFile, { force: true });
    const m = /^(\d+) ([\d.]+) ([\d.]+)$/.exec(text.trim().split('\n').pop() ?? '');
    rssKb = m ? Number(m[1]) : null;
    cpuMs = m ? Math.round((Number(m[2]) + Number(m[3])) * 1000) : null;
  }
  const serverCpuMs = await settledServerCpu(serverBefore);
  return { code, wallMs, rssKb, cpuMs, serverCpuMs, stdout, stderr };
}

// ---------------------------------------------------------------- data

async function randomFile(file: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(8 * MiB);
  const fh = await fsp.open(file, 'w');
  try {
    for (let pos = 0; pos < size;) {
      const n = Math.min(buf.length, size - pos);
      randomFillSync(buf, 0, n);
      hash.update(buf.subarray(0, n));
      await fh.write(buf, 0, n, pos);
      pos += n;
    }
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

// Whole seconds: SFTP reports mtimes in seconds, and the partial's record must match the server's.
const HOUR_AGO = new Date(Math.floor(Date.now() / 1000) * 1000 - 3600_000);

interface Dataset {
  dir: string;
  remoteDir: string;
  name: string;
  size: number;
  sha256: string;
}

async function makeBigFile(server: SftpServerHandle, folder: string, size: number): Promise<Dataset> {
  const dir = path.join(server.root, folder);
  await fsp.mkdir(dir, { recursive: true });
  const name = `IPI_20240101_${folder}.bin`;
  const sha256 = await randomFile(path.join(dir, name), size);
  await fsp.utimes(path.join(dir, name), HOUR_AGO, HOUR_AGO);
  return { dir, remoteDir: `${server.remoteDir}/${folder}`, name, size, sha256 };
}

async function makeSmallFiles(server: SftpServerHandle, count: number, folder = 'small'): Promise<SmallFiles> {
  const dir = path.join(server.root, folder);
  await fsp.mkdir(dir, { recursive: true });
  const buf = Buffer.allocUnsafe(SMALL_FILE_SIZE);
  for (let i = 0; i < count; i++) {
    const file = path.join(dir, `IPI_20240101_n${String(i).padStart(6, '0')}.dat`);
    randomFillSync(buf);
    await fsp.writeFile(file, buf);
    await fsp.utimes(file, HOUR_AGO, HOUR_AGO);
  }
  return { dir, remoteDir: `${server.remoteDir}/${folder}`, count };
}

interface SmallFiles {
  dir: string;
  remoteDir: string;
  count: number;
}

/** The way to the server for the small-files-over-a-link rows: a delaying proxy's port. */
interface Link {
  port: number;
  rttMs: number;
}

// ---------------------------------------------------------------- contenders

interface Sample {
  wallMs: number;
  rssKb: number | null;
  cpuMs: number | null;
  serverCpuMs: number | null;
  /** Bytes this contender had to move (for MB/s). */
  bytes: number;
  /** Contender-specific figures (publishMs, bytesServed...). */
  extra: Record<string, number>;
}

interface Contender {
  id: string;
  label: string;
  run(): Promise<Sample>;
}

/**
 * The contenders' inputs, read (untimed) just before each run so every contender finds them in
 * the page cache. This machine's host takes idle page cache back within seconds (a 1 GiB file
 * read once: 10 % evicted after 15 s, 92 % after 40 s; read cold 1.44 s, warm 0.06 s), so
 * without this whoever ran second in a pair (OpenSSH, right after ipi-pull or ipi-push in every
 * round) found the file its predecessor had just read, while the first paid the disk reads.
 */
const inputs: string[] = [];

async function warmInputs(): Promise<void> {
  const buf = Buffer.allocUnsafe(8 * MiB);
  for (const input of inputs) {
    const files = (await fsp.stat(input)).isDirectory() ? (await fsp.readdir(input)).map((n) => path.join(input, n)) : [input];
    for (const file of files) {
      const fh = await fsp.open(file, 'r');
      try {
        while ((await fh.read(buf, 0, buf.length)).bytesRead > 0);
      } finally {
        await fh.close();
      }
    }
  }
}

/** Outputs of the previous run, removed (untimed) just before the next one. */
let leftovers: string[] = [];
const allWorkspaces = new Set<string>();
/**
 * The many-small-files outputs are kept until the end: on ext4 without a journal (this
 * project's benchmark machine) every file created after many deletes scans the inodes freed
 * in the last minute (ext4's recently_deleted()), so deleting a thousand files just before a
 * run would slow whichever contender comes next.
 */
let keepUntilEnd = false;

async function clearLeftovers(): Promise<void> {
  if (!keepUntilEnd) for (const p of leftovers) await fsp.rm(p, { recursive: true, force: true });
  leftovers = [];
  keepUntilEnd = false;
  // Nothing of an earlier run is still being written back while the next one is timed.
  spawnSync('sync');
}

function benchWorkspace(server: SftpServerHandle, remoteDir: string): Workspace {
  const ws = makeWorkspace(server, { extra: { SFTP_DIR: remoteDir } });
  // Product defaults for everything except SETTLE_TIME=0 (no one-second settle pause: the
  // files are an hour old), and the workspace's own LOG_FILE, marker and folders.
  delete ws.env.RETRY_DELAYS;
  ws.writeEnv();
  allWorkspaces.add(ws.dir);
  leftovers.push(ws.dir);
  return ws;
}

function fail(what: string, r: ChildRun): never {
  throw new Error(`${what} failed (exit ${r.code})\n--- stderr (last 2000 chars) ---\n${r.stderr.slice(-2000)}\n--- stdout ---\n${r.stdout.slice(-2000)}`);
}

interface CliSummary {
  outcome: string;
  files: Array<{ name: string; size: number; sha256: string; durationMs: number; bytesTransferred: number; resumedFrom: number; publishMs: number }>;
}

async function runIpiPull(ws: Workspace, what: string, nodeArgs: string[] = []): Promise<{ run: ChildRun; summary: CliSummary }> {
  const run = await timeChild(process.execPath, [...nodeArgs, CLI, '--json'], ws.dir, childEnv(ws.dir));
  if (run.code !== 0) fail(what, run);
  return { run, summary: JSON.parse(run.stdout) as CliSummary };
}

function ipiPullBig(server: SftpServerHandle, data: Dataset, label: string, id: string): Contender {
  return {
    id,
    label,
    async run() {
      const ws = benchWorkspace(server, data.remoteDir);
      const { run, summary } = await runIpiPull(ws, label);
      const f = summary.files[0];
      if (!f || f.sha256 !== data.sha256) throw new Error(`${label}: delivered ${JSON.stringify(f)}, expected sha256 ${data.sha256}`);
      // Download and verification: the whole run minus the publish step, which is reported on its own line.
      return sampleOf(run, data.size, { publishMs: f.publishMs, runMs: run.wallMs }, run.wallMs - f.publishMs);
    },
  };
}

function sftpArgs(server: SftpServerHandle, knownHosts: string, batch: string, port = server.port): string[] {
  return [
    '-q', '-F', '/dev/null', '-c', CIPHER,
    '-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes',
    '-i', server.clientKeyPath, '-P', String(port), '-b', batch, `${server.user}@${server.host}`,
  ];
}

/** sftp's batch language: quote paths with spaces (a quoted wildcard would not be expanded, so only when needed). */
const q = (p: string): string => (/[\s"'\\]/.test(p) ? `"${p.replace(/(["\\])/g, '\\$1')}"` : p);

/** A folder for one sftp run, with a known_hosts naming the server at `port` (sshd's own, or a proxy's). */
async function opensshWorkspace(server: SftpServerHandle, port = server.port): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ipi-bench-sftp-'));
  allWorkspaces.add(dir);
  leftovers.push(dir);
  // The line is "[host]:port type key"; the same key at another port.
  await fsp.writeFile(path.join(dir, 'known_hosts'), `${knownHostsLine(port, server.knownHostsLine.replace(/^\S+\s+/, ''))}\n`);
  return dir;
}

/** `sftp -b` running `batch` (written into dir) against the bench server; fails the bench on a non-zero exit. */
async function runSftpBatch(server: SftpServerHandle, dir: string, batch: string, what: string, port = server.port): Promise<ChildRun> {
  await fsp.writeFile(path.join(dir, 'batch'), batch);
  const run = await timeChild('sftp', sftpArgs(server, path.join(dir, 'known_hosts'), path.join(dir, 'batch'), port), dir, childEnv(dir));
  if (run.code !== 0) fail(what, run);
  return run;
}

/** A child's measurements as a sample of `bytes` moved. */
function sampleOf(run: ChildRun, bytes: number, extra: Record<string, number> = {}, wallMs = run.wallMs): Sample {
  return { wallMs, rssKb: run.rssKb, cpuMs: run.cpuMs, serverCpuMs: run.serverCpuMs, bytes, extra };
}

function opensshBig(server: SftpServerHandle, data: Dataset): Contender {
  return {
    id: 'openssh',
    label: 'OpenSSH sftp get',
    async run() {
      const dir = await opensshWorkspace(server);
      const out = path.join(dir, data.name);
      const run = await runSftpBatch(server, dir, `get ${q(`${data.remoteDir}/${data.name}`)} ${q(out)}\n`, 'OpenSSH sftp');
      const size = (await fsp.stat(out)).size;
      if (size !== data.size) throw new Error(`OpenSSH sftp wrote ${size} bytes, expected ${data.size}`);
      return sampleOf(run, data.size);
    },
  };
}

function fastGetBig(server: SftpServerHandle, data: Dataset): Contender {
  return {
    id: 'fastget',
    label: 'ssh2 fastGet (defaults)',
    async run() {
      const dir = await opensshWorkspace(server);
      const out = path.join(dir, data.name);
      const args = [FASTGET, server.host, String(server.port), server.user, server.clientKeyPath, server.hostKeyFingerprint, `${data.remoteDir}/${data.name}`, out];
      const run = await timeChild(process.execPath, args, dir, childEnv(dir));
      if (run.code !== 0) fail('ssh2 fastGet', run);
      const size = (await fsp.stat(out)).size;
      if (size !== data.size) throw new Error(`fastGet wrote ${size} bytes, expected ${data.size}`);
      return sampleOf(run, data.size);
    },
  };
}

/** The first half of the file, rounded down to whole 2 MiB chunks, as an interrupted run leaves it. */
function ipiPullResume(server: SftpServerHandle, data: Dataset): Contender {
  const half = Math.floor(data.size / 2 / (2 * MiB)) * 2 * MiB;
  return {
    id: 'resume',
    label: 'ipi-pull resume from 50 %',
    async run() {
      const ws = benchWorkspace(server, data.remoteDir);
      await fsp.mkdir(ws.localDir, { recursive: true });
      const part = path.join(ws.localDir, `${data.name}.part`);
      await copyPrefix(path.join(data.dir, data.name), part, half);
      const st = await fsp.stat(path.join(data.dir, data.name));
      await writeMeta(`${part}.json`, { name: data.name, remoteSize: data.size, remoteMtimeMs: Math.floor(st.mtimeMs / 1000) * 1000, startedAt: new Date().toISOString() });
      spawnSync('sync');
      const servedBefore = await server.bytesServed(data.name);
      const { run, summary } = await runIpiPull(ws, 'ipi-pull resume');
      const served = (await server.bytesServed(data.name)) - servedBefore;
      const f = summary.files[0];
      if (!f || f.sha256 !== data.sha256) throw new Error(`resume: delivered ${JSON.stringify(f)}, expected sha256 ${data.sha256}`);
      if (f.resumedFrom !== half) throw new Error(`resume: resumed from byte ${f.resumedFrom}, expected ${half}`);
      return sampleOf(run, data.size - half, {
        publishMs: f.publishMs, runMs: run.wallMs, bytesServed: served, servedPct: (served / data.size) * 100, resumedFrom: half,
      }, run.wallMs - f.publishMs);
    },
  };
}

async function copyPrefix(from: string, to: string, length: number): Promise<void> {
  const src = await fsp.open(from, 'r');
  const dst = await fsp.open(to, 'w');
  const buf = Buffer.allocUnsafe(8 * MiB);
  try {
    for (let pos = 0; pos < length;) {
      const { bytesRead } = await src.read(buf, 0, Math.min(buf.length, length - pos), pos);
      await dst.write(buf, 0, bytesRead, pos);
      pos += bytesRead;
    }
  } finally {
    await src.close();
    await dst.close();
  }
}

function ipiPullSmall(server: SftpServerHandle, small: SmallFiles, link?: Link): Contender {
  const count = small.count;
  return {
    id: link ? 'rtt-ipi' : 'small-ipi',
    label: `ipi-pull ${count} x 10 KiB${link ? ` (${link.rttMs} ms round trip)` : ''}`,
    async run() {
      const ws = benchWorkspace(server, small.remoteDir);
      if (link) {
        ws.env.SFTP_PORT = String(link.port);
        ws.env.SFTP_HOST_KEY = server.hostKeyFingerprint;
        ws.writeEnv();
      }
      keepUntilEnd = true;
      const { run, summary } = await runIpiPull(ws, 'ipi-pull small files');
      if (summary.files.length !== count) throw new Error(`ipi-pull delivered ${summary.files.length} of ${count} small files`);
      if (ws.marker() !== `IPI_20240101_n${String(count - 1).padStart(6, '0')}.dat`) throw new Error(`marker is ${ws.marker()} after the small files`);
      const publishMs = summary.files.reduce((n, f) => n + f.publishMs, 0);
      // Every durability step is inside the timed run: publish, history and marker per file.
      return sampleOf(run, count * SMALL_FILE_SIZE, { publishMs, files: count });
    },
  };
}

function opensshSmall(server: SftpServerHandle, small: SmallFiles, link?: Link): Contender {
  const count = small.count;
  return {
    id: link ? 'rtt-openssh' : 'small-openssh',
    label: `OpenSSH sftp get * (${count} files${link ? `, ${link.rttMs} ms round trip` : ''})`,
    async run() {
      const dir = await opensshWorkspace(server, link?.port);
      keepUntilEnd = true;
      const out = path.join(dir, 'out');
      await fsp.mkdir(out);
      if (/[\s"'\\*?[]/.test(small.remoteDir)) throw new Error(`the temporary folder ${small.remoteDir} has spaces or quotes: sftp cannot expand a wildcard there; set TMPDIR to a plain path`);
      const run = await runSftpBatch(server, dir, `get ${small.remoteDir}/* ${q(`${out}/`)}\n`, 'OpenSSH sftp (small files)', link?.port);
      const n = (await fsp.readdir(out)).length;
      if (n !== count) throw new Error(`OpenSSH sftp fetched ${n} of ${count} small files`);
      return sampleOf(run, count * SMALL_FILE_SIZE, { files: count });
    },
  };
}

/**
 * `ipi-push --once --json` through `port`, its WATCH_DIR holding hard links of `sources`, into a
 * fresh remote folder (returned as the server's local path); fails the bench on a non-zero exit.
 */
async function runIpiPush(server: SftpServerHandle, sources: readonly string[], verify: 'size' | 'sha256', port: number, what: string): Promise<{ run: ChildRun; remote: string }> {
  const dir = await opensshWorkspace(server, port);
  const watchDir = path.join(dir, 'outgoing');
  await fsp.mkdir(watchDir);
  for (const src of sources) await fsp.link(src, path.join(watchDir, path.basename(src)));
  const remoteFolder = `up-${path.basename(dir)}`;
  const remote = path.join(server.root, remoteFolder);
  leftovers.push(remote);
  const env = {
    ...childEnv(dir),
    SFTP_HOST: server.host, SFTP_PORT: String(port), SFTP_USER: server.user, SFTP_KEY: server.clientKeyPath,
    SFTP_KNOWN_HOSTS: path.join(dir, 'known_hosts'), WATCH_DIR: watchDir, SFTP_UPLOAD_DIR: `${server.remoteDir}/${remoteFolder}`,
    STATE_FILE: path.join(dir, 'state.json'), PUSH_SETTLE: '0', VERIFY: verify, LOG_FILE: 'none',
  };
  const run = await timeChild(process.execPath, [PUSH_CLI, '--once', '--json'], dir, env);
  if (run.code !== 0) fail(what, run);
  return { run, remote };
}

/**
 * ipi-push --once uploading the big file (a hard link of the server's copy in its own
 * WATCH_DIR) into a fresh remote folder. VERIFY=size, so it does what `sftp put` does (which
 * verifies nothing); the server-side sha256sum of VERIFY=sha256 is timed in its own row.
 */
function ipiPushBig(server: SftpServerHandle, data: Dataset, verify: 'size' | 'sha256'): Contender {
  return {
    id: verify === 'size' ? 'push' : 'push-sha256',
    label: `ipi-push ${human(data.size)} (upload, VERIFY=${verify})`,
    async run() {
      const { run, remote } = await runIpiPush(server, [path.join(data.dir, data.name)], verify, server.port, 'ipi-push');
      const got = await fsp.stat(path.join(remote, data.name)).catch(() => null);
      if (got?.size !== data.size) throw new Error(`ipi-push left ${got?.size ?? 'no'} bytes on the server, expected ${data.size}`);
      return sampleOf(run, data.size);
    },
  };
}

/**
 * ipi-push --once uploading the small files over the delaying link (hard links of the server's
 * copies in its own WATCH_DIR) into a fresh remote folder. VERIFY=size compares with `sftp put`
 * (which verifies nothing); VERIFY=sha256, the default, adds the server's `sha256sum` of every
 * file. Every step is in the timed run: temporary name, rename, state, history.
 */
function ipiPushSmall(server: SftpServerHandle, small: SmallFiles, link: Link, verify: 'size' | 'sha256'): Contender {
  const count = small.count;
  return {
    id: verify === 'size' ? 'rtt-push' : 'rtt-push-sha256',
    label: `ipi-push ${count} x 10 KiB (${link.rttMs} ms round trip${verify === 'sha256' ? ', VERIFY=sha256' : ''})`,
    async run() {
      const sources = (await fsp.readdir(small.dir)).map((name) => path.join(small.dir, name));
      const { run, remote } = await runIpiPush(server, sources, verify, link.port, 'ipi-push small files');
      const n = (await fsp.readdir(remote)).length;
      if (n !== count) throw new Error(`ipi-push left ${n} of ${count} small files on the server`);
      return sampleOf(run, count * SMALL_FILE_SIZE, { files: count });
    },
  };
}

function opensshPutSmall(server: SftpServerHandle, small: SmallFiles, link: Link): Contender {
  const count = small.count;
  return {
    id: 'rtt-openssh-put',
    label: `OpenSSH sftp put * (${count} files, ${link.rttMs} ms round trip)`,
    async run() {
      const dir = await opensshWorkspace(server, link.port);
      const remoteFolder = `put-${path.basename(dir)}`;
      leftovers.push(path.join(server.root, remoteFolder));
      if (/[\s"'\\*?[]/.test(small.dir)) throw new Error(`the temporary folder ${small.dir} has spaces or quotes: sftp cannot expand a wildcard there; set TMPDIR to a plain path`);
      const to = `${server.remoteDir}/${remoteFolder}`;
      const run = await runSftpBatch(server, dir, `mkdir ${q(to)}\nput ${small.dir}/* ${q(`${to}/`)}\n`, 'OpenSSH sftp put (small files)', link.port);
      const n = (await fsp.readdir(path.join(server.root, remoteFolder))).length;
      if (n !== count) throw new Error(`OpenSSH sftp put left ${n} of ${count} small files on the server`);
      return sampleOf(run, count * SMALL_FILE_SIZE, { files: count });
    },
  };
}

function opensshPut(server: SftpServerHandle, data: Dataset): Contender {
  return {
    id: 'openssh-put',
    label: 'OpenSSH sftp put',
    async run() {
      const dir = await opensshWorkspace(server);
      const remoteName = `put-${path.basename(dir)}.bin`;
      leftovers.push(path.join(server.root, remoteName));
      const run = await runSftpBatch(server, dir, `put ${q(path.join(data.dir, data.name))} ${q(`${server.remoteDir}/${remoteName}`)}\n`, 'OpenSSH sftp put');
      const size = (await fsp.stat(path.join(server.root, remoteName))).size;
      if (size !== data.size) throw new Error(`OpenSSH sftp put left ${size} bytes, expected ${data.size}`);
      return sampleOf(run, data.size);
    },
  };
}

// ---------------------------------------------------------------- statistics and output

function medianOf(xs: Array<number | null>): number | null {
  const v = xs.filter((x): x is number => x !== null);
  return v.length ? median(v) : null;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

interface Row {
  id: string;
  label: string;
  samples: Sample[];
  medianWallMs: number;
  minWallMs: number;
  maxWallMs: number;
  medianMBps: number;
  /** Median wall time / the matching OpenSSH median (null: no OpenSSH counterpart). */
  ratioToOpenssh: number | null;
  peakRssMB: number | null;
  medianRssMB: number | null;
  medianCpuMs: number | null;
  medianServerCpuMs: number | null;
  note: string;
}

const s2 = (ms: number): string => (ms / 1000).toFixed(2);
const mb = (kb: number | null): string => (kb === null ? 'n/a' : (kb / 1024).toFixed(0));
const human = (n: number): string => (n >= 1024 ** 3 ? `${+(n / 1024 ** 3).toFixed(2)} GiB` : `${+(n / MiB).toFixed(1)} MiB`);

function makeRow(c: Contender, samples: Sample[], note: string): Row {
  const walls = samples.map((s) => s.wallMs);
  const rss = samples.map((s) => s.rssKb).filter((x): x is number => x !== null);
  const med = median(walls);
  return {
    id: c.id, label: c.label, samples,
    medianWallMs: med, minWallMs: Math.min(...walls), maxWallMs: Math.max(...walls),
    medianMBps: median(samples.map((s) => s.bytes / 1e6 / (s.wallMs / 1000))),
    ratioToOpenssh: null,
    peakRssMB: rss.length ? Math.max(...rss) / 1024 : null,
    medianRssMB: rss.length ? median(rss) / 1024 : null,
    medianCpuMs: medianOf(samples.map((s) => s.cpuMs)),
    medianServerCpuMs: medianOf(samples.map((s) => s.serverCpuMs)),
    note,
  };
}

function table(rows: Row[]): string {
  const head = ['contender', 'median MB/s', 'median s', 'min-max s', 'vs OpenSSH', 'peak RSS MB', 'client CPU s', 'server CPU s', 'notes'];
  const body = rows.map((r) => [
    r.label,
    r.medianMBps.toFixed(0),
    s2(r.medianWallMs),
    `${s2(r.minWallMs)}-${s2(r.maxWallMs)}`,
    r.ratioToOpenssh === null ? '' : `${r.ratioToOpenssh.toFixed(2)} x`,
    r.peakRssMB === null ? 'n/a' : r.peakRssMB.toFixed(0),
    r.medianCpuMs === null ? '' : s2(r.medianCpuMs),
    r.medianServerCpuMs === null ? '' : s2(r.medianServerCpuMs),
    r.note,
  ]);
  const all = [head, ...body];
  const width = head.map((_, i) => Math.max(...all.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((cell, i) => (i === 0 || i === row.length - 1 ? cell.padEnd(width[i]!) : cell.padStart(width[i]!))).join('  ').trimEnd();
  return [line(head), width.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

// ---------------------------------------------------------------- the run

function toolVersion(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0] ?? 'unknown';
}

/** The filesystem type of the mount holding dir, from /proc/mounts (stat -f says ext2/ext3 for ext4). */
function fsTypeOf(dir: string): string {
  try {
    const real = fs.realpathSync(dir);
    let best = { at: '', type: 'unknown' };
    for (const line of fs.readFileSync('/proc/mounts', 'utf8').split('\n')) {
      const [, at, type] = line.split(' ');
      if (!at || !type) continue;
      const mount = at.replace(/\\040/g, ' ');
      if ((real === mount || real.startsWith(mount.endsWith('/') ? mount : `${mount}/`)) && mount.length >= best.at.length) best = { at: mount, type };
    }
    return best.type;
  } catch {
    return 'unknown';
  }
}

/** Can this filesystem clone (reflink)? Publishing with PUBLISH_MODE=copy is then nearly free. */
function canClone(dir: string): boolean {
  const a = path.join(dir, `.clone-probe-${process.pid}`);
  const b = `${a}-2`;
  try {
    fs.writeFileSync(a, 'probe');
    fs.copyFileSync(a, b, fs.constants.COPYFILE_FICLONE_FORCE);
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(a, { force: true });
    fs.rmSync(b, { force: true });
  }
}

function negotiatedCipher(server: SftpServerHandle, remoteDir: string): string {
  // One tiny dry run with debug logging: the CLI logs what ssh2 negotiated.
  const ws = benchWorkspace(server, remoteDir);
  const r = spawnSync(process.execPath, [CLI, '--dry-run', '--log-level', 'debug'], { cwd: ws.dir, env: childEnv(ws.dir), encoding: 'utf8' });
  return /cipher (\S+)/.exec(`${r.stdout}${r.stderr}`)?.[1] ?? 'unknown';
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  if (!sshdAvailable() || spawnSync('sftp', ['-V']).error) {
    console.error('npm run bench needs OpenSSH: sshd, sftp-server and ssh-keygen (package openssh-server) and the sftp client (openssh-client).');
    console.error('Debian/Ubuntu: apt-get install openssh-server openssh-client');
    process.exit(1);
  }
  if (!fs.existsSync(CLI) || !fs.existsSync(PUSH_CLI) || !fs.existsSync(FASTGET) || !fs.existsSync(CIPHER_PROBE)) {
    console.error(`built files missing (${CLI}): run through \`npm run bench\`, which builds first`);
    process.exit(1);
  }
  const startedAt = new Date();
  const t0 = performance.now();
  const log = (msg: string) => console.log(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${msg}`);

  log(`starting OpenSSH sshd on 127.0.0.1 (${toolVersion('ssh', ['-V'])})`);
  const server = await startSshd({ passphraseKey: false });
  try {
    sshdPid = Number(fs.readFileSync(path.join(server.tempDir, 'sshd.pid'), 'utf8').trim()) || null;
  } catch {
    sshdPid = null;
  }
  let interrupted = false;
  let stopProxy: (() => Promise<void>) | null = null;
  const cleanup = async () => {
    await stopProxy?.().catch(() => {});
    await server.stop().catch(() => {});
    for (const d of allWorkspaces) await fsp.rm(d, { recursive: true, force: true }).catch(() => {});
  };
  process.once('SIGINT', () => {
    interrupted = true;
    console.error('\ninterrupted: cleaning up');
    void cleanup().then(() => process.exit(130));
  });

  try {
    log(`sshd on 127.0.0.1:${server.port}; creating test data in ${server.root}`);
    const big = await makeBigFile(server, 'big', opts.size);
    log(`  ${human(big.size)} random file ${big.name}`);
    const rssSize = opts.size > 256 * MiB ? 256 * MiB : Math.max(4 * MiB, Math.floor(opts.size / 4 / MiB) * MiB);
    const mid = await makeBigFile(server, 'mid', rssSize);
    log(`  ${human(mid.size)} random file ${mid.name} (peak RSS must not grow with file size)`);
    const small = opts.smallFiles > 0 ? await makeSmallFiles(server, opts.smallFiles) : null;
    if (small) log(`  ${opts.smallFiles} random files of 10 KiB`);
    const rttSmall = opts.rtt > 0 ? await makeSmallFiles(server, opts.rttFiles, 'small-rtt') : null;
    let link: Link | undefined;
    if (rttSmall) {
      const proxy = await startFaultProxy(server.port);
      proxy.latency(opts.rtt / 2);
      stopProxy = () => proxy.stop();
      link = { port: proxy.port, rttMs: opts.rtt };
      log(`  ${opts.rttFiles} random files of 10 KiB, fetched through a proxy on 127.0.0.1:${proxy.port} holding every byte ${opts.rtt / 2} ms each way`);
    }
    spawnSync('sync');

    const cipher = negotiatedCipher(server, big.remoteDir);
    const workDir = os.tmpdir();
    const fsType = fsTypeOf(workDir);
    const clone = canClone(workDir);
    await clearLeftovers();

    const contenders: Contender[] = [
      ipiPullBig(server, big, `ipi-pull ${human(big.size)} (download+verify)`, 'ipi-pull'),
      opensshBig(server, big),
      fastGetBig(server, big),
      ipiPullResume(server, big),
      ipiPullBig(server, mid, `ipi-pull ${human(mid.size)} (download+verify)`, 'ipi-pull-mid'),
    ];
    if (small) contenders.push(ipiPullSmall(server, small), opensshSmall(server, small));
    if (rttSmall) contenders.push(ipiPullSmall(server, rttSmall, link), opensshSmall(server, rttSmall, link));
    if (opts.upload) contenders.push(ipiPushBig(server, big, 'size'), opensshPut(server, big), ipiPushBig(server, big, 'sha256'));
    if (opts.upload && rttSmall) contenders.push(ipiPushSmall(server, rttSmall, link!, 'size'), ipiPushSmall(server, rttSmall, link!, 'sha256'), opensshPutSmall(server, rttSmall, link!));

    const samples = new Map<string, Sample[]>(contenders.map((c) => [c.id, []]));
    const describe = (c: Contender, s: Sample): string => {
      const parts = [`${s2(s.wallMs)} s`, `${(s.bytes / 1e6 / (s.wallMs / 1000)).toFixed(0)} MB/s`, `RSS ${mb(s.rssKb)} MB`];
      if (s.extra.publishMs !== undefined && c.id !== 'small-ipi' && c.id !== 'rtt-ipi') parts.push(`publish ${s2(s.extra.publishMs)} s`);
      if (s.extra.servedPct !== undefined) parts.push(`server read ${s.extra.servedPct.toFixed(2)} % of the file`);
      return parts.join(', ');
    };
    inputs.push(path.join(big.dir, big.name), path.join(mid.dir, mid.name), ...[small, rttSmall].flatMap((d) => (d ? [d.dir] : [])));
    const runOne = async (c: Contender, tag: string): Promise<Sample> => {
      await clearLeftovers();
      await warmInputs();
      const s = await c.run();
      log(`${tag} ${c.label}: ${describe(c, s)}`);
      return s;
    };

    if (opts.warmup) {
      log('warm-up round (not counted): every contender once, so programs and modules are in the page cache');
      for (const c of contenders) await runOne(c, '  warm-up');
    }
    for (let round = 0; round < opts.rounds; round++) {
      // Alternate: each round starts with the next contender, so none is always first or last,
      // and every other round runs backwards, so each contender follows each of its two
      // neighbours in turn. What ran just before measurably matters on this machine
      // (BENCHMARKS.md, "Session 11"): with the order only rotated, OpenSSH's put always ran
      // right after ipi-push, and ipi-push after the 13 s small-file get over the slow link.
      const base = round % 2 === 1 ? [...contenders].reverse() : contenders;
      const order = base.map((_, i) => base[(i + round) % base.length]!);
      log(`round ${round + 1}/${opts.rounds}: ${order.map((c) => c.id).join(', ')}`);
      for (const c of order) samples.get(c.id)!.push(await runOne(c, '  '));
    }
    await clearLeftovers();

    // ------------------------------------------------ results
    const rows: Row[] = [];
    const rowOf = (id: string) => rows.find((r) => r.id === id);
    for (const c of contenders) {
      const ss = samples.get(c.id)!;
      let note = '';
      if (c.id === 'ipi-pull' || c.id === 'ipi-pull-mid') note = `whole run ${s2(median(ss.map((s) => s.extra.runMs!)))} s incl. publish`;
      if (c.id === 'resume') note = `server read ${median(ss.map((s) => s.extra.servedPct!)).toFixed(2)} % of the file; MB/s over the rest`;
      if (['small-ipi', 'small-openssh', 'rtt-ipi', 'rtt-openssh', 'rtt-push', 'rtt-push-sha256', 'rtt-openssh-put'].includes(c.id)) note = `${Math.round(ss[0]!.extra.files! / (median(ss.map((s) => s.wallMs)) / 1000))} files/s`;
      if (c.id === 'small-ipi') note += `; publish+marker+history per file included (publish ${(median(ss.map((s) => s.extra.publishMs!)) / opts.smallFiles).toFixed(2)} ms/file)`;
      rows.push(makeRow(c, ss, note));
      if (c.id === 'ipi-pull') {
        const pub = ss.map((s) => s.extra.publishMs!);
        const pubSamples = ss.map((s) => ({ wallMs: s.extra.publishMs!, rssKb: null, cpuMs: null, serverCpuMs: null, bytes: s.bytes, extra: {} }));
        rows.push({ ...makeRow({ id: 'publish', label: `  publish (PUBLISH_MODE=copy)`, run: c.run }, pubSamples, `${clone ? 'reflink clone' : `full copy + fsync: ${fsType} cannot clone`}; not in the row above`), medianWallMs: median(pub) });
      }
    }
    const ossh = rowOf('openssh')!;
    for (const r of rows) {
      if (['ipi-pull', 'openssh', 'fastget'].includes(r.id)) r.ratioToOpenssh = r.medianWallMs / ossh.medianWallMs;
      if (r.id === 'small-ipi' || r.id === 'small-openssh') r.ratioToOpenssh = r.medianWallMs / rowOf('small-openssh')!.medianWallMs;
      if (r.id === 'rtt-ipi' || r.id === 'rtt-openssh') r.ratioToOpenssh = r.medianWallMs / rowOf('rtt-openssh')!.medianWallMs;
      if (r.id === 'rtt-push' || r.id === 'rtt-push-sha256' || r.id === 'rtt-openssh-put') r.ratioToOpenssh = r.medianWallMs / rowOf('rtt-openssh-put')!.medianWallMs;
      if (['push', 'push-sha256', 'openssh-put'].includes(r.id)) r.ratioToOpenssh = r.medianWallMs / rowOf('openssh-put')!.medianWallMs;
    }

    const ipi = rowOf('ipi-pull')!;
    const fg = rowOf('fastget')!;
    const resume = rowOf('resume')!;
    const ipiMid = rowOf('ipi-pull-mid')!;
    const ipiRows = rows.filter((r) => ['ipi-pull', 'ipi-pull-mid', 'resume', 'small-ipi', 'rtt-ipi', 'push', 'push-sha256', 'rtt-push', 'rtt-push-sha256'].includes(r.id));
    const ipiPeak = Math.max(...ipiRows.map((r) => r.peakRssMB ?? 0));
    const servedPct = Math.max(...resume.samples.map((s) => s.extra.servedPct!));
    const targets: Array<{ name: string; pass: boolean; detail: string }> = [
      {
        name: `${human(big.size)} download: ipi-pull <= 1.1 x OpenSSH sftp`,
        pass: ipi.medianWallMs <= 1.1 * ossh.medianWallMs,
        detail: `${s2(ipi.medianWallMs)} s vs ${s2(ossh.medianWallMs)} s = ${(ipi.medianWallMs / ossh.medianWallMs).toFixed(2)} x (limit ${s2(1.1 * ossh.medianWallMs)} s)`,
      },
      {
        name: `${human(big.size)} download: ipi-pull >= 3 x faster than ssh2 fastGet`,
        pass: fg.medianWallMs >= 3 * ipi.medianWallMs,
        detail: `${s2(fg.medianWallMs)} s / ${s2(ipi.medianWallMs)} s = ${(fg.medianWallMs / ipi.medianWallMs).toFixed(1)} x`,
      },
      {
        name: `peak RSS of every ipi-pull${opts.upload ? ' and ipi-push' : ''} run <= 150 MB`,
        pass: ipiPeak <= 150,
        detail: `highest ${ipiPeak.toFixed(0)} MB`,
      },
      {
        name: `peak RSS does not grow with file size (${human(mid.size)} vs ${human(big.size)}, median, within 15 MB)`,
        pass: (ipi.medianRssMB ?? 0) - (ipiMid.medianRssMB ?? 0) <= 15,
        detail: `${(ipiMid.medianRssMB ?? 0).toFixed(0)} MB vs ${(ipi.medianRssMB ?? 0).toFixed(0)} MB`,
      },
      {
        name: 'resume from 50 %: server reads <= 51 % of the file',
        pass: servedPct <= 51,
        detail: `worst round ${servedPct.toFixed(3)} % (${human(Math.max(...resume.samples.map((s) => s.extra.bytesServed!)))})`,
      },
    ];
    if (small) {
      const si = rowOf('small-ipi')!;
      const so = rowOf('small-openssh')!;
      targets.push({
        name: `${opts.smallFiles} small files: ipi-pull <= 3 x OpenSSH sftp`,
        pass: si.medianWallMs <= 3 * so.medianWallMs,
        detail: `${s2(si.medianWallMs)} s vs ${s2(so.medianWallMs)} s = ${(si.medianWallMs / so.medianWallMs).toFixed(2)} x`,
      });
    }

    if (opts.upload) {
      const push = rowOf('push')!;
      const put = rowOf('openssh-put')!;
      targets.push({
        name: `${human(big.size)} upload: ipi-push <= 1.2 x OpenSSH sftp put`,
        pass: push.medianWallMs <= 1.2 * put.medianWallMs,
        detail: `${s2(push.medianWallMs)} s vs ${s2(put.medianWallMs)} s = ${(push.medianWallMs / put.medianWallMs).toFixed(2)} x (limit ${s2(1.2 * put.medianWallMs)} s)`,
      });
    }

    const header = [
      `ipi-pull benchmark, ${startedAt.toISOString()}: ${human(big.size)} file, ${opts.rounds} rounds${small ? `, ${opts.smallFiles} files of 10 KiB` : ''}`,
      `machine: ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), ${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB RAM, ${os.type()} ${os.release()}; working folder ${workDir} on ${fsType}`,
      `server: ${toolVersion('ssh', ['-V'])} sshd on 127.0.0.1 (sftp-server); cipher ${CIPHER} for OpenSSH sftp, ipi-pull negotiated ${cipher}`,
      `client: node ${process.versions.node}, ssh2 ${sshVersion()}, native crypto binding ${nativeCryptoAvailable() ? 'in use' : 'NOT built (slow)'}`,
      'ipi-pull: the built CLI (dist/src/bin/ipi-pull.js --json) with product defaults, except SETTLE_TIME=0 (no settle pause; the files are an hour old)',
      ...(opts.rtt > 0 ? [`link: the ${opts.rttFiles}-file rows go through a proxy on 127.0.0.1 that holds every byte ${opts.rtt / 2} ms each way (a ${opts.rtt} ms round trip, TCP_NODELAY both sides)`] : []),
      ...(opts.upload ? ['ipi-push: the built CLI (dist/src/bin/ipi-push.js --once --json) with product defaults, except PUSH_SETTLE=0; VERIFY=size to match sftp put (VERIFY=sha256 in its own row)'] : []),
      `times: wall clock of each child process, spawn to exit, median of ${opts.rounds}; contenders alternate (each round starts one later, every other round runs backwards); before each run (untimed) the previous large outputs are removed, \`sync\` is run and the inputs are read into the page cache; small-file outputs are removed at the end; ${RSS_METHOD}`,
    ];
    const out = [...header, '', table(rows), '', 'targets:', ...targets.map((t) => `  [${t.pass ? 'PASS' : 'MISS'}] ${t.name}: ${t.detail}`)].join('\n');
    console.log(`\n${out}\n`);

    await fsp.mkdir(RESULTS_DIR, { recursive: true });
    const file = path.join(RESULTS_DIR, `bench-${startedAt.toISOString().replace(/[:.]/g, '-')}-${human(big.size).replace(/[ .]/g, '')}.json`);
    const json = {
      startedAt: startedAt.toISOString(),
      durationS: Math.round((performance.now() - t0) / 1000),
      options: opts,
      environment: {
        cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, totalMemBytes: os.totalmem(), kernel: `${os.type()} ${os.release()}`,
        node: process.versions.node, ssh2: sshVersion(), nativeCrypto: nativeCryptoAvailable(), openssh: toolVersion('ssh', ['-V']),
        cipherOpenssh: CIPHER, cipherIpiPull: cipher, workDir, fsType, reflink: clone, rssMethod: RSS_METHOD,
        ipiPullSettings: 'defaults, SETTLE_TIME=0',
      },
      files: { big: { name: big.name, size: big.size, sha256: big.sha256 }, mid: { name: mid.name, size: mid.size }, smallFiles: opts.smallFiles, smallFileSize: SMALL_FILE_SIZE, rttFiles: opts.rtt > 0 ? opts.rttFiles : 0 },
      rows: rows.map((r) => ({ ...r, medianS: r.medianWallMs / 1000 })),
      targets,
      table: out,
    } as Record<string, unknown>;

    let cipherRows: Row[] = [];
    if (opts.ciphers) {
      cipherRows = await cipherScan(server, big, opts.rounds, log);
      const text = table(cipherRows);
      console.log(`\nssh2 receiving ${human(big.size)} per cipher (reads in flight as the engine, bytes discarded; ssh2 negotiates ${cipher} by default):\n${text}\n`);
      json.ciphers = cipherRows.map((r) => ({ ...r, samples: r.samples }));
      json.cipherTable = text;
    }
    await fsp.writeFile(file, `${JSON.stringify(json, null, 2)}\n`);
    log(`results written to ${path.relative(process.cwd(), file) || file}`);

    if (opts.cpuProf) await profileRuns(server, big, small, log);
  } finally {
    if (!interrupted) {
      log('stopping sshd and removing the test data');
      await cleanup();
    }
  }
}

/** ssh2 receiving the big file with each cipher, alternating, `rounds` each. */
async function cipherScan(server: SftpServerHandle, big: Dataset, rounds: number, log: (m: string) => void): Promise<Row[]> {
  const samples = new Map<string, Sample[]>(CIPHERS.map((c) => [c, []]));
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < CIPHERS.length; i++) {
      const c = CIPHERS[(i + round) % CIPHERS.length]!;
      spawnSync('sync');
      const dir = await opensshWorkspace(server);
      const run = await timeChild(process.execPath, [CIPHER_PROBE, server.host, String(server.port), server.user, server.clientKeyPath, server.hostKeyFingerprint, `${big.remoteDir}/${big.name}`, c], dir, childEnv(dir));
      if (run.code !== 0) fail(`cipher probe ${c}`, run);
      const s = sampleOf(run, big.size);
      samples.get(c)!.push(s);
      log(`  cipher ${c}: ${s2(s.wallMs)} s, client CPU ${s.cpuMs === null ? 'n/a' : s2(s.cpuMs)} s`);
    }
  }
  const rows = CIPHERS.map((c) => makeRow({ id: c, label: c, run: async () => samples.get(c)![0]! }, samples.get(c)!, ''));
  for (const r of rows) r.ratioToOpenssh = null;
  return rows;
}

function sshVersion(): string {
  try {
    return (JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', 'ssh2', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** One profiled ipi-pull run per case; prints the functions with the most self time. */
async function profileRuns(server: SftpServerHandle, big: Dataset, small: { remoteDir: string } | null, log: (m: string) => void): Promise<void> {
  const cases: Array<[string, string]> = [['big', big.remoteDir]];
  if (small) cases.push(['small', small.remoteDir]);
  for (const [name, remoteDir] of cases) {
    await clearLeftovers();
    const ws = benchWorkspace(server, remoteDir);
    const profDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ipi-bench-prof-'));
    allWorkspaces.add(profDir);
    const { run } = await runIpiPull(ws, `profiled ipi-pull (${name})`, ['--cpu-prof', `--cpu-prof-dir=${profDir}`]);
    const [prof] = await fsp.readdir(profDir);
    if (!prof) continue;
    const dest = path.join(RESULTS_DIR, `profile-${name}-${Date.now()}.cpuprofile`);
    await fsp.copyFile(path.join(profDir, prof), dest);
    log(`cpu profile of ipi-pull (${name}), wall ${s2(run.wallMs)} s: ${path.relative(process.cwd(), dest)}`);
    console.log(summarizeProfile(JSON.parse(await fsp.readFile(dest, 'utf8')) as CpuProfile));
  }
}

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }>;
  samples: number[];
  timeDeltas: number[];
}

function summarizeProfile(p: CpuProfile, top = 20): string {
  const self = new Map<number, number>();
  p.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  const byName = new Map<string, number>();
  let total = 0;
  for (const n of p.nodes) {
    const t = self.get(n.id) ?? 0;
    total += t;
    const f = n.callFrame;
    const where = f.url ? ` ${f.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, '').replace(/^node:/, 'node:')}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName || '(anonymous)'}${where}`;
    byName.set(key, (byName.get(key) ?? 0) + t);
  }
  const rows = [...byName.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  return [`  self time (ms)  share  function (total ${(total / 1000).toFixed(0)} ms; "(idle)" is waiting for the network, disk or the thread pool)`,
    ...rows.map(([k, t]) => `  ${(t / 1000).toFixed(0).padStart(14)}  ${((100 * t) / total).toFixed(1).padStart(5)}%  ${k}`)].join('\n');
}

main().catch((err: unknown) => {
  console.error(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
  process.exit(1);
});
