// One run at a time per marker. The lock is a file created with O_EXCL ('wx'), which is
// atomic on every OS and filesystem we target, Windows and NFSv3+ included; no flock.
import fs from 'node:fs/promises';
import os from 'node:os';
import { randomUUID } from 'node:crypto';
import { LockHeldError, withPath } from './errors.js';

export interface LockInfo {
  pid: number;
  host: string;
  since: string;
  token: string;
}

export interface Lock {
  readonly file: string;
  release(): Promise<void>;
}

export type Liveness = (pid: number) => boolean;

export function lockFileFor(markerFile: string): string {
  return `${markerFile}.lock`;
}

/** True when a process with this pid exists on this machine (EPERM: exists, not ours). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Pure: may a lock with this content be taken over? */
export function isStale(info: LockInfo | null, ageMs: number, here: { host: string; alive: Liveness }): boolean {
  // Unreadable content: a run died while writing it. Give a live writer a moment to finish.
  if (!info) return ageMs > 10_000;
  if (info.host !== here.host) return false; // cannot see another machine's processes: never steal
  // A lock naming our own pid is not taken over either. It may be a dead run whose pid we
  // reuse (a container job is pid 1 every run), but it may also be a live run in another pid
  // namespace sharing this folder and host name: a stuck lock is loud and loses nothing, two
  // runs on one marker could. The held-lock message below says what to do.
  return !here.alive(info.pid);
}

export async function readLock(file: string): Promise<{ info: LockInfo | null; ageMs: number } | null> {
  try {
    const [content, st] = await Promise.all([fs.readFile(file, 'utf8'), fs.stat(file)]);
    return { info: parseLock(content), ageMs: Date.now() - st.mtimeMs };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw withPath(err, file);
  }
}

function parseLock(content: string): LockInfo | null {
  try {
    const v = JSON.parse(content) as Partial<LockInfo>;
    if (typeof v.pid === 'number' && typeof v.host === 'string' && typeof v.since === 'string' && typeof v.token === 'string') {
      return v as LockInfo;
    }
  } catch {
    /* fall through */
  }
  return null;
}

export function describeHolder(info: LockInfo | null, file: string): string {
  if (!info) return `an unreadable lock file ${file}`;
  return `pid ${info.pid} on ${info.host} since ${info.since} (lock file ${file})`;
}

export async function acquireLock(
  file: string,
  onTakeover: (message: string) => void,
  alive: Liveness = pidAlive,
  /** Named in the "held by another run" message. */
  program = 'ipi-pull',
): Promise<Lock> {
  const me: LockInfo = { pid: process.pid, host: os.hostname(), since: new Date().toISOString(), token: randomUUID() };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await fs.open(file, 'wx', 0o644);
      try {
        await fh.writeFile(JSON.stringify(me));
        await fh.sync();
      } catch (err) {
        // Ours and unreadable (a full disk): leave no empty lock for the next run to puzzle over.
        await fh.close().catch(() => {});
        await fs.rm(file, { force: true }).catch(() => {});
        throw withPath(err, file);
      } finally {
        await fh.close().catch(() => {});
      }
      return { file, release: () => releaseLock(file, me.token) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const held = await readLock(file);
    if (!held) continue; // released between our open and our read: try again
    if (!isStale(held.info, held.ageMs, { host: me.host, alive })) {
      throw new LockHeldError(held.info?.pid === me.pid && held.info.host === me.host
        ? `the lock ${file} names this process's own pid ${me.pid} on ${me.host} (since ${held.info.since}): a run that died, its pid reused (in a container every run may be pid 1), or a run in another container sharing this folder. If no other ${program} is running against it, delete the lock file.`
        : `another ${program} run holds the lock: ${describeHolder(held.info, file)}. If no such process exists, delete the lock file.`);
    }
    // Rename is atomic: of two runs taking over the same stale lock, only one moves it away.
    const aside = `${file}.stale-${process.pid}`;
    try {
      await fs.rename(file, aside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    const still = await readLock(aside);
    if (still && !isStale(still.info, still.ageMs, { host: me.host, alive })) {
      // What we moved aside was a fresh lock taken between our read and our rename: give it
      // back. By link, not rename: a rename would replace a lock a third run took meanwhile.
      await fs.link(aside, file).catch(() => {});
      await fs.rm(aside, { force: true }).catch(() => {});
      throw new LockHeldError(`another ${program} run holds the lock: ${describeHolder(still.info, file)}`);
    }
    await fs.rm(aside, { force: true });
    onTakeover(`took over a stale lock left by ${describeHolder(held.info, file)}: that run is gone`);
  }
  throw new LockHeldError(`could not take the lock ${file}: it keeps changing hands`);
}

async function releaseLock(file: string, token: string): Promise<void> {
  const held = await readLock(file).catch(() => null);
  // Only remove our own lock: after a takeover the file may be someone else's.
  if (held?.info?.token === token) await fs.rm(file, { force: true });
}
