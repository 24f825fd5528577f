// Small files are fetched a few at a time (FILES_IN_FLIGHT). A 10 KiB file's download is a dozen short waits
// (round trips to the server and to the thread pool: open, read, stat, close, write, fsync,
// rename), and fetched one at a time they left both CPUs half idle. Only the downloads
// overlap: files are taken in queue order, and published and recorded one after another,
// so what consumers and the marker see is unchanged.

/**
 * Pure: may the file at `next` start downloading while `head` (the oldest not yet taken)
 * has not been taken? A file of more than one chunk goes alone, when it is the head: it
 * uses the whole window of chunks in flight, and a resumable download should not share
 * the link with others.
 */
export function mayStartAhead(sizes: readonly number[], head: number, next: number, chunkSize: number, limit: number): boolean {
  if (next === head) return true;
  return next - head < limit && sizes[head]! <= chunkSize && sizes[next]! <= chunkSize;
}

/** The downloads of a queue, started in order as far ahead as `mayStart` allows. */
export class FetchAhead<T> {
  private readonly started: Array<Promise<T>> = [];

  constructor(
    private readonly count: number,
    private readonly mayStart: (head: number, next: number) => boolean,
    private readonly start: (index: number, asHead: boolean) => Promise<T>,
  ) {}

  /** The result for the file at `head` (0, 1, 2, ... in turn), starting it and the files the window allows after it. */
  take(head: number): Promise<T> {
    while (this.started.length < this.count && (this.started.length === head || this.mayStart(head, this.started.length))) {
      const index = this.started.length;
      const p = this.start(index, index === head);
      // A later file's failure is seen when its turn comes, not as an unhandled rejection before.
      p.catch(() => {});
      this.started.push(p);
    }
    return this.started[head]!;
  }

  /** Resolves once nothing started is still running (whatever each one's outcome). */
  async settled(): Promise<void> {
    await Promise.allSettled(this.started);
  }
}
