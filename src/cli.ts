// Commands and flags. The only place that turns outcomes into exit codes and decides what
// reaches stdout and stderr.
import fs from 'node:fs';
import yargs, { type Argv } from 'yargs';
import { loadConfig, type Config } from './config/load.js';
import { SETTINGS, SETTING_NAMES, flagOf, type SettingName } from './config/settings.js';
import { EXIT, InterruptedError, IpiError, classify, type ExitCode } from './errors.js';
import { createLogger, scrub, type ClosableLogger } from './log.js';
import { createProgress, noProgress } from './progress.js';
import { runPull, type RunSummary } from './pull.js';
import { versionLine } from './version.js';

interface CommonArgs {
  'env-file'?: string;
  json: boolean;
  [flag: string]: unknown;
}

interface PullArgs extends CommonArgs {
  once: boolean;
  'dry-run': boolean;
  'accept-new-host-key': boolean;
}

export interface Io {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  cwd: string;
}

class UsageError extends Error {}

const defaultIo = (): Io => ({ stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() });

function settingFlags(args: Argv): Argv {
  let y = args;
  for (const name of SETTING_NAMES) {
    const s = SETTINGS[name];
    const dflt = 'default' in s ? ` [default: ${s.default}]` : '';
    y = y.option(flagOf(name), { type: 'string', describe: `${s.env}: ${s.help}${dflt}`, group: `${s.section} (flag or .env key):` });
  }
  return y;
}

function flagValues(argv: Record<string, unknown>): Partial<Record<SettingName, string>> {
  const out: Partial<Record<SettingName, string>> = {};
  for (const name of SETTING_NAMES) {
    const v = argv[flagOf(name)];
    if (v !== undefined) out[name] = Array.isArray(v) ? String(v[v.length - 1]) : String(v);
  }
  return out;
}

export async function main(argv: string[], io: Io = defaultIo()): Promise<ExitCode> {
  let exit: ExitCode = EXIT.ok;
  const parser = yargs(argv)
    .scriptName('ipi-pull')
    .usage('$0 [command] [options]\n\nPulls the next IPI file(s) from an SFTP server: resumable, verified, published atomically,\nand only then recorded in the marker. Settings come from .env, the environment, then flags.')
    .command<PullArgs>(
      ['$0', 'pull'],
      'Pull the files after the marker (the default command)',
      (y) => settingFlags(y)
        .option('once', { type: 'boolean', default: false, describe: 'Pull at most one file, then stop' })
        .option('dry-run', { type: 'boolean', default: false, describe: 'Connect and list; say what would be pulled; change nothing' })
        .option('accept-new-host-key', { type: 'boolean', default: false, describe: 'Trust and record a host key seen for the first time (never a changed one)' }) as unknown as Argv<PullArgs>,
      async (args) => {
        exit = await pullCommand(args, io);
      },
    )
    .option('env-file', { type: 'string', describe: 'Settings file to read [default: ./.env]', global: true })
    .option('json', { type: 'boolean', default: false, describe: 'Print a machine-readable summary on stdout (logs go to stderr)', global: true })
    .example('$0', 'Pull everything new after the marker, using ./.env')
    .example('$0 --once', 'Pull at most one file (the next in date order)')
    .example('$0 --dry-run', 'Show which files would be pulled, change nothing')
    .example('$0 --env-file /etc/ipi-pull/site-a.env --json', 'Use another settings file; print a JSON summary for a wrapper or CI')
    .example('$0 --sftp-host sftp.example.com --sftp-user ipi --sftp-key ~/.ssh/id_ed25519 --sftp-dir /out', 'Everything from flags, no .env')
    .epilog('Exit codes: 0 success (also "nothing new"), 1 failed after retries, 2 bad usage or config, 3 another run holds the lock, 4 authentication or host key refused, 130 interrupted.')
    .version(versionLine())
    .alias('h', 'help')
    .alias('V', 'version')
    .strict()
    .wrap(Math.min(110, process.stdout.columns ?? 100))
    .fail((msg, err) => {
      // Throwing stops yargs here; without it the command would still run after a usage error.
      throw err ?? new UsageError(msg);
    })
    .exitProcess(false);
  try {
    await parser.parseAsync();
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.stderr.write(`ipi-pull: ${err.message}\nRun 'ipi-pull --help' for usage.\n`);
    return EXIT.usage;
  }
  return exit;
}

async function pullCommand(args: PullArgs, io: Io): Promise<ExitCode> {
  const started = Date.now();
  let config: Config;
  try {
    config = loadConfig({ envFile: args['env-file'], flags: flagValues(args), env: io.env, cwd: io.cwd });
  } catch (err) {
    return finish(classify(err, 'reading the settings'), null, null, args, io, started);
  }
  let log: ClosableLogger;
  try {
    log = createLogger({
      level: config.logLevel, file: config.logFile, maxSize: config.logMaxSize, maxFiles: config.logMaxFiles,
      secrets: config.secrets, allToStderr: args.json,
    });
  } catch (err) {
    return finish(classify(err, `opening LOG_FILE ${config.logFile}`), null, null, args, io, started);
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
      once: args.once, dryRun: args['dry-run'], acceptNewHostKey: args['accept-new-host-key'], signal: controller.signal,
    }, { log, progress: args['dry-run'] ? noProgress : createProgress(log, tty) });
  } catch (err) {
    failure = classify(controller.signal.aborted ? controller.signal.reason : err, 'the run');
    log.error(failure.message);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  await log.close();
  return finish(failure, summary, config, args, io, started, true);
}

function finish(
  failure: IpiError | null, summary: RunSummary | null, config: Config | null,
  args: CommonArgs, io: Io, started: number, logged = false,
): ExitCode {
  const code = failure ? failure.exitCode : EXIT.ok;
  if (failure && !logged) {
    // Nothing was logged (the settings or the log file failed): the one line goes to stderr.
    io.stderr.write(`ipi-pull: ${scrubbed(failure.message, config)}\n`);
  }
  if (args.json) {
    const files = summary?.delivered ?? [];
    io.stdout.write(`${JSON.stringify({
      outcome: failure ? 'failed' : files.length > 0 ? 'delivered' : summary?.wouldPull.length ? 'dry-run' : 'nothing-new',
      exitCode: code,
      error: failure ? scrubbed(failure.message, config) : null,
      files,
      bytes: files.reduce((n, f) => n + f.size, 0),
      bytesTransferred: files.reduce((n, f) => n + f.bytesTransferred, 0),
      wouldPull: summary?.wouldPull ?? [],
      pending: summary?.pending ?? [],
      waiting: summary?.waiting ?? null,
      durationMs: Date.now() - started,
    })}\n`);
  }
  return code;
}

function scrubbed(message: string, config: Config | null): string {
  return scrub(message, config?.secrets ?? []);
}

function warnIfSecretsExposed(config: Config, log: ClosableLogger): void {
  if (process.platform === 'win32' || !config.envFile || config.secrets.length === 0) return;
  try {
    const mode = fs.statSync(config.envFile).mode;
    if (mode & 0o077) log.warn(`${config.envFile} holds a password or passphrase and is readable by others: chmod 600 ${config.envFile}`);
  } catch {
    /* gone since we read it: nothing to warn about */
  }
}
