// `ipi-pull` / `ipi-pull pull`: one scheduled run.
import type { Config } from '../config/load.js';
import { EXIT, InterruptedError, type ExitCode, type IpiError } from '../errors.js';
import { recordRun } from '../metrics.js';
import { createProgress, noProgress } from '../progress.js';
import { newRunSummary, runPull, type RunSummary } from '../pull.js';
import { failureLine, runWithSetup, writeJson, type GlobalArgs, type Io } from './shared.js';

export interface PullArgs extends GlobalArgs {
  once: boolean;
  latest: boolean;
  'dry-run': boolean;
  'accept-new-host-key': boolean;
}

export async function pullCommand(args: PullArgs, io: Io): Promise<ExitCode> {
  const started = Date.now();
  // Ours, not only the run's result: a run that fails after delivering some files (a checksum
  // refused, RETRIES used up) still reports them, and what waits, in --json and the metrics.
  const summary = newRunSummary();
  const out = await runWithSetup<RunSummary>(args, io, 'pull', {
    onSignal: 'stopping after the current chunk',
    doing: 'the run',
    body: async ({ config, log, signal, tty }) => {
      try {
        return await runPull(config, {
          once: args.once, latest: args.latest, dryRun: args['dry-run'], acceptNewHostKey: args['accept-new-host-key'], signal,
        }, { log, summary, progress: args['dry-run'] ? noProgress : createProgress(log, tty) });
      } catch (err) {
        // Whatever a signal cut short, the outcome is "interrupted" (exit 130), not its side effect.
        throw signal.aborted ? new InterruptedError(String(signal.reason)) : err;
      }
    },
    after: async ({ config, log }, _result, failure) => {
      if (!config.metricsFile || args['dry-run']) return;
      await recordRun(config.metricsFile, {
        delivered: summary.delivered, pending: summary.pending.length, exitCode: failure ? failure.exitCode : EXIT.ok, startedAtMs: started,
      }).catch((err) => log.warn(`METRICS_FILE ${config.metricsFile}: could not write it (${err instanceof Error ? err.message : err})`));
    },
  });
  // Without a config, nothing ran and the summary is empty; with one, it holds what was done.
  return report(out.failure, out.summary ?? (out.config ? summary : null), out.config, args, io, started, out.logged);
}

function report(
  failure: IpiError | null, summary: RunSummary | null, config: Config | null,
  args: PullArgs, io: Io, started: number, logged: boolean,
): ExitCode {
  const code = failure ? failure.exitCode : EXIT.ok;
  const message = failureLine('ipi-pull', failure, config, io, logged);
  if (args.json) {
    const files = summary?.delivered ?? [];
    writeJson(io, {
      outcome: failure ? 'failed' : files.length > 0 ? 'delivered' : summary?.wouldPull.length ? 'dry-run' : 'nothing-new',
      exitCode: code,
      error: message,
      files,
      bytes: files.reduce((n, f) => n + f.size, 0),
      bytesTransferred: files.reduce((n, f) => n + f.bytesTransferred, 0),
      wouldPull: summary?.wouldPull ?? [],
      pending: summary?.pending ?? [],
      waiting: summary?.waiting ?? null,
      durationMs: Date.now() - started,
    });
  }
  return code;
}
