// AFTER_UPLOAD=archive: the uploaded file moved into ARCHIVE_DIR, keeping its relative path.
// Nothing already there is ever replaced (a name that is taken gets a UTC time stamp, see
// archiveName), and the original is removed only once the archived copy is durable: a crash
// or power cut at any point leaves the file under one name or both, never under none, and
// never half a file under a final name.
import fs from 'node:fs/promises';
import path from 'node:path';
import { PermanentError } from '../errors.js';
import { pidAlive } from '../lock.js';
import { fsyncDir, isOrphanTemp, mkdirDurably, renameNoReplace, tempNameFor, temporariesOf } from '../util/atomic.js';
import { archiveName } from './decide.js';

/** The version that was uploaded: the file must still be this one while it is copied. */
export interface ArchivedVersion {
  size: number;
  mtimeMs: number;
}

/**
 * Move `from` to ARCHIVE_DIR/rel, or beside it under a new name if that is taken; returns
 * the path used. Another filesystem: copied to a dot-named temporary in the target folder,
 * fsynced, given its name (never replacing), and only then the original removed and its
 * folder fsynced. On a failure before that, only the temporary is removed.
 */
export async function archiveFile(from: string, archiveDir: string, rel: string, version: ArchivedVersion, now = new Date()): Promise<string> {
  const wanted = path.join(archiveDir, ...rel.split('/'));
  await mkdirDurably(path.dirname(wanted));
  try {
    return await placeUnique(wanted, now, (to) => renameNoReplace(from, to));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
  }

  // A temporary of this name left by a run that died mid-copy goes first.
  for (const left of await temporariesOf(wanted)) {
    const st = await fs.lstat(left).catch(() => null);
    if (st?.isFile() && isOrphanTemp(path.basename(left), st.mtimeMs, Date.now(), pidAlive)) await fs.rm(left, { force: true }).catch(() => {});
  }
  const tmp = tempNameFor(wanted);
  let placed: string;
  try {
    await copyDurably(from, tmp, version);
    placed = await placeUnique(wanted, now, (to) => renameNoReplace(tmp, to));
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => {});
    throw err;
  }
  try {
    await fs.unlink(from);
    await fsyncDir(path.dirname(from));
  } catch (err) {
    throw new PermanentError(`copied to ${placed}, but the original could not be removed (${(err as Error).message}); both are kept`, { cause: err });
  }
  return placed;
}

/** Try the wanted name, then the stamped ones, until one is free; `place` fails with EEXIST on a taken name. */
async function placeUnique(wanted: string, now: Date, place: (to: string) => Promise<void>): Promise<string> {
  const dir = path.dirname(wanted);
  const name = path.basename(wanted);
  const tries = 100;
  for (let attempt = 0; attempt < tries; attempt++) {
    const to = path.join(dir, archiveName(name, now, attempt));
    try {
      await place(to);
      return to;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  throw new PermanentError(`${dir} already holds ${name} and ${tries - 1} archived copies of it stamped ${archiveName(name, now, 1)}: not archived`);
}

/** Copy `from` to the new file `to` with its times, fsynced; the source must stay the uploaded version throughout. */
async function copyDurably(from: string, to: string, version: ArchivedVersion): Promise<void> {
  await fs.copyFile(from, to, fs.constants.COPYFILE_EXCL);
  const src = await fs.stat(from);
  if (src.size !== version.size || Math.floor(src.mtimeMs) !== version.mtimeMs) {
    throw new PermanentError(`${from} changed while it was being copied to ${path.dirname(to)}: left in place`);
  }
  const fh = await fs.open(to, 'r+');
  try {
    if ((await fh.stat()).size !== version.size) throw new PermanentError(`copying ${from} to ${path.dirname(to)}: the copy is not ${version.size} bytes long`);
    await fh.utimes(src.atime, src.mtime);
    await fh.sync();
  } finally {
    await fh.close();
  }
}
