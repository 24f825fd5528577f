// Where fetched chunks go: written to the .part in file order, one write each, each write
// starting only after the previous one finished (so the file is always a correct prefix of
// the remote one, and its length the resume point), and fed to SHA-256 meanwhile.
//
// The hash runs on this thread while the thread pool writes the same (read-only) bytes, in
// slices (sliced-hash.ts). A worker thread for the hash was measured too: on the 2-core
// benchmark machine it made no difference to the time (the cores are already busy with ssh2
// and the server) and cost ~10 MB of memory, so it is not used.
import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import type { HashAlgo } from '../checksum.js';
import { DIRECT_ALIGN } from '../util/direct.js';
import { readRange, writeFully } from '../util/fileio.js';
import { SlicedHash } from './sliced-hash.js';

export interface ChunkSink {
  /** Hash data and write it at `position` after the previous write; resolves once both are done (data may then be reused). */
  put(data: Buffer, position: number): Promise<void>;
  /** Start no write that has not started (queued ones are dropped); resolves once no write or hashing is in progress, so the file may be closed and the buffers reused. */
  abort(): Promise<void>;
}

export interface SinkFiles {
  local: FileHandle;
  /** The same file opened with O_DIRECT, or null. */
  direct: FileHandle | null;
  /** Whether the chunk buffers are DIRECT_ALIGN-aligned (else `direct` is not used). */
  aligned: boolean;
  /** Told once when the filesystem refuses O_DIRECT after all (the rest goes through `local`). */
  onDirectRefused: (code: string) => void;
}

export class HashingWriter implements ChunkSink {
  private readonly hashes: Map<HashAlgo, Hash>;
  /** The last write queued. */
  private tail: Promise<void> = Promise.resolve();
  private readonly sliced = new SlicedHash((slice) => this.hash(slice));
  private direct: FileHandle | null;
  private stopped: Error | null = null;
  directBytes = 0;

  /** SHA-256 always; `extra` digests too (a companion checksum file's algorithm). */
  constructor(private readonly files: SinkFiles, extra: readonly HashAlgo[] = []) {
    this.direct = files.aligned ? files.direct : null;
    this.hashes = new Map([['sha256', createHash('sha256')]]);
    for (const algo of extra) if (!this.hashes.has(algo)) this.hashes.set(algo, createHash(algo));
  }

  private hash(data: Buffer): void {
    for (const h of this.hashes.values()) h.update(data);
  }

  put(data: Buffer, position: number): Promise<void> {
    const hashed = this.sliced.feed(data);
    const write = this.tail.then(() => {
      // Nothing after a failed write may land in the file: it would leave a hole.
      if (this.stopped) throw new Error(`not written: ${this.stopped.message}`);
      return this.write(data, position).catch((err: Error) => {
        this.stopped ??= err;
        throw err;
      });
    });
    this.tail = write.catch(() => {});
    // The caller reuses the buffer once this resolves (or rejects): the hash must be done with it too.
    return hashed.then(() => write);
  }

  private async write(data: Buffer, position: number): Promise<void> {
    if (this.direct && position % DIRECT_ALIGN === 0 && data.length % DIRECT_ALIGN === 0) {
      try {
        await writeFully(this.direct, data, position);
        this.directBytes += data.length;
        return;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EINVAL') throw err;
        // This filesystem (or buffer) does not do O_DIRECT after all: the same bytes, and
        // everything after, go through the page cache.
        this.direct = null;
        this.files.onDirectRefused(code);
      }
    }
    await writeFully(this.files.local, data, position);
  }

  /** The first `length` bytes already in the file (a resumed partial) into the hash. */
  async hashExisting(length: number): Promise<void> {
    await readRange(this.files.local, 0, length, (block) => this.hash(block), () => new Error(`the partial file is shorter than ${length} bytes`));
  }

  /** Once every write is done: the digests of everything put (and hashExisting's prefix). */
  async digests(): Promise<Partial<Record<HashAlgo, string>> & { sha256: string }> {
    await this.tail;
    await this.sliced.settled();
    if (this.stopped) throw this.stopped;
    const out: Partial<Record<HashAlgo, string>> = {};
    for (const [algo, h] of this.hashes) out[algo] = h.digest('hex');
    return out as Partial<Record<HashAlgo, string>> & { sha256: string };
  }

  async abort(): Promise<void> {
    this.stopped ??= new Error('aborted');
    await this.tail;
    await this.sliced.settled();
  }
}
