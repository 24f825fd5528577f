// Small files are transferred a few at a time (FILES_IN_FLIGHT), by ipi-pull and ipi-push. A
// 10 KiB file's transfer is a dozen short waits (round trips to the server and to the thread
// pool: open, read or write, stat, close, fsync, rename); one at a time they left both CPUs
// half idle, and over a long link the file spent nearly all its time waiting. The caller
// still takes the results in queue order: what ipi-pull's consumers and marker see does not
// depend on which finished first.

/**
 * Pure: may the file at `next` start while `head` (the oldest not yet taken) has not been
 * taken? A file of more than one chunk goes alone, when it is the head: it uses the whole
 * window of chunks in flight, and a resumable transfer should not share the link with others.
 */
export function mayStartAhead(sizes: readonly number[], head: number, next: number, chunkSize: number, limit: number): boolean {
  if (next === head) return true;
  return next - head < limit && sizes[head]! <= chunkSize && sizes[next]! <= chunkSize;
}

/** The transfers of a queue, started in order as far ahead as `mayStart` allows. */
export class FetchAhead<T> {
  /** Started and not yet taken: what a taken file's result was is the caller's to keep, not ours. */
  private readonly pending = new Map<number, Promise<T>>();
  private next = 0;

  constructor(
    private readonly count: number,
    private readonly mayStart: (head: number, next: number) => boolean,
    private readonly start: (index: number, asHead: boolean) => Promise<T>,
  ) {}

  /** Start the files the window allows now, `head` being the oldest not yet taken (also when the window widened meanwhile). */
  fill(head: number): void {
    while (this.next < this.count && (this.next === head || this.mayStart(head, this.next))) {
      const p = this.start(this.next, this.next === head);
      // A later file's failure is seen when its turn comes, not as an unhandled rejection before.
      p.catch(() => {});
      this.pending.set(this.next++, p);
    }
  }

  /** The result for the file at `head` (0, 1, 2, ... in turn), starting it and the files the window allows after it. */
  take(head: number): Promise<T> {
    this.fill(head);
    const p = this.pending.get(head);
    if (!p) throw new Error(`FetchAhead: file ${head} taken out of turn`);
    this.pending.delete(head);
    return p;
  }

  /** Resolves once nothing started and not yet taken is still running (whatever each one's outcome). */
  async settled(): Promise<void> {
    await Promise.allSettled(this.pending.values());
  }
}
