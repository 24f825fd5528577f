// Put a verified file into SERVER_DIR so that consumers see all of it or nothing: the bytes
// go to a dot-named temporary in SERVER_DIR itself (same filesystem, so the final rename is
// atomic), are made durable, and only then take the final name.
import fs from 'node:fs/promises';
import path from 'node:path';
import { withPath } from './errors.js';
import { fsyncDir, renameDurably, tempNameFor } from './util/atomic.js';

export type PublishMode = 'copy' | 'hardlink' | 'move';

export async function publish(localPath: string, serverDir: string, name: string, mode: PublishMode): Promise<string> {
  const target = path.join(serverDir, name);
  const tmp = tempNameFor(target, 'publishing');
  try {
    if (mode === 'hardlink') {
      await fs.link(localPath, tmp);
    } else if (mode === 'move') {
      await moveInto(localPath, tmp);
    } else {
      await copyDurably(localPath, tmp);
    }
    await renameDurably(tmp, target);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => {});
    // copyFile names its source; what failed is writing into SERVER_DIR.
    throw withPath(err, target, (err as NodeJS.ErrnoException).syscall === 'copyfile');
  }
  if (mode === 'move') await fsyncDir(path.dirname(localPath)).catch(() => {});
  return target;
}

/** A copy-on-write clone where the filesystem can (btrfs, XFS, APFS...), else a plain copy; then fsync. */
async function copyDurably(from: string, to: string): Promise<void> {
  await fs.copyFile(from, to, fs.constants.COPYFILE_EXCL | fs.constants.COPYFILE_FICLONE);
  const st = await fs.stat(from);
  await fs.utimes(to, st.atime, st.mtime);
  const fh = await fs.open(to, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function moveInto(from: string, to: string): Promise<void> {
  try {
    await fs.rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    // Different filesystems: copy, and remove the source only once the copy is durable.
    await copyDurably(from, to);
    await fs.rm(from);
  }
}
