// The pipelined send: the upload counterpart of engine.ts. The local file is read in order,
// CHUNK_SIZE at a time (one read each), and each chunk goes out as WRITE requests no larger
// than the server accepts (limits@openssh.com), with up to CHUNKS_IN_FLIGHT chunks
// unacknowledged at once. Memory is CHUNK_SIZE x CHUNKS_IN_FLIGHT whatever the file size.
// The resume point is the end of the acknowledged prefix: chunks are retired in file order, and
// a stop (signal) waits for the writes already sent, so the server holds a clean prefix.
import type { FileHandle } from 'node:fs/promises';
import { InterruptedError, TransientError } from '../errors.js';
import { readFully } from '../util/fileio.js';
import { StallWatch, inBatch, type RequestBatching } from './stall.js';

/** What the engine needs from a connection; SftpSession provides it, tests can too. */
export interface RemoteWriter extends RequestBatching {
  readonly maxWriteLen: number;
  write(handle: Buffer, buf: Buffer, off: number, len: number, position: number): Promise<void>;
}

export interface SendOptions {
  writer: RemoteWriter;
  handle: Buffer;
  local: FileHandle;
  /** First byte to send (the resume point). */
  from: number;
  /** Local size when the upload began; the file must still have these bytes. */
  size: number;
  chunkSize: number;
  chunksInFlight: number;
  /** No acknowledgement for this long: give up on the connection (the caller tears it down). */
  dataTimeoutMs: number;
  onStall: (message: string) => void;
  /**
   * Called in file order as each chunk is read, right after its WRITEs are issued: for
   * hashing. The chunk's buffer is not reused before the promise it returns settles.
   */
  onRead: (data: Buffer, endOffset: number) => void | Promise<void>;
  /** Called in file order as each chunk is fully acknowledged: the new resume point. */
  onAcked: (endOffset: number) => void;
  signal?: AbortSignal;
}

/** The local file changed under its upload (got shorter, or went): someone is still at it. Not a failure of the upload. */
export class LocalChangedError extends TransientError {}

interface InFlight {
  start: number;
  len: number;
  buf: Buffer;
  done: Promise<void>;
  /** onRead is done with `buf`. */
  read: Promise<void>;
}

export async function sendRange(opts: SendOptions): Promise<{ bytesSent: number; ackedTo: number }> {
  const writeLen = Math.max(512, opts.writer.maxWriteLen);
  const pool: Buffer[] = [];
  // No chunk is longer than the first: a 10 KiB file takes 10 KiB, not CHUNK_SIZE.
  const take = () => pool.pop() ?? Buffer.allocUnsafe(Math.min(opts.chunkSize, opts.size - opts.from));
  let bytesSent = 0;
  let ackedTo = opts.from;
  const watch = new StallWatch(opts.dataTimeoutMs, 'acknowledgement from the server', opts.onStall);

  const sendChunk = async (start: number): Promise<InFlight> => {
    const len = Math.min(opts.chunkSize, opts.size - start);
    const buf = take();
    await readFully(opts.local, buf, start, (at) => new LocalChangedError(`the local file ended at byte ${at}, before its size when the upload began: it is still being written`), 0, len);
    const writes: Promise<void>[] = [];
    // A chunk's WRITEs leave as one burst: ssh2 cuts each into 32 KiB SSH packets and would
    // otherwise make a system call per packet.
    const issue = (): void => {
      for (let off = 0; off < len; off += writeLen) {
        const n = Math.min(writeLen, len - off);
        writes.push(opts.writer.write(opts.handle, buf, off, n, start + off).then(() => {
          watch.touch();
          bytesSent += n;
        }));
      }
    };
    inBatch(opts.writer, issue);
    // After the WRITEs are out: the hash (sliced) then waits on nothing the link needs.
    const read = Promise.resolve(opts.onRead(buf.subarray(0, len), start + len));
    const done = Promise.all(writes).then(() => undefined);
    // A later chunk may fail while we still await an earlier one; its rejection is seen in turn.
    done.catch(() => {});
    read.catch(() => {});
    return { start, len, buf, done, read };
  };

  const queue: InFlight[] = [];
  let next = opts.from;
  let stopping = false;
  try {
    while (next < opts.size || queue.length > 0) {
      stopping ||= opts.signal?.aborted === true;
      while (!stopping && queue.length < opts.chunksInFlight && next < opts.size) {
        if (queue.length === 0) watch.touch(); // the clock runs only while something waits for an answer
        queue.push(await sendChunk(next));
        next += queue[queue.length - 1]!.len;
      }
      // Left in the queue until retired: a failure here still waits for its hashing below.
      const head = queue[0];
      if (!head) break;
      await head.done;
      await head.read;
      queue.shift();
      if (watch.stalled) throw watch.stalled;
      ackedTo = head.start + head.len;
      opts.onAcked(ackedTo);
      pool.push(head.buf);
    }
    if (stopping && ackedTo < opts.size) throw new InterruptedError(String(opts.signal?.reason ?? 'a signal'));
  } catch (err) {
    for (const q of queue) q.done.catch(() => {});
    // Nothing may still be reading a buffer once this returns.
    await Promise.allSettled(queue.map((q) => q.read));
    throw watch.stalled ?? err;
  } finally {
    watch.stop();
  }
  return { bytesSent, ackedTo };
}
