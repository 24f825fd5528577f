import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  appendKnownHost, entriesFor, fingerprintOf, hostMatches, hostToken, keyTypeOf, knownHostsLine, parseKnownHosts,
  preferredHostKeyAlgorithms, readKnownHosts, verifyHostKey, type KnownHostEntry,
} from '../../src/sftp/hostkey.js';

interface GenKey {
  blob: Buffer;
  base64: string;
  type: string;
  /** What `ssh-keygen -lf` prints as the fingerprint. */
  fp: string;
}

let dir: string;
let k1: GenKey; // ed25519
let k2: GenKey; // another ed25519: "the same host, a changed key"
let k3: GenKey; // ecdsa: "the same host, another key type"

function genKey(name: string, type: string): GenKey {
  const file = path.join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', `test-${name}`, '-f', file], { stdio: 'ignore' });
  const [keyType, base64] = fs.readFileSync(`${file}.pub`, 'utf8').trim().split(/\s+/);
  const listed = execFileSync('ssh-keygen', ['-lf', `${file}.pub`], { encoding: 'utf8' }).trim().split(/\s+/);
  return { blob: Buffer.from(base64!, 'base64'), base64: base64!, type: keyType!, fp: listed[1]! };
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-hostkey-'));
  k1 = genKey('k1', 'ed25519');
  k2 = genKey('k2', 'ed25519');
  k3 = genKey('k3', 'ecdsa');
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('fingerprintOf / keyTypeOf / knownHostsLine', () => {
  test('the fingerprint matches ssh-keygen -lf exactly', () => {
    for (const k of [k1, k2, k3]) {
      assert.match(k.fp, /^SHA256:[A-Za-z0-9+/]{43}$/);
      assert.equal(fingerprintOf(k.blob), k.fp);
    }
    assert.notEqual(k1.fp, k2.fp);
  });

  test('keyTypeOf reads the type from the blob', () => {
    assert.equal(keyTypeOf(k1.blob), 'ssh-ed25519');
    assert.equal(keyTypeOf(k3.blob), k3.type);
    assert.match(k3.type, /^ecdsa-sha2-nistp/);
  });

  test('knownHostsLine is what ssh writes: host token, type, base64', () => {
    assert.equal(knownHostsLine('sftp.example.com', 22, k1.blob), `sftp.example.com ssh-ed25519 ${k1.base64}`);
    assert.equal(knownHostsLine('sftp.example.com', 2222, k1.blob), `[sftp.example.com]:2222 ssh-ed25519 ${k1.base64}`);
  });
});

describe('hostToken', () => {
  test('bare on port 22, [host]:port otherwise', () => {
    assert.equal(hostToken('sftp.example.com', 22), 'sftp.example.com');
    assert.equal(hostToken('sftp.example.com', 2222), '[sftp.example.com]:2222');
    assert.equal(hostToken('10.0.0.5', 23), '[10.0.0.5]:23');
    assert.equal(hostToken('::1', 2222), '[::1]:2222');
  });
});

describe('parseKnownHosts', () => {
  test('reads entries; skips comments, blank lines and malformed lines', () => {
    const content = [
      '# a comment',
      '',
      '   ',
      `sftp.example.com,10.0.0.5 ssh-ed25519 ${k1.base64} a trailing comment`,
      `  [sftp.example.com]:2222\tssh-ed25519   ${k1.base64}`,
      'only-two-fields ssh-ed25519',
      `@revoked * ssh-ed25519 ${k2.base64}`,
      `@cert-authority *.example.com ssh-ed25519 ${k3.base64}`,
      '    # indented comment',
    ].join('\r\n');
    assert.deepEqual(parseKnownHosts(content), [
      { marker: null, patterns: 'sftp.example.com,10.0.0.5', keyType: 'ssh-ed25519', keyBase64: k1.base64 },
      { marker: null, patterns: '[sftp.example.com]:2222', keyType: 'ssh-ed25519', keyBase64: k1.base64 },
      { marker: '@revoked', patterns: '*', keyType: 'ssh-ed25519', keyBase64: k2.base64 },
      { marker: '@cert-authority', patterns: '*.example.com', keyType: 'ssh-ed25519', keyBase64: k3.base64 },
    ]);
  });

  test('an empty file has no entries', () => {
    assert.deepEqual(parseKnownHosts(''), []);
  });

  test('hashed entries written by ssh-keygen -H are read and match their host only', () => {
    const file = path.join(dir, 'known_hosts_hashed');
    fs.writeFileSync(file, [
      `sftp.example.com ssh-ed25519 ${k1.base64}`,
      `[sftp.example.com]:2222 ssh-ed25519 ${k2.base64}`,
      '',
    ].join('\n'));
    execFileSync('ssh-keygen', ['-H', '-f', file], { stdio: 'ignore' });
    const entries = parseKnownHosts(fs.readFileSync(file, 'utf8'));
    assert.equal(entries.length, 2);
    for (const e of entries) {
      assert.match(e.patterns, /^\|1\|[^|]+\|[^|]+$/, 'hashed by ssh-keygen');
      assert.ok(!e.patterns.includes('example'));
    }
    const [h22, h2222] = entries as [KnownHostEntry, KnownHostEntry];
    assert.equal(hostMatches(h22.patterns, 'sftp.example.com', 22), true);
    assert.equal(hostMatches(h22.patterns, 'sftp.example.com', 2222), false);
    assert.equal(hostMatches(h22.patterns, 'other.example.com', 22), false);
    assert.equal(hostMatches(h2222.patterns, 'sftp.example.com', 2222), true);
    assert.equal(hostMatches(h2222.patterns, 'sftp.example.com', 22), false);
    // And through the whole check.
    assert.deepEqual(verifyHostKey(k1.blob, { known: entries, host: 'sftp.example.com', port: 22 }), { trusted: true, how: 'known_hosts' });
    assert.deepEqual(verifyHostKey(k2.blob, { known: entries, host: 'sftp.example.com', port: 2222 }), { trusted: true, how: 'known_hosts' });
    assert.equal(verifyHostKey(k2.blob, { known: entries, host: 'sftp.example.com', port: 22 }).trusted, false);
  });

  test('a hashed entry matches the host name in any case, as ssh (which lowercases it) does',
    () => {
      const file = path.join(dir, 'known_hosts_case');
      fs.writeFileSync(file, `sftp.example.com ssh-ed25519 ${k1.base64}\n`);
      execFileSync('ssh-keygen', ['-H', '-f', file], { stdio: 'ignore' });
      const [e] = parseKnownHosts(fs.readFileSync(file, 'utf8'));
      assert.equal(hostMatches(e!.patterns, 'SFTP.Example.COM', 22), true);
    });
});

describe('hostMatches', () => {
  test('plain names and comma lists, case-insensitively', () => {
    assert.equal(hostMatches('sftp.example.com', 'sftp.example.com', 22), true);
    assert.equal(hostMatches('sftp.example.com', 'SFTP.Example.COM', 22), true);
    assert.equal(hostMatches('a.example.com,sftp.example.com,10.0.0.5', '10.0.0.5', 22), true);
    assert.equal(hostMatches('a.example.com,b.example.com', 'c.example.com', 22), false);
  });

  test('dots are literal, not regex wildcards', () => {
    assert.equal(hostMatches('sftp.example.com', 'sftpXexampleXcom', 22), false);
  });

  test('* and ? wildcards', () => {
    assert.equal(hostMatches('*.example.com', 'sftp.example.com', 22), true);
    assert.equal(hostMatches('*.example.com', 'example.com', 22), false);
    assert.equal(hostMatches('sftp?.example.com', 'sftp1.example.com', 22), true);
    assert.equal(hostMatches('sftp?.example.com', 'sftp12.example.com', 22), false);
    assert.equal(hostMatches('10.0.0.*', '10.0.0.77', 22), true);
    assert.equal(hostMatches('*', 'anything', 22), true);
  });

  test('a negated pattern excludes even when another pattern matches', () => {
    const list = '*.example.com,!bad.example.com';
    assert.equal(hostMatches(list, 'good.example.com', 22), true);
    assert.equal(hostMatches(list, 'bad.example.com', 22), false);
    assert.equal(hostMatches('!bad.example.com,*.example.com', 'bad.example.com', 22), false, 'order does not matter');
  });

  test('a negation alone matches nothing', () => {
    assert.equal(hostMatches('!bad.example.com', 'good.example.com', 22), false);
    assert.equal(hostMatches('!bad.example.com', 'bad.example.com', 22), false);
  });

  test('non-standard ports need the [host]:port form', () => {
    assert.equal(hostMatches('[sftp.example.com]:2222', 'sftp.example.com', 2222), true);
    assert.equal(hostMatches('[sftp.example.com]:2222', 'sftp.example.com', 22), false);
    assert.equal(hostMatches('[sftp.example.com]:2222', 'sftp.example.com', 2223), false);
    assert.equal(hostMatches('sftp.example.com', 'sftp.example.com', 2222), false);
    assert.equal(hostMatches('[*.example.com]:2222', 'sftp.example.com', 2222), true);
    assert.equal(hostMatches('[sftp.example.com]:22', 'sftp.example.com', 22), false, 'port 22 is written bare');
  });
});

describe('entriesFor', () => {
  test('keeps this host\'s entries, revoked included, and drops @cert-authority', () => {
    const known = parseKnownHosts([
      `sftp.example.com ssh-ed25519 ${k1.base64}`,
      `other.example.com ssh-ed25519 ${k2.base64}`,
      `@revoked sftp.example.com ssh-ed25519 ${k2.base64}`,
      `@cert-authority * ssh-ed25519 ${k3.base64}`,
    ].join('\n'));
    const mine = entriesFor(known, 'sftp.example.com', 22);
    assert.deepEqual(mine.map((e) => [e.marker, e.keyBase64]), [[null, k1.base64], ['@revoked', k2.base64]]);
  });
});

describe('verifyHostKey', () => {
  const host = 'sftp.example.com';
  const port = 22;
  const known = (lines: string[]) => parseKnownHosts(lines.join('\n'));

  test('trusted: the key is in known_hosts for this host', () => {
    const v = verifyHostKey(k1.blob, { known: known([`${host} ssh-ed25519 ${k1.base64}`]), host, port });
    assert.deepEqual(v, { trusted: true, how: 'known_hosts' });
  });

  test('trusted when one of several keys of the same type matches', () => {
    const v = verifyHostKey(k2.blob, { known: known([`${host} ssh-ed25519 ${k1.base64}`, `${host} ssh-ed25519 ${k2.base64}`]), host, port });
    assert.equal(v.trusted, true);
  });

  test('unknown: nothing for this host', () => {
    const v = verifyHostKey(k1.blob, { known: known([`other.example.com ssh-ed25519 ${k1.base64}`]), host, port });
    assert.equal(v.trusted, false);
    assert.ok(!v.trusted && v.reason === 'unknown');
    assert.ok(!v.trusted && v.detail.includes(k1.fp) && v.detail.includes('ssh-ed25519') && v.detail.includes('not in known_hosts'));
  });

  test('unknown with an empty known_hosts', () => {
    const v = verifyHostKey(k1.blob, { known: [], host, port });
    assert.ok(!v.trusted && v.reason === 'unknown');
  });

  test('unknown (not changed) when known_hosts only has another key type for the host', () => {
    const v = verifyHostKey(k1.blob, { known: known([`${host} ${k3.type} ${k3.base64}`]), host, port });
    assert.ok(!v.trusted && v.reason === 'unknown');
  });

  test('the same key under another port is not trusted', () => {
    const v = verifyHostKey(k1.blob, { known: known([`${host} ssh-ed25519 ${k1.base64}`]), host, port: 2222 });
    assert.ok(!v.trusted && v.reason === 'unknown');
  });

  test('changed: known_hosts has a different key of the same type', () => {
    const v = verifyHostKey(k2.blob, { known: known([`${host} ssh-ed25519 ${k1.base64}`]), host, port });
    assert.ok(!v.trusted && v.reason === 'changed');
    assert.ok(!v.trusted && v.detail.includes('CHANGED') && v.detail.includes(k2.fp));
  });

  test('revoked: an @revoked line for the key wins over a plain trusting line', () => {
    const v = verifyHostKey(k1.blob, { known: known([`${host} ssh-ed25519 ${k1.base64}`, `@revoked * ssh-ed25519 ${k1.base64}`]), host, port });
    assert.ok(!v.trusted && v.reason === 'revoked');
    assert.ok(!v.trusted && v.detail.includes('@revoked') && v.detail.includes(k1.fp));
  });

  test('a revoked line for another key does not affect this one', () => {
    const v = verifyHostKey(k1.blob, { known: known([`${host} ssh-ed25519 ${k1.base64}`, `@revoked * ssh-ed25519 ${k2.base64}`]), host, port });
    assert.equal(v.trusted, true);
  });

  test('@cert-authority lines never trust a plain key', () => {
    const v = verifyHostKey(k1.blob, { known: known([`@cert-authority * ssh-ed25519 ${k1.base64}`]), host, port });
    assert.ok(!v.trusted && v.reason === 'unknown');
  });

  test('negated host patterns exclude the host', () => {
    const v = verifyHostKey(k1.blob, { known: known([`*.example.com,!${host} ssh-ed25519 ${k1.base64}`]), host, port });
    assert.ok(!v.trusted && v.reason === 'unknown');
  });

  test('pinned: a matching fingerprint is trusted without known_hosts', () => {
    const v = verifyHostKey(k1.blob, { pinned: [k2.fp, k1.fp], known: [], host, port });
    assert.deepEqual(v, { trusted: true, how: 'pinned SFTP_HOST_KEY' });
  });

  test('pin-mismatch: a pin that does not match wins over a trusting known_hosts', () => {
    const v = verifyHostKey(k1.blob, { pinned: [k2.fp], known: known([`${host} ssh-ed25519 ${k1.base64}`]), host, port });
    assert.ok(!v.trusted && v.reason === 'pin-mismatch');
    assert.ok(!v.trusted && v.detail.includes(k1.fp) && v.detail.includes('SFTP_HOST_KEY'));
  });

  test('an empty pin list falls back to known_hosts', () => {
    const v = verifyHostKey(k1.blob, { pinned: [], known: known([`${host} ssh-ed25519 ${k1.base64}`]), host, port });
    assert.deepEqual(v, { trusted: true, how: 'known_hosts' });
  });
});

describe('preferredHostKeyAlgorithms', () => {
  test('the types known for this host, in file order, without duplicates; rsa expands to its SHA-2 signatures', () => {
    const known = parseKnownHosts([
      `sftp.example.com ${k3.type} ${k3.base64}`,
      'sftp.example.com ssh-rsa AAAAB3NzaC1yc2E=',
      `other.example.com ssh-ed25519 ${k1.base64}`,
      `*.example.com ssh-ed25519 ${k1.base64}`,
      `sftp.example.com ${k3.type} ${k3.base64}`,
      `@revoked sftp.example.com ssh-dss AAAAB3NzaC1kc3M=`,
    ].join('\n'));
    assert.deepEqual(preferredHostKeyAlgorithms(known, 'sftp.example.com', 22), [k3.type, 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa', 'ssh-ed25519']);
  });

  test('nothing known: empty (the library default applies)', () => {
    assert.deepEqual(preferredHostKeyAlgorithms([], 'sftp.example.com', 22), []);
    assert.deepEqual(preferredHostKeyAlgorithms(parseKnownHosts(`x ssh-ed25519 ${k1.base64}`), 'sftp.example.com', 22), []);
  });
});

describe('readKnownHosts / appendKnownHost', () => {
  test('a missing file reads as no entries', async () => {
    assert.deepEqual(await readKnownHosts(path.join(dir, 'missing_known_hosts')), []);
  });

  test('append creates the folder and file, and the line reads back as a trusted key', async () => {
    const file = path.join(dir, 'new', 'ssh', 'known_hosts');
    await appendKnownHost(file, knownHostsLine('sftp.example.com', 2222, k1.blob));
    assert.equal(fs.readFileSync(file, 'utf8'), `[sftp.example.com]:2222 ssh-ed25519 ${k1.base64}\n`);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    const v = verifyHostKey(k1.blob, { known: await readKnownHosts(file), host: 'sftp.example.com', port: 2222 });
    assert.equal(v.trusted, true);
  });

  test('append to a file without a final newline starts a new line', async () => {
    const file = path.join(dir, 'known_hosts_nonl');
    fs.writeFileSync(file, `a.example.com ssh-ed25519 ${k2.base64}`);
    await appendKnownHost(file, knownHostsLine('b.example.com', 22, k1.blob));
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    assert.deepEqual(lines, [`a.example.com ssh-ed25519 ${k2.base64}`, `b.example.com ssh-ed25519 ${k1.base64}`, '']);
  });
});
