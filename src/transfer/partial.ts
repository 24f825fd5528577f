// Partial-download bookkeeping: LOCAL_DIR/NAME.part holds the bytes, NAME.part.json records
// which remote file they belong to (size and mtime), so a resume never splices two versions.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { RemoteStat } from '../sftp/session.js';
import { writeFileAtomic } from '../util/atomic.js';

export interface PartialMeta {
  name: string;
  remoteSize: number;
  remoteMtimeMs: number;
  startedAt: string;
}

export interface PartialPaths {
  final: string;
  part: string;
  meta: string;
}

export function partialPaths(localDir: string, name: string): PartialPaths {
  const final = path.join(localDir, name);
  return { final, part: `${final}.part`, meta: `${final}.part.json` };
}

export interface ResumeDecision {
  offset: number;
  why: string;
}

/** Pure: where to start, given what is on disk and what the server says now. */
export function resumeDecision(meta: PartialMeta | null, partSize: number | null, remote: RemoteStat): ResumeDecision {
  if (partSize === null || partSize === 0) return { offset: 0, why: 'new download' };
  if (partSize > remote.size) return { offset: 0, why: `the partial (${partSize} bytes) is longer than the remote file (${remote.size}): starting over` };
  if (meta === null) return { offset: partSize, why: 'resuming a partial file without a record (its tail is checked against the server)' };
  if (meta.remoteSize !== remote.size || meta.remoteMtimeMs !== remote.mtimeMs) {
    return { offset: 0, why: 'the remote file changed since the partial was started: starting over' };
  }
  return { offset: partSize, why: `resuming at byte ${partSize}` };
}

/** What adoptFinal needs to know about a file under its final name in LOCAL_DIR. */
export interface LocalFileStat {
  size: number;
  mtimeMs: number;
  nlink: number;
}

/**
 * Pure: may a file under its final name in LOCAL_DIR, with no .part beside it, be taken as a
 * partial (its tail is then checked against the server)? It is one of:
 * - ours, verified and renamed, after which the run ended before the marker moved: it has
 *   the remote file's size and mtime (set before the rename);
 * - FTP_IPI.py's partial, which that script wrote under the final name: shorter than the
 *   remote file;
 * - an earlier delivery of this name pulled again (`ipi-pull mark`, a re-issued file): its
 *   bytes may be another version's, and a matching tail would not show it. Not taken: the
 *   file is fetched whole, and the new copy replaces it by rename.
 * A file with other hard links (PUBLISH_MODE=hardlink: the same inode is the published copy
 * in SERVER_DIR) is never taken: writing into it would change a published file in place.
 */
export function adoptFinal(local: LocalFileStat, remote: RemoteStat): { adopt: boolean; why: string } {
  if (local.nlink > 1) return { adopt: false, why: 'it has other hard links (a published copy), so it is not written into: fetching the file whole' };
  // Whole seconds: the server's times are, and some filesystems keep no finer ones.
  const sameTime = Math.floor(local.mtimeMs / 1000) === Math.floor(remote.mtimeMs / 1000);
  if (local.size === remote.size && sameTime) return { adopt: true, why: 'it has the remote size and time: checking it as a partial download' };
  if (local.size < remote.size) return { adopt: true, why: 'it is shorter than the remote file: checking it as a partial download' };
  return { adopt: false, why: `it is another version (${local.size} bytes, modified ${new Date(local.mtimeMs).toISOString()}; the server has ${remote.size} bytes, ${new Date(remote.mtimeMs).toISOString()}): fetching the file whole` };
}

/**
 * Pure: the window ends to check, newest first, when verifying a partial's tail. A power
 * cut damages the end of a sequentially written file, so we check the last window and,
 * on a mismatch, step back in growing strides; 0 (start over) is always the last resort.
 */
export function tailCheckPoints(partSize: number, window: number): number[] {
  const points: number[] = [];
  let back = 0;
  for (let stride = 1024 * 1024; partSize - back >= window; stride *= 4) {
    points.push(partSize - back);
    back += stride;
  }
  points.push(0);
  return points;
}

export async function readMeta(file: string): Promise<PartialMeta | null> {
  try {
    const v = JSON.parse(await fs.readFile(file, 'utf8')) as Partial<PartialMeta>;
    if (typeof v.remoteSize === 'number' && typeof v.remoteMtimeMs === 'number' && typeof v.name === 'string') return v as PartialMeta;
  } catch {
    /* missing or torn: treated as no record */
  }
  return null;
}

export async function writeMeta(file: string, meta: PartialMeta): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(meta));
}

export async function sizeOf(file: string): Promise<number | null> {
  try {
    return (await fs.stat(file)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}
