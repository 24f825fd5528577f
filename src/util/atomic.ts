// Durable, all-or-nothing file updates: write a temporary name in the same folder, fsync,
// rename over the target, fsync the folder. A reader sees the old content or the new, never half.
import fs from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { withPath } from '../errors.js';
import { makeDir } from './folders.js';

let tempSeq = 0;

/** Temporary names are dot-names with our pid: never mistaken for a delivered file, and traceable. */
export function tempNameFor(target: string, tag = 'tmp'): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${tag}-${process.pid}-${Date.now().toString(36)}${(tempSeq++).toString(36)}`);
}

export async function writeFileAtomic(target: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  await (await prepareFileAtomic(target, data, mode)).commit();
}

/** New content made durable under a temporary name, waiting to take the target's name. */
export interface PreparedFile {
  /** Rename over the target and fsync the folder: from here on readers see the new content. */
  commit(): Promise<void>;
  /** Give up: remove the temporary. */
  discard(): Promise<void>;
}

/** The first half of writeFileAtomic, so it can run while something that must come first finishes. */
export async function prepareFileAtomic(target: string, data: string | Uint8Array, mode = 0o644): Promise<PreparedFile> {
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
  return {
    commit: async () => {
      try {
        await renameDurably(tmp, target);
      } catch (err) {
        await fs.rm(tmp, { force: true }).catch(() => {});
        throw err;
      }
    },
    discard: () => fs.rm(tmp, { force: true }),
  };
}

/**
 * rename, then make the new directory entry itself durable. A failed rename leaves `from`
 * where it was: it may be the only copy (a verified download, a file being moved), so only
 * a caller that owns it as a temporary removes it.
 */
export async function renameDurably(from: string, to: string): Promise<void> {
  await fs.rename(from, to);
  await fsyncDir(path.dirname(to));
}

/**
 * Folders kept open for fsync during a run of many files (see keepFoldersOpen), so a folder
 * fsync is one operation instead of open, fsync, close; per delivered file that is three
 * folders (LOCAL_DIR, SERVER_DIR, the marker's), six operations fewer.
 */
let openFolders: Map<string, Promise<FileHandle>> | null = null;

/**
 * Run fn with folder handles kept open for fsyncDir, closed when it ends. The folders are the
 * run's own (LOCAL_DIR, SERVER_DIR, the marker's): not replaced while the run holds its lock.
 */
export async function keepFoldersOpen<T>(fn: () => Promise<T>): Promise<T> {
  if (openFolders || process.platform === 'win32') return fn();
  const folders = new Map<string, Promise<FileHandle>>();
  openFolders = folders;
  try {
    return await fn();
  } finally {
    openFolders = null;
    for (const fh of folders.values()) await fh.then((h) => h.close()).catch(() => {});
  }
}

/** Windows cannot open a folder for fsync (and NTFS journals renames): there it is a no-op. */
export async function fsyncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  const folders = openFolders;
  let kept = folders?.get(dir);
  if (folders && !kept) {
    kept = fs.open(dir, 'r');
    kept.catch(() => folders.delete(dir));
    folders.set(dir, kept);
  }
  const fh = kept ? await kept : await fs.open(dir, 'r');
  try {
    await fh.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Some filesystems (and some network mounts) refuse fsync on a folder; the rename still happened.
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EPERM' && code !== 'EISDIR') throw err;
  } finally {
    if (!kept) await fh.close();
  }
}

const TEMP_NAME = /^\..+\.(?:tmp|publishing)-(\d+)-[0-9a-z]+$/;

/**
 * Pure: is this one of our temporary names left by a run that died? Its writer must be gone
 * from this machine, and it must be untouched for an hour (a writer on another machine
 * sharing the folder keeps its file's mtime fresh while it writes), unless it is `leftBy`:
 * the dead run of this machine whose lock we took over, whose files are leftovers at once
 * (while that pid is still free).
 */
export function isOrphanTemp(name: string, mtimeMs: number, nowMs: number, alive: (pid: number) => boolean, leftBy: number | null = null): boolean {
  const m = TEMP_NAME.exec(name);
  if (!m) return false;
  const pid = Number(m[1]);
  if (alive(pid)) return false; // leftBy's pid too: taken again since, by a process that may be ours
  return pid === leftBy || nowMs - mtimeMs > 3_600_000;
}

/** Our temporaries for `target` (tempNameFor's names beside it), whatever their age. */
export async function temporariesOf(target: string, tag = 'tmp'): Promise<string[]> {
  const dir = path.dirname(target);
  const prefix = `.${path.basename(target)}.${tag}-`;
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  return names.filter((n) => n.startsWith(prefix) && TEMP_NAME.test(n)).map((n) => path.join(dir, n));
}

/** Remove orphaned temporaries of ours from a folder; returns what was removed. */
export async function sweepTemporaries(dir: string, alive: (pid: number) => boolean, leftBy: number | null = null): Promise<string[]> {
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
    if (st?.isFile() && isOrphanTemp(name, st.mtimeMs, now, alive, leftBy)) {
      await fs.rm(file, { force: true });
      removed.push(file);
    }
  }
  return removed;
}

/** link() refused because the filesystem (or its policy) does not do hard links here. */
const LINK_UNSUPPORTED = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EMLINK']);

/**
 * Give `from` the name `to` only if nothing has that name yet: an existing `to` is never
 * replaced (the error has code EEXIST and `from` is left as it was); another filesystem
 * fails with EXDEV, `from` untouched. A hard link, then the old name removed, where the
 * filesystem allows: atomic, of two writers one gets the name. Where it refuses links (FAT,
 * many SMB shares; Linux's protected_hardlinks for another user's file) it is a check, then
 * rename, which only a writer racing for this very new name could defeat. Both folders are
 * fsynced, the new name before the old one goes: after a power cut the file has one name or
 * both, never none.
 */
export async function renameNoReplace(from: string, to: string): Promise<void> {
  let linked = false;
  try {
    await fs.link(from, to);
    linked = true;
  } catch (err) {
    if (!LINK_UNSUPPORTED.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
  }
  if (linked) {
    await fsyncDir(path.dirname(to));
    await fs.unlink(from);
  } else {
    if (await fs.lstat(to).then(() => true, () => false)) {
      throw Object.assign(new Error(`EEXIST: file already exists, rename '${from}' -> '${to}'`), { code: 'EEXIST', path: to });
    }
    await fs.rename(from, to);
    await fsyncDir(path.dirname(to));
  }
  if (path.dirname(from) !== path.dirname(to)) await fsyncDir(path.dirname(from));
}

/**
 * mkdir -p whose new folders survive a power cut: each folder it creates is made durable in
 * its parent (a file fsynced into a folder whose own entry was lost is lost with it).
 */
export async function mkdirDurably(dir: string): Promise<void> {
  const first = await makeDir(dir);
  if (first === undefined) return;
  const created: string[] = [];
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    created.push(d);
    if (d === path.resolve(first) || path.dirname(d) === d) break;
  }
  for (const d of created.reverse()) await fsyncDir(path.dirname(d));
}
