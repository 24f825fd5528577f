// O_DIRECT: where it is used, and the aligned copy used to publish. Writing a large file
// through the page cache on the benchmark VM cost ~2-3 s of kernel time per GiB (each new
// page-cache page is faulted in from the host) plus a full flush at fsync; O_DIRECT writes
// go from our buffer to the disk, and the fsync then has almost nothing left to do.
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import type { Logger } from '../log.js';

export type DirectIoMode = 'auto' | 'on' | 'off';

/** undefined where the platform has no O_DIRECT (macOS, Windows). */
export const O_DIRECT = process.platform === 'linux' ? (fsConstants as { O_DIRECT?: number }).O_DIRECT : undefined;

/** O_DIRECT wants the buffer address, file offset and length to be multiples of the logical block size; 4 KiB covers 512 and 4096. */
export const DIRECT_ALIGN = 4096;

/**
 * Filesystems (statfs magic) where DIRECT_IO=auto uses O_DIRECT: ext2/3/4 and XFS, plain
 * local-disk filesystems where it is a well-trodden fast path. Not network filesystems,
 * where every O_DIRECT write becomes a synchronous round trip, nor tmpfs.
 */
const AUTO_FILESYSTEMS = new Set([0xef53, 0x58465342]);
const byDir = new Map<string, boolean>();

export async function directIoAllowed(dir: string, mode: DirectIoMode, log?: Logger): Promise<boolean> {
  if (mode === 'off' || O_DIRECT === undefined) return false;
  if (mode === 'on') return true;
  let ok = byDir.get(dir);
  if (ok === undefined) {
    const type = await fs.statfs(dir).then((st) => st.type, () => -1);
    ok = AUTO_FILESYSTEMS.has(type);
    byDir.set(dir, ok);
    log?.debug(`${dir}: filesystem type 0x${type.toString(16)}, ${ok ? 'large files are written with O_DIRECT' : 'writing through the page cache (DIRECT_IO=on forces O_DIRECT)'}`);
  }
  return ok;
}

/** `file` opened with O_DIRECT and `flags`, or null when the filesystem refuses. */
export async function openDirect(file: string, flags: number, mode?: number): Promise<FileHandle | null> {
  if (O_DIRECT === undefined) return null;
  try {
    return await fs.open(file, flags | O_DIRECT, mode);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EINVAL' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') return null;
    throw err;
  }
}
