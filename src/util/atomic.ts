// Durable, all-or-nothing file updates: write a temporary name in the same folder, fsync,
// rename over the target, fsync the folder. A reader sees the old content or the new, never half.
import fs from 'node:fs/promises';
import path from 'node:path';
import { withPath } from '../errors.js';

/** Temporary names are dot-names with our pid: never mistaken for a delivered file, and traceable. */
export function tempNameFor(target: string, tag = 'tmp'): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${tag}-${process.pid}-${Date.now().toString(36)}`);
}

export async function writeFileAtomic(target: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const tmp = tempNameFor(target);
  const fh = await fs.open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await fs.rm(tmp, { force: true });
    throw withPath(err, target);
  }
  await fh.close();
  await renameDurably(tmp, target);
}

/** rename, then make the new directory entry itself durable. */
export async function renameDurably(from: string, to: string): Promise<void> {
  try {
    await fs.rename(from, to);
  } catch (err) {
    await fs.rm(from, { force: true }).catch(() => {});
    throw err;
  }
  await fsyncDir(path.dirname(to));
}

/** Windows cannot open a folder for fsync (and NTFS journals renames): there it is a no-op. */
export async function fsyncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  const fh = await fs.open(dir, 'r');
  try {
    await fh.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Some filesystems (and some network mounts) refuse fsync on a folder; the rename still happened.
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EPERM' && code !== 'EISDIR') throw err;
  } finally {
    await fh.close();
  }
}

const TEMP_NAME = /^\..+\.(?:tmp|publishing)-(\d+)-[0-9a-z]+$/;

/**
 * Pure: is this one of our temporary names left by a run that died? Its writer must be gone
 * from this machine, and it must be untouched for an hour (a writer on another machine
 * sharing the folder keeps its file's mtime fresh while it writes).
 */
export function isOrphanTemp(name: string, mtimeMs: number, nowMs: number, alive: (pid: number) => boolean): boolean {
  const m = TEMP_NAME.exec(name);
  if (!m) return false;
  return !alive(Number(m[1])) && nowMs - mtimeMs > 3_600_000;
}

/** Remove orphaned temporaries of ours from a folder; returns what was removed. */
export async function sweepTemporaries(dir: string, alive: (pid: number) => boolean): Promise<string[]> {
  const removed: string[] = [];
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return removed;
  }
  const now = Date.now();
  for (const name of names) {
    if (!TEMP_NAME.test(name)) continue;
    const file = path.join(dir, name);
    const st = await fs.lstat(file).catch(() => null);
    if (st?.isFile() && isOrphanTemp(name, st.mtimeMs, now, alive)) {
      await fs.rm(file, { force: true });
      removed.push(file);
    }
  }
  return removed;
}
