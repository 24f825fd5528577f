// ipi-push's pure decisions, each answerable from its arguments alone (and unit-tested):
// which names are ignored, whether a path stays inside WATCH_DIR, whether a file needs an
// upload, in what order, when a file has settled, when a failed one is tried again, where it
// goes on the server, and what `sha256sum` said.
import path from 'node:path';
import picomatch from 'picomatch';
import { retryDelay } from '../retry.js';

/** A local file as seen by a scan or the watcher. `rel` always uses '/' separators. */
export interface LocalFile {
  rel: string;
  size: number;
  mtimeMs: number;
}

export interface UploadedRecord {
  size: number;
  mtimeMs: number;
  sha256: string;
  uploadedAt: string;
  remotePath: string;
  /** How the remote copy was checked: 'sha256' only when the server's sha256sum agreed. */
  verified: 'sha256' | 'size';
}

export interface FailedRecord {
  size: number;
  mtimeMs: number;
  error: string;
  attempts: number;
  lastAttemptAt: string;
  /** When it is tried again; null for a permanent failure (tried again when the file changes, or with --retry-failed). */
  nextRetryAt: string | null;
  permanent: boolean;
}

/** A folder of WATCH_DIR made on the server (or found there), so later scans need not ask again. */
export interface FolderRecord {
  remotePath: string;
  mirroredAt: string;
}

export interface StateView {
  uploaded: Readonly<Record<string, UploadedRecord>>;
  failed: Readonly<Record<string, FailedRecord>>;
}

/** Our own temporary name on the server; never uploaded from WATCH_DIR either. */
export const REMOTE_TEMP_SUFFIX = '.ipi-push-part';

export type IgnoreTest = (rel: string) => boolean;

/**
 * IGNORE globs: a glob without '/' is matched against every component of the relative path
 * (so `.*` also skips everything under a hidden folder), one with '/' against the whole path.
 * Our own temporary suffix is always ignored.
 */
export function ignoreMatcher(globs: readonly string[]): IgnoreTest {
  const byName = globs.filter((g) => !g.includes('/')).map((g) => picomatch(g, { dot: true }));
  const byPath = globs.filter((g) => g.includes('/')).map((g) => picomatch(g.replace(/^\/+/, ''), { dot: true }));
  return (rel) => {
    const parts = rel.split('/');
    if (parts[parts.length - 1]!.endsWith(REMOTE_TEMP_SUFFIX)) return true;
    return parts.some((p) => byName.some((m) => m(p))) || byPath.some((m) => m(rel));
  };
}

/** Is `p` the folder `root` itself or somewhere below it? Both absolute, already resolved. */
export function isInside(root: string, p: string, pathApi: typeof path = path): boolean {
  const rel = pathApi.relative(root, p);
  return rel === '' || (!rel.startsWith('..') && !pathApi.isAbsolute(rel));
}

/** Local relative path (OS separators) to the '/' form used in state and on the server. */
export function toRel(osRel: string, sep: string = path.sep): string {
  return osRel.split(sep).join('/');
}

/**
 * Why a relative path cannot be uploaded as it is, or null. Names come from the local disk,
 * but they become remote paths, so the same care as for server names: no control characters
 * (they would forge log lines and break `sha256sum` output), no '..', no backslash.
 */
export function unsafeRelReason(rel: string): string | null {
  if (rel === '' || rel.startsWith('/')) return 'not a relative path';
  for (const part of rel.split('/')) {
    if (part === '' || part === '.' || part === '..') return 'has an empty, "." or ".." component';
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(part)) return 'contains a control character';
    if (part.includes('\\')) return 'contains a backslash (a path separator on Windows servers)';
  }
  return null;
}

export type Verdict =
  | { upload: true; why: 'new' | 'changed' | 'retry' }
  | { upload: false; why: 'uploaded' | 'failed-permanently' | 'retry-later' };

export interface RetryPolicy {
  /** --retry-failed: a file that failed permanently goes again too (otherwise only once it changes). */
  retryFailed?: boolean;
  /**
   * Whether a transient failure waits for its next retry time (the default, --watch's own
   * backoff). --once does not: the interval between cron's runs is its backoff, and a file that
   * keeps failing is tried, and reported, at every run instead of skipped in silence.
   */
  waitForRetry?: boolean;
}

/** Does this file need an upload now? Changed = size or mtime differ from what was uploaded. */
export function needsUpload(f: LocalFile, state: StateView, nowMs: number, policy: RetryPolicy = {}): Verdict {
  // Own entries only: a file called `constructor` has no record the map inherited.
  const done = Object.hasOwn(state.uploaded, f.rel) ? state.uploaded[f.rel] : undefined;
  const failed = Object.hasOwn(state.failed, f.rel) ? state.failed[f.rel] : undefined;
  if (failed && failed.size === f.size && failed.mtimeMs === f.mtimeMs) {
    if (failed.permanent && !policy.retryFailed) return { upload: false, why: 'failed-permanently' };
    const due = !(policy.waitForRetry ?? true) || failed.nextRetryAt === null || Date.parse(failed.nextRetryAt) <= nowMs;
    if (!failed.permanent && !due) return { upload: false, why: 'retry-later' };
    return { upload: true, why: 'retry' };
  }
  if (done && done.size === f.size && done.mtimeMs === f.mtimeMs) return { upload: false, why: 'uploaded' };
  return { upload: true, why: done ? 'changed' : 'new' };
}

/**
 * Pure: is AFTER_UPLOAD (archive or delete) still to be done for this file? True when the
 * state records this very version (same size and mtime) as uploaded and the file is still in
 * WATCH_DIR: the run that uploaded it stopped between recording the upload and moving the
 * file (crash, power cut, SIGKILL), or the move failed, or AFTER_UPLOAD was keep then. It is
 * not uploaded again; only the action is finished. A file changed since is uploaded first.
 */
export function afterUploadDue(f: LocalFile, state: StateView, action: 'keep' | 'archive' | 'delete'): boolean {
  // The time matters only to a failed file, which is never 'uploaded'.
  return action !== 'keep' && needsUpload(f, state, 0).why === 'uploaded';
}

/** The stable queue order: oldest modification first, ties by path (byte order, locale-free). */
export function queueOrder(a: LocalFile, b: LocalFile): number {
  if (a.mtimeMs !== b.mtimeMs) return a.mtimeMs - b.mtimeMs;
  return a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0;
}

/** One file under observation: when its size and mtime were last seen to change. */
export interface Observation {
  size: number;
  mtimeMs: number;
  stableSinceMs: number;
}

/** Pure: the observation after looking again at `now`. */
export function observe(prev: Observation | undefined, seen: { size: number; mtimeMs: number }, nowMs: number): Observation {
  if (prev && prev.size === seen.size && prev.mtimeMs === seen.mtimeMs) return prev;
  return { size: seen.size, mtimeMs: seen.mtimeMs, stableSinceMs: nowMs };
}

/** Settled: unchanged for at least `settleMs` (two looks that far apart agree). */
export function isSettled(o: Observation, nowMs: number, settleMs: number): boolean {
  return nowMs - o.stableSinceMs >= settleMs;
}

/** When a failed upload is tried again: RETRY_DELAYS by attempt (the last repeats). */
export function nextRetryAt(attempts: number, delaysMs: readonly number[], nowMs: number): number {
  return nowMs + retryDelay(attempts, delaysMs, false);
}

export interface RemoteTarget {
  dir: string;
  final: string;
  temp: string;
}

/** Where a relative path goes under SFTP_UPLOAD_DIR, and its temporary name beside it. */
export function remoteTarget(uploadDir: string, rel: string): RemoteTarget {
  const base = uploadDir === '/' ? '' : uploadDir.replace(/\/+$/, '');
  const final = `${base}/${rel}`;
  const cut = final.lastIndexOf('/');
  const dir = cut <= 0 ? (final.startsWith('/') ? '/' : '.') : final.slice(0, cut);
  const name = final.slice(cut + 1);
  return { dir, final, temp: `${dir === '/' ? '' : dir}/.${name}${REMOTE_TEMP_SUFFIX}` };
}

/** The remote folder a folder of WATCH_DIR (relative path) is mirrored to. */
export function remoteFolder(uploadDir: string, rel: string): string {
  return remoteTarget(uploadDir, rel).final;
}

/**
 * Pure: the folders of WATCH_DIR to make on the server, parents before children: those seen
 * by the scan that the state does not record as mirrored to where SFTP_UPLOAD_DIR now points.
 * Recorded ones cost nothing (no remote call per folder per scan); a record is dropped when
 * its folder leaves WATCH_DIR (goneFromWatchDir), so a folder made again is mirrored again.
 */
export function foldersToMirror(seen: Iterable<string>, recorded: Readonly<Record<string, FolderRecord>>, uploadDir: string): string[] {
  return [...new Set(seen)].filter((rel) => !Object.hasOwn(recorded, rel) || recorded[rel]!.remotePath !== remoteFolder(uploadDir, rel))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Every folder from `dir` up to the root, `dir` first ('/in/a/b' -> '/in/a/b', '/in/a', '/in'). */
export function remoteAncestors(dir: string): string[] {
  const out: string[] = [];
  const parts = dir.split('/').filter(Boolean);
  for (let i = parts.length; i > 0; i--) out.push((dir.startsWith('/') ? '/' : '') + parts.slice(0, i).join('/'));
  return out;
}

/** A POSIX shell word for any string: single quotes, with embedded ones closed and escaped. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Pure: file name -> digest from `sha256sum A B ...` output, one `DIGEST  NAME` line per file
 * it could read (` *NAME` in binary mode). GNU marks a line whose name holds a backslash or a
 * line break with a leading backslash and escapes those characters; such names are unescaped
 * here, so the keys are exactly the arguments given. Anything else (errors, a server's banner)
 * yields no entry.
 */
export function parseSha256sums(stdout: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const m = /^(\\?)([0-9a-f]{64}) [ *](.+)$/.exec(line);
    if (!m) continue;
    const name = m[1] ? m[3]!.replace(/\\(\\|n|r)/g, (_, c: string) => (c === 'n' ? '\n' : c === 'r' ? '\r' : '\\')) : m[3]!;
    out.set(name, m[2]!);
  }
  return out;
}

/**
 * Pure: how many of `paths` (at least one) go into one `sha256sum` command: at most `maxFiles`,
 * and their quoted words within `maxChars`, well under any server's command-line limit.
 */
export function sha256sumBatch(paths: readonly string[], maxFiles: number, maxChars: number): number {
  let chars = 0;
  let n = 0;
  for (const p of paths) {
    chars += shellQuote(p).length + 1;
    if (n > 0 && (n >= maxFiles || chars > maxChars)) break;
    n++;
  }
  return Math.max(1, n);
}

/** Is the remote copy already this file? (We set its mtime, to the second, when we upload.) */
export function sameAsRemote(local: { size: number; mtimeMs: number }, remote: { size: number; mtimeMs: number; isFile: boolean }): boolean {
  return remote.isFile && remote.size === local.size && Math.floor(remote.mtimeMs / 1000) === Math.floor(local.mtimeMs / 1000);
}

/**
 * Pure: the recorded paths to drop after a scan of WATCH_DIR found `seen` and could not look
 * at `skipped` (unreadable folders, names it refused). A file gone from WATCH_DIR (deleted,
 * archived, renamed) has nothing left to skip or retry, so the state stays the size of the
 * folder instead of growing with every file ever sent. Only what is known to be gone is
 * dropped: a record at or under a skipped path is kept (an unreadable folder is not an empty
 * one), and a scan that found nothing drops nothing (an unmounted share looks empty too).
 */
export function goneFromWatchDir(recorded: Iterable<string>, seen: ReadonlySet<string>, skipped: readonly string[] = []): string[] {
  if (seen.size === 0) return [];
  const unseenUnder = (rel: string) => skipped.some((s) => rel === s || rel.startsWith(`${s}/`));
  return [...recorded].filter((rel) => !seen.has(rel) && !unseenUnder(rel));
}

/**
 * The name an uploaded file takes in ARCHIVE_DIR on its `attempt`-th try (0 first): its own
 * name, and when that is taken (an earlier version of the same path was archived) the UTC
 * time of the move before the last extension (`b.dat` -> `b.20250102T030405Z.dat`), then
 * `-2`, `-3`... (`b.20250102T030405Z-2.dat`) should that be taken too. Nothing already in
 * ARCHIVE_DIR is ever replaced.
 */
export function archiveName(name: string, at: Date, attempt: number): string {
  if (attempt === 0) return name;
  const stamp = at.toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/[-:]/g, '');
  const ext = path.posix.extname(name);
  const stem = name.slice(0, name.length - ext.length);
  return `${stem}.${stamp}${attempt > 1 ? `-${attempt}` : ''}${ext}`;
}
