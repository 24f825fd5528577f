// Every setting, declared once: env key, meaning, default, example and how it is parsed.
// The CLI flags, `--help`, `.env.example`, `ipi-pull init` and the README table are all
// generated from (or tested against) this table, so they cannot disagree.
import os from 'node:os';
import { algoOfSuffix } from '../checksum.js';
import { looksLikeWindowsPath, pathFor } from './paths.js';
import { INTERVAL_OR_OFF, MAX_TIMER_MS, TIMEOUT, WAIT, bounded, boundedList, type Limits } from './bounds.js';
import {
  ValueError, parseChoice, shown, parseDuration, parseFingerprints, parseHost, parseList,
} from './parse.js';

export interface ParseContext {
  /** Folder relative paths are resolved against: the .env file's folder, else the working directory. */
  baseDir: string;
  /** The platform paths are for; default process.platform (a parameter so tests can be Windows). */
  platform?: NodeJS.Platform;
}

export type Section =
  | 'Server' | 'Authentication' | 'Host key' | 'Folders and files' | 'Selection' | 'Transfer' | 'Retry' | 'Logging'
  | 'Upload (ipi-push)';

/** The two commands of the package. A setting without `tools` belongs to both. */
export type Tool = 'pull' | 'push';

export interface SettingSpec<T> {
  env: string;
  section: Section;
  help: string;
  /** Raw default, parsed exactly like user input. Absent: the setting is unset unless given. */
  default?: string;
  example: string;
  /** Needed before anything can connect (by the commands in `tools`, when given). */
  required?: true;
  /** Only these commands read it (flags, --help, required check); absent: every command. */
  tools?: readonly Tool[];
  /** Never logged, never echoed in an error. */
  secret?: true;
  /** Shown in .env.example commented out, as a tuning knob most people leave alone. */
  advanced?: true;
  /** A number's limits, enforced by `parse` and stated in `help` (see bounds.ts). */
  limits?: Limits;
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
  const platform = ctx.platform ?? process.platform;
  if (platform !== 'win32' && looksLikeWindowsPath(trimmed)) {
    throw new ValueError(`${shown(trimmed)} looks like a Windows path, and this machine is not Windows (${platform}): write a path of this machine`);
  }
  const paths = pathFor(platform);
  const expanded = trimmed === '~' || /^~[\\/]/.test(trimmed) ? paths.join(os.homedir(), trimmed.slice(1)) : trimmed;
  return paths.resolve(ctx.baseDir, expanded);
}

export type PostAction = { kind: 'none' } | { kind: 'delete' } | { kind: 'move'; dir: string };

function parsePostAction(raw: string): PostAction {
  const v = raw.trim();
  if (v.toLowerCase() === 'none') return { kind: 'none' };
  if (v.toLowerCase() === 'delete') return { kind: 'delete' };
  const m = /^move:(.+)$/i.exec(v);
  if (m && m[1]!.trim() !== '') return { kind: 'move', dir: m[1]!.trim() };
  throw new ValueError(`${shown(raw)} is not none, delete or move:DIR`);
}

/** Python's logging level names that differ from ours. */
const PYTHON_LEVELS: Record<string, string> = { warning: 'warn', critical: 'error' };

export const SETTINGS = {
  host: setting({
    env: 'SFTP_HOST', section: 'Server', required: true,
    help: 'SFTP server host name or IP address (IPv6 without brackets), nothing else: the user goes in SFTP_USER, the port in SFTP_PORT.',
    example: 'sftp.example.com',
    parse: parseHost,
  }),
  port: setting({
    env: 'SFTP_PORT', section: 'Server', default: '22', example: '22',
    ...bounded('integer', { min: 1, max: 65535 }, 'SFTP server TCP port.'),
  }),
  user: setting({
    env: 'SFTP_USER', section: 'Server', required: true, example: 'ipi',
    help: 'User name to log in as.', parse: (raw) => text(raw).trim(),
  }),
  remoteDir: setting({
    env: 'SFTP_DIR', section: 'Server', required: true, tools: ['pull'], example: '/outgoing/ipi',
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
    help: 'Private key file (OpenSSH or PEM format). Relative paths are taken from the .env file\'s folder. Read and checked with the other settings, before anything is written: a file that cannot be read, a .pub, or an encrypted key without the right SFTP_KEY_PASSPHRASE stops the run with exit 2. Read once per run: restart ipi-push --watch after replacing it.',
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
    env: 'LOCAL_DIR', section: 'Folders and files', tools: ['pull'], default: './local_downloads', example: './local_downloads',
    help: 'Where files are downloaded (as NAME.part until verified).', parse: resolvePath,
  }),
  serverDir: setting({
    env: 'SERVER_DIR', section: 'Folders and files', tools: ['pull'], default: './synced_server', example: './synced_server',
    help: 'Where verified files are published for consumers; a file appears there whole or not at all. Must be apart from LOCAL_DIR (neither inside the other) and must not hold LAST_FILE_RECORD.',
    parse: resolvePath,
  }),
  markerFile: setting({
    env: 'LAST_FILE_RECORD', section: 'Folders and files', tools: ['pull'], default: './last_file.txt', example: './last_file.txt',
    help: 'Marker: one line, the name of the last file fully delivered. The lock and history files live beside it.',
    parse: resolvePath,
  }),
  publishMode: setting({
    env: 'PUBLISH_MODE', section: 'Folders and files', tools: ['pull'], default: 'copy', example: 'copy', advanced: true,
    help: 'How a verified file reaches SERVER_DIR: copy (keeps LOCAL_DIR copy; a copy-on-write clone where the filesystem can), hardlink (same filesystem only), move.',
    parse: (raw) => parseChoice(raw, ['copy', 'hardlink', 'move'] as const),
  }),
  postAction: setting({
    env: 'POST_ACTION', section: 'Folders and files', tools: ['pull'], default: 'none', example: 'move:/outgoing/ipi/done',
    help: 'What to do with a file on the server once it is delivered and the marker written: none, delete, or move:DIR (a remote folder). A failure here is logged and never undoes a delivery.',
    parse: parsePostAction,
  }),
  pattern: setting({
    env: 'FILE_PATTERN', section: 'Selection', tools: ['pull'], default: 'IPI*', example: 'IPI*',
    help: 'Glob the remote file names must match (case-sensitive). `*IPI*` reproduces FTP_IPI.py\'s substring filter.',
    parse: (raw) => {
      const glob = text(raw).trim();
      // Names in a listing never hold a separator: such a pattern would match nothing, silently.
      if (/[/\\]/.test(glob)) throw new ValueError(`${shown(glob)} holds a path separator, but it is matched against file names only: put the folder in SFTP_DIR`);
      return glob;
    },
  }),
  orderBy: setting({
    env: 'ORDER_BY', section: 'Selection', tools: ['pull'], default: 'date', example: 'date',
    help: 'Chronological order of files: date (the date in the name: YYYYMMDD or YYYY-MM-DD, optional time; ties by name), mtime (server modification time), name.',
    parse: (raw) => parseChoice(raw, ['date', 'mtime', 'name'] as const),
  }),
  startFrom: setting({
    env: 'START_FROM', section: 'Selection', tools: ['pull'], default: 'earliest', example: 'earliest',
    help: 'First run without a marker: earliest (every file on the server, oldest first) or latest (only the newest file).',
    parse: (raw) => parseChoice(raw, ['earliest', 'latest'] as const),
  }),
  minAge: setting({
    env: 'MIN_AGE', section: 'Selection', tools: ['pull'], default: '0', example: '2m',
    help: 'Leave files younger than this (by server mtime) for a later run. Seconds, or with a unit.',
    parse: parseDuration,
  }),
  settleTime: setting({
    env: 'SETTLE_TIME', section: 'Selection', tools: ['pull'], default: '1', example: '1', advanced: true,
    ...bounded('duration', WAIT, 'Pause between the listing and the second look at the first file; a file whose size or mtime changed in between is still being written and waits for a later run.'),
  }),
  checksumSuffixes: setting({
    env: 'CHECKSUM_SUFFIXES', section: 'Transfer', tools: ['pull'], default: '.sha256,.md5', example: '.sha256,.md5',
    help: 'Companion checksum files looked for beside each file on the server (NAME.sha256 ...; `HASH  NAME` or a bare hash). When one exists the download must match it or it is fetched once more from zero, then refused. "none" turns this off.',
    parse: (raw) => {
      if (raw.trim().toLowerCase() === 'none') return [];
      return parseList(raw).map((suffix) => {
        const algo = algoOfSuffix(suffix);
        if (!suffix.startsWith('.') || !algo) throw new ValueError(`${shown(suffix)} is not a checksum suffix (.sha256, .sha512, .sha1 or .md5)`);
        return { suffix, algo };
      });
    },
  }),
  chunkSize: setting({
    env: 'CHUNK_SIZE', section: 'Transfer', default: '2MiB', example: '2MiB',
    ...bounded('size', { min: 32 * 1024, max: 256 * 1024 * 1024 }, 'Transfer chunk size. Download: each chunk is written locally with one write, and the resume point advances chunk by chunk. Upload: each chunk is read locally with one read and sent as several WRITE requests. All chunk buffers together (CHUNKS_IN_FLIGHT, FILES_IN_FLIGHT) may take at most 4GiB.'),
  }),
  chunksInFlight: setting({
    env: 'CHUNKS_IN_FLIGHT', section: 'Transfer', default: '4', example: '4', advanced: true,
    ...bounded('integer', { min: 1, max: 64 }, 'Chunks requested (download) or being written (upload) at once. Buffers for a large download take at most CHUNK_SIZE x (CHUNKS_IN_FLIGHT + 4): two chunks being written, two lent to publishing. 4 (8 MiB asked for, more than the SSH channel window) measured as fast as 8 with 8 MiB less memory; 2 was slower (BENCHMARKS.md).'),
  }),
  filesInFlight: setting({
    env: 'FILES_IN_FLIGHT', section: 'Transfer', default: '8', example: '8', advanced: true,
    ...bounded('integer', { min: 1, max: 32 }, 'Files of at most one chunk transferred at once; ipi-pull still publishes, records and marks them one by one, in order. Each small file waits on several round trips, so over a link with 10 ms of round trip 200 files of 10 KiB took 7.7 s to download one at a time and 1.8 s eight at a time; 100 such files took 8.6 s and 1.7 s to upload (BENCHMARKS.md). Each takes one buffer of up to CHUNK_SIZE while it is transferred. ipi-push: a file sent and waiting for its check (sha256sum on the server, the rename) makes room for another, up to 4 x this many started at once. 1: one file at a time, start to finish; a larger file always goes alone. A server that limits the files a session may hold open (it refuses an open with a generic failure while others are open) is met with fewer at once on that connection, said once in the log, not retried as a failure.'),
  }),
  readSize: setting({
    env: 'READ_SIZE', section: 'Transfer', tools: ['pull'], default: '255KiB', example: '255KiB', advanced: true,
    ...bounded('size', { min: 1024, max: 4 * 1024 * 1024 }, 'Largest single SFTP read request; lowered automatically to what the server announces (limits@openssh.com). A chunk is split into equal reads of at most this size.'),
  }),
  directIo: setting({
    env: 'DIRECT_IO', section: 'Transfer', tools: ['pull'], default: 'auto', example: 'auto', advanced: true,
    help: 'Write whole chunks with O_DIRECT (Linux), bypassing the page cache: a large download (and its copy into SERVER_DIR) leaves no second copy in memory and the final fsync little to flush. auto: on ext4 and XFS; on: any filesystem that accepts it; off: never.',
    parse: (raw) => parseChoice(raw, ['auto', 'on', 'off'] as const),
  }),
  connectTimeout: setting({
    env: 'CONNECT_TIMEOUT', section: 'Transfer', default: '30', example: '30', advanced: true,
    ...bounded('duration', TIMEOUT, 'Time allowed to connect, exchange keys and log in, and again to start SFTP once logged in.'),
  }),
  dataTimeout: setting({
    env: 'DATA_TIMEOUT', section: 'Transfer', default: '60', example: '60',
    ...bounded('duration', TIMEOUT, 'A transfer that receives no data (download) or no acknowledgement (upload) for this long is abandoned and retried (resuming); so is the connection when any other request (a listing, a stat, an open, a rename) gets no answer this long.'),
  }),
  keepaliveInterval: setting({
    env: 'KEEPALIVE_INTERVAL', section: 'Transfer', default: '15', example: '15',
    ...bounded('duration', INTERVAL_OR_OFF, 'SSH keepalive interval (also used for TCP keepalive). 0 turns SSH keepalive off.'),
  }),
  keepaliveCountMax: setting({
    env: 'KEEPALIVE_COUNT_MAX', section: 'Transfer', default: '4', example: '4', advanced: true,
    ...bounded('integer', { min: 1, max: 100 }, 'Unanswered keepalives before the connection is declared dead.'),
  }),
  rekeyBytes: setting({
    env: 'REKEY_BYTES', section: 'Transfer', default: '512MiB', example: '512MiB',
    ...bounded('size', { min: 1024 * 1024, zero: true }, 'Renegotiate session keys after this much data (OpenSSH\'s RekeyLimit). 0 leaves it to the server; less than 1MiB would rekey all the time.'),
  }),
  retries: setting({
    env: 'RETRIES', section: 'Retry', default: '7', example: '7',
    ...bounded('integer', { min: 0, max: 1000 }, 'Retries after a failed connection or transfer before the run gives up (exit 1). The count starts again after an attempt that moved data. ipi-push --watch never gives up on an unreachable server: its queue waits and drains when the server is back.'),
  }),
  retryDelays: setting({
    env: 'RETRY_DELAYS', section: 'Retry', default: '5,10,30,60,120,300,600', example: '5,10,30,60,120,300,600',
    // Not 0: ipi-push --watch retries an unreachable server for ever, and would spin.
    ...boundedList('duration', { min: 100, max: MAX_TIMER_MS }, 'Wait before each retry, comma-separated; the last one repeats.'),
  }),
  watchDir: setting({
    env: 'WATCH_DIR', section: 'Upload (ipi-push)', required: true, tools: ['push'], example: './outgoing',
    help: 'Local folder whose files (and subfolders) ipi-push uploads. Symbolic links leading outside it are never followed. STATE_FILE, LOG_FILE and METRICS_FILE must be outside it.',
    parse: resolvePath,
  }),
  uploadDir: setting({
    env: 'SFTP_UPLOAD_DIR', section: 'Upload (ipi-push)', required: true, tools: ['push'], example: '/incoming/ipi',
    help: 'Remote folder the files go to, keeping their path relative to WATCH_DIR. The folders of WATCH_DIR, empty ones too, are made there as they appear; none is ever removed.',
    parse: (raw) => text(raw).trim(),
  }),
  stateFile: setting({
    env: 'STATE_FILE', section: 'Upload (ipi-push)', default: './ipi-push-state.json', tools: ['push'], example: './ipi-push-state.json',
    help: 'JSON record of uploaded files (size, mtime, sha256, when) and failed ones (error, attempts, next retry), rewritten atomically. During a run its changes go to NAME.journal first (folded in when the run ends). Its lock file and the append-only upload history (NAME.history.jsonl, one line per file ever uploaded) live beside it.',
    parse: resolvePath,
  }),
  pushSettle: setting({
    env: 'PUSH_SETTLE', section: 'Upload (ipi-push)', default: '3', tools: ['push'], example: '3',
    ...bounded('duration', WAIT, 'A local file is taken only once its size and mtime have not changed for this long (files still being written wait).'),
  }),
  ignore: setting({
    env: 'IGNORE', section: 'Upload (ipi-push)', tools: ['push'],
    default: '.*,*.tmp,*.temp,*.part,*.partial,*.crdownload,*.download,*.swp,*~,~$*',
    example: '.*,*.tmp,*.part,*.swp,*~',
    help: 'Globs of local names never uploaded, comma-separated; matched against each file or folder name, or against the path relative to WATCH_DIR when the glob holds a "/". The default skips hidden, temporary and partial names. "none" uploads everything.',
    parse: (raw) => (raw.trim().toLowerCase() === 'none' ? [] : parseList(raw)),
  }),
  verify: setting({
    env: 'VERIFY', section: 'Upload (ipi-push)', default: 'sha256', tools: ['push'], example: 'sha256',
    help: 'After an upload: size (the remote size must equal the local size) or sha256 (also runs `sha256sum` on the server over SSH; where the server does not allow that, the log says so and only the size is checked).',
    parse: (raw) => parseChoice(raw, ['size', 'sha256'] as const),
  }),
  afterUpload: setting({
    env: 'AFTER_UPLOAD', section: 'Upload (ipi-push)', default: 'keep', tools: ['push'], example: 'archive',
    help: 'What happens to the local file once its upload is verified and recorded: keep, delete, or archive (moved to ARCHIVE_DIR, keeping its relative path). Also done, at the next scan and without uploading again, for a file the state records as uploaded that is still there unchanged (a crash, a failed move, or uploaded while this was keep).',
    parse: (raw) => parseChoice(raw, ['keep', 'delete', 'archive'] as const),
  }),
  archiveDir: setting({
    env: 'ARCHIVE_DIR', section: 'Upload (ipi-push)', tools: ['push'], example: './archive',
    help: 'Where AFTER_UPLOAD=archive moves uploaded files, keeping their relative path. Must be outside WATCH_DIR and must hold neither WATCH_DIR nor STATE_FILE, symbolic links followed.',
    parse: resolvePath,
  }),
  rescanInterval: setting({
    env: 'RESCAN_INTERVAL', section: 'Upload (ipi-push)', default: '5m', tools: ['push'], example: '5m', advanced: true,
    ...bounded('duration', INTERVAL_OR_OFF, 'ipi-push --watch also walks WATCH_DIR this often, for changes the file watcher missed (network shares). 0 turns it off.'),
  }),
  logFile: setting({
    env: 'LOG_FILE', section: 'Logging', default: './logs/sftp_transfer.log', example: './logs/sftp_transfer.log',
    help: 'Log file (timestamps, all levels from LOG_LEVEL up). Set to "none" for console only.',
    parse: (raw, ctx) => (raw.trim().toLowerCase() === 'none' ? null : resolvePath(raw, ctx)),
  }),
  logLevel: setting({
    env: 'LOG_LEVEL', section: 'Logging', default: 'info', example: 'info',
    help: 'error, warn, info or debug. The Python names WARNING and CRITICAL (sftpmonitor\'s config) mean warn and error.',
    parse: (raw) => parseChoice(PYTHON_LEVELS[raw.trim().toLowerCase()] ?? raw, ['error', 'warn', 'info', 'debug'] as const),
  }),
  logMaxSize: setting({
    env: 'LOG_MAX_SIZE', section: 'Logging', default: '10MiB', example: '10MiB', advanced: true,
    ...bounded('size', { min: 1024 }, 'Rotate LOG_FILE when it reaches this size.'),
  }),
  logMaxFiles: setting({
    env: 'LOG_MAX_FILES', section: 'Logging', default: '10', example: '10', advanced: true,
    ...bounded('integer', { min: 1, max: 1000 }, 'Rotated log files kept.'),
  }),
  metricsFile: setting({
    env: 'METRICS_FILE', section: 'Logging', example: '/var/lib/node_exporter/textfile/ipi_pull.prom',
    help: 'Prometheus textfile-collector file, rewritten atomically after every run (last success time, status, files and bytes, pending, duration). Unset: none.',
    parse: resolvePath,
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
/** Does this command read the setting? */
export function appliesTo(name: SettingName, tool: Tool): boolean {
  const tools = (SETTINGS[name] as SettingSpec<unknown>).tools;
  return tools === undefined || tools.includes(tool);
}

export function flagOf(name: SettingName): string {
  return SETTINGS[name].env.toLowerCase().replace(/_/g, '-');
}
