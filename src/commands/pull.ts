// `ipi-pull` / `ipi-pull pull`: one scheduled run.
import type { Config } from '../config/load.js';
import { EXIT, InterruptedError, classify, type ExitCode, type IpiError } from '../errors.js';
import { scrub, type ClosableLogger } from '../log.js';
import { recordRun } from '../metrics.js';
import { createProgress, noProgress } from '../progress.js';
import { runPull, type RunSummary } from '../pull.js';
import { configFromArgs, loggerFor, warnIfSecretsExposed, writeJson, type GlobalArgs, type Io } from './shared.js';

export interface PullArgs extends GlobalArgs {
  once: boolean;
  latest: boolean;
  'dry-run': boolean;
  'accept-new-host-key': boolean;
}

export async function pullCommand(args: PullArgs, io: Io): Promise<ExitCode> {
  const started = Date.now();
  let config: Config;
  let log: ClosableLogger;
  try {
    config = configFromArgs(args, io);
  } catch (err) {
    return report(classify(err, 'reading the settings'), null, null, args, io, started, false);
  }
  try {
    log = loggerFor(config, args);
  } catch (err) {
    return report(classify(err, `opening LOG_FILE ${config.logFile}`), null, config, args, io, started, false);
  }
  warnIfSecretsExposed(config, log);

  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    log.warn(`${sig} received: stopping after the current chunk`);
    controller.abort(new InterruptedError(sig));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const tty = !args.json && io.stderr.isTTY ? (io.stderr as NodeJS.WriteStream) : null;
  let summary: RunSummary | null = null;
  let failure: IpiError | null = null;
  try {
    summary = await runPull(config, {
      once: args.once, latest: args.latest, dryRun: args['dry-run'], acceptNewHostKey: args['accept-new-host-key'], signal: controller.signal,
    }, { log, progress: args['dry-run'] ? noProgress : createProgress(log, tty) });
  } catch (err) {
    failure = classify(controller.signal.aborted ? controller.signal.reason : err, 'the run');
    log.error(failure.message);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  const code = failure ? failure.exitCode : EXIT.ok;
  if (config.metricsFile && !args['dry-run']) {
    await recordRun(config.metricsFile, {
      delivered: summary?.delivered ?? [], pending: summary?.pending.length ?? 0, exitCode: code, startedAtMs: started,
    }).catch((err) => log.warn(`METRICS_FILE ${config.metricsFile}: could not write it (${err instanceof Error ? err.message : err})`));
  }
  await log.close();
  return report(failure, summary, config, args, io, started, true);
}

function report(
  failure: IpiError | null, summary: RunSummary | null, config: Config | null,
  args: PullArgs, io: Io, started: number, logged: boolean,
): ExitCode {
  const code = failure ? failure.exitCode : EXIT.ok;
  const message = failure ? scrub(failure.message, config?.secrets ?? []) : null;
  // Nothing was logged when the settings or the log file failed: the one line goes to stderr.
  if (message && !logged) io.stderr.write(`ipi-pull: ${message}\n`);
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
