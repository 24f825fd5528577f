// AFTER_UPLOAD: what becomes of the local file once its upload is verified and recorded
// (kept, deleted, or moved into ARCHIVE_DIR by archive.ts). It is never done before, and it
// never undoes an upload when it fails: the file stays where it is, and a warning says why.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config/load.js';
import { classify } from '../errors.js';
import type { Logger } from '../log.js';
import { printableName } from '../names.js';
import { archiveFile } from './archive.js';
import { isInside } from './decide.js';
import { identityInside, type FileIdentity, type ScannedFile } from './scan.js';

/**
 * `uploaded`: which file the upload read (its open handle's device and inode); without it (a
 * file uploaded by an earlier run), the file the name leads to now, opened as an upload would.
 */
export async function afterUpload(file: ScannedFile, config: Pick<Config, 'afterUpload' | 'archiveDir' | 'watchDir'>, log: Logger, uploaded?: FileIdentity): Promise<void> {
  const action = config.afterUpload;
  if (action === 'keep') return;
  const name = printableName(file.rel);
  try {
    const id = uploaded ?? await identityInside(config.watchDir, file);
    // The name is checked, then acted on, through its folder's real path: a folder of
    // WATCH_DIR swapped for a link since the upload must not lead the delete or the move
    // to a file of the same name outside.
    const dir = await fs.realpath(path.dirname(file.abs));
    if (!isInside(await fs.realpath(config.watchDir), dir)) {
      log.warn(`${name}: its folder now leads outside WATCH_DIR (to ${dir}): left alone (AFTER_UPLOAD=${action} applies inside WATCH_DIR only)`);
      return;
    }
    const at = path.join(dir, path.basename(file.abs));
    // Only the very file that was uploaded: not one written over it since, nor another given its name.
    const st = await fs.lstat(at);
    const real = st.isSymbolicLink() ? await fs.stat(at) : st;
    if (real.dev !== id.dev || real.ino !== id.ino) {
      log.warn(`${name}: not the file that was uploaded (another was given its name since): left in place (AFTER_UPLOAD=${action} applies to the uploaded file only)`);
      return;
    }
    if (real.size !== file.size || Math.floor(real.mtimeMs) !== file.mtimeMs) {
      log.warn(`${name} changed after its upload: left in place (AFTER_UPLOAD=${action} applies to the uploaded version only)`);
      return;
    }
    if (action === 'delete') {
      await fs.rm(at);
      log.info(`${name}: deleted locally (AFTER_UPLOAD=delete)`);
    } else {
      const to = await archiveFile(at, config.archiveDir!, file.rel, file);
      const wanted = path.join(config.archiveDir!, ...file.rel.split('/'));
      log.info(to === wanted ? `${name}: moved to ${to} (AFTER_UPLOAD=archive)`
        : `${name}: moved to ${to} (AFTER_UPLOAD=archive): ${wanted} holds an earlier archived file, kept as it is`);
    }
  } catch (err) {
    log.warn(`${name}: uploaded, but AFTER_UPLOAD=${action} failed: ${classify(err, 'moving it').message}`);
  }
}
