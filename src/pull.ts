// One run, start to end: lock, marker, connect, select, download, publish, record, marker.
// Orchestration only; each step's rules live in its own module.
import path from 'node:path';
import picomatch from 'picomatch';
import type { Config } from './config/load.js';
import { expectedDigest } from './checksum.js';
import { IntegrityError, InterruptedError, PermanentError, RemoteMissingError, classify } from './errors.js';
import { HistoryAppender, historyFileFor, recentDeliveries } from './history.js';
import { acquireLock, lockFileFor, pidAlive, type Lock } from './lock.js';
import type { Logger } from './log.js';
import { prepareMarker, readMarker, removeStaleMarkerTemporaries } from './marker.js';
import { printableName } from './names.js';
import type { Progress } from './progress.js';
import { rate } from './progress.js';
import { PUBLISH_BUFFERS, publish, type Published } from './publish.js';
import { withRetries, type Attempt } from './retry.js';
import { MarkerPlacementError, selectNext, type RemoteEntry, type SelectOptions } from './select.js';
import { SftpSession } from './sftp/session.js';
import { sessionOptions } from './sftp/session-options.js';
import { ChunkPool } from './transfer/buffers.js';
import { RemoteChangedError, downloadFile, type Downloaded } from './transfer/download.js';
import { WRITE_BEHIND } from './transfer/engine.js';
import { keepFoldersOpen, sweepTemporaries } from './util/atomic.js';
import { formatBytes } from './util/space.js';
import { makeDir } from './util/folders.js';

export interface PullOptions {
  once: boolean;
  /** Only the newest file after the marker (skipping any between: the operator's explicit choice). */
  latest: boolean;
  dryRun: boolean;
  acceptNewHostKey: boolean;
  signal?: AbortSignal;
}

export interface DeliveredFile {
  name: string;
  size: number;
  sha256: string;
  durationMs: number;
  bytesTransferred: number;
  resumedFrom: number;
  publishedTo: string;
  /** Time spent publishing to SERVER_DIR (copy or clone, fsync, rename), apart from durationMs. */
  publishMs: number;
  /** clone, copy, copy (O_DIRECT), hardlink or rename. */
  publishMethod: string;
}

export interface RunSummary {
  delivered: DeliveredFile[];
  /** --dry-run: what would have been pulled, in order. */
  wouldPull: string[];
  /** Files after the marker still on the server when the run ended. */
  pending: string[];
  waiting: { name: string; reason: string } | null;
}

export interface RunContext {
  log: Logger;
  progress: Progress;
  /** The lock's heartbeat period (default 30 s); tests shorten it to see a lost lock stop a run. */
  lockRefreshMs?: number;
}

/** Listings taken again in one run because a listed file had gone: beyond this the server is not settling. */
const MAX_RELISTS = 5;

export function remotePathOf(dir: string, name: string): string {
  return dir.endsWith('/') ? `${dir}${name}` : `${dir}/${name}`;
}

export async function runPull(config: Config, opts: PullOptions, ctx: RunContext): Promise<RunSummary> {
  const summary: RunSummary = { delivered: [], wouldPull: [], pending: [], waiting: null };
  let lock: Lock | null = null;
  if (!opts.dryRun) {
    // The lock first (its folder is the marker's): a run that finds it held changes nothing.
    await prepareFolders([['LAST_FILE_RECORD\'s folder', path.dirname(config.markerFile)]]);
    lock = await acquireLock(lockFileFor(config.markerFile), (m) => ctx.log.warn(m), { refreshMs: ctx.lockRefreshMs });
  }
  try {
    if (lock) {
      await prepareFolders([['LOCAL_DIR', config.localDir], ['SERVER_DIR', config.serverDir]]);
      await sweepLeftovers(config, ctx.log);
    }
    const warned = new Set<string>();
    // A lost lock stops the run as a signal does, and is what the run then reports.
    const stop = lock ? (opts.signal ? AbortSignal.any([opts.signal, lock.lost]) : lock.lost) : opts.signal;
    const lost = lock?.lost;
    await withRetries(async (attempt) => {
      const session = await SftpSession.open(sessionOptions(config, opts.acceptNewHostKey, ctx.log));
      // A signal must not wait for a stalled read to time out: drop the link, keep the partial.
      const onAbort = () => session.destroy('interrupted');
      stop?.addEventListener('abort', onAbort, { once: true });
      // A signal that came while connecting: the listener above will never fire for it.
      if (stop?.aborted) onAbort();
      // One set of chunk buffers per connection, reused by every file: a failed attempt's
      // buffers may still be written by reads in flight, so they are never handed on.
      // (+ PUBLISH_BUFFERS: a large file's O_DIRECT publish borrows two while the next file downloads.)
      const pool = new ChunkPool(config.chunkSize, config.chunksInFlight + WRITE_BEHIND + PUBLISH_BUFFERS);
      const history = new HistoryAppender(historyFileFor(config.markerFile));
      try {
        await keepFoldersOpen(() => drain(session, pool, history, config, { ...opts, signal: stop }, ctx, summary, attempt, warned, lost));
      } finally {
        stop?.removeEventListener('abort', onAbort);
        await history.close();
        await session.end();
      }
    }, { retries: config.retries, delaysMs: config.retryDelays }, ctx.log, stop).catch((err: unknown) => {
      lost?.throwIfAborted();
      throw err;
    });
  } finally {
    await lock?.release();
  }
  return summary;
}

/** Temporaries of runs that died: the marker's own at once (we hold its lock), the rest once orphaned. */
async function sweepLeftovers(config: Config, log: Logger): Promise<void> {
  const swept = await removeStaleMarkerTemporaries(config.markerFile);
  for (const dir of new Set([config.localDir, config.serverDir, path.dirname(config.markerFile)])) swept.push(...await sweepTemporaries(dir, pidAlive));
  for (const file of swept) log.info(`removed ${file}, a temporary file left by a run that died`);
}

async function prepareFolders(folders: ReadonlyArray<readonly [string, string]>): Promise<void> {
  for (const [key, dir] of folders) {
    try {
      await makeDir(dir);
    } catch (err) {
      throw new PermanentError(`${key} ${dir}: cannot create it (${(err as NodeJS.ErrnoException).code ?? err})`);
    }
  }
}

async function drain(
  session: SftpSession, pool: ChunkPool, history: HistoryAppender, config: Config, opts: PullOptions, ctx: RunContext,
  summary: RunSummary, attempt: Attempt, warned: Set<string>, lost: AbortSignal | undefined,
): Promise<void> {
  let relists = 0;
  // A listing gives the queue; after draining it we list once more for files that arrived meanwhile.
  for (;;) {
    const marker = await readMarker(config.markerFile);
    const listedAt = Date.now();
    const entries = await session.list(config.remoteDir);
    let selection;
    try {
      selection = selectNext(entries, marker, await selectionOptions(config, marker, opts.latest));
    } catch (err) {
      if (err instanceof MarkerPlacementError) throw new PermanentError(`${config.markerFile}: ${err.message}`);
      throw err;
    }
    for (const s of selection.skipped) {
      if (warned.has(s.name)) continue;
      warned.add(s.name);
      ctx.log.warn(`skipping ${printableName(s.name)}: ${s.reason}`);
    }
    summary.waiting = selection.waiting;
    summary.pending = selection.queue.map((e) => e.name);
    if (selection.queue.length === 0) {
      if (selection.waiting) ctx.log.info(`${selection.waiting.name} is not ready (${selection.waiting.reason}); it waits for a later run`);
      if (summary.delivered.length === 0) ctx.log.info(`nothing new after ${marker === null ? 'the start (no marker yet)' : marker}`);
      return;
    }
    if (opts.dryRun) {
      summary.wouldPull = (opts.once ? selection.queue.slice(0, 1) : selection.queue).map((e) => e.name);
      for (const e of summary.wouldPull) ctx.log.info(`would pull ${e}`);
      return;
    }
    // Each file is downloaded while the one before it is published and recorded: the
    // network and the local disk work at the same time. The order of what consumers and
    // the marker see is unchanged: a file is published only after the marker names the
    // file before it, and the marker moves only after its file is published.
    // Looked up once per queued file: a thousand files must not scan the listing a thousand times.
    const listed = new Set(entries.filter((e) => e.isFile).map((e) => e.name));
    let finishing: Promise<void> | null = null;
    // A failed publish stops the download after it at once, not when it ends (hours, for a large file).
    const publishFailed = new AbortController();
    const signal = opts.signal ? AbortSignal.any([opts.signal, publishFailed.signal]) : publishFailed.signal;
    const settle = async (): Promise<void> => {
      const f = finishing;
      finishing = null;
      await f;
    };
    try {
      // After a small file, the second look at the next one went out while it downloaded
      // (after a large one it is taken just before the next download, as close to it as it can be).
      let look: Promise<boolean> | null = null;
      for (const [i, entry] of selection.queue.entries()) {
        const ready = await (look ?? secondLook(session, config, entry, listedAt, ctx.log));
        const next = opts.once || entry.size > config.chunkSize ? undefined : selection.queue[i + 1];
        look = next ? secondLook(session, config, next, listedAt, ctx.log) : null;
        look?.catch(() => {});
        if (!ready) {
          await settle();
          summary.waiting = { name: entry.name, reason: 'still being written' };
          return;
        }
        const companion = config.checksumSuffixes.find((c) => listed.has(entry.name + c.suffix));
        const got = await fetchOne(session, pool, config, entry, companion ?? null, ctx, attempt, signal);
        await settle();
        finishing = finishOne(session, pool, history, config, entry, got, ctx, summary, attempt, lost);
        finishing.catch(() => publishFailed.abort('a failed publish'));
        if (opts.once) break;
      }
      await settle();
    } catch (err) {
      // A file half-way through publishing is finished (or fails) before the run stops. Its
      // failure is the one reported: it is about the earlier file, the one the marker waits
      // for, and is often the lasting one (SERVER_DIR full) while the download's is not.
      const publishFailure: unknown = await finishing?.then(() => null, (e: unknown) => e);
      if (publishFailure) {
        // The download's own failure is still worth a line, unless it only stopped for this one.
        if (!(err instanceof InterruptedError)) ctx.log.warn(classify(err, 'downloading').message);
        throw publishFailure;
      }
      // A listed file removed or renamed on the server before we got to it (housekeeping,
      // another consumer): the listing is stale, not the run broken.
      if (err instanceof RemoteMissingError && relists < MAX_RELISTS) {
        relists++;
        ctx.log.info(`${err.message}; it went after the listing: listing again`);
        continue;
      }
      throw err;
    }
    if (opts.once) return;
  }
}

/** A file whose size or mtime moved since the listing is still being written: leave it, and all after it. */
async function secondLook(session: SftpSession, config: Config, entry: RemoteEntry, listedAt: number, log: Logger): Promise<boolean> {
  const wait = listedAt + config.settleTime - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const now = await session.stat(remotePathOf(config.remoteDir, entry.name));
  if (now.isFile && now.size === entry.size && now.mtimeMs === entry.mtimeMs) return true;
  log.info(`${entry.name} is still changing (size ${entry.size} -> ${now.size}); it waits for a later run`);
  return false;
}

type Companion = Config['checksumSuffixes'][number];

/** Download and verify one file into LOCAL_DIR (against its companion checksum file when there is one). */
async function fetchOne(
  session: SftpSession, pool: ChunkPool, config: Config, entry: RemoteEntry, companion: Companion | null, ctx: RunContext,
  attempt: Attempt, signal?: AbortSignal,
): Promise<Downloaded> {
  const remotePath = remotePathOf(config.remoteDir, entry.name);
  ctx.log.info(`pulling ${entry.name} (${formatBytes(entry.size)})`);
  let expected: string | null = null;
  if (companion) {
    const text = await session.readSmall(remotePathOf(config.remoteDir, entry.name + companion.suffix));
    expected = expectedDigest(text, entry.name, companion.algo);
    if (expected === null) ctx.log.warn(`${entry.name}${companion.suffix} holds no ${companion.algo} for ${entry.name}; checking size only`);
  }
  const check = companion && expected ? { ...companion, expected } : null;
  const download = () => downloadOne(session, pool, config, entry, remotePath, ctx, attempt, signal, check);
  let got: Downloaded;
  try {
    got = await download();
  } catch (err) {
    if (!(err instanceof IntegrityError)) throw err;
    // Once more from zero: a corrupt byte on the way is worth one retry, a wrong file is not.
    ctx.log.warn(`${err.message}; discarded, fetching it once more from the start`);
    try {
      got = await download();
    } catch (again) {
      if (again instanceof IntegrityError) throw new IntegrityError(`${again.message} again: not published, marker not moved`);
      throw again;
    }
  }
  if (check) ctx.log.info(`${entry.name}: ${check.algo} matches ${entry.name}${check.suffix}`);
  ctx.log.debug(`${entry.name}: verified ${formatBytes(got.size)}, sha256 ${got.sha256}`);
  return got;
}

function downloadOne(
  session: SftpSession, pool: ChunkPool, config: Config, entry: RemoteEntry, remotePath: string, ctx: RunContext,
  attempt: Attempt, signal: AbortSignal | undefined, check: (Companion & { expected: string }) | null,
): Promise<Downloaded> {
  let startedAt = -1;
  const progressedBefore = attempt.progressed;
  return downloadFile({
    session,
    remotePath,
    name: entry.name,
    remote: { size: entry.size, mtimeMs: entry.mtimeMs, isFile: true },
    localDir: config.localDir,
    transfer: {
      chunkSize: config.chunkSize,
      chunksInFlight: config.chunksInFlight,
      readSize: config.readSize,
      dataTimeoutMs: config.dataTimeout,
      directIo: config.directIo,
    },
    pool,
    log: ctx.log,
    onProgress: (done, total) => {
      if (startedAt < 0) {
        startedAt = done;
        ctx.progress.start(entry.name, total, done);
      } else if (done > startedAt) {
        attempt.progressed = true;
      }
      ctx.progress.update(done);
    },
    signal,
    extraHashes: check ? [check.algo] : [],
    accept: async (digests) => {
      if (check && digests[check.algo] !== check.expected) {
        throw new IntegrityError(`${entry.name}: ${check.algo} ${digests[check.algo]} does not match ${entry.name}${check.suffix} (${check.expected})`);
      }
    },
  }).catch((err: unknown) => {
    // Those bytes are fetched again from zero: not progress. A file that keeps changing must
    // use up RETRIES, not start a fresh budget after each full download.
    if (err instanceof RemoteChangedError) attempt.progressed = progressedBefore;
    throw err;
  }).finally(() => ctx.progress.end());
}

/** Publish a verified file, record it in the history, then move the marker; POST_ACTION last. */
async function finishOne(
  session: SftpSession, pool: ChunkPool, history: HistoryAppender, config: Config, entry: RemoteEntry, got: Downloaded,
  ctx: RunContext, summary: RunSummary, attempt: Attempt, lost: AbortSignal | undefined,
): Promise<void> {
  // The next marker is written and fsynced under a temporary name meanwhile; it takes the
  // marker's name only after the file is published and its history line is down.
  const nextMarker = prepareMarker(config.markerFile, entry.name);
  nextMarker.catch(() => {});
  const publishStarted = Date.now();
  let published: Published;
  let publishMs: number;
  let delivered: DeliveredFile;
  try {
    published = await publish(got.localPath, config.serverDir, entry.name, config.publishMode, {
      directIo: config.directIo, pool, known: { size: got.size, mtime: new Date(entry.mtimeMs) },
    });
    publishMs = Date.now() - publishStarted;
    ctx.log.debug(`${entry.name}: published to ${published.path} (${published.method}, ${publishMs} ms)`);
    delivered = {
      name: entry.name, size: got.size, sha256: got.sha256, durationMs: got.durationMs,
      bytesTransferred: got.bytesTransferred, resumedFrom: got.resumedFrom, publishedTo: published.path,
      publishMs, publishMethod: published.method,
    };
    await history.append({
      ...delivered,
      remoteMtime: new Date(entry.mtimeMs).toISOString(),
      deliveredAt: new Date().toISOString(),
    });
    // Last of all: the marker moves only once the file is whole in SERVER_DIR, and only by
    // the lock's holder (a run that lost it stops here: another may be moving the marker).
    const marker = await nextMarker;
    lost?.throwIfAborted();
    await marker.commit();
  } catch (err) {
    await nextMarker.then((m) => m.discard(), () => {});
    throw err;
  }
  attempt.progressed = true;
  summary.delivered.push(delivered);
  summary.pending = summary.pending.filter((n) => n !== entry.name);
  const resumed = got.resumedFrom > 0 ? `, resumed from byte ${got.resumedFrom}` : '';
  // One line per delivered file says it all (a thousand small files make a thousand lines).
  ctx.log.info(`${entry.name}: delivered ${formatBytes(got.size)} in ${(got.durationMs / 1000).toFixed(1)} s (${rate(got.bytesTransferred, got.durationMs)})${resumed}, sha256 ${got.sha256}, published to ${published.path} (${published.method}, ${publishMs} ms); marker -> ${entry.name}`);
  await afterDelivery(session, config, remotePathOf(config.remoteDir, entry.name), entry.name, ctx.log);
}

/** POST_ACTION, only once the delivery is recorded; a failure here never undoes it. */
async function afterDelivery(session: SftpSession, config: Config, remotePath: string, name: string, log: Logger): Promise<void> {
  const action = config.postAction;
  if (action.kind === 'none') return;
  try {
    if (action.kind === 'delete') {
      await session.remove(remotePath);
      log.info(`${name}: deleted from the server (POST_ACTION=delete)`);
    } else {
      const to = remotePathOf(action.dir, name);
      await session.rename(remotePath, to);
      log.info(`${name}: moved on the server to ${to} (POST_ACTION)`);
    }
  } catch (err) {
    log.warn(`${name}: delivered, but POST_ACTION ${action.kind} failed on the server: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** How the settings choose among the server's files: one place, so `status` shows what a run would pull. */
export async function selectionOptions(config: Config, marker: string | null, latest: boolean): Promise<SelectOptions> {
  return {
    matches: picomatch(config.pattern, { dot: true }),
    orderBy: config.orderBy,
    minAgeMs: config.minAge,
    nowMs: Date.now(),
    markerMtimeMs: config.orderBy === 'mtime' && marker !== null ? await markerMtime(historyFileFor(config.markerFile), marker) : undefined,
    latestOnly: latest || (marker === null && config.startFrom === 'latest'),
    isCompanion: (name) => config.checksumSuffixes.some((c) => name.endsWith(c.suffix)),
  };
}

async function markerMtime(historyFile: string, marker: string): Promise<number | undefined> {
  const hit = (await recentDeliveries(historyFile)).find((d) => d.name === marker);
  return hit ? Date.parse(hit.remoteMtime) : undefined;
}
