// The pipelined fetch: a file as CHUNK_SIZE chunks, each filled by several READ requests
// sized to what the server accepts, with CHUNKS_IN_FLIGHT chunks requested at once.
// Chunks are written strictly in order, one write each, so the local file is always a
// correct prefix of the remote one and its length is the resume point. When the link dies
// mid-chunk, the part of the received data that is contiguous from the last written byte
// is written too, so the next attempt resumes where the data stopped, not at the chunk's start. Memory is
// CHUNK_SIZE x (CHUNKS_IN_FLIGHT + 1) whatever the file size.
import type { FileHandle } from 'node:fs/promises';
import { InterruptedError, TransientError } from '../errors.js';

/** What the engine needs from a connection; SftpSession provides it, tests can too. */
export interface RemoteReader {
  readonly maxReadLen: number;
  read(handle: Buffer, buf: Buffer, off: number, len: number, position: number): Promise<number>;
}

export interface FetchOptions {
  reader: RemoteReader;
  handle: Buffer;
  local: FileHandle;
  /** First byte to fetch (the resume point). */
  from: number;
  /** Remote size when the download began; bytes past it are not asked for. */
  size: number;
  chunkSize: number;
  chunksInFlight: number;
  readSize: number;
  /** No data for this long: give up on the connection (the caller tears it down). */
  dataTimeoutMs: number;
  onStall: (message: string) => void;
  /** Called in file order after each chunk is written, for hashing and progress. */
  onChunk: (data: Buffer, endOffset: number) => void;
  signal?: AbortSignal;
}

export class RemoteShrankError extends TransientError {}

interface Pending {
  start: number;
  len: number;
  buf: Buffer;
  done: Promise<void>;
  /** The READ spans filling buf, in order; `complete` once all of a span's bytes arrived. */
  spans: Array<{ len: number; complete: boolean }>;
}

export async function fetchRange(opts: FetchOptions): Promise<{ bytesRead: number }> {
  const readLen = Math.max(1024, Math.min(opts.readSize, opts.reader.maxReadLen));
  const pool: Buffer[] = [];
  const take = () => pool.pop() ?? Buffer.allocUnsafe(opts.chunkSize);
  let lastData = Date.now();
  let bytesRead = 0;
  let stalled: Error | null = null;

  const watchdog = setInterval(() => {
    const idle = Date.now() - lastData;
    if (idle >= opts.dataTimeoutMs && !stalled) {
      stalled = new TransientError(`no data for ${Math.round(idle / 1000)} s (DATA_TIMEOUT)`);
      opts.onStall(stalled.message);
    }
  }, Math.min(1000, Math.max(50, opts.dataTimeoutMs / 4)));
  watchdog.unref();

  /** Fill buf[off, off+len) from `position`, re-asking after short reads. */
  const readSpan = async (buf: Buffer, off: number, len: number, position: number): Promise<void> => {
    while (len > 0) {
      const n = await opts.reader.read(opts.handle, buf, off, len, position);
      lastData = Date.now();
      if (n <= 0) throw new RemoteShrankError(`the remote file ended at byte ${position}, before its listed size ${opts.size}: it changed during the download`);
      bytesRead += n;
      off += n;
      position += n;
      len -= n;
    }
  };

  const startChunk = (start: number): Pending => {
    const len = Math.min(opts.chunkSize, opts.size - start);
    const buf = take();
    const reads: Promise<void>[] = [];
    const spans: Pending['spans'] = [];
    for (let off = 0; off < len; off += readLen) {
      const span = { len: Math.min(readLen, len - off), complete: false };
      spans.push(span);
      reads.push(readSpan(buf, off, span.len, start + off).then(() => void (span.complete = true)));
    }
    const done = Promise.all(reads).then(() => undefined);
    // A later chunk may fail while we still await an earlier one; its rejection is seen
    // when its turn comes, and must not count as unhandled before that.
    done.catch(() => {});
    return { start, len, buf, done, spans };
  };

  /** After a failure: write what arrived contiguously after the last written byte (best effort). */
  const salvage = async (pending: Pending[]): Promise<void> => {
    for (const p of pending) {
      let prefix = 0;
      for (const span of p.spans) {
        if (!span.complete) break;
        prefix += span.len;
      }
      if (prefix > 0) {
        await writeFully(opts.local, p.buf, prefix, p.start);
        opts.onChunk(p.buf.subarray(0, prefix), p.start + prefix);
      }
      if (prefix < p.len) return;
    }
  };

  const queue: Pending[] = [];
  /** The chunk taken off the queue and not yet written. */
  let current: Pending | null = null;
  let next = opts.from;
  try {
    while (next < opts.size || queue.length > 0) {
      while (queue.length < opts.chunksInFlight && next < opts.size) {
        queue.push(startChunk(next));
        next += Math.min(opts.chunkSize, opts.size - next);
      }
      const head = queue.shift()!;
      current = head;
      await head.done;
      if (stalled) throw stalled;
      await writeFully(opts.local, head.buf, head.len, head.start);
      current = null;
      opts.onChunk(head.buf.subarray(0, head.len), head.start + head.len);
      pool.push(head.buf);
      if (opts.signal?.aborted) throw new InterruptedError(String(opts.signal.reason ?? 'a signal'));
    }
  } catch (err) {
    // A failed local write cannot be helped by writing more: the salvage is best effort.
    await salvage(current ? [current, ...queue] : queue).catch(() => {});
    throw stalled ?? err;
  } finally {
    clearInterval(watchdog);
  }
  return { bytesRead };
}

async function writeFully(fh: FileHandle, buf: Buffer, len: number, position: number): Promise<void> {
  let off = 0;
  while (off < len) {
    const { bytesWritten } = await fh.write(buf, off, len - off, position + off);
    off += bytesWritten;
  }
}
