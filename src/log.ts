// Logging for people (console) and for the record (LOG_FILE, timestamped, rotated by size).
// Every line passes through one scrubber, so a password or passphrase cannot reach a log
// even if a library puts it in an error message.
import fs from 'node:fs';
import path from 'node:path';
import winston from 'winston';
import { makeDirSync } from './util/folders.js';

export interface Logger {
  error(msg: string): void;
  warn(msg: string): void;
  info(msg: string): void;
  debug(msg: string): void;
  /** An info line for LOG_FILE only: what the console already shows another way (the live progress bar). */
  record(msg: string): void;
}

export interface LogOptions {
  /** Names the program in each LOG_FILE line: ipi-pull and ipi-push may share one file. */
  tool: string;
  level: 'error' | 'warn' | 'info' | 'debug';
  file: string | null;
  maxSize: number;
  maxFiles: number;
  secrets: readonly string[];
  /** --json: stdout carries the machine-readable summary, so every log line goes to stderr. */
  allToStderr: boolean;
  /** Print nothing on the console (tests of the file output, status --json). */
  quietConsole?: boolean;
}

export interface ClosableLogger extends Logger {
  close(): Promise<void>;
}

/**
 * Below this length a secret is hidden only where it stands alone. Replaced everywhere, a
 * password like `p` or `ipi` would turn every line into asterisks ("/opt/***" for /opt/ipi,
 * "***-push"), hiding what the log is for while protecting nothing.
 */
export const SHORT_SECRET = 6;

/** Where a short secret counts as standing alone: between these, or at either end of the text (end of a sentence too). */
const DELIMITER = /[\s=:@,;.!?'"()[\]{}<>]/;

export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  // Longest first: a short secret inside a longer one must not leave the longer one's rest.
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) {
    if (s.length === 0) continue;
    out = s.length >= SHORT_SECRET ? out.split(s).join('***') : scrubStandalone(out, s);
  }
  return out;
}

function scrubStandalone(text: string, secret: string): string {
  const parts = text.split(secret);
  let out = parts[0]!;
  for (let i = 1; i < parts.length; i++) {
    // Neighbours in the original text: the end of the part before, the start of the part after.
    const before = parts[i - 1]!.at(-1) ?? (i === 1 ? '' : secret.at(-1)!);
    const after = parts[i]![0] ?? (i === parts.length - 1 ? '' : secret[0]!);
    const alone = (before === '' || DELIMITER.test(before)) && (after === '' || DELIMITER.test(after));
    out += (alone ? '***' : secret) + parts[i];
  }
  return out;
}

const FILE_ONLY = Symbol('file only');

export function createLogger(opts: LogOptions): ClosableLogger {
  const scrubber = winston.format((info) => {
    info.message = scrub(String(info.message), opts.secrets);
    return info;
  });
  const notFileOnly = winston.format((info) => (info[FILE_ONLY] ? false : info));
  const transports: winston.transport[] = [];
  if (!opts.quietConsole) {
    transports.push(new winston.transports.Console({
      stderrLevels: opts.allToStderr ? ['error', 'warn', 'info', 'debug'] : ['error', 'warn'],
      format: winston.format.combine(
        notFileOnly(),
        winston.format.timestamp({ format: 'HH:mm:ss' }),
        winston.format.printf((i) => `${i.timestamp} ${i.level === 'info' ? '' : `${i.level.toUpperCase()}: `}${i.message}`),
      ),
    }));
  }
  if (opts.file) {
    makeDirSync(path.dirname(opts.file));
    // winston reports a file it cannot open later, as an event nobody sees: the run would go
    // on with no log at all. Open it once here so that fails now, naming LOG_FILE.
    fs.closeSync(fs.openSync(opts.file, 'a'));
    transports.push(new winston.transports.File({
      filename: opts.file,
      maxsize: opts.maxSize,
      maxFiles: opts.maxFiles,
      tailable: true,
      format: winston.format.combine(
        winston.format.timestamp(),
        winston.format.printf((i) => `${i.timestamp} ${i.level.toUpperCase().padEnd(5)} ${opts.tool}[${process.pid}] ${i.message}`),
      ),
    }));
  }
  const logger = winston.createLogger({
    level: opts.level,
    format: scrubber(),
    transports: transports.length ? transports : [new winston.transports.Console({ silent: true })],
  });
  return {
    error: (m) => logger.error(m),
    warn: (m) => logger.warn(m),
    info: (m) => logger.info(m),
    debug: (m) => logger.debug(m),
    record: (m) => logger.info(m, { [FILE_ONLY]: true }),
    close: async () => {
      await drained(logger);
      await new Promise<void>((resolve) => {
        // Resolve when every transport has flushed, so an exit right after loses no line.
        logger.once('finish', () => setImmediate(resolve));
        logger.end();
      });
    },
  };
}

/**
 * Wait until the logger has handed every line to its transports. winston's end() ends the
 * transports at once, while lines a slow transport (the file, after a burst of long lines)
 * has not taken yet still wait inside the logger: they would then be written after the end,
 * an 'error' nobody can catch that kills the process before its --json summary is out
 * (winstonjs/winston#2219). Bounded, so a transport that never drains cannot hang the exit.
 */
async function drained(stream: { readableLength: number; writableLength: number }, limitMs = 10_000): Promise<void> {
  const until = Date.now() + limitMs;
  while ((stream.readableLength > 0 || stream.writableLength > 0) && Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A logger for code paths that must not print (and for unit tests). */
export const silentLogger: Logger = { error() {}, warn() {}, info() {}, debug() {}, record() {} };
