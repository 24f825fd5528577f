import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  AccessDeniedError, ConfigError, EXIT, InterruptedError, IpiError, LockHeldError, PermanentError, RemoteMissingError, TransientError, classify, errorDetail,
  wrongKindOfPath,
  replaceRefused,
} from '../../src/errors.js';

const doing = 'downloading IPI_20240101.dat';

/** An Error with extra fields, the way ssh2 and node:fs build theirs. */
function raw(message: string, fields: Record<string, unknown>): Error {
  return Object.assign(new Error(message), fields);
}

describe('error classes', () => {
  test('kinds and exit codes', () => {
    const cases: Array<[IpiError, string, number, string]> = [
      [new ConfigError('x'), 'permanent', EXIT.usage, 'ConfigError'],
      [new LockHeldError('x'), 'permanent', EXIT.locked, 'LockHeldError'],
      [new AccessDeniedError('x'), 'permanent', EXIT.auth, 'AccessDeniedError'],
      [new PermanentError('x'), 'permanent', EXIT.failed, 'PermanentError'],
      [new TransientError('x'), 'transient', EXIT.failed, 'TransientError'],
      [new InterruptedError('SIGINT'), 'permanent', EXIT.interrupted, 'InterruptedError'],
    ];
    for (const [err, kind, code, name] of cases) {
      assert.ok(err instanceof IpiError);
      assert.ok(err instanceof Error);
      assert.equal(err.kind, kind, name);
      assert.equal(err.exitCode, code, name);
      assert.equal(err.name, name);
    }
  });

  test('the exit codes are the documented ones', () => {
    assert.deepEqual({ ...EXIT }, { ok: 0, failed: 1, usage: 2, locked: 3, auth: 4, interrupted: 130 });
  });

  test('InterruptedError says the partial is kept', () => {
    assert.equal(new InterruptedError('SIGTERM').message, 'stopped by SIGTERM; what was transferred is kept and the next run resumes it');
  });

  test('the cause is kept', () => {
    const cause = new Error('root');
    assert.equal(new TransientError('x', { cause }).cause, cause);
  });
});

describe('classify', () => {
  test('an IpiError passes through unchanged', () => {
    const e = new LockHeldError('held');
    assert.equal(classify(e, doing), e);
  });

  test('ssh2 client-authentication: AccessDeniedError, exit 4, with a hint', () => {
    const cause = raw('All configured authentication methods failed', { level: 'client-authentication' });
    const e = classify(cause, 'connecting to sftp.example.com:22');
    assert.ok(e instanceof AccessDeniedError);
    assert.equal(e.exitCode, 4);
    assert.equal(e.kind, 'permanent');
    assert.equal(e.message, 'connecting to sftp.example.com:22: the server refused the login (All configured authentication methods failed); check SFTP_USER and SFTP_PASS / SFTP_KEY');
    assert.equal(e.cause, cause);
  });

  test('ssh2 client-socket, protocol and client-timeout errors are transient', () => {
    const sock = classify(raw('connect ECONNREFUSED 10.0.0.1:22', { level: 'client-socket' }), doing);
    assert.ok(sock instanceof TransientError);
    assert.equal(sock.message, `${doing}: connection failed (connect ECONNREFUSED 10.0.0.1:22)`);
    assert.ok(classify(raw('Bad packet length', { level: 'protocol' }), doing) instanceof TransientError);
    const to = classify(raw('Timed out while waiting for handshake', { level: 'client-timeout' }), doing);
    assert.ok(to instanceof TransientError);
    assert.match(to.message, /timed out \(Timed out while waiting for handshake\)$/);
  });

  test('network error codes are transient', () => {
    for (const code of ['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ERR_SOCKET_CLOSED']) {
      const e = classify(raw(`read ${code}`, { code }), doing);
      assert.ok(e instanceof TransientError, code);
      assert.equal(e.kind, 'transient');
      assert.equal(e.message, `${doing}: read ${code}`);
    }
  });

  test('SFTP status 2 (no such file) is permanent, and says it is about a missing remote file', () => {
    const e = classify(raw('No such file', { code: 2 }), 'listing /outgoing/ipi');
    assert.ok(e instanceof PermanentError);
    assert.ok(e instanceof RemoteMissingError);
    assert.equal(e.exitCode, EXIT.failed);
    assert.equal(e.message, 'listing /outgoing/ipi: no such file or folder on the server (No such file)');
  });

  test('the link ending is transient; a local file that "ended" early is not, whatever its wording', () => {
    assert.equal(classify(new Error('This socket has been ended by the other party'), doing).kind, 'transient');
    assert.equal(classify(new Error('socket hang up'), doing).kind, 'transient');
    assert.equal(classify(new Error('/data/in/IPI_1.dat ended at byte 4096, before its size 8192'), doing).kind, 'permanent');
  });

  test('SFTP status 3 (permission denied) is permanent', () => {
    const e = classify(raw('Permission denied', { code: 3 }), doing);
    assert.ok(e instanceof PermanentError);
    assert.match(e.message, /the server denied permission \(Permission denied\)$/);
  });

  test('SFTP status 6 and 7 (no connection, connection lost) are transient', () => {
    for (const code of [6, 7]) {
      const e = classify(raw('lost', { code }), doing);
      assert.ok(e instanceof TransientError, String(code));
      assert.match(e.message, /connection lost/);
    }
  });

  test('other SFTP statuses (4 failure, 1 EOF, 8 unsupported) may pass on a new session: transient', () => {
    for (const code of [1, 4, 8]) {
      const e = classify(raw('Failure', { code }), doing);
      assert.ok(e instanceof TransientError, String(code));
      assert.equal(e.message, `${doing}: the server answered "Failure"`);
    }
  });

  test('a full local disk is permanent, says "no space left" and names the path', () => {
    const e = classify(raw("ENOSPC: no space left on device, write", { code: 'ENOSPC', syscall: 'write', path: '/data/in/IPI_1.part' }), doing);
    assert.ok(e instanceof PermanentError);
    assert.equal(e.kind, 'permanent');
    assert.equal(e.message, `${doing}: no space left on device (/data/in/IPI_1.part)`);
    assert.match(e.message, /no space left/);
  });

  test('other local filesystem errors are permanent with a plain-words reason', () => {
    const cases: Array<[string, RegExp]> = [
      ['EDQUOT', /disk quota exceeded/], ['EROFS', /read-only filesystem/], ['EACCES', /permission denied/],
      ['EPERM', /operation not permitted/], ['ENOTDIR', /not a folder/], ['EISDIR', /is a folder/], ['ENAMETOOLONG', /name too long/],
    ];
    for (const [code, re] of cases) {
      const e = classify(raw(code, { code }), doing);
      assert.ok(e instanceof PermanentError, code);
      assert.match(e.message, re);
      assert.ok(!e.message.includes('('), 'no path when there is none');
    }
  });

  test('a local ENOENT is permanent with the original message', () => {
    const e = classify(raw("ENOENT: no such file or directory, open '/x'", { code: 'ENOENT' }), doing);
    assert.ok(e instanceof PermanentError);
    assert.equal(e.message, `${doing}: ENOENT: no such file or directory, open '/x'`);
  });

  test('ssh2\'s plain-message failures are transient', () => {
    for (const msg of ['No response from server', 'Keepalive timeout', 'Not connected', 'Channel open failure: open failed', 'Connection lost before handshake', 'socket hang up', 'Timed out while waiting for handshake', 'Connection closed']) {
      const e = classify(new Error(msg), doing);
      assert.ok(e instanceof TransientError, msg);
      assert.equal(e.message, `${doing}: ${msg}`);
    }
  });

  test('a non-Error value is classified from its text', () => {
    assert.ok(classify('No response from server', doing) instanceof TransientError);
    const e = classify('something odd', doing);
    assert.ok(e instanceof PermanentError);
    assert.equal(e.message, `${doing}: something odd`);
  });

  test('null and undefined do not crash', () => {
    assert.ok(classify(null, doing) instanceof PermanentError);
    assert.ok(classify(undefined, doing) instanceof PermanentError);
  });

  test('anything unknown is permanent (no hammering on a bug)', () => {
    const e = classify(new TypeError("Cannot read properties of undefined (reading 'x')"), doing);
    assert.ok(e instanceof PermanentError);
    assert.equal(e.exitCode, EXIT.failed);
  });

  test('an unknown string code falls through to the message rules', () => {
    assert.ok(classify(raw('weird', { code: 'EWEIRD' }), doing) instanceof PermanentError);
    assert.ok(classify(raw('No response from server', { code: 'EWEIRD' }), doing) instanceof TransientError);
  });
});

describe('errorDetail', () => {
  test('each stack down the cause chain, for LOG_FILE at debug level', () => {
    const root = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    const e = classify(root, 'reading remote data');
    const text = errorDetail(e);
    assert.match(text, /^TransientError: reading remote data: read ECONNRESET\n\s+at /);
    assert.match(text, /\ncaused by: Error: read ECONNRESET\n\s+at /);
  });

  test('a cycle or a non-Error cause ends the chain', () => {
    const a = new Error('a');
    (a as { cause?: unknown }).cause = a;
    assert.equal(errorDetail(a).split('caused by').length, 1);
    assert.equal(errorDetail(new Error('b', { cause: 'a string' })).split('\n').at(-1), 'caused by: a string');
  });
});

describe('wrongKindOfPath: a file where a folder is to be, or a folder where a file is', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-kind-'));
  after(() => fs.rmSync(root, { recursive: true, force: true }));
  const file = path.join(root, '.env');
  fs.writeFileSync(file, 'x');
  const caught = (fn: () => unknown): unknown => {
    try {
      fn();
    } catch (err) {
      return err;
    }
    assert.fail('did not throw');
  };

  test('a file as a folder: a ConfigError (exit 2) naming the setting, and the file when it is a parent', () => {
    const asFolder = wrongKindOfPath(caught(() => fs.mkdirSync(file, { recursive: true })), 'LOCAL_DIR', file, 'folder');
    assert.ok(asFolder instanceof ConfigError);
    assert.equal(asFolder.exitCode, EXIT.usage);
    assert.equal(asFolder.message, `LOCAL_DIR ${file} is a file, not a folder`);
    const below = path.join(file, 'sub', 'deeper');
    assert.equal(wrongKindOfPath(caught(() => fs.mkdirSync(below, { recursive: true })), 'LOCAL_DIR', below, 'folder')?.message,
      `LOCAL_DIR ${below}: ${file} is a file, not a folder`);
    const log = path.join(file, 'ipi.log');
    assert.equal(wrongKindOfPath(caught(() => fs.mkdirSync(path.dirname(log))), 'LOG_FILE', log, 'file')?.message, `LOG_FILE ${log}: ${file} is a file, not a folder`);
  });

  test('a folder as a file', () => {
    assert.equal(wrongKindOfPath(caught(() => fs.openSync(root, 'a')), 'LOG_FILE', root, 'file')?.message, `LOG_FILE ${root} is a folder, not a file`);
  });

  test('null for anything else: other codes, or a path of the right kind', () => {
    assert.equal(wrongKindOfPath(raw('EACCES', { code: 'EACCES' }), 'LOCAL_DIR', root, 'folder'), null);
    assert.equal(wrongKindOfPath(raw('EEXIST', { code: 'EEXIST' }), 'LOCAL_DIR', root, 'folder'), null);
    assert.equal(wrongKindOfPath(raw('EEXIST', { code: 'EEXIST' }), 'LOG_FILE', file, 'file'), null);
  });
});

describe('replaceRefused: Windows will not replace a file another program holds open', () => {
  test('on win32, EPERM, EBUSY and EACCES on the final rename are transient, naming the file and why', () => {
    for (const code of ['EPERM', 'EBUSY', 'EACCES']) {
      const e = replaceRefused(raw(code, { code }), 'D:\\outbox\\IPI_20240101.dat', 'win32');
      assert.ok(e instanceof TransientError, code);
      assert.equal(e.kind, 'transient');
      assert.match(e.message, /^D:\\outbox\\IPI_20240101\.dat could not be replaced \((EPERM|EBUSY|EACCES)\): another program has it open/);
    }
  });

  test('elsewhere, and for other codes, it is not this case (null): the error is what it says', () => {
    assert.equal(replaceRefused(raw('EPERM', { code: 'EPERM' }), '/srv/out/x', 'linux'), null);
    assert.equal(replaceRefused(raw('ENOSPC', { code: 'ENOSPC' }), 'D:\\out\\x', 'win32'), null);
    assert.equal(replaceRefused(new Error('no code'), 'D:\\out\\x', 'win32'), null);
  });
});
