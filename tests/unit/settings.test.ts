import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { SETTINGS, SETTING_NAMES, type SettingName, flagOf, resolvePath } from '../../src/config/settings.js';
import { ValueError } from '../../src/config/parse.js';
import { rangeText, type Limits } from '../../src/config/bounds.js';

const SECTIONS = new Set(['Server', 'Authentication', 'Host key', 'Folders and files', 'Selection', 'Transfer', 'Retry', 'Logging', 'Upload (ipi-push)']);
const ctx = { baseDir: path.join(os.tmpdir(), 'ipi-settings-base') };

type AnySpec = {
  env: string; section: string; help: string; example: string; default?: string;
  required?: true; secret?: true; advanced?: true; tools?: readonly string[]; parse: (raw: string, c: typeof ctx) => unknown;
};
const spec = (name: SettingName) => SETTINGS[name] as unknown as AnySpec;

describe('the settings table', () => {
  test('has the settings the seed .env uses', () => {
    const envKeys = SETTING_NAMES.map((n) => spec(n).env);
    for (const k of ['SFTP_HOST', 'SFTP_PORT', 'SFTP_USER', 'SFTP_PASS', 'SFTP_DIR', 'LOCAL_DIR', 'SERVER_DIR', 'LOG_FILE', 'LAST_FILE_RECORD']) {
      assert.ok(envKeys.includes(k), `${k} missing from SETTINGS`);
    }
  });

  test('SETTING_NAMES lists every key of SETTINGS', () => {
    assert.deepEqual([...SETTING_NAMES].sort(), Object.keys(SETTINGS).sort());
  });

  for (const name of SETTING_NAMES) {
    test(`${name}: env, help, example and a known section`, () => {
      const s = spec(name);
      assert.match(s.env, /^[A-Z][A-Z0-9_]*$/, 'env key is UPPER_SNAKE');
      assert.equal(typeof s.help, 'string');
      assert.ok(s.help.trim().length > 10, 'help says something');
      assert.ok(/[.)]$/.test(s.help.trim()), `help is a sentence: ${s.help}`);
      assert.equal(typeof s.example, 'string');
      assert.ok(s.example.trim().length > 0, 'example is not empty');
      assert.ok(SECTIONS.has(s.section), `unknown section ${s.section}`);
      assert.equal(typeof s.parse, 'function');
    });
  }

  test('env keys and flags are unique', () => {
    const envs = SETTING_NAMES.map((n) => spec(n).env);
    assert.equal(new Set(envs).size, envs.length);
    const flags = SETTING_NAMES.map(flagOf);
    assert.equal(new Set(flags).size, flags.length);
  });

  test('required settings have no default; secret settings have no default and are not required', () => {
    for (const name of SETTING_NAMES) {
      const s = spec(name);
      if (s.required) assert.equal(s.default, undefined, `${name} is required and has a default`);
      if (s.secret) {
        assert.equal(s.default, undefined, `${name} is secret and has a default`);
        assert.equal(s.required, undefined, `${name} is secret and required`);
      }
    }
  });

  test('the required settings are host, user and remote folder for ipi-pull', () => {
    const forPull = SETTING_NAMES.filter((n) => spec(n).required && (!spec(n).tools || spec(n).tools!.includes('pull')));
    assert.deepEqual(forPull.sort(), ['host', 'remoteDir', 'user']);
  });

  test('the required settings are host, user, watched folder and upload folder for ipi-push', () => {
    const forPush = SETTING_NAMES.filter((n) => spec(n).required && (!spec(n).tools || spec(n).tools!.includes('push')));
    assert.deepEqual(forPush.sort(), ['host', 'uploadDir', 'user', 'watchDir']);
  });

  test('a setting read by one command only says which, and only that command has its flag', async () => {
    const { appliesTo } = await import('../../src/config/settings.js');
    assert.equal(appliesTo('remoteDir', 'push'), false);
    assert.equal(appliesTo('watchDir', 'pull'), false);
    assert.equal(appliesTo('host', 'push'), true);
    assert.equal(appliesTo('host', 'pull'), true);
  });

  test('the secret settings are the password and the key passphrase', () => {
    assert.deepEqual(SETTING_NAMES.filter((n) => spec(n).secret).map((n) => spec(n).env).sort(), ['SFTP_KEY_PASSPHRASE', 'SFTP_PASS']);
  });

  test('secret parsers keep the value byte for byte', () => {
    for (const name of SETTING_NAMES.filter((n) => spec(n).secret)) {
      assert.equal(spec(name).parse('  a#b$c  ', ctx), '  a#b$c  ');
    }
  });

  for (const name of SETTING_NAMES) {
    const s = spec(name);
    if (s.default === undefined) continue;
    test(`${name}: the default ${JSON.stringify(s.default)} parses with its own parser`, () => {
      assert.doesNotThrow(() => s.parse(s.default!, ctx));
    });
  }

  for (const name of SETTING_NAMES) {
    const s = spec(name);
    test(`${name}: the example ${JSON.stringify(s.example)} parses`, () => {
      assert.doesNotThrow(() => s.parse(s.example, ctx));
    });
  }

  test('defaults parse to the values the documentation promises', () => {
    const d = (name: SettingName) => spec(name).parse(spec(name).default!, ctx);
    assert.equal(d('port'), 22);
    assert.equal(d('chunkSize'), 2 * 1024 * 1024);
    assert.equal(d('chunksInFlight'), 4);
    assert.equal(d('readSize'), 255 * 1024);
    assert.equal(d('rekeyBytes'), 512 * 1024 * 1024);
    assert.equal(d('retries'), 7);
    assert.deepEqual(d('retryDelays'), [5, 10, 30, 60, 120, 300, 600].map((s) => s * 1000));
    assert.equal(d('minAge'), 0);
    assert.equal(d('settleTime'), 1000);
    assert.equal(d('connectTimeout'), 30_000);
    assert.equal(d('dataTimeout'), 60_000);
    assert.equal(d('keepaliveInterval'), 15_000);
    assert.equal(d('keepaliveCountMax'), 4);
    assert.equal(d('pattern'), 'IPI*');
    assert.equal(d('orderBy'), 'date');
    assert.equal(d('publishMode'), 'copy');
    assert.equal(d('logLevel'), 'info');
    assert.equal(d('logMaxSize'), 10 * 1024 * 1024);
    assert.equal(d('logMaxFiles'), 10);
    assert.equal(d('localDir'), path.join(ctx.baseDir, 'local_downloads'));
    assert.equal(d('serverDir'), path.join(ctx.baseDir, 'synced_server'));
    assert.equal(d('markerFile'), path.join(ctx.baseDir, 'last_file.txt'));
    assert.equal(d('logFile'), path.join(ctx.baseDir, 'logs', 'sftp_transfer.log'));
    assert.equal(d('knownHosts'), path.join(os.homedir(), '.ssh', 'known_hosts'));
  });

  test('FILE_PATTERN is matched against names: a path in it is refused, not left to match nothing', () => {
    const pattern = (raw: string) => spec('pattern').parse(raw, ctx);
    assert.equal(pattern(' *IPI* '), '*IPI*');
    assert.throws(() => pattern('sub/IPI*'), /path separator.*SFTP_DIR/);
    assert.throws(() => pattern('sub\\IPI*'), /path separator/);
  });

  test("LOG_LEVEL takes Python's level names too, in any case (sftpmonitor's config)", () => {
    const level = (raw: string) => spec('logLevel').parse(raw, ctx);
    assert.deepEqual(['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL', 'warn'].map(level), ['debug', 'info', 'warn', 'error', 'error', 'warn']);
    assert.throws(() => level('verbose'), /'verbose' is not one of error, warn, info, debug/);
  });
});

describe('the limits of numeric settings', () => {
  // Every setting whose value is a number (or numbers) declares its limits, and its help states
  // them. MIN_AGE alone is open-ended: it is compared with file ages, never put in a timer.
  const numeric = SETTING_NAMES.filter((n) => {
    const s = spec(n);
    const v = s.default === undefined ? undefined : s.parse(s.default, ctx);
    return typeof v === 'number' || (Array.isArray(v) && typeof v[0] === 'number');
  });

  test('every numeric setting but MIN_AGE declares limits, and its help states them', () => {
    assert.ok(numeric.length >= 15, numeric.join(','));
    for (const name of numeric) {
      const s = SETTINGS[name] as unknown as { help: string; limits?: Limits };
      if (name === 'minAge') {
        assert.equal(s.limits, undefined);
        continue;
      }
      assert.ok(s.limits, `${name} has no limits`);
      assert.ok(s.help.endsWith(`Allowed: ${s.limits.each ? 'each ' : ''}${rangeText(s.limits.kind, s.limits.bounds)}.`), `${name}: ${s.help}`);
    }
  });

  test('no duration may exceed what a Node timer holds', () => {
    for (const name of numeric) {
      const l = (SETTINGS[name] as unknown as { limits?: Limits }).limits;
      if (l?.kind !== 'duration') continue;
      assert.ok(l.bounds.max !== undefined && l.bounds.max <= 2 ** 31 - 1, `${name} has no timer-safe maximum`);
    }
  });

  test('timeouts are at least 1 s; keepalive and rescan intervals are off at 0, else at least 1 s', () => {
    for (const name of ['connectTimeout', 'dataTimeout'] as const) {
      assert.throws(() => spec(name).parse('0', ctx), /out of range \(1s to 24d\)/);
      assert.throws(() => spec(name).parse('999ms', ctx), /out of range/);
      assert.equal(spec(name).parse('1', ctx), 1000);
    }
    for (const name of ['keepaliveInterval', 'rescanInterval'] as const) {
      assert.equal(spec(name).parse('0', ctx), 0);
      assert.throws(() => spec(name).parse('1ms', ctx), /out of range \(0, or 1s to 24d\)/);
    }
  });
});

describe('flagOf', () => {
  test('is the env key in lower case with dashes', () => {
    assert.equal(flagOf('host'), 'sftp-host');
    assert.equal(flagOf('port'), 'sftp-port');
    assert.equal(flagOf('remoteDir'), 'sftp-dir');
    assert.equal(flagOf('localDir'), 'local-dir');
    assert.equal(flagOf('markerFile'), 'last-file-record');
    assert.equal(flagOf('keyPassphrase'), 'sftp-key-passphrase');
    assert.equal(flagOf('retryDelays'), 'retry-delays');
  });

  test('holds for every setting', () => {
    for (const name of SETTING_NAMES) {
      assert.equal(flagOf(name), spec(name).env.toLowerCase().replaceAll('_', '-'));
      assert.match(flagOf(name), /^[a-z][a-z0-9-]*$/);
    }
  });
});

describe('individual setting parsers', () => {
  test('host: trimmed; blanks, slashes, user@, scheme and :PORT are refused; bare IPv6 taken', () => {
    assert.equal(spec('host').parse(' sftp.example.com ', ctx), 'sftp.example.com');
    assert.equal(spec('host').parse('10.0.0.1', ctx), '10.0.0.1');
    assert.throws(() => spec('host').parse('sftp://host', ctx), ValueError);
    assert.throws(() => spec('host').parse('ipi:pw@host', ctx), /SFTP_USER and the password in SFTP_PASS/);
    assert.throws(() => spec('host').parse('host:2222', ctx), /SFTP_PORT/);
    assert.equal(spec('host').parse('::1', ctx), '::1');
    assert.throws(() => spec('host').parse('two words', ctx), ValueError);
    assert.throws(() => spec('host').parse('   ', ctx), /is empty/);
  });

  test('chunk size is bounded to 32KiB..256MiB', () => {
    const p = spec('chunkSize').parse;
    assert.equal(p('32KiB', ctx), 32 * 1024);
    assert.equal(p('256MiB', ctx), 256 * 1024 * 1024);
    assert.throws(() => p('31KiB', ctx), /out of range \(32KiB to 256MiB\)/);
    assert.throws(() => p('257MiB', ctx), /out of range/);
  });

  test('read size is bounded to 1KiB..4MiB', () => {
    const p = spec('readSize').parse;
    assert.equal(p('1KiB', ctx), 1024);
    assert.equal(p('4MiB', ctx), 4 * 1024 * 1024);
    assert.throws(() => p('1023', ctx), /out of range \(1KiB to 4MiB\)/);
    assert.throws(() => p('5MiB', ctx), /out of range/);
  });

  test('integer settings have their ranges', () => {
    assert.throws(() => spec('chunksInFlight').parse('0', ctx), /out of range \(1 to 64\)/);
    assert.throws(() => spec('chunksInFlight').parse('65', ctx), /out of range/);
    assert.equal(spec('retries').parse('0', ctx), 0);
    assert.throws(() => spec('retries').parse('-1', ctx), /out of range \(0 to 1000\)/);
    assert.throws(() => spec('keepaliveCountMax').parse('0', ctx), /out of range/);
  });

  test('retry delays are a list of durations', () => {
    assert.deepEqual(spec('retryDelays').parse('500ms, 2, 1m', ctx), [500, 2000, 60_000]);
    assert.throws(() => spec('retryDelays').parse('5,,10', ctx), /empty item/);
    assert.throws(() => spec('retryDelays').parse('5,ten', ctx), /not a duration/);
  });

  test('host key pins are normalised fingerprints', () => {
    assert.deepEqual(spec('hostKey').parse('SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s=', ctx), ['SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s']);
  });

  test('LOG_FILE "none" (any case) means no file', () => {
    assert.equal(spec('logFile').parse('none', ctx), null);
    assert.equal(spec('logFile').parse(' NONE ', ctx), null);
  });
});

describe('resolvePath', () => {
  test('relative to baseDir, absolute kept, ~ expanded, blanks trimmed', () => {
    assert.equal(resolvePath('a/b', ctx), path.join(ctx.baseDir, 'a', 'b'));
    assert.equal(resolvePath('/x/y', ctx), '/x/y');
    assert.equal(resolvePath('~', ctx), os.homedir());
    assert.equal(resolvePath('~/k', ctx), path.join(os.homedir(), 'k'));
    assert.equal(resolvePath('  ./c  ', ctx), path.join(ctx.baseDir, 'c'));
  });

  test('a Windows path is refused on other platforms, saying so, and taken on Windows', () => {
    for (const platform of ['linux', 'darwin', 'freebsd'] as const) {
      for (const raw of ['C:\\ipi\\local', 'D:\\share', 'D:/share', '\\\\server\\ipi', 'logs\\ipi.log']) {
        assert.throws(() => resolvePath(raw, { ...ctx, platform }), (err: unknown) => {
          assert.ok(err instanceof ValueError);
          assert.equal(err.message, `'${raw}' looks like a Windows path, and this machine is not Windows (${platform}): write a path of this machine`);
          return true;
        });
      }
    }
    assert.equal(resolvePath('C:\\ipi\\local', { ...ctx, platform: 'win32' }), 'C:\\ipi\\local');
    assert.equal(resolvePath('/data/odd\\name', { ...ctx, platform: 'linux' }), '/data/odd\\name');
  });

  test('on Windows, Windows\' rules whatever this machine is: drive letters, UNC, / and \\ alike', () => {
    const win = (raw: string, baseDir: string) => resolvePath(raw, { baseDir, platform: 'win32' });
    assert.equal(win('D:/share/ipi', 'C:\\ipi'), 'D:\\share\\ipi');
    assert.equal(win('logs\\ipi.log', 'C:\\ipi'), 'C:\\ipi\\logs\\ipi.log');
    assert.equal(win('.\\downloads', 'C:\\ipi'), 'C:\\ipi\\downloads');
    assert.equal(win('..\\pub', 'C:\\ipi\\etc'), 'C:\\ipi\\pub');
    assert.equal(win('local', '\\\\srv\\share\\ipi'), '\\\\srv\\share\\ipi\\local');
    assert.equal(win('\\\\srv\\share\\ipi\\in', 'C:\\ipi'), '\\\\srv\\share\\ipi\\in');
  });

  test('the platform defaults to this machine\'s', () => {
    if (process.platform === 'win32') assert.doesNotThrow(() => resolvePath('C:\\ipi', ctx));
    else assert.throws(() => resolvePath('C:\\ipi', ctx), /looks like a Windows path/);
  });

  test('an empty path is refused', () => {
    assert.throws(() => resolvePath('  ', ctx), (err: unknown) => err instanceof ValueError && err.message === 'is empty');
  });
});
