// mkdir -p with an error that says what is wrong, made one level at a time. Node's recursive
// mkdir answers ENOENT ("no such file or directory") when a parent is read-only or not
// writable, which sends people looking for a missing folder; one level at a time gets the real
// code (EROFS, EACCES, ENOTDIR) and the folder it is about. And on a filesystem that answers
// ENOENT for a folder whose parent exists (procfs: LOG_FILE=/proc/nope/x.log), Node's recursive
// mkdir goes back and forth between the two for ever, at 100% CPU; one level at a time fails.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

/** Like fs.mkdir(dir, { recursive: true }): the first folder created, or undefined if it existed. */
export async function makeDir(dir: string): Promise<string | undefined> {
  let first: string | undefined;
  for (const d of levelsToMake(dir)) {
    try {
      await fsp.mkdir(d);
      first ??= d;
    } catch (e) {
      // Made meanwhile (or `dir` itself, there all along) is fine; a file of that name is not.
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || !(await fsp.stat(d)).isDirectory()) throw e;
    }
  }
  return first;
}

export function makeDirSync(dir: string): void {
  for (const d of levelsToMake(dir)) {
    try {
      fs.mkdirSync(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || !fs.statSync(d).isDirectory()) throw e;
    }
  }
}

/**
 * The missing levels. An existing folder needs none (no mkdir on it: Windows may answer EPERM
 * for a drive or a share's root); anything else of that name is handed to mkdir, so that it
 * says EEXIST, as mkdir -p does.
 */
function levelsToMake(dir: string): string[] {
  const levels = missingLevels(dir, (p) => fs.existsSync(p));
  if (levels.length > 0) return levels;
  return fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory() ? [] : [path.resolve(dir)];
}

/** Pure but for `exists`: the folders from the deepest existing one down to `dir`, outermost first. */
export function missingLevels(dir: string, exists: (p: string) => boolean): string[] {
  const out: string[] = [];
  for (let d = path.resolve(dir); !exists(d); d = path.dirname(d)) {
    out.unshift(d);
    if (path.dirname(d) === d) break;
  }
  return out;
}
