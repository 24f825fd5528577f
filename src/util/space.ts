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

export async function ensureRoom(dir: string, needed: number, what: string): Promise<void> {
  const free = await freeBytes(dir);
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
