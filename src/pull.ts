// One run, start to end: lock, marker, connect, select, download, publish, record, marker.
// Orchestration only; each step's rules live in its own module.
import path from 'node:path';
import picomatch from 'picomatch';
import type { Config } from './config/load.js';
import { expectedDigest } from './checksum.js';
import { FetchAhead, mayStartAhead } from './fetch-ahead.js';
import { IntegrityError, InterruptedError, PermanentError, RemoteChangedError, RemoteMissingError, classify, wrongKindOfPath } from './errors.js';
import { HistoryAppender, historyFileFor, recentDeliveries } from './history.js';
import { acquireLock, lockFileFor, pidAlive, type Lock } from './lock.js';
import type { Logger } from './log.js';
import { prepareMarker, readMarker, removeStaleMarkerTemporaries } from './marker.js';
import { printableName } from './names.js';
import type { Progress } from './progress.js';
import { noProgress, rate } from './progress.js';
import { publish, type Published } from './publish.js';
import { withRetries, type Attempt } from './retry.js';
import { MarkerPlacementError, selectNext, type RemoteEntry, type SelectOptions } from './select.js';
import { SftpSession } from './sftp/session.js';
import { sessionOptions } from './sftp/session-options.js';
import { ChunkPool } from './transfer/buffers.js';
import { pullBuffers } from './transfer/budget.js';
import { downloadFile, type Downloaded } from './transfer/download.js';
import { keepFoldersOpen, sweepTemporaries, type PreparedFile } from './util/atomic.js';
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

export function newRunSummary(): RunSummary {
  return { delivered: [], wouldPull: [], pending: [], waiting: null };
}

export interface RunContext {
  log: Logger;
  progress: Progress;
  /** The lock's heartbeat period (default 30 s); tests shorten it to see a lost lock stop a run. */
  lockRefreshMs?: number;
  /** The summary to fill (default a new one): the caller's, so a run that fails still says what it delivered and what waits. */
  summary?: RunSummary;
}

/** Listings taken again in one run because a listed file had gone: beyond this the server is not settling. */
const MAX_RELISTS = 5;

export function remotePathOf(dir: string, name: string): string {
  return dir.endsWith('/') ? `${dir}${name}` : `${dir}/${name}`;
}

export async function runPull(config: Config, opts: PullOptions, ctx: RunContext): Promise<RunSummary> {
  const summary = ctx.summary ?? newRunSummary();
  let lock: Lock | null = null;
  if (!opts.dryRun) {
    // The lock first (its folder is the marker's): a run that finds it held changes nothing.
    await prepareFolders([['LAST_FILE_RECORD\'s folder', path.dirname(config.markerFile)]]);
    lock = await acquireLock(lockFileFor(config.markerFile), (m) => ctx.log.warn(m), { refreshMs: ctx.lockRefreshMs });
  }
  try {
    if (lock) {
      await prepareFolders([['LOCAL_DIR', config.localDir], ['SERVER_DIR', config.serverDir]]);
      await sweepLeftovers(config, ctx.log, lock.tookOverFromPid);
    }
    const warned = new Set<string>();
    // A lost lock stops the run as a signal does, and is what the run then reports.
    const stop = lock ? (opts.signal ? AbortSignal.any([opts.signal, lock.lost]) : lock.lost) : opts.signal;
    const lost = lock?.lost;
    await withRetries(async (attempt) => {
      const session = await SftpSession.open(sessionOptions(config, opts.acceptNewHostKey, ctx.log), stop);
      // A signal must not wait for a stalled read to time out: drop the link, keep the partial.
      const onAbort = () => session.destroy('interrupted');
      stop?.addEventListener('abort', onAbort, { once: true });
      // A signal that came while connecting: the listener above will never fire for it.
      if (stop?.aborted) onAbort();
      // One set of chunk buffers per connection, reused by every file: a failed attempt's
      // buffers may still be written by reads in flight, so they are never handed on.
      // Sized for a large file or FILES_IN_FLIGHT small ones, plus what a publish borrows (budget.ts).
      const pool = new ChunkPool(config.chunkSize, pullBuffers(config));
      const history = new HistoryAppender(historyFileFor(config.markerFile));
      try {
        await keepFoldersOpen(() => drain({ session, pool, history, config, ctx, summary, attempt, lost }, { ...opts, signal: stop }, warned));
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

/**
 * Temporaries of runs that died: the marker's own at once (we hold its lock), and those of
 * the run whose lock we took over (a publish cut short by a SIGKILL); the rest once orphaned.
 */
async function sweepLeftovers(config: Config, log: Logger, leftBy: number | null): Promise<void> {
  const swept = await removeStaleMarkerTemporaries(config.markerFile);
  for (const dir of new Set([config.localDir, config.serverDir, path.dirname(config.markerFile)])) swept.push(...await sweepTemporaries(dir, pidAlive, leftBy));
  for (const file of swept) log.info(`removed ${file}, a temporary file left by a run that died`);
}

async function prepareFolders(folders: ReadonlyArray<readonly [string, string]>): Promise<void> {
  for (const [key, dir] of folders) {
    try {
      await makeDir(dir);
    } catch (err) {
      throw wrongKindOfPath(err, key, dir, 'folder') ?? new PermanentError(`${key} ${dir}: cannot create it (${(err as NodeJS.ErrnoException).code ?? err})`);
    }
  }
}

/** What the steps of one connection's attempt share. */
interface Attempting {
  session: SftpSession;
  /** Chunk buffers for this connection's downloads and O_DIRECT publishes. */
  pool: ChunkPool;
  history: HistoryAppender;
  config: Config;
  ctx: RunContext;
  summary: RunSummary;
  attempt: Attempt;
  /** Aborted when another run took the lock over: nothing more may be recorded. */
  lost: AbortSignal | undefined;
}

async function drain(a: Attempting, opts: PullOptions, warned: Set<string>): Promise<void> {
  const { config, ctx, summary } = a;
  let relists = 0;
  // A listing gives the queue; after draining it we list once more for files that arrived meanwhile.
  for (;;) {
    const marker = await readMarker(config.markerFile);
    const listedAt = Date.now();
    const entries = await a.session.list(config.remoteDir);
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
    for (const s of selection.passedOver) {
      if (warned.has(s.name)) continue;
      warned.add(s.name);
      ctx.log.warn(`${printableName(s.name)} is not delivered: ${s.reason}; fetch it by hand, or set the marker before it (ipi-pull mark NAME) to have the files after NAME delivered again`);
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
    // Looked up once per queued file: a thousand files must not scan the listing a thousand times.
    const listed = new Set(entries.filter((e) => e.isFile).map((e) => e.name));
    let whole: boolean;
    try {
      whole = await deliver(a, selection.queue, { listed, listedAt, once: opts.once, signal: opts.signal });
    } catch (err) {
      // A listed file removed or renamed on the server before we got to it (housekeeping,
      // another consumer): the listing is stale, not the run broken.
      if (err instanceof RemoteMissingError && relists < MAX_RELISTS) {
        relists++;
        ctx.log.info(`${err.message}; it went after the listing: listing again`);
        continue;
      }
      throw err;
    }
    if (opts.once || !whole) return;
  }
}

/**
 * Deliver a listing's queue in three stages, each in file order: download (small files a few
 * at a time, fetch-ahead.ts), publish, record (history line, then marker). A file is
 * published while the one before it is recorded and the ones after it download: the
 * network, the local disk and the fsyncs overlap. What consumers see is unchanged: files
 * appear in SERVER_DIR in order, and the marker moves only after its file is published and
 * recorded. A file is published only once the file two before it is recorded, so a crash
 * leaves at most two files published and not yet named by the marker (the next run delivers
 * them again, same bytes, atomic replace), never one the marker has passed.
 * False when it stopped at a file still being written.
 */
async function deliver(
  a: Attempting, queue: readonly RemoteEntry[],
  opts: { listed: ReadonlySet<string>; listedAt: number; once: boolean; signal?: AbortSignal },
): Promise<boolean> {
  const { config, ctx } = a;
  /** The last file's publish; the record chain up to the last file (which includes its publish), and up to the one before. */
  let publishing: Promise<Staged> | null = null;
  let recording: Promise<void> | null = null;
  let recordedTwoBack: Promise<void> | null = null;
  // A failed publish or record stops the downloads after it at once, not when they end (hours, for a large file).
  const finishFailed = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, finishFailed.signal]) : finishFailed.signal;
  const settle = async (): Promise<void> => {
    const r = recording;
    publishing = recording = recordedTwoBack = null;
    await r;
  };
  // A file is downloaded only once it and every file before it passed the second look: a
  // file still being written stops the queue there. The looks themselves go out at once,
  // and after a small file the next file's look goes out with it (after a large one it is
  // taken just before the next download, as close to it as it can be).
  const looks = new Map<number, Promise<string | null>>();
  const lookAt = (i: number): Promise<string | null> => {
    let look = looks.get(i);
    if (!look) {
      look = stillChanging(a.session, config, queue[i]!, opts.listedAt);
      look.catch(() => {});
      looks.set(i, look);
    }
    return look;
  };
  let allReady: Promise<boolean> = Promise.resolve(true);
  const sizes = queue.map((e) => e.size);
  const limit = opts.once ? 1 : config.filesInFlight;
  const ahead = new FetchAhead<Downloaded | { changing: string | null }>(
    queue.length,
    (head, next) => mayStartAhead(sizes, head, next, config.chunkSize, limit),
    (i, asHead) => {
      const entry = queue[i]!;
      const look = lookAt(i);
      looks.delete(i);
      if (!opts.once && entry.size <= config.chunkSize && i + 1 < queue.length) lookAt(i + 1);
      const ready = Promise.all([allReady, look]).then(([before, changing]) => before && changing === null);
      allReady = ready;
      const companion = config.checksumSuffixes.find((c) => opts.listed.has(entry.name + c.suffix)) ?? null;
      // One progress line or bar at a time: files fetched beside the head are small.
      const progress = asHead ? ctx.progress : noProgress;
      return ready.then(async (ok) => (ok ? fetchOne(a, entry, companion, progress, signal) : { changing: await look }));
    },
  );
  try {
    for (const [i, entry] of queue.entries()) {
      const got = await ahead.take(i);
      if ('changing' in got) {
        // The first file not ready: every file before it was taken.
        ctx.log.info(`${entry.name} is still changing (${got.changing}); it waits for a later run`);
        await settle();
        a.summary.waiting = { name: entry.name, reason: 'still being written' };
        return false;
      }
      // Files appear in SERVER_DIR in order: this one after the one before it, and while at
      // most one file before it is published and not yet recorded.
      await publishing;
      await recordedTwoBack;
      const staged = publishOne(a, entry, got);
      // Recorded after the file before it, and only if that one was: the history and the marker keep the order.
      const recorded: Promise<void> = (recording ?? Promise.resolve()).then(
        () => staged,
        async (err: unknown) => {
          await staged.then((s) => s.marker.discard(), () => {});
          throw err;
        },
      ).then((s) => recordOne(a, entry, got, s));
      staged.catch(() => {});
      recorded.catch(() => finishFailed.abort('an earlier file failed'));
      publishing = staged;
      recordedTwoBack = recording;
      recording = recorded;
      if (opts.once) break;
    }
    await settle();
    return true;
  } catch (err) {
    // Files half-way through publishing or recording are finished (or fail) before the run
    // stops. The first of their failures is the one reported: it is about an earlier file,
    // the one the marker waits for, and is often the lasting one (SERVER_DIR full) while the
    // download's is not.
    const finishFailure: unknown = await recording?.then(() => null, (e: unknown) => e);
    if (finishFailure) {
      // The download's own failure is still worth a line, unless it only stopped for this one.
      if (err !== finishFailure && !(err instanceof InterruptedError)) ctx.log.warn(classify(err, 'downloading').message);
      throw finishFailure;
    }
    throw err;
  } finally {
    // Nothing started may still be running once this returns (a retry, a relist, the lock's release).
    await ahead.settled();
    await Promise.allSettled(looks.values());
  }
}

/**
 * The second look: a file whose size or mtime moved since the listing is still being
 * written (leave it, and all after it). What moved, or null when nothing did.
 */
async function stillChanging(session: SftpSession, config: Config, entry: RemoteEntry, listedAt: number): Promise<string | null> {
  const wait = listedAt + config.settleTime - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const now = await session.stat(remotePathOf(config.remoteDir, entry.name));
  if (now.isFile && now.size === entry.size && now.mtimeMs === entry.mtimeMs) return null;
  return `size ${entry.size} -> ${now.size}`;
}

type Companion = Config['checksumSuffixes'][number];

/** Download and verify one file into LOCAL_DIR (against its companion checksum file when there is one). */
async function fetchOne(a: Attempting, entry: RemoteEntry, companion: Companion | null, progress: Progress, signal: AbortSignal): Promise<Downloaded> {
  const { config, ctx } = a;
  const remotePath = remotePathOf(config.remoteDir, entry.name);
  ctx.log.info(`pulling ${entry.name} (${formatBytes(entry.size)})`);
  let expected: string | null = null;
  if (companion) {
    const text = await a.session.readSmall(remotePathOf(config.remoteDir, entry.name + companion.suffix));
    expected = expectedDigest(text, entry.name, companion.algo);
    if (expected === null) ctx.log.warn(`${entry.name}${companion.suffix} holds no ${companion.algo} for ${entry.name}; checking size only`);
  }
  const check = companion && expected ? { ...companion, expected } : null;
  const download = () => downloadOne(a, entry, remotePath, progress, signal, check);
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
  a: Attempting, entry: RemoteEntry, remotePath: string, progress: Progress, signal: AbortSignal,
  check: (Companion & { expected: string }) | null,
): Promise<Downloaded> {
  const { config, attempt } = a;
  let startedAt = -1;
  // Progress is what the next attempt keeps: a resumable file's partial. A file of one chunk
  // is fetched again from zero, so its bytes count only once it is delivered (recordOne).
  // Counting them made a file that failed every attempt, behind small files fetched ahead of
  // it, start a fresh retry budget each time: a run that never ended.
  const resumable = entry.size > config.chunkSize;
  let moved = false;
  return downloadFile({
    session: a.session,
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
    pool: a.pool,
    log: a.ctx.log,
    onProgress: (done, total) => {
      if (startedAt < 0) {
        startedAt = done;
        progress.start(entry.name, total, done);
      } else if (done > startedAt && resumable) {
        moved = true;
      }
      progress.update(done);
    },
    signal,
    extraHashes: check ? [check.algo] : [],
    accept: async (digests) => {
      if (check && digests[check.algo] !== check.expected) {
        throw new IntegrityError(`${entry.name}: ${check.algo} ${digests[check.algo]} does not match ${entry.name}${check.suffix} (${check.expected})`);
      }
    },
  }).then((got) => {
    attempt.progressed ||= moved;
    return got;
  }, (err: unknown) => {
    // A file that changed is fetched again from zero: not progress. A file that keeps
    // changing must use up RETRIES, not start a fresh budget after each full download.
    if (!(err instanceof RemoteChangedError)) attempt.progressed ||= moved;
    throw err;
  }).finally(() => progress.end());
}

/** A file published to SERVER_DIR, with its next marker made durable under a temporary name. */
interface Staged {
  published: Published;
  publishMs: number;
  marker: PreparedFile;
}

/** Publish a verified file; the next marker is written and fsynced meanwhile. */
async function publishOne(a: Attempting, entry: RemoteEntry, got: Downloaded): Promise<Staged> {
  const { config } = a;
  const nextMarker = prepareMarker(config.markerFile, entry.name);
  nextMarker.catch(() => {});
  const started = Date.now();
  try {
    const published = await publish(got.localPath, config.serverDir, entry.name, config.publishMode, {
      directIo: config.directIo, pool: a.pool, known: { size: got.size, mtime: new Date(entry.mtimeMs) },
    });
    return { published, publishMs: Date.now() - started, marker: await nextMarker };
  } catch (err) {
    await nextMarker.then((m) => m.discard(), () => {});
    throw err;
  }
}

/** Record a published file in the history, then move the marker; POST_ACTION last. */
async function recordOne(a: Attempting, entry: RemoteEntry, got: Downloaded, staged: Staged): Promise<void> {
  const { config, ctx, summary } = a;
  const { published, publishMs } = staged;
  ctx.log.debug(`${entry.name}: published to ${published.path} (${published.method}, ${publishMs} ms)`);
  const delivered: DeliveredFile = {
    name: entry.name, size: got.size, sha256: got.sha256, durationMs: got.durationMs,
    bytesTransferred: got.bytesTransferred, resumedFrom: got.resumedFrom, publishedTo: published.path,
    publishMs, publishMethod: published.method,
  };
  try {
    await a.history.append({
      ...delivered,
      remoteMtime: new Date(entry.mtimeMs).toISOString(),
      deliveredAt: new Date().toISOString(),
    });
    // Last of all: the marker moves only once the file is whole in SERVER_DIR, and only by
    // the lock's holder (a run that lost it stops here: another may be moving the marker).
    a.lost?.throwIfAborted();
    await staged.marker.commit();
  } catch (err) {
    await staged.marker.discard().catch(() => {});
    throw err;
  }
  a.attempt.progressed = true;
  summary.delivered.push(delivered);
  // Files are recorded in queue order, so this one leads the pending list.
  if (summary.pending[0] === entry.name) summary.pending.shift();
  else summary.pending = summary.pending.filter((n) => n !== entry.name);
  const resumed = got.resumedFrom > 0 ? `, resumed from byte ${got.resumedFrom}` : '';
  // One line per delivered file says it all (a thousand small files make a thousand lines).
  ctx.log.info(`${entry.name}: delivered ${formatBytes(got.size)} in ${(got.durationMs / 1000).toFixed(1)} s (${rate(got.bytesTransferred, got.durationMs)})${resumed}, sha256 ${got.sha256}, published to ${published.path} (${published.method}, ${publishMs} ms); marker -> ${entry.name}`);
  await afterDelivery(a.session, config, remotePathOf(config.remoteDir, entry.name), entry.name, ctx.log);
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
  const recent = marker === null ? [] : await recentDeliveries(historyFileFor(config.markerFile));
  // Newest first: the marker's latest delivery, and each file's latest version.
  const markerLine = recent.find((d) => d.name === marker);
  const mtimeOf = new Map<string, number>();
  for (const d of recent) if (!mtimeOf.has(d.name)) mtimeOf.set(d.name, Date.parse(d.remoteMtime));
  return {
    matches: picomatch(config.pattern, { dot: true }),
    orderBy: config.orderBy,
    minAgeMs: config.minAge,
    nowMs: Date.now(),
    markerMtime: config.orderBy === 'mtime' && markerLine ? { ms: Date.parse(markerLine.remoteMtime), current: markerLine === recent[0] } : undefined,
    latestOnly: latest || (marker === null && config.startFrom === 'latest'),
    isCompanion: (name) => config.checksumSuffixes.some((c) => name.endsWith(c.suffix)),
    delivered: markerLine ? { markerAtMs: Date.parse(markerLine.deliveredAt), mtimeOf } : undefined,
    foldCase: process.platform === 'win32' || process.platform === 'darwin',
  };
}
