// Logging for people (console) and for the record (LOG_FILE, timestamped, rotated by size).
// Every line passes through one scrubber, so a password or passphrase cannot reach a log
// even if a library puts it in an error message.
import fs from 'node:fs';
import path from 'node:path';
import winston from 'winston';

export interface Logger {
  error(msg: string): void;
  warn(msg: string): void;
  info(msg: string): void;
  debug(msg: string): void;
}

export interface LogOptions {
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

export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  // Longest first: a short secret inside a longer one must not leave the longer one's rest.
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) if (s.length > 0) out = out.split(s).join('***');
  return out;
}

export function createLogger(opts: LogOptions): ClosableLogger {
  const scrubber = winston.format((info) => {
    info.message = scrub(String(info.message), opts.secrets);
    return info;
  });
  const transports: winston.transport[] = [];
  if (!opts.quietConsole) {
    transports.push(new winston.transports.Console({
      stderrLevels: opts.allToStderr ? ['error', 'warn', 'info', 'debug'] : ['error', 'warn'],
      format: winston.format.combine(
        winston.format.timestamp({ format: 'HH:mm:ss' }),
        winston.format.printf((i) => `${i.timestamp} ${i.level === 'info' ? '' : `${i.level.toUpperCase()}: `}${i.message}`),
      ),
    }));
  }
  if (opts.file) {
    fs.mkdirSync(path.dirname(opts.file), { recursive: true });
    transports.push(new winston.transports.File({
      filename: opts.file,
      maxsize: opts.maxSize,
      maxFiles: opts.maxFiles,
      tailable: true,
      format: winston.format.combine(
        winston.format.timestamp(),
        winston.format.printf((i) => `${i.timestamp} ${i.level.toUpperCase().padEnd(5)} [${process.pid}] ${i.message}`),
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
    close: () => new Promise<void>((resolve) => {
      // Resolve when every transport has flushed, so an exit right after loses no line.
      logger.once('finish', () => setImmediate(resolve));
      logger.end();
    }),
  };
}

/** A logger for code paths that must not print (and for unit tests). */
export const silentLogger: Logger = { error() {}, warn() {}, info() {}, debug() {} };
