// ipi-push, start to end: lock, state, scan, mirror new folders, settle, upload, record,
// after-upload action.
// `--once` takes what is ready and exits (cron); `--watch` keeps a queue fed by the file
// watcher and a periodic rescan, uploading over one connection that is reopened with
// RETRY_DELAYS backoff whenever the server is away, so the queue drains by itself when it
// returns. Orchestration only: the rules live in decide.ts, scan.ts, upload.ts, state.ts,
// after-upload.ts.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config/load.js';
import { AccessDeniedError, ConfigError, IntegrityError, InterruptedError, TransientError, classify, wrongKindOfPath, type IpiError } from '../errors.js';
import { FetchAhead, mayStartAhead } from '../fetch-ahead.js';
import { acquireLock, lockFileFor, pidAlive, type Lock } from '../lock.js';
import type { Logger } from '../log.js';
import { printableName } from '../names.js';
import { rate, type Progress } from '../progress.js';
import { sessionOptions } from '../sftp/session-options.js';
import { retryDelay, withRetries } from '../retry.js';
import { SftpSession } from '../sftp/session.js';
import { LocalChangedError } from '../transfer/upload-engine.js';
import { sweepTemporaries } from '../util/atomic.js';
import { formatBytes } from '../util/space.js';
import { sleep } from '../util/time.js';
import { makeDir } from '../util/folders.js';
import {
  afterUploadDue, foldersToMirror, goneFromWatchDir, ignoreMatcher, isSettled, needsUpload, nextRetryAt, observe, queueOrder, remoteFolder,
  type IgnoreTest, type Observation,
} from './decide.js';
import { afterUpload } from './after-upload.js';
import { openUploadHistory, type UploadHistory } from './history.js';
import { lookAt, scanDir, stillGone, type ScannedFile } from './scan.js';
import { StateStore } from './state.js';
import { SessionFacts, ensureRemoteDir, uploadFile, type UploadResult } from './upload.js';
import { WATCH_SUMMARY_KEEPS, newPushSummary, noteFolders, noteUpload, type PushSummary } from './summary.js';
import { startWatcher, type Watcher } from './watch.js';

export interface PushOptions {
  mode: 'once' | 'watch';
  dryRun: boolean;
  acceptNewHostKey: boolean;
  /** Try files that failed permanently again (their record says not to, until they change). */
  retryFailed: boolean;
  signal: AbortSignal;
}

function skipKey(rel: string, reason: string): string {
  return `${rel}\0${reason}`;
}

function sameKnown(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

export interface PushContext {
  log: Logger;
  progress: Progress;
  /** Watch mode: called after every file outcome and connection failure (metrics). */
  onActivity?: (summary: PushSummary, ok: boolean) => void;
  /** The file watcher (default chokidar's); tests give one that misses events, as on a network share. */
  startWatcher?: typeof startWatcher;
  /** The lock's heartbeat period (default 30 s); tests shorten it to see a lost lock stop a run. */
  lockRefreshMs?: number;
  /** The walk of WATCH_DIR (default scan.ts's); tests give a slow one, to change WATCH_DIR while it walks. */
  scanDir?: typeof scanDir;
  /** The summary to fill (default a new one): the caller's, so a run that fails still says which files did. */
  summary?: PushSummary;
}

type Entry = { file: ScannedFile; o: Observation };
/** What became of one file of the queue; 'unsettled': looked at again, it was still being written, and was not taken. */
type Outcome = 'uploaded' | 'skipped' | 'failed' | 'transient' | 'stopped' | 'unsettled';

/** --watch uploads at most this many windows of FILES_IN_FLIGHT between two turns of its loop. */
const WATCH_BATCH_WINDOWS = 4;
/**
 * Files sent and waiting for their check (the server's sha256sum, the rename) stop counting
 * against FILES_IN_FLIGHT, up to this many windows started and not yet handled: the checks of
 * the files that wait are made together (server-hash.ts), and a window held by them would
 * leave one command per file at the head of the queue.
 */
const CHECK_WINDOWS = 4;
/** A folder the server would not make: retried after backoff, or (permanent) not until it is made anew locally. */
type FolderTrouble = { permanent: boolean; attempts: number; retryAt: number };

export async function runPush(config: Config, opts: PushOptions, ctx: PushContext): Promise<PushSummary> {
  const summary = ctx.summary ?? newPushSummary();
  let watched: Awaited<ReturnType<typeof fs.stat>>;
  try {
    watched = await fs.stat(config.watchDir);
  } catch {
    throw new ConfigError(`WATCH_DIR ${config.watchDir}: no such folder. Create it, or set WATCH_DIR to the folder whose files are to be uploaded`);
  }
  if (!watched.isDirectory()) throw new ConfigError(`WATCH_DIR ${config.watchDir}: a file, not a folder. Set WATCH_DIR to the folder whose files are to be uploaded`);
  let lock: Lock | null = null;
  if (!opts.dryRun) {
    await makeDir(path.dirname(config.stateFile)).catch((err: unknown) => {
      throw wrongKindOfPath(err, 'STATE_FILE\'s folder', path.dirname(config.stateFile), 'folder') ?? err;
    });
    lock = await acquireLock(lockFileFor(config.stateFile), (m) => ctx.log.warn(m), { program: 'ipi-push', refreshMs: ctx.lockRefreshMs });
  }
  // Everything after the lock is taken runs inside this try: whatever fails, the lock goes.
  try {
    if (lock) {
      for (const file of await sweepTemporaries(path.dirname(config.stateFile), pidAlive, lock.tookOverFromPid)) ctx.log.info(`removed ${file}, a temporary file left by a run that died`);
    }
    // --dry-run holds no lock: it reads the state and its journal, and writes neither.
    const store = await StateStore.open(config.stateFile, { readOnly: opts.dryRun });
    const history = openUploadHistory(config.stateFile);
    try {
      // A lost lock stops the run as a signal does (the upload in hand is checkpointed), and is
      // what the run then reports.
      const signal = lock ? AbortSignal.any([opts.signal, lock.lost]) : opts.signal;
      const pusher = new Pusher(config, store, history, { ...opts, signal }, ctx, summary);
      if (opts.mode === 'watch' && !opts.dryRun) await pusher.watchLoop();
      else await pusher.once();
    } catch (err) {
      lock?.lost.throwIfAborted();
      throw err;
    } finally {
      await history.close();
      // Folding the journal into STATE_FILE is tidiness: every change is already in the journal.
      await store.close({ fold: !lock?.lost.aborted }).catch((err: unknown) => ctx.log.warn(`${classify(err, 'rewriting the state file').message}; its journal keeps every change and the next run folds it in`));
    }
    lock?.lost.throwIfAborted();
  } finally {
    await lock?.release();
  }
  return summary;
}

class Pusher {
  private readonly ignored: IgnoreTest;
  private readonly entries = new Map<string, Entry>();
  /** The folders of WATCH_DIR at the last scan. */
  private dirs = new Set<string>();
  private readonly folderTrouble = new Map<string, FolderTrouble>();
  /** A scan happened since AFTER_UPLOAD was last looked for undone (see finishAfterUploads). */
  private afterUploadCheck = false;
  private readonly warned = new Set<string>();
  private session: SftpSession | null = null;
  /** What is known about the current connection. */
  private facts: SessionFacts | null = null;
  private connectFailures = 0;
  private connectBackoffUntil = 0;
  private kick: (() => void) | null = null;
  /** The rescan under way, and whether another was asked for meanwhile. */
  private scanning: Promise<void> | null = null;
  private scanAgain = false;

  constructor(
    private readonly config: Config,
    private readonly store: StateStore,
    private readonly history: UploadHistory,
    private readonly opts: PushOptions,
    private readonly ctx: PushContext,
    private readonly summary: PushSummary,
  ) {
    this.ignored = ignoreMatcher(config.ignore);
    // On a signal the current upload finishes the writes already sent (a clean prefix on the
    // server to resume from); a link too stalled to answer within 5 s is dropped instead.
    opts.signal.addEventListener('abort', () => {
      setTimeout(() => this.session?.destroy('stopped by a signal'), 5000).unref();
    }, { once: true });
  }

  private get log(): Logger {
    return this.ctx.log;
  }

  /** How many uploads and folders the summary lists: all for --once, the latest for a service. */
  private get keep(): number | undefined {
    return this.opts.mode === 'watch' ? WATCH_SUMMARY_KEEPS : undefined;
  }

  // ---------------------------------------------------------------- observation

  private note(file: ScannedFile, nowMs: number): void {
    const prev = this.entries.get(file.rel);
    this.entries.set(file.rel, { file, o: observe(prev?.o, file, nowMs) });
  }

  private skip(rel: string, reason: string): void {
    const key = skipKey(rel, reason);
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.log.warn(`skipping ${printableName(rel)}: ${reason}`);
  }

  /**
   * Walk WATCH_DIR: every file seen is (re)observed, every folder noted; what is gone from it is
   * dropped, from the state too. One walk at a time: a request while one goes (the watcher's
   * new folders come in bursts) is answered by one more walk after it, shared by all of them.
   */
  private rescan(): Promise<void> {
    if (this.scanning) {
      this.scanAgain = true;
      return this.scanning;
    }
    this.scanning = (async () => {
      try {
        do {
          this.scanAgain = false;
          await this.walk();
        } while (this.scanAgain);
      } finally {
        this.scanning = null;
      }
    })();
    return this.scanning;
  }

  private async walk(): Promise<void> {
    const now = Date.now();
    const root = this.config.watchDir;
    const { files, dirs, skipped } = await (this.ctx.scanDir ?? scanDir)(root, this.ignored);
    // Warned once per name and reason while it stays; a name gone from WATCH_DIR is forgotten
    // (a service sees endless names go by).
    const still = new Set(skipped.map((s) => skipKey(s.rel, s.reason)));
    for (const key of this.warned) if (!still.has(key)) this.warned.delete(key);
    for (const s of skipped) this.skip(s.rel, s.reason);
    const seenFiles = new Set<string>();
    for (const f of files) {
      seenFiles.add(f.rel);
      this.note(f, now);
    }
    this.afterUploadCheck = true;
    this.dirs = new Set(dirs);
    for (const rel of [...this.folderTrouble.keys()]) {
      if (this.dirs.has(rel)) continue;
      this.folderTrouble.delete(rel);
      this.dropFailure(`${rel}/`);
    }
    const seen = new Set([...seenFiles, ...dirs]);
    const { uploaded, failed, folders } = this.store.state;
    const unseenEntries = [...this.entries.keys()].filter((rel) => !seenFiles.has(rel));
    const unseenRecords = goneFromWatchDir([...Object.keys(uploaded), ...Object.keys(failed), ...Object.keys(folders)], seen, skipped.map((s) => s.rel));
    const unseenFailures = this.summary.failed.map((f) => f.rel).filter((rel) => !rel.endsWith('/') && !seenFiles.has(rel));
    // The walk takes seconds in a large folder: a file renamed into a folder it had passed, then
    // reported by the watcher, perhaps uploaded and recorded, is not in it. So only what is
    // still gone now goes, and only if nothing was noted or recorded for it since it was looked at.
    const before = new Map([...unseenEntries, ...unseenRecords, ...unseenFailures].map((rel) => [rel, this.knownOf(rel)]));
    const gone = await stillGone(root, before.keys());
    // Judged all at once, before anything goes: dropping an entry changes what is known of it.
    const drop = new Set([...before].filter(([rel, then]) => gone.has(rel) && sameKnown(then, this.knownOf(rel))).map(([rel]) => rel));
    for (const rel of unseenEntries) if (drop.has(rel)) this.entries.delete(rel);
    for (const rel of unseenFailures) if (drop.has(rel)) this.dropFailure(rel);
    const forget = unseenRecords.filter((rel) => drop.has(rel));
    if (forget.length > 0) {
      await this.store.forget(forget);
      this.log.debug(`state: forgot ${forget.length} file(s) or folder(s) no longer in ${root}`);
    }
  }

  /**
   * A file or folder (`rel/`) that failed and has left WATCH_DIR: it is no longer failed nor
   * pending (a service's metrics count both), and a service would keep every such name for ever.
   */
  private dropFailure(rel: string): void {
    if (this.summary.failed.some((f) => f.rel === rel)) this.summary.failed = this.summary.failed.filter((f) => f.rel !== rel);
  }

  /** What this run holds about a path (its queue entry, its records), each replaced, never changed in place, when it changes. */
  private knownOf(rel: string): unknown[] {
    const { uploaded, failed, folders } = this.store.state;
    return [this.entries.get(rel), uploaded[rel], failed[rel], folders[rel]];
  }

  /** Look at one path again (watcher event, or just before an upload). */
  private async relook(rel: string): Promise<Entry | null> {
    const root = this.config.watchDir;
    const look = await lookAt(root, await fs.realpath(root), path.join(root, ...rel.split('/')), rel);
    if (look.kind === 'file') {
      this.note(look.file, Date.now());
      return this.entries.get(rel)!;
    }
    this.entries.delete(rel);
    if (look.kind === 'skip') this.skip(rel, look.reason);
    return null;
  }

  /** --once does not wait for a transient failure's next retry time: cron's interval is its backoff (decide.ts). */
  private uploadDue(file: ScannedFile, nowMs: number): boolean {
    return needsUpload(file, this.store.state, nowMs, { retryFailed: this.opts.retryFailed, waitForRetry: this.opts.mode === 'watch' }).upload;
  }

  /** Files that need an upload, in queue order; `settled` splits them into ready and waiting. */
  private candidates(nowMs: number): { ready: ScannedFile[]; unsettled: Entry[] } {
    const ready: ScannedFile[] = [];
    const unsettled: Entry[] = [];
    for (const e of this.entries.values()) {
      if (!this.uploadDue(e.file, nowMs)) continue;
      if (isSettled(e.o, nowMs, this.config.pushSettle)) ready.push(e.file);
      else unsettled.push(e);
    }
    ready.sort(queueOrder);
    unsettled.sort((a, b) => queueOrder(a.file, b.file));
    return { ready, unsettled };
  }

  /** Folders to make on the server now, parents first (not those refused, nor those backing off in --watch). */
  private pendingFolders(nowMs: number): string[] {
    return foldersToMirror(this.dirs, this.store.state.folders, this.config.uploadDir).filter((rel) => {
      const t = this.folderTrouble.get(rel);
      return !t || (!t.permanent && (this.opts.mode === 'once' || t.retryAt <= nowMs));
    });
  }

  private pendingNames(): string[] {
    const now = Date.now();
    return [...this.entries.values()].filter((e) => this.uploadDue(e.file, now))
      .map((e) => e.file).sort(queueOrder).map((f) => f.rel);
  }

  // ---------------------------------------------------------------- --once

  async once(): Promise<void> {
    await this.rescan();
    await this.finishAfterUploads();
    const first = this.candidates(Date.now());
    const todo = [...first.ready, ...first.unsettled.map((e) => e.file)].sort(queueOrder);
    const folders = this.pendingFolders(Date.now());
    this.reportPermanentFailures();
    if (todo.length === 0 && folders.length === 0) {
      this.log.info(`nothing new in ${this.config.watchDir}`);
      return;
    }
    if (this.opts.dryRun) {
      this.summary.wouldCreateFolders = folders;
      for (const rel of folders) this.log.info(`would create the folder ${printableName(rel)} on the server (${remoteFolder(this.config.uploadDir, rel)})`);
      this.summary.wouldUpload = todo.map((f) => f.rel);
      for (const f of todo) this.log.info(`would upload ${printableName(f.rel)} (${formatBytes(f.size)})`);
      return;
    }
    // The second look, PUSH_SETTLE after the first: what moved meanwhile is still being written.
    if (first.unsettled.length > 0) await sleep(this.config.pushSettle, this.opts.signal).catch(() => {});
    if (this.opts.signal.aborted) return this.stop();
    for (const e of first.unsettled) await this.relook(e.file.rel);
    const { ready, unsettled } = this.candidates(Date.now());
    this.summary.waiting = unsettled.map((e) => e.file.rel);
    for (const e of unsettled) this.log.info(`${printableName(e.file.rel)} is still being written (its size or time changed within PUSH_SETTLE); the next run takes it`);
    if (ready.length === 0 && folders.length === 0) return;

    const done = new Set<string>();
    try {
      await withRetries(async (attempt) => {
        const session = await this.openSession();
        try {
          // Folders first: cheap, and the files' folders are then known to exist.
          const mirrored = await this.mirrorFolders(session, this.pendingFolders(Date.now()));
          if (mirrored === 'transient') throw this.lastTransient!;
          if (mirrored === 'stopped') throw new InterruptedError('a signal');
          let transient = false;
          await this.uploadAll(session, ready.filter((f) => !done.has(f.rel)), false, (file, outcome) => {
            if (outcome === 'stopped') return false;
            if (outcome === 'transient') {
              transient = true;
              return false;
            }
            done.add(file.rel);
            if (outcome === 'uploaded') attempt.progressed = true;
            return true;
          });
          if (this.opts.signal.aborted) throw new InterruptedError('a signal');
          if (transient) throw this.lastTransient!;
        } finally {
          await this.closeSession();
        }
      }, { retries: this.config.retries, delaysMs: this.config.retryDelays }, this.log, this.opts.signal);
    } catch (err) {
      if (this.opts.signal.aborted) return this.stop();
      throw err;
    } finally {
      this.summary.pending = this.pendingNames().filter((r) => !this.summary.waiting.includes(r));
    }
  }

  private reportPermanentFailures(): void {
    if (this.opts.retryFailed) return;
    for (const [rel, f] of Object.entries(this.store.state.failed)) {
      const e = this.entries.get(rel);
      if (f.permanent && e && e.file.size === f.size && e.file.mtimeMs === f.mtimeMs) {
        this.summary.failed.push({ rel, error: f.error, permanent: true });
        this.log.warn(`${printableName(rel)} failed permanently earlier (${f.error}); it is tried again when it changes, or with --retry-failed`);
      }
    }
  }

  // ---------------------------------------------------------------- --watch

  async watchLoop(): Promise<void> {
    const signal = this.opts.signal;
    let watcher: Watcher | null = null;
    const wake = () => this.kick?.();
    const pendingLooks = new Set<Promise<unknown>>();
    const track = (p: Promise<unknown>) => {
      pendingLooks.add(p);
      void p.finally(() => pendingLooks.delete(p));
    };
    try {
      watcher = await (this.ctx.startWatcher ?? startWatcher)(this.config.watchDir, this.ignored, {
        changed: (rel) => track(this.relook(rel).catch(() => null).then(wake)),
        removed: (rel) => {
          this.entries.delete(rel);
          this.dropFailure(rel);
          wake();
        },
        // A folder moved in whole: its files may predate the watch on it.
        dirAdded: () => track(this.rescan().catch(() => {}).then(wake)),
      }, this.log);
      await this.rescan();
      await this.finishAfterUploads();
      this.reportPermanentFailures();
      const n = this.pendingNames().length;
      this.log.info(`watching ${this.config.watchDir} (${n} file(s) to upload now); uploads go to ${this.config.uploadDir} on ${this.config.host}`);
      let lastScan = Date.now();
      while (!signal.aborted) {
        const now = Date.now();
        if (this.config.rescanInterval > 0 && now - lastScan >= this.config.rescanInterval) {
          await this.rescan().catch((err) => this.log.warn(`rescanning ${this.config.watchDir}: ${classify(err, 'rescanning').message}`));
          lastScan = Date.now();
        }
        // Here, between uploads, never beside one: a scan set off by the watcher only asks for it.
        await this.finishAfterUploads();
        const { ready, unsettled } = this.candidates(now);
        const folders = this.pendingFolders(now);
        if (ready.length === 0 && folders.length === 0) {
          await this.idle(this.nextDue(now, unsettled, lastScan));
          continue;
        }
        const session = await this.watchSession();
        if (!session) {
          await this.idle(Math.max(50, this.connectBackoffUntil - Date.now()));
          continue;
        }
        if (folders.length > 0) {
          const outcome = await this.mirrorFolders(session, folders);
          if (outcome === 'stopped') break;
          if (outcome === 'transient' && session.isClosed) {
            this.log.warn(`the connection to ${this.config.host} was lost; ${folders.length} folder(s) and ${this.pendingNames().length} file(s) wait for it to come back`);
            await this.closeSession();
          }
          this.ctx.onActivity?.(this.summary, outcome === 'ok');
          continue;
        }
        // A few windows' worth at a time: between them the loop rescans and sees new events.
        let lost = false;
        await this.uploadAll(session, ready.slice(0, WATCH_BATCH_WINDOWS * this.config.filesInFlight), true, (_file, outcome) => {
          if (outcome === 'unsettled') return true;
          if (outcome === 'stopped') return false;
          this.ctx.onActivity?.(this.summary, outcome === 'uploaded' || outcome === 'skipped');
          lost ||= outcome === 'transient' && session.isClosed;
          return !lost;
        });
        if (this.summary.stopped) break;
        if (lost) {
          this.log.warn(`the connection to ${this.config.host} was lost; ${this.pendingNames().length} file(s) wait for it to come back`);
          await this.closeSession();
        }
      }
      this.stop();
    } finally {
      this.kick = null;
      await Promise.allSettled([...pendingLooks]);
      await watcher?.close().catch(() => {});
      await this.closeSession();
      this.summary.pending = this.pendingNames();
    }
  }

  /** When something may become ready: a file settling, a retry falling due, the next rescan. */
  private nextDue(now: number, unsettled: Entry[], lastScan: number): number {
    let due = now + 60_000;
    for (const e of unsettled) due = Math.min(due, e.o.stableSinceMs + this.config.pushSettle);
    for (const [rel, f] of Object.entries(this.store.state.failed)) {
      if (f.nextRetryAt && this.entries.has(rel)) due = Math.min(due, Date.parse(f.nextRetryAt));
    }
    for (const t of this.folderTrouble.values()) if (!t.permanent) due = Math.min(due, t.retryAt);
    if (this.config.rescanInterval > 0) due = Math.min(due, lastScan + this.config.rescanInterval);
    return Math.max(20, due - now);
  }

  /** Wait until `ms` passes, a watcher event arrives, or a signal. */
  private idle(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.opts.signal.removeEventListener('abort', done);
        this.kick = null;
        resolve();
      };
      const t = setTimeout(done, ms);
      this.kick = done;
      this.opts.signal.addEventListener('abort', done, { once: true });
    });
  }

  /** The connection, (re)opened when needed; null while the server is away (backing off). */
  private async watchSession(): Promise<SftpSession | null> {
    if (this.session && !this.session.isClosed) return this.session;
    if (this.session) await this.closeSession();
    if (Date.now() < this.connectBackoffUntil) return null;
    try {
      const s = await this.openSession();
      if (this.connectFailures > 0) this.log.info(`${this.config.host} is reachable again: draining the queue (${this.pendingNames().length} file(s))`);
      this.connectFailures = 0;
      return s;
    } catch (err) {
      // Stopped while connecting: the loop ends on the signal, nothing failed.
      if (this.opts.signal.aborted) return null;
      const e = classify(err, `connecting to ${this.config.host}`);
      if (e.kind === 'permanent') throw e; // login, host key, configuration: reported, not hammered
      this.connectFailures += 1;
      const wait = retryDelay(this.connectFailures, this.config.retryDelays, false);
      this.connectBackoffUntil = Date.now() + wait;
      this.log.warn(`${e.message}; ${this.pendingNames().length} file(s) wait; trying again in ${(wait / 1000).toFixed(wait % 1000 ? 1 : 0)} s`);
      this.ctx.onActivity?.(this.summary, false);
      return null;
    }
  }

  private async openSession(): Promise<SftpSession> {
    const s = await SftpSession.open(sessionOptions(this.config, this.opts.acceptNewHostKey, this.log), this.opts.signal);
    this.session = s;
    if (!s.hasPosixRename) this.log.warn(`${this.config.host} does not offer posix-rename@openssh.com: replacing a file already on the server is not atomic (it is removed, then the new one renamed into place)`);
    return s;
  }

  private factsOf(session: SftpSession): SessionFacts {
    if (this.facts?.session !== session) this.facts = new SessionFacts(session, this.log, this.opts.signal);
    return this.facts;
  }

  private async closeSession(): Promise<void> {
    const s = this.session;
    this.session = null;
    if (s) await s.end().catch(() => {});
  }

  // ---------------------------------------------------------------- folders

  /**
   * Make these folders of WATCH_DIR on the server (parents first; mkdir -p, so one that is
   * already there is fine) and record them in the state, in one save, so later scans do not
   * ask again. A folder the server refuses is reported and skipped; a transient failure stops
   * the batch (the connection is likely gone) and the rest wait for the next attempt.
   */
  private async mirrorFolders(session: SftpSession, rels: readonly string[]): Promise<'ok' | 'transient' | 'stopped'> {
    const done: Array<{ rel: string; remotePath: string }> = [];
    try {
      for (const rel of rels) {
        if (this.opts.signal.aborted) {
          this.stop();
          return 'stopped';
        }
        const name = printableName(rel);
        const remotePath = remoteFolder(this.config.uploadDir, rel);
        try {
          const created = await ensureRemoteDir(session, this.factsOf(session), remotePath);
          if (created.length > 0) this.log.info(`created the folder ${name} on the server: ${created.join(', ')}`);
          else this.log.debug(`the folder ${name} is already on the server (${remotePath}): recorded`);
        } catch (err) {
          if (this.opts.signal.aborted) {
            this.stop();
            return 'stopped';
          }
          const e = classify(err, `creating remote folder ${remotePath}`);
          if (e instanceof AccessDeniedError || e instanceof ConfigError) throw e;
          const why = `the folder ${name} of WATCH_DIR: ${e.message}`;
          const attempts = (this.folderTrouble.get(rel)?.attempts ?? 0) + 1;
          if (e.kind !== 'permanent' || session.isClosed) {
            const retryAt = session.isClosed ? Date.now() : nextRetryAt(attempts, this.config.retryDelays, Date.now());
            this.folderTrouble.set(rel, { permanent: false, attempts, retryAt });
            this.log.warn(`${why} (attempt ${attempts})`);
            this.lastTransient = new TransientError(why, { cause: err });
            return 'transient';
          }
          this.folderTrouble.set(rel, { permanent: true, attempts, retryAt: Infinity });
          this.summary.failed = this.summary.failed.filter((f) => f.rel !== `${rel}/`);
          this.summary.failed.push({ rel: `${rel}/`, error: why, permanent: true });
          this.log.error(`${why}; ${this.opts.mode === 'watch' ? 'not tried again until the folder is made anew (or ipi-push restarts)' : 'the next run tries again'}`);
          continue;
        }
        done.push({ rel, remotePath });
        this.folderTrouble.delete(rel);
      }
      return 'ok';
    } finally {
      await this.store.markFoldersMirrored(done);
      noteFolders(this.summary, done.map((d) => d.rel), this.keep);
    }
  }

  // ---------------------------------------------------------------- the queue

  /**
   * Upload `files` (queue order) over `session`: a file of more than one chunk alone, files of
   * at most one chunk up to FILES_IN_FLIGHT at once (a small file's upload is a series of round
   * trips, each leaving the link idle). With `relook`, each file is looked at once more right
   * before it starts (--watch: the watcher may not have told us yet). Outcomes go to
   * `onOutcome` in queue order; once it returns false (or a signal comes) no further file
   * starts, and those already started are still seen through and handed over.
   */
  private async uploadAll(session: SftpSession, files: readonly ScannedFile[], relook: boolean, onOutcome: (file: ScannedFile, outcome: Outcome) => boolean): Promise<void> {
    const sizes = files.map((f) => f.size);
    const inFlight = this.config.filesInFlight;
    // FILES_IN_FLIGHT=1 stays one file at a time, start to finish.
    const window = inFlight > 1 ? inFlight * CHECK_WINDOWS : 1;
    let halted = false;
    let started = 0;
    let head = 0;
    let sending = 0;
    const ahead: FetchAhead<Outcome> = new FetchAhead<Outcome>(
      files.length,
      (h, next) => !halted && !this.opts.signal.aborted && sending < inFlight && mayStartAhead(sizes, h, next, this.config.chunkSize, window),
      (i, asHead) => {
        started = i + 1;
        sending++;
        let sent = false;
        // Once per file: a file sent again after a SHA-256 mismatch (rare; one more try) is not
        // counted again, so it may briefly take one buffer beyond FILES_IN_FLIGHT.
        const onSent = () => {
          if (sent) return;
          sent = true;
          sending--;
          ahead.fill(head);
        };
        const p = this.startOne(session, files[i]!, relook, asHead, onSent);
        void p.then(onSent, onSent);
        return p;
      },
    );
    try {
      for (let i = 0; i < files.length; i++) {
        halted ||= this.opts.signal.aborted;
        if (halted && i >= started) break;
        head = i;
        if (!onOutcome(files[i]!, await ahead.take(i))) halted = true;
      }
    } finally {
      // Whatever ended the loop (onOutcome throwing too), a file sent late must not start
      // another once this returns: nothing may run detached from the caller.
      halted = true;
      await ahead.settled();
    }
  }

  private async startOne(session: SftpSession, file: ScannedFile, relook: boolean, asHead: boolean, onSent: () => void): Promise<Outcome> {
    if (relook) {
      const e = await this.relook(file.rel);
      if (!e || !isSettled(e.o, Date.now(), this.config.pushSettle)) return 'unsettled';
      file = e.file;
    }
    // One progress line at a time: the file that started at the head of the queue (a large
    // file always does), not the small ones started beside it.
    return this.uploadOne(session, file, asHead, onSent);
  }

  // ---------------------------------------------------------------- one file

  private lastTransient: IpiError | null = null;

  /** Upload one file and record the outcome; never throws for a per-file failure. */
  private async uploadOne(session: SftpSession, file: ScannedFile, showProgress: boolean, onSent?: () => void): Promise<Exclude<Outcome, 'unsettled'>> {
    const name = printableName(file.rel);
    let started = false;
    const attempt = (fresh: boolean) => uploadFile({
      session, facts: this.factsOf(session), file, log: this.log, fresh, onSent,
      settings: {
        watchDir: this.config.watchDir, uploadDir: this.config.uploadDir, chunkSize: this.config.chunkSize,
        chunksInFlight: this.config.chunksInFlight, dataTimeoutMs: this.config.dataTimeout, verify: this.config.verify,
      },
      inProgress: this.store.state.inProgress,
      onStart: (rec) => this.store.markInProgress(rec),
      onCutShort: (rec) => this.store.markInProgress(rec),
      onCheckpoint: (rec) => this.store.markInProgress(rec),
      onProgress: (done, total, from) => {
        if (!showProgress) return;
        if (!started) {
          started = true;
          this.ctx.progress.start(file.rel, total, from);
        }
        this.ctx.progress.update(done);
      },
      signal: this.opts.signal,
    }).finally(() => {
      if (started) this.ctx.progress.end();
      started = false;
    });

    let result: UploadResult;
    try {
      try {
        result = await attempt(false);
      } catch (err) {
        if (!(err instanceof IntegrityError)) throw err;
        // A corrupt byte on the way is worth one more try from zero; a second mismatch is not chance.
        this.log.warn(`${err.message}; removed on the server, uploading it once more from the start`);
        try {
          result = await attempt(true);
        } catch (again) {
          if (again instanceof IntegrityError) throw new IntegrityError(`${again.message} again: not published`);
          throw again;
        }
      }
    } catch (err) {
      return this.failed(file, err, session);
    }

    // On the server now: the history line first (fsynced; it outlives the state's record,
    // which goes when the file leaves WATCH_DIR), then the state, then AFTER_UPLOAD. A crash
    // between the line and the state costs a second line, never a missing one: the next run
    // finds the file already on the server and records it without sending it again.
    const uploadedAt = new Date().toISOString();
    try {
      await this.history.append({
        path: file.rel, size: result.size, mtime: new Date(result.mtimeMs).toISOString(), mtimeMs: result.mtimeMs,
        sha256: result.sha256, remotePath: result.remotePath, uploadedAt, verified: result.verified, alreadyThere: result.adopted,
        resumedFrom: result.resumedFrom, bytesSent: result.bytesSent, durationMs: result.durationMs,
      });
    } catch (err) {
      // Like a state that cannot be saved, this ends the run. The file stays unrecorded, so the
      // next run finds it on the server, records it without sending it again, and writes the line.
      throw classify(err, `recording the upload of ${name} (now on the server as ${result.remotePath}) in the upload history`);
    }
    await this.store.markUploaded(file.rel, {
      size: result.size, mtimeMs: result.mtimeMs, sha256: result.sha256, uploadedAt,
      remotePath: result.remotePath, verified: result.verified,
    });
    noteUpload(this.summary, result, this.keep);
    this.summary.failed = this.summary.failed.filter((f) => f.rel !== file.rel);
    if (!result.adopted) {
      const how = result.verified === 'sha256' ? 'size and SHA-256 checked on the server' : 'size checked';
      const resumed = result.resumedFrom > 0 ? `, resumed from byte ${result.resumedFrom}` : '';
      this.log.info(`uploaded ${name} -> ${result.remotePath}: ${formatBytes(result.size)} in ${(result.durationMs / 1000).toFixed(1)} s (${rate(result.bytesSent, result.durationMs)})${resumed}; ${how}; sha256 ${result.sha256}`);
    }
    await afterUpload(file, this.config, this.log, result.identity);
    this.done(file.rel, result);
    return result.adopted ? 'skipped' : 'uploaded';
  }

  private async failed(file: ScannedFile, err: unknown, session: SftpSession): Promise<'failed' | 'transient' | 'stopped'> {
    const name = printableName(file.rel);
    if (this.opts.signal.aborted) {
      this.stop();
      return 'stopped';
    }
    if (err instanceof LocalChangedError) {
      // Not a failure: the file is still being written (it goes once it settles again), or it is gone.
      this.log.info(err.message.startsWith(name) ? err.message : `${name}: ${err.message}`);
      await this.relook(file.rel).catch(() => null);
      const e = this.entries.get(file.rel);
      // Gone from WATCH_DIR: nothing waits for it either.
      if (!e) return 'failed';
      this.entries.set(file.rel, { file: e.file, o: { ...e.o, stableSinceMs: Date.now() } });
      if (this.opts.mode === 'once') this.summary.waiting.push(file.rel);
      return 'failed';
    }
    const e = classify(err, `uploading ${name}`);
    if (e instanceof AccessDeniedError || e instanceof ConfigError) throw e;
    // The engines' errors say what failed ("writing remote data"), not for which file; the
    // state, the summary and a run's last error line must each stand on their own.
    const message = e.message.includes(file.rel) ? e.message : `${name}: ${e.message}`;
    const linkLost = session.isClosed;
    const permanent = e.kind === 'permanent' && !linkLost;
    const rec = await this.store.markFailed(file.rel, file, message, permanent, (attempts) =>
      // A lost link is not the file's fault: it goes first as soon as the server is back.
      (linkLost ? Date.now() : nextRetryAt(attempts, this.config.retryDelays, Date.now())));
    this.summary.failed = this.summary.failed.filter((f) => f.rel !== file.rel);
    this.summary.failed.push({ rel: file.rel, error: message, permanent });
    if (permanent) {
      this.log.error(`${message}; not retried until the file changes (or run with --retry-failed)`);
      return 'failed';
    }
    // A lost link cuts short every file in flight: the loss is reported once, where the
    // connection is opened again; each file gets a quieter line of its own.
    if (linkLost) this.log.info(`${name}: cut short by the lost connection (${e.message}); it goes again once the connection is back`);
    else this.log.warn(`${message} (attempt ${rec.attempts}; next try at ${rec.nextRetryAt})`);
    this.lastTransient = message === e.message && e instanceof TransientError ? e : new TransientError(message, { cause: e });
    return 'transient';
  }

  /**
   * AFTER_UPLOAD left undone for files the state records as uploaded, unchanged, still in
   * WATCH_DIR (a crash between recording and moving, a move that failed): done now, without
   * uploading them again. Runs after a scan only, from the loop, so never beside an upload.
   */
  private async finishAfterUploads(): Promise<void> {
    if (!this.afterUploadCheck) return;
    this.afterUploadCheck = false;
    const action = this.config.afterUpload;
    if (action === 'keep') return;
    const due = [...this.entries.values()].map((e) => e.file).filter((f) => afterUploadDue(f, this.store.state, action)).sort(queueOrder);
    for (const file of due) {
      if (this.opts.signal.aborted) return;
      const rec = this.store.state.uploaded[file.rel]!;
      const name = printableName(file.rel);
      if (this.opts.dryRun) {
        this.log.info(`would finish AFTER_UPLOAD=${action} for ${name}: uploaded at ${rec.uploadedAt} as ${rec.remotePath}, still here`);
        continue;
      }
      this.log.info(`${name} was uploaded at ${rec.uploadedAt} as ${rec.remotePath} and is unchanged since, but still here: finishing AFTER_UPLOAD=${action}, not uploading it again`);
      await afterUpload(file, this.config, this.log);
      this.done(file.rel, file);
    }
  }

  /**
   * This version of the file is dealt with: its entry goes, unless the watcher has seen
   * another since (written while this one was checked, recorded or moved), which stays queued;
   * nothing else may bring it back (RESCAN_INTERVAL=0).
   */
  private done(rel: string, version: { size: number; mtimeMs: number }): void {
    const e = this.entries.get(rel);
    if (e && e.file.size === version.size && e.file.mtimeMs === version.mtimeMs) this.entries.delete(rel);
  }

  private stop(): void {
    if (this.summary.stopped) return;
    this.summary.stopped = true;
    // A lost lock aborts with its error as the reason (reported by runPush); a signal, with its name.
    const by = this.opts.signal.reason instanceof Error ? 'losing the lock' : 'a signal';
    this.log.warn(`stopped by ${by}: no new file taken, state saved; an upload cut short resumes where the server stopped on the next run`);
  }
}

