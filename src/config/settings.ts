// Every setting, declared once: env key, meaning, default, example and how it is parsed.
// The CLI flags, `--help`, `.env.example`, `ipi-pull init` and the README table are all
// generated from (or tested against) this table, so they cannot disagree.
import os from 'node:os';
import path from 'node:path';
import {
  ValueError, parseBoolean, parseChoice, parseDuration, parseFingerprints, parseInteger, parseList, parseSize,
} from './parse.js';

export interface ParseContext {
  /** Folder relative paths are resolved against: the .env file's folder, else the working directory. */
  baseDir: string;
}

export type Section =
  | 'Server' | 'Authentication' | 'Host key' | 'Folders and files' | 'Selection' | 'Transfer' | 'Retry' | 'Logging';

export interface SettingSpec<T> {
  env: string;
  section: Section;
  help: string;
  /** Raw default, parsed exactly like user input. Absent: the setting is unset unless given. */
  default?: string;
  example: string;
  /** Needed before anything can connect. */
  required?: true;
  /** Never logged, never echoed in an error. */
  secret?: true;
  /** Shown in .env.example commented out, as a tuning knob most people leave alone. */
  advanced?: true;
  parse: (raw: string, ctx: ParseContext) => T;
}

function setting<const S extends SettingSpec<unknown>>(spec: S): S {
  return spec;
}

const text = (raw: string): string => {
  if (raw.trim() === '') throw new ValueError('is empty');
  return raw;
};

/** Windows and POSIX paths alike; `~` means the home folder, as people write it in .env files. */
export function resolvePath(raw: string, ctx: ParseContext): string {
  const trimmed = raw.trim();
  if (trimmed === '') throw new ValueError('is empty');
  const expanded = trimmed === '~' || /^~[\\/]/.test(trimmed) ? path.join(os.homedir(), trimmed.slice(1)) : trimmed;
  return path.resolve(ctx.baseDir, expanded);
}

const seconds = (raw: string) => parseDuration(raw);

export const SETTINGS = {
  host: setting({
    env: 'SFTP_HOST', section: 'Server', required: true,
    help: 'SFTP server host name or IP address.', example: 'sftp.example.com',
    parse: (raw) => {
      const v = text(raw).trim();
      if (/[\s/]/.test(v)) throw new ValueError(`'${v}' is not a host name`);
      return v;
    },
  }),
  port: setting({
    env: 'SFTP_PORT', section: 'Server', default: '22', example: '22',
    help: 'SFTP server TCP port.',
    parse: (raw) => parseInteger(raw, 1, 65535),
  }),
  user: setting({
    env: 'SFTP_USER', section: 'Server', required: true, example: 'ipi',
    help: 'User name to log in as.', parse: (raw) => text(raw).trim(),
  }),
  remoteDir: setting({
    env: 'SFTP_DIR', section: 'Server', required: true, example: '/outgoing/ipi',
    help: 'Remote folder that holds the IPI files.',
    parse: (raw) => text(raw).trim(),
  }),
  password: setting({
    env: 'SFTP_PASS', section: 'Authentication', secret: true, example: 'change-me',
    help: 'Password. Prefer a key (SFTP_KEY); if you keep a password here, make the .env readable only by its owner.',
    parse: (raw) => raw,
  }),
  keyFile: setting({
    env: 'SFTP_KEY', section: 'Authentication', example: '~/.ssh/id_ed25519',
    help: 'Private key file (OpenSSH or PEM format). Relative paths are taken from the .env file\'s folder.',
    parse: resolvePath,
  }),
  keyPassphrase: setting({
    env: 'SFTP_KEY_PASSPHRASE', section: 'Authentication', secret: true, example: 'key-passphrase',
    help: 'Passphrase of SFTP_KEY, if it has one.', parse: (raw) => raw,
  }),
  agent: setting({
    env: 'SFTP_AGENT', section: 'Authentication', example: '/run/user/1000/ssh-agent.sock',
    help: 'SSH agent socket (or "pageant" on Windows). Default: $SSH_AUTH_SOCK when set.',
    parse: (raw) => text(raw).trim(),
  }),
  hostKey: setting({
    env: 'SFTP_HOST_KEY', section: 'Host key', example: 'SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s',
    help: 'Pinned server host key fingerprint(s), as `ssh-keygen -lf` prints them; comma-separated. When set, known_hosts is not consulted.',
    parse: parseFingerprints,
  }),
  knownHosts: setting({
    env: 'SFTP_KNOWN_HOSTS', section: 'Host key', default: '~/.ssh/known_hosts', example: '~/.ssh/known_hosts',
    help: 'OpenSSH known_hosts file used to check the server\'s host key when SFTP_HOST_KEY is not set.',
    parse: resolvePath,
  }),
  localDir: setting({
    env: 'LOCAL_DIR', section: 'Folders and files', default: './local_downloads', example: './local_downloads',
    help: 'Where files are downloaded (as NAME.part until verified).', parse: resolvePath,
  }),
  serverDir: setting({
    env: 'SERVER_DIR', section: 'Folders and files', default: './synced_server', example: './synced_server',
    help: 'Where verified files are published for consumers; a file appears there whole or not at all.',
    parse: resolvePath,
  }),
  markerFile: setting({
    env: 'LAST_FILE_RECORD', section: 'Folders and files', default: './last_file.txt', example: './last_file.txt',
    help: 'Marker: one line, the name of the last file fully delivered. The lock and history files live beside it.',
    parse: resolvePath,
  }),
  publishMode: setting({
    env: 'PUBLISH_MODE', section: 'Folders and files', default: 'copy', example: 'copy', advanced: true,
    help: 'How a verified file reaches SERVER_DIR: copy (keeps LOCAL_DIR copy; a copy-on-write clone where the filesystem can), hardlink (same filesystem only), move.',
    parse: (raw) => parseChoice(raw, ['copy', 'hardlink', 'move'] as const),
  }),
  pattern: setting({
    env: 'FILE_PATTERN', section: 'Selection', default: 'IPI*', example: 'IPI*',
    help: 'Glob the remote file names must match (case-sensitive). `*IPI*` reproduces FTP_IPI.py\'s substring filter.',
    parse: (raw) => text(raw).trim(),
  }),
  orderBy: setting({
    env: 'ORDER_BY', section: 'Selection', default: 'date', example: 'date',
    help: 'Chronological order of files: date (the date in the name: YYYYMMDD or YYYY-MM-DD, optional time; ties by name), mtime (server modification time), name.',
    parse: (raw) => parseChoice(raw, ['date', 'mtime', 'name'] as const),
  }),
  minAge: setting({
    env: 'MIN_AGE', section: 'Selection', default: '0', example: '2m',
    help: 'Leave files younger than this (by server mtime) for a later run. Seconds, or with a unit.',
    parse: seconds,
  }),
  settleTime: setting({
    env: 'SETTLE_TIME', section: 'Selection', default: '1', example: '1', advanced: true,
    help: 'Pause between the listing and the second look at the first file; a file whose size or mtime changed in between is still being written and waits for a later run.',
    parse: seconds,
  }),
  chunkSize: setting({
    env: 'CHUNK_SIZE', section: 'Transfer', default: '2MiB', example: '2MiB',
    help: 'Download chunk size: each chunk is written with one write, and the resume point advances chunk by chunk.',
    parse: (raw) => {
      const n = parseSize(raw);
      if (n < 32 * 1024 || n > 256 * 1024 * 1024) throw new ValueError(`${raw} is out of range (32KiB to 256MiB)`);
      return n;
    },
  }),
  chunksInFlight: setting({
    env: 'CHUNKS_IN_FLIGHT', section: 'Transfer', default: '4', example: '4', advanced: true,
    help: 'Chunks requested at once. Buffers take at most CHUNK_SIZE x (CHUNKS_IN_FLIGHT + 4): two chunks being written, two lent to publishing. 4 (8 MiB asked for, more than the SSH channel window) measured as fast as 8 with 8 MiB less memory; 2 was slower (BENCHMARKS.md).',
    parse: (raw) => parseInteger(raw, 1, 64),
  }),
  readSize: setting({
    env: 'READ_SIZE', section: 'Transfer', default: '255KiB', example: '255KiB', advanced: true,
    help: 'Largest single SFTP read request; lowered automatically to what the server announces (limits@openssh.com). A chunk is split into equal reads of at most this size.',
    parse: (raw) => {
      const n = parseSize(raw);
      if (n < 1024 || n > 4 * 1024 * 1024) throw new ValueError(`${raw} is out of range (1KiB to 4MiB)`);
      return n;
    },
  }),
  directIo: setting({
    env: 'DIRECT_IO', section: 'Transfer', default: 'auto', example: 'auto', advanced: true,
    help: 'Write whole chunks with O_DIRECT (Linux), bypassing the page cache: a large download leaves no second copy in memory and the final fsync little to flush. auto: on ext4 and XFS; on: any filesystem that accepts it; off: never.',
    parse: (raw) => parseChoice(raw, ['auto', 'on', 'off'] as const),
  }),
  connectTimeout: setting({
    env: 'CONNECT_TIMEOUT', section: 'Transfer', default: '30', example: '30', advanced: true,
    help: 'Time allowed to connect, exchange keys and log in.', parse: seconds,
  }),
  dataTimeout: setting({
    env: 'DATA_TIMEOUT', section: 'Transfer', default: '60', example: '60',
    help: 'A transfer that receives no data for this long is abandoned and retried (resuming).', parse: seconds,
  }),
  keepaliveInterval: setting({
    env: 'KEEPALIVE_INTERVAL', section: 'Transfer', default: '15', example: '15',
    help: 'SSH keepalive interval (also used for TCP keepalive). 0 turns SSH keepalive off.', parse: seconds,
  }),
  keepaliveCountMax: setting({
    env: 'KEEPALIVE_COUNT_MAX', section: 'Transfer', default: '4', example: '4', advanced: true,
    help: 'Unanswered keepalives before the connection is declared dead.', parse: (raw) => parseInteger(raw, 1, 100),
  }),
  rekeyBytes: setting({
    env: 'REKEY_BYTES', section: 'Transfer', default: '512MiB', example: '512MiB',
    help: 'Renegotiate session keys after this much data (OpenSSH\'s RekeyLimit). 0 leaves it to the server.',
    parse: parseSize,
  }),
  retries: setting({
    env: 'RETRIES', section: 'Retry', default: '7', example: '7',
    help: 'Retries after a failed connection or transfer before the run gives up (exit 1). The count starts again after an attempt that moved data.',
    parse: (raw) => parseInteger(raw, 0, 1000),
  }),
  retryDelays: setting({
    env: 'RETRY_DELAYS', section: 'Retry', default: '5,10,30,60,120,300,600', example: '5,10,30,60,120,300,600',
    help: 'Wait before each retry, comma-separated; the last one repeats.',
    parse: (raw) => parseList(raw).map(parseDuration),
  }),
  logFile: setting({
    env: 'LOG_FILE', section: 'Logging', default: './logs/sftp_transfer.log', example: './logs/sftp_transfer.log',
    help: 'Log file (timestamps, all levels from LOG_LEVEL up). Set to "none" for console only.',
    parse: (raw, ctx) => (raw.trim().toLowerCase() === 'none' ? null : resolvePath(raw, ctx)),
  }),
  logLevel: setting({
    env: 'LOG_LEVEL', section: 'Logging', default: 'info', example: 'info',
    help: 'error, warn, info or debug.',
    parse: (raw) => parseChoice(raw, ['error', 'warn', 'info', 'debug'] as const),
  }),
  logMaxSize: setting({
    env: 'LOG_MAX_SIZE', section: 'Logging', default: '10MiB', example: '10MiB', advanced: true,
    help: 'Rotate LOG_FILE when it reaches this size.', parse: parseSize,
  }),
  logMaxFiles: setting({
    env: 'LOG_MAX_FILES', section: 'Logging', default: '10', example: '10', advanced: true,
    help: 'Rotated log files kept.', parse: (raw) => parseInteger(raw, 1, 1000),
  }),
} as const;

export type SettingName = keyof typeof SETTINGS;
type Spec<K extends SettingName> = (typeof SETTINGS)[K];
type Parsed<K extends SettingName> = ReturnType<Spec<K>['parse']>;
type Always<K extends SettingName> = Spec<K> extends { default: string } | { required: true } ? true : false;

/** The validated settings: a value is `undefined` only where the table gives no default and it is optional. */
export type Settings = {
  readonly [K in SettingName]: Always<K> extends true ? Parsed<K> : Parsed<K> | undefined;
};

export const SETTING_NAMES = Object.keys(SETTINGS) as SettingName[];

/** `SFTP_HOST` -> `--sftp-host`: flags are derived from env keys so one name is all a user learns. */
export function flagOf(name: SettingName): string {
  return SETTINGS[name].env.toLowerCase().replace(/_/g, '-');
}
