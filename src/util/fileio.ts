// Whole reads and writes through a FileHandle: the kernel may move fewer bytes than asked
// (a signal, a full pipe, the end of a filesystem), and every caller needs all of them.

import type { FileHandle } from 'node:fs/promises';

/** Write buf[off, off+len) at `position`, however many calls it takes. */
export async function writeFully(fh: FileHandle, buf: Buffer, position: number, off = 0, len = buf.length - off): Promise<void> {
  for (let done = 0; done < len;) {
    const { bytesWritten } = await fh.write(buf, off + done, len - done, position + done);
    done += bytesWritten;
  }
}

/**
 * Feed bytes [start, end) of the file to `use`, a block at a time (the block is reused:
 * `use` must be done with it when it returns). A file shorter than `end` throws `short()`.
 */
export async function readRange(
  fh: FileHandle, start: number, end: number, use: (block: Buffer) => void, short: (at: number) => Error,
): Promise<void> {
  if (end <= start) return;
  const buf = Buffer.allocUnsafe(Math.min(end - start, 1024 * 1024));
  for (let pos = start; pos < end;) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, end - pos), pos);
    if (bytesRead === 0) throw short(pos);
    use(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
}

/** Fill buf[off, off+len) from `position`, however many reads it takes; a file that ends first throws `short(at)`. */
export async function readFully(
  fh: FileHandle, buf: Buffer, position: number, short: (at: number) => Error, off = 0, len = buf.length - off,
): Promise<void> {
  for (let done = 0; done < len;) {
    const { bytesRead } = await fh.read(buf, off + done, len - done, position + done);
    if (bytesRead === 0) throw short(position + done);
    done += bytesRead;
  }
}
