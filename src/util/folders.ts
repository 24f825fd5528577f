// mkdir -p with an error that says what is wrong. Node's recursive mkdir answers ENOENT ("no
// such file or directory") when a parent is read-only or not writable, which sends people
// looking for a missing folder; making the missing levels one at a time gets the real code
// (EROFS, EACCES, ENOTDIR) and the folder it is about.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

/** Like fs.mkdir(dir, { recursive: true }): the first folder created, or undefined if it existed. */
export async function makeDir(dir: string): Promise<string | undefined> {
  try {
    return await fsp.mkdir(dir, { recursive: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    let first: string | undefined;
    for (const d of missingLevels(dir, (p) => fs.existsSync(p))) {
      await fsp.mkdir(d).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'EEXIST') throw e;
      });
      first ??= d;
    }
    return first;
  }
}

export function makeDirSync(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    for (const d of missingLevels(dir, (p) => fs.existsSync(p))) {
      try {
        fs.mkdirSync(d);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    }
  }
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
