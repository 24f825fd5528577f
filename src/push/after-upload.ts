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
import type { ScannedFile } from './scan.js';

export async function afterUpload(file: ScannedFile, config: Pick<Config, 'afterUpload' | 'archiveDir'>, log: Logger): Promise<void> {
  const action = config.afterUpload;
  if (action === 'keep') return;
  const name = printableName(file.rel);
  try {
    // Only the very file that was uploaded: not one written over it since.
    const st = await fs.lstat(file.abs);
    const real = st.isSymbolicLink() ? await fs.stat(file.abs) : st;
    if (real.size !== file.size || Math.floor(real.mtimeMs) !== file.mtimeMs) {
      log.warn(`${name} changed after its upload: left in place (AFTER_UPLOAD=${action} applies to the uploaded version only)`);
      return;
    }
    if (action === 'delete') {
      await fs.rm(file.abs);
      log.info(`${name}: deleted locally (AFTER_UPLOAD=delete)`);
    } else {
      const to = await archiveFile(file.abs, config.archiveDir!, file.rel, file);
      const wanted = path.join(config.archiveDir!, ...file.rel.split('/'));
      log.info(to === wanted ? `${name}: moved to ${to} (AFTER_UPLOAD=archive)`
        : `${name}: moved to ${to} (AFTER_UPLOAD=archive): ${wanted} holds an earlier archived file, kept as it is`);
    }
  } catch (err) {
    log.warn(`${name}: uploaded, but AFTER_UPLOAD=${action} failed: ${classify(err, 'moving it').message}`);
  }
}
