// Parsers for the value kinds a setting can have. Each returns the typed value or throws
// ValueError with a short reason; the caller adds the key name and an example.
import net from 'node:net';

export class ValueError extends Error {}

/** Values longer than this are cut when quoted in an error: the line must stay a line. */
const SHOWN_MAX = 60;

/**
 * A value as an error line quotes it: in quotes, on one line, at most SHOWN_MAX characters.
 * A value may run on over several lines of the .env (a quote left open swallows the lines
 * after it, passwords included): control characters are escaped as JSON escapes them, but a
 * backslash is not doubled, so a Windows path reads as written.
 */
export function shown(raw: string): string {
  const chars = [...raw];
  const cut = chars.length > SHOWN_MAX ? `${chars.slice(0, SHOWN_MAX).join('')}...` : raw;
  return `'${cut.replace(/[\p{Cc}\u2028\u2029]/gu, escapeControl)}'`;
}

const CONTROL_ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' };

function escapeControl(c: string): string {
  return CONTROL_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "15" (seconds), "500ms", "1.5s", "5m", "2h" -> milliseconds. */
export function parseDuration(raw: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(raw);
  if (!m) throw new ValueError(`${shown(raw)} is not a duration (a number of seconds, or with a unit: 500ms, 15s, 5m, 2h)`);
  const unit = (m[2] ?? 's').toLowerCase();
  return Math.round(Number(m[1]) * DURATION_UNITS[unit]!);
}

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  k: 1024, kib: 1024, kb: 1000,
  m: 1024 ** 2, mib: 1024 ** 2, mb: 1000 ** 2,
  g: 1024 ** 3, gib: 1024 ** 3, gb: 1000 ** 3,
  t: 1024 ** 4, tib: 1024 ** 4, tb: 1000 ** 4,
};

/** "2097152", "2MiB", "2M" (binary, as OpenSSH reads it), "2MB" (decimal) -> bytes. */
export function parseSize(raw: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(raw);
  const unit = m?.[2]?.toLowerCase() || 'b';
  if (!m || !Object.hasOwn(SIZE_UNITS, unit)) throw new ValueError(`${shown(raw)} is not a size (bytes, or with a unit: 512KiB, 2MiB, 1GiB)`);
  return Math.round(Number(m[1]) * SIZE_UNITS[unit]!);
}

export function parseInteger(raw: string, min: number, max: number): number {
  if (!/^\s*-?\d+\s*$/.test(raw)) throw new ValueError(`${shown(raw)} is not a whole number`);
  const n = Number(raw);
  if (n < min || n > max) throw new ValueError(`${n} is out of range (${min} to ${max})`);
  return n;
}

/** "5,10,30" -> ["5","10","30"]; empty items are an error, not silently dropped. */
export function parseList(raw: string): string[] {
  const items = raw.split(',').map((s) => s.trim());
  if (items.some((s) => s === '')) throw new ValueError(`${shown(raw)} has an empty item (write items separated by commas: 5,10,30)`);
  return items;
}

export function parseBoolean(raw: string): boolean {
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new ValueError(`${shown(raw)} is not yes/no (true, false, 1, 0, yes, no)`);
}

export function parseChoice<T extends string>(raw: string, choices: readonly T[]): T {
  const v = raw.trim().toLowerCase();
  const hit = choices.find((c) => c === v);
  if (!hit) throw new ValueError(`${shown(raw)} is not one of ${choices.join(', ')}`);
  return hit;
}

/** SHA256:<43 base64 chars>, as `ssh-keygen -lf` prints it. Several may be given, comma-separated. */
export function parseFingerprints(raw: string): string[] {
  return parseList(raw).map((fp) => {
    const m = /^SHA256:([A-Za-z0-9+/]{43})=?$/.exec(fp);
    if (!m) throw new ValueError(`${shown(fp)} is not a SHA256 host key fingerprint (as printed by ssh-keygen -lf, e.g. SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s)`);
    return `SHA256:${m[1]}`;
  });
}

/**
 * Why no setting but a secret may hold control characters: a line break in a value is
 * almost always a quote of the .env left open, which runs on into the lines after it. Null
 * when there is none. The value is not quoted: those lines may hold a password.
 */
export function controlCharacterProblem(raw: string): string | null {
  const c = /[\p{Cc}\u2028\u2029]/u.exec(raw)?.[0];
  if (c === undefined) return null;
  if (c === '\n' || c === '\r' || c === '\u2028' || c === '\u2029') {
    return 'the value holds a line break, which no setting can: is a quote of the .env left open, taking in the lines after it? (the value is not shown: it may hold them)';
  }
  return `the value holds the control character ${shown(c)}, which no setting can`;
}

/**
 * A host name, an IPv4 address, or an IPv6 address written bare (`::1`, `fe80::1%eth0`), as
 * net.connect takes it. The value is never quoted back: people mistake this key for a URL and
 * write `sftp://ipi:Password@host` or `ipi:Password@host`, and an error line goes to cron mail
 * and the log.
 */
export function parseHost(raw: string): string {
  const v = raw.trim();
  if (v === '') throw new ValueError('is empty');
  if (v.includes('@') || /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(v)) {
    throw new ValueError('must be a bare host name or address, without sftp:// or user@: the user goes in SFTP_USER and the password in SFTP_PASS (the value is not shown: it may hold a password)');
  }
  if (/^\[[^\]]*\]:\d*$/.test(v) || /^[^:[\]]+:\d*$/.test(v)) {
    throw new ValueError('must be a bare host name or address, without :PORT: the port goes in SFTP_PORT');
  }
  if (v.startsWith('[') || v.endsWith(']')) {
    throw new ValueError('must be a bare host name or address: write an IPv6 address without brackets (e.g. ::1); the port goes in SFTP_PORT');
  }
  if (v.includes(':')) {
    if (net.isIPv6(v)) return v;
    throw new ValueError('is not a host name, an IPv4 address or an IPv6 address');
  }
  const bad = /[^\p{L}\p{N}_.-]/u.exec(v);
  if (bad) throw new ValueError(`is not a host name: it holds ${/\s/.test(bad[0]) ? 'a blank' : shown(bad[0])}, which a host name cannot`);
  return v;
}
