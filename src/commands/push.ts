// `ipi-push` / `ipi-push --once` / `ipi-push --watch`: one upload run, or the service.
import type { Config } from '../config/load.js';
import { EXIT, type ExitCode, type IpiError } from '../errors.js';
import type { Logger } from '../log.js';
import { writeMetrics } from '../metrics.js';
import { createProgress, noProgress } from '../progress.js';
import { runPush } from '../push/run.js';
import { newPushSummary, type PushSummary } from '../push/summary.js';
import { serialLatest } from '../util/serial.js';
import { failureLine, runWithSetup, writeJson, type GlobalArgs, type Io } from './shared.js';

export interface PushArgs extends GlobalArgs {
  once?: boolean;
  watch?: boolean;
  'dry-run': boolean;
  'retry-failed': boolean;
  'accept-new-host-key': boolean;
}

export async function pushCommand(args: PushArgs, io: Io): Promise<ExitCode> {
  const started = Date.now();
  const watch = args.watch === true && !args['dry-run'];
  let metrics: ((summary: PushSummary, code: number) => Promise<void>) | null = null;
  // Ours, not only the run's result: a run that fails (RETRIES used up) still reports its files.
  const summary = newPushSummary();
  const out = await runWithSetup<PushSummary>(args, io, 'push', {
    onSignal: 'taking no new file; finishing the writes in flight, then saving the state',
    doing: watch ? 'watching' : 'the run',
    loginOptional: args['dry-run'],
    body: ({ config, log, signal, tty }) => {
      metrics = args['dry-run'] ? null : pushMetrics(config.metricsFile, started, log);
      return runPush(config, {
        mode: watch ? 'watch' : 'once', dryRun: args['dry-run'], acceptNewHostKey: args['accept-new-host-key'],
        retryFailed: args['retry-failed'], signal,
      }, {
        log,
        summary,
        progress: args['dry-run'] ? noProgress : createProgress(log, tty),
        // The service's metrics follow every outcome: "last run" is the last file or connection attempt.
        onActivity: (s, ok) => void metrics?.(s, ok ? EXIT.ok : EXIT.failed),
      });
    },
    after: async ({ log }, summary, failure) => {
      const code = exitCodeOf(failure, summary);
      if (summary && code !== EXIT.ok && !failure) log.error(`${summary.failed.length} file(s) not uploaded: ${summary.failed.map((f) => f.rel).join(', ')}`);
      await metrics?.(summary ?? newPushSummary(), code);
    },
  });
  // Without a config, nothing ran and the summary is empty; with one, it holds what was done.
  return report(out.failure, out.summary ?? (out.config ? summary : null), out.config, args, io, started, out.logged);
}

/**
 * METRICS_FILE of one ipi-push command, written after each outcome (the service) and once at
 * the end. The writes are serialized (serialLatest): the service fires one per file without
 * waiting, and a slow one still under way must not land after, and over, the final write.
 * The promise resolves once this outcome (or a newer one) is on disk; a failure is a warning.
 */
export function pushMetrics(
  file: string | undefined, startedMs: number, log: Logger, write: typeof writeMetrics = writeMetrics,
): (summary: PushSummary, code: number) => Promise<void> {
  const written = serialLatest((run: Parameters<typeof writeMetrics>[1]) => write(file!, run, 'ipi_push')
    .catch((err) => log.warn(`METRICS_FILE ${file}: could not write it (${err instanceof Error ? err.message : err})`)));
  return (summary, code) => {
    if (!file) return Promise.resolve();
    // The figures of this moment: the summary object keeps changing after the call.
    return written({
      finishedAtMs: Date.now(), success: code === 0, exitCode: code, filesDelivered: summary.totals.uploaded,
      bytesDelivered: summary.totals.bytesSent, filesPending: summary.pending.length + summary.failed.length,
      durationMs: Date.now() - startedMs,
    });
  };
}

/** SIGINT/SIGTERM is a clean stop (state saved, upload checkpointed): 0, as a service manager expects. */
function exitCodeOf(failure: IpiError | null, summary: PushSummary | null): ExitCode {
  if (failure) return failure.exitCode;
  if (summary && !summary.stopped && summary.failed.length > 0) return EXIT.failed;
  return EXIT.ok;
}

function report(
  failure: IpiError | null, summary: PushSummary | null, config: Config | null,
  args: PushArgs, io: Io, started: number, logged: boolean,
): ExitCode {
  const code = exitCodeOf(failure, summary);
  const message = failureLine('ipi-push', failure, config, io, logged);
  if (args.json) {
    const files = (summary?.uploaded ?? []).map((u) => ({
      path: u.rel, remotePath: u.remotePath, size: u.size, sha256: u.sha256, verified: u.verified, alreadyThere: u.adopted,
      resumedFrom: u.resumedFrom, bytesSent: u.bytesSent, durationMs: u.durationMs,
    }));
    writeJson(io, {
      outcome: failure || (code !== EXIT.ok) ? 'failed' : summary?.stopped ? 'stopped' : files.length > 0 || summary?.folders.length ? 'uploaded'
        : summary?.wouldUpload.length || summary?.wouldCreateFolders.length ? 'dry-run' : 'nothing-new',
      exitCode: code,
      error: message,
      // In --watch, `files` and `folders` are the latest WATCH_SUMMARY_KEEPS; `totals` counts the whole run.
      files,
      folders: summary?.folders ?? [],
      bytes: summary?.totals.bytes ?? 0,
      bytesSent: summary?.totals.bytesSent ?? 0,
      totals: summary?.totals ?? newPushSummary().totals,
      failed: summary?.failed ?? [],
      waiting: summary?.waiting ?? [],
      pending: summary?.pending ?? [],
      wouldUpload: summary?.wouldUpload ?? [],
      wouldCreateFolders: summary?.wouldCreateFolders ?? [],
      durationMs: Date.now() - started,
    });
  }
  return code;
}
