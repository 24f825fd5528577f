// AFTER_UPLOAD=archive: the uploaded file moved into ARCHIVE_DIR, keeping its relative path.
// Nothing already there is ever replaced: a name that is taken gets a UTC time stamp (see
// archiveName).
import fs from 'node:fs/promises';
import path from 'node:path';
import { PermanentError } from '../errors.js';
import { renameNoReplace } from '../util/atomic.js';
import { archiveName } from './decide.js';

/** The version that was uploaded: the file must still be this one while it is copied. */
export interface ArchivedVersion {
  size: number;
  mtimeMs: number;
}

/** Move `from` to ARCHIVE_DIR/rel, or beside it under a new name if that is taken; returns the path used. */
export async function archiveFile(from: string, archiveDir: string, rel: string, _version: ArchivedVersion, now = new Date()): Promise<string> {
  const wanted = path.join(archiveDir, ...rel.split('/'));
  await fs.mkdir(path.dirname(wanted), { recursive: true });
  try {
    return await placeUnique(wanted, now, (to) => renameNoReplace(from, to));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
  }
  // Another filesystem: copy, then remove the original only once the copy is complete.
  const placed = await placeUnique(wanted, now, (to) => fs.copyFile(from, to, fs.constants.COPYFILE_EXCL));
  await fs.rm(from);
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
