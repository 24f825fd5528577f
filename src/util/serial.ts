// Work that must not overlap: writes of a state that changes (metrics after every file), and
// calls on one shared resource. One at a time, in order.

/**
 * Wrap `write` so its calls run one at a time, in the order made, and while one runs only
 * the newest waiting value is kept (older ones are stale by then). The promise a call returns
 * resolves once its value, or a newer one, is written: awaiting the last call means the last
 * value is what was written last. `write` must not reject (report its own failures).
 */
export function serialLatest<T>(write: (value: T) => Promise<void>): (value: T) => Promise<void> {
  let waiting: { value: T } | null = null;
  let running: Promise<void> | null = null;
  const drain = async (): Promise<void> => {
    try {
      while (waiting) {
        const { value } = waiting;
        waiting = null;
        await write(value);
      }
    } finally {
      running = null;
    }
  };
  return (value) => {
    waiting = { value };
    running ??= drain();
    return running;
  };
}

/**
 * Calls that must not overlap (appends to one file, exec channels on one connection): each
 * runs once every earlier one has finished, in the order made, and has its own result; one
 * that fails does not stop the next.
 */
export class Turns {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const done = this.tail.then(fn);
    this.tail = done.catch(() => {});
    return done;
  }

  /** Resolves once every call made so far has finished. */
  async idle(): Promise<void> {
    await this.tail;
  }
}
