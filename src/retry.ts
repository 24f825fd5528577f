// The retry budget for one run: transient failures are retried after RETRY_DELAYS (the last
// delay repeats); permanent ones end the run at once, so a server that refuses our password
// is asked once, not hammered. An attempt that moved data does not use up a retry: a link
// that drops every few minutes still finishes a long file.
import pRetry from 'p-retry';
import { InterruptedError, classify, type IpiError } from './errors.js';
import { sleep } from './util/time.js';
import type { Logger } from './log.js';

export interface RetryPolicy {
  retries: number;
  delaysMs: readonly number[];
}

/** Pure: how long to wait before the next attempt. */
export function retryDelay(retriesUsed: number, delaysMs: readonly number[], progressed: boolean): number {
  if (delaysMs.length === 0) return 0;
  if (progressed) return delaysMs[0]!;
  return delaysMs[Math.min(Math.max(retriesUsed - 1, 0), delaysMs.length - 1)]!;
}

export interface Attempt {
  /** Set by the attempt when it wrote data or delivered a file. */
  progressed: boolean;
}

/** Thrown out of p-retry to begin a fresh budget after an attempt that moved data. */
class FreshBudget extends Error {
  constructor(readonly wait: number) {
    super('fresh retry budget');
  }
}

export async function withRetries<T>(
  run: (attempt: Attempt, n: number) => Promise<T>,
  policy: RetryPolicy,
  log: Logger,
  signal?: AbortSignal,
): Promise<T> {
  let attempts = 0;
  // Attempts are numbered across budgets, so `n` keeps counting after a fresh start.
  const numbered = (attempt: Attempt) => run(attempt, ++attempts);
  for (;;) {
    try {
      return await withBudget(numbered, policy, log, signal);
    } catch (err) {
      if (!(err instanceof FreshBudget)) throw err;
      await sleep(err.wait, signal);
    }
  }
}

async function withBudget<T>(
  run: (attempt: Attempt) => Promise<T>,
  policy: RetryPolicy,
  log: Logger,
  signal?: AbortSignal,
): Promise<T> {
  let current: Attempt = { progressed: false };
  return pRetry(
    async () => {
      current = { progressed: false };
      try {
        return await run(current);
      } catch (err) {
        // A signal ends the run whatever the attempt died of: the link was dropped on purpose,
        // and "retrying in 5 s" would be a lie.
        if (signal?.aborted) throw new InterruptedError(String(signal.reason ?? 'a signal'));
        throw classify(err, 'the run');
      }
    },
    {
      retries: policy.retries,
      minTimeout: 0,
      factor: 1,
      randomize: false,
      signal,
      // Checked first of all (before p-retry looks at the budget left): data moved, so the
      // budget starts again.
      onFailedAttempt: ({ error }) => {
        const e = error as IpiError;
        // RETRIES=0 means no retry at all, progress or not.
        if (e.kind !== 'transient' || !current.progressed || policy.retries === 0) return;
        const wait = retryDelay(0, policy.delaysMs, true);
        log.warn(`${e.message}; data moved, so the retry count starts again; retrying in ${formatSeconds(wait)}`);
        throw new FreshBudget(wait);
      },
      // The wait happens here, not in p-retry's own backoff: our delays are a list, not a curve,
      // and p-retry calls this only for failures it would retry.
      shouldRetry: async ({ error, retriesConsumed, retriesLeft }) => {
        const e = error as IpiError;
        if (e.kind !== 'transient') return false;
        const wait = retryDelay(retriesConsumed + 1, policy.delaysMs, false);
        log.warn(`${e.message}; retrying in ${formatSeconds(wait)} (${retriesLeft - 1} retries left)`);
        await sleep(wait, signal);
        return true;
      },
    },
  );
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}
