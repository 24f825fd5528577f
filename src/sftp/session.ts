// One SSH connection with its SFTP channel, built and torn down as a unit. Owns host key
// trust, authentication, keepalive and rekeying; exposes promise-based SFTP calls.
import net from 'node:net';
import ssh2, { type ConnectConfig, type SFTPWrapper, type Stats } from 'ssh2';
import { AccessDeniedError, ConfigError, InterruptedError, PermanentError, RemoteMissingError, TransientError, classify, isSftpGenericFailure } from '../errors.js';
import type { Logger } from '../log.js';
import type { RemoteEntry } from '../select.js';
import { StallWatch } from '../transfer/stall.js';
import { nativeCryptoAvailable } from '../version.js';
import { HandleGate } from './handle-gate.js';

// ssh2 is CommonJS: its named exports are reached through the default import under ESM.
const { Client } = ssh2;
type Client = InstanceType<typeof Client>;
import {
  appendKnownHost, fingerprintOf, knownHostsLine, preferredHostKeyAlgorithms, readKnownHosts, verifyHostKey, type KnownHostEntry, type Verdict,
} from './hostkey.js';

export interface SessionOptions {
  host: string;
  port: number;
  user: string;
  password?: string;
  /** SFTP_KEY's bytes, read and checked with the settings (config/identities.ts): nothing is read here. */
  key?: Buffer;
  keyPassphrase?: string;
  agent?: string;
  /** Tried when key is not set (config/identities.ts). */
  defaultIdentities?: ReadonlyArray<{ file: string; key: Buffer }>;
  pinnedHostKeys?: readonly string[];
  knownHostsFile: string;
  acceptNewHostKey: boolean;
  connectTimeoutMs: number;
  /** DATA_TIMEOUT: requests in flight and no answer to any of them for this long, and the connection is given up on. */
  dataTimeoutMs: number;
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
  rekeyBytes: number;
  log: Logger;
}

export interface RemoteStat {
  size: number;
  mtimeMs: number;
  isFile: boolean;
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

function toStat(a: Stats): RemoteStat {
  return { size: a.size, mtimeMs: a.mtime * 1000, isFile: (a.mode & S_IFMT) === S_IFREG };
}

export class SftpSession {
  /** Largest READ the server accepts (limits@openssh.com, else the SFTP draft's safe 32 KiB-ish default). */
  readonly maxReadLen: number;
  /** Largest WRITE payload the server accepts (limits@openssh.com, else ssh2's conservative default). */
  readonly maxWriteLen: number;
  private bytesSinceRekey = 0;
  private closedBy: Error | null = null;
  /** The client emitted 'close': it will never emit it again. */
  private clientClosed = false;
  private readonly closeWaiters = new Set<(err: Error) => void>();
  private readonly handles = new HandleGate();
  /** Requests sent and not answered yet, oldest first: what the watchdog waits on. */
  private readonly unanswered = new Set<{ what: string }>();
  /** Runs while a request is unanswered (awaitAnswer). */
  private watchdog: StallWatch | null = null;

  private constructor(
    private readonly client: Client,
    private readonly sftp: SFTPWrapper,
    private readonly sock: net.Socket,
    private readonly opts: SessionOptions,
  ) {
    // ssh2 reads limits@openssh.com right after the channel opens and keeps it privately.
    const announced = (sftp as unknown as { _maxReadLen?: number })._maxReadLen;
    this.maxReadLen = typeof announced === 'number' && announced > 0 ? announced : 32_768 - 13;
    const announcedWrite = (sftp as unknown as { _maxWriteLen?: number })._maxWriteLen;
    this.maxWriteLen = typeof announcedWrite === 'number' && announcedWrite > 0 ? announcedWrite : 32_768 - 13;
    const onGone = (why: string) => this.markClosed(new TransientError(`connection to ${opts.host}:${opts.port} lost (${why})`));
    client.on('close', () => {
      this.clientClosed = true;
      onGone('closed');
    });
    client.on('end', () => onGone('ended by server'));
    client.on('error', (err) => onGone(err.message));
    sftp.on('close', () => onGone('SFTP channel closed'));
  }

  /** `signal` (a stop) ends the attempt at once, in whichever step it is, with the stop's error. */
  static async open(opts: SessionOptions, signal?: AbortSignal): Promise<SftpSession> {
    const auth = authConfig(opts);
    const known = opts.pinnedHostKeys?.length ? [] : await readKnownHosts(opts.knownHostsFile);
    const sock = await connectSocket(opts, signal);
    // Logging in and starting SFTP may each take CONNECT_TIMEOUT: a run told to stop must not
    // hold its lock that long. Dropping the socket fails whichever step is under way.
    const onStop = () => sock.destroy();
    signal?.addEventListener('abort', onStop, { once: true });
    try {
      return await SftpSession.overSocket(opts, auth, known, sock);
    } catch (err) {
      throw signal?.aborted ? stoppedBy(signal) : err;
    } finally {
      signal?.removeEventListener('abort', onStop);
    }
  }

  /** Log in over `sock` (connected) and start SFTP. */
  private static async overSocket(opts: SessionOptions, auth: Partial<ConnectConfig>, known: KnownHostEntry[], sock: net.Socket): Promise<SftpSession> {
    let verdict: Verdict | null = null;
    let presented: Buffer | null = null;
    /**
     * The verdict when the key was refused. An unknown key taken with --accept-new-host-key is
     * untrusted but accepted: a failure after it (a wrong password, a link lost) is the login's.
     */
    let refused: (Verdict & { trusted: false }) | null = null;

    const client = new Client();
    // ssh2 can emit a second 'error' after the first failed the login (a timeout, then "Connection
    // lost before handshake" when we destroy it); unheard, it would crash the process uncaught.
    client.on('error', () => {});
    const preferred = preferredHostKeyAlgorithms(known, opts.host, opts.port);
    const config: ConnectConfig = {
      sock,
      host: opts.host,
      port: opts.port,
      username: opts.user,
      ...auth,
      readyTimeout: opts.connectTimeoutMs,
      keepaliveInterval: opts.keepaliveIntervalMs,
      keepaliveCountMax: opts.keepaliveCountMax,
      // ssh2 applies `remove` then `prepend` in key order: this moves the known types to the front.
      algorithms: preferred.length ? { serverHostKey: { remove: preferred, prepend: preferred } as never } : undefined,
      hostVerifier: (key: Buffer) => {
        presented = key;
        verdict = verifyHostKey(key, { pinned: opts.pinnedHostKeys, known, host: opts.host, port: opts.port });
        if (verdict.trusted || (verdict.reason === 'unknown' && opts.acceptNewHostKey)) return true;
        refused = verdict;
        return false;
      },
    };

    opts.log.info(`connecting to ${opts.user}@${opts.host}:${opts.port}`);
    warnIfNoNativeCrypto(opts.log);
    // What was negotiated, so a slow link can be told apart from a slow cipher. ssh2's own
    // order (client preference wins) puts aes128-gcm first when the CPU has AES-NI and the
    // native binding is built: the fastest here by measurement (BENCHMARKS.md).
    client.once('handshake', (n) => {
      opts.log.debug(`negotiated kex ${n.kex}, host key ${n.serverHostKey}, cipher ${n.sc.cipher}${n.sc.mac ? ` + ${n.sc.mac}` : ''} (server to client)`);
    });
    try {
      await new Promise<void>((resolve, reject) => {
        client.once('ready', resolve);
        client.once('error', reject);
        // A link cut during the handshake ends with 'close' and no 'error'.
        client.once('close', () => reject(new TransientError(`connection to ${opts.host}:${opts.port} closed during the SSH handshake`)));
        client.connect(config);
      });
    } catch (err) {
      client.destroy();
      sock.destroy();
      // Set by the verifier, a callback: TypeScript cannot see that, and takes it for still null.
      const refusal = refused as (Verdict & { trusted: false }) | null;
      if (refusal && presented) throw hostKeyError(refusal, presented, opts);
      throw classify(err, `logging in to ${opts.user}@${opts.host}:${opts.port}`);
    }

    const v = verdict as Verdict | null;
    if (v && !v.trusted && presented && opts.acceptNewHostKey) {
      const line = knownHostsLine(opts.host, opts.port, presented);
      await appendKnownHost(opts.knownHostsFile, line);
      opts.log.warn(`accepted a new host key ${fingerprintOf(presented)} for ${opts.host}:${opts.port} and added it to ${opts.knownHostsFile}`);
    } else if (v?.trusted) {
      opts.log.debug(`host key ${fingerprintOf(presented!)} trusted (${v.how})`);
    }

    const sftp = await new Promise<SFTPWrapper>((resolve, reject) => {
      // Logged in is not SFTP started: a stuck sftp-server never answers the subsystem request,
      // while sshd goes on answering keepalives, so only a timer ends the wait.
      const timer = setTimeout(() => {
        client.destroy();
        reject(new TransientError(`starting SFTP on ${opts.host}:${opts.port}: logged in, but the server did not start SFTP within ${Math.round(opts.connectTimeoutMs / 1000)} s (CONNECT_TIMEOUT)`));
      }, opts.connectTimeoutMs);
      client.once('close', () => {
        clearTimeout(timer);
        reject(new TransientError('connection closed while starting SFTP'));
      });
      try {
        client.sftp((err, s) => {
          clearTimeout(timer);
          if (err) reject(err);
          else resolve(s);
        });
      } catch (err) {
        // "Not connected": the link went (or was dropped by a stop) since the login.
        clearTimeout(timer);
        reject(err);
      }
    }).catch((err) => {
      client.end();
      throw classify(err, `starting SFTP on ${opts.host}:${opts.port}`);
    });
    const session = new SftpSession(client, sftp, sock, opts);
    opts.log.info(`connected to ${opts.host}:${opts.port}`);
    opts.log.debug(`server accepts reads of up to ${session.maxReadLen} bytes`);
    return session;
  }

  get isClosed(): boolean {
    return this.closedBy !== null;
  }

  private markClosed(err: Error): void {
    if (this.closedBy) return;
    this.closedBy = err;
    this.watchdog?.stop();
    this.watchdog = null;
    this.unanswered.clear();
    this.handles.close();
    for (const w of this.closeWaiters) w(err);
    this.closeWaiters.clear();
  }

  /**
   * Every request settles when the connection dies: ssh2 does not always call back then
   * (a CLOSE sent on a dropped link never answers), and a cron run must always end. `awaiting`
   * names the answer the watchdog waits for (awaitAnswer); null when the caller watches itself.
   */
  private request<T>(awaiting: string | null, start: (resolve: (v: T) => void, reject: (e: unknown) => void) => void): Promise<T> {
    if (this.closedBy) return Promise.reject(this.closedBy);
    return new Promise<T>((resolve, reject) => {
      const onClose = (err: Error) => reject(err);
      this.closeWaiters.add(onClose);
      const answered = awaiting === null ? () => {} : this.awaitAnswer(awaiting);
      const settled = () => {
        answered();
        this.closeWaiters.delete(onClose);
      };
      try {
        start(
          (v) => {
            settled();
            resolve(v);
          },
          (e) => {
            settled();
            reject(e);
          },
        );
      } catch (err) {
        settled();
        throw err;
      }
    });
  }

  /**
   * A request is on its way; the function returned is called once it is answered. While any
   * is unanswered, a server that answers nothing at all for DATA_TIMEOUT is given up on: the
   * connection is dropped, failing every request in flight. SSH keepalives cannot tell, as
   * sshd goes on answering them while its sftp-server is stuck. Any answer starts the clock
   * again, so a long queue on a slow link is not a stall. READs and WRITEs are named as the
   * transfer engines' own StallWatch names them: whichever of the two fires, it says the same.
   */
  private awaitAnswer(what: string): () => void {
    const request = { what };
    if (this.unanswered.size === 0) {
      this.watchdog = new StallWatch(this.opts.dataTimeoutMs, () => [...this.unanswered][0]?.what ?? what, (why) => this.destroy(why));
    }
    this.unanswered.add(request);
    return () => {
      if (!this.unanswered.delete(request)) return;
      this.watchdog?.touch();
      if (this.unanswered.size > 0) return;
      this.watchdog?.stop();
      this.watchdog = null;
    };
  }

  private call<T>(doing: string, fn: (cb: (err: Error | null | undefined, v: T) => void) => void): Promise<T> {
    return this.request<T>(`answer from the server to ${doing}`, (resolve, reject) => fn((err, v) => (err ? reject(classify(err, doing)) : resolve(v))));
  }

  async list(dir: string): Promise<RemoteEntry[]> {
    const list = await this.call<Array<{ filename: string; attrs: Stats }>>(`listing ${dir}`, (cb) => this.sftp.readdir(dir, cb))
      .catch(async (err) => {
        if (err instanceof RemoteMissingError) throw new PermanentError(`SFTP_DIR ${dir}: no such folder on ${this.opts.host}`, { cause: err });
        // Some servers answer a generic failure for a file given as a folder; retrying would not change it.
        if (err instanceof TransientError && !this.isClosed && (await this.statOrNull(dir).catch(() => null))?.isFile) {
          throw new PermanentError(`SFTP_DIR ${dir}: a file on ${this.opts.host}, not a folder`, { cause: err });
        }
        throw err;
      });
    const entries: RemoteEntry[] = list.map(({ filename, attrs }) => ({ name: filename, ...toStat(attrs) }));
    // A listing describes a symbolic link itself (OpenSSH's READDIR uses lstat), and `sftp get`
    // fetches a link's file: a link to a regular file is listed as that file (its size and
    // time, as the second look's stat and the open see it). A listing that leaves out the type,
    // size or time (some servers do) is asked about each such name the same way: read as "not a
    // file", every file would be passed over in silence. A name the server cannot answer for
    // (a dangling link, a loop, no permission) is listed with why, so a matching one is warned
    // about rather than passed over in silence, and does not hold up the other files either.
    const incomplete = (a: Stats) => typeof a.mode !== 'number' || typeof a.size !== 'number' || typeof a.mtime !== 'number';
    const isLink = (a: Stats) => typeof a.mode === 'number' && (a.mode & S_IFMT) === S_IFLNK;
    const unsure = list.flatMap(({ filename, attrs }, i) =>
      ((incomplete(attrs) || isLink(attrs)) && !filename.includes('/') && filename !== '.' && filename !== '..' ? [i] : []));
    await Promise.all(unsure.map(async (i) => {
      const { filename: name, attrs } = list[i]!;
      const full = dir.endsWith('/') ? `${dir}${name}` : `${dir}/${name}`;
      const link = isLink(attrs);
      let st: Stats | null;
      try {
        st = await this.call<Stats>(`checking ${full}`, (cb) => this.sftp.stat(full, cb));
      } catch (err) {
        if (this.isClosed) throw err;
        // A name gone since the listing is simply not there any more.
        if (err instanceof RemoteMissingError && !link) return;
        const unreadable = err instanceof RemoteMissingError ? 'a symbolic link to nothing on the server'
          : `${link ? 'a symbolic link the server cannot follow' : 'listed without its type, size or time, which the server cannot give'} (${(err as Error).message})`;
        entries[i] = { ...entries[i]!, unreadable };
        return;
      }
      if (incomplete(st)) {
        entries[i] = { ...entries[i]!, unreadable: 'the server gives no type, size or time for it' };
        return;
      }
      const target = toStat(st);
      if (target.isFile) entries[i] = { name, ...target };
    }));
    return entries;
  }

  stat(remotePath: string): Promise<RemoteStat> {
    return this.call<Stats>(`checking ${remotePath}`, (cb) => this.sftp.stat(remotePath, cb)).then(toStat);
  }

  openRead(remotePath: string): Promise<Buffer> {
    return this.openHandle(remotePath, `opening ${remotePath}`, (cb) => this.sftp.open(remotePath, 'r', cb));
  }

  /** Every handle from openRead or openWrite is closed here, once, whatever else happened. */
  close(handle: Buffer): Promise<void> {
    return this.call<void>('closing a remote file', (cb) => this.sftp.close(handle, (err) => cb(err, undefined)))
      .finally(() => this.handles.closed());
  }

  /** An open within the server's limit of open files, learned from its refusals (handle-gate.ts). */
  private async openHandle(remotePath: string, doing: string, open: (cb: (err: Error | null | undefined, h: Buffer) => void) => void): Promise<Buffer> {
    for (;;) {
      const ticket = await this.handles.acquire();
      let handle: Buffer;
      try {
        handle = await this.call<Buffer>(doing, open);
      } catch (err) {
        if (this.isClosed || !isSftpGenericFailure(err)) {
          this.handles.failed(ticket);
          throw err;
        }
        const verdict = await this.handles.refused(ticket);
        if (verdict === 'alone' || this.isClosed) throw err;
        if (verdict === 'lowered') {
          this.opts.log.info(`the server refused to open ${remotePath} while ${this.handles.limit} other file(s) were open: taken as its limit on open files, so at most ${this.handles.limit} at once on this connection`);
        }
        continue;
      }
      this.handles.opened(ticket);
      return handle;
    }
  }

  /**
   * Requests issued inside fn leave in one socket write instead of one each: ssh2 writes
   * every SSH packet separately, and a chunk's nine READs (or a file's stat and open) would
   * otherwise cost nine system calls and as many wake-ups of the server.
   */
  batch<T>(fn: () => T): T {
    this.sock.cork();
    try {
      return fn();
    } finally {
      process.nextTick(() => this.sock.uncork());
    }
  }

  /** Read into buf[off, off+len) from `position`; resolves the byte count, 0 at end of file. */
  read(handle: Buffer, buf: Buffer, off: number, len: number, position: number): Promise<number> {
    return this.request<number>('data', (resolve, reject) => {
      this.sftp.read(handle, buf, off, len, position, (err, bytesRead) => {
        if (err) {
          // SFTP status EOF: nothing at or after `position`.
          if ((err as { code?: unknown }).code === 1) return resolve(0);
          return reject(classify(err, 'reading remote data'));
        }
        this.countBytes(bytesRead);
        resolve(bytesRead);
      });
    });
  }

  /** A small remote file's text (a checksum companion); refuses anything larger than `max`. */
  async readSmall(remotePath: string, max = 64 * 1024): Promise<string> {
    const handle = await this.openRead(remotePath);
    try {
      const buf = Buffer.alloc(max + 1);
      let got = 0;
      for (;;) {
        const n = await this.read(handle, buf, got, Math.min(buf.length - got, this.maxReadLen), got);
        if (n === 0) break;
        got += n;
        if (got > max) throw new PermanentError(`${remotePath} is larger than ${max} bytes: not a checksum file`);
      }
      return buf.subarray(0, got).toString('utf8');
    } finally {
      await this.close(handle).catch(() => {});
    }
  }

  /** stat, or null when nothing is there (any other failure is thrown). */
  async statOrNull(remotePath: string): Promise<RemoteStat | null> {
    try {
      return await this.stat(remotePath);
    } catch (err) {
      if (err instanceof RemoteMissingError) return null;
      throw err;
    }
  }

  /**
   * Open for writing: 'w' creates or truncates; 'r+' keeps the content (resuming an upload).
   * Mode 0644 on creation, as `sftp put` leaves files.
   */
  openWrite(remotePath: string, flags: 'w' | 'r+'): Promise<Buffer> {
    return this.openHandle(remotePath, `opening ${remotePath} for writing`, (cb) => this.sftp.open(remotePath, flags, { mode: 0o644 }, cb));
  }

  /** One WRITE request (len <= maxWriteLen); resolves when the server acknowledged it. */
  write(handle: Buffer, buf: Buffer, off: number, len: number, position: number): Promise<void> {
    return this.request<void>('acknowledgement from the server', (resolve, reject) => {
      this.sftp.write(handle, buf, off, len, position, (err) => {
        if (err) return reject(classify(err, 'writing remote data'));
        this.countBytes(len);
        resolve();
      });
    });
  }

  /** Set a remote file's times through its open handle (SSH_FXP_FSETSTAT). */
  setTimes(handle: Buffer, atimeMs: number, mtimeMs: number): Promise<void> {
    return this.call<void>('setting the remote modification time', (cb) =>
      this.sftp.futimes(handle, Math.floor(atimeMs / 1000), Math.floor(mtimeMs / 1000), (err) => cb(err, undefined)));
  }

  /** Cut (or extend) a remote file open for writing to `size` bytes (SSH_FXP_FSETSTAT with a size). */
  truncate(handle: Buffer, size: number): Promise<void> {
    return this.call<void>(`cutting a remote file to ${size} bytes`, (cb) => this.sftp.fsetstat(handle, { size }, (err) => cb(err, undefined)));
  }

  /** mkdir -p: each missing folder of `dir` is created; folders that exist are fine. Returns those it created. */
  async mkdirp(dir: string): Promise<string[]> {
    const parts = dir.split('/').filter(Boolean);
    // Walk from the deepest existing folder: usually only the last one or two are missing.
    const missing: string[] = [];
    for (let i = parts.length; i > 0; i--) {
      const p = (dir.startsWith('/') ? '/' : '') + parts.slice(0, i).join('/');
      const st = await this.statOrNull(p);
      if (st) {
        if (st.isFile) throw new PermanentError(`creating remote folder ${dir}: ${p} is a file`);
        break;
      }
      missing.unshift(p);
    }
    const created: string[] = [];
    for (const p of missing) {
      const made = await this.call<void>(`creating remote folder ${p}`, (cb) => this.sftp.mkdir(p, { mode: 0o755 }, (err) => cb(err, undefined)))
        .then(() => true, async (err) => {
          // Created meanwhile by another client: fine.
          if ((await this.statOrNull(p).catch(() => null)) === null) throw err;
          return false;
        });
      if (made) created.push(p);
    }
    return created;
  }

  /** The server offers posix-rename@openssh.com (rename that replaces the target atomically). */
  get hasPosixRename(): boolean {
    const ext = (this.sftp as unknown as { _extensions?: Record<string, string> })._extensions;
    return ext?.['posix-rename@openssh.com'] !== undefined;
  }

  /**
   * Give `from` the name `to`, replacing a file already there. Atomic with posix-rename@openssh.com;
   * otherwise (SFTPv3 rename fails when the target exists) the old file is removed first and
   * there is a moment without it: `replacedAtomically` says which happened.
   */
  async renameReplacing(from: string, to: string): Promise<{ replacedAtomically: boolean }> {
    if (this.hasPosixRename) {
      await this.call<void>(`renaming ${from} to ${to}`, (cb) => this.sftp.ext_openssh_rename(from, to, (err) => cb(err, undefined)));
      return { replacedAtomically: true };
    }
    const existing = await this.statOrNull(to);
    if (existing) await this.remove(to);
    await this.rename(from, to);
    return { replacedAtomically: existing === null };
  }

  /**
   * Run a command over the same SSH connection (an exec channel), for `sha256sum`. Servers that
   * allow SFTP only refuse it or answer with something else: the caller checks the output.
   */
  exec(command: string, timeoutMs: number, maxOutput = 64 * 1024): Promise<{ code: number | null; stdout: string; stderr: string }> {
    // Watched until the channel is open: the command then runs under its own timeout, which
    // allows for the time sha256sum takes over a large file (and says so when it passes).
    return this.request(null, (resolve, reject) => {
      const opened = this.awaitAnswer(`answer from the server to starting \`${command}\``);
      this.client.exec(command, (err, stream) => {
        opened();
        if (err) return reject(new PermanentError(`running \`${command}\` on the server: refused (${err.message})`));
        // Decoded once at the end: a name's UTF-8 bytes may be split between two packets.
        const stdout = { parts: [] as Buffer[], bytes: 0 };
        const stderr = { parts: [] as Buffer[], bytes: 0 };
        const keep = (into: typeof stdout, d: Buffer) => {
          if (into.bytes >= maxOutput) return;
          into.parts.push(d);
          into.bytes += d.length;
        };
        const timer = setTimeout(() => {
          stream.close();
          // Slow is not unable: a permanent error here would quietly drop VERIFY=sha256 to size only.
          reject(new TransientError(`running \`${command}\` on the server: no answer within ${Math.round(timeoutMs / 1000)} s`));
        }, timeoutMs);
        stream.on('data', (d: Buffer) => keep(stdout, d));
        stream.stderr.on('data', (d: Buffer) => keep(stderr, d));
        stream.on('close', (code: number | null) => {
          clearTimeout(timer);
          resolve({ code: typeof code === 'number' ? code : null, stdout: Buffer.concat(stdout.parts).toString('utf8'), stderr: Buffer.concat(stderr.parts).toString('utf8') });
        });
        stream.end();
      });
    });
  }

  remove(remotePath: string): Promise<void> {
    return this.call<void>(`deleting ${remotePath}`, (cb) => this.sftp.unlink(remotePath, (err) => cb(err, undefined)));
  }

  rename(from: string, to: string): Promise<void> {
    return this.call<void>(`moving ${from} to ${to}`, (cb) => this.sftp.rename(from, to, (err) => cb(err, undefined)));
  }

  /**
   * Rekey after REKEY_BYTES, as OpenSSH's RekeyLimit does. ssh2's Client has no public rekey(),
   * but its Protocol object implements RFC 4253 section 9 re-exchange (the same code path
   * ssh2 runs when a server starts a rekey) and queues outgoing packets while it runs, so
   * starting one between reads is safe. If a future ssh2 drops the method we fall back to
   * the server's own RekeyLimit and say so once.
   */
  private countBytes(n: number): void {
    if (this.opts.rekeyBytes <= 0) return;
    this.bytesSinceRekey += n;
    if (this.bytesSinceRekey < this.opts.rekeyBytes) return;
    this.bytesSinceRekey = 0;
    const proto = (this.client as unknown as { _protocol?: { rekey?: () => void } })._protocol;
    if (typeof proto?.rekey === 'function') {
      this.opts.log.debug(`rekeying after ${this.opts.rekeyBytes} bytes`);
      proto.rekey();
    } else if (!this.warnedNoRekey) {
      this.warnedNoRekey = true;
      this.opts.log.warn('this ssh2 version cannot start a rekey; relying on the server\'s RekeyLimit');
    }
  }
  private warnedNoRekey = false;

  /** Polite close; the socket is destroyed if the server does not answer promptly. */
  async end(): Promise<void> {
    if (this.closedBy) {
      // Already dead (a drop or a stall): nothing to say goodbye to.
      this.client.destroy();
      return;
    }
    this.markClosed(new TransientError('session closed'));
    // Already gone (the link dropped): waiting for a second 'close' would wait forever.
    if (this.clientClosed) return;
    await new Promise<void>((resolve) => {
      // Not unref'd: while this is the only thing pending, it must keep the process alive, or
      // node exits with status 0 in the middle of a run.
      const t = setTimeout(() => {
        this.client.destroy();
        resolve();
      }, 2000);
      this.client.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      this.client.end();
    });
  }

  /** Abandon the connection now (stalled transfer): pending requests fail at once. */
  destroy(reason: string): void {
    this.markClosed(new TransientError(reason));
    this.client.destroy();
  }
}

let cryptoChecked = false;

/** Without ssh2's native binding AES-GCM runs in JavaScript, several times slower: say so once per run. */
function warnIfNoNativeCrypto(log: Logger): void {
  if (cryptoChecked) return;
  cryptoChecked = true;
  if (nativeCryptoAvailable()) log.debug('ssh2 native crypto binding in use');
  else log.warn('ssh2\'s native crypto binding is not built: transfers will be several times slower (reinstall with python3, make and a C++ compiler available; `ipi-pull --version` checks it)');
}

function hostKeyError(v: Verdict & { trusted: false }, key: Buffer, opts: SessionOptions): AccessDeniedError {
  const fp = fingerprintOf(key);
  const line = knownHostsLine(opts.host, opts.port, key);
  const fix = v.reason === 'pin-mismatch'
    ? `if the server's key really changed, set SFTP_HOST_KEY=${fp}`
    : v.reason === 'unknown'
      ? `to trust it, add this line to ${opts.knownHostsFile}: ${line} (or set SFTP_HOST_KEY=${fp}, or run once with --accept-new-host-key)`
      : `if the change is expected, replace the ${opts.host} line in ${opts.knownHostsFile} with: ${line}`;
  return new AccessDeniedError(`host key refused: ${v.detail}; ${fix}`);
}

type AuthStep = import('ssh2').AnyAuthMethod;

/**
 * The login methods to try, in OpenSSH's order: agent and key files first, then password,
 * then keyboard-interactive answered with the password (servers that only offer that were
 * reachable by paramiko, which falls back to it, so FTP_IPI.py's .env files must work there).
 */
function authConfig(opts: SessionOptions): Partial<ConnectConfig> {
  const user = opts.user;
  const steps: AuthStep[] = [];
  if (opts.agent) steps.push({ type: 'agent', username: user, agent: opts.agent });
  if (opts.key) {
    steps.push({ type: 'publickey', username: user, key: opts.key, passphrase: opts.keyPassphrase });
  } else {
    for (const { key } of opts.defaultIdentities ?? []) steps.push({ type: 'publickey', username: user, key });
  }
  if (opts.password !== undefined) {
    const password = opts.password;
    steps.push({ type: 'password', username: user, password });
    steps.push({
      type: 'keyboard-interactive',
      username: user,
      prompt: (_name: string, _instructions: string, _lang: string, prompts: unknown[], finish: (answers: string[]) => void) => finish(prompts.map(() => password)),
    });
  }
  if (steps.length === 0) {
    throw new ConfigError('no way to log in: set SFTP_PASS, or SFTP_KEY (a private key file), or run an SSH agent (SSH_AUTH_SOCK)');
  }
  // @types/ssh2 types the array as the base AuthMethod; ssh2 itself takes the full method objects.
  return { authHandler: steps as import('ssh2').AuthMethod[] };
}

/** What a connection attempt cut short by `signal` fails with: its reason when an error (a lost lock), else "interrupted". */
function stoppedBy(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new InterruptedError(String(signal.reason ?? 'a signal'));
}

/** Our own socket, so TCP keepalive is on and a dead route is noticed even between SSH keepalives. */
function connectSocket(opts: SessionOptions, signal?: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(stoppedBy(signal));
    const sock = net.connect({ host: opts.host, port: opts.port });
    const fail = (err: Error) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onStop);
      sock.destroy();
      reject(err);
    };
    const onStop = () => fail(stoppedBy(signal!));
    signal?.addEventListener('abort', onStop, { once: true });
    const timer = setTimeout(() => {
      fail(new TransientError(`connecting to ${opts.host}:${opts.port}: no answer within ${Math.round(opts.connectTimeoutMs / 1000)} s`));
    }, opts.connectTimeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onStop);
      sock.setNoDelay(true);
      sock.setKeepAlive(true, Math.max(1000, opts.keepaliveIntervalMs || 15_000));
      resolve(sock);
    });
    sock.once('error', (err) => fail(classify(err, `connecting to ${opts.host}:${opts.port}`)));
  });
}
