// One remote file into LOCAL_DIR: resume or start, fetch, verify against a fresh stat,
// then give it its final name. Never leaves a half file under the final name.
import { createHash, type Hash } from 'node:crypto';
import fs from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import type { HashAlgo } from '../checksum.js';
import { TransientError, withPath } from '../errors.js';
import type { Logger } from '../log.js';
import type { RemoteStat, SftpSession } from '../sftp/session.js';
import { renameDurably } from '../util/atomic.js';
import { ensureRoom } from '../util/space.js';
import { fetchRange } from './engine.js';
import { partialPaths, readMeta, resumeDecision, sizeOf, tailCheckPoints, writeMeta } from './partial.js';

export interface TransferSettings {
  chunkSize: number;
  chunksInFlight: number;
  readSize: number;
  dataTimeoutMs: number;
}

export interface DownloadRequest {
  session: SftpSession;
  remotePath: string;
  name: string;
  /** The server's stat when this download was chosen. */
  remote: RemoteStat;
  localDir: string;
  transfer: TransferSettings;
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

export class RemoteChangedError extends TransientError {}

/** Bytes compared at the end of a partial before trusting it (catches a torn tail after a power cut). */
const TAIL_WINDOW = 64 * 1024;

export async function downloadFile(req: DownloadRequest): Promise<Downloaded> {
  const started = Date.now();
  const paths = partialPaths(req.localDir, req.name);
  await adoptUnrecordedFinal(paths, req.log);

  const decision = resumeDecision(await readMeta(paths.meta), await sizeOf(paths.part), req.remote);
  req.log.info(`${req.name}: ${decision.why}`);
  await writeMeta(paths.meta, { name: req.name, remoteSize: req.remote.size, remoteMtimeMs: req.remote.mtimeMs, startedAt: new Date().toISOString() });
  await ensureRoom(req.localDir, req.remote.size - decision.offset, `downloading ${req.name}`);

  const handle = await req.session.openRead(req.remotePath);
  const local = await openForResume(paths.part);
  let bytesTransferred = 0;
  try {
    const check = await verifiedOffset(req, handle, local, decision.offset);
    bytesTransferred += check.bytesRead;
    const offset = check.offset;
    // Only when the tail check stepped back: a partial is otherwise already exactly `offset` long.
    if ((await local.stat()).size !== offset) await local.truncate(offset);
    const hashes = new Map<HashAlgo, Hash>([['sha256', createHash('sha256')]]);
    for (const algo of req.extraHashes ?? []) if (!hashes.has(algo)) hashes.set(algo, createHash(algo));
    await hashPrefix(local, offset, [...hashes.values()]);
    req.onProgress(offset, req.remote.size);

    const fetched = await fetchRange({
      reader: req.session,
      handle,
      local,
      from: offset,
      size: req.remote.size,
      ...req.transfer,
      onStall: (why) => req.session.destroy(why),
      onChunk: (data, end) => {
        for (const h of hashes.values()) h.update(data);
        req.onProgress(end, req.remote.size);
      },
      signal: req.signal,
    });
    bytesTransferred += fetched.bytesRead;
    await req.session.close(handle).catch(() => {});

    // The second look: a file replaced or still growing during the download is not published as a mix.
    const after = await req.session.stat(req.remotePath);
    if (after.size !== req.remote.size || after.mtimeMs !== req.remote.mtimeMs) {
      throw new RemoteChangedError(`${req.name} changed on the server during the download (size ${req.remote.size} -> ${after.size}); it will be fetched again`);
    }
    const localSize = (await local.stat()).size;
    if (localSize !== req.remote.size) {
      throw new TransientError(`${req.name}: local size ${localSize} differs from the remote size ${req.remote.size} after the download`);
    }
    const digests: Partial<Record<HashAlgo, string>> = {};
    for (const [algo, h] of hashes) digests[algo] = h.digest('hex');
    if (req.accept) {
      try {
        await req.accept(digests);
      } catch (err) {
        await local.close().catch(() => {});
        await fs.rm(paths.part, { force: true });
        await fs.rm(paths.meta, { force: true });
        throw err;
      }
    }
    await local.sync();
    await local.close();
    const mtime = new Date(req.remote.mtimeMs);
    await fs.utimes(paths.part, mtime, mtime);
    await renameDurably(paths.part, paths.final);
    await fs.rm(paths.meta, { force: true });
    return {
      localPath: paths.final,
      size: req.remote.size,
      sha256: digests.sha256!,
      digests,
      bytesTransferred,
      resumedFrom: offset,
      durationMs: Date.now() - started,
    };
  } catch (err) {
    throw withPath(err, paths.part);
  } finally {
    await local.close().catch(() => {});
  }
}

/**
 * A file under its final name in LOCAL_DIR with no .part beside it is either ours (renamed
 * after verification, then the run died before publishing) or FTP_IPI.py's partial, which it
 * wrote under the final name. Either way it is treated as a partial and its tail is checked.
 */
async function adoptUnrecordedFinal(paths: { final: string; part: string }, log: Logger): Promise<void> {
  if ((await sizeOf(paths.part)) !== null) return;
  if ((await sizeOf(paths.final)) === null) return;
  log.info(`${paths.final} exists without a completion record: checking it as a partial download`);
  await fs.rename(paths.final, paths.part);
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

async function hashPrefix(local: FileHandle, length: number, hashes: Hash[]): Promise<void> {
  const buf = Buffer.allocUnsafe(1024 * 1024);
  for (let pos = 0; pos < length;) {
    const { bytesRead } = await local.read(buf, 0, Math.min(buf.length, length - pos), pos);
    if (bytesRead === 0) break;
    for (const h of hashes) h.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
}
