import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildConfig, loadConfig } from '../../src/config/load.js';
import { ConfigError, EXIT } from '../../src/errors.js';
import { generateValidEd25519 } from '../../src/sftp-server/embedded.js';

let root: string;
let realHome: string | undefined;
let n = 0;

before(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-load-'));
  // A home folder without ~/.ssh/id_*: whether a test has a way to log in depends on the test alone.
  realHome = process.env.HOME;
  process.env.HOME = path.join(root, 'home');
  fs.mkdirSync(process.env.HOME);
});

after(() => {
  if (realHome === undefined) delete process.env.HOME;
  else process.env.HOME = realHome;
  fs.rmSync(root, { recursive: true, force: true });
});

/** A fresh folder, optionally holding a .env with this content. */
function dir(envContent?: string): string {
  const d = path.join(root, `case-${++n}`);
  fs.mkdirSync(d, { recursive: true });
  if (envContent !== undefined) fs.writeFileSync(path.join(d, '.env'), envContent);
  return d;
}

const BASE = 'SFTP_HOST=h.example\nSFTP_USER=u\nSFTP_DIR=/out\nSFTP_PASS=pw\n';

/**
 * A real key file, unencrypted or encrypted with `passphrase`, and its .pub beside it: the
 * loader reads and checks SFTP_KEY, so a made-up path would not load. Returns the path.
 */
function writeKey(file: string, passphrase?: string): string {
  // Not ssh2's generateKeyPairSync directly: about one ed25519 key in 170 comes out malformed.
  // Two bcrypt rounds instead of 16: the same format, decrypted in a blink.
  const pair = generateValidEd25519('test', passphrase, 2);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, pair.private, { mode: 0o600 });
  fs.writeFileSync(`${file}.pub`, pair.public);
  return file;
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.exitCode, EXIT.usage);
    assert.equal(err.kind, 'permanent');
    return err;
  }
  assert.fail('expected a ConfigError');
}

describe('loadConfig: sources and precedence', () => {
  test('reads ./.env from cwd and applies defaults', () => {
    const cwd = dir(BASE);
    const c = loadConfig({ cwd, env: {} });
    assert.equal(c.host, 'h.example');
    assert.equal(c.user, 'u');
    assert.equal(c.remoteDir, '/out');
    assert.equal(c.password, 'pw');
    assert.equal(c.port, 22);
    assert.equal(c.pattern, 'IPI*');
    assert.equal(c.orderBy, 'date');
    assert.equal(c.chunkSize, 2 * 1024 * 1024);
    assert.equal(c.retries, 7);
    assert.deepEqual(c.retryDelays, [5000, 10000, 30000, 60000, 120000, 300000, 600000]);
    assert.equal(c.logLevel, 'info');
    assert.equal(c.envFile, path.join(cwd, '.env'));
    assert.equal(c.baseDir, cwd);
  });

  test('.env < process env < flags', () => {
    const cwd = dir(`${BASE}SFTP_PORT=2201\nFILE_PATTERN=fromfile*\nLOG_LEVEL=debug\n`);
    const c = loadConfig({
      cwd,
      env: { SFTP_PORT: '2202', FILE_PATTERN: 'fromenv*' },
      flags: { port: '2203' },
    });
    assert.equal(c.port, 2203, 'flag beats env and file');
    assert.equal(c.pattern, 'fromenv*', 'env beats file');
    assert.equal(c.logLevel, 'debug', 'file beats default');
  });

  test('works with no .env at all when everything comes from the environment', () => {
    const cwd = dir();
    const c = loadConfig({ cwd, env: { SFTP_HOST: 'eh', SFTP_USER: 'eu', SFTP_DIR: '/ed', SFTP_PASS: 'ep' } });
    assert.equal(c.envFile, null);
    assert.equal(c.baseDir, cwd);
    assert.equal(c.host, 'eh');
    assert.equal(c.localDir, path.join(cwd, 'local_downloads'));
  });

  test('an empty value counts as unset, wherever it comes from', () => {
    const cwd = dir(`${BASE}SFTP_PORT=2201\n`);
    const c = loadConfig({ cwd, env: { SFTP_HOST: '', SFTP_PORT: '  ' }, flags: { user: '' } });
    assert.equal(c.host, 'h.example');
    assert.equal(c.port, 2201);
    assert.equal(c.user, 'u');
    assert.equal(c.explicit.has('host'), true);
  });

  test('an empty value in the .env falls back to the default', () => {
    const cwd = dir(`${BASE}SFTP_PORT=\nLOCAL_DIR=\n`);
    const c = loadConfig({ cwd, env: {} });
    assert.equal(c.port, 22);
    assert.equal(c.localDir, path.join(cwd, 'local_downloads'));
    assert.equal(c.explicit.has('port'), false);
  });

  test('explicit lists exactly the settings given somewhere', () => {
    const cwd = dir(BASE);
    const c = loadConfig({ cwd, env: { RETRIES: '3' }, flags: { logLevel: 'warn' } });
    assert.deepEqual([...c.explicit].sort(), ['host', 'logLevel', 'password', 'remoteDir', 'retries', 'user'].sort());
  });

  test('--env-file names another file; relative to cwd', () => {
    const cwd = dir();
    fs.mkdirSync(path.join(cwd, 'conf'));
    fs.writeFileSync(path.join(cwd, 'conf', 'site.env'), BASE);
    const c = loadConfig({ cwd, env: {}, envFile: 'conf/site.env' });
    assert.equal(c.envFile, path.join(cwd, 'conf', 'site.env'));
    assert.equal(c.host, 'h.example');
  });

  test('--env-file pointing to a missing file is a ConfigError', () => {
    const cwd = dir();
    const err = configError(() => loadConfig({ cwd, env: {}, envFile: 'nope.env' }));
    assert.equal(err.message, '--env-file nope.env: no such file');
  });

  test('an unreadable .env (a folder) is a ConfigError', () => {
    const cwd = dir();
    fs.mkdirSync(path.join(cwd, 'folder.env'));
    const err = configError(() => loadConfig({ cwd, env: {}, envFile: 'folder.env' }));
    assert.match(err.message, /cannot read it \(EISDIR\)/);
  });

  test('a .env syntax error is a ConfigError naming the file and line', () => {
    const cwd = dir(`${BASE}BROKEN="open\n`);
    const err = configError(() => loadConfig({ cwd, env: {} }));
    assert.ok(err.message.startsWith(`${path.join(cwd, '.env')}: line `), err.message);
    assert.match(err.message, /BROKEN: the double-quoted value is not closed/);
  });

  test('a .env line without = is a ConfigError naming the file, the line and the key, not the value', () => {
    // It used to be skipped, and the run delivered into the default ./synced_server.
    const cwd = dir(`${BASE}SERVER_DIR: /data/pub\n`);
    const err = configError(() => loadConfig({ cwd, env: {} }));
    assert.equal(err.message, `${path.join(cwd, '.env')}: line 5: SERVER_DIR: ':' where '=' belongs (write SERVER_DIR=value)`);
  });

  test('keys of other programs that python-dotenv reads (2FA_SECRET, DB_URL[primary], key:x, é) are ignored, not fatal', () => {
    const cwd = dir(`2FA_SECRET=x\nDB_URL[primary]=x\nkey:x=3\né=1\n${BASE}`);
    const c = loadConfig({ cwd, env: {} });
    assert.equal(c.host, 'h.example');
    assert.deepEqual(c.warnings, []);
  });

  test('${VAR} in the .env is expanded from the given env', () => {
    const cwd = dir(`${BASE}LOCAL_DIR=\${DATA}/in\n`);
    const c = loadConfig({ cwd, env: { DATA: '/srv/data' } });
    assert.equal(c.localDir, '/srv/data/in');
  });
});

describe('loadConfig: keys of the .env that look like typos', () => {
  test('a near miss of one of our keys is a warning naming the file, the line, the key and the setting meant', () => {
    const cwd = dir(`${BASE}SFTP_HOSTT=\nLOCALDIR=/data/in\n# note\nlocal_dir=/data/in\n`);
    const c = loadConfig({ cwd, env: {} });
    const env = path.join(cwd, '.env');
    assert.deepEqual(c.warnings, [
      `${env} line 5: SFTP_HOSTT is not a setting and is ignored; did you mean SFTP_HOST?`,
      `${env} line 6: LOCALDIR is not a setting and is ignored; did you mean LOCAL_DIR?`,
      `${env} line 8: local_dir is not a setting and is ignored (keys are case-sensitive); did you mean LOCAL_DIR?`,
    ]);
    assert.equal(c.localDir, path.join(cwd, 'local_downloads'), 'ignored, as the warning says');
  });

  test('the values of such keys are never in the warning', () => {
    const cwd = dir(`${BASE}SFTP_PAS=Hunter2-typo-leak\n`);
    const c = loadConfig({ cwd, env: {} });
    assert.equal(c.warnings.length, 1);
    assert.ok(!c.warnings[0]!.includes('Hunter2-typo-leak'), c.warnings[0]);
    assert.match(c.warnings[0]!, /SFTP_PAS is not a setting and is ignored; did you mean SFTP_PASS\?$/);
  });

  test("other programs' keys, and ipi-push's keys in an ipi-pull run, give no warning", () => {
    const cwd = dir(`${BASE}DATABASE_URL=postgres://x\nAPI_TOKEN=t\nBASE=/data\nWATCH_DIR=./out\nSFTP_UPLOAD_DIR=/in\nVERIFY=size\n`);
    assert.deepEqual(loadConfig({ cwd, env: {} }).warnings, []);
    assert.deepEqual(loadConfig({ cwd, env: {}, tool: 'push' }).warnings, []);
  });

  test('only the .env is looked at: the environment holds everything else on the machine', () => {
    const cwd = dir(BASE);
    assert.deepEqual(loadConfig({ cwd, env: { SFTP_HOSTT: 'x', local_dir: '/x' } }).warnings, []);
  });

  test('a required key left unset by a typo says so in its error', () => {
    const cwd = dir(BASE.replace('SFTP_HOST=', 'SFTP_HOSTT='));
    const err = configError(() => loadConfig({ cwd, env: {} }));
    assert.ok(err.message.startsWith(`SFTP_HOST is not set (${path.join(cwd, '.env')} line 1 has SFTP_HOSTT: is that it?): `), err.message);
  });

  test('buildConfig without a file has no warnings', () => {
    assert.deepEqual(buildConfig({ host: 'h', user: 'u', remoteDir: '/r', password: 'p' }, { envFile: null, baseDir: root, env: {} }).warnings, []);
  });
});

describe('loadConfig: paths', () => {
  test('relative paths are resolved against the .env file\'s folder, not cwd', () => {
    const cwd = dir();
    const site = path.join(cwd, 'site');
    fs.mkdirSync(site);
    fs.writeFileSync(path.join(site, '.env'), `${BASE}LOCAL_DIR=./dl\nSERVER_DIR=pub\nLAST_FILE_RECORD=../state/last.txt\nSFTP_KEY=keys/id\n`);
    // Only there: read from cwd instead, the key would be missing and the load would fail.
    writeKey(path.join(site, 'keys', 'id'));
    const c = loadConfig({ cwd, env: {}, envFile: 'site/.env' });
    assert.equal(c.baseDir, site);
    assert.equal(c.localDir, path.join(site, 'dl'));
    assert.equal(c.serverDir, path.join(site, 'pub'));
    assert.equal(c.markerFile, path.join(cwd, 'state', 'last.txt'));
    assert.equal(c.keyFile, path.join(site, 'keys', 'id'));
    assert.equal(c.logFile, path.join(site, 'logs', 'sftp_transfer.log'));
  });

  test('relative paths from flags and env also resolve against the .env folder', () => {
    const cwd = dir(BASE);
    const c = loadConfig({ cwd, env: { SERVER_DIR: 'from-env' }, flags: { localDir: 'from-flag' } });
    assert.equal(c.localDir, path.join(cwd, 'from-flag'));
    assert.equal(c.serverDir, path.join(cwd, 'from-env'));
  });

  test('absolute paths are kept', () => {
    const cwd = dir(`${BASE}LOCAL_DIR=/abs/dl\n`);
    assert.equal(loadConfig({ cwd, env: {} }).localDir, '/abs/dl');
  });

  test('~ and ~/ mean the home folder', () => {
    const cwd = dir(`${BASE}SFTP_KEY=~/.ssh/id_test\nSFTP_KNOWN_HOSTS=~\n`);
    writeKey(path.join(os.homedir(), '.ssh', 'id_test'));
    try {
      const c = loadConfig({ cwd, env: {} });
      assert.equal(c.keyFile, path.join(os.homedir(), '.ssh', 'id_test'));
      assert.equal(c.knownHosts, os.homedir());
    } finally {
      fs.rmSync(path.join(os.homedir(), '.ssh'), { recursive: true, force: true });
    }
  });

  test('the default known_hosts is ~/.ssh/known_hosts', () => {
    const cwd = dir(BASE);
    assert.equal(loadConfig({ cwd, env: {} }).knownHosts, path.join(os.homedir(), '.ssh', 'known_hosts'));
  });

  test('~user is not expanded (taken as a relative name)', () => {
    const cwd = dir(`${BASE}LOCAL_DIR=~other/dl\n`);
    assert.equal(loadConfig({ cwd, env: {} }).localDir, path.join(cwd, '~other', 'dl'));
  });

  test('a Windows path on a machine that is not Windows is a ConfigError naming the setting', () => {
    // It used to create a folder literally named `C:\ipi\local` and deliver into it.
    for (const [line, key, flag] of [['LOCAL_DIR=C:\\ipi\\local', 'LOCAL_DIR', 'local-dir'], ['SERVER_DIR=D:\\share', 'SERVER_DIR', 'server-dir'], ['LOG_FILE=D:/logs/ipi.log', 'LOG_FILE', 'log-file'], ['SFTP_KEY=C:\\Users\\ipi\\.ssh\\id_ed25519', 'SFTP_KEY', 'sftp-key']] as const) {
      const cwd = dir(`${BASE}${line}\n`);
      const err = configError(() => loadConfig({ cwd, env: {}, platform: 'linux' }));
      assert.match(err.message, new RegExp(`^${key} \\(--${flag}\\): '.+' looks like a Windows path, and this machine is not Windows \\(linux\\): write a path of this machine\\. Example: ${key}=`));
      assert.ok(!fs.existsSync(path.join(cwd, line.slice(key.length + 1))), 'nothing was created');
    }
  });

  test('the same Windows path is taken when the platform is Windows', () => {
    const cwd = dir(`${BASE}LOCAL_DIR=C:\\ipi\\local\n`);
    assert.doesNotThrow(() => loadConfig({ cwd, env: {}, platform: 'win32' }));
  });

  test('LOG_FILE=none means console only', () => {
    const cwd = dir(`${BASE}LOG_FILE=None\n`);
    assert.equal(loadConfig({ cwd, env: {} }).logFile, null);
  });
});

describe('loadConfig: a .env written for FTP_IPI.py', () => {
  test('loads unchanged, with the right values', () => {
    const seedEnv = [
      'SFTP_HOST=your.sftp.server',
      'SFTP_PORT=22',
      'SFTP_USER=your_username',
      'SFTP_PASS=your_password',
      'SFTP_DIR=/remote/path',
      'LOCAL_DIR=./local_downloads',
      'SERVER_DIR=./synced_server',
      'LOG_FILE=./logs/sftp_transfer.log',
      'LAST_FILE_RECORD=./last_file.txt',
      '',
    ].join('\n');
    const cwd = dir(seedEnv);
    const c = loadConfig({ cwd, env: {} });
    assert.equal(c.host, 'your.sftp.server');
    assert.equal(c.port, 22);
    assert.equal(c.user, 'your_username');
    assert.equal(c.password, 'your_password');
    assert.equal(c.remoteDir, '/remote/path');
    assert.equal(c.localDir, path.join(cwd, 'local_downloads'));
    assert.equal(c.serverDir, path.join(cwd, 'synced_server'));
    assert.equal(c.logFile, path.join(cwd, 'logs', 'sftp_transfer.log'));
    assert.equal(c.markerFile, path.join(cwd, 'last_file.txt'));
    assert.deepEqual(c.secrets, ['your_password']);
  });

  test('a seed password with # and $ in it survives', () => {
    const cwd = dir('SFTP_HOST=h\nSFTP_USER=u\nSFTP_DIR=/d\nSFTP_PASS=p@ss#w0rd$$x\r\n');
    assert.equal(loadConfig({ cwd, env: {} }).password, 'p@ss#w0rd$$x');
  });
});

describe('loadConfig: errors', () => {
  test('a missing required key names the key, says what it is and gives an example', () => {
    for (const [key, example] of [['SFTP_HOST', 'sftp.example.com'], ['SFTP_USER', 'ipi'], ['SFTP_DIR', '/outgoing/ipi']] as const) {
      const content = BASE.split('\n').filter((l) => !l.startsWith(`${key}=`)).join('\n');
      const cwd = dir(content);
      const err = configError(() => loadConfig({ cwd, env: {} }));
      assert.ok(err.message.startsWith(`${key} is not set: `), err.message);
      assert.ok(err.message.includes(`Example: ${key}=${example}`), err.message);
    }
  });

  test('serverOptional skips the required-key and login checks', () => {
    const cwd = dir();
    const c = loadConfig({ cwd, env: {}, serverOptional: true });
    assert.equal(c.host, undefined);
    assert.equal(c.password, undefined);
    assert.equal(c.port, 22);
  });

  test('a malformed value names the key and its flag, says why and gives an example', () => {
    const cwd = dir(`${BASE}SFTP_PORT=abc\n`);
    const err = configError(() => loadConfig({ cwd, env: {} }));
    assert.equal(err.message, "SFTP_PORT (--sftp-port): 'abc' is not a whole number. Example: SFTP_PORT=22");
  });

  test('a malformed flag value is reported the same way', () => {
    const cwd = dir(BASE);
    const err = configError(() => loadConfig({ cwd, env: {}, flags: { retryDelays: '5,,10' } }));
    assert.ok(err.message.startsWith('RETRY_DELAYS (--retry-delays): '), err.message);
    assert.match(err.message, /empty item/);
    assert.ok(err.message.endsWith('Example: RETRY_DELAYS=5,10,30,60,120,300,600'), err.message);
  });

  test('out-of-range values are ConfigErrors', () => {
    for (const [line, pattern] of [
      ['SFTP_PORT=70000', /SFTP_PORT \(--sftp-port\): 70000 is out of range \(1 to 65535\)/],
      ['CHUNK_SIZE=1KiB', /CHUNK_SIZE \(--chunk-size\): 1KiB is out of range/],
      ['ORDER_BY=size', /ORDER_BY \(--order-by\): 'size' is not one of date, mtime, name/],
      ['SFTP_HOST_KEY=MD5:aa', /SFTP_HOST_KEY \(--sftp-host-key\): 'MD5:aa' is not a SHA256/],
      ['SFTP_HOST=bad host', /SFTP_HOST \(--sftp-host\): is not a host name: it holds a blank, which a host name cannot\. Example: SFTP_HOST=sftp\.example\.com$/],
    ] as const) {
      const cwd = dir(`${BASE}${line}\n`);
      const err = configError(() => loadConfig({ cwd, env: {} }));
      assert.match(err.message, pattern);
    }
  });

  test('REKEY_BYTES below 1MiB is refused, 0 is allowed', () => {
    const err = configError(() => loadConfig({ cwd: dir(`${BASE}REKEY_BYTES=1000\n`), env: {} }));
    assert.equal(err.message, 'REKEY_BYTES (--rekey-bytes): 1000 is out of range (0, or at least 1MiB). Example: REKEY_BYTES=512MiB');
    assert.equal(loadConfig({ cwd: dir(`${BASE}REKEY_BYTES=0\n`), env: {} }).rekeyBytes, 0);
  });

  test('durations that would fail or thrash a run, or overflow a timer, are ConfigErrors naming the setting and the range', () => {
    for (const [line, message] of [
      ['CONNECT_TIMEOUT=0', 'CONNECT_TIMEOUT (--connect-timeout): 0 is out of range (1s to 24d). Example: CONNECT_TIMEOUT=30'],
      ['DATA_TIMEOUT=0', 'DATA_TIMEOUT (--data-timeout): 0 is out of range (1s to 24d). Example: DATA_TIMEOUT=60'],
      ['DATA_TIMEOUT=1ms', 'DATA_TIMEOUT (--data-timeout): 1ms is out of range (1s to 24d). Example: DATA_TIMEOUT=60'],
      ['DATA_TIMEOUT=25d', 'DATA_TIMEOUT (--data-timeout): 25d is out of range (1s to 24d). Example: DATA_TIMEOUT=60'],
      ['KEEPALIVE_INTERVAL=10ms', 'KEEPALIVE_INTERVAL (--keepalive-interval): 10ms is out of range (0, or 1s to 24d). Example: KEEPALIVE_INTERVAL=15'],
      ['SETTLE_TIME=30d', 'SETTLE_TIME (--settle-time): 30d is out of range (0 to 24d). Example: SETTLE_TIME=1'],
      ['RETRY_DELAYS=5,0', 'RETRY_DELAYS (--retry-delays): 0 is out of range (100ms to 24d). Example: RETRY_DELAYS=5,10,30,60,120,300,600'],
      ['RETRY_DELAYS=5,3000000', 'RETRY_DELAYS (--retry-delays): 3000000 is out of range (100ms to 24d). Example: RETRY_DELAYS=5,10,30,60,120,300,600'],
      ['LOG_MAX_SIZE=10', 'LOG_MAX_SIZE (--log-max-size): 10 is out of range (at least 1KiB). Example: LOG_MAX_SIZE=10MiB'],
      ['LOG_MAX_SIZE=0', 'LOG_MAX_SIZE (--log-max-size): 0 is out of range (at least 1KiB). Example: LOG_MAX_SIZE=10MiB'],
    ] as const) {
      const err = configError(() => loadConfig({ cwd: dir(`${BASE}${line}\n`), env: {} }));
      assert.equal(err.message, message);
    }
  });

  test('the edges of those ranges, and 0 where it means off, are taken', () => {
    const c = loadConfig({
      cwd: dir(`${BASE}CONNECT_TIMEOUT=1\nDATA_TIMEOUT=24d\nKEEPALIVE_INTERVAL=0\nSETTLE_TIME=0\nRETRY_DELAYS=100ms,24d\nLOG_MAX_SIZE=1KiB\nMIN_AGE=400d\n`),
      env: {},
    });
    assert.equal(c.connectTimeout, 1000);
    assert.equal(c.dataTimeout, 24 * 86_400_000);
    assert.equal(c.keepaliveInterval, 0);
    assert.equal(c.settleTime, 0);
    assert.deepEqual(c.retryDelays, [100, 24 * 86_400_000]);
    assert.equal(c.logMaxSize, 1024);
    assert.equal(c.minAge, 400 * 86_400_000, 'MIN_AGE is compared with file ages, never a timer: no upper limit');
  });

  test('ipi-push intervals: RESCAN_INTERVAL 0 is off, below 1s is refused; PUSH_SETTLE 0 is taken', () => {
    const push = 'SFTP_HOST=h\nSFTP_USER=u\nSFTP_PASS=pw\nWATCH_DIR=./w\nSFTP_UPLOAD_DIR=/in\n';
    const c = loadConfig({ cwd: dir(`${push}RESCAN_INTERVAL=0\nPUSH_SETTLE=0\n`), env: {}, tool: 'push' });
    assert.equal(c.rescanInterval, 0);
    assert.equal(c.pushSettle, 0);
    const err = configError(() => loadConfig({ cwd: dir(`${push}RESCAN_INTERVAL=1ms\n`), env: {}, tool: 'push' }));
    assert.equal(err.message, 'RESCAN_INTERVAL (--rescan-interval): 1ms is out of range (0, or 1s to 24d). Example: RESCAN_INTERVAL=5m');
  });

  test('chunk buffers that could not be set aside are refused at load, each setting being within its own bounds', () => {
    // Pull: max(CHUNKS_IN_FLIGHT + 2, FILES_IN_FLIGHT) + 2 buffers in one block of at most 4GiB.
    const tooMany = configError(() => loadConfig({ cwd: dir(`${BASE}CHUNK_SIZE=256MiB\nCHUNKS_IN_FLIGHT=13\n`), env: {} }));
    assert.equal(tooMany.message, 'CHUNK_SIZE=256MiB with CHUNKS_IN_FLIGHT=13 and FILES_IN_FLIGHT=8 needs 17 chunk buffers, 4352MiB in all; they may take at most 4GiB: lower CHUNK_SIZE, CHUNKS_IN_FLIGHT or FILES_IN_FLIGHT. Example: CHUNK_SIZE=2MiB');
    assert.match(configError(() => loadConfig({ cwd: dir(`${BASE}CHUNK_SIZE=256MiB\nCHUNKS_IN_FLIGHT=1\nFILES_IN_FLIGHT=15\n`), env: {} })).message, /needs 17 chunk buffers/);
    // Exactly 4GiB is allowed: 12 + 2 + 2 = 16 buffers of 256MiB.
    assert.equal(loadConfig({ cwd: dir(`${BASE}CHUNK_SIZE=256MiB\nCHUNKS_IN_FLIGHT=12\n`), env: {} }).chunkSize, 256 * 1024 ** 2);
    // Each buffer starts on a 4KiB boundary: 17 x 252645135 bytes fit in 4GiB, 17 slots of 252645376 do not.
    assert.match(configError(() => loadConfig({ cwd: dir(`${BASE}CHUNK_SIZE=252645135\nCHUNKS_IN_FLIGHT=13\n`), env: {} })).message, /needs 17 chunk buffers, 4194308KiB in all/);
    // Push holds max(CHUNKS_IN_FLIGHT, FILES_IN_FLIGHT) buffers, with nothing written behind or lent.
    const push = 'SFTP_HOST=h\nSFTP_USER=u\nSFTP_PASS=pw\nWATCH_DIR=./w\nSFTP_UPLOAD_DIR=/in\n';
    assert.equal(loadConfig({ cwd: dir(`${push}CHUNK_SIZE=256MiB\nCHUNKS_IN_FLIGHT=16\n`), env: {}, tool: 'push' }).chunksInFlight, 16);
    const pushErr = configError(() => loadConfig({ cwd: dir(`${push}CHUNK_SIZE=256MiB\nCHUNKS_IN_FLIGHT=17\n`), env: {}, tool: 'push' }));
    assert.equal(pushErr.message, 'CHUNK_SIZE=256MiB with CHUNKS_IN_FLIGHT=17 and FILES_IN_FLIGHT=8 needs 17 chunk buffers, 4352MiB in all; they may take at most 4GiB: lower CHUNK_SIZE, CHUNKS_IN_FLIGHT or FILES_IN_FLIGHT. Example: CHUNK_SIZE=2MiB');
    assert.match(configError(() => loadConfig({ cwd: dir(`${push}CHUNK_SIZE=256MiB\nCHUNKS_IN_FLIGHT=1\nFILES_IN_FLIGHT=17\n`), env: {}, tool: 'push' })).message, /needs 17 chunk buffers/);
  });

  test('no way to log in is a ConfigError with an example', () => {
    const cwd = dir('SFTP_HOST=h\nSFTP_USER=u\nSFTP_DIR=/d\nSFTP_PASS=\n');
    const err = configError(() => loadConfig({ cwd, env: {} }));
    assert.match(err.message, /^no way to log in: set SFTP_PASS, or SFTP_KEY/);
    assert.match(err.message, /SSH_AUTH_SOCK/);
    assert.match(err.message, /Example: SFTP_KEY=/);
  });

  test('a key file, an agent socket or a default identity each count as a way to log in', () => {
    const noPass = 'SFTP_HOST=h\nSFTP_USER=u\nSFTP_DIR=/d\n';
    const withKey = dir(`${noPass}SFTP_KEY=./id\n`);
    writeKey(path.join(withKey, 'id'));
    assert.equal(loadConfig({ cwd: withKey, env: {} }).password, undefined);
    assert.equal(loadConfig({ cwd: dir(noPass), env: { SSH_AUTH_SOCK: '/tmp/agent.sock' } }).agent, '/tmp/agent.sock');
    assert.equal(loadConfig({ cwd: dir(`${noPass}SFTP_AGENT=pageant\n`), env: {} }).agent, 'pageant');
    // ssh's default identity in the home folder counts too, when it can be used without a
    // passphrase: an encrypted one (ssh would prompt) or garbage does not.
    const id = path.join(os.homedir(), '.ssh', 'id_ed25519');
    fs.mkdirSync(path.dirname(id), { recursive: true });
    try {
      fs.writeFileSync(id, 'not really a key');
      assert.throws(() => loadConfig({ cwd: dir(noPass), env: {} }), /no way to log in/);
      writeKey(id, 'x');
      assert.throws(() => loadConfig({ cwd: dir(noPass), env: {} }), new RegExp(`no way to log in: .*; ${id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} needs a passphrase .*SFTP_KEY_PASSPHRASE`));
      writeKey(id);
      const c = loadConfig({ cwd: dir(noPass), env: {} });
      assert.deepEqual(c.defaultIdentities.map((i) => i.file), [id]);
    } finally {
      fs.rmSync(path.join(os.homedir(), '.ssh'), { recursive: true, force: true });
    }
  });

  test('SFTP_AGENT wins over SSH_AUTH_SOCK', () => {
    const c = loadConfig({ cwd: dir(`${BASE}SFTP_AGENT=/a.sock\n`), env: { SSH_AUTH_SOCK: '/b.sock' } });
    assert.equal(c.agent, '/a.sock');
  });

  test('a passphrase without a key file is a ConfigError that does not show the passphrase', () => {
    const cwd = dir(`${BASE}SFTP_KEY_PASSPHRASE=Sup3r-s3cret-phrase\n`);
    const err = configError(() => loadConfig({ cwd, env: {} }));
    assert.match(err.message, /^SFTP_KEY_PASSPHRASE is set but SFTP_KEY is not/);
    assert.ok(!err.message.includes('Sup3r-s3cret-phrase'));
  });
});

describe('loadConfig: secrets', () => {
  test('config.secrets lists the password and the passphrase actually set', () => {
    const cwd = dir(`${BASE}SFTP_KEY=./id\nSFTP_KEY_PASSPHRASE="phrase with spaces"\n`);
    writeKey(path.join(cwd, 'id'), 'phrase with spaces');
    const c = loadConfig({ cwd, env: {} });
    assert.deepEqual([...c.secrets].sort(), ['phrase with spaces', 'pw'].sort());
    assert.equal(c.keyPassphrase, 'phrase with spaces');
  });

  test('no secrets when none is set; an empty password is not a secret', () => {
    const cwd = dir('SFTP_HOST=h\nSFTP_USER=u\nSFTP_DIR=/d\nSFTP_PASS=\nSFTP_KEY=./id\n');
    writeKey(path.join(cwd, 'id'));
    assert.deepEqual(loadConfig({ cwd, env: {} }).secrets, []);
  });

  test('the password is kept byte for byte (no trimming of inner characters)', () => {
    const cwd = dir(`${BASE.replace('SFTP_PASS=pw', "SFTP_PASS=' lead and trail '")}`);
    const c = loadConfig({ cwd, env: {} });
    assert.equal(c.password, ' lead and trail ');
    assert.deepEqual(c.secrets, [' lead and trail ']);
  });

  test('an error raised while both secrets are set mentions neither', () => {
    const cwd = dir(`${BASE}SFTP_KEY_PASSPHRASE=hunter2-passphrase\n`);
    const err = configError(() => loadConfig({ cwd, env: { SFTP_PASS: 'hunter2-password' } }));
    assert.ok(!err.message.includes('hunter2-passphrase'));
    assert.ok(!err.message.includes('hunter2-password'));
  });

  test('a password written into SFTP_HOST is refused, and appears in no error', () => {
    // `ipi:Pw@host` used to be accepted: the password went to the resolver, then into an
    // ENOTFOUND error and the log file. `sftp://ipi:Pw@host` was refused by quoting it.
    for (const host of ['sftp://ipi:Hunter2-host-leak@sftp.example.com', 'ipi:Hunter2-host-leak@sftp.example.com', 'ipi@sftp.example.com']) {
      const cwd = dir(BASE.replace('SFTP_HOST=h.example', `SFTP_HOST=${host}`));
      const err = configError(() => loadConfig({ cwd, env: {} }));
      assert.match(err.message, /^SFTP_HOST \(--sftp-host\): must be a bare host name or address, without sftp:\/\/ or user@: the user goes in SFTP_USER and the password in SFTP_PASS/);
      assert.ok(!err.message.includes('Hunter2-host-leak') && !err.message.includes('ipi@'), err.message);
    }
  });

  test('other settings\' errors do not include the password either', () => {
    const cwd = dir(`${BASE.replace('SFTP_PASS=pw', 'SFTP_PASS=topsecret')}SFTP_PORT=bad\n`);
    const err = configError(() => loadConfig({ cwd, env: {} }));
    assert.ok(!err.message.includes('topsecret'));
  });

  test('a quote left open takes the next lines, password included, into a value: one line, with neither', () => {
    // The .env the audit wrote: SFTP_PORT's value ran on to X=1", taking SFTP_PASS's line in.
    const cwd = dir('SFTP_HOST=h.example\nSFTP_USER=u\nSFTP_DIR=/out\nSFTP_PORT="22\nSFTP_PASS=hunter2xyz\nX=1"\n');
    const err = configError(() => loadConfig({ cwd, env: {} }));
    assert.match(err.message, /^SFTP_PORT \(--sftp-port\): the value holds a line break, which no setting can: is a quote of the \.env left open/);
    assert.ok(!err.message.includes('\n'), err.message);
    assert.ok(!err.message.includes('hunter2xyz'), err.message);
  });

  test('no setting but a secret takes a control character; a password may hold one', () => {
    const cwd = dir(`${BASE}LOCAL_DIR="/tmp/x\\ny"\n`);
    const err = configError(() => loadConfig({ cwd, env: {} }));
    assert.equal(err.message.split('\n').length, 1, err.message);
    assert.match(err.message, /^LOCAL_DIR \(--local-dir\): the value holds a line break/);
    assert.match(configError(() => loadConfig({ cwd: dir(BASE), env: {}, flags: { logLevel: 'info\t' } })).message,
      /^LOG_LEVEL \(--log-level\): the value holds the control character '\\t', which no setting can\. Example: LOG_LEVEL=info$/);
    assert.equal(loadConfig({ cwd: dir(BASE.replace('SFTP_PASS=pw', 'SFTP_PASS="pw\\nwith a line break"')), env: {} }).password, 'pw\nwith a line break');
  });

  test('a secret pasted into another key is not quoted in that key\'s error, wherever either was given', () => {
    const base = BASE.replace('SFTP_PASS=pw\n', '');
    const cases: Array<{ env?: string; vars?: NodeJS.ProcessEnv; flags?: Record<string, string> }> = [
      { env: 'SFTP_PASS=Tr0ub4dor3\nLOG_LEVEL=Tr0ub4dor3\n' },
      { env: 'LOG_LEVEL=Tr0ub4dor3\n', vars: { SFTP_PASS: 'Tr0ub4dor3' } },
      { env: 'SFTP_PASS=x\n', flags: { password: 'Tr0ub4dor3', logLevel: 'Tr0ub4dor3' } },
      { env: 'SFTP_KEY_PASSPHRASE=Tr0ub4dor3\nSFTP_PASS=x\nORDER_BY=Tr0ub4dor3\n' },
    ];
    for (const c of cases) {
      const err = configError(() => loadConfig({ cwd: dir(base + c.env), env: c.vars ?? {}, flags: c.flags }));
      assert.match(err.message, /^(LOG_LEVEL|ORDER_BY) \(--[a-z-]+\): '\*\*\*' is not one of /, JSON.stringify(c));
    }
  });

  test('a .env line that cannot be read does not echo the password in the error',
    () => {
      for (const line of ["'SFTP_PASS'=hunter2-leak", '\u00a0SFTP_PASS=hunter2-leak']) {
        const cwd = dir(`SFTP_HOST=h\nSFTP_USER=u\nSFTP_DIR=/d\n${line}\n`);
        let message = '';
        try {
          loadConfig({ cwd, env: {} });
        } catch (err) {
          message = (err as Error).message;
        }
        assert.ok(!message.includes('hunter2-leak'), `error message leaks the password: ${message}`);
      }
    });
});

describe('loadConfig: SFTP_KEY is read and checked here, before anything is written', () => {
  const NO_PASS = 'SFTP_HOST=h.example\nSFTP_USER=u\nSFTP_DIR=/out\n';
  /** A folder whose .env names `key` as SFTP_KEY (and `passphrase`, if given), without any password. */
  const keyCase = (key: string, passphrase?: string) =>
    dir(`${NO_PASS}SFTP_KEY=${key}\n${passphrase === undefined ? '' : `SFTP_KEY_PASSPHRASE=${passphrase}\n`}`);

  test('a key without a passphrase: its bytes are in the config, beside the path', () => {
    const cwd = keyCase('./id');
    const file = writeKey(path.join(cwd, 'id'));
    const c = loadConfig({ cwd, env: {} });
    assert.equal(c.keyFile, file);
    assert.ok(c.key?.equals(fs.readFileSync(file)), 'the bytes of the file');
    assert.equal(c.keyProblem, undefined);
    assert.deepEqual(c.warnings, []);
  });

  test('a key with its passphrase: the (still encrypted) bytes, and the passphrase kept as a secret', () => {
    const cwd = keyCase('./id', 'Right-phrase-42');
    const file = writeKey(path.join(cwd, 'id'), 'Right-phrase-42');
    const c = loadConfig({ cwd, env: {} });
    assert.ok(c.key?.equals(fs.readFileSync(file)));
    assert.equal(c.keyPassphrase, 'Right-phrase-42');
    assert.deepEqual(c.secrets, ['Right-phrase-42']);
  });

  test('a PEM key (ssh-keygen -m PEM, openssl) with its passphrase is taken too', () => {
    const cwd = keyCase('./id_rsa', 'pem-phrase');
    const pem = crypto.generateKeyPairSync('rsa', {
      modulusLength: 2048,
      privateKeyEncoding: { type: 'pkcs1', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'pem-phrase' },
      publicKeyEncoding: { type: 'pkcs1', format: 'pem' },
    });
    fs.writeFileSync(path.join(cwd, 'id_rsa'), pem.privateKey);
    assert.ok(loadConfig({ cwd, env: {} }).key);
    const wrong = configError(() => loadConfig({ cwd, env: { SFTP_KEY_PASSPHRASE: 'not-the-pem-phrase' } }));
    assert.equal(wrong.message, `SFTP_KEY ${path.join(cwd, 'id_rsa')}: SFTP_KEY_PASSPHRASE does not decrypt it`);
  });

  test('a missing file: one line naming the path and ENOENT', () => {
    const cwd = keyCase('./keys/id_missing');
    const err = configError(() => loadConfig({ cwd, env: {} }));
    assert.equal(err.message, `SFTP_KEY ${path.join(cwd, 'keys', 'id_missing')}: cannot read it (ENOENT)`);
  });

  test('a folder where the key belongs cannot be read either (EISDIR)', () => {
    const cwd = keyCase('./keys');
    fs.mkdirSync(path.join(cwd, 'keys'));
    const err = configError(() => loadConfig({ cwd, env: {} }));
    assert.equal(err.message, `SFTP_KEY ${path.join(cwd, 'keys')}: cannot read it (EISDIR)`);
  });

  test('a file we may not read: EACCES', () => {
    const cwd = keyCase('./id');
    fs.chmodSync(writeKey(path.join(cwd, 'id')), 0o000);
    if (process.getuid?.() !== 0) {
      const err = configError(() => loadConfig({ cwd, env: {} }));
      assert.equal(err.message, `SFTP_KEY ${path.join(cwd, 'id')}: cannot read it (EACCES)`);
      return;
    }
    // Root reads a file of mode 000. Without the two capabilities that let it (setpriv is
    // util-linux's, on every Linux that has root), it is refused like anyone else.
    const script = `import { loadConfig } from ${JSON.stringify(new URL('../../src/config/load.js', import.meta.url).href)};
      try { loadConfig({ cwd: ${JSON.stringify(cwd)}, env: {} }); console.log('loaded'); } catch (err) { console.log(err.constructor.name, err.message); }`;
    const run = spawnSync('setpriv', ['--bounding-set=-dac_override,-dac_read_search', '--', process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(run.error, undefined, `setpriv: ${String(run.error)}`);
    assert.equal(run.stderr, '');
    assert.equal(run.stdout.trim(), `ConfigError SFTP_KEY ${path.join(cwd, 'id')}: cannot read it (EACCES)`);
  });

  test('an encrypted key without SFTP_KEY_PASSPHRASE says to set it', () => {
    const cwd = keyCase('./id');
    writeKey(path.join(cwd, 'id'), 'Unknown-phrase');
    const err = configError(() => loadConfig({ cwd, env: {} }));
    assert.equal(err.message, `SFTP_KEY ${path.join(cwd, 'id')}: it is encrypted: set SFTP_KEY_PASSPHRASE`);
  });

  test('a wrong passphrase says so, and neither passphrase nor any of the key is in the message', () => {
    const cwd = keyCase('./id', 'Wrong-phrase-XYZZY');
    const file = writeKey(path.join(cwd, 'id'), 'Right-phrase-42');
    const err = configError(() => loadConfig({ cwd, env: {} }));
    assert.equal(err.message, `SFTP_KEY ${file}: SFTP_KEY_PASSPHRASE does not decrypt it`);
    const body = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l && !l.startsWith('-----'));
    for (const secret of ['Wrong-phrase-XYZZY', 'Right-phrase-42', ...body]) assert.ok(!err.message.includes(secret));
  });

  test('the .pub instead of the private key: says which file SFTP_KEY takes', () => {
    const cwd = keyCase('./id.pub');
    writeKey(path.join(cwd, 'id'));
    const err = configError(() => loadConfig({ cwd, env: {} }));
    assert.equal(err.message, `SFTP_KEY ${path.join(cwd, 'id.pub')}: a public key; SFTP_KEY takes the private key (usually the same name without .pub)`);
  });

  test('a file that is no key at all: ssh2\'s reason, not the content', () => {
    for (const content of ['machine sftp.example.com password Hunter2-in-the-file\n', '']) {
      const cwd = keyCase('./notakey');
      fs.writeFileSync(path.join(cwd, 'notakey'), content);
      const err = configError(() => loadConfig({ cwd, env: {} }));
      assert.equal(err.message, `SFTP_KEY ${path.join(cwd, 'notakey')}: not a private key ssh2 can read (Unsupported key format)`);
    }
    // Armoured like an OpenSSH key, but not one: ssh2's own message would quote its first bytes.
    const cwd = keyCase('./armoured');
    const body = Buffer.from('Hunter2-in-key!' + '\0'.repeat(40)).toString('base64');
    fs.writeFileSync(path.join(cwd, 'armoured'), `-----BEGIN OPENSSH PRIVATE KEY-----\n${body}\n-----END OPENSSH PRIVATE KEY-----\n`);
    const err = configError(() => loadConfig({ cwd, env: {} }));
    assert.equal(err.message, `SFTP_KEY ${path.join(cwd, 'armoured')}: not a private key ssh2 can read (Unsupported OpenSSH key magic)`);
  });

  test('a bad key stops the load even with a password set: SFTP_KEY was asked for, and would be tried first', () => {
    const cwd = dir(`${BASE}SFTP_KEY=./missing\n`);
    assert.match(configError(() => loadConfig({ cwd, env: {} })).message, /^SFTP_KEY .*missing: cannot read it \(ENOENT\)$/);
  });

  test('a command that may run without logging in is not stopped by it: the problem is kept, and is a warning', () => {
    // status (serverOptional), mark --force (the same) and ipi-push --dry-run (loginOptional).
    const push = 'SFTP_HOST=h\nSFTP_USER=u\nWATCH_DIR=./w\nSFTP_UPLOAD_DIR=/in\nSFTP_KEY=./missing\n';
    for (const [cwd, opts] of [[keyCase('./missing'), { serverOptional: true }], [dir(push), { loginOptional: true, tool: 'push' as const }]] as const) {
      const c = loadConfig({ cwd, env: {}, ...opts });
      const problem = `SFTP_KEY ${path.join(cwd, 'missing')}: cannot read it (ENOENT)`;
      assert.equal(c.key, undefined);
      assert.equal(c.keyProblem, problem);
      assert.deepEqual(c.warnings, [`${problem}; nothing logs in now, but a run that does stops here`]);
      // The same settings for a command that logs in: stopped, with the same line.
      assert.equal(configError(() => loadConfig({ cwd, env: {}, tool: opts.tool })).message, problem);
    }
  });

  test('a command that may run without logging in still reads a good key (status connects with it)', () => {
    const cwd = keyCase('./id');
    const file = writeKey(path.join(cwd, 'id'));
    const c = loadConfig({ cwd, env: {}, serverOptional: true });
    assert.ok(c.key?.equals(fs.readFileSync(file)));
    assert.equal(c.keyProblem, undefined);
  });
});

describe('buildConfig: folders that must not overlap', () => {
  const pull = { host: 'h', user: 'u', remoteDir: '/r', password: 'p' };
  const push = { host: 'h', user: 'u', password: 'p', watchDir: './out', uploadDir: '/in' };
  type Raw = Parameters<typeof buildConfig>[0];
  const build = (raw: Raw, tool: 'pull' | 'push' = 'pull', platform: NodeJS.Platform = 'linux') =>
    buildConfig(raw, { envFile: null, baseDir: '/base', env: {}, tool, platform });
  const refused = (raw: Raw, tool: 'pull' | 'push' = 'pull', platform: NodeJS.Platform = 'linux') => configError(() => build(raw, tool, platform)).message;

  test('ipi-pull: LOCAL_DIR equal to SERVER_DIR, or either inside the other, is refused', () => {
    assert.equal(refused({ ...pull, localDir: './x', serverDir: 'x/' }),
      'LOCAL_DIR and SERVER_DIR are the same folder (/base/x): consumers would see partial downloads, and publishing would copy each file onto itself. Example: LOCAL_DIR=./local_downloads with SERVER_DIR=./synced_server');
    assert.match(refused({ ...pull, localDir: './pub/incoming', serverDir: './pub' }), /^LOCAL_DIR \/base\/pub\/incoming is inside SERVER_DIR \/base\/pub: consumers would see partial downloads\./);
    assert.match(refused({ ...pull, localDir: '.', serverDir: './synced_server' }), /^SERVER_DIR \/base\/synced_server is inside LOCAL_DIR \/base: /);
  });

  test('ipi-pull: LAST_FILE_RECORD inside SERVER_DIR is refused', () => {
    assert.match(refused({ ...pull, serverDir: '/data/pub', markerFile: '/data/pub/last_file.txt' }),
      /^LAST_FILE_RECORD \/data\/pub\/last_file\.txt is inside SERVER_DIR \/data\/pub: the marker, its lock and history would sit among the delivered files/);
    assert.match(refused({ ...pull, serverDir: '/data/pub', markerFile: '/data/pub/state/last.txt' }), /^LAST_FILE_RECORD /);
  });

  test('ipi-pull: neighbours and names that merely start alike are fine; so are the defaults and the seed layout', () => {
    assert.doesNotThrow(() => build(pull));
    assert.doesNotThrow(() => build({ ...pull, localDir: '/data/pub-incoming', serverDir: '/data/pub', markerFile: '/data/pub.txt' }));
    assert.doesNotThrow(() => build({ ...pull, localDir: '/data/..x', serverDir: '/data/..x-pub' }));
    assert.doesNotThrow(() => build({ ...pull, localDir: '/data/in', serverDir: '/data/..pub' }));
  });

  test('ipi-pull rules are not applied to ipi-push, which does not use those folders', () => {
    assert.doesNotThrow(() => build({ ...push, localDir: './x', serverDir: './x' }, 'push'));
  });

  test('on win32 and darwin the comparison ignores case; on linux it does not', () => {
    const raw = { ...pull, localDir: '/data/IPI', serverDir: '/data/ipi' };
    assert.doesNotThrow(() => build(raw, 'pull', 'linux'));
    assert.match(refused(raw, 'pull', 'darwin'), /are the same folder/);
    assert.match(refused(raw, 'pull', 'win32'), /are the same folder/);
    assert.match(refused({ ...pull, serverDir: '/Data/Pub', markerFile: '/data/pub/last_file.txt' }, 'pull', 'darwin'), /^LAST_FILE_RECORD .* is inside SERVER_DIR/);
  });

  test('with Windows paths (drive letters, UNC, case), judged by Windows\' rules on any machine', () => {
    const win = (raw: Raw, tool: 'pull' | 'push' = 'pull') => buildConfig(raw, { envFile: null, baseDir: 'C:\\ipi', env: {}, tool, platform: 'win32' });
    const winRefused = (raw: Raw, tool: 'pull' | 'push' = 'pull') => configError(() => win(raw, tool)).message;
    assert.match(winRefused({ ...pull, localDir: 'C:\\ipi\\pub\\in', serverDir: '.\\PUB' }), /^LOCAL_DIR C:\\ipi\\pub\\in is inside SERVER_DIR C:\\ipi\\PUB: /);
    assert.match(winRefused({ ...pull, localDir: 'c:/IPI/local', serverDir: 'C:\\ipi\\local' }), /are the same folder/);
    assert.match(winRefused({ ...pull, serverDir: '\\\\srv\\share\\pub', markerFile: '\\\\SRV\\Share\\Pub\\last_file.txt' }), /^LAST_FILE_RECORD .* is inside SERVER_DIR/);
    assert.match(winRefused({ ...push, watchDir: 'D:\\out', afterUpload: 'archive', archiveDir: 'd:\\OUT\\done' }, 'push'), /^ARCHIVE_DIR d:\\OUT\\done is inside WATCH_DIR D:\\out: /);
    assert.doesNotThrow(() => win({ ...pull, localDir: 'C:\\ipi\\local', serverDir: 'D:\\ipi\\local', markerFile: '\\\\srv\\share\\last.txt' }));
  });

  test('ipi-push: ARCHIVE_DIR equal to WATCH_DIR, inside it or holding it is refused (ARCHIVE_DIR=. moved a file onto the state file)', () => {
    assert.match(refused({ ...push, afterUpload: 'archive', archiveDir: './out' }, 'push'), /^ARCHIVE_DIR \/base\/out is WATCH_DIR \(\/base\/out\): archived files would be uploaded again/);
    assert.match(refused({ ...push, afterUpload: 'archive', archiveDir: './out/done' }, 'push'), /^ARCHIVE_DIR \/base\/out\/done is inside WATCH_DIR \/base\/out: /);
    assert.match(refused({ ...push, afterUpload: 'archive', archiveDir: '.' }, 'push'), /^ARCHIVE_DIR \/base holds WATCH_DIR \/base\/out: an archived file keeps its path under ARCHIVE_DIR/);
    assert.match(refused({ ...push, afterUpload: 'archive', archiveDir: './done', stateFile: './done/state.json' }, 'push'), /^STATE_FILE \/base\/done\/state\.json is inside ARCHIVE_DIR \/base\/done: an archived file of the same path would replace it/);
    assert.doesNotThrow(() => build({ ...push, afterUpload: 'archive', archiveDir: './done' }, 'push'));
    assert.match(refused({ ...push, afterUpload: 'archive', archiveDir: './OUT' }, 'push', 'win32'), /is WATCH_DIR/);
  });

  test('ipi-push: LOG_FILE and METRICS_FILE inside WATCH_DIR are refused, as STATE_FILE is', () => {
    assert.match(refused({ ...push, stateFile: './out/state.json' }, 'push'), /^STATE_FILE \/base\/out\/state\.json is inside WATCH_DIR/);
    assert.match(refused({ ...push, logFile: './out/logs/push.log' }, 'push'), /^LOG_FILE \/base\/out\/logs\/push\.log is inside WATCH_DIR \/base\/out: the log would be uploaded/);
    assert.match(refused({ ...push, metricsFile: './out/ipi.prom' }, 'push'), /^METRICS_FILE \/base\/out\/ipi\.prom is inside WATCH_DIR \/base\/out: /);
    assert.doesNotThrow(() => build({ ...push, logFile: 'none', metricsFile: './ipi.prom' }, 'push'));
  });

  /** The settings `raw`, with relative paths taken from `baseDir`, refused: its one-line message. */
  const refusedIn = (baseDir: string, raw: Raw, tool: 'pull' | 'push') => {
    const err = configError(() => buildConfig(raw, { envFile: null, baseDir, env: {}, tool }));
    assert.equal(err.exitCode, EXIT.usage);
    assert.doesNotMatch(err.message, /\n/, 'one line');
    return err.message;
  };

  test('ipi-pull: LOCAL_DIR, SERVER_DIR and LAST_FILE_RECORD are compared with symbolic links followed too', () => {
    // incoming -> data/incoming: SERVER_DIR given through the link, LOCAL_DIR by the real path.
    const d = dir();
    fs.mkdirSync(path.join(d, 'data/incoming'), { recursive: true });
    fs.symlinkSync(path.join(d, 'data/incoming'), path.join(d, 'incoming'));
    const refusedHere = (raw: Raw) => refusedIn(d, { ...pull, ...raw }, 'pull');
    assert.match(refusedHere({ serverDir: './incoming', localDir: './data/incoming' }), /^LOCAL_DIR and SERVER_DIR are the same folder \(\S+\/incoming\) \(links followed: /);
    assert.match(refusedHere({ serverDir: './incoming', localDir: './data/incoming/.partials' }), /^LOCAL_DIR \S+ is inside SERVER_DIR \S+ \(links followed: \S+\/data\/incoming\/\.partials and \S+\/data\/incoming\): consumers would see partial downloads/);
    assert.match(refusedHere({ serverDir: './incoming', localDir: './local', markerFile: './data/incoming/last_file.txt' }), /^LAST_FILE_RECORD \S+ is inside SERVER_DIR /);
    assert.doesNotThrow(() => buildConfig({ ...pull, serverDir: './incoming', localDir: './data/local' }, { envFile: null, baseDir: d, env: {}, tool: 'pull' }));
  });

  test('ipi-push: the same checks follow symbolic links (WATCH_DIR a link to the folder holding ARCHIVE_DIR looped archived files back in)', () => {
    // outbox -> data/outbox, as /srv/outbox -> /data/outbox; nothing under it exists yet but outbox itself.
    const d = dir();
    fs.mkdirSync(path.join(d, 'data/outbox'), { recursive: true });
    fs.symlinkSync(path.join(d, 'data/outbox'), path.join(d, 'outbox'));
    fs.symlinkSync(path.join(d, 'data'), path.join(d, 'data-link'));
    const refusedHere = (raw: Raw) => refusedIn(d, { ...push, ...raw }, 'push');
    const archive = { afterUpload: 'archive', watchDir: './outbox' } as const;
    assert.match(refusedHere({ ...archive, archiveDir: './data/outbox/archive' }),
      /^ARCHIVE_DIR \S+\/data\/outbox\/archive is inside WATCH_DIR \S+\/outbox \(links followed: \S+\/data\/outbox\/archive and \S+\/data\/outbox\): archived files would be uploaded again/);
    assert.match(refusedHere({ ...archive, archiveDir: './data/outbox' }), /^ARCHIVE_DIR \S+ is WATCH_DIR \(\S+\/outbox\) \(links followed: /);
    assert.match(refusedHere({ ...archive, watchDir: './data/outbox', archiveDir: './outbox/archive' }), /^ARCHIVE_DIR \S+\/outbox\/archive is inside WATCH_DIR /);
    assert.match(refusedHere({ ...archive, archiveDir: './data-link' }), /^ARCHIVE_DIR \S+\/data-link holds WATCH_DIR /);
    assert.match(refusedHere({ watchDir: './outbox', stateFile: './data/outbox/state.json' }), /^STATE_FILE \S+\/data\/outbox\/state\.json is inside WATCH_DIR \S+\/outbox \(links followed: /);
    assert.match(refusedHere({ watchDir: './outbox', logFile: './data/outbox/logs/push.log' }), /^LOG_FILE \S+ is inside WATCH_DIR .*: the log would be uploaded/);
    assert.match(refusedHere({ watchDir: './outbox', metricsFile: './data-link/outbox/m.prom' }), /^METRICS_FILE \S+ is inside WATCH_DIR /);
    assert.match(refusedHere({ ...archive, watchDir: './data-link/new-outbox', archiveDir: './data/new-outbox/done' }), /^ARCHIVE_DIR \S+ is inside WATCH_DIR /,
      'a WATCH_DIR not made yet is judged by its nearest existing parent');
    assert.doesNotThrow(() => buildConfig({ ...push, ...archive, archiveDir: './data/archive', stateFile: './data/state.json' }, { envFile: null, baseDir: d, env: {}, tool: 'push' }));
  });
});

describe('buildConfig', () => {
  test('validates raw values by setting name without any file', () => {
    const base = fs.mkdtempSync(path.join(root, 'bc-'));
    const c = buildConfig({ host: 'h', user: 'u', remoteDir: '/r', password: 'p', minAge: '2m', localDir: 'x' }, { envFile: null, baseDir: base, env: {} });
    assert.equal(c.minAge, 120_000);
    assert.equal(c.localDir, path.join(base, 'x'));
    assert.equal(c.envFile, null);
    assert.equal(c.baseDir, base);
    assert.deepEqual(c.secrets, ['p']);
    assert.ok(c.explicit.has('minAge'));
    assert.ok(!c.explicit.has('port'));
  });

  test('a missing required value throws when the server is needed', () => {
    assert.throws(
      () => buildConfig({ user: 'u', remoteDir: '/r', password: 'p' }, { envFile: null, baseDir: root, env: {} }),
      (err: unknown) => err instanceof ConfigError && err.message.startsWith('SFTP_HOST is not set:'),
    );
  });
});
