// What both transfer engines share about the connection: the DATA_TIMEOUT watchdog (the
// session's own, over every request, is one too), and the optional request batching a
// connection may offer.
import { TransientError } from '../errors.js';

/** Send the requests fn issues together (one socket write); SftpSession offers it, fakes need not. */
export interface RequestBatching {
  batch?<T>(fn: () => T): T;
}

/** Run fn inside the connection's batch when it has one. */
export function inBatch(conn: RequestBatching, fn: () => void): void {
  if (conn.batch) conn.batch(fn);
  else fn();
}

/**
 * Declares the transfer stalled once nothing moved for `timeoutMs` (`what` says what was
 * awaited: "data", "acknowledgement from the server"; a function when that changes as the
 * requests in flight do), tells `onStall` once (the caller drops the connection, which fails
 * every request in flight), and keeps the error to rethrow.
 */
export class StallWatch {
  private last = Date.now();
  private readonly timer: NodeJS.Timeout;
  stalled: TransientError | null = null;

  constructor(timeoutMs: number, what: string | (() => string), onStall: (message: string) => void) {
    this.timer = setInterval(() => {
      const idle = Date.now() - this.last;
      if (idle >= timeoutMs && !this.stalled) {
        this.stalled = new TransientError(`no ${typeof what === 'string' ? what : what()} for ${Math.round(idle / 1000)} s (DATA_TIMEOUT)`);
        onStall(this.stalled.message);
      }
    }, Math.min(1000, Math.max(50, timeoutMs / 4)));
    this.timer.unref();
  }

  /** Something moved: the clock starts again. */
  touch(): void {
    this.last = Date.now();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
