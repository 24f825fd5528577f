// Sample data for `ipi-pull demo`: enough to show every rule at work in a few seconds.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

export interface Sample {
  name: string;
  size: number;
  /** Seconds before now; 0 = just written (younger than the demo's MIN_AGE). */
  ageSeconds: number;
  why: string;
}

export const SAMPLES: readonly Sample[] = [
  { name: 'IPI_20250103.dat', size: 3 * 1024 * 1024, ageSeconds: 3600, why: 'third by date; has a .sha256 companion that is checked' },
  { name: 'IPI_20250101.dat', size: 4 * 1024 * 1024 + 123, ageSeconds: 7200, why: 'first by date (listed out of order on purpose)' },
  { name: 'IPI_20250102_b.dat', size: 1024 * 1024, ageSeconds: 5400, why: 'same day as _a: both are delivered, _a first' },
  { name: 'IPI_20250102_a.dat', size: 2 * 1024 * 1024, ageSeconds: 5400, why: 'same day as _b' },
  { name: 'IPI_20250104.dat', size: 512 * 1024, ageSeconds: 0, why: 'just written: younger than MIN_AGE, so it waits for a later run' },
  { name: 'readme.txt', size: 200, ageSeconds: 3600, why: 'does not match FILE_PATTERN=IPI*' },
];

export async function writeSamples(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  const now = Date.now();
  for (const s of SAMPLES) {
    const data = s.name.endsWith('.txt') ? Buffer.from('Not an IPI file: ipi-pull leaves it alone.\n'.padEnd(s.size, ' ')) : randomBytes(s.size);
    const file = path.join(dir, s.name);
    await fs.writeFile(file, data);
    if (s.name === 'IPI_20250103.dat') {
      await fs.writeFile(`${file}.sha256`, `${createHash('sha256').update(data).digest('hex')}  ${s.name}\n`);
      await setAge(`${file}.sha256`, now, s.ageSeconds);
    }
    await setAge(file, now, s.ageSeconds);
  }
}

async function setAge(file: string, now: number, ageSeconds: number): Promise<void> {
  const t = new Date(now - ageSeconds * 1000);
  await fs.utimes(file, t, t);
}
