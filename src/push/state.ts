// STATE_FILE: what ipi-push has uploaded (path, size, mtime, sha256, when) and what failed
// (error, attempts, next retry), plus the upload in progress, so a restart neither uploads a
// file twice nor forgets one; and the folders of WATCH_DIR already made on the server, so a
// scan does not ask the server about each of them again.
//
// Each change is appended to STATE_FILE.journal (one JSON line, fsynced) and folded into
// STATE_FILE, rewritten atomically, once the journal is as long as the state (and when a run
// ends): rewriting the whole state after every file made an upload cost O(files in WATCH_DIR),
// hours for a first run over 100,000 files. A crash leaves the state plus a journal that the
// next reader replays; a line torn by the crash is the one change lost. A state or journal that
// cannot be read is never guessed at or overwritten: the run stops with the recovery steps.
import fs from 'node:fs/promises';
import { ConfigError, withPath } from '../errors.js';
import { HistoryAppender } from '../history.js';
import { writeFileAtomic } from '../util/atomic.js';
import { Turns } from '../util/serial.js';
import type { FailedRecord, FolderRecord, UploadedRecord } from './decide.js';

export interface InProgressRecord {
  rel: string;
  size: number;
  mtimeMs: number;
  remoteTemp: string;
  startedAt: string;
  /**
   * The end of the prefix the server acknowledged in order, as far as the state knows: the
   * resume point when the upload starts, then moved by checkpoints as acknowledgements come,
   * and saved once more when an attempt ends early (a failure, a stop). A WRITE after it may
   * have failed while later ones succeeded, so the temporary may hold a hole below its size:
   * a resume starts no further than this, cutting the temporary back first. Absent in states
   * written by versions before checkpoints: the server's size is then the resume point.
   */
  ackedTo?: number;
}

export interface PushState {
  version: 1;
  uploaded: Record<string, UploadedRecord>;
  failed: Record<string, FailedRecord>;
  /** The upload that was under way when the state was last written; its remote temporary may be resumed. */
  inProgress: InProgressRecord | null;
  /** Folders of WATCH_DIR mirrored on the server, by relative path. Absent in states written before folders were mirrored. */
  folders: Record<string, FolderRecord>;
}

export function emptyState(): PushState {
  return { version: 1, uploaded: {}, failed: {}, inProgress: null, folders: {} };
}

export class StateCorruptError extends ConfigError {}

export function journalFileFor(stateFile: string): string {
  return `${stateFile}.journal`;
}

/** The documented way out, repeated in the error so it is there when it is needed. */
export function recoveryAdvice(file: string): string {
  return `Nothing was uploaded. To recover: move it aside (mv '${file}' '${file}.corrupt') and run again; `
    + 'files whose copy on the server already matches (same size and modification time, and SHA-256 with VERIFY=sha256) '
    + 'are recorded without being uploaded again, the others are uploaded. See README, "ipi-push state file".';
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;
const isStr = (v: unknown): v is string => typeof v === 'string';

const isUploaded = (r: unknown): r is UploadedRecord => isObj(r) && isNum(r.size) && isNum(r.mtimeMs) && isStr(r.sha256)
  && isStr(r.uploadedAt) && isStr(r.remotePath) && (r.verified === 'sha256' || r.verified === 'size');
const isFailed = (r: unknown): r is FailedRecord => isObj(r) && isNum(r.size) && isNum(r.mtimeMs) && isStr(r.error)
  && isNum(r.attempts) && isStr(r.lastAttemptAt) && (r.nextRetryAt === null || isStr(r.nextRetryAt)) && typeof r.permanent === 'boolean';
const isFolder = (r: unknown): r is FolderRecord => isObj(r) && isStr(r.remotePath) && isStr(r.mirroredAt);
const isInProgress = (p: unknown): p is InProgressRecord => isObj(p) && isStr(p.rel) && isNum(p.size) && isNum(p.mtimeMs)
  && isStr(p.remoteTemp) && isStr(p.startedAt) && (p.ackedTo === undefined || isNum(p.ackedTo));

/** Pure: the state in `text`, or a StateCorruptError saying exactly what is wrong where. */
export function parseState(text: string, file: string): PushState {
  const bad = (why: string) => new StateCorruptError(`STATE_FILE ${file} is damaged: ${why}. ${recoveryAdvice(file)}`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw bad(`not valid JSON (${(err as Error).message})`);
  }
  if (!isObj(v)) throw bad('not a JSON object');
  if (v.version !== 1) throw bad(`unknown version ${JSON.stringify(v.version)} (this ipi-push writes version 1)`);
  if (!isObj(v.uploaded) || !isObj(v.failed)) throw bad('"uploaded" and "failed" must be objects');
  for (const [rel, r] of Object.entries(v.uploaded)) if (!isUploaded(r)) throw bad(`uploaded entry ${JSON.stringify(rel)} is incomplete`);
  for (const [rel, r] of Object.entries(v.failed)) if (!isFailed(r)) throw bad(`failed entry ${JSON.stringify(rel)} is incomplete`);
  if (v.folders !== undefined) {
    if (!isObj(v.folders)) throw bad('"folders" must be an object');
    for (const [rel, r] of Object.entries(v.folders)) if (!isFolder(r)) throw bad(`folders entry ${JSON.stringify(rel)} is incomplete`);
  }
  const p = v.inProgress;
  if (p !== null && p !== undefined && !isInProgress(p)) throw bad('"inProgress" is incomplete');
  return {
    version: 1,
    uploaded: v.uploaded as PushState['uploaded'],
    failed: v.failed as PushState['failed'],
    inProgress: (p ?? null) as InProgressRecord | null,
    folders: (v.folders ?? {}) as PushState['folders'],
  };
}

/**
 * One line of the journal: a key of the state set to a record, or removed (null). Lines are
 * results, not operations (a failure's attempts already counted): replayed over a state that
 * already holds them (a crash between a compaction's rewrite and its emptying of the journal)
 * they change nothing.
 */
export type StateChange =
  | { k: 'uploaded'; rel: string; v: UploadedRecord | null }
  | { k: 'failed'; rel: string; v: FailedRecord | null }
  | { k: 'folders'; rel: string; v: FolderRecord | null }
  | { k: 'inProgress'; v: InProgressRecord | null };

/**
 * Pure: apply changes to the state, in order. Keys are file names, and a file may be called
 * `__proto__`: defined as own properties, never assigned (an assignment would set the map's
 * prototype, and the record would vanish from the JSON).
 */
export function applyChanges(state: PushState, changes: readonly StateChange[]): void {
  for (const c of changes) {
    if (c.k === 'inProgress') state.inProgress = c.v;
    else if (c.v === null) delete state[c.k][c.rel];
    else Object.defineProperty(state[c.k], c.rel, { value: c.v, enumerable: true, writable: true, configurable: true });
  }
}

function isChange(c: unknown): c is StateChange {
  if (!isObj(c)) return false;
  if (c.k === 'inProgress') return c.v === null || isInProgress(c.v);
  if (!isStr(c.rel)) return false;
  if (c.v === null) return c.k === 'uploaded' || c.k === 'failed' || c.k === 'folders';
  return (c.k === 'uploaded' && isUploaded(c.v)) || (c.k === 'failed' && isFailed(c.v)) || (c.k === 'folders' && isFolder(c.v));
}

/**
 * Pure: the changes in a journal's text, and how many of its bytes hold whole lines. A last
 * line without its newline was torn by a crash mid-append: it is left out (its change is the
 * one lost; the upload history and the server still have the file). Any other line that is
 * not a change means the journal is damaged.
 */
export function parseJournal(text: string, stateFile: string): { changes: StateChange[]; wholeBytes: number } {
  const file = journalFileFor(stateFile);
  const end = text.lastIndexOf('\n') + 1;
  const changes: StateChange[] = [];
  let lineNo = 0;
  for (const line of text.slice(0, end).split('\n').slice(0, -1)) {
    lineNo++;
    let c: unknown;
    try {
      c = JSON.parse(line);
    } catch {
      c = undefined;
    }
    if (!isChange(c)) {
      throw new StateCorruptError(`STATE_FILE's journal ${file} is damaged: line ${lineNo} is not a change of the state. Nothing was uploaded. `
        + `To recover: move both aside (mv '${stateFile}' '${stateFile}.corrupt'; mv '${file}' '${file}.corrupt') and run again; `
        + 'files whose copy on the server already matches are recorded without being uploaded again, the others are uploaded. See README, "ipi-push state file".');
    }
    changes.push(c);
  }
  return { changes, wholeBytes: Buffer.byteLength(text.slice(0, end)) };
}

/** Pure: the state from the texts of STATE_FILE and its journal (null: the file does not exist). */
export function stateFromTexts(stateText: string | null, journalText: string | null, file: string): PushState {
  return replay(stateText, journalText, file).state;
}

/** The state with the journal's changes applied, and the journal as parsed (null when there is none). */
function replay(stateText: string | null, journalText: string | null, file: string): { state: PushState; journal: ReturnType<typeof parseJournal> | null } {
  const state = stateText === null ? emptyState() : parseState(stateText, file);
  const journal = journalText === null ? null : parseJournal(journalText, file);
  if (journal) applyChanges(state, journal.changes);
  return { state, journal };
}

async function readIfThere(file: string, what: string): Promise<string | null> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    throw new ConfigError(`${what} ${file}: cannot read it (${code ?? String(err)})`);
  }
}

/** The state as a reader sees it (status): STATE_FILE with its journal replayed. */
export async function readState(file: string): Promise<PushState> {
  return stateFromTexts(await readIfThere(file, 'STATE_FILE'), await readIfThere(journalFileFor(file), 'STATE_FILE\'s journal'), file);
}

/** Journal lines after which the state is rewritten: as many as it had entries, and at least this. */
const MIN_COMPACT_LINES = 1000;

/**
 * The state in memory and on disk, changed only through these methods: each change is in
 * the journal, fsynced, when its promise resolves. Only the lock's holder opens one to write.
 */
export class StateStore {
  /** The journal's writer: the appender of the upload and delivery histories. */
  private readonly journal: HistoryAppender<StateChange>;
  /** Lines in the journal since STATE_FILE was last rewritten (replayed ones included). */
  private journalLines = 0;
  /** Entries of the state when it was last rewritten or read: the journal may grow as long. */
  private entriesAtSnapshot = 0;
  /** Writes land one at a time, in the order the changes were made. */
  private readonly writes = new Turns();
  /**
   * The state as far as the journal holds it: what a fold writes. `state` runs ahead of it by
   * the changes still waiting for their line; folded in, a crash before the journal is emptied
   * would replay older lines over them and leave parts of a change that was never made durable.
   * The records are shared with `state` (never changed in place), only the maps are its own.
   */
  private readonly journalled: PushState;

  private constructor(readonly file: string, readonly state: PushState, private readonly readOnly: boolean) {
    this.journal = new HistoryAppender<StateChange>(journalFileFor(file));
    this.journalled = { ...state, uploaded: { ...state.uploaded }, failed: { ...state.failed }, folders: { ...state.folders } };
  }

  /**
   * The state with its journal replayed. To write (not `readOnly`), a line torn by a crash is
   * cut off first: the appender would otherwise end it with a newline and leave a damaged
   * line inside the journal.
   */
  static async open(file: string, opts: { readOnly?: boolean } = {}): Promise<StateStore> {
    const journalFile = journalFileFor(file);
    const stateText = await readIfThere(file, 'STATE_FILE');
    const journalText = await readIfThere(journalFile, 'STATE_FILE\'s journal');
    const { state, journal } = replay(stateText, journalText, file);
    const store = new StateStore(file, state, opts.readOnly ?? false);
    store.entriesAtSnapshot = entryCount(state);
    if (journal && journalText !== null) {
      store.journalLines = journal.changes.length;
      if (!store.readOnly && journal.wholeBytes < Buffer.byteLength(journalText)) {
        await fs.truncate(journalFile, journal.wholeBytes).catch((err: unknown) => {
          throw withPath(err, journalFile);
        });
      }
    }
    return store;
  }

  /**
   * Fold the journal into STATE_FILE and remove it, so a state at rest is one plain JSON file.
   * Called when the run ends; a failure leaves the journal, which the next run replays. A run
   * that lost its lock only closes (`fold: false`): the state is another run's now.
   */
  async close(opts: { fold: boolean } = { fold: true }): Promise<void> {
    const fold = opts.fold && !this.readOnly;
    await this.writes.run(async () => {
      try {
        if (fold && this.journalLines > 0) await this.compact();
      } finally {
        await this.journal.close();
      }
      if (fold) await fs.rm(journalFileFor(this.file), { force: true });
    });
  }

  async markInProgress(rec: InProgressRecord): Promise<void> {
    await this.record([{ k: 'inProgress', v: rec }]);
  }

  async markUploaded(rel: string, rec: UploadedRecord): Promise<void> {
    const changes: StateChange[] = [{ k: 'uploaded', rel, v: rec }];
    if (Object.hasOwn(this.state.failed, rel)) changes.push({ k: 'failed', rel, v: null });
    if (this.state.inProgress?.rel === rel) changes.push({ k: 'inProgress', v: null });
    await this.record(changes);
  }

  async markFailed(rel: string, f: { size: number; mtimeMs: number }, error: string, permanent: boolean, retryAt: (attempts: number) => number | null): Promise<FailedRecord> {
    const prev = Object.hasOwn(this.state.failed, rel) ? this.state.failed[rel] : undefined;
    const attempts = (prev && prev.size === f.size && prev.mtimeMs === f.mtimeMs ? prev.attempts : 0) + 1;
    const at = permanent ? null : retryAt(attempts);
    const rec: FailedRecord = {
      size: f.size, mtimeMs: f.mtimeMs, error, attempts, lastAttemptAt: new Date().toISOString(),
      nextRetryAt: at === null ? null : new Date(at).toISOString(), permanent,
    };
    await this.record([{ k: 'failed', rel, v: rec }]);
    return rec;
  }

  /** These folders now exist on the server; one write for all of them. */
  async markFoldersMirrored(folders: ReadonlyArray<{ rel: string; remotePath: string }>): Promise<void> {
    if (folders.length === 0) return;
    const at = new Date().toISOString();
    await this.record(folders.map((f) => ({ k: 'folders', rel: f.rel, v: { remotePath: f.remotePath, mirroredAt: at } })));
  }

  /** Drop the records of these files and folders (gone from WATCH_DIR); one write, only if something changed. */
  async forget(rels: readonly string[]): Promise<void> {
    const changes: StateChange[] = [];
    for (const rel of rels) {
      for (const k of ['uploaded', 'failed', 'folders'] as const) if (Object.hasOwn(this.state[k], rel)) changes.push({ k, rel, v: null });
    }
    if (changes.length > 0) await this.record(changes);
  }

  /** Apply in memory at once (later decisions see it), then make it durable in the journal. */
  private record(changes: StateChange[]): Promise<void> {
    if (this.readOnly) throw new Error('a read-only state store was asked to record a change');
    applyChanges(this.state, changes);
    return this.writes.run(async () => {
      await this.journal.appendAll(changes);
      applyChanges(this.journalled, changes);
      this.journalLines += changes.length;
      if (this.journalLines >= Math.max(MIN_COMPACT_LINES, this.entriesAtSnapshot)) await this.compact();
    });
  }

  /** Rewrite STATE_FILE with everything in the journal, then empty it (replaying it again would change nothing). */
  private async compact(): Promise<void> {
    await writeFileAtomic(this.file, `${JSON.stringify(this.journalled, null, 1)}\n`);
    this.entriesAtSnapshot = entryCount(this.journalled);
    const journalFile = journalFileFor(this.file);
    // Emptied through a handle of its own (on Windows an append-only handle may not truncate);
    // the appender opens the file again on the next change.
    await this.journal.close();
    try {
      const fh = await fs.open(journalFile, 'r+');
      try {
        await fh.truncate(0);
        await fh.datasync();
      } finally {
        await fh.close();
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw withPath(err, journalFile);
    }
    this.journalLines = 0;
  }
}

function entryCount(state: PushState): number {
  return Object.keys(state.uploaded).length + Object.keys(state.failed).length + Object.keys(state.folders).length;
}
