// The edge: .env file, then the process environment, then flags (later wins), validated
// once into a typed Settings object. Nothing connects or writes before this succeeds.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../errors.js';
import { EnvFileError, parseEnvFile } from './envfile.js';
import { ValueError } from './parse.js';
import { SETTINGS, SETTING_NAMES, appliesTo, type SettingName, type Settings, type Tool, flagOf } from './settings.js';

export interface LoadOptions {
  /** Path given with --env-file; default ./.env, which may be absent. */
  envFile?: string;
  /** Values from command-line flags, by setting name. */
  flags?: Partial<Record<SettingName, string>>;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Skip the check for settings needed to connect (init, status without a server). */
  serverOptional?: boolean;
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
}

export function loadConfig(opts: LoadOptions = {}): Config {
  const cwd = opts.cwd ?? process.cwd();
  const env = opts.env ?? process.env;
  const { file: envFile, values: fileValues } = readEnvFile(opts.envFile, cwd, env);
  const baseDir = envFile ? path.dirname(envFile) : cwd;

  const raw: Partial<Record<SettingName, string>> = {};
  for (const name of SETTING_NAMES) {
    const key = SETTINGS[name].env;
    // An empty value means "not set" wherever it comes from, as `SFTP_PASS=` does in the seed's template.
    const v = given(opts.flags?.[name]) ?? given(env[key]) ?? given(fileValues[key]);
    if (v !== undefined) raw[name] = v;
  }
  return buildConfig(raw, { envFile, baseDir, serverOptional: opts.serverOptional ?? false, env, tool: opts.tool, platform: opts.platform });
}

/** Validate raw strings by setting name into a Config. Also used by the demo, which has no .env. */
export function buildConfig(
  raw: Partial<Record<SettingName, string>>,
  ctx: { envFile: string | null; baseDir: string; serverOptional?: boolean; env?: NodeJS.ProcessEnv; tool?: Tool; platform?: NodeJS.Platform },
): Config {
  const tool = ctx.tool ?? 'pull';
  const platform = ctx.platform ?? process.platform;
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
        throw new ConfigError(`${spec.env} is not set: ${spec.help} Example: ${spec.env}=${spec.example}`);
      }
      values[name] = undefined;
      continue;
    }
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
  const agent = settings.agent ?? (ctx.env ?? process.env).SSH_AUTH_SOCK;
  if (!ctx.serverOptional && settings.password === undefined && settings.keyFile === undefined && !agent && !hasDefaultIdentity()) {
    throw new ConfigError('no way to log in: set SFTP_PASS, or SFTP_KEY (a private key file), or run an SSH agent (SSH_AUTH_SOCK). Example: SFTP_KEY=~/.ssh/id_ed25519');
  }
  if (settings.keyPassphrase !== undefined && settings.keyFile === undefined) {
    throw new ConfigError('SFTP_KEY_PASSPHRASE is set but SFTP_KEY is not: the passphrase belongs to a key file. Example: SFTP_KEY=~/.ssh/id_ed25519');
  }
  if (tool === 'push') checkPushSettings(settings);
  return { ...settings, agent, envFile: ctx.envFile, baseDir: ctx.baseDir, secrets, explicit };
}

/** Cross-setting rules of ipi-push: where files may be moved after upload. */
function checkPushSettings(s: Settings): void {
  if (s.afterUpload === 'archive' && s.archiveDir === undefined) {
    throw new ConfigError('AFTER_UPLOAD=archive needs ARCHIVE_DIR, the folder uploaded files are moved to. Example: ARCHIVE_DIR=./archive');
  }
  if (s.archiveDir !== undefined && s.watchDir !== undefined && isInsideOrSame(s.archiveDir, s.watchDir)) {
    throw new ConfigError(`ARCHIVE_DIR ${s.archiveDir} is inside WATCH_DIR ${s.watchDir}: archived files would be uploaded again. Example: ARCHIVE_DIR=./archive`);
  }
  if (s.watchDir !== undefined && isInsideOrSame(s.stateFile, s.watchDir)) {
    throw new ConfigError(`STATE_FILE ${s.stateFile} is inside WATCH_DIR ${s.watchDir}: keep it outside the watched folder. Example: STATE_FILE=./ipi-push-state.json`);
  }
}

function isInsideOrSame(p: string, dir: string): boolean {
  const rel = path.relative(dir, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** ssh's default identities count as a way to log in, as they do for `sftp`. */
function hasDefaultIdentity(): boolean {
  return ['id_ed25519', 'id_ecdsa', 'id_rsa'].some((n) => fs.existsSync(path.join(os.homedir(), '.ssh', n)));
}

function given(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v;
}

function readEnvFile(given: string | undefined, cwd: string, env: NodeJS.ProcessEnv): { file: string | null; values: Record<string, string> } {
  const file = path.resolve(cwd, given ?? '.env');
  let content: string;
  try {
    content = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // A missing default .env is normal (settings may come from the environment); a missing named one is not.
    if (code === 'ENOENT' && given === undefined) return { file: null, values: {} };
    if (code === 'ENOENT') throw new ConfigError(`--env-file ${given}: no such file`);
    throw new ConfigError(`--env-file ${file}: cannot read it (${code ?? String(err)})`);
  }
  try {
    return { file, values: parseEnvFile(content, env) };
  } catch (err) {
    if (err instanceof EnvFileError) throw new ConfigError(`${file}: ${err.message}`);
    throw err;
  }
}
