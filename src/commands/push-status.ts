// `ipi-push status`: the state file, the lock, an upload cut short, and what waits in
// WATCH_DIR, without connecting and without changing anything.
import type { Config } from '../config/load.js';
import { EXIT, classify, type ExitCode } from '../errors.js';
import { lockFileFor, lockStatus, type LockStatus } from '../lock.js';
import { foldersToMirror, ignoreMatcher, needsUpload, queueOrder, type FailedRecord, type UploadedRecord } from '../push/decide.js';
import { scanDir } from '../push/scan.js';
import { recentUploads, uploadHistoryFileFor, type UploadLine } from '../push/history.js';
import { readState, type InProgressRecord } from '../push/state.js';
import { formatBytes } from '../util/space.js';
import { commandFailed, configFromArgs, writeJson, type GlobalArgs, type Io } from './shared.js';

/** The newest upload: a line of the history, or (before there was one) the state's newest record. */
export type LastUpload = UploadedRecord & { path: string } & Partial<Omit<UploadLine, keyof UploadedRecord | 'path'>>;

export interface PushStatus {
  stateFile: string;
  /** The append-only upload history beside the state: every file ever uploaded. */
  historyFile: string;
  /** Files the state records as uploaded (those still in WATCH_DIR; the history keeps the rest). */
  uploadedCount: number;
  lastUploaded: LastUpload | null;
  failed: Array<FailedRecord & { path: string }>;
  inProgress: InProgressRecord | null;
  lock: LockStatus;
  /** Local files that need an upload, in queue order. */
  pending: string[];
  /** Local folders not yet made on the server (as far as the state knows), parents first. */
  pendingFolders: string[];
  skipped: Array<{ path: string; reason: string }>;
  error: string | null;
}

export async function pushStatusCommand(args: GlobalArgs, io: Io): Promise<ExitCode> {
  let config: Config;
  try {
    config = configFromArgs(args, io, true, 'push');
  } catch (err) {
    const e = classify(err, 'reading the settings');
    return commandFailed('ipi-push', e, null, io, args.json);
  }
  let status: PushStatus;
  try {
    status = await gatherPushStatus(config);
  } catch (err) {
    const e = classify(err, 'reading the state');
    return commandFailed('ipi-push', e, config, io, args.json);
  }
  if (args.json) writeJson(io, status);
  else io.stdout.write(renderStatus(status));
  return status.error ? EXIT.failed : EXIT.ok;
}

export async function gatherPushStatus(config: Config): Promise<PushStatus> {
  const state = await readState(config.stateFile);
  const uploaded = Object.entries(state.uploaded).map(([p, r]) => ({ path: p, ...r }));
  uploaded.sort((a, b) => (a.uploadedAt < b.uploadedAt ? -1 : a.uploadedAt > b.uploadedAt ? 1 : 0));
  // The history first: with AFTER_UPLOAD=archive or delete the state has forgotten the file.
  const [lastLine] = await recentUploads(config.stateFile, 64 * 1024);
  const status: PushStatus = {
    stateFile: config.stateFile,
    historyFile: uploadHistoryFileFor(config.stateFile),
    uploadedCount: uploaded.length,
    lastUploaded: lastLine ?? uploaded[uploaded.length - 1] ?? null,
    failed: Object.entries(state.failed).map(([p, r]) => ({ path: p, ...r })),
    inProgress: state.inProgress,
    lock: await lockStatus(lockFileFor(config.stateFile)),
    pending: [],
    pendingFolders: [],
    skipped: [],
    error: null,
  };
  if (!config.watchDir) {
    status.error = 'WATCH_DIR is not set: cannot say what waits to be uploaded';
    return status;
  }
  try {
    const scan = await scanDir(config.watchDir, ignoreMatcher(config.ignore));
    const now = Date.now();
    status.pending = scan.files.filter((f) => needsUpload(f, state, now).upload).sort(queueOrder).map((f) => f.rel);
    if (config.uploadDir) status.pendingFolders = foldersToMirror(scan.dirs, state.folders, config.uploadDir);
    status.skipped = scan.skipped.map((s) => ({ path: s.rel, reason: s.reason }));
  } catch (err) {
    status.error = classify(err, `reading WATCH_DIR ${config.watchDir}`).message;
  }
  return status;
}

function renderStatus(s: PushStatus): string {
  const lines: string[] = [];
  lines.push(`state (${s.stateFile}): ${s.uploadedCount} file(s) recorded as uploaded`);
  if (s.lastUploaded) {
    const u = s.lastUploaded;
    const there = u.alreadyThere ? '; already on the server, recorded without sending' : '';
    lines.push(`last uploaded: ${u.path} -> ${u.remotePath}, ${formatBytes(u.size)}, at ${u.uploadedAt}, sha256 ${u.sha256} (verified by ${u.verified}${there})`);
  }
  lines.push(`upload history: ${s.historyFile}`);
  if (s.inProgress) {
    const p = s.inProgress;
    const bound = p.ackedTo === undefined ? '' : ` (at most from byte ${p.ackedTo}, the end of what the server acknowledged)`;
    lines.push(`cut short: ${p.rel} (${formatBytes(p.size)}), resumes from what ${p.remoteTemp} holds${bound}`);
  }
  for (const f of s.failed) {
    const when = f.permanent ? 'not retried until it changes (or --retry-failed)' : `next try at the next --once run, or at ${f.nextRetryAt} in --watch`;
    lines.push(`failed: ${f.path}: ${f.error} (${f.attempts} attempt(s); ${when})`);
  }
  lines.push(`waiting to be uploaded: ${s.pending.length === 0 ? 'nothing' : `${s.pending.length} file(s), in order: ${s.pending.join(', ')}`}`);
  if (s.pendingFolders.length > 0) lines.push(`folders to create on the server: ${s.pendingFolders.length}: ${s.pendingFolders.join(', ')}`);
  for (const k of s.skipped) lines.push(`skipped: ${k.path}: ${k.reason}`);
  lines.push(`lock: ${s.lock.held ? `held by ${s.lock.description}` : 'free'}`);
  if (s.error) lines.push(`error: ${s.error}`);
  return `${lines.join('\n')}\n`;
}
