// What every command shares: the settings flags (generated from the table), turning argv
// into a validated Config, and opening the logger.
import fs from 'node:fs';
import path from 'node:path';
import yargs, { type Argv } from 'yargs';
import { loadConfig, type Config } from '../config/load.js';
import { ConfigError, EXIT, classify, errorDetail, wrongKindOfPath, type ExitCode, type IpiError } from '../errors.js';
import { SETTINGS, SETTING_NAMES, appliesTo, flagOf, type SettingName, type Tool } from '../config/settings.js';
import { createLogger, scrub, type ClosableLogger, type Logger } from '../log.js';

export interface Io {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  cwd: string;
}

export interface GlobalArgs {
  'env-file'?: string;
  json: boolean;
  [flag: string]: unknown;
}

/** One --flag per setting the command reads, grouped by the table's sections in --help. */
export function withSettingFlags<T>(y: Argv<T>, tool: Tool = 'pull'): Argv<T> {
  let out = y;
  for (const name of SETTING_NAMES) {
    if (!appliesTo(name, tool)) continue;
    const s = SETTINGS[name];
    const dflt = 'default' in s ? ` [default: ${s.default}]` : '';
    out = out.option(flagOf(name), { type: 'string', describe: `${s.env}: ${s.help}${dflt}`, group: `${s.section} (flag or .env key):` });
  }
  return out;
}

/**
 * An example too long for the first column of --help, as lines the shell reads as one (a `\`
 * ends each but the last). yargs would break it at any blank, leaving `ipi` or `--json` at the
 * start of a line, where it reads as a command of its own. Each line fits in 40 columns, the
 * example column of an 80-column terminal (yargs drops any indent of the lines after the first).
 */
export function exampleLines(...lines: string[]): string {
  return lines.join(' \\\n');
}

export function flagValues(argv: Record<string, unknown>): Partial<Record<SettingName, string>> {
  const out: Partial<Record<SettingName, string>> = {};
  for (const name of SETTING_NAMES) {
    const v = argv[flagOf(name)];
    if (v !== undefined) out[name] = Array.isArray(v) ? String(v[v.length - 1]) : String(v);
  }
  return out;
}

export function configFromArgs(args: GlobalArgs, io: Io, serverOptional = false, tool: Tool = 'pull', loginOptional = false): Config {
  const flags = flagValues(args);
  try {
    return loadConfig({ envFile: args['env-file'], flags, env: io.env, cwd: io.cwd, serverOptional, loginOptional, tool });
  } catch (err) {
    // A first run with nothing set up: say how to start, as the sftpmonitor it replaces did.
    if (err instanceof ConfigError && nothingConfigured(args, flags, io)) {
      throw new ConfigError(`${err.message}. No .env in ${io.cwd} and no SFTP_HOST in the environment: to write a commented .env to fill in, run \`ipi-${tool} init\``);
    }
    throw err;
  }
}

/** No --env-file, no ./.env, and no server named in the environment or the flags. */
function nothingConfigured(args: GlobalArgs, flags: Partial<Record<SettingName, string>>, io: Io): boolean {
  if (args['env-file'] !== undefined || flags.host !== undefined || (io.env.SFTP_HOST ?? '').trim() !== '') return false;
  return !fs.existsSync(path.join(io.cwd, '.env'));
}

export function loggerFor(config: Config, args: GlobalArgs, tool: Tool): ClosableLogger {
  return createLogger({
    tool: `ipi-${tool}`,
    level: config.logLevel,
    file: config.logFile,
    maxSize: config.logMaxSize,
    maxFiles: config.logMaxFiles,
    secrets: config.secrets,
    allToStderr: args.json,
  });
}

export function warnIfSecretsExposed(config: Config, log: Logger): void {
  if (process.platform === 'win32' || !config.envFile || config.secrets.length === 0) return;
  try {
    const mode = fs.statSync(config.envFile).mode;
    if (mode & 0o077) log.warn(`${config.envFile} holds a password or passphrase and is readable by others: chmod 600 ${config.envFile}`);
  } catch {
    /* gone since we read it: nothing to warn about */
  }
}

/** What a run command's body gets from runWithSetup. */
export interface CommandContext {
  config: Config;
  log: ClosableLogger;
  /** Aborted by SIGINT/SIGTERM, with the signal's name as its reason. */
  signal: AbortSignal;
  /** The terminal for a progress bar, or null (no TTY, or --json). */
  tty: NodeJS.WriteStream | null;
}

export interface RunOutcome<S> {
  /** null when the settings could not be read. */
  config: Config | null;
  summary: S | null;
  failure: IpiError | null;
  /** Whether the failure was logged already (else it must go to stderr as one line). */
  logged: boolean;
}

/**
 * The frame both programs' run commands share: settings read and validated, the log opened,
 * SIGINT/SIGTERM turned into an abort, one classified failure. The body does the run;
 * `after` (metrics) runs before the log is closed.
 */
export async function runWithSetup<S>(
  args: GlobalArgs, io: Io, tool: Tool,
  opts: {
    onSignal: string; doing: string; body: (ctx: CommandContext) => Promise<S>; after?: (ctx: CommandContext, summary: S | null, failure: IpiError | null) => Promise<void>;
    /** The run connects to nothing (ipi-push --dry-run): no way to log in is needed. */
    loginOptional?: boolean;
  },
): Promise<RunOutcome<S>> {
  let config: Config;
  let log: ClosableLogger;
  try {
    config = configFromArgs(args, io, false, tool, opts.loginOptional ?? false);
  } catch (err) {
    return { config: null, summary: null, failure: classify(err, 'reading the settings'), logged: false };
  }
  try {
    log = loggerFor(config, args, tool);
  } catch (err) {
    return { config, summary: null, failure: (config.logFile === null ? null : wrongKindOfPath(err, 'LOG_FILE', config.logFile, 'file')) ?? classify(err, `opening LOG_FILE ${config.logFile}`), logged: false };
  }
  for (const warning of config.warnings) log.warn(warning);
  warnIfSecretsExposed(config, log);

  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    log.warn(`${sig} received: ${opts.onSignal}`);
    controller.abort(sig);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const ctx: CommandContext = { config, log, signal: controller.signal, tty: !args.json && io.stderr.isTTY ? (io.stderr as NodeJS.WriteStream) : null };
  let summary: S | null = null;
  let failure: IpiError | null = null;
  try {
    summary = await opts.body(ctx);
  } catch (err) {
    failure = classify(err, opts.doing);
    log.error(failure.message);
    log.debug(errorDetail(failure));
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  await opts.after?.(ctx, summary, failure);
  await log.close();
  return { config, summary, failure, logged: true };
}

export function writeJson(io: Io, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value)}\n`);
}

/**
 * A run's failure as the one line users see, with any secret of the config taken out. When
 * nothing was logged (the settings or the log file failed) the line goes to stderr here.
 */
export function failureLine(tool: string, failure: IpiError | null, config: Config | null, io: Io, logged: boolean): string | null {
  if (!failure) return null;
  const message = scrub(failure.message, config?.secrets ?? []);
  if (!logged) io.stderr.write(`${tool}: ${message}\n`);
  return message;
}

/**
 * A command without a summary of its own (status, mark) failed: the one line, and with --json
 * the same as JSON on stdout, so a wrapper parsing stdout is never left with nothing.
 */
export function commandFailed(tool: string, failure: IpiError, config: Config | null, io: Io, json: boolean): ExitCode {
  const message = failureLine(tool, failure, config, io, false);
  if (json) writeJson(io, { outcome: 'failed', exitCode: failure.exitCode, error: message });
  return failure.exitCode;
}

export const processIo = (): Io => ({ stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() });

/** What both programs' command lines share: the global flags, and the exit code a command returns. */
export interface Program {
  parser: Argv;
  /** A yargs handler that runs the command and keeps its exit code. */
  run<A>(command: (args: A, io: Io) => Promise<ExitCode>): (args: A) => Promise<void>;
  /** Parse and run: the command's exit code, or EXIT.usage for a usage error. */
  finish(parser: Argv): Promise<ExitCode>;
}

export function program(argv: string[], tool: string, io: Io): Program {
  let exit: ExitCode = EXIT.ok;
  const parser = yargs(argv)
    .scriptName(tool)
    .option('env-file', { type: 'string', describe: 'Settings file to read [default: ./.env]', global: true })
    .option('json', { type: 'boolean', default: false, describe: 'Machine-readable output on stdout (logs go to stderr)', global: true })
    // yargs would read `--no-sftp-pass` as the value "false": the password, or a folder named
    // false. Every yes/no flag is off unless given, so `--no-` has nothing to turn off: without
    // it, `--no-anything` is an unknown argument.
    .parserConfiguration({ 'boolean-negation': false });
  // Before yargs validates: `--once=yes --watch` is about --once=yes, not the conflict its misreading makes.
  parser.middleware((args) => {
    const problem = misreadFlag(argv, args);
    if (problem) throw new UsageError(problem);
  }, true);
  return {
    parser,
    run: (command) => async (args) => {
      exit = await command(args, io);
    },
    finish: async (parser) => ((await parseStrictly(parser, tool, io, argv)) ? exit : EXIT.usage),
  };
}

class UsageError extends Error {}

/**
 * Pure: the first yes/no flag given a value yargs does not read as written, as the usage
 * error to give, or null. `parsed` is yargs' reading of `argv`.
 *
 * yargs takes a yes/no flag's `=VALUE` as true for the word `true` only: `--dry-run=yes`,
 * `=1`, `=on`, `=TRUE` all read as false, and a run asked to change nothing would publish and
 * move the marker. Only true and false are taken; anything else stops the run.
 */
export function misreadFlag(argv: readonly string[], parsed: Record<string, unknown>): string | null {
  for (const word of argv) {
    const m = /^(--?[^=]+)=([\s\S]*)$/.exec(word);
    if (!m || typeof parsed[m[1]!.replace(/^--?/, '')] !== 'boolean' || m[2] === 'true' || m[2] === 'false') continue;
    return `${m[1]} is a yes/no flag and takes no other value than true or false: write ${m[1]} alone (or ${m[1]}=false)`;
  }
  return null;
}

/**
 * The common tail of both programs' parsers: strict flags, help aliases, and a usage error
 * turned into one line and exit 2 (throwing from fail() stops yargs before a command runs).
 */
async function parseStrictly(parser: Argv, tool: string, io: Io, argv: readonly string[]): Promise<boolean> {
  try {
    // yargs passes what follows '--' through unchecked: `ipi-pull -- --once` would pull everything.
    if (argv.includes('--')) throw new UsageError(`nothing after '--' is read, so it would be ignored: ${argv.slice(argv.indexOf('--') + 1).join(' ') || '(nothing)'}`);
    const secret = secretTakenForFlags(argv);
    if (secret) throw new UsageError(secret);
    await parser
      .alias('h', 'help')
      .alias('V', 'version')
      .strict()
      .wrap(Math.min(110, process.stdout.columns ?? 100))
      .fail((msg, err) => {
        throw err ?? new UsageError(msg);
      })
      .exitProcess(false)
      .parseAsync();
    return true;
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    const message = scrub(err.message, secretsOnCommandLine(argv));
    io.stderr.write(`${tool}: ${message} (see '${tool} --help')\n`);
    if (wantsJson(argv)) writeJson(io, { outcome: 'usage', exitCode: EXIT.usage, error: message });
    return false;
  }
}

/** Pure: was --json asked for on a command line yargs could not parse? */
export function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).some((a) => a === '--json' || a === '--json=true');
}

/**
 * A secret's flag in every spelling yargs takes (`--sftp-pass`, `-sftp-pass`, `--sftpPass`)
 * and the ones it does not but a person may write (`--SFTP_PASS`): a word after any of them
 * may be the password.
 */
const SECRET_FLAG = new RegExp(`^--?(?:${SETTING_NAMES.filter((n) => 'secret' in SETTINGS[n]).map((n) => flagOf(n).replace(/-/g, '[-_]?')).join('|')})(?:=([\\s\\S]*))?$`, 'i');

/**
 * Pure: a secret flag followed by a word yargs would read as flags, as the usage error to
 * give, or null. `--sftp-pass -Xyzzy9` made yargs complain of the unknown flags X, y and z,
 * quoting the password a letter at a time, which no scrubbing of whole words can catch. The
 * word is not shown.
 */
export function secretTakenForFlags(argv: readonly string[]): string | null {
  for (let i = 0; i + 1 < argv.length; i++) {
    const m = SECRET_FLAG.exec(argv[i]!);
    // `--sftp-pass= -Xyzzy9` too: yargs takes the empty value, then the word as flags.
    if (m && !m[1] && argv[i + 1]!.startsWith('-')) {
      const flag = argv[i]!.replace(/=$/, '');
      return `${flag} is followed by a word starting with '-', which is read as a flag, not as its value (the word is not shown): for a value that starts with '-', write ${flag}=VALUE`;
    }
  }
  return null;
}

/**
 * Pure: what may be a password on a command line that yargs could not parse. Usage errors
 * quote arguments ("Unknown argument: Sp4ceP" for an unquoted `--sftp-pass my Sp4ceP`), and
 * they come before any configuration exists to scrub with: every word after a secret flag,
 * up to the next flag, is taken for part of the secret.
 */
export function secretsOnCommandLine(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const m = SECRET_FLAG.exec(argv[i]!);
    if (!m) continue;
    if (m[1]) out.push(m[1]);
    for (let j = i + 1; j < argv.length && !argv[j]!.startsWith('-'); j++) out.push(argv[j]!);
  }
  return out.filter((s) => s.trim() !== '');
}
