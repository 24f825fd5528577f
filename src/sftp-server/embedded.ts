/**
 * In-process SFTP server built on ssh2's `Server`, serving a real local
 * directory on 127.0.0.1. It is what `ipi-pull demo` pulls from (so the demo
 * needs no OpenSSH), and what the test-suite uses where OpenSSH is not
 * installed. The fault options (lying sizes, evil names, short reads) exist
 * for the tests: a real sshd cannot be made to misbehave like that.
 *
 * Path model: SFTP '/' is a private jail dir; the served directory `root`
 * is `<jail>/upload`, so clients use remoteDir '/upload'. This deliberately
 * differs from the OpenSSH helper (remoteDir === root) so tests catch code
 * that confuses local and remote paths. '..' can never climb out of the jail.
 *
 * Everything is generated with ssh2 itself (no ssh-keygen needed), because
 * this server is the fallback for hosts without OpenSSH tools.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import ssh2 from 'ssh2';
import type { Attributes, AuthContext, Connection, FileEntry, ParsedKey, SFTPWrapper, Server } from 'ssh2';

import { fingerprintOf, knownHostsLine } from '../sftp/hostkey.js';
import { onProcessExit } from '../util/process-exit.js';
import { delay, settleWithin } from '../util/time.js';

export const LOOPBACK = '127.0.0.1';

/**
 * True when remote path `p` is `file` or ends with '/' + `file`, so that
 * bytesServed('a.bin') does not also count 'data.bin'.
 */
export function pathMatches(p: string, file: string | undefined): boolean {
  if (file === undefined) return true;
  return p === file || p.endsWith('/' + file.replace(/^\/+/, ''));
}

/** What a started server tells its user (the tests' SftpServerHandle has this shape). */
export interface EmbeddedServer {
  kind: 'embedded';
  host: string;
  port: number;
  user: string;
  /** Local folder served; files put here appear in remoteDir. */
  root: string;
  /** SFTP path of `root`. */
  remoteDir: string;
  clientKeyPath: string;
  passphraseKeyPath?: string;
  passphrase?: string;
  password: string;
  hostKeyFingerprint: string;
  knownHostsLine: string;
  tempDir: string;
  bytesServed(file?: string): Promise<number>;
  stop(): Promise<void>;
  restart(downMs?: number): Promise<void>;
}

const { utils } = ssh2;
const { OPEN_MODE, STATUS_CODE } = utils.sftp;

export interface ExtraEntry {
  /** Listed verbatim by READDIR, e.g. '../evil', 'a/b', 'CON', 'x\u0000y', 'line\nbreak'. */
  name: string;
  size: number;
  /** Unix seconds; default: server start time. */
  mtime?: number;
  /**
   * Bytes served if a client STATs/OPENs exactly `<remoteDir>/<name>`
   * (default: `size` bytes of 'E'), so a naive client really writes the file
   * and tests can detect where it lands.
   */
  content?: Buffer | string;
}

export interface EmbeddedServerOptions {
  /** Accepted password (default 'ipi-test-password'). */
  password?: string;
  /** Create a second authorized key protected by a passphrase (default true). */
  passphraseKey?: boolean;
  passphrase?: string;
  /** SFTP path of the served dir (default '/upload'). */
  remoteDir?: string;
  /** Cap every READ reply at this many bytes to exercise short-read handling. */
  shortReadMax?: number;
  /** Cap for READ replies when shortReadMax is unset (default 261120, like OpenSSH). */
  maxReadLen?: number;
  /** Entries per READDIR reply before EOF (default 50). */
  readdirBatch?: number;
  /** Fake entries listed in the remoteDir listing though not on disk. */
  extraEntries?: ExtraEntry[];
  /** Report `size` instead of the real size for paths ending with `name` (STAT/LSTAT/FSTAT/READDIR). */
  lieSize?: { name: string; size: number };
  /** Reject every authentication attempt. */
  failAuthAlways?: boolean;
  /** Cut the connection when the client starts to log in: a link lost after the host key, during the login. */
  dropAtLogin?: boolean;
  /** Never answer the request to start SFTP, while the connection and its keepalives go on: a stuck sftp-server. */
  ignoreSftpRequest?: boolean;
  /**
   * Never answer these requests (READDIR: of a folder; the others: of a file) on a path ending
   * with `name` (any path without one), while everything else is answered: a stuck sftp-server.
   */
  neverAnswer?: ReadonlyArray<{ request: 'READDIR' | 'STAT' | 'OPEN' | 'CLOSE'; name?: string }>;
  /** Take a command's channel but never answer the request to run it (by default a command is refused). */
  ignoreExec?: boolean;
  /**
   * Login methods offered (default publickey and password). ['keyboard-interactive'] is a
   * server that asks for the password by prompt only, as many PAM set-ups do.
   */
  authMethods?: ReadonlyArray<'publickey' | 'password' | 'keyboard-interactive'>;
  /**
   * Answer FAILURE, writing nothing, to the first `times` (default 1) WRITE requests on a path
   * ending with `name` whose range holds byte `offset`, as a full disk or a quota that frees up
   * again does; the requests around it succeed (a hole, as with ENOSPC on OpenSSH).
   */
  failWrite?: { name: string; offset: number; times?: number };
  /** Answer FAILURE to the first `times` (default 1) OPEN requests on a path ending with `name`, as a server refusing a file for a moment does. */
  refuseOpen?: { name: string; times?: number };
  /** Open files and folders a session may hold at once; past it OPEN and OPENDIR answer FAILURE, as some servers do. */
  maxHandles?: number;
  /** READDIR leaves out the permissions (and so the file type), as some servers do; STAT still gives them. */
  listingWithoutMode?: boolean;
}

const DEFAULT_PASSWORD = 'ipi-test-password';
const DEFAULT_PASSPHRASE = 'ipi-test-passphrase';
const OPENSSH_MAX_READ = 256 * 1024 - 1024;
const S_IFREG = 0o100000;

interface KeyPair {
  privatePath: string;
  publicLine: string;
  parsed: ParsedKey;
}

function parseOrThrow(data: string, passphrase?: string): ParsedKey {
  const key = utils.parseKey(data, passphrase);
  if (key instanceof Error) throw key;
  return key;
}

/**
 * ssh2's generateKeyPairSync('ed25519') strips leading zero bytes from the
 * public key, so ~1 in 256 generated pairs is malformed and rejected by its
 * own parseKey() (mscdex/ssh2#1390, still open in 1.17). Regenerate until
 * both halves parse instead of failing a random test run. `rounds` of bcrypt
 * protect the passphrase: 16 as ssh-keygen; unit tests take fewer, for speed.
 */
export function generateValidEd25519(comment: string, passphrase?: string, rounds = 16): { private: string; public: string } {
  for (let attempt = 0; attempt < 50; attempt++) {
    const pair = passphrase
      ? utils.generateKeyPairSync('ed25519', { comment, passphrase, cipher: 'aes256-ctr', rounds })
      : utils.generateKeyPairSync('ed25519', { comment });
    const pubOk = !(utils.parseKey(pair.public) instanceof Error);
    if (pubOk && !(utils.parseKey(pair.private, passphrase) instanceof Error)) return pair;
  }
  throw new Error('could not generate a valid ed25519 key pair');
}

function writeKeyPair(dir: string, name: string, comment: string, passphrase?: string): KeyPair {
  const pair = generateValidEd25519(comment, passphrase);
  const privatePath = path.join(dir, name);
  fs.writeFileSync(privatePath, pair.private, { mode: 0o600 });
  fs.writeFileSync(privatePath + '.pub', pair.public + '\n');
  return { privatePath, publicLine: pair.public.trim(), parsed: parseOrThrow(pair.public) };
}

/** Mutable state that survives restart(): keys, directories, counters, port. */
interface ServerState {
  opts: EmbeddedServerOptions;
  tempDir: string;
  jail: string;
  remoteDir: string;
  hostKey: KeyPair;
  authorizedKeys: ParsedKey[];
  password: string;
  startedAt: number;
  served: Map<string, number>;
  /** WRITE requests failed on purpose so far (failWrite). */
  writesFailed: number;
  /** OPEN requests refused on purpose so far (refuseOpen). */
  opensRefused: number;
  server: Server | null;
  connections: Set<Connection>;
  port: number;
}

// ---------------------------------------------------------------- auth

function keyIsAuthorized(st: ServerState, algo: string, data: Buffer): ParsedKey | undefined {
  return st.authorizedKeys.find((k) => k.type === algo && k.getPublicSSH().equals(data));
}

function authenticate(st: ServerState, ctx: AuthContext): void {
  const methods = [...(st.opts.authMethods ?? ['publickey', 'password'])];
  if (st.opts.failAuthAlways || !methods.includes(ctx.method as (typeof methods)[number])) return ctx.reject(methods);
  if (ctx.method === 'keyboard-interactive') {
    return ctx.prompt([{ prompt: 'Password: ', echo: false }], 'ipi test server', (answers) => (answers[0] === st.password ? ctx.accept() : ctx.reject(methods)));
  }
  if (ctx.method === 'password') {
    return ctx.password === st.password ? ctx.accept() : ctx.reject(methods);
  }
  if (ctx.method === 'publickey') {
    const key = keyIsAuthorized(st, ctx.key.algo, ctx.key.data);
    if (!key) return ctx.reject(methods);
    // No signature = client only asks whether this key would be acceptable.
    if (!ctx.signature || !ctx.blob) return ctx.accept();
    return key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) === true ? ctx.accept() : ctx.reject(methods);
  }
  return ctx.reject(methods);
}

// ---------------------------------------------------------------- paths & attrs

interface Resolved {
  /** Normalized absolute SFTP path. */
  virt: string;
  local: string;
}

function resolvePath(st: ServerState, requested: string): Resolved {
  // Relative paths are relative to the "home" dir, which we make remoteDir.
  const virt = path.posix.resolve(st.remoteDir, requested);
  return { virt, local: path.join(st.jail, virt) };
}

/** Extra entries are matched on the raw requested path: that is what a naive client would send. */
function findExtra(st: ServerState, requested: string): ExtraEntry | undefined {
  return st.opts.extraEntries?.find((e) => `${st.remoteDir}/${e.name}` === requested);
}

function extraContent(e: ExtraEntry): Buffer {
  if (e.content !== undefined) return Buffer.from(e.content);
  return Buffer.alloc(e.size, 'E');
}

function extraAttrs(st: ServerState, e: ExtraEntry): Attributes {
  const t = e.mtime ?? st.startedAt;
  return { mode: S_IFREG | 0o644, uid: 0, gid: 0, size: e.size, atime: t, mtime: t };
}

function toAttrs(st: ServerState, virt: string, s: fs.Stats): Attributes {
  const lie = st.opts.lieSize;
  const size = lie && s.isFile() && pathMatches(virt, lie.name) ? lie.size : s.size;
  return {
    mode: s.mode,
    uid: s.uid,
    gid: s.gid,
    size,
    atime: Math.floor(s.atimeMs / 1000),
    mtime: Math.floor(s.mtimeMs / 1000),
  };
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** `ls -l` style line; some clients parse it, so keep OpenSSH's column layout. */
function longname(name: string, a: Attributes): string {
  const fmt = a.mode & 0o170000;
  const type = fmt === 0o040000 ? 'd' : fmt === 0o120000 ? 'l' : '-';
  let perms = '';
  for (let shift = 6; shift >= 0; shift -= 3) {
    const bits = (a.mode >> shift) & 7;
    perms += (bits & 4 ? 'r' : '-') + (bits & 2 ? 'w' : '-') + (bits & 1 ? 'x' : '-');
  }
  const d = new Date(a.mtime * 1000);
  const date = `${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2)} ` +
    `${String(d.getUTCHours()).padStart(2, '0')}:${String(d.getUTCMinutes()).padStart(2, '0')}`;
  return `${type}${perms}    1 ${String(a.uid).padEnd(8)} ${String(a.gid).padEnd(8)} ` +
    `${String(a.size).padStart(8)} ${date} ${name}`;
}

/**
 * Map a local fs error to an SFTP status. Messages are OpenSSH's fixed
 * strings: never the Node message, which would leak local jail paths.
 */
function statusFor(err: unknown): [number, string] {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
    case 'ERR_INVALID_ARG_VALUE': // path with NUL byte: cannot exist on disk
    case 'ERR_INVALID_ARG_TYPE':
      return [STATUS_CODE.NO_SUCH_FILE, 'No such file'];
    case 'EACCES':
    case 'EPERM':
      return [STATUS_CODE.PERMISSION_DENIED, 'Permission denied'];
    default:
      return [STATUS_CODE.FAILURE, 'Failure'];
  }
}

function fsOpenFlags(pflags: number): number {
  const c = fs.constants;
  const read = (pflags & OPEN_MODE.READ) !== 0;
  const write = (pflags & OPEN_MODE.WRITE) !== 0;
  let flags = read && write ? c.O_RDWR : write ? c.O_WRONLY : c.O_RDONLY;
  if (pflags & OPEN_MODE.APPEND) flags |= c.O_APPEND;
  if (pflags & OPEN_MODE.CREAT) flags |= c.O_CREAT;
  if (pflags & OPEN_MODE.TRUNC) flags |= c.O_TRUNC;
  if (pflags & OPEN_MODE.EXCL) flags |= c.O_EXCL;
  return flags;
}

/** Apply the subset of attributes clients send with SETSTAT/FSETSTAT. */
async function applyAttrs(target: string | fsp.FileHandle, a: Partial<Attributes>): Promise<void> {
  const isPath = typeof target === 'string';
  if (typeof a.size === 'number') await (isPath ? fsp.truncate(target, a.size) : target.truncate(a.size));
  if (typeof a.mode === 'number') await (isPath ? fsp.chmod(target, a.mode & 0o7777) : target.chmod(a.mode & 0o7777));
  if (typeof a.mtime === 'number') {
    const atime = typeof a.atime === 'number' ? a.atime : a.mtime;
    await (isPath ? fsp.utimes(target, atime, a.mtime) : target.utimes(atime, a.mtime));
  }
}

// ---------------------------------------------------------------- SFTP session

type OpenHandle =
  | { kind: 'file'; virt: string; file: fsp.FileHandle | null; extra?: Buffer; extraEntry?: ExtraEntry }
  | { kind: 'dir'; virt: string; local: string; entries: FileEntry[] | null; pos: number };

class SftpSession {
  private readonly handles = new Map<number, OpenHandle>();
  private nextHandle = 1;
  /** OPEN/OPENDIR requests being served: they count against maxHandles before their handle exists. */
  private opening = 0;

  constructor(private readonly st: ServerState, private readonly sftp: SFTPWrapper) {
    this.wire();
    // OpenSSH's sftp client sends EOF and then waits for the server to close
    // the channel; ssh2 does not do that by itself, so `sftp -b` would hang.
    sftp.on('end', () => sftp.end());
    sftp.on('close', () => void this.closeAll());
  }

  /**
   * Every request runs async; failures become an SFTP STATUS instead of an
   * unhandled rejection. Replies after the channel died are ignored by ssh2.
   */
  private run(reqid: number, work: () => Promise<void>): void {
    // .then(work) also turns synchronous throws (e.g. a NUL byte in a path) into a STATUS.
    Promise.resolve()
      .then(work)
      .catch((err: unknown) => this.status(reqid, ...statusFor(err)));
  }

  private status(reqid: number, code: number, message?: string): void {
    try {
      this.sftp.status(reqid, code, message);
    } catch {
      // channel gone
    }
  }

  /** neverAnswer names this request: it is left without an answer. */
  private ignores(request: 'READDIR' | 'STAT' | 'OPEN' | 'CLOSE', about: string | Buffer): boolean {
    const p = typeof about === 'string' ? about : this.lookup(about)?.virt;
    return p !== undefined && (this.st.opts.neverAnswer ?? []).some((n) => n.request === request && pathMatches(p, n.name));
  }

  private wire(): void {
    const s = this.sftp;
    s.on('REALPATH', (id, p) => this.run(id, async () => this.realpath(id, p)));
    s.on('STAT', (id, p) => this.ignores('STAT', p) || this.run(id, () => this.stat(id, p, false)));
    s.on('LSTAT', (id, p) => this.ignores('STAT', p) || this.run(id, () => this.stat(id, p, true)));
    s.on('FSTAT', (id, h) => this.run(id, () => this.fstat(id, h)));
    s.on('OPEN', (id, p, flags, attrs) => this.ignores('OPEN', p) || this.run(id, () => this.withHandleRoom(id, () => this.open(id, p, flags, attrs))));
    s.on('READ', (id, h, offset, len) => this.run(id, () => this.read(id, h, offset, len)));
    s.on('WRITE', (id, h, offset, data) => this.run(id, () => this.write(id, h, offset, data)));
    s.on('CLOSE', (id, h) => this.ignores('CLOSE', h) || this.run(id, () => this.close(id, h)));
    s.on('OPENDIR', (id, p) => this.run(id, () => this.withHandleRoom(id, () => this.opendir(id, p))));
    s.on('READDIR', (id, h) => this.ignores('READDIR', h) || this.run(id, () => this.readdir(id, h)));
    s.on('REMOVE', (id, p) => this.run(id, () => this.simple(id, fsp.unlink(resolvePath(this.st, p).local))));
    s.on('RMDIR', (id, p) => this.run(id, () => this.simple(id, fsp.rmdir(resolvePath(this.st, p).local))));
    s.on('MKDIR', (id, p, attrs) => this.run(id, () => this.mkdir(id, p, attrs)));
    s.on('RENAME', (id, from, to) => this.run(id, () => this.rename(id, from, to)));
    s.on('SETSTAT', (id, p, attrs) =>
      this.run(id, () => this.simple(id, applyAttrs(resolvePath(this.st, p).local, attrs))));
    s.on('FSETSTAT', (id, h, attrs) => this.run(id, () => this.fsetstat(id, h, attrs)));
    s.on('READLINK', (id, p) => this.run(id, () => this.readlink(id, p)));
    s.on('SYMLINK', (id) => this.status(id, STATUS_CODE.OP_UNSUPPORTED));
    s.on('EXTENDED', (id) => this.status(id, STATUS_CODE.OP_UNSUPPORTED));
  }

  private async simple(id: number, op: Promise<unknown>): Promise<void> {
    await op;
    this.status(id, STATUS_CODE.OK);
  }

  private addHandle(h: OpenHandle): Buffer {
    const n = this.nextHandle++;
    this.handles.set(n, h);
    const buf = Buffer.alloc(4);
    buf.writeUInt32BE(n);
    return buf;
  }

  private lookup(handle: Buffer): OpenHandle | undefined {
    return handle.length === 4 ? this.handles.get(handle.readUInt32BE(0)) : undefined;
  }

  private realpath(id: number, p: string): void {
    const { virt } = resolvePath(this.st, p);
    const attrs = { mode: 0, uid: 0, gid: 0, size: 0, atime: 0, mtime: 0 };
    this.sftp.name(id, [{ filename: virt, longname: virt, attrs }]);
  }

  private async stat(id: number, p: string, lstat: boolean): Promise<void> {
    const extra = findExtra(this.st, p);
    if (extra) return this.sftp.attrs(id, extraAttrs(this.st, extra));
    const { virt, local } = resolvePath(this.st, p);
    const s = lstat ? await fsp.lstat(local) : await fsp.stat(local);
    this.sftp.attrs(id, toAttrs(this.st, virt, s));
  }

  private async fstat(id: number, handle: Buffer): Promise<void> {
    const h = this.lookup(handle);
    if (!h || h.kind !== 'file') return this.status(id, STATUS_CODE.FAILURE, 'bad handle');
    if (h.extraEntry) return this.sftp.attrs(id, extraAttrs(this.st, h.extraEntry));
    this.sftp.attrs(id, toAttrs(this.st, h.virt, await (h.file as fsp.FileHandle).stat()));
  }

  /**
   * Serve an OPEN or OPENDIR within maxHandles: one arriving while the session holds (or is
   * about to hold) that many is refused with FAILURE, as servers with such a limit do.
   */
  private async withHandleRoom(id: number, open: () => Promise<void>): Promise<void> {
    const max = this.st.opts.maxHandles;
    if (max !== undefined && this.handles.size + this.opening >= max) {
      return this.status(id, STATUS_CODE.FAILURE, `too many open handles (at most ${max})`);
    }
    this.opening++;
    try {
      await open();
    } finally {
      this.opening--;
    }
  }

  private async open(id: number, p: string, pflags: number, attrs: Partial<Attributes>): Promise<void> {
    const refuse = this.st.opts.refuseOpen;
    if (refuse && pathMatches(p, refuse.name) && this.st.opensRefused < (refuse.times ?? 1)) {
      this.st.opensRefused++;
      return this.status(id, STATUS_CODE.FAILURE, 'Failure');
    }
    const extra = findExtra(this.st, p);
    if (extra) {
      const h = this.addHandle({ kind: 'file', virt: p, file: null, extra: extraContent(extra), extraEntry: extra });
      return this.sftp.handle(id, h);
    }
    const { virt, local } = resolvePath(this.st, p);
    const mode = typeof attrs?.mode === 'number' ? attrs.mode & 0o7777 : 0o644;
    const file = await fsp.open(local, fsOpenFlags(pflags), mode);
    this.sftp.handle(id, this.addHandle({ kind: 'file', virt, file }));
  }

  private readLimit(len: number): number {
    const cap = this.st.opts.shortReadMax ?? this.st.opts.maxReadLen ?? OPENSSH_MAX_READ;
    return Math.max(0, Math.min(len, cap));
  }

  private async read(id: number, handle: Buffer, offset: number, len: number): Promise<void> {
    const h = this.lookup(handle);
    if (!h || h.kind !== 'file') return this.status(id, STATUS_CODE.FAILURE, 'bad handle');
    const want = this.readLimit(len);
    let chunk: Buffer;
    if (h.extra) {
      chunk = h.extra.subarray(offset, offset + want);
    } else {
      const buf = Buffer.alloc(want);
      const { bytesRead } = await (h.file as fsp.FileHandle).read(buf, 0, want, offset);
      chunk = buf.subarray(0, bytesRead);
    }
    if (chunk.length === 0) return this.status(id, STATUS_CODE.EOF);
    this.st.served.set(h.virt, (this.st.served.get(h.virt) ?? 0) + chunk.length);
    this.sftp.data(id, chunk);
  }

  private async write(id: number, handle: Buffer, offset: number, data: Buffer): Promise<void> {
    const h = this.lookup(handle);
    if (!h || h.kind !== 'file' || !h.file) return this.status(id, STATUS_CODE.FAILURE, 'bad handle');
    const fail = this.st.opts.failWrite;
    if (fail && pathMatches(h.virt, fail.name) && offset <= fail.offset && fail.offset < offset + data.length
      && this.st.writesFailed < (fail.times ?? 1)) {
      this.st.writesFailed++;
      return this.status(id, STATUS_CODE.FAILURE, 'Failure');
    }
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await h.file.write(data, done, data.length - done, offset + done);
      done += bytesWritten;
    }
    this.status(id, STATUS_CODE.OK);
  }

  private async fsetstat(id: number, handle: Buffer, attrs: Partial<Attributes>): Promise<void> {
    const h = this.lookup(handle);
    if (!h || h.kind !== 'file' || !h.file) return this.status(id, STATUS_CODE.FAILURE, 'bad handle');
    await applyAttrs(h.file, attrs);
    this.status(id, STATUS_CODE.OK);
  }

  private async close(id: number, handle: Buffer): Promise<void> {
    const h = this.lookup(handle);
    if (!h) return this.status(id, STATUS_CODE.FAILURE, 'bad handle');
    this.handles.delete(handle.readUInt32BE(0));
    if (h.kind === 'file') await h.file?.close();
    this.status(id, STATUS_CODE.OK);
  }

  private async opendir(id: number, p: string): Promise<void> {
    const { virt, local } = resolvePath(this.st, p);
    const s = await fsp.stat(local);
    if (!s.isDirectory()) return this.status(id, STATUS_CODE.FAILURE, 'not a directory');
    this.sftp.handle(id, this.addHandle({ kind: 'dir', virt, local, entries: null, pos: 0 }));
  }

  /** Like OpenSSH: '.' and '..' included, then real entries, then the fake ones. */
  private async listing(virt: string, local: string): Promise<FileEntry[]> {
    const entry = (filename: string, attrs: Attributes): FileEntry =>
      ({ filename, longname: longname(filename, attrs), attrs });
    const out: FileEntry[] = [];
    for (const name of ['.', '..', ...(await fsp.readdir(local))]) {
      try {
        out.push(entry(name, toAttrs(this.st, path.posix.join(virt, name), await fsp.lstat(path.join(local, name)))));
      } catch {
        // vanished between readdir and lstat
      }
    }
    if (virt === this.st.remoteDir) {
      for (const e of this.st.opts.extraEntries ?? []) out.push(entry(e.name, extraAttrs(this.st, e)));
    }
    return out;
  }

  private async readdir(id: number, handle: Buffer): Promise<void> {
    const h = this.lookup(handle);
    if (!h || h.kind !== 'dir') return this.status(id, STATUS_CODE.FAILURE, 'bad handle');
    h.entries ??= await this.listing(h.virt, h.local);
    if (h.pos >= h.entries.length) return this.status(id, STATUS_CODE.EOF);
    const batch = h.entries.slice(h.pos, h.pos + (this.st.opts.readdirBatch ?? 50));
    h.pos += batch.length;
    // ssh2 leaves out of the reply an attribute that is not a number (its type says otherwise).
    const sent = this.st.opts.listingWithoutMode ? batch.map((e) => ({ ...e, attrs: { ...e.attrs, mode: undefined } }) as unknown as FileEntry) : batch;
    this.sftp.name(id, sent);
  }

  private async mkdir(id: number, p: string, attrs: Partial<Attributes>): Promise<void> {
    const mode = typeof attrs?.mode === 'number' ? attrs.mode & 0o7777 : 0o755;
    await fsp.mkdir(resolvePath(this.st, p).local, { mode });
    this.status(id, STATUS_CODE.OK);
  }

  /** SFTPv3 rename as OpenSSH implements it: fails when the target exists. */
  private async rename(id: number, from: string, to: string): Promise<void> {
    const src = resolvePath(this.st, from).local;
    const dst = resolvePath(this.st, to).local;
    const exists = await fsp.lstat(dst).then(() => true, () => false);
    if (exists) return this.status(id, STATUS_CODE.FAILURE, 'target exists');
    await fsp.rename(src, dst);
    this.status(id, STATUS_CODE.OK);
  }

  private async readlink(id: number, p: string): Promise<void> {
    const target = await fsp.readlink(resolvePath(this.st, p).local);
    const attrs = { mode: 0, uid: 0, gid: 0, size: 0, atime: 0, mtime: 0 };
    this.sftp.name(id, [{ filename: target, longname: target, attrs }]);
  }

  private async closeAll(): Promise<void> {
    const open = [...this.handles.values()];
    this.handles.clear();
    for (const h of open) if (h.kind === 'file') await h.file?.close().catch(() => {});
  }
}

// ---------------------------------------------------------------- connection & lifecycle

function rawSocket(c: Connection): Socket | undefined {
  // ssh2 does not expose the TCP socket; needed to unref it and to drop it hard.
  return (c as unknown as { _sock?: Socket })._sock;
}

function onConnection(st: ServerState, client: Connection): void {
  st.connections.add(client);
  // Like the listener: a test that forgets stop() must not hang the process.
  rawSocket(client)?.unref();
  // Resets from killed clients are normal in these tests; never crash the runner.
  client.on('error', () => {});
  client.on('close', () => st.connections.delete(client));
  client.on('authentication', (ctx) => (st.opts.dropAtLogin ? rawSocket(client)?.destroy() : authenticate(st, ctx)));
  client.on('ready', () => {
    client.on('session', (acceptSession) => {
      const session = acceptSession();
      if (st.opts.ignoreExec) session.on('exec', () => {});
      session.on('sftp', (acceptSftp) => {
        if (st.opts.ignoreSftpRequest) return;
        new SftpSession(st, acceptSftp());
      });
    });
  });
}

function listen(st: ServerState, port: number): Promise<void> {
  const server = new ssh2.Server({ hostKeys: [fs.readFileSync(st.hostKey.privatePath)] }, (c) => onConnection(st, c));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, LOOPBACK, () => {
      server.off('error', reject);
      server.on('error', () => {});
      server.unref();
      st.server = server;
      st.port = (server.address() as { port: number }).port;
      resolve();
    });
  });
}

/** Abruptly drop all connections (like a crashed server) and stop listening. */
async function halt(st: ServerState): Promise<void> {
  const server = st.server;
  st.server = null;
  if (!server) return;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  for (const c of st.connections) {
    const sock = rawSocket(c);
    if (sock) sock.destroy();
    else c.end();
  }
  st.connections.clear();
  // close() only calls back once every socket is gone; do not hang on a straggler.
  await settleWithin(closed, 2000);
}

async function prepareState(opts: EmbeddedServerOptions): Promise<ServerState> {
  const tempDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ipi-embedded-sftp-'));
  const remoteDir = path.posix.resolve('/', opts.remoteDir ?? '/upload');
  const jail = path.join(tempDir, 'jail');
  fs.mkdirSync(path.join(jail, remoteDir), { recursive: true });
  const hostKey = writeKeyPair(tempDir, 'host_ed25519', 'ipi-test-host');
  const client = writeKeyPair(tempDir, 'client_ed25519', 'ipi-test-client');
  const authorizedKeys = [client.parsed];
  if (opts.passphraseKey !== false) {
    const pp = opts.passphrase ?? DEFAULT_PASSPHRASE;
    authorizedKeys.push(writeKeyPair(tempDir, 'client_pass_ed25519', 'ipi-test-client-passphrase', pp).parsed);
  }
  return {
    opts,
    tempDir,
    jail,
    remoteDir,
    hostKey,
    authorizedKeys,
    password: opts.password ?? DEFAULT_PASSWORD,
    startedAt: Math.floor(Date.now() / 1000),
    served: new Map(),
    writesFailed: 0,
    opensRefused: 0,
    server: null,
    connections: new Set(),
    port: 0,
  };
}

export async function startEmbeddedServer(opts: EmbeddedServerOptions = {}): Promise<EmbeddedServer> {
  const st = await prepareState(opts);
  // A forgotten stop() must not leave key material in /tmp.
  const unregisterExit = onProcessExit(() => fs.rmSync(st.tempDir, { recursive: true, force: true }));
  try {
    await listen(st, 0);
  } catch (err) {
    unregisterExit();
    await fsp.rm(st.tempDir, { recursive: true, force: true });
    throw err;
  }
  let stopped = false;
  const withPassphrase = opts.passphraseKey !== false;
  return {
    kind: 'embedded',
    host: LOOPBACK,
    port: st.port,
    user: 'ipi-test',
    root: path.join(st.jail, st.remoteDir),
    remoteDir: st.remoteDir,
    clientKeyPath: path.join(st.tempDir, 'client_ed25519'),
    passphraseKeyPath: withPassphrase ? path.join(st.tempDir, 'client_pass_ed25519') : undefined,
    passphrase: withPassphrase ? (opts.passphrase ?? DEFAULT_PASSPHRASE) : undefined,
    password: st.password,
    hostKeyFingerprint: fingerprintOf(Buffer.from(st.hostKey.publicLine.split(/\s+/)[1]!, 'base64')),
    knownHostsLine: knownHostsLine(LOOPBACK, st.port, Buffer.from(st.hostKey.publicLine.split(/\s+/)[1]!, 'base64')),
    tempDir: st.tempDir,
    bytesServed: async (file?: string) => {
      let total = 0;
      for (const [p, n] of st.served) if (pathMatches(p, file)) total += n;
      return total;
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      unregisterExit();
      await halt(st);
      await fsp.rm(st.tempDir, { recursive: true, force: true });
    },
    restart: async (downMs = 0) => {
      if (stopped) throw new Error('restart() after stop()');
      const port = st.port;
      await halt(st);
      if (downMs > 0) await delay(downMs);
      await listen(st, port);
    },
  };
}
