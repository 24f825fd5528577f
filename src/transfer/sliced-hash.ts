// Hashing on the thread that also runs ssh2, without starving it. SHA-256 of a whole 2 MiB
// chunk holds the thread ~1 ms, during which ssh2 can neither read the socket nor answer
// it (a window adjustment, the next request): the link then idles. Fed in slices with a turn
// of the event loop between them, the hash fills the gaps between network events instead
// (BENCHMARKS.md: the 1 GiB download 4-7 % faster; the upload's main thread was 40 % idle).

/** Bytes hashed between two turns of the event loop. */
export const HASH_SLICE = 128 * 1024;

export class SlicedHash {
  /** The last chunk queued: chunks are hashed in the order they were fed. */
  private tail: Promise<void> = Promise.resolve();

  /** `update` takes each slice, in order (one hash, or several at once). */
  constructor(private readonly update: (slice: Buffer) => void) {}

  /** Queue `data`; resolves once all of it is hashed: until then it must not be reused. */
  feed(data: Buffer): Promise<void> {
    this.tail = this.tail.then(async () => {
      for (let at = 0; at < data.length; at += HASH_SLICE) {
        if (at > 0) await new Promise((resolve) => setImmediate(resolve));
        this.update(data.subarray(at, at + HASH_SLICE));
      }
    });
    return this.tail;
  }

  /** Resolves once everything fed so far is hashed. */
  settled(): Promise<void> {
    return this.tail;
  }
}
