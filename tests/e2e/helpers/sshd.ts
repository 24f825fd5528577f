/**
 * Real OpenSSH sshd for end-to-end tests, bound to 127.0.0.1 on a free port,
 * fully contained in a fresh temp dir (config, host key, client keys, logs).
 *
 * Logging note (found the hard way): `Subsystem sftp internal-sftp -l INFO`
 * logs ONLY to syslog. Neither `sshd -D -e` nor `sshd -E file` nor
 * `internal-sftp -e` put the sftp "open"/"close ... bytes read N" lines
 * anywhere readable when there is no syslog daemon (containers, CI). So the
 * sftp subsystem is the external sftp-server binary, started through a tiny
 * wrapper script that appends its stderr (`-e -l INFO`) to `sftp.log`. That
 * gives one reliable line per closed file handle, which bytesServed() parses.
 *
 * Lifecycle: stop() kills sshd and all its per-connection children and
 * removes the temp dir. If the test process dies without calling stop(), a
 * process 'exit' hook kills the tree, and sshd is additionally started under
 * `setpriv --pdeathsig KILL` (when available) so even SIGKILL of the test
 * runner does not leave a listening sshd behind.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import type { SftpServerHandle } from './types.js';
import {
  LOOPBACK,
  delay,
  getFreePort,
  killTreeSync,
  knownHostsLine,
  onProcessExit,
  pathMatches,
  waitForPort,
} from './util.js';

export type { SftpServerHandle } from './types.js';

export interface SshdOptions {
  /** Also create a second authorized key protected by a passphrase (default true). */
  passphraseKey?: boolean;
  /** Passphrase for that key (default 'ipi-test-passphrase'). */
  passphrase?: string;
  /** Extra sshd_config lines appended verbatim (e.g. 'MaxStartups 2'). */
  extraConfig?: string[];
  /** How long to wait for the port to accept connections (default 10 s). */
  startTimeoutMs?: number;
}

const DEFAULT_PASSPHRASE = 'ipi-test-passphrase';

const SSHD_CANDIDATES = ['/usr/sbin/sshd', '/usr/local/sbin/sshd', '/sbin/sshd'];
const SFTP_SERVER_CANDIDATES = [
  '/usr/lib/openssh/sftp-server',
  '/usr/libexec/openssh/sftp-server',
  '/usr/libexec/sftp-server',
  '/usr/lib/ssh/sftp-server',
  '/usr/local/libexec/sftp-server',
];

function isExecutable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

function firstExecutable(candidates: string[]): string | undefined {
  return candidates.find(isExecutable);
}

function onPath(name: string): string | undefined {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  return firstExecutable(dirs.map((d) => path.join(d, name)));
}

interface Tools {
  sshd: string;
  sftpServer: string;
  sshKeygen: string;
  /** setpriv supporting --pdeathsig, if installed. */
  setpriv?: string;
}

let toolsCache: Tools | null | undefined;

function findTools(): Tools | null {
  if (toolsCache !== undefined) return toolsCache;
  // sshd must be run by absolute path: it re-execs itself for every connection.
  const sshd = firstExecutable(SSHD_CANDIDATES) ?? onPath('sshd');
  const sftpServer = firstExecutable(SFTP_SERVER_CANDIDATES);
  const sshKeygen = onPath('ssh-keygen');
  toolsCache = sshd && sftpServer && sshKeygen
    ? { sshd, sftpServer, sshKeygen, setpriv: findPdeathsigSetpriv() }
    : null;
  return toolsCache;
}

function findPdeathsigSetpriv(): string | undefined {
  const setpriv = onPath('setpriv');
  if (!setpriv) return undefined;
  try {
    const help = execFileSync(setpriv, ['--help'], { encoding: 'utf8', stdio: 'pipe' });
    return help.includes('--pdeathsig') ? setpriv : undefined;
  } catch {
    return undefined;
  }
}

/** sshd, sftp-server and ssh-keygen are all installed (Linux/POSIX hosts). */
export function sshdAvailable(): boolean {
  return process.platform !== 'win32' && findTools() !== null;
}

/** Create an ed25519 key pair with ssh-keygen; returns the .pub line. */
function keygen(tools: Tools, file: string, passphrase: string, comment: string): string {
  execFileSync(tools.sshKeygen, ['-q', '-t', 'ed25519', '-N', passphrase, '-C', comment, '-f', file], {
    stdio: 'pipe',
  });
  return fs.readFileSync(file + '.pub', 'utf8').trim();
}

/** Fingerprint exactly as `ssh-keygen -lf` prints it (2nd field). */
function keygenFingerprint(tools: Tools, pubFile: string): string {
  const out = execFileSync(tools.sshKeygen, ['-l', '-E', 'sha256', '-f', pubFile], { encoding: 'utf8' });
  const fp = out.trim().split(/\s+/)[1];
  if (!fp?.startsWith('SHA256:')) throw new Error(`unexpected ssh-keygen -lf output: ${out}`);
  return fp;
}

interface Layout {
  dir: string;
  root: string;
  config: string;
  sshdLog: string;
  sftpLog: string;
}

function layoutFor(dir: string): Layout {
  return {
    dir,
    root: path.join(dir, 'remote'),
    config: path.join(dir, 'sshd_config'),
    sshdLog: path.join(dir, 'sshd.log'),
    sftpLog: path.join(dir, 'sftp.log'),
  };
}

function writeSftpWrapper(tools: Tools, l: Layout): string {
  const wrapper = path.join(l.dir, 'sftp-subsystem.sh');
  // Executed by sshd via the user's shell; exec keeps the process tree flat.
  const script = `#!/bin/sh\nexec '${tools.sftpServer}' -e -l INFO 2>>'${l.sftpLog}'\n`;
  fs.writeFileSync(wrapper, script, { mode: 0o755 });
  return wrapper;
}

/**
 * sshd takes the first value of a keyword, and extra lines go last (a `Match` block runs to the
 * end of the file): so a default whose keyword the extra lines set is left out, or it would win.
 */
function sshdConfig(l: Layout, port: number, wrapper: string, extra: string[]): string {
  const keyword = (line: string) => line.trim().split(/\s+/)[0]!.toLowerCase();
  const overridden = new Set(extra.map(keyword));
  const defaults = [
    `ListenAddress ${LOOPBACK}`,
    `Port ${port}`,
    `HostKey ${path.join(l.dir, 'host_ed25519')}`,
    `PidFile ${path.join(l.dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${path.join(l.dir, 'authorized_keys')}`,
    'UsePAM no',
    'StrictModes no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PubkeyAuthentication yes',
    'PermitRootLogin prohibit-password',
    'UseDNS no',
    'PrintMotd no',
    'LogLevel INFO',
    // Parallel-download tests open many connections at once; the default
    // MaxStartups (10:30:100) would randomly drop some of them.
    'MaxStartups 100',
    'MaxSessions 100',
    `Subsystem sftp ${wrapper}`,
  ];
  return [...defaults.filter((line) => !overridden.has(keyword(line))), ...extra, ''].join('\n');
}

interface ParsedSftpLog {
  opens: number;
  closes: Array<{ path: string; bytesRead: number }>;
}

const CLOSE_RE = /(?:^|\s)close "(.*)" bytes read (\d+) written \d+\s*$/;
const OPEN_RE = /(?:^|\s)open "(.*)" flags /;

/**
 * sftp-server logs `open "p" flags READ mode 0666` and, when the handle is
 * closed (or force-closed on disconnect), `[forced ]close "p" bytes read N
 * written M`. Lines end with \r\n in stderr mode.
 */
export function parseSftpLog(text: string): ParsedSftpLog {
  const parsed: ParsedSftpLog = { opens: 0, closes: [] };
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    const close = CLOSE_RE.exec(line);
    if (close) {
      parsed.closes.push({ path: close[1] as string, bytesRead: Number(close[2]) });
    } else if (OPEN_RE.test(line)) {
      parsed.opens += 1;
    }
  }
  return parsed;
}

class OpensshServer {
  private child: ChildProcess | null = null;
  private childExit: Promise<void> = Promise.resolve();
  private exitReason: string | undefined;
  private unregisterExit: () => void = () => {};
  private stopped = false;
  private sftpLogSnapshot = '';
  port = 0;

  constructor(
    private readonly tools: Tools,
    readonly l: Layout,
    private readonly wrapper: string,
    private readonly opts: SshdOptions,
  ) {}

  /** Start on `port`, or on a fresh free port (retrying bind races) when 0. */
  async start(port: number): Promise<void> {
    const attempts = port === 0 ? 3 : 1;
    for (let i = 1; ; i++) {
      const tryPort = port === 0 ? await getFreePort() : port;
      try {
        await this.spawnOn(tryPort);
        return;
      } catch (err) {
        await this.halt();
        if (i >= attempts || !/Address already in use/.test(this.sshdLog())) throw err;
      }
    }
  }

  private sshdLog(): string {
    try {
      return fs.readFileSync(this.l.sshdLog, 'utf8');
    } catch {
      return '';
    }
  }

  private async spawnOn(port: number): Promise<void> {
    this.port = port;
    const extra = this.opts.extraConfig ?? [];
    fs.writeFileSync(this.l.config, sshdConfig(this.l, port, this.wrapper, extra));
    const sshdArgs = ['-D', '-e', '-f', this.l.config];
    const [cmd, args] = this.tools.setpriv
      ? [this.tools.setpriv, ['--pdeathsig', 'KILL', '--', this.tools.sshd, ...sshdArgs]]
      : [this.tools.sshd, sshdArgs];

    // sshd's own log (-e => stderr) goes straight to a file: no pipe to drain.
    const logFd = fs.openSync(this.l.sshdLog, 'a');
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, { stdio: ['ignore', 'ignore', logFd] });
    } finally {
      fs.closeSync(logFd);
    }
    // Do not let a forgotten stop() keep the test process alive; the exit
    // hook below still kills the tree when the process ends.
    child.unref();
    this.child = child;
    this.exitReason = undefined;
    this.childExit = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitReason = `sshd exited early (code ${code}, signal ${signal}):\n${this.sshdLog()}`;
        resolve();
      });
      child.once('error', (err) => {
        this.exitReason = `could not spawn sshd: ${err.message}`;
        resolve();
      });
    });
    const pid = child.pid;
    this.unregisterExit();
    this.unregisterExit = onProcessExit(() => {
      if (pid !== undefined) killTreeSync(pid);
      if (!this.stopped) fs.rmSync(this.l.dir, { recursive: true, force: true });
    });
    await waitForPort(port, this.opts.startTimeoutMs ?? 10_000, () => this.exitReason);
  }

  /**
   * Kill sshd together with its per-connection children. Those call setsid(),
   * so killing the process group would miss them; killing only the listener
   * would leave established sessions alive (unlike a real crash/reboot).
   */
  async halt(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child) return;
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      // Re-ref so the event loop stays alive until the 'exit' event arrives.
      child.ref();
      killTreeSync(child.pid);
    }
    await this.childExit;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    await this.halt();
    this.stopped = true;
    this.unregisterExit();
    this.sftpLogSnapshot = this.readSftpLog();
    await fsp.rm(this.l.dir, { recursive: true, force: true });
  }

  readSftpLog(): string {
    if (this.stopped) return this.sftpLogSnapshot;
    try {
      return fs.readFileSync(this.l.sftpLog, 'utf8');
    } catch {
      return '';
    }
  }

  /**
   * Sum "bytes read" of closed handles. A handle's line is only written when
   * it is closed, and a client that just disconnected may not have been
   * force-closed by sftp-server yet, so wait (bounded) until every logged
   * open has its close line.
   */
  async bytesServed(file?: string): Promise<number> {
    const deadline = Date.now() + 1500;
    let log = parseSftpLog(this.readSftpLog());
    while (log.opens > log.closes.length && Date.now() < deadline) {
      await delay(50);
      log = parseSftpLog(this.readSftpLog());
    }
    return log.closes
      .filter((c) => pathMatches(c.path, file))
      .reduce((sum, c) => sum + c.bytesRead, 0);
  }
}

function ensurePrivsepDir(): void {
  // sshd refuses to start as root without its privilege-separation chroot dir.
  if (process.getuid?.() !== 0) return;
  try {
    fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  } catch {
    // if this fails sshd reports a clear error in sshd.log
  }
}

/**
 * Start a real sshd. Resolves once the port accepts connections.
 * Call handle.stop() (e.g. in an after() hook) to kill it and delete its temp dir.
 */
export async function startSshd(opts: SshdOptions = {}): Promise<SftpServerHandle> {
  const tools = findTools();
  if (!tools) throw new Error('sshd/sftp-server/ssh-keygen not installed; use startTestServer()');
  ensurePrivsepDir();

  const l = layoutFor(await fsp.mkdtemp(path.join(os.tmpdir(), 'ipi-sshd-')));
  fs.mkdirSync(l.root);
  const hostPub = keygen(tools, path.join(l.dir, 'host_ed25519'), '', 'ipi-test-host');
  const clientKeyPath = path.join(l.dir, 'client_ed25519');
  const authorized = [keygen(tools, clientKeyPath, '', 'ipi-test-client')];
  let passphraseKeyPath: string | undefined;
  let passphrase: string | undefined;
  if (opts.passphraseKey !== false) {
    passphrase = opts.passphrase ?? DEFAULT_PASSPHRASE;
    passphraseKeyPath = path.join(l.dir, 'client_pass_ed25519');
    authorized.push(keygen(tools, passphraseKeyPath, passphrase, 'ipi-test-client-passphrase'));
  }
  fs.writeFileSync(path.join(l.dir, 'authorized_keys'), authorized.join('\n') + '\n', { mode: 0o600 });
  const hostKeyFingerprint = keygenFingerprint(tools, path.join(l.dir, 'host_ed25519.pub'));

  const server = new OpensshServer(tools, l, writeSftpWrapper(tools, l), opts);
  try {
    await server.start(0);
  } catch (err) {
    await server.stop();
    throw err;
  }

  return {
    kind: 'openssh',
    host: LOOPBACK,
    port: server.port,
    user: os.userInfo().username,
    root: l.root,
    remoteDir: l.root,
    clientKeyPath,
    passphraseKeyPath,
    passphrase,
    hostKeyFingerprint,
    knownHostsLine: knownHostsLine(server.port, hostPub),
    tempDir: l.dir,
    bytesServed: (file?: string) => server.bytesServed(file),
    stop: () => server.stop(),
    restart: async (downMs = 0) => {
      await server.halt();
      if (downMs > 0) await delay(downMs);
      await server.start(server.port);
    },
  };
}
