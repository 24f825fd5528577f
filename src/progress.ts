// Progress for long transfers: a log line every 10 s or 10 %, so a mailed log shows the job
// was alive without drowning in lines; on a terminal a live bar instead, and those lines go
// to LOG_FILE only.
import type { Logger } from './log.js';
import { formatBytes } from './util/space.js';

export interface Progress {
  start(name: string, total: number, from: number): void;
  update(done: number): void;
  end(): void;
}

/** Pure: is it time for another log line? */
export function dueForLine(last: { atMs: number; fraction: number }, nowMs: number, fraction: number): boolean {
  // The epsilon keeps 0.3 - 0.2 (0.0999...) from missing a 10 % step.
  return nowMs - last.atMs >= 10_000 || fraction - last.fraction >= 0.1 - 1e-9;
}

export function rate(bytes: number, ms: number): string {
  if (ms <= 0) return '-';
  return `${((bytes / ms) * 1000 / 1e6).toFixed(1)} MB/s`;
}

function eta(remaining: number, bytesPerMs: number): string {
  if (bytesPerMs <= 0) return '--:--';
  const s = Math.round(remaining / bytesPerMs / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

export function createProgress(log: Logger, tty: NodeJS.WriteStream | null): Progress {
  let name = '';
  let total = 0;
  let from = 0;
  let startedAt = 0;
  let last = { atMs: 0, fraction: 0 };
  let lastDraw = 0;
  let drawn = false;

  const line = (done: number): string => {
    const ms = Date.now() - startedAt;
    const moved = done - from;
    const pct = total > 0 ? (done / total) * 100 : 100;
    return `${formatBytes(done)} of ${formatBytes(total)} (${pct.toFixed(0)}%), ${rate(moved, ms)}, ETA ${eta(total - done, ms > 0 ? moved / ms : 0)}`;
  };

  return {
    start(n, t, f) {
      name = n;
      total = t;
      from = f;
      startedAt = Date.now();
      last = { atMs: startedAt, fraction: t > 0 ? f / t : 1 };
    },
    update(done) {
      const now = Date.now();
      const fraction = total > 0 ? done / total : 1;
      if (done < total && dueForLine(last, now, fraction)) {
        last = { atMs: now, fraction };
        // On a terminal the bar shows it; LOG_FILE gets the line all the same, as in cron.
        if (tty) log.record(`${name}: ${line(done)}`);
        else log.info(`${name}: ${line(done)}`);
      }
      if (!tty || (now - lastDraw < 100 && done < total)) return;
      lastDraw = now;
      const width = 24;
      const filled = total > 0 ? Math.round((done / total) * width) : width;
      const bar = `${'#'.repeat(filled)}${'-'.repeat(width - filled)}`;
      tty.write(`\r\x1b[K${name} [${bar}] ${line(done)}`);
      drawn = true;
    },
    end() {
      if (tty && drawn) tty.write('\r\x1b[K');
      drawn = false;
    },
  };
}

export const noProgress: Progress = { start() {}, update() {}, end() {} };
