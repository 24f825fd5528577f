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
