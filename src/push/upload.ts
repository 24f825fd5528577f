// One local file to the server: to `.NAME.ipi-push-part` beside its final name (resuming from
// what the server already holds, after checking that prefix), mtime set, verified (size, and
// SHA-256 through `sha256sum` over SSH when asked and possible), then renamed into place, so
// the server's consumers never see half a file.
import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { IntegrityError, RemoteMissingError, TransientError } from '../errors.js';
import type { Logger } from '../log.js';
import { printableName } from '../names.js';
import type { SftpSession } from '../sftp/session.js';
import { SlicedHash } from '../transfer/sliced-hash.js';
import { LocalChangedError, sendRange } from '../transfer/upload-engine.js';
import { readFully, readRange } from '../util/fileio.js';
import { serialLatest } from '../util/serial.js';
import { atMostEvery } from '../util/time.js';
import { formatBytes } from '../util/space.js';
import { remoteAncestors, remoteTarget, sameAsRemote } from './decide.js';
import { openInside, type FileIdentity, type ScannedFile } from './scan.js';
import { ServerHasher } from './server-hash.js';
import type { InProgressRecord } from './state.js';

export interface UploadSettings {
  watchDir: string;
  uploadDir: string;
  chunkSize: number;
  chunksInFlight: number;
  dataTimeoutMs: number;
  verify: 'size' | 'sha256';
}

/** Per connection: folders made or found (removed there since, see inRemoteDir), and the server's SHA-256 checks. */
export class SessionFacts {
  readonly dirs = new Set<string>();
  readonly hashes: ServerHasher;

  constructor(readonly session: SftpSession, log: Logger, signal?: AbortSignal) {
    this.hashes = new ServerHasher(session, log, signal);
  }
}

export interface UploadResult {
  rel: string;
  remotePath: string;
  size: number;
  mtimeMs: number;
  sha256: string;
  verified: 'sha256' | 'size';
  /** Already on the server (same size and mtime, and hash when checked): nothing sent. */
  adopted: boolean;
  resumedFrom: number;
  bytesSent: number;
  durationMs: number;
  /** The local file that was read, as its open handle knew it. */
  identity: FileIdentity;
}

export interface UploadRequest {
  session: SftpSession;
  facts: SessionFacts;
  file: ScannedFile;
  settings: UploadSettings;
  log: Logger;
  /** The interrupted upload recorded in the state, if any (its temporary may be resumed). */
  inProgress: InProgressRecord | null;
  /** Recorded before the first byte of a file of more than one chunk is sent, so a crash leaves a resumable record. */
  onStart: (rec: InProgressRecord) => Promise<void>;
  /**
   * The attempt ended early (failure, stop) after onStart: the record again, with `ackedTo`,
   * the end of the prefix the server acknowledged. Saved before the error goes on, so the next
   * attempt, in this run or a later one, does not resume past a WRITE that failed.
   */
  onCutShort: (rec: InProgressRecord) => Promise<void>;
  /**
   * The acknowledged prefix grew: the record again, with `ackedTo`, at most every
   * CHECKPOINT_EVERY_MS. Saved in the background (only the latest of those waiting), so a
   * kill, which leaves no time for onCutShort, still leaves a resume point that no failed
   * WRITE can lie below; a save that fails is only a checkpoint missed (the one before it is
   * still a safe place to resume).
   */
  onCheckpoint: (rec: InProgressRecord) => Promise<void>;
  onProgress: (done: number, total: number, from: number) => void;
  signal?: AbortSignal;
  /** Start from zero whatever the server holds (after a SHA-256 mismatch). */
  fresh?: boolean;
  /** Nothing more to send: what is left is checking and renaming (the caller may start another file). */
  onSent?: () => void;
}

const TAIL_WINDOW = 64 * 1024;

/**
 * How often the resume point is written to the state (a journal line and an fsync). Once per
 * acknowledged chunk was 512 fsyncs per GiB on a fast link, 3-6 % of a 1 GiB upload's time
 * (BENCHMARKS.md); a crash now re-sends at most this long's worth more. A stop (signal,
 * failure) still records the exact point, and a slow link, with chunks further apart than
 * this, still records each one.
 */
const CHECKPOINT_EVERY_MS = 100;

export async function uploadFile(req: UploadRequest): Promise<UploadResult> {
  const started = Date.now();
  const { session, file, settings, log } = req;
  const target = remoteTarget(settings.uploadDir, file.rel);
  const name = printableName(file.rel);
  const local = await openInside(settings.watchDir, file);
  try {
    const st = await local.stat();
    const size = st.size;
    const mtimeMs = Math.floor(st.mtimeMs);
    const identity = { dev: st.dev, ino: st.ino };
    if (size !== file.size || mtimeMs !== file.mtimeMs) {
      throw new LocalChangedError(`${name} changed since it was last looked at (size ${file.size} -> ${size}): it waits until it settles`);
    }
    await ensureRemoteDir(session, req.facts, target.dir);

    // Already there (our upload whose record was lost, or the same file put by hand): adopt it.
    const existing = await session.statOrNull(target.final);
    if (!req.fresh && existing && sameAsRemote({ size, mtimeMs }, existing)) {
      const sha256 = await hashLocal(local, size);
      req.onSent?.();
      const verified = await verifyRemoteHash(req, target.final, sha256, size);
      if (verified === 'mismatch') {
        log.warn(`${name}: the copy on the server has the same size and time but a different SHA-256: uploading it again`);
      } else {
        log.info(`${name}: already on the server (same size and modification time${verified === 'sha256' ? ', same SHA-256' : ''}): recorded, not sent again`);
        return { rel: file.rel, remotePath: target.final, size, mtimeMs, sha256, verified, adopted: true, resumedFrom: 0, bytesSent: 0, durationMs: Date.now() - started, identity };
      }
    }

    // The resume point advances chunk by chunk: a file of one chunk has none to keep, so it is
    // sent whole, without an in-progress record (and its fsyncs) or a look at the temporary.
    const resumable = size > settings.chunkSize;
    const { from, held } = req.fresh || !resumable ? { from: 0, held: 0 } : await resumePoint(req, local, size, mtimeMs, target.temp);
    const handle = await inRemoteDir(session, req.facts, log, target.dir, () => session.openWrite(target.temp, from > 0 ? 'r+' : 'w'));
    let closed = false;
    const hash = createHash('sha256');
    const sliced = new SlicedHash((slice) => hash.update(slice));
    let bytesSent = 0;
    // ackedTo from the start: below the resume point the temporary is ours (checked, cut back).
    const rec: InProgressRecord = { rel: file.rel, size, mtimeMs, remoteTemp: target.temp, startedAt: new Date().toISOString(), ackedTo: from };
    let ackedTo = from;
    let recorded = false;
    const checkpoint = serialLatest((acked: number) => req.onCheckpoint({ ...rec, ackedTo: acked }).catch(() => {}));
    const checkpointDue = atMostEvery(CHECKPOINT_EVERY_MS);
    let checkpointed: Promise<void> = Promise.resolve();
    try {
      // Bytes past the resume point may lie beyond a hole: gone before the record stops saying so.
      if (from > 0 && held > from) await session.truncate(handle, from);
      log.info(`uploading ${name} (${formatBytes(size)}) to ${target.temp}`);
      if (resumable) {
        await req.onStart(rec);
        recorded = true;
      }
      await hashRange(local, 0, from, hash);
      req.onProgress(from, size, from);
      const sent = await sendRange({
        writer: session, handle, local, from, size,
        chunkSize: settings.chunkSize, chunksInFlight: settings.chunksInFlight, dataTimeoutMs: settings.dataTimeoutMs,
        onStall: (why) => session.destroy(why),
        onRead: (data) => sliced.feed(data),
        onAcked: (end) => {
          ackedTo = end;
          if (recorded && checkpointDue()) checkpointed = checkpoint(end);
          req.onProgress(end, size, from);
        },
        signal: req.signal,
      });
      bytesSent = sent.bytesSent;
      // Before anything else records this upload: a checkpoint landing later would bring back
      // an in-progress record for a file already done.
      await checkpointed;
      await session.setTimes(handle, st.atimeMs, mtimeMs);
      closed = true;
      await session.close(handle);
      req.onSent?.();
    } catch (err) {
      if (recorded) {
        await checkpointed;
        await req.onCutShort({ ...rec, ackedTo }).catch(async (e) => {
          // Unsaved, a later run would trust the server's size: better it starts over.
          const removed = await session.remove(target.temp).then(() => true, () => false);
          log.warn(`${name}: could not save how far the upload got (${(e as Error).message}); `
            + (removed ? `removed ${target.temp}, so no later run resumes past a write that failed` : 'this run still knows where to resume'));
        });
      }
      throw err;
    } finally {
      if (!closed) await session.close(handle).catch(() => {});
    }

    // The file must not have changed while it was read: same size, same mtime, same length.
    const after = await local.stat();
    if (after.size !== size || Math.floor(after.mtimeMs) !== mtimeMs) {
      await session.remove(target.temp).catch(() => {});
      throw new LocalChangedError(`${name} changed while it was being uploaded: not published; it goes again once it settles`);
    }
    const sha256 = hash.digest('hex');
    const remote = await session.stat(target.temp).catch((err: unknown) => {
      // Gone with its folder (a consumer on the server clearing it) while it was written: not
      // this file's fault, and the next attempt makes the folder again and sends it whole.
      throw err instanceof RemoteMissingError
        ? new TransientError(`${name}: ${target.temp} went away on the server during the upload (its folder removed?); it will be sent again`, { cause: err })
        : err;
    });
    if (remote.size !== size) {
      await session.remove(target.temp).catch(() => {});
      throw new TransientError(`${name}: the server holds ${remote.size} bytes after the upload, ${size} expected; it will be sent again`);
    }
    const verified = await verifyRemoteHash(req, target.temp, sha256, size);
    if (verified === 'mismatch') {
      await session.remove(target.temp).catch(() => {});
      throw new IntegrityError(`${name}: the server's SHA-256 of the upload differs from the local file's (${sha256})`);
    }
    const { replacedAtomically } = await session.renameReplacing(target.temp, target.final);
    if (!replacedAtomically) log.warn(`${name}: the server lacks posix-rename@openssh.com, so the older ${target.final} was removed before the new one was renamed into place`);
    return { rel: file.rel, remotePath: target.final, size, mtimeMs, sha256, verified, adopted: false, resumedFrom: from, bytesSent, durationMs: Date.now() - started, identity };
  } finally {
    await local.close().catch(() => {});
  }
}

/**
 * The remote folder `dir` and its parents exist: made where missing, asked about once per
 * connection (SessionFacts) unless a file's open finds it gone. Returns the folders it created.
 */
export async function ensureRemoteDir(session: SftpSession, facts: SessionFacts, dir: string): Promise<string[]> {
  if (facts.dirs.has(dir)) return [];
  const created = await session.mkdirp(dir);
  for (const d of remoteAncestors(dir)) facts.dirs.add(d);
  return created;
}

/**
 * `op` on a name in the remote folder `dir`. The connection remembers `dir` as made, but
 * the server's users may remove it since (a consumer clearing what it took): "no such file"
 * then means the folder, so it is made again and `op` tried once more. A second "no such
 * file" is what it says.
 */
async function inRemoteDir<T>(session: SftpSession, facts: SessionFacts, log: Logger, dir: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (!(err instanceof RemoteMissingError) || session.isClosed) throw err;
    for (const d of remoteAncestors(dir)) facts.dirs.delete(d);
    const created = await ensureRemoteDir(session, facts, dir);
    if (created.length > 0) log.info(`the folder ${dir} was gone from the server: made again (${created.join(', ')})`);
    return op();
  }
}

/**
 * Where to continue (`from`), and how much the temporary on the server holds (`held`): its
 * size, if the state says it belongs to this very version of the file, bounded by the prefix
 * the server acknowledged when an attempt was cut short (past it a WRITE may have failed and
 * left a hole), and only if the 64 KiB before that point equal ours; else 0.
 */
async function resumePoint(req: UploadRequest, local: FileHandle, size: number, mtimeMs: number, temp: string): Promise<{ from: number; held: number }> {
  const rec = req.inProgress;
  const name = printableName(req.file.rel);
  const there = await req.session.statOrNull(temp);
  if (!there || !there.isFile || there.size === 0) return { from: 0, held: 0 };
  const over = { from: 0, held: there.size };
  if (!rec || rec.rel !== req.file.rel || rec.size !== size || rec.mtimeMs !== mtimeMs || rec.remoteTemp !== temp) {
    req.log.info(`${name}: a partial upload on the server belongs to another version of the file: starting over`);
    return over;
  }
  if (there.size > size) {
    req.log.warn(`${name}: the partial upload on the server is longer than the file: starting over`);
    return over;
  }
  const at = Math.min(there.size, rec.ackedTo ?? there.size);
  const cut = at < there.size
    ? `the server holds ${there.size} bytes, only the first ${at} acknowledged in order (past them a write may have failed, or the run ended before it heard): cut back to byte ${at}`
    : '';
  if (at === 0) {
    req.log.info(`${name}: ${cut}; starting over`);
    return over;
  }
  const len = Math.min(TAIL_WINDOW, at);
  const mine = Buffer.alloc(len);
  const theirs = Buffer.alloc(len);
  await readFully(local, mine, at - len, () => new LocalChangedError('the local file got shorter while it was being read'));
  const h = await req.session.openRead(temp);
  try {
    let got = 0;
    while (got < len) {
      const n = await req.session.read(h, theirs, got, Math.min(len - got, req.session.maxReadLen), at - len + got);
      if (n === 0) break;
      got += n;
    }
  } finally {
    await req.session.close(h).catch(() => {});
  }
  if (!mine.equals(theirs)) {
    req.log.warn(`${name}: the partial upload on the server does not match the local file: starting over`);
    return over;
  }
  req.log.info(`${name}: ${cut ? `${cut}; ` : ''}resuming the upload at byte ${at} of ${size} (the ${len} bytes before it match)`);
  return { from: at, held: there.size };
}

/** 'sha256' when the server's sha256sum agrees, 'mismatch' when it disagrees, 'size' when not asked or the server cannot. */
async function verifyRemoteHash(req: UploadRequest, remotePath: string, sha256: string, size: number): Promise<'sha256' | 'size' | 'mismatch'> {
  if (req.settings.verify !== 'sha256') return 'size';
  const theirs = await req.facts.hashes.digest(remotePath, size);
  if (theirs === null) return 'size';
  return theirs === sha256 ? 'sha256' : 'mismatch';
}

async function hashLocal(local: FileHandle, size: number): Promise<string> {
  const h = createHash('sha256');
  await hashRange(local, 0, size, h);
  return h.digest('hex');
}

function hashRange(local: FileHandle, start: number, end: number, h: Hash): Promise<void> {
  return readRange(local, start, end, (block) => h.update(block), () => new LocalChangedError('the local file got shorter while it was being read'));
}
