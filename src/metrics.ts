// METRICS_FILE: a Prometheus textfile-collector file rewritten atomically after every run.
// A cron job that silently stopped is the usual way this kind of tool fails; with
// ipi_pull_last_success_timestamp_seconds an alert can say "no success for an hour".
import fs from 'node:fs/promises';
import { writeFileAtomic } from './util/atomic.js';

export interface RunMetrics {
  finishedAtMs: number;
  success: boolean;
  exitCode: number;
  filesDelivered: number;
  bytesDelivered: number;
  filesPending: number;
  durationMs: number;
  /** Kept from the previous file when this run failed. */
  lastSuccessAtMs: number | null;
}

/** ipi-pull's metrics are ipi_pull_*, ipi-push's ipi_push_*: both may share one textfile folder. */
export type MetricsPrefix = 'ipi_pull' | 'ipi_push';

export function renderMetrics(m: RunMetrics, prefix: MetricsPrefix = 'ipi_pull'): string {
  const LAST_SUCCESS = `${prefix}_last_success_timestamp_seconds`;
  const verb = prefix === 'ipi_push' ? 'uploaded' : 'delivered';
  const gauge = (name: string, help: string, value: number) => `# HELP ${name} ${help}\n# TYPE ${name} gauge\n${name} ${value}\n`;
  const secs = (ms: number) => Math.round(ms / 1000);
  return [
    gauge(`${prefix}_last_run_timestamp_seconds`, 'When the last run ended (Unix time).', secs(m.finishedAtMs)),
    m.lastSuccessAtMs !== null ? gauge(LAST_SUCCESS, 'When the last successful run ended (Unix time); nothing new counts as success.', secs(m.lastSuccessAtMs)) : '',
    gauge(`${prefix}_last_run_success`, '1 if the last run succeeded, else 0.', m.success ? 1 : 0),
    gauge(`${prefix}_last_run_exit_code`, 'Exit code of the last run.', m.exitCode),
    gauge(`${prefix}_last_run_files_${verb}`, `Files ${verb} by the last run.`, m.filesDelivered),
    gauge(`${prefix}_last_run_bytes_${verb}`, `Bytes ${verb} by the last run.`, m.bytesDelivered),
    gauge(`${prefix}_files_pending`, prefix === 'ipi_push'
      ? 'Local files waiting to be uploaded (or to be retried) when the last run ended.'
      : 'Files after the marker still on the server when the last run ended.', m.filesPending),
    gauge(`${prefix}_last_run_duration_seconds`, 'Duration of the last run.', Number((m.durationMs / 1000).toFixed(3))),
  ].join('');
}

/** Pure: the last-success time recorded in an earlier metrics file, in ms. */
export function previousSuccessMs(text: string, prefix: MetricsPrefix = 'ipi_pull'): number | null {
  const m = new RegExp(`^${prefix}_last_success_timestamp_seconds (\\d+(?:\\.\\d+)?)$`, 'm').exec(text);
  return m ? Number(m[1]) * 1000 : null;
}

/** The metrics of one finished run (delivered files, pending count), written to METRICS_FILE. */
export async function recordRun(
  file: string,
  run: { delivered: ReadonlyArray<{ size: number }>; pending: number; exitCode: number; startedAtMs: number },
): Promise<void> {
  await writeMetrics(file, {
    finishedAtMs: Date.now(), success: run.exitCode === 0, exitCode: run.exitCode, filesDelivered: run.delivered.length,
    bytesDelivered: run.delivered.reduce((n, f) => n + f.size, 0), filesPending: run.pending, durationMs: Date.now() - run.startedAtMs,
  });
}

export async function writeMetrics(file: string, run: Omit<RunMetrics, 'lastSuccessAtMs'>, prefix: MetricsPrefix = 'ipi_pull'): Promise<void> {
  let previous: number | null = null;
  try {
    previous = previousSuccessMs(await fs.readFile(file, 'utf8'), prefix);
  } catch {
    /* first run, or unreadable: no earlier success known */
  }
  const lastSuccessAtMs = run.success ? run.finishedAtMs : previous;
  await writeFileAtomic(file, renderMetrics({ ...run, lastSuccessAtMs }, prefix));
}
