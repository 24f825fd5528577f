// Put a verified file into SERVER_DIR so that consumers see all of it or nothing: the bytes
// go to a dot-named temporary in SERVER_DIR itself (same filesystem, so the final rename is
// atomic), are made durable, and only then take the final name.
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { replaceRefused, withPath } from './errors.js';
import { alignedBuffers, type ChunkPool } from './transfer/buffers.js';
import { PUBLISH_BUFFERS } from './transfer/budget.js';
import { fsyncDir, renameDurably, tempNameFor } from './util/atomic.js';
import { DIRECT_ALIGN, directIoAllowed, openDirect, type DirectIoMode } from './util/direct.js';
import { writeFully } from './util/fileio.js';

export type PublishMode = 'copy' | 'hardlink' | 'move';

/** How the bytes got there: a copy-on-write clone costs nothing; a copy is a second full write. */
export type PublishMethod = 'clone' | 'copy' | 'copy (O_DIRECT)' | 'hardlink' | 'rename';

export interface PublishOptions {
  /** The file's size and mtime when the caller knows them (saves a stat per file); else read from the file. */
  known?: { size: number; mtime: Date };
  directIo?: DirectIoMode;
  /** Aligned buffers to borrow for an O_DIRECT copy (the download's, idle by now). */
  pool?: ChunkPool;
}

export interface Published {
  path: string;
  method: PublishMethod;
}

export async function publish(localPath: string, serverDir: string, name: string, mode: PublishMode, opts: PublishOptions = {}): Promise<Published> {
  const target = path.join(serverDir, name);
  const tmp = tempNameFor(target, 'publishing');
  let method: PublishMethod;
  /** Move mode: the file itself now sits at tmp, the only copy, so a failure puts it back. */
  let moved = false;
  try {
    if (mode === 'hardlink') {
      await fs.link(localPath, tmp);
      method = 'hardlink';
    } else if (mode === 'move') {
      method = await moveInto(localPath, tmp, opts);
      moved = method === 'rename';
    } else {
      method = await copyDurably(localPath, tmp, opts);
    }
    await renameDurably(tmp, target).catch((err: unknown) => {
      throw replaceRefused(err, target) ?? err;
    });
  } catch (err) {
    if (moved) await fs.rename(tmp, localPath).catch(() => {});
    else await fs.rm(tmp, { force: true }).catch(() => {});
    // copyFile names its source; what failed is writing into SERVER_DIR.
    throw withPath(err, target, (err as NodeJS.ErrnoException).syscall === 'copyfile');
  }
  if (mode === 'move') {
    // Across filesystems the bytes were copied: the source goes only now that the copy has
    // its final name. Failing to remove it leaves a second copy in LOCAL_DIR (as copy mode
    // does), not a lost file, so the publish stands.
    if (!moved) await fs.rm(localPath, { force: true }).catch(() => {});
    await fsyncDir(path.dirname(localPath)).catch(() => {});
  }
  return { path: target, method };
}

/** Files smaller than this are copied with copyFile: O_DIRECT's set-up is not worth it. */
const DIRECT_COPY_MIN = 8 * 1024 * 1024;

/**
 * A copy-on-write clone where the filesystem can (btrfs, XFS with reflink, APFS...), else
 * an O_DIRECT copy for large files where DIRECT_IO allows it, else a plain copy; then fsync.
 */
async function copyDurably(from: string, to: string, opts: PublishOptions): Promise<PublishMethod> {
  let st: { size: number; mode: number; mtime: Date } | null = null;
  const stat = async () => (st ??= await fs.stat(from));
  let method: PublishMethod = 'clone';
  // A failed clone attempt creates and removes the target: worth it once per pair of folders,
  // not for each of a thousand small files.
  const pair = `${path.dirname(from)}\0${path.dirname(to)}`;
  try {
    if (cannotClone.has(pair)) throw Object.assign(new Error('cannot clone'), { code: 'ENOTSUP' });
    await fs.copyFile(from, to, fsConstants.COPYFILE_EXCL | fsConstants.COPYFILE_FICLONE_FORCE);
  } catch (err) {
    if (!CANNOT_CLONE.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
    cannotClone.add(pair);
    method = 'copy';
    const size = opts.known?.size ?? (await stat()).size;
    if (size >= DIRECT_COPY_MIN && (await directIoAllowed(path.dirname(to), opts.directIo ?? 'off'))) {
      if (await directCopy(from, to, size, (await stat()).mode, opts.pool)) method = 'copy (O_DIRECT)';
    }
    if (method === 'copy') await fs.copyFile(from, to, fsConstants.COPYFILE_EXCL);
  }
  const mtime = opts.known?.mtime ?? (await stat()).mtime;
  const fh = await fs.open(to, 'r+');
  try {
    await fh.utimes(mtime, mtime);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return method;
}

const cannotClone = new Set<string>();

/** What copyFile answers when the filesystem (or the pair of filesystems) cannot clone. */
const CANNOT_CLONE = new Set(['ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'EINVAL', 'ENOSYS', 'ENOTTY', 'EPERM']);

/**
 * Copy through aligned buffers with O_DIRECT on both sides: no page cache for either file,
 * reads overlapping writes. The last, unaligned piece goes through an ordinary descriptor.
 * False (and nothing left behind) when either file refuses O_DIRECT: the caller copies plainly.
 */
async function directCopy(from: string, to: string, size: number, mode: number, pool?: ChunkPool): Promise<boolean> {
  const block = pool?.aligned ? pool.chunkSize : 2 * 1024 * 1024;
  if (block % DIRECT_ALIGN !== 0) return false;
  const borrowed = pool?.aligned ? Array.from({ length: PUBLISH_BUFFERS }, () => pool.take()) : null;
  const bufs = borrowed ?? alignedBuffers(block, PUBLISH_BUFFERS).buffers;
  let src: FileHandle | null = null;
  let dst: FileHandle | null = null;
  const files: { tail: FileHandle | null } = { tail: null };
  let writing: Promise<unknown> = Promise.resolve();
  try {
    src = await openDirect(from, fsConstants.O_RDONLY);
    dst = src && (await openDirect(to, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, mode & 0o7777));
    if (!src || !dst) {
      // Linux creates the file before it refuses O_CREAT|O_DIRECT (EINVAL): the plain copy
      // that follows needs the name free.
      if (src) await fs.rm(to, { force: true });
      return false;
    }
    await dst.chmod(mode & 0o7777);
    for (let pos = 0, i = 0; pos < size; i++) {
      const buf = bufs[i % bufs.length]!;
      const n = await readFully(src, buf, Math.min(block, size - pos), pos);
      if (n === 0) throw new Error(`${from} ended at byte ${pos}, before its size ${size}`);
      await writing;
      const at = pos;
      const whole = n - (n % DIRECT_ALIGN);
      writing = (async () => {
        if (whole > 0) await writeFully(dst!, buf, at, 0, whole);
        if (whole < n) {
          files.tail ??= await fs.open(to, 'r+');
          await writeFully(files.tail, buf, at + whole, whole, n - whole);
        }
      })();
      writing.catch(() => {});
      pos += n;
    }
    await writing;
    return true;
  } catch (err) {
    // Nothing may still write into the file, or hold a buffer, once the handles close below.
    await writing.catch(() => {});
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL') throw err;
    // O_DIRECT refused mid-way (alignment the kernel wants is stricter than 4 KiB): start over plainly.
    await Promise.all([dst?.close(), files.tail?.close()].map((p) => p?.catch(() => {})));
    dst = null;
    files.tail = null;
    await fs.rm(to, { force: true });
    return false;
  } finally {
    await src?.close().catch(() => {});
    await dst?.close().catch(() => {});
    await files.tail?.close().catch(() => {});
    if (borrowed) for (const b of borrowed) pool!.give(b);
  }
}

async function readFully(fh: FileHandle, buf: Buffer, len: number, position: number): Promise<number> {
  let got = 0;
  while (got < len) {
    // O_DIRECT reads ask for whole blocks; at the end of the file the answer is short.
    const want = Math.ceil((len - got) / DIRECT_ALIGN) * DIRECT_ALIGN;
    const { bytesRead } = await fh.read(buf, got, Math.min(want, buf.length - got), position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return Math.min(got, len);
}

/** The file at `to` by rename, or across filesystems by a durable copy (the caller removes the source once the copy is published). */
async function moveInto(from: string, to: string, opts: PublishOptions): Promise<PublishMethod> {
  try {
    await fs.rename(from, to);
    return 'rename';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    return copyDurably(from, to, opts);
  }
}
