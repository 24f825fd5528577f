/**
 * Proves the e2e helpers really work, using ssh2's Client directly (not the
 * product code), so a broken product cannot hide a broken test harness.
 *
 * Run: npx tsc -p tsconfig.json && node --test dist/tests/helpers-selftest/helpers.test.js
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import ssh2 from 'ssh2';
import type { Client as SshClient, ConnectConfig, FileEntry, SFTPWrapper, Stats } from 'ssh2';

import { generateValidEd25519, startEmbeddedServer } from './helpers/embedded-server.js';
import { startFaultProxy, type FaultProxy } from './helpers/fault-proxy.js';
import { chosenServerKind, startTestServer, writeRemoteFile } from './helpers/server.js';
import { parseSftpLog, sshdAvailable, startSshd, type SftpServerHandle } from './helpers/sshd.js';
import { sha256Fingerprint } from './helpers/util.js';

const T = { timeout: 30_000 };

// ---------------------------------------------------------------- tiny ssh2 client toolkit

interface Connected {
  client: SshClient;
  sftp: SFTPWrapper;
  /** Fingerprint of the host key the server presented. */
  seenFingerprint: string;
}

type Auth = Pick<ConnectConfig, 'privateKey' | 'passphrase' | 'password'>;

function keyAuth(server: SftpServerHandle): Auth {
  return { privateKey: fs.readFileSync(server.clientKeyPath) };
}

/** Connect + open SFTP; host key must match server.hostKeyFingerprint. */
function connect(server: SftpServerHandle, auth: Auth, port = server.port): Promise<Connected> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    let seenFingerprint = '';
    // Persistent: ssh2 may emit a second error (e.g. ECONNRESET) after the first.
    client.on('error', (err) => {
      client.end();
      reject(err);
    });
    // A connection dropped before the handshake finished emits only 'close'.
    client.once('close', () => reject(new Error('connection closed before ready')));
    client.once('ready', () => {
      client.sftp((err, sftp) => (err ? reject(err) : resolve({ client, sftp, seenFingerprint })));
    });
    client.connect({
      host: '127.0.0.1',
      port,
      username: server.user,
      readyTimeout: 10_000,
      ...auth,
      hostVerifier: (key: Buffer) => {
        seenFingerprint = sha256Fingerprint(key);
        return seenFingerprint === server.hostKeyFingerprint;
      },
    });
  });
}

function readdir(sftp: SFTPWrapper, dir: string): Promise<FileEntry[]> {
  return new Promise((resolve, reject) => sftp.readdir(dir, (err, list) => (err ? reject(err) : resolve(list))));
}

function stat(sftp: SFTPWrapper, p: string): Promise<Stats> {
  return new Promise((resolve, reject) => sftp.stat(p, (err, s) => (err ? reject(err) : resolve(s))));
}

function openFile(sftp: SFTPWrapper, p: string, mode: 'r' | 'w'): Promise<Buffer> {
  return new Promise((resolve, reject) => sftp.open(p, mode, (err, h) => (err ? reject(err) : resolve(h))));
}

function closeFile(sftp: SFTPWrapper, h: Buffer): Promise<void> {
  return new Promise((resolve, reject) => sftp.close(h, (err) => (err ? reject(err) : resolve())));
}

/** One READ request; resolves with the bytes returned (0 at EOF). */
function readOnce(sftp: SFTPWrapper, h: Buffer, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  return new Promise((resolve, reject) =>
    sftp.read(h, buf, 0, length, position, (err, n) => {
      // ssh2 reports EOF as an error with code 1 (SSH_FX_EOF).
      if (err && (err as { code?: number }).code === 1) return resolve(Buffer.alloc(0));
      return err ? reject(err) : resolve(buf.subarray(0, n));
    }),
  );
}

/** Read a whole file with sequential READs; also reports the largest single reply. */
async function readAll(sftp: SFTPWrapper, p: string, chunk = 32 * 1024): Promise<{ data: Buffer; maxReply: number }> {
  const h = await openFile(sftp, p, 'r');
  const parts: Buffer[] = [];
  let pos = 0;
  let maxReply = 0;
  // No close on failure: after a dropped connection ssh2 never calls back.
  for (;;) {
    const got = await readOnce(sftp, h, pos, chunk);
    if (got.length === 0) break;
    maxReply = Math.max(maxReply, got.length);
    parts.push(got);
    pos += got.length;
  }
  await closeFile(sftp, h);
  return { data: Buffer.concat(parts), maxReply };
}

function writeAll(sftp: SFTPWrapper, p: string, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => sftp.writeFile(p, data, (err) => (err ? reject(err) : resolve())));
}

function call(fn: (cb: (err?: Error | null) => void) => void): Promise<void> {
  return new Promise((resolve, reject) => fn((err) => (err ? reject(err) : resolve())));
}

function closed(client: SshClient): Promise<void> {
  return new Promise((resolve) => client.once('close', () => resolve()));
}

// ---------------------------------------------------------------- OpenSSH

describe('sshd helper (real OpenSSH)', { skip: !sshdAvailable() && 'sshd not installed' }, () => {
  let server: SftpServerHandle;
  const content = randomBytes(300_000);

  before(async () => {
    server = await startSshd();
    writeRemoteFile(server, 'data.bin', content);
    writeRemoteFile(server, 'other.bin', 'x');
  });
  after(() => server?.stop());

  test('key auth, host key check, list, read, bytesServed', T, async () => {
    assert.match(server.hostKeyFingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/);
    assert.match(server.knownHostsLine, new RegExp(`^\\[127\\.0\\.0\\.1\\]:${server.port} ssh-ed25519 AAAA`));
    assert.equal(server.remoteDir, server.root);

    const c = await connect(server, keyAuth(server));
    try {
      assert.equal(c.seenFingerprint, server.hostKeyFingerprint);
      const names = (await readdir(c.sftp, server.remoteDir)).map((e) => e.filename).sort();
      assert.deepEqual(names, ['data.bin', 'other.bin']);
      const { data } = await readAll(c.sftp, `${server.remoteDir}/data.bin`);
      assert.ok(data.equals(content), 'content read over SFTP must match');
    } finally {
      c.client.end();
    }
    assert.equal(await server.bytesServed('data.bin'), content.length);
    assert.equal(await server.bytesServed('ta.bin'), 0, 'file filter matches whole path segments');
    assert.equal(await server.bytesServed(), content.length);
  });

  test('passphrase-protected key is authorized', T, async () => {
    assert.ok(server.passphraseKeyPath && server.passphrase);
    const c = await connect(server, {
      privateKey: fs.readFileSync(server.passphraseKeyPath),
      passphrase: server.passphrase,
    });
    c.client.end();
  });

  test('unauthorized key is rejected', T, async () => {
    const stranger = generateValidEd25519('stranger').private;
    await assert.rejects(connect(server, { privateKey: stranger }), /authentication methods failed/);
  });

  test('restart() drops the session and comes back on the same port', T, async () => {
    const port = server.port;
    const c = await connect(server, keyAuth(server));
    const gone = closed(c.client);
    await server.restart();
    await gone; // per-connection sshd children must be killed too
    assert.equal(server.port, port);
    const again = await connect(server, keyAuth(server));
    assert.equal((await stat(again.sftp, `${server.remoteDir}/data.bin`)).size, content.length);
    again.client.end();
  });

  test('forced close on disconnect is counted', T, async () => {
    const before = await server.bytesServed('data.bin');
    const c = await connect(server, keyAuth(server));
    const h = await openFile(c.sftp, `${server.remoteDir}/data.bin`, 'r');
    const got = await readOnce(c.sftp, h, 0, 10_000);
    c.client.destroy(); // no CLOSE sent: sftp-server logs "forced close"
    assert.equal(await server.bytesServed('data.bin'), before + got.length);
  });
});

test('parseSftpLog understands sftp-server lines', () => {
  const log = [
    'session opened for local user root from [127.0.0.1]\r',
    'open "/r/a.bin" flags READ mode 0666\r',
    'opendir "/r"\r',
    'closedir "/r"\r',
    'close "/r/a.bin" bytes read 100 written 0\r',
    'open "/r/b.bin" flags READ mode 0666\r',
    'forced close "/r/b.bin" bytes read 7 written 0\r',
    '',
  ].join('\n');
  const parsed = parseSftpLog(log);
  assert.equal(parsed.opens, 2);
  assert.deepEqual(parsed.closes, [
    { path: '/r/a.bin', bytesRead: 100 },
    { path: '/r/b.bin', bytesRead: 7 },
  ]);
});

// ---------------------------------------------------------------- embedded ssh2 server

describe('embedded ssh2 SFTP server', () => {
  let server: SftpServerHandle;
  const content = randomBytes(50_000);
  const evilNames = ['../evil', 'a/b', 'CON', 'nul\u0000byte', 'line\nbreak', 'x'.repeat(300)];

  before(async () => {
    server = await startEmbeddedServer({
      shortReadMax: 7000,
      readdirBatch: 3,
      extraEntries: evilNames.map((name) => ({ name, size: 123, mtime: 1_000_000 })),
      lieSize: { name: 'liar.bin', size: 999_999 },
    });
    writeRemoteFile(server, 'data.bin', content);
    writeRemoteFile(server, 'liar.bin', 'tiny');
  });
  after(() => server?.stop());

  test('key auth with host key check; short reads; bytesServed', T, async () => {
    assert.equal(server.kind, 'embedded');
    assert.equal(server.remoteDir, '/upload');
    const c = await connect(server, keyAuth(server));
    try {
      assert.equal(c.seenFingerprint, server.hostKeyFingerprint);
      const { data, maxReply } = await readAll(c.sftp, '/upload/data.bin');
      assert.ok(data.equals(content));
      assert.equal(maxReply, 7000, 'every READ reply is capped at shortReadMax');
    } finally {
      c.client.end();
    }
    assert.equal(await server.bytesServed('data.bin'), content.length);
  });

  test('password auth: right one accepted, wrong one rejected', T, async () => {
    assert.ok(server.password);
    const ok = await connect(server, { password: server.password });
    ok.client.end();
    await assert.rejects(connect(server, { password: 'wrong' }), /authentication methods failed/);
  });

  test('passphrase key accepted, foreign key rejected', T, async () => {
    assert.ok(server.passphraseKeyPath);
    const ok = await connect(server, {
      privateKey: fs.readFileSync(server.passphraseKeyPath),
      passphrase: server.passphrase,
    });
    ok.client.end();
    const stranger = generateValidEd25519('stranger').private;
    await assert.rejects(connect(server, { privateKey: stranger }), /authentication methods failed/);
  });

  test('readdir: batches, extraEntries and lying sizes', T, async () => {
    const c = await connect(server, keyAuth(server));
    try {
      const list = await readdir(c.sftp, '/upload');
      const byName = new Map(list.map((e) => [e.filename, e]));
      for (const name of evilNames) {
        assert.ok(byName.has(name), `extra entry ${JSON.stringify(name.slice(0, 20))} listed`);
        assert.equal(byName.get(name)?.attrs.size, 123);
        assert.equal(byName.get(name)?.attrs.mtime, 1_000_000);
      }
      assert.equal(byName.get('data.bin')?.attrs.size, content.length);
      assert.equal(byName.get('liar.bin')?.attrs.size, 999_999);
      assert.match(byName.get('data.bin')?.longname ?? '', /^-rw-r--r-- .* data\.bin$/);
      assert.equal((await stat(c.sftp, '/upload/liar.bin')).size, 999_999);
      // The lie is only in metadata: the data is the real 4 bytes.
      assert.equal((await readAll(c.sftp, '/upload/liar.bin')).data.toString(), 'tiny');
      // A naive client requesting an evil name gets served content, and '..' stays jailed.
      assert.equal((await readAll(c.sftp, '/upload/../evil')).data.length, 123);
      assert.ok(!fs.existsSync(path.join(server.tempDir, 'evil')));
    } finally {
      c.client.end();
    }
  });

  test('write, mkdir, rename, setstat, remove', T, async () => {
    const c = await connect(server, keyAuth(server));
    const { sftp } = c;
    try {
      const payload = randomBytes(70_000);
      await call((cb) => sftp.mkdir('/upload/sub', cb));
      await writeAll(sftp, '/upload/sub/up.tmp', payload);
      await call((cb) => sftp.rename('/upload/sub/up.tmp', '/upload/sub/up.bin', cb));
      await call((cb) => sftp.utimes('/upload/sub/up.bin', 1_500_000_000, 1_600_000_000, cb));
      const local = path.join(server.root, 'sub', 'up.bin');
      assert.ok(fs.readFileSync(local).equals(payload));
      assert.equal(Math.floor(fs.statSync(local).mtimeMs / 1000), 1_600_000_000);
      await call((cb) => sftp.unlink('/upload/sub/up.bin', cb));
      assert.ok(!fs.existsSync(local));
      await assert.rejects(stat(sftp, '/upload/nope'), (err: Error) => {
        assert.equal(err.message, 'No such file', 'local paths must not leak into status messages');
        return true;
      });
    } finally {
      c.client.end();
    }
  });

  test('restart() drops connections and listens again on the same port', T, async () => {
    const port = server.port;
    const c = await connect(server, keyAuth(server));
    const gone = closed(c.client);
    await server.restart(200);
    await gone;
    const again = await connect(server, keyAuth(server));
    assert.equal(server.port, port);
    again.client.end();
  });

  test('failAuthAlways rejects even the right key', T, async () => {
    const locked = await startEmbeddedServer({ failAuthAlways: true });
    try {
      await assert.rejects(connect(locked, keyAuth(locked)), /authentication methods failed/);
    } finally {
      await locked.stop();
    }
  });
});

// ---------------------------------------------------------------- server selection

test('startTestServer picks OpenSSH when installed and honours IPI_TEST_SERVER', T, async () => {
  const saved = process.env.IPI_TEST_SERVER;
  try {
    delete process.env.IPI_TEST_SERVER;
    assert.equal(chosenServerKind(), sshdAvailable() ? 'openssh' : 'embedded');
    process.env.IPI_TEST_SERVER = 'embedded';
    const s = await startTestServer();
    try {
      assert.equal(s.kind, 'embedded');
    } finally {
      await s.stop();
    }
  } finally {
    if (saved === undefined) delete process.env.IPI_TEST_SERVER;
    else process.env.IPI_TEST_SERVER = saved;
  }
});

// ---------------------------------------------------------------- fault proxy

describe('fault proxy', () => {
  let server: SftpServerHandle;
  let proxy: FaultProxy;
  const big = randomBytes(2 * 1024 * 1024);

  before(async () => {
    server = await startTestServer();
    writeRemoteFile(server, 'big.bin', big);
  });
  after(async () => {
    await proxy?.stop();
    await server?.stop();
  });

  test('data flows through unchanged', T, async () => {
    proxy = await startFaultProxy(server.port);
    const c = await connect(server, keyAuth(server), proxy.port);
    try {
      assert.equal(c.seenFingerprint, server.hostKeyFingerprint);
      const { data } = await readAll(c.sftp, `${server.remoteDir}/big.bin`, 64 * 1024);
      assert.ok(data.equals(big));
      assert.ok(proxy.bytesToClient > big.length);
      assert.equal(proxy.connections, 1);
    } finally {
      c.client.end();
    }
  });

  test('cutAfter(n) kills the connection after exactly n more bytes', T, async () => {
    const c = await connect(server, keyAuth(server), proxy.port);
    const gone = closed(c.client);
    c.client.on('error', () => {});
    const start = proxy.bytesToClient;
    proxy.cutAfter(100_000);
    await assert.rejects(readAll(c.sftp, `${server.remoteDir}/big.bin`));
    await gone;
    assert.equal(proxy.bytesToClient - start, 100_000);
  });

  test('stall() freezes traffic, unstall() resumes it', T, async () => {
    const c = await connect(server, keyAuth(server), proxy.port);
    try {
      proxy.stall();
      let done = false;
      const listing = readdir(c.sftp, server.remoteDir).then((l) => {
        done = true;
        return l;
      });
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(done, false, 'no reply while stalled');
      proxy.unstall();
      assert.ok((await listing).some((e) => e.filename === 'big.bin'));
    } finally {
      proxy.unstall();
      c.client.end();
    }
  });

  test('throttle() limits server->client bandwidth', T, async () => {
    const c = await connect(server, keyAuth(server), proxy.port);
    try {
      proxy.throttle(256 * 1024);
      const t0 = Date.now();
      const h = await openFile(c.sftp, `${server.remoteDir}/big.bin`, 'r');
      let pos = 0;
      while (pos < 256 * 1024) pos += (await readOnce(c.sftp, h, pos, 32 * 1024)).length;
      const elapsed = Date.now() - t0;
      assert.ok(elapsed >= 800, `256 KiB at 256 KiB/s took only ${elapsed} ms`);
      proxy.throttle(null);
      await closeFile(c.sftp, h);
    } finally {
      proxy.throttle(null);
      c.client.end();
    }
  });

  test('latency() holds every byte in both directions: a round trip takes at least twice the delay, data intact', T, async () => {
    const c = await connect(server, keyAuth(server), proxy.port);
    try {
      const h = await openFile(c.sftp, `${server.remoteDir}/big.bin`, 'r');
      const direct = await readOnce(c.sftp, h, 1000, 4096);
      proxy.latency(100);
      const t0 = Date.now();
      const delayed = await readOnce(c.sftp, h, 1000, 4096);
      const elapsed = Date.now() - t0;
      assert.ok(elapsed >= 190, `one READ round trip took only ${elapsed} ms at 100 ms each way`);
      assert.ok(delayed.equals(direct));
      proxy.latency(null);
      await closeFile(c.sftp, h);
    } finally {
      proxy.latency(null);
      c.client.end();
    }
  });

  test('cutAfter(n) with no open connection arms the next one only', T, async () => {
    await proxy.waitForIdle();
    proxy.cutAfter(50); // less than the SSH banner + KEXINIT
    await assert.rejects(connect(server, keyAuth(server), proxy.port));
    const c = await connect(server, keyAuth(server), proxy.port);
    c.client.end();
    await closed(c.client);
  });

  test('cutEvery applies to new connections; stop() closes everything', T, async () => {
    proxy.cutEvery(50);
    // 50 bytes is not even a full SSH banner + KEXINIT: the handshake must fail.
    await assert.rejects(connect(server, keyAuth(server), proxy.port));
    proxy.cutEvery(null);
    const c = await connect(server, keyAuth(server), proxy.port);
    const gone = closed(c.client);
    c.client.on('error', () => {});
    await proxy.stop();
    await gone;
    assert.equal(proxy.activeConnections, 0);
  });
});
