// VERIFY=sha256 on the server's side: `sha256sum` run over the upload's own SSH connection.
//
// Each command is an exec channel, and each channel is a new session on the server: OpenSSH
// 9.2 takes ~100 ms to run even `true` that way, on loopback, before any round trip. One
// command per file made 100 small files take 14 s instead of 1 s. So the files that finish
// while a `sha256sum` runs wait together and are checked by the next one, in one command.
//
// One command at a time: a server caps the channels of a connection (OpenSSH's MaxSessions:
// 10 by default, 2 where hardened; the SFTP channel is one), and a refused channel must not
// read as a server that cannot hash. (Two at a time was measured too: the files then went
// one per command as often as not, and 100 files took no less time.)
import { InterruptedError, PermanentError, TransientError } from '../errors.js';
import type { Logger } from '../log.js';
import { sleep } from '../util/time.js';
import { parseSha256sums, sha256sumBatch, shellQuote } from './decide.js';

/** What this needs of a connection (SftpSession provides it). */
export interface CommandRunner {
  /** Output past `maxOutput` bytes (per stream) is dropped. */
  exec(command: string, timeoutMs: number, maxOutput?: number): Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** Files per `sha256sum` command, and the length of their quoted names: far below ARG_MAX. */
export const SHA256SUM_MAX_FILES = 64;
export const SHA256SUM_MAX_CHARS = 32 * 1024;
/** Pauses before asking again for a channel the server refused after granting one before (1.6 s in all). */
const CHANNEL_WAITS_MS = [25, 50, 100, 200, 400, 800];

interface Waiter {
  path: string;
  size: number;
  resolve: (digest: string | null) => void;
  reject: (err: Error) => void;
}

export class ServerHasher {
  /** undefined: not tried yet; null: it worked on this connection; a string: why the server cannot (said once). */
  private unavailable: string | null | undefined = undefined;
  private waiting: Waiter[] = [];
  private running = false;

  /** `signal` (a stop) cuts short the wait for a refused channel: the files stay sent, unchecked, for the next run. */
  constructor(private readonly runner: CommandRunner, private readonly log: Logger, private readonly signal?: AbortSignal) {}

  /**
   * The server's SHA-256 of `remotePath` (`size` bytes: it sets the time allowed), or null
   * when the server cannot compute one: logged once per connection, never pretended.
   * Rejects (TransientError) when the server could hash before but not this file.
   */
  digest(remotePath: string, size: number): Promise<string | null> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ path: remotePath, size, resolve, reject });
      this.drain();
    });
  }

  private drain(): void {
    if (this.running || this.waiting.length === 0) return;
    const n = sha256sumBatch(this.waiting.map((w) => w.path), SHA256SUM_MAX_FILES, SHA256SUM_MAX_CHARS);
    const batch = this.waiting.splice(0, n);
    this.running = true;
    void this.check(batch)
      .catch((err: Error) => batch.forEach((w) => w.reject(err)))
      .finally(() => {
        this.running = false;
        this.drain();
      });
  }

  /** One command for `batch`; settles every waiter in it. */
  private async check(batch: Waiter[]): Promise<void> {
    const settle = (digestOf: (w: Waiter) => string | null | Error) => {
      for (const w of batch) {
        const d = digestOf(w);
        if (d instanceof Error) w.reject(d);
        else w.resolve(d);
      }
    };
    if (typeof this.unavailable === 'string') return settle(() => null);
    const paths = [...new Set(batch.map((w) => w.path))];
    const command = `sha256sum -- ${paths.map(shellQuote).join(' ')}`;
    // A second per 50 MB for the server to read the files, and a generous floor.
    const timeoutMs = 30_000 + Math.ceil(batch.reduce((sum, w) => sum + w.size, 0) / 50_000);
    this.log.debug(`sha256sum of ${paths.length} file(s) on the server`);
    // Room for the whole answer, or the last files' digests would be cut off: per file a digest,
    // a mark, two separators, the name (GNU doubles its backslashes) and a line break.
    const maxOutput = 4096 + paths.reduce((n, p) => n + 70 + 2 * Buffer.byteLength(p), 0);
    let r;
    for (let refused = 0; ; refused++) {
      try {
        r = await this.runner.exec(command, timeoutMs, maxOutput);
        break;
      } catch (err) {
        if (!(err instanceof PermanentError)) return settle(() => err as Error);
        if (this.unavailable !== null) return settle(() => this.cannot(err.message));
        // It worked earlier on this connection: the server has no channel free yet, not no way
        // to hash (sshd frees a closed channel's session a moment after the close; MaxSessions).
        if (refused >= CHANNEL_WAITS_MS.length) {
          const e = new TransientError(`${err.message}, after it had worked on this connection: no channel free on the server (its MaxSessions?)`);
          return settle(() => e);
        }
        const stopped = await sleep(CHANNEL_WAITS_MS[refused]!, this.signal).then(() => false, () => true);
        if (stopped) {
          const e = new InterruptedError(String(this.signal?.reason ?? 'a signal'));
          return settle(() => e);
        }
      }
    }
    const digests = parseSha256sums(r.stdout);
    const said = (r.stderr || r.stdout).trim().split('\n')[0]?.slice(0, 200) ?? '';
    if (digests.size === 0 && this.unavailable === undefined) {
      const why = r.code === 127 ? 'sha256sum is not installed there'
        : /no such file/i.test(said) ? `its shell does not see ${paths[0]} (an SFTP chroot?)`
          : `sha256sum answered ${r.code === null ? 'nothing' : `exit ${r.code}`}${said ? `: ${JSON.stringify(said)}` : ''}`;
      return settle(() => this.cannot(why));
    }
    if (digests.size > 0) this.unavailable = null;
    // The server hashes, but not this file: a problem of the file (gone from under us), so it
    // is retried, and the connection is not dropped to size checks.
    const about = (p: string) => r.stderr.split('\n').find((line) => line.includes(p))?.trim().slice(0, 200) ?? said;
    settle((w) => digests.get(w.path) ?? new TransientError(`the server's sha256sum gave no digest for ${w.path}${about(w.path) ? `: ${JSON.stringify(about(w.path))}` : ''}`));
  }

  private cannot(why: string): null {
    if (typeof this.unavailable !== 'string') {
      this.unavailable = why;
      this.log.warn(`VERIFY=sha256: the server cannot compute SHA-256 (${why}); uploads on this connection are checked by size only, and recorded as such`);
    }
    return null;
  }
}
