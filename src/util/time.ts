// Small timing helpers: waits that a signal can cut short, and bounded waits.

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Wait for `p` but at most `ms`; true if `p` settled first. The timer is
 * cleared afterwards so it never holds the process open by itself.
 */
export async function settleWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Wait `ms`; a signal ends the wait at once, rejecting with the signal's reason (as the caller gave it). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A gate that opens at most once per `intervalMs`: the first call returns true, later ones only
 * once `intervalMs` has passed since the last true. For work whose latest value is all that
 * counts and that may be skipped in between (a progress checkpoint). The clock is monotonic:
 * with the wall clock, setting it back an hour would keep the gate shut for that hour.
 */
export function atMostEvery(intervalMs: number, now: () => number = () => performance.now()): () => boolean {
  let last = -Infinity;
  return () => {
    const t = now();
    if (t - last < intervalMs) return false;
    last = t;
    return true;
  };
}
