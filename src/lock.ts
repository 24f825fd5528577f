// One run at a time per marker. The lock is a file created with O_EXCL ('wx'), which is
// atomic on every OS and filesystem we target, Windows and NFSv3+ included; no flock.
// The holder touches it every REFRESH: a lock left silent for STALE_AFTER_REFRESHES of them
// belongs to a run that is gone, even one we cannot see (another host, another container).
import { readlinkSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import { randomUUID } from 'node:crypto';
import { LockHeldError, withPath } from './errors.js';

export interface LockInfo {
  pid: number;
  host: string;
  since: string;
  token: string;
  /** How often the holder touches the lock. Absent in locks of versions without the heartbeat. */
  refreshSeconds?: number;
  /**
   * The holder's pid namespace (Linux: `pid:[INODE]`). Two containers sharing the folder and a
   * host name cannot see each other's pids; only within one namespace does a dead pid prove a
   * dead run. Absent on other systems and in locks of earlier versions.
   */
  pidNs?: string;
}

/** Where this process's pids live, or undefined where the system cannot say. */
export function ownPidNamespace(): string | undefined {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return undefined;
  }
}

/** The machine and pid namespace a lock is judged from. */
export interface LockViewpoint {
  host: string;
  alive: Liveness;
  pid?: number;
  pidNs?: string;
}

export interface Lock {
  readonly file: string;
  /**
   * Aborted (reason: a LockHeldError) once the lock is no longer ours: deleted, or taken over
   * after our heartbeat went silent (a stopped process, a suspended machine). Nothing more
   * may be recorded then; `lost.throwIfAborted()` before each record.
   */
  readonly lost: AbortSignal;
  /**
   * The pid of the run whose lock this one took over, when that run was on this host and is
   * gone: its temporaries are leftovers at once, however fresh (a SIGKILL a moment ago).
   */
  readonly tookOverFromPid: number | null;
  release(): Promise<void>;
}

export interface LockOptions {
  alive?: Liveness;
  /** Named in the "held by another run" message. */
  program?: string;
  refreshMs?: number;
}

/** The heartbeat's period. */
export const LOCK_REFRESH_MS = 30_000;
/** Missed refreshes after which a lock is stale wherever its holder ran: 10 minutes at the default. */
export const STALE_AFTER_REFRESHES = 20;

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
export function isStale(info: LockInfo | null, ageMs: number, here: LockViewpoint): boolean {
  // Unreadable content: a run died while writing it. Give a live writer a moment to finish.
  if (!info) return ageMs > 10_000;
  // A holder whose heartbeat stopped long ago is gone, whatever its pid now names: a pid may
  // be reused, another host's or container's processes cannot be seen at all.
  if (info.refreshSeconds !== undefined && ageMs > heartbeatSilenceMs(info.refreshSeconds)) return true;
  if (!canSeePid(info, here)) return false; // another machine or container: only the heartbeat tells
  // A lock naming our own pid is not taken over either: it may be this very process's (a
  // second acquire), or a dead run whose pid we reuse. The held-lock message says what to do.
  if (info.pid === here.pid) return false;
  return !here.alive(info.pid);
}

/** Pure: whether the lock's pid can be looked up from here: same host and, where both know it, same pid namespace. */
export function canSeePid(info: LockInfo, here: LockViewpoint): boolean {
  if (info.host !== here.host) return false;
  return info.pidNs === undefined || here.pidNs === undefined || info.pidNs === here.pidNs;
}

/** How long a lock that promises a heartbeat every `refreshSeconds` may stay untouched. */
export function heartbeatSilenceMs(refreshSeconds: number): number {
  return refreshSeconds * 1000 * STALE_AFTER_REFRESHES;
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
    if (typeof v.pid === 'number' && typeof v.host === 'string' && typeof v.since === 'string' && typeof v.token === 'string'
      && (v.refreshSeconds === undefined || (typeof v.refreshSeconds === 'number' && v.refreshSeconds > 0))) {
      return v as LockInfo;
    }
  } catch {
    /* fall through */
  }
  return null;
}

/** What `status` shows of a lock: who holds it and, for a lock with a heartbeat, how fresh it is. */
export interface LockStatus {
  held: boolean;
  holder: LockInfo | null;
  description: string | null;
  /** Seconds since the holder last touched it (null without a lock or a heartbeat). */
  touchedSecondsAgo: number | null;
  /** Silent past its limit: the next run takes it over. */
  stale: boolean;
}

export async function lockStatus(file: string): Promise<LockStatus> {
  const lock = await readLock(file);
  if (!lock) return { held: false, holder: null, description: null, touchedSecondsAgo: null, stale: false };
  const beats = lock.info?.refreshSeconds !== undefined;
  const touchedSecondsAgo = beats ? Math.max(0, Math.round(lock.ageMs / 1000)) : null;
  const stale = beats && lock.ageMs > heartbeatSilenceMs(lock.info!.refreshSeconds!);
  let description = describeHolder(lock.info, file);
  if (touchedSecondsAgo !== null) description += `, last touched ${touchedSecondsAgo} s ago${stale ? ': silent too long, the next run takes it over' : ''}`;
  return { held: true, holder: lock.info, description, touchedSecondsAgo, stale };
}

export function describeHolder(info: LockInfo | null, file: string): string {
  if (!info) return `an unreadable lock file ${file}`;
  return `pid ${info.pid} on ${info.host} since ${info.since} (lock file ${file})`;
}

export async function acquireLock(file: string, onTakeover: (message: string) => void, opts: LockOptions = {}): Promise<Lock> {
  const { alive = pidAlive, program = 'ipi-pull', refreshMs = LOCK_REFRESH_MS } = opts;
  const me: LockInfo = {
    pid: process.pid, host: os.hostname(), since: new Date().toISOString(), token: randomUUID(), refreshSeconds: refreshMs / 1000, pidNs: ownPidNamespace(),
  };
  const here: LockViewpoint = { host: me.host, alive, pid: me.pid, pidNs: me.pidNs };
  let tookOverFromPid: number | null = null;
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
      const beat = startHeartbeat(file, me.token, refreshMs, program);
      return {
        file,
        lost: beat.lost,
        tookOverFromPid,
        release: async () => {
          await beat.stop();
          await releaseLock(file, me.token);
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const held = await readLock(file);
    if (!held) continue; // released between our open and our read: try again
    if (!isStale(held.info, held.ageMs, here)) {
      throw new LockHeldError(`${held.info?.pid === me.pid && held.info.host === me.host
        ? `the lock ${file} names this process's own pid ${me.pid} on ${me.host} (since ${held.info.since}): a run that died, its pid reused (in a container every run may be pid 1), or a run in another container sharing this folder`
        : `another ${program} run holds the lock: ${describeHolder(held.info, file)}`}. ${whenFree(held.info, program)}`);
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
    if (still && !isStale(still.info, still.ageMs, here)) {
      // What we moved aside was a fresh lock taken between our read and our rename: give it
      // back. By link, not rename: a rename would replace a lock a third run took meanwhile.
      await fs.link(aside, file).catch(() => {});
      await fs.rm(aside, { force: true }).catch(() => {});
      throw new LockHeldError(`another ${program} run holds the lock: ${describeHolder(still.info, file)}`);
    }
    await fs.rm(aside, { force: true });
    if (held.info && canSeePid(held.info, here) && held.info.pid !== me.pid && !alive(held.info.pid)) tookOverFromPid = held.info.pid;
    const silent = held.info?.refreshSeconds !== undefined && held.ageMs > heartbeatSilenceMs(held.info.refreshSeconds);
    onTakeover(`took over a stale lock left by ${describeHolder(held.info, file)}: ${silent
      ? `untouched for ${Math.round(held.ageMs / 60_000)} min, that run is gone`
      : 'that run is gone'}`);
  }
  throw new LockHeldError(`could not take the lock ${file}: it keeps changing hands`);
}

/** What the held-lock message tells the operator to do. */
function whenFree(info: LockInfo | null, program: string): string {
  if (info?.refreshSeconds !== undefined) {
    const minutes = Math.ceil(heartbeatSilenceMs(info.refreshSeconds) / 60_000);
    return `If that run is gone, a later run takes the lock over once it has been untouched for ${minutes} min; to go on now, delete the lock file if no other ${program} is running against it.`;
  }
  return `If no other ${program} is running against it, delete the lock file.`;
}

/**
 * Touch the lock every `refreshMs` while it is ours; once it is not (deleted, replaced), abort
 * `lost`. A touch that fails (a network share's hiccup) is simply tried again: only silence
 * over many periods lets another run take over.
 */
function startHeartbeat(file: string, token: string, refreshMs: number, program: string): { lost: AbortSignal; stop: () => Promise<void> } {
  const lost = new AbortController();
  let stopped = false;
  // One touch at a time: on a hung share they must not pile up behind each other.
  let beating: Promise<void> | null = null;
  const beat = async (): Promise<void> => {
    const held = await readLock(file).catch(() => undefined);
    if (stopped || held === undefined) return;
    if (held?.info?.token !== token) {
      clearInterval(timer);
      lost.abort(new LockHeldError(held
        ? `lost the lock ${file} to ${describeHolder(held.info, file)} (this run was silent too long: stopped or suspended?); stopping before anything more is recorded`
        : `lost the lock ${file}: it was deleted while this ${program} run held it; stopping before anything more is recorded`));
      return;
    }
    const now = new Date();
    await fs.utimes(file, now, now).catch(() => {});
  };
  const timer = setInterval(() => {
    beating ??= beat().finally(() => {
      beating = null;
    });
  }, refreshMs);
  timer.unref();
  return {
    lost: lost.signal,
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await beating;
    },
  };
}

async function releaseLock(file: string, token: string): Promise<void> {
  const held = await readLock(file).catch(() => null);
  // Only remove our own lock: after a takeover the file may be someone else's.
  if (held?.info?.token === token) await fs.rm(file, { force: true });
}
