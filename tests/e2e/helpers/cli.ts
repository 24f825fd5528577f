/**
 * Runs the built CLI as a child process, the way cron does, inside a throw-away workspace
 * folder with its own .env, HOME and known_hosts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { SftpServerHandle } from './types.js';

/** dist/tests/e2e/helpers/cli.js -> dist/src/bin/ipi-pull.js */
export const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../src/bin/ipi-pull.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd: string;
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
}

/** A clean environment: nothing from the developer's shell (agent, HOME keys) leaks into a test. */
export function childEnv(home: string, extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: home, USERPROFILE: home, LANG: 'C.UTF-8', TZ: 'UTC' };
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

export function spawnCli(args: string[], opts: RunOptions): ChildProcess {
  return spawn(process.execPath, [CLI, ...args], {
    cwd: opts.cwd,
    env: childEnv(opts.cwd, opts.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

export function runCli(args: string[], opts: RunOptions): Promise<CliResult> {
  const child = spawnCli(args, opts);
  return collect(child, opts.timeoutMs ?? 120_000);
}

export function collect(child: ChildProcess, timeoutMs: number): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`CLI did not finish within ${timeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, timeoutMs);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export type AuthKind = 'key' | 'password' | 'passphrase';

export interface Workspace {
  dir: string;
  localDir: string;
  serverDir: string;
  markerFile: string;
  historyFile: string;
  logFile: string;
  /** The .env keys written for this workspace (edit and call writeEnv to change). */
  env: Record<string, string>;
  writeEnv(): void;
  run(args?: string[], extraEnv?: Record<string, string | undefined>, timeoutMs?: number): Promise<CliResult>;
  spawn(args?: string[], extraEnv?: Record<string, string | undefined>): ChildProcess;
  marker(): string | null;
  history(): Array<Record<string, unknown>>;
  cleanup(): void;
}

export function makeWorkspace(server: SftpServerHandle, opts: { auth?: AuthKind; extra?: Record<string, string> } = {}): Workspace {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-ws-'));
  fs.mkdirSync(path.join(dir, '.ssh'), { mode: 0o700 });
  fs.writeFileSync(path.join(dir, '.ssh', 'known_hosts'), `${server.knownHostsLine}\n`);
  const env: Record<string, string> = {
    SFTP_HOST: server.host,
    SFTP_PORT: String(server.port),
    SFTP_USER: server.user,
    SFTP_DIR: server.remoteDir,
    LOCAL_DIR: './local_downloads',
    SERVER_DIR: './synced_server',
    LOG_FILE: './logs/sftp_transfer.log',
    LAST_FILE_RECORD: './last_file.txt',
    // Tests are about behaviour, not waiting: short settle and retry delays.
    SETTLE_TIME: '0',
    RETRY_DELAYS: '0.2',
  };
  const auth = opts.auth ?? (server.kind === 'embedded' ? 'password' : 'key');
  if (auth === 'password') env.SFTP_PASS = server.password ?? 'no-password-on-this-server';
  else if (auth === 'passphrase') {
    env.SFTP_KEY = server.passphraseKeyPath!;
    env.SFTP_KEY_PASSPHRASE = server.passphrase!;
  } else env.SFTP_KEY = server.clientKeyPath;
  Object.assign(env, opts.extra ?? {});
  const ws: Workspace = {
    dir,
    localDir: path.join(dir, 'local_downloads'),
    serverDir: path.join(dir, 'synced_server'),
    markerFile: path.join(dir, 'last_file.txt'),
    historyFile: path.join(dir, 'last_file.history.jsonl'),
    logFile: path.join(dir, 'logs', 'sftp_transfer.log'),
    env,
    writeEnv() {
      const text = Object.entries(ws.env).map(([k, v]) => `${k}=${v}`).join('\n');
      fs.writeFileSync(path.join(dir, '.env'), `${text}\n`, { mode: 0o600 });
    },
    run: (args = [], extraEnv = {}, timeoutMs) => runCli(args, { cwd: dir, env: extraEnv, timeoutMs }),
    spawn: (args = [], extraEnv = {}) => spawnCli(args, { cwd: dir, env: extraEnv }),
    marker() {
      try {
        return fs.readFileSync(ws.markerFile, 'utf8');
      } catch {
        return null;
      }
    },
    history() {
      try {
        return fs.readFileSync(ws.historyFile, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
      } catch {
        return [];
      }
    },
    cleanup() {
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  ws.writeEnv();
  return ws;
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function sha256File(file: string): string {
  return sha256(fs.readFileSync(file));
}

/** Deterministic pseudo-random bytes (fast, no entropy needed): different per seed. */
export function testBytes(size: number, seed: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i + 4 <= size; i += 4) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    buf.writeUInt32LE(x, i);
  }
  for (let i = size - (size % 4); i < size; i++) buf[i] = (seed + i) & 0xff;
  return buf;
}

/** Names of entries in a folder, or [] when it does not exist. */
export function listDir(dir: string): string[] {
  try {
    return fs.readdirSync(dir).sort();
  } catch {
    return [];
  }
}
