// A JSON-lines record of every delivered file, beside the marker: what arrived, how big,
// its SHA-256, and what the transfer cost. Appended (and fsynced) before the marker moves.
// The appender and the tail reader are generic: ipi-push keeps its upload history the same
// way, beside its state file (src/push/history.ts).
import fs from 'node:fs/promises';
import path from 'node:path';
import { withPath } from './errors.js';
import { Turns } from './util/serial.js';

export interface Delivery {
  name: string;
  size: number;
  sha256: string;
  remoteMtime: string;
  deliveredAt: string;
  durationMs: number;
  bytesTransferred: number;
  resumedFrom: number;
  publishedTo: string;
  /** Absent in lines written before they were recorded. */
  publishMs?: number;
  publishMethod?: string;
}

export function historyFileFor(markerFile: string): string {
  const { dir, name } = path.parse(markerFile);
  return path.join(dir, `${name}.history.jsonl`);
}

/**
 * A JSON-lines file kept open for a run of many records: each call is one write and one
 * fsync. Also ipi-push's state journal (src/push/state.ts), which may close it, cut the file
 * and append again (it is reopened on the next call).
 */
export class HistoryAppender<T = Delivery> {
  private fh: Promise<fs.FileHandle> | null = null;
  /** Calls made while a write runs (ipi-push's files in flight) go after it: whole lines in call order on every platform. */
  private readonly writes = new Turns();

  constructor(readonly file: string) {}

  append(d: T): Promise<void> {
    return this.appendAll([d]);
  }

  /** Several lines in one write and one fsync. */
  appendAll(items: readonly T[]): Promise<void> {
    return this.writes.run(() => this.write(items));
  }

  private async write(items: readonly T[]): Promise<void> {
    try {
      this.fh ??= openForAppend(this.file);
      this.fh.catch(() => (this.fh = null));
      const fh = await this.fh;
      await fh.write(items.map((d) => `${JSON.stringify(d)}\n`).join(''));
      await fh.sync();
    } catch (err) {
      throw withPath(err, this.file);
    }
  }

  async close(): Promise<void> {
    await this.writes.idle();
    const fh = this.fh;
    this.fh = null;
    await fh?.then((h) => h.close()).catch(() => {});
  }
}

/**
 * Open for appending. A file whose last line was torn by a crash (no final newline) gets one
 * first: otherwise the next line would be glued to the fragment and lost to every reader.
 */
async function openForAppend(file: string): Promise<fs.FileHandle> {
  const fh = await fs.open(file, 'a+', 0o644);
  try {
    const { size } = await fh.stat();
    if (size > 0) {
      const last = Buffer.alloc(1);
      await fh.read(last, 0, 1, size - 1);
      if (last[0] !== 0x0a) await fh.write('\n');
    }
    return fh;
  } catch (err) {
    await fh.close().catch(() => {});
    throw err;
  }
}

/** Newest deliveries first, from the file's tail only: the history grows for years. */
export function recentDeliveries(file: string, tailBytes = 256 * 1024): Promise<Delivery[]> {
  return recentLines(file, isDelivery, tailBytes);
}

/**
 * Newest lines first, from the file's tail only, those `valid` accepts: a torn last line after
 * a crash, or a line edited by hand into another shape, is skipped. No file: none.
 */
export async function recentLines<T>(file: string, valid: (v: unknown) => v is T, tailBytes = 256 * 1024): Promise<T[]> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw withPath(err, file);
  }
  try {
    const { size } = await fh.stat();
    const start = Math.max(0, size - tailBytes);
    const buf = Buffer.alloc(size - start);
    await fh.read(buf, 0, buf.length, start);
    const lines = buf.toString('utf8').split('\n');
    if (start > 0) lines.shift(); // first line may be cut
    const out: T[] = [];
    for (const line of lines.reverse()) {
      if (!line.trim()) continue;
      try {
        const d = JSON.parse(line) as unknown;
        // Its fields would be shown by status (and, for ipi-pull, used to place the marker).
        if (valid(d)) out.push(d);
      } catch {
        /* not JSON: skipped likewise */
      }
    }
    return out;
  } catch (err) {
    throw withPath(err, file);
  } finally {
    await fh.close();
  }
}

/** Pure: does a parsed history line have the fields status and the mtime order rely on? */
export function isDelivery(v: unknown): v is Delivery {
  const d = v as Partial<Delivery> | null;
  return typeof d === 'object' && d !== null && typeof d.name === 'string' && typeof d.size === 'number' && typeof d.sha256 === 'string'
    && typeof d.deliveredAt === 'string' && typeof d.remoteMtime === 'string' && !Number.isNaN(Date.parse(d.remoteMtime));
}
