// The pipelined fetch: a file as CHUNK_SIZE chunks, each filled by several READ requests
// sized to what the server accepts, with CHUNKS_IN_FLIGHT chunks requested at once.
// Chunks are handed to the sink (sink.ts) strictly in order, and the sink writes them one
// write each, each starting after the previous one finished, so the local file is always a
// correct prefix of the remote one and its length is the resume point. When the link dies
// mid-chunk, the part of the received data that is contiguous from the last written byte
// is written too, so the next attempt resumes where the data stopped, not at the chunk's
// start. Memory is CHUNK_SIZE x (CHUNKS_IN_FLIGHT + WRITE_BEHIND) whatever the file size.
//
// Chunk boundaries are multiples of CHUNK_SIZE in the file, so a resume from an odd offset
// realigns after one short chunk (O_DIRECT needs aligned offsets).
import { InterruptedError, RemoteChangedError } from '../errors.js';
import { StallWatch, inBatch, type RequestBatching } from './stall.js';
import { ChunkPool } from './buffers.js';
import { WRITE_BEHIND, downloadBuffers } from './budget.js';
import type { ChunkSink } from './sink.js';

/** What the engine needs from a connection; SftpSession provides it, tests can too. */
export interface RemoteReader extends RequestBatching {
  readonly maxReadLen: number;
  read(handle: Buffer, buf: Buffer, off: number, len: number, position: number): Promise<number>;
}

export interface FetchOptions {
  /** The file's name, for messages. */
  name: string;
  reader: RemoteReader;
  handle: Buffer;
  /** Writes (in order, one write per chunk) and hashes what is fetched. */
  sink: ChunkSink;
  /** First byte to fetch (the resume point). */
  from: number;
  /** Remote size when the download began; bytes past it are not asked for. */
  size: number;
  chunkSize: number;
  chunksInFlight: number;
  readSize: number;
  /** Buffers shared across the files of a run (the sink may need them from it); a private pool when absent. */
  pool?: ChunkPool;
  /** No data for this long: give up on the connection (the caller tears it down). */
  dataTimeoutMs: number;
  onStall: (message: string) => void;
  /** Called in file order after each chunk is written (progress). */
  onChunk: (endOffset: number) => void;
  signal?: AbortSignal;
}

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
  const pool = opts.pool && opts.pool.chunkSize === opts.chunkSize ? opts.pool : new ChunkPool(opts.chunkSize, downloadBuffers(opts.chunksInFlight));
  let bytesRead = 0;
  const watch = new StallWatch(opts.dataTimeoutMs, 'data', opts.onStall);

  /** Fill buf[off, off+len) from `position`, re-asking after short reads. */
  const readSpan = async (buf: Buffer, off: number, len: number, position: number): Promise<void> => {
    while (len > 0) {
      const n = await opts.reader.read(opts.handle, buf, off, len, position);
      watch.touch();
      if (n <= 0) throw new RemoteChangedError(`${opts.name} ended on the server at byte ${position}, before its listed size ${opts.size}: it changed during the download`);
      bytesRead += n;
      off += n;
      position += n;
      len -= n;
    }
  };

  const startChunk = (start: number, len: number): Pending => {
    const buf = pool.take();
    // Even spans: 2 MiB at the 255 KiB OpenSSH limit is 9 reads of ~233 KiB, not 8 full
    // ones and an 8 KiB straggler that costs a whole request.
    const count = Math.ceil(len / readLen);
    const span = Math.ceil(len / count);
    const spans: Pending['spans'] = [];
    const reads: Promise<void>[] = [];
    for (let off = 0; off < len; off += span) {
      const s = { len: Math.min(span, len - off), complete: false };
      spans.push(s);
      reads.push(readSpan(buf, off, s.len, start + off).then(() => void (s.complete = true)));
    }
    const done = Promise.all(reads).then(() => undefined);
    // A later chunk may fail while we still await an earlier one; its rejection is seen
    // when its turn comes, and must not count as unhandled before that.
    done.catch(() => {});
    return { start, len, buf, done, spans };
  };

  const queue: Pending[] = [];
  const writing: Promise<void>[] = [];

  /**
   * After a failure: let the chunks already handed to the sink finish, then write what
   * arrived contiguously after them, so a retry does not fetch it again. Best effort: a
   * failed write ends it (the sink then refuses anything after the hole).
   */
  const salvage = async (pending: Pending[]): Promise<void> => {
    for (const w of writing.splice(0)) await w;
    for (const p of pending) {
      let prefix = 0;
      for (const span of p.spans) {
        if (!span.complete) break;
        prefix += span.len;
      }
      if (prefix > 0) {
        await opts.sink.put(p.buf.subarray(0, prefix), p.start);
        opts.onChunk(p.start + prefix);
      }
      if (prefix < p.len) return;
    }
  };

  let next = opts.from;
  /** The chunk taken off the queue and not yet handed to the sink. */
  let current: Pending | null = null;
  const refill = (): void => {
    while (queue.length < opts.chunksInFlight && next < opts.size) {
      const end = Math.min(opts.size, (Math.floor(next / opts.chunkSize) + 1) * opts.chunkSize);
      queue.push(startChunk(next, end - next));
      next = end;
    }
  };
  try {
    while (next < opts.size || queue.length > 0) {
      inBatch(opts.reader, refill);
      const head = queue.shift()!;
      current = head;
      await head.done;
      if (watch.stalled) throw watch.stalled;
      if (opts.signal?.aborted) throw new InterruptedError(String(opts.signal.reason ?? 'a signal'));
      const end = head.start + head.len;
      current = null;
      const w = opts.sink.put(head.buf.subarray(0, head.len), head.start).then(() => {
        pool.give(head.buf);
        opts.onChunk(end);
      });
      w.catch(() => {});
      writing.push(w);
      // Bounded write-behind: wait for the oldest write before taking more buffers.
      while (writing.length >= WRITE_BEHIND) await writing.shift();
    }
    for (const w of writing.splice(0)) await w;
  } catch (err) {
    await salvage(current ? [current, ...queue] : queue).catch(() => {});
    // Nothing may still be writing to the file when the caller closes it.
    await opts.sink.abort();
    throw watch.stalled ?? err;
  } finally {
    watch.stop();
  }
  return { bytesRead };
}
