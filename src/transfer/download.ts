// One remote file into LOCAL_DIR: resume or start, fetch, verify against a fresh stat,
// then give it its final name. Never leaves a half file under the final name.
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import type { HashAlgo } from '../checksum.js';
import { RemoteChangedError, TransientError, withPath } from '../errors.js';
import type { Logger } from '../log.js';
import type { RemoteStat, SftpSession } from '../sftp/session.js';
import { renameDurably } from '../util/atomic.js';
import { directIoAllowed, openDirect, type DirectIoMode } from '../util/direct.js';
import { ensureRoom } from '../util/space.js';
import { ChunkPool } from './buffers.js';
import { downloadBuffers } from './budget.js';
import { fetchRange } from './engine.js';
import { HashingWriter } from './sink.js';
import { adoptFinal, partialPaths, readMeta, resumeDecision, sizeOf, tailCheckPoints, writeMeta, type ResumeDecision } from './partial.js';

export type { DirectIoMode };

export interface TransferSettings {
  chunkSize: number;
  chunksInFlight: number;
  readSize: number;
  dataTimeoutMs: number;
  directIo: DirectIoMode;
}

export interface DownloadRequest {
  session: SftpSession;
  remotePath: string;
  name: string;
  /** The server's stat when this download was chosen. */
  remote: RemoteStat;
  localDir: string;
  transfer: TransferSettings;
  /** Chunk buffers shared by the files of one connection. */
  pool?: ChunkPool;
  log: Logger;
  onProgress: (done: number, total: number) => void;
  signal?: AbortSignal;
  /** Digests to compute besides SHA-256 (for a companion checksum file). */
  extraHashes?: readonly HashAlgo[];
  /**
   * Last check before the file takes its final name. If it throws, the downloaded bytes
   * are discarded (partial and record removed) and the error is passed on.
   */
  accept?: (digests: Partial<Record<HashAlgo, string>>) => Promise<void>;
}

export interface Downloaded {
  localPath: string;
  size: number;
  sha256: string;
  digests: Partial<Record<HashAlgo, string>>;
  /** Bytes read from the server by this attempt (the resume's whole point: only the rest). */
  bytesTransferred: number;
  resumedFrom: number;
  durationMs: number;
}

/** Bytes compared at the end of a partial before trusting it (catches a torn tail after a power cut). */
const TAIL_WINDOW = 64 * 1024;

export async function downloadFile(req: DownloadRequest): Promise<Downloaded> {
  const started = Date.now();
  const paths = partialPaths(req.localDir, req.name);
  // The server opens the file while everything local below is done: one round trip hidden.
  const opening = req.session.openRead(req.remotePath);
  opening.catch(() => {});
  let localOpening: Promise<FileHandle> | null = null;
  let handle: Buffer;
  let local: FileHandle;
  let partSize: number | null = null;
  let decision: ResumeDecision;
  // Only a file of more than one chunk can be resumed part-way, so only such a file gets a
  // record (NAME.part.json, two fsyncs). A partial of a one-chunk file without a record is
  // not trusted (its tail check could not see a changed file): it is fetched again, which
  // costs at most one chunk.
  const recorded = req.remote.size > req.transfer.chunkSize;
  try {
    partSize = (await sizeOf(paths.part)) ?? (await adoptUnrecordedFinal(paths, req.remote, req.log));
    // A record without a partial says nothing: read it only when there is something to resume.
    const meta = partSize ? await readMeta(paths.meta) : null;
    decision = resumeDecision(meta, partSize, req.remote);
    if (!recorded && meta === null && decision.offset > 0) decision = { offset: 0, why: 'a partial of a one-chunk file without a record: fetching it again' };
    // The usual case (a new file) is said by the caller's "pulling" line; resumes and restarts are news.
    if (decision.offset > 0 || partSize) req.log.info(`${req.name}: ${decision.why}`);
    else req.log.debug(`${req.name}: ${decision.why}`);
    // Opening (creating) the .part early is safe: nothing is written to it before the record
    // is durable, and an empty partial counts as none.
    localOpening = partSize === null ? fs.open(paths.part, 'w+') : openForResume(paths.part);
    localOpening.catch(() => {});
    // Before anything is written: a disk too full for the file changes nothing.
    await ensureRoom(req.localDir, req.remote.size - decision.offset, `downloading ${req.name}`);
    if (decision.offset === 0 && partSize) {
      // The record written next says whose bytes the partial holds. Another version's bytes
      // must be gone (durably) first: if this attempt then failed, the next would find a
      // record matching the server and resume on them, and a tail check cannot see a file
      // that differs only nearer its start.
      const fh = await localOpening;
      await fh.truncate(0);
      await fh.sync();
      partSize = 0;
    }
    if (recorded) await writeMeta(paths.meta, { name: req.name, remoteSize: req.remote.size, remoteMtimeMs: req.remote.mtimeMs, startedAt: new Date().toISOString() });
    [handle, local] = await Promise.all([opening, localOpening]);
  } catch (err) {
    opening.then((h) => req.session.close(h)).catch(() => {});
    // A .part created here (there was none) holds nothing yet: it goes again, with any
    // record this attempt wrote for it.
    const created = localOpening !== null && partSize === null;
    await localOpening?.then(async (fh) => {
      await fh.close();
      if (created) await Promise.all([fs.rm(paths.part, { force: true }), fs.rm(paths.meta, { force: true })]);
    }).catch(() => {});
    throw err;
  }
  let direct: FileHandle | null = null;
  let bytesTransferred = 0;
  // Closed on every path: a handle left open on a live connection counts against a server's
  // limit of open files (sftp/handle-gate.ts) until the connection ends.
  let remoteClosed = false;
  try {
    const check = await verifiedOffset(req, handle, local, decision.offset);
    bytesTransferred += check.bytesRead;
    const offset = check.offset;
    if (offset !== (partSize ?? 0)) await local.truncate(offset);
    req.onProgress(offset, req.remote.size);

    direct = await openDirectPart(paths.part, req.transfer, req.remote.size - offset, req.localDir, req.log);
    const pool = req.pool ?? new ChunkPool(req.transfer.chunkSize, downloadBuffers(req.transfer.chunksInFlight));
    const sink = new HashingWriter({
      local,
      direct,
      aligned: pool.aligned,
      onDirectRefused: (code: string) => req.log.debug(`${req.name}: the filesystem refused an O_DIRECT write (${code}); writing through the page cache`),
    }, req.extraHashes);
    let digests: Awaited<ReturnType<HashingWriter['digests']>>;
    try {
      // The partial's bytes go into the hash first, so the recorded SHA-256 is the whole file's.
      await sink.hashExisting(offset);
      const fetched = await fetchRange({
        name: req.name,
        reader: req.session,
        handle,
        sink,
        from: offset,
        size: req.remote.size,
        chunkSize: req.transfer.chunkSize,
        chunksInFlight: req.transfer.chunksInFlight,
        readSize: req.transfer.readSize,
        dataTimeoutMs: req.transfer.dataTimeoutMs,
        pool,
        onStall: (why) => req.session.destroy(why),
        onChunk: (end) => req.onProgress(end, req.remote.size),
        signal: req.signal,
      });
      bytesTransferred += fetched.bytesRead;
      digests = await sink.digests();
    } finally {
      await sink.abort();
    }
    if (sink.directBytes > 0) req.log.debug(`${req.name}: ${sink.directBytes} bytes written with O_DIRECT`);
    await direct?.close();
    direct = null;

    // The local fsync runs while the server is asked again about the file (the second look:
    // a file replaced or still growing during the download is not published as a mix), and
    // whether the file really ends at its listed size: a server whose size is stale or wrong
    // (a cache, a file still open for writing on Windows) would otherwise have us publish
    // the file cut short and move the marker past it. The handle is closed in the same round
    // trip (the read goes before the close; a server answering out of order may refuse it,
    // which proves nothing either way).
    const mtime = new Date(req.remote.mtimeMs);
    await local.utimes(mtime, mtime);
    const syncing = local.sync();
    syncing.catch(() => {});
    remoteClosed = true;
    const [after, beyond] = await Promise.all([
      req.session.stat(req.remotePath),
      req.session.read(handle, Buffer.allocUnsafe(1), 0, 1, req.remote.size).catch(() => 0),
      req.session.close(handle).catch(() => {}),
    ]);
    if (after.size !== req.remote.size || after.mtimeMs !== req.remote.mtimeMs) {
      throw new RemoteChangedError(`${req.name} changed on the server during the download (size ${req.remote.size} -> ${after.size}); it will be fetched again`);
    }
    if (beyond > 0) {
      throw new RemoteChangedError(`${req.name} goes on past its listed size ${req.remote.size} on the server (the server's size is stale or wrong, or the file is still being written): not published`);
    }
    const localSize = (await local.stat()).size;
    if (localSize !== req.remote.size) {
      throw new TransientError(`${req.name}: local size ${localSize} differs from the remote size ${req.remote.size} after the download`);
    }
    if (req.accept) {
      try {
        await req.accept(digests);
      } catch (err) {
        // Nothing of these bytes is kept: the next attempt starts from zero.
        await syncing.catch(() => {});
        await local.close().catch(() => {});
        await fs.rm(paths.part, { force: true });
        await fs.rm(paths.meta, { force: true });
        throw err;
      }
    }
    await syncing;
    await local.close();
    await renameDurably(paths.part, paths.final);
    if (recorded || partSize !== null) await fs.rm(paths.meta, { force: true });
    return {
      localPath: paths.final,
      size: req.remote.size,
      sha256: digests.sha256,
      digests,
      bytesTransferred,
      resumedFrom: offset,
      durationMs: Date.now() - started,
    };
  } catch (err) {
    throw withPath(err, paths.part);
  } finally {
    if (!remoteClosed) await req.session.close(handle).catch(() => {});
    await direct?.close().catch(() => {});
    await local.close().catch(() => {});
  }
}

/**
 * The .part opened a second time with O_DIRECT, when DIRECT_IO allows it for LOCAL_DIR and
 * at least one whole chunk is left to write.
 */
async function openDirectPart(file: string, t: TransferSettings, remaining: number, dir: string, log: Logger): Promise<FileHandle | null> {
  if (remaining < t.chunkSize || !(await directIoAllowed(dir, t.directIo, log))) return null;
  const fh = await openDirect(file, fsConstants.O_WRONLY).catch((err: NodeJS.ErrnoException) => {
    log.debug(`cannot open ${file} with O_DIRECT (${err.code}); writing through the page cache`);
    return null;
  });
  if (!fh) log.debug(`${dir} refuses O_DIRECT; writing through the page cache`);
  return fh;
}

/** A file under its final name in LOCAL_DIR with no .part beside it: taken as the partial when adoptFinal says so. */
async function adoptUnrecordedFinal(paths: { final: string; part: string }, remote: RemoteStat, log: Logger): Promise<number | null> {
  let st;
  try {
    st = await fs.stat(paths.final);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const verdict = adoptFinal(st, remote);
  log.info(`${paths.final} exists without a completion record; ${verdict.why}`);
  if (!verdict.adopt) return null;
  await fs.rename(paths.final, paths.part);
  return st.size;
}

async function openForResume(file: string): Promise<FileHandle> {
  try {
    return await fs.open(file, 'r+');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return fs.open(file, 'w+');
  }
}

/** Compare the partial's tail with the server; on a mismatch step back to a point that matches. */
async function verifiedOffset(req: DownloadRequest, handle: Buffer, local: FileHandle, offset: number): Promise<{ offset: number; bytesRead: number }> {
  if (offset === 0) return { offset: 0, bytesRead: 0 };
  let bytesRead = 0;
  const mine = Buffer.allocUnsafe(TAIL_WINDOW);
  const theirs = Buffer.allocUnsafe(TAIL_WINDOW);
  for (const end of tailCheckPoints(offset, TAIL_WINDOW)) {
    if (end === 0) break;
    const start = end - TAIL_WINDOW;
    await local.read(mine, 0, TAIL_WINDOW, start);
    bytesRead += await readExactly(req.session, handle, theirs, start);
    if (mine.equals(theirs)) {
      if (end !== offset) req.log.warn(`${req.name}: the partial's last ${offset - end} bytes did not match the server (torn write?); resuming at byte ${end}`);
      return { offset: end, bytesRead };
    }
  }
  req.log.warn(`${req.name}: the partial does not match the server: starting over`);
  return { offset: 0, bytesRead };
}

async function readExactly(session: SftpSession, handle: Buffer, buf: Buffer, position: number): Promise<number> {
  let got = 0;
  while (got < buf.length) {
    const n = await session.read(handle, buf, got, Math.min(buf.length - got, session.maxReadLen), position + got);
    if (n === 0) break;
    got += n;
  }
  buf.fill(0, got);
  return got;
}
