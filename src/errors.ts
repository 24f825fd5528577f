// The one place that decides what a failure means: worth a retry (transient) or not
// (permanent), and which exit code it ends the run with. Nobody else guesses.
import fs from 'node:fs';
import path from 'node:path';

export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  locked: 3,
  auth: 4,
  interrupted: 130,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export type Kind = 'transient' | 'permanent';

/** An error a person can act on: what was attempted, with what, and what came back. */
export class IpiError extends Error {
  constructor(
    message: string,
    readonly kind: Kind,
    readonly exitCode: ExitCode,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class ConfigError extends IpiError {
  constructor(message: string) {
    super(message, 'permanent', EXIT.usage);
  }
}

export class LockHeldError extends IpiError {
  constructor(message: string) {
    super(message, 'permanent', EXIT.locked);
  }
}

/** Authentication refused, or a host key we must not trust. Retrying would only hammer the server. */
export class AccessDeniedError extends IpiError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'permanent', EXIT.auth, options);
  }
}

/** Retrying cannot help this run: a missing remote folder, no permission, a full local disk. */
export class PermanentError extends IpiError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'permanent', EXIT.failed, options);
  }
}

/** The server has no such file or folder. Permanent for what the settings name (SFTP_DIR); a listed file that vanished is the caller's to judge. */
export class RemoteMissingError extends PermanentError {}

/** The link or the server failed in a way a later attempt can get past. */
export class TransientError extends IpiError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'transient', EXIT.failed, options);
  }
}

/**
 * A remote file changed under its transfer (grew, shrank, was replaced). Its bytes are
 * fetched again from zero, so they are no progress for the retry budget.
 */
export class RemoteChangedError extends TransientError {}

/** The bytes do not match the server's checksum file. */
export class IntegrityError extends IpiError {
  constructor(message: string) {
    super(message, 'permanent', EXIT.failed);
  }
}

export class InterruptedError extends IpiError {
  constructor(signal: string) {
    super(`stopped by ${signal}; what was transferred is kept and the next run resumes it`, 'permanent', EXIT.interrupted);
  }
}

// SFTP status codes (draft-ietf-secsh-filexfer-02), as ssh2 puts them on `err.code`.
const SFTP_FAILURE = 4;
const SFTP_NO_SUCH_FILE = 2;
const SFTP_PERMISSION_DENIED = 3;
const SFTP_NO_CONNECTION = 6;
const SFTP_CONNECTION_LOST = 7;

const TRANSIENT_NET_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH',
  'ENETDOWN', 'EHOSTDOWN', 'EAI_AGAIN', 'ENOTCONN', 'ESHUTDOWN', 'ERR_STREAM_DESTROYED', 'ERR_SOCKET_CLOSED',
]);

const LOCAL_PERMANENT_CODES: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only filesystem',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'not a folder',
  EISDIR: 'is a folder',
  ENAMETOOLONG: 'name too long',
};

/**
 * Local I/O through a file handle (write, sync, truncate) reports no path, and copyFile reports
 * its source: attach the file we were writing, so the one error line names where the disk is
 * full or read-only. Only errno-style errors are touched; anything else passes unchanged.
 */
export function withPath(err: unknown, file: string, override = false): unknown {
  const e = err as RawError | null;
  if (e && typeof e === 'object' && !(err instanceof IpiError) && typeof e.code === 'string' && (override || typeof e.path !== 'string')) {
    e.path = file;
  }
  return err;
}

/**
 * A path from the settings that is the wrong kind of thing: a file where a folder is to be
 * (mkdir answers EEXIST, or ENOTDIR for a file among its parents), a folder where a file is
 * to be (EISDIR). Retrying cannot help and the fix is in the settings, so it is a ConfigError
 * (exit 2) naming the setting and what is in the way; null for any other failure.
 */
export function wrongKindOfPath(err: unknown, setting: string, target: string, want: 'file' | 'folder'): ConfigError | null {
  const code = (err as RawError | null)?.code;
  if (code !== 'EEXIST' && code !== 'ENOTDIR' && code !== 'EISDIR') return null;
  // The deepest path that exists, from the target up: the target itself, or a parent.
  // (Below a file, stat answers ENOTDIR rather than ENOENT: no such path either way.)
  const statOf = (p: string): fs.Stats | undefined => {
    try {
      return fs.statSync(p);
    } catch {
      return undefined;
    }
  };
  let found = path.resolve(target);
  let stat = statOf(found);
  while (!stat && path.dirname(found) !== found) {
    found = path.dirname(found);
    stat = statOf(found);
  }
  if (!stat) return null;
  if (found === path.resolve(target)) {
    if (want === 'file' && stat.isDirectory()) return new ConfigError(`${setting} ${target} is a folder, not a file`);
    if (want === 'folder' && !stat.isDirectory()) return new ConfigError(`${setting} ${target} is a file, not a folder`);
    return null;
  }
  return stat.isDirectory() ? null : new ConfigError(`${setting} ${target}: ${found} is a file, not a folder`);
}

/**
 * Windows refuses to replace a file another program holds open without FILE_SHARE_DELETE
 * (most readers: EPERM), and an antivirus scan or a backup holding it answers EBUSY or
 * EACCES. That is the consumer's moment, not our settings: transient, said plainly, and the
 * file is published by a retry or the next run. Elsewhere these codes mean what they say.
 */
export function replaceRefused(err: unknown, target: string, platform: NodeJS.Platform = process.platform): TransientError | null {
  const code = (err as RawError | null)?.code;
  if (platform !== 'win32' || (code !== 'EPERM' && code !== 'EBUSY' && code !== 'EACCES')) return null;
  return new TransientError(`${target} could not be replaced (${code}): another program has it open (a consumer reading it, an antivirus scan), or it is read-only; not published yet, tried again`, { cause: err });
}

interface RawError {
  message?: string;
  code?: unknown;
  level?: unknown;
  syscall?: unknown;
  path?: unknown;
}

/**
 * Turn anything thrown into an IpiError. `doing` says what was attempted ("downloading
 * IPI_20240101.dat") so the message stands on its own in a cron mail.
 */
export function classify(err: unknown, doing: string): IpiError {
  if (err instanceof IpiError) return err;
  const e = (err ?? {}) as RawError;
  const msg = typeof e.message === 'string' ? e.message : String(err);
  const code = e.code;

  // ssh2 tags connection-level errors with `level`.
  if (e.level === 'client-authentication') {
    return new AccessDeniedError(`${doing}: the server refused the login (${msg}); check SFTP_USER and SFTP_PASS / SFTP_KEY`, { cause: err });
  }
  if (e.level === 'client-timeout') return new TransientError(`${doing}: timed out (${msg})`, { cause: err });
  if (e.level === 'client-socket' || e.level === 'protocol') return new TransientError(`${doing}: connection failed (${msg})`, { cause: err });

  if (typeof code === 'number') {
    if (code === SFTP_NO_SUCH_FILE) return new RemoteMissingError(`${doing}: no such file or folder on the server (${msg})`, { cause: err });
    if (code === SFTP_PERMISSION_DENIED) return new PermanentError(`${doing}: the server denied permission (${msg})`, { cause: err });
    if (code === SFTP_NO_CONNECTION || code === SFTP_CONNECTION_LOST) return new TransientError(`${doing}: connection lost (${msg})`, { cause: err });
    // Other SFTP failures (generic FAILURE, EOF at an unexpected point) may pass on a new session.
    return new TransientError(`${doing}: the server answered "${msg}"`, { cause: err });
  }

  if (typeof code === 'string') {
    if (TRANSIENT_NET_CODES.has(code)) return new TransientError(`${doing}: ${msg}`, { cause: err });
    const local = LOCAL_PERMANENT_CODES[code];
    if (local) {
      const where = typeof e.path === 'string' ? ` (${e.path})` : '';
      return new PermanentError(`${doing}: ${local}${where}`, { cause: err });
    }
    if (code === 'ENOENT') return new PermanentError(`${doing}: ${msg}`, { cause: err });
  }

  // ssh2 reports a closed channel or a dead keepalive with plain messages.
  // (Not a bare "ended": our own "the file ended at byte N" is about a file, not the link.)
  if (/no response from server|keepalive timeout|not connected|channel (?:closed|open failure)|connection (?:lost|closed)|socket (?:has been )?(?:closed|ended)|socket hang up|timed out/i.test(msg)) {
    return new TransientError(`${doing}: ${msg}`, { cause: err });
  }
  return new PermanentError(`${doing}: ${msg}`, { cause: err });
}

/**
 * The server's generic SFTP FAILURE status (no reason given), classified or not: what some
 * servers answer an open past their limit of open files (sftp/handle-gate.ts).
 */
export function isSftpGenericFailure(err: unknown): boolean {
  const raw = (err instanceof IpiError ? err.cause : err) as RawError | undefined;
  return raw?.code === SFTP_FAILURE;
}

/**
 * The whole story of a failure for LOG_FILE at debug level: each error's stack, then what
 * caused it, down the chain. The one-line message says what failed; this says where.
 */
export function errorDetail(err: unknown): string {
  const parts: string[] = [];
  const seen = new Set<unknown>();
  for (let e: unknown = err; e !== undefined && e !== null && !seen.has(e); e = (e as { cause?: unknown }).cause) {
    seen.add(e);
    const text = e instanceof Error ? (e.stack ?? `${e.name}: ${e.message}`) : String(e);
    parts.push(parts.length === 0 ? text : `caused by: ${text}`);
  }
  return parts.join('\n');
}
