import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { isInsideOrSame, isSame, looksLikeWindowsPath } from '../../src/config/paths.js';

describe('looksLikeWindowsPath', () => {
  test('drive letters, UNC shares and backslash-only paths are Windows paths', () => {
    for (const p of ['C:\\ipi\\local', 'D:\\share', 'c:/ipi/local', 'D:/', 'E:', ' C:\\x ', '\\\\server\\share\\ipi', 'logs\\sftp.log', '.\\downloads', '~\\ipi', '%USERPROFILE%\\ipi']) {
      assert.equal(looksLikeWindowsPath(p), true, p);
    }
  });

  test('POSIX paths are not, even with a backslash inside a name or a colon in a name', () => {
    for (const p of ['/data/ipi', './local_downloads', 'local', '~/ipi', '/data/odd\\name', 'dir/a\\b', '/mnt/C:/x', 'host:dir']) {
      assert.equal(looksLikeWindowsPath(p), false, p);
    }
  });
});

describe('isInsideOrSame', () => {
  test('the folder itself and anything below it', () => {
    assert.equal(isInsideOrSame('/data/ipi', '/data/ipi', 'linux'), true);
    assert.equal(isInsideOrSame('/data/ipi/a/b', '/data/ipi', 'linux'), true);
    assert.equal(isInsideOrSame('/data', '/data/ipi', 'linux'), false);
    assert.equal(isInsideOrSame('/data/ipi2', '/data/ipi', 'linux'), false);
  });

  test('a name that starts with two dots is inside, not above', () => {
    assert.equal(isInsideOrSame('/data/..hidden', '/data', 'linux'), true);
    assert.equal(isInsideOrSame('/other', '/data', 'linux'), false);
  });

  test('case is ignored on win32 and darwin only', () => {
    assert.equal(isInsideOrSame('/Data/IPI/x', '/data/ipi', 'linux'), false);
    assert.equal(isInsideOrSame('/Data/IPI/x', '/data/ipi', 'darwin'), true);
    assert.equal(isInsideOrSame('/Data/IPI/x', '/data/ipi', 'win32'), true);
    assert.equal(isSame('/Data/IPI', '/data/ipi', 'darwin'), true);
    assert.equal(isSame('/data/ipi/x', '/data/ipi', 'darwin'), false);
  });
});
