// STATE_FILE: what ipi-push has uploaded (path, size, mtime, sha256, when) and what failed
// (error, attempts, next retry), plus the upload in progress, so a restart neither uploads a
// file twice nor forgets one; and the folders of WATCH_DIR already made on the server, so a
// scan does not ask the server about each of them again. Rewritten atomically after every change (writeFileAtomic): a
// crash leaves the old state or the new, never half. A state that cannot be read is never
// guessed at or overwritten: the run stops with the recovery steps.
import fs from 'node:fs/promises';
import { ConfigError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import type { FailedRecord, FolderRecord, UploadedRecord } from './decide.js';

export interface InProgressRecord {
  rel: string;
  size: number;
  mtimeMs: number;
  remoteTemp: string;
  startedAt: string;
  /**
   * Set when an attempt ended early (a failure, a stop): the end of the prefix the server
   * acknowledged in order. A WRITE after it may have failed while later ones succeeded, so the
   * temporary may hold a hole below its size: a resume starts no further than this, cutting
   * the temporary back first. Absent: no attempt failed since the temporary was last cut back,
   * and the server's size is the resume point (it writes a connection's requests in order).
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

/** The documented way out, repeated in the error so it is there when it is needed. */
export function recoveryAdvice(file: string): string {
  return `Nothing was uploaded. To recover: move it aside (mv '${file}' '${file}.corrupt') and run again; `
    + 'files whose copy on the server already matches (same size and modification time, and SHA-256 with VERIFY=sha256) '
    + 'are recorded without being uploaded again, the others are uploaded. See README, "ipi-push state file".';
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;
const isStr = (v: unknown): v is string => typeof v === 'string';

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
  for (const [rel, r] of Object.entries(v.uploaded)) {
    if (!isObj(r) || !isNum(r.size) || !isNum(r.mtimeMs) || !isStr(r.sha256) || !isStr(r.uploadedAt) || !isStr(r.remotePath)
      || (r.verified !== 'sha256' && r.verified !== 'size')) throw bad(`uploaded entry ${JSON.stringify(rel)} is incomplete`);
  }
  for (const [rel, r] of Object.entries(v.failed)) {
    if (!isObj(r) || !isNum(r.size) || !isNum(r.mtimeMs) || !isStr(r.error) || !isNum(r.attempts) || !isStr(r.lastAttemptAt)
      || !(r.nextRetryAt === null || isStr(r.nextRetryAt)) || typeof r.permanent !== 'boolean') throw bad(`failed entry ${JSON.stringify(rel)} is incomplete`);
  }
  if (v.folders !== undefined) {
    if (!isObj(v.folders)) throw bad('"folders" must be an object');
    for (const [rel, r] of Object.entries(v.folders)) {
      if (!isObj(r) || !isStr(r.remotePath) || !isStr(r.mirroredAt)) throw bad(`folders entry ${JSON.stringify(rel)} is incomplete`);
    }
  }
  const p = v.inProgress;
  if (p !== null && p !== undefined && (!isObj(p) || !isStr(p.rel) || !isNum(p.size) || !isNum(p.mtimeMs) || !isStr(p.remoteTemp) || !isStr(p.startedAt)
    || (p.ackedTo !== undefined && !isNum(p.ackedTo)))) {
    throw bad('"inProgress" is incomplete');
  }
  return {
    version: 1,
    uploaded: v.uploaded as PushState['uploaded'],
    failed: v.failed as PushState['failed'],
    inProgress: (p ?? null) as InProgressRecord | null,
    folders: (v.folders ?? {}) as PushState['folders'],
  };
}

export async function readState(file: string): Promise<PushState> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return emptyState();
    throw new ConfigError(`STATE_FILE ${file}: cannot read it (${code ?? String(err)})`);
  }
  return parseState(text, file);
}

/** The state in memory and on disk, changed only through these methods, each saved at once. */
export class StateStore {
  constructor(readonly file: string, readonly state: PushState) {}

  static async open(file: string): Promise<StateStore> {
    return new StateStore(file, await readState(file));
  }

  private saving: Promise<void> = Promise.resolve();

  /**
   * Saves land one at a time, each writing the state as it is when its turn comes: in --watch
   * a scan set off by the watcher (forgetting files) runs beside an upload (recording one), and
   * two overlapping atomic writes could otherwise put the older state last.
   */
  save(): Promise<void> {
    const next = this.saving.then(() => writeFileAtomic(this.file, `${JSON.stringify(this.state, null, 1)}\n`));
    this.saving = next.catch(() => {});
    return next;
  }

  async markInProgress(rec: InProgressRecord): Promise<void> {
    this.state.inProgress = rec;
    await this.save();
  }

  async markUploaded(rel: string, rec: UploadedRecord): Promise<void> {
    this.state.uploaded[rel] = rec;
    delete this.state.failed[rel];
    if (this.state.inProgress?.rel === rel) this.state.inProgress = null;
    await this.save();
  }

  async markFailed(rel: string, f: { size: number; mtimeMs: number }, error: string, permanent: boolean, retryAt: (attempts: number) => number | null): Promise<FailedRecord> {
    const prev = this.state.failed[rel];
    const attempts = (prev && prev.size === f.size && prev.mtimeMs === f.mtimeMs ? prev.attempts : 0) + 1;
    const at = permanent ? null : retryAt(attempts);
    const rec: FailedRecord = {
      size: f.size, mtimeMs: f.mtimeMs, error, attempts, lastAttemptAt: new Date().toISOString(),
      nextRetryAt: at === null ? null : new Date(at).toISOString(), permanent,
    };
    this.state.failed[rel] = rec;
    await this.save();
    return rec;
  }

  /** These folders now exist on the server; saved once for all of them. */
  async markFoldersMirrored(folders: ReadonlyArray<{ rel: string; remotePath: string }>): Promise<void> {
    if (folders.length === 0) return;
    const at = new Date().toISOString();
    for (const f of folders) this.state.folders[f.rel] = { remotePath: f.remotePath, mirroredAt: at };
    await this.save();
  }

  /** Drop the records of these files and folders (gone from WATCH_DIR); saved once, only if something changed. */
  async forget(rels: readonly string[]): Promise<void> {
    let changed = false;
    for (const rel of rels) {
      if (rel in this.state.uploaded || rel in this.state.failed || rel in this.state.folders) changed = true;
      delete this.state.uploaded[rel];
      delete this.state.failed[rel];
      delete this.state.folders[rel];
    }
    if (changed) await this.save();
  }
}
