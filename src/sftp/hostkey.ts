// Host key trust, as OpenSSH decides it: a pinned fingerprint, or the known_hosts file
// (plain, wildcard and hashed host patterns, [host]:port, @revoked). Pure except for the
// two small file helpers at the end.
import { createHash, createHmac } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

export interface KnownHostEntry {
  marker: '@revoked' | '@cert-authority' | null;
  patterns: string;
  keyType: string;
  keyBase64: string;
}

export type Verdict =
  | { trusted: true; how: string }
  | { trusted: false; reason: 'unknown' | 'changed' | 'revoked' | 'pin-mismatch'; detail: string };

/** 'SHA256:<base64, no padding>' exactly as `ssh-keygen -lf` prints it. */
export function fingerprintOf(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

/** The key type name at the start of an SSH public key blob ("ssh-ed25519", ...). */
export function keyTypeOf(keyBlob: Buffer): string {
  const len = keyBlob.readUInt32BE(0);
  return keyBlob.subarray(4, 4 + len).toString('latin1');
}

/** How OpenSSH names a host in known_hosts: bare on port 22, else "[host]:port". */
export function hostToken(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

export function knownHostsLine(host: string, port: number, keyBlob: Buffer): string {
  return `${hostToken(host, port)} ${keyTypeOf(keyBlob)} ${keyBlob.toString('base64')}`;
}

export function parseKnownHosts(content: string): KnownHostEntry[] {
  const entries: KnownHostEntry[] = [];
  for (const rawLine of content.split(/\r?\n/)) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(/\s+/);
    let marker: KnownHostEntry['marker'] = null;
    if (fields[0] === '@revoked' || fields[0] === '@cert-authority') marker = fields.shift() as KnownHostEntry['marker'];
    const [patterns, keyType, keyBase64] = fields;
    if (!patterns || !keyType || !keyBase64) continue; // malformed lines are ignored, as ssh does
    entries.push({ marker, patterns, keyType, keyBase64 });
  }
  return entries;
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 'i');
}

function hashedMatch(pattern: string, token: string): boolean {
  // |1|base64(salt)|base64(HMAC-SHA1(salt, host))
  const m = /^\|1\|([^|]+)\|([^|]+)$/.exec(pattern);
  if (!m) return false;
  const mac = createHmac('sha1', Buffer.from(m[1]!, 'base64')).update(token).digest('base64');
  return mac === m[2];
}

/** OpenSSH's pattern-list rule: any negated match excludes, else any positive match includes. */
export function hostMatches(patterns: string, host: string, port: number): boolean {
  // ssh lowercases the host name before looking it up (and before hashing it).
  const token = hostToken(host.toLowerCase(), port);
  if (patterns.startsWith('|')) return hashedMatch(patterns, token);
  let matched = false;
  for (const p of patterns.split(',')) {
    const negated = p.startsWith('!');
    const pat = negated ? p.slice(1) : p;
    if (globToRegExp(pat).test(token)) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

export function entriesFor(entries: readonly KnownHostEntry[], host: string, port: number): KnownHostEntry[] {
  return entries.filter((e) => e.marker !== '@cert-authority' && hostMatches(e.patterns, host, port));
}

export function verifyHostKey(
  keyBlob: Buffer,
  trust: { pinned?: readonly string[]; known: readonly KnownHostEntry[]; host: string; port: number },
): Verdict {
  const fp = fingerprintOf(keyBlob);
  if (trust.pinned && trust.pinned.length > 0) {
    return trust.pinned.includes(fp)
      ? { trusted: true, how: 'pinned SFTP_HOST_KEY' }
      : { trusted: false, reason: 'pin-mismatch', detail: `the server's host key ${fp} is not the pinned SFTP_HOST_KEY` };
  }
  const b64 = keyBlob.toString('base64');
  const mine = entriesFor(trust.known, trust.host, trust.port);
  if (mine.some((e) => e.marker === '@revoked' && e.keyBase64 === b64)) {
    return { trusted: false, reason: 'revoked', detail: `the server's host key ${fp} is marked @revoked in known_hosts` };
  }
  if (mine.some((e) => e.marker === null && e.keyBase64 === b64)) return { trusted: true, how: 'known_hosts' };
  const type = keyTypeOf(keyBlob);
  if (mine.some((e) => e.marker === null && e.keyType === type)) {
    return { trusted: false, reason: 'changed', detail: `the server's ${type} host key CHANGED: it is now ${fp}, which known_hosts does not have. This may be an attack (or the server was reinstalled)` };
  }
  return { trusted: false, reason: 'unknown', detail: `the server's host key ${fp} (${type}) is not in known_hosts` };
}

/**
 * Host key algorithms in the order to offer: the types known_hosts has for this host first,
 * as OpenSSH does, so a server with several keys shows us the one we can check.
 */
export function preferredHostKeyAlgorithms(known: readonly KnownHostEntry[], host: string, port: number): string[] {
  const out: string[] = [];
  for (const e of entriesFor(known, host, port)) {
    if (e.marker !== null) continue;
    const algos = e.keyType === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [e.keyType];
    for (const a of algos) if (!out.includes(a)) out.push(a);
  }
  return out;
}

export async function readKnownHosts(file: string): Promise<KnownHostEntry[]> {
  try {
    return parseKnownHosts(await fs.readFile(file, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** --accept-new-host-key: record a first-seen key, as `StrictHostKeyChecking accept-new` does. */
export async function appendKnownHost(file: string, line: string): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  let prefix = '';
  try {
    const existing = await fs.readFile(file, 'utf8');
    if (existing.length > 0 && !existing.endsWith('\n')) prefix = '\n';
  } catch {
    /* new file */
  }
  await fs.appendFile(file, `${prefix}${line}\n`, { mode: 0o600 });
}
