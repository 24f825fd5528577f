// Free-space check before a file starts, so a full disk fails early with a clear message
// instead of mid-file.
import fs from 'node:fs/promises';
import { PermanentError } from '../errors.js';

export async function freeBytes(dir: string): Promise<number | null> {
  try {
    const st = await fs.statfs(dir);
    return Number(st.bavail) * Number(st.bsize);
  } catch {
    return null; // not every filesystem answers statfs; then the write itself is the check
  }
}

/** The last free-space answer per folder, and what was promised away since. */
const recent = new Map<string, { free: number; at: number; promised: number }>();
/** A file this small is let through on a recent answer (a full disk still fails at the write). */
const SMALL = 16 * 1024 * 1024;
const RECENT_MS = 10_000;
const MARGIN = 256 * 1024 * 1024;

export async function ensureRoom(dir: string, needed: number, what: string): Promise<void> {
  const last = recent.get(dir);
  if (last && needed <= SMALL && Date.now() - last.at < RECENT_MS && last.free - last.promised - needed > MARGIN) {
    // Many small files in a row: one statfs per ten seconds, not one per file.
    last.promised += needed;
    return;
  }
  const free = await freeBytes(dir);
  if (free !== null) recent.set(dir, { free, at: Date.now(), promised: needed });
  if (free !== null && free < needed) {
    throw new PermanentError(`${what}: ${dir} has ${formatBytes(free)} free, ${formatBytes(needed)} needed`);
  }
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}
