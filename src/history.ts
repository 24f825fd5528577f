// A JSON-lines record of every delivered file, beside the marker: what arrived, how big,
// its SHA-256, and what the transfer cost. Appended (and fsynced) before the marker moves.
import fs from 'node:fs/promises';
import path from 'node:path';
import { withPath } from './errors.js';

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

export async function appendDelivery(file: string, d: Delivery): Promise<void> {
  const h = new HistoryAppender(file);
  try {
    await h.append(d);
  } finally {
    await h.close();
  }
}

/** The history kept open for a run of many files: each line is one write and one fsync. */
export class HistoryAppender {
  private fh: Promise<fs.FileHandle> | null = null;

  constructor(readonly file: string) {}

  async append(d: Delivery): Promise<void> {
    try {
      this.fh ??= fs.open(this.file, 'a', 0o644);
      this.fh.catch(() => (this.fh = null));
      const fh = await this.fh;
      await fh.write(`${JSON.stringify(d)}\n`);
      await fh.sync();
    } catch (err) {
      throw withPath(err, this.file);
    }
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    await fh?.then((h) => h.close()).catch(() => {});
  }
}

/** Newest deliveries first, from the file's tail only: the history grows for years. */
export async function recentDeliveries(file: string, tailBytes = 256 * 1024): Promise<Delivery[]> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  try {
    const { size } = await fh.stat();
    const start = Math.max(0, size - tailBytes);
    const buf = Buffer.alloc(size - start);
    await fh.read(buf, 0, buf.length, start);
    const lines = buf.toString('utf8').split('\n');
    if (start > 0) lines.shift(); // first line may be cut
    const out: Delivery[] = [];
    for (const line of lines.reverse()) {
      if (!line.trim()) continue;
      try {
        out.push(JSON.parse(line) as Delivery);
      } catch {
        /* a torn last line after a crash is skipped, not fatal */
      }
    }
    return out;
  } finally {
    await fh.close();
  }
}
