// The edge: .env file, then the process environment, then flags (later wins), validated
// once into a typed Settings object. Nothing connects or writes before this succeeds.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../errors.js';
import { scrub } from '../log.js';
import { MAX_CHUNK_MEMORY, bufferBudgetProblem } from '../transfer/budget.js';
import { formatValue } from './bounds.js';
import { EnvFileError, parseEnvEntries, valuesOnOwnLines } from './envfile.js';
import { nearMiss, type NearMiss } from './nearmiss.js';
import { isInsideOrSame, isSame } from './paths.js';
import { realPathOf } from './real-path.js';
import { ValueError, controlCharacterProblem } from './parse.js';
import { defaultIdentityFiles, loadPrivateKey, usableDefaultIdentities } from './identities.js';
import { SETTINGS, SETTING_NAMES, appliesTo, type SettingName, type Settings, type Tool, flagOf } from './settings.js';

export interface LoadOptions {
  /** Path given with --env-file; default ./.env, which may be absent. */
  envFile?: string;
  /** Values from command-line flags, by setting name. */
  flags?: Partial<Record<SettingName, string>>;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Skip the check for settings needed to connect (init, status without a server); an unusable SFTP_KEY becomes keyProblem. */
  serverOptional?: boolean;
  /** Skip only the checks for a way to log in (ipi-push --dry-run, which connects to nothing); an unusable SFTP_KEY becomes keyProblem. */
  loginOptional?: boolean;
  /** Which command loads them: a setting required by one command only is checked for that one. Default pull. */
  tool?: Tool;
  /** The platform the paths are for; default process.platform. */
  platform?: NodeJS.Platform;
}

export interface Config extends Settings {
  /** The .env file read, or null when there was none. */
  readonly envFile: string | null;
  /** Folder relative paths were resolved against. */
  readonly baseDir: string;
  /** Secret values actually set, so the logger can scrub them from every line. */
  readonly secrets: readonly string[];
  /** Settings whose values came from somewhere other than their default. */
  readonly explicit: ReadonlySet<SettingName>;
  /** Things worth a warning line once the log is open: keys in the .env that look like typos of ours. */
  readonly warnings: readonly string[];
  /** OpenSSH's default keys usable as they are, tried when SFTP_KEY is not set (read once, here). */
  readonly defaultIdentities: ReadonlyArray<{ file: string; key: Buffer }>;
  /** SFTP_KEY's bytes, read and checked once, here (identities.ts); keyFile stays for messages. */
  readonly key: Buffer | undefined;
  /**
   * Why SFTP_KEY cannot be used, kept (with key undefined) only for a command that may run
   * without logging in (status, mark --force, ipi-push --dry-run); any other stops at loading.
   */
  readonly keyProblem: string | undefined;
}

/** A key of the .env file that is almost one of ours, and the line it is on. */
export interface EnvFileNearMiss extends NearMiss {
  line: number;
}

/** Every key of ours, of both commands: ipi-push's keys in a .env read by ipi-pull are no typo. */
const OUR_KEYS: readonly string[] = SETTING_NAMES.map((n) => SETTINGS[n].env);

/** The keys whose values are secrets (SFTP_PASS, SFTP_KEY_PASSPHRASE). */
const SECRET_SETTINGS: readonly SettingName[] = SETTING_NAMES.filter((n) => 'secret' in SETTINGS[n]);

export function loadConfig(opts: LoadOptions = {}): Config {
  // Until the settings are validated there is no Config to scrub an error with, yet an error
  // may quote a value that holds a secret: one pasted into another key, or taken into another
  // value by a quote of the .env left open. Every secret given anywhere is known here first.
  const secrets: string[] = [];
  try {
    return load(opts, secrets);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const message = scrub(err.message, secrets);
    throw message === err.message ? err : new ConfigError(message);
  }
}

/** loadConfig, with every secret value met pushed onto `secrets` as soon as it is read. */
function load(opts: LoadOptions, secrets: string[]): Config {
  const cwd = opts.cwd ?? process.cwd();
  const env = opts.env ?? process.env;
  for (const name of SECRET_SETTINGS) secrets.push(...[opts.flags?.[name], env[SETTINGS[name].env]].filter((v): v is string => !!v));
  const { file: envFile, values: fileValues, lineOf } = readEnvFile(opts.envFile, cwd, env, secrets);
  const nearMisses: EnvFileNearMiss[] = [];
  for (const key of Object.keys(fileValues)) {
    const miss = nearMiss(key, OUR_KEYS);
    if (miss) nearMisses.push({ ...miss, line: lineOf[key]! });
  }
  const baseDir = envFile ? path.dirname(envFile) : cwd;

  const raw: Partial<Record<SettingName, string>> = {};
  for (const name of SETTING_NAMES) {
    const key = SETTINGS[name].env;
    // An empty value means "not set" wherever it comes from, as `SFTP_PASS=` does in the seed's template.
    const v = given(opts.flags?.[name]) ?? given(env[key]) ?? given(fileValues[key]);
    if (v !== undefined) raw[name] = v;
  }
  return buildConfig(raw, { envFile, baseDir, serverOptional: opts.serverOptional ?? false, loginOptional: opts.loginOptional ?? false, env, tool: opts.tool, platform: opts.platform, nearMisses });
}

/** Validate raw strings by setting name into a Config. Also used by the demo, which has no .env. */
export function buildConfig(
  raw: Partial<Record<SettingName, string>>,
  ctx: {
    envFile: string | null; baseDir: string; serverOptional?: boolean; loginOptional?: boolean; env?: NodeJS.ProcessEnv; tool?: Tool; platform?: NodeJS.Platform;
    /** Keys of the .env file that look like typos of ours (loadConfig finds them). */
    nearMisses?: readonly EnvFileNearMiss[];
  },
): Config {
  const tool = ctx.tool ?? 'pull';
  const platform = ctx.platform ?? process.platform;
  const nearMisses = ctx.nearMisses ?? [];
  const where = (m: EnvFileNearMiss) => `${ctx.envFile ?? '.env'} line ${m.line}`;
  const values: Record<string, unknown> = {};
  const secrets: string[] = [];
  const explicit = new Set<SettingName>();
  for (const name of SETTING_NAMES) {
    const spec = SETTINGS[name];
    const given = raw[name];
    const input = given ?? ('default' in spec ? spec.default : undefined);
    if (given !== undefined) explicit.add(name);
    if (input === undefined) {
      // Typed as always present: absent only for a command that never reads it, or with serverOptional.
      if ('required' in spec && !ctx.serverOptional && appliesTo(name, tool)) {
        // The typo that left it unset is the likeliest reason: say so in the same line.
        const typo = nearMisses.find((m) => m.meant === spec.env);
        const hint = typo ? ` (${where(typo)} has ${typo.key}: is that it?)` : '';
        throw new ConfigError(`${spec.env} is not set${hint}: ${spec.help} Example: ${spec.env}=${spec.example}`);
      }
      values[name] = undefined;
      continue;
    }
    const control = 'secret' in spec ? null : controlCharacterProblem(input);
    if (control) throw new ConfigError(`${spec.env} (--${flagOf(name)}): ${control}. Example: ${spec.env}=${spec.example}`);
    try {
      values[name] = spec.parse(input, { baseDir: ctx.baseDir, platform });
    } catch (err) {
      if (!(err instanceof ValueError)) throw err;
      // Never echo a secret back, even a malformed one.
      const why = 'secret' in spec ? 'is not valid' : err.message;
      throw new ConfigError(`${spec.env} (--${flagOf(name)}): ${why}. Example: ${spec.env}=${spec.example}`);
    }
    if ('secret' in spec && input !== '') secrets.push(input);
  }

  const settings = values as unknown as Settings;
  // No environment given means none: the demo must not log in with the user's own agent.
  const agent = settings.agent ?? ctx.env?.SSH_AUTH_SOCK;
  // The home of the environment given (a test's, or the process's own).
  const home = ctx.env?.HOME ?? os.homedir();
  const identities = settings.keyFile === undefined ? usableDefaultIdentities(home) : [];
  // Whether this command surely logs in: then a way to do so, and a usable SFTP_KEY, are required.
  const loginNeeded = !ctx.serverOptional && !ctx.loginOptional;
  if (loginNeeded && settings.password === undefined && settings.keyFile === undefined && !agent && identities.length === 0) {
    const locked = defaultIdentityFiles(home).find((f) => fs.existsSync(f));
    const hint = locked ? `; ${locked} needs a passphrase (or is not a key): name it in SFTP_KEY, with SFTP_KEY_PASSPHRASE` : '';
    throw new ConfigError(`no way to log in: set SFTP_PASS, or SFTP_KEY (a private key file), or run an SSH agent (SSH_AUTH_SOCK)${hint}. Example: SFTP_KEY=~/.ssh/id_ed25519`);
  }
  if (settings.keyPassphrase !== undefined && settings.keyFile === undefined) {
    throw new ConfigError('SFTP_KEY_PASSPHRASE is set but SFTP_KEY is not: the passphrase belongs to a key file. Example: SFTP_KEY=~/.ssh/id_ed25519');
  }
  checkBufferBudget(settings, tool);
  if (tool === 'pull') checkPullFolders(settings, platform);
  if (tool === 'push') checkPushSettings(settings, platform);
  const warnings = nearMisses.map((m) =>
    `${where(m)}: ${m.key} is not a setting and is ignored${m.caseOnly ? ' (keys are case-sensitive)' : ''}; did you mean ${m.meant}?`);
  // Read last, once every other setting is known good. A command that may run without logging
  // in is not stopped by a key it may never use: status reports it as why the server was not
  // looked at, and ipi-push --dry-run warns, so the real run's failure is no surprise.
  let key: Buffer | undefined;
  let keyProblem: string | undefined;
  if (settings.keyFile !== undefined) {
    try {
      key = loadPrivateKey(settings.keyFile, settings.keyPassphrase);
    } catch (err) {
      if (loginNeeded || !(err instanceof ConfigError)) throw err;
      keyProblem = err.message;
      warnings.push(`${keyProblem}; nothing logs in now, but a run that does stops here`);
    }
  }
  return { ...settings, agent, envFile: ctx.envFile, baseDir: ctx.baseDir, secrets, explicit, warnings, defaultIdentities: identities, key, keyProblem };
}

/** Settings each within its own bounds can still ask, together, for more chunk buffers than can be set aside. */
function checkBufferBudget(s: Settings, tool: Tool): void {
  const problem = bufferBudgetProblem(tool, s);
  if (!problem) return;
  const size = (n: number) => formatValue('size', n);
  throw new ConfigError(`CHUNK_SIZE=${size(s.chunkSize)} with CHUNKS_IN_FLIGHT=${s.chunksInFlight} and FILES_IN_FLIGHT=${s.filesInFlight} needs ${problem.count} chunk buffers, ${size(problem.bytes)} in all; they may take at most ${size(MAX_CHUNK_MEMORY)}: lower CHUNK_SIZE, CHUNKS_IN_FLIGHT or FILES_IN_FLIGHT. Example: CHUNK_SIZE=2MiB`);
}

/**
 * Where ipi-pull's folders and files may be. Downloads grow in LOCAL_DIR as NAME.part; SERVER_DIR
 * is what consumers read, where a file appears whole or not at all; the marker, its lock and
 * its history sit together beside LAST_FILE_RECORD.
 */
function checkPullFolders(s: Settings, platform: NodeJS.Platform): void {
  const { inside, same, links } = placeRelations(platform);
  if (same(s.localDir, s.serverDir)) {
    throw new ConfigError(`LOCAL_DIR and SERVER_DIR are the same folder (${s.serverDir})${links(s.localDir, s.serverDir)}: consumers would see partial downloads, and publishing would copy each file onto itself. Example: LOCAL_DIR=./local_downloads with SERVER_DIR=./synced_server`);
  }
  if (inside(s.localDir, s.serverDir)) {
    throw new ConfigError(`LOCAL_DIR ${s.localDir} is inside SERVER_DIR ${s.serverDir}${links(s.localDir, s.serverDir)}: consumers would see partial downloads. Example: LOCAL_DIR=./local_downloads with SERVER_DIR=./synced_server`);
  }
  if (inside(s.serverDir, s.localDir)) {
    throw new ConfigError(`SERVER_DIR ${s.serverDir} is inside LOCAL_DIR ${s.localDir}${links(s.serverDir, s.localDir)}: the consumers' folder would sit among the downloads. Example: LOCAL_DIR=./local_downloads with SERVER_DIR=./synced_server`);
  }
  if (inside(s.markerFile, s.serverDir)) {
    throw new ConfigError(`LAST_FILE_RECORD ${s.markerFile} is inside SERVER_DIR ${s.serverDir}${links(s.markerFile, s.serverDir)}: the marker, its lock and history would sit among the delivered files, where consumers read and a delivered file of the same name would replace it. Example: LAST_FILE_RECORD=./last_file.txt`);
  }
}

/**
 * How two local paths relate, compared as written and as they really lead. A link can make
 * paths of different text one place (WATCH_DIR=/srv/outbox, a link to /data/outbox, with
 * ARCHIVE_DIR=/data/outbox/archive: each run uploaded the archived copy again, one level
 * deeper). The real paths are this machine's, so only for paths of its own platform.
 */
function placeRelations(platform: NodeJS.Platform) {
  const real = platform === process.platform ? realPathOf : (p: string) => p;
  const byText = (a: string, b: string) => isInsideOrSame(a, b, platform);
  return {
    inside: (a: string, b: string) => byText(a, b) || isInsideOrSame(real(a), real(b), platform),
    same: (a: string, b: string) => isSame(a, b, platform) || isSame(real(a), real(b), platform),
    /** Where only the real paths show it, they are named too. */
    links: (a: string, b: string) => (byText(a, b) ? '' : ` (links followed: ${real(a)} and ${real(b)})`),
  };
}

/**
 * Where ipi-push's files may be. Everything in WATCH_DIR is uploaded (and, with AFTER_UPLOAD,
 * moved or deleted), and an archived file lands at its relative path under ARCHIVE_DIR,
 * replacing whatever is there.
 */
function checkPushSettings(s: Settings, platform: NodeJS.Platform): void {
  const { inside, same, links } = placeRelations(platform);
  if (s.afterUpload === 'archive' && s.archiveDir === undefined) {
    throw new ConfigError('AFTER_UPLOAD=archive needs ARCHIVE_DIR, the folder uploaded files are moved to. Example: ARCHIVE_DIR=./archive');
  }
  if (s.watchDir === undefined) return;
  if (s.archiveDir !== undefined) {
    if (inside(s.archiveDir, s.watchDir)) {
      const where = same(s.archiveDir, s.watchDir) ? `is WATCH_DIR (${s.watchDir})` : `is inside WATCH_DIR ${s.watchDir}`;
      throw new ConfigError(`ARCHIVE_DIR ${s.archiveDir} ${where}${links(s.archiveDir, s.watchDir)}: archived files would be uploaded again. Example: ARCHIVE_DIR=./archive`);
    }
    if (inside(s.watchDir, s.archiveDir)) {
      throw new ConfigError(`ARCHIVE_DIR ${s.archiveDir} holds WATCH_DIR ${s.watchDir}${links(s.watchDir, s.archiveDir)}: an archived file keeps its path under ARCHIVE_DIR, so it could land back in WATCH_DIR or on top of the state file, the log or any other file there. Example: ARCHIVE_DIR=./archive`);
    }
    if (inside(s.stateFile, s.archiveDir)) {
      throw new ConfigError(`STATE_FILE ${s.stateFile} is inside ARCHIVE_DIR ${s.archiveDir}${links(s.stateFile, s.archiveDir)}: an archived file of the same path would replace it. Example: STATE_FILE=./ipi-push-state.json`);
    }
  }
  if (inside(s.stateFile, s.watchDir)) {
    throw new ConfigError(`STATE_FILE ${s.stateFile} is inside WATCH_DIR ${s.watchDir}${links(s.stateFile, s.watchDir)}: keep it outside the watched folder. Example: STATE_FILE=./ipi-push-state.json`);
  }
  if (s.logFile !== null && inside(s.logFile, s.watchDir)) {
    throw new ConfigError(`LOG_FILE ${s.logFile} is inside WATCH_DIR ${s.watchDir}${links(s.logFile, s.watchDir)}: the log would be uploaded (and archived or deleted with AFTER_UPLOAD); keep it outside the watched folder. Example: LOG_FILE=./logs/sftp_transfer.log`);
  }
  if (s.metricsFile !== undefined && inside(s.metricsFile, s.watchDir)) {
    throw new ConfigError(`METRICS_FILE ${s.metricsFile} is inside WATCH_DIR ${s.watchDir}${links(s.metricsFile, s.watchDir)}: it would be uploaded after every run; keep it outside the watched folder. Example: METRICS_FILE=/var/lib/node_exporter/textfile/ipi_push.prom`);
  }
}

function given(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v;
}

/** Also pushes onto `secrets` the secret keys' values, as parsed and as each line reads on its own. */
function readEnvFile(given: string | undefined, cwd: string, env: NodeJS.ProcessEnv, secrets: string[]): { file: string | null; values: Record<string, string>; lineOf: Record<string, number> } {
  const file = path.resolve(cwd, given ?? '.env');
  let content: string;
  try {
    content = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // A missing default .env is normal (settings may come from the environment); a missing named one is not.
    if (code === 'ENOENT' && given === undefined) return { file: null, values: {}, lineOf: {} };
    if (code === 'ENOENT') throw new ConfigError(`--env-file ${given}: no such file`);
    throw new ConfigError(`--env-file ${file}: cannot read it (${code ?? String(err)})`);
  }
  const secretKeys = SECRET_SETTINGS.map((n) => SETTINGS[n].env);
  secrets.push(...valuesOnOwnLines(content, secretKeys));
  try {
    const entries = parseEnvEntries(content, env);
    for (const key of secretKeys) if (entries.values[key]) secrets.push(entries.values[key]);
    return { file, ...entries };
  } catch (err) {
    if (err instanceof EnvFileError) throw new ConfigError(`${file}: ${err.message}`);
    throw err;
  }
}
