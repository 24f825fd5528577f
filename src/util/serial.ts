// Writes of a state that changes (metrics after every file): one at a time, in order.

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
