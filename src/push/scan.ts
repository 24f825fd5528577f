// Walking WATCH_DIR, and opening a file from it, without ever leaving it. Symbolic links are
// resolved and kept only when they lead to a regular file inside WATCH_DIR; folders reached
// through a link are never descended nor mirrored (no loops, no escape). Opening re-checks the real path
// and uses O_NOFOLLOW, so a name swapped for a link after the scan is refused, not followed.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { PermanentError } from '../errors.js';
import { printableName } from '../names.js';
import { LocalChangedError } from '../transfer/upload-engine.js';
import { isInside, toRel, unsafeRelReason, type IgnoreTest, type LocalFile } from './decide.js';

export interface ScannedFile extends LocalFile {
  /** Absolute path of the name in WATCH_DIR. */
  abs: string;
}

export interface Skipped {
  rel: string;
  reason: string;
}

export interface ScanResult {
  files: ScannedFile[];
  /** Every folder walked (relative, parents first), empty ones too: they are mirrored on the server. */
  dirs: string[];
  skipped: Skipped[];
}

/** Every regular file and folder under `root` that is not ignored, and what was skipped and why. */
export async function scanDir(root: string, ignored: IgnoreTest): Promise<ScanResult> {
  const realRoot = await fsp.realpath(root);
  const out: ScanResult = { files: [], dirs: [], skipped: [] };
  const walk = async (dir: string): Promise<void> => {
    let entries: fs.Dirent[];
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (dir === root) throw new PermanentError(`WATCH_DIR ${root}: cannot read it (${code ?? String(err)})`);
      if (code !== 'ENOENT') out.skipped.push({ rel: toRel(path.relative(root, dir)), reason: `cannot read the folder (${code})` });
      return;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const abs = path.join(dir, e.name);
      const rel = toRel(path.relative(root, abs));
      if (ignored(rel)) continue;
      const seen = await lookAt(root, realRoot, abs, rel);
      if (seen.kind === 'dir') {
        out.dirs.push(rel);
        await walk(abs);
      }
      else if (seen.kind === 'file') out.files.push(seen.file);
      else if (seen.kind === 'skip') out.skipped.push({ rel, reason: seen.reason });
    }
  };
  await walk(root);
  return out;
}

/**
 * Which of these relative paths are gone from `root` now: no such name, or a parent that is no
 * longer a folder. Anything else (there, or not readable) is not known to be gone.
 */
export async function stillGone(root: string, rels: Iterable<string>): Promise<Set<string>> {
  const gone = new Set<string>();
  const all = [...rels];
  // A few at a time: after a large folder is archived away there may be thousands.
  for (let i = 0; i < all.length; i += 64) {
    await Promise.all(all.slice(i, i + 64).map(async (rel) => {
      try {
        await fsp.lstat(path.join(root, ...rel.split('/')));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') gone.add(rel);
      }
    }));
  }
  return gone;
}

export type Look =
  | { kind: 'file'; file: ScannedFile }
  | { kind: 'dir' }
  | { kind: 'gone' }
  | { kind: 'skip'; reason: string };

/** One name under WATCH_DIR: a file to consider, a folder to walk, gone, or skipped (and why). */
export async function lookAt(root: string, realRoot: string, abs: string, rel: string): Promise<Look> {
  const unsafe = unsafeRelReason(rel);
  if (unsafe) return { kind: 'skip', reason: `the name ${unsafe}` };
  let st: fs.Stats;
  try {
    st = await fsp.lstat(abs);
  } catch {
    return { kind: 'gone' };
  }
  if (st.isSymbolicLink()) {
    let real: string;
    try {
      real = await fsp.realpath(abs);
    } catch {
      return { kind: 'skip', reason: 'a symbolic link to nothing' };
    }
    if (!isInside(realRoot, real)) return { kind: 'skip', reason: `a symbolic link leading outside WATCH_DIR (to ${real}): not followed` };
    const target = await fsp.stat(real).catch(() => null);
    if (!target?.isFile()) return { kind: 'skip', reason: 'a symbolic link to a folder or special file: not followed' };
    return { kind: 'file', file: { rel, abs, size: target.size, mtimeMs: Math.floor(target.mtimeMs) } };
  }
  if (st.isDirectory()) {
    // A folder whose real path left WATCH_DIR (a parent swapped for a link) is not walked.
    const real = await fsp.realpath(abs).catch(() => null);
    if (!real || !isInside(realRoot, real)) return { kind: 'skip', reason: 'a folder outside WATCH_DIR' };
    return { kind: 'dir' };
  }
  if (!st.isFile()) return { kind: 'skip', reason: 'not a regular file (device, socket or pipe)' };
  return { kind: 'file', file: { rel, abs, size: st.size, mtimeMs: Math.floor(st.mtimeMs) } };
}

/** Which file a name led to when it was opened (what AFTER_UPLOAD checks it still leads to). */
export interface FileIdentity {
  dev: number;
  ino: number;
}

const O_NOFOLLOW = fs.constants.O_NOFOLLOW ?? 0;

/**
 * Open a scanned file for reading, only if its real path is still inside WATCH_DIR; the
 * final component is opened with O_NOFOLLOW (where the OS has it).
 */
export async function openInside(root: string, file: ScannedFile): Promise<fsp.FileHandle> {
  const realRoot = await fsp.realpath(root);
  const real = await fsp.realpath(file.abs).catch((err: unknown) => {
    throw goneOr(err, file);
  });
  if (!isInside(realRoot, real)) throw new PermanentError(`${file.rel}: now leads outside WATCH_DIR (to ${real}); not read`);
  return fsp.open(real, fs.constants.O_RDONLY | O_NOFOLLOW).catch((err: unknown) => {
    throw goneOr(err, file);
  });
}

/** A file gone since the scan was taken back by its producer (or moved on): nothing to upload, and no failure. */
function goneOr(err: unknown, file: ScannedFile): unknown {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return err;
  return new LocalChangedError(`${printableName(file.rel)}: gone before its upload: not a failure`, { cause: err });
}

/** The identity of a scanned file, opened with openInside (so never one outside WATCH_DIR). */
export async function identityInside(root: string, file: ScannedFile): Promise<FileIdentity> {
  const fh = await openInside(root, file);
  try {
    const st = await fh.stat();
    return { dev: st.dev, ino: st.ino };
  } finally {
    await fh.close();
  }
}
