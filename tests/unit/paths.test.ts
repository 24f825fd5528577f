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

describe('isInsideOrSame with Windows paths, on any machine', () => {
  // Judged with Windows' path rules whatever the host: on Linux, `C:\\ipi\\local` used to
  // be one relative name, and none of these was inside another.
  test('drive letters: inside, the same, a neighbour, another drive', () => {
    assert.equal(isInsideOrSame('C:\\ipi\\local', 'C:\\ipi', 'win32'), true);
    assert.equal(isInsideOrSame('C:\\ipi', 'C:\\ipi', 'win32'), true);
    assert.equal(isInsideOrSame('C:/ipi/local', 'C:\\ipi', 'win32'), true);
    assert.equal(isInsideOrSame('C:\\ipi\\..hidden', 'C:\\ipi', 'win32'), true);
    assert.equal(isInsideOrSame('C:\\ipi2', 'C:\\ipi', 'win32'), false);
    assert.equal(isInsideOrSame('C:\\ipi', 'C:\\ipi\\local', 'win32'), false);
    assert.equal(isInsideOrSame('D:\\ipi\\local', 'C:\\ipi', 'win32'), false);
  });

  test('UNC shares', () => {
    assert.equal(isInsideOrSame('\\\\srv\\share\\ipi\\in', '\\\\srv\\share\\ipi', 'win32'), true);
    assert.equal(isInsideOrSame('\\\\srv\\other\\ipi', '\\\\srv\\share\\ipi', 'win32'), false);
    assert.equal(isInsideOrSame('\\\\srv2\\share\\ipi', '\\\\srv\\share\\ipi', 'win32'), false);
  });

  test('case, of the drive letter, the share and the folders', () => {
    assert.equal(isSame('c:\\IPI\\Local', 'C:\\ipi\\local', 'win32'), true);
    assert.equal(isInsideOrSame('\\\\SRV\\Share\\IPI\\x', '\\\\srv\\share\\ipi', 'win32'), true);
    assert.equal(isSame('C:\\ipi\\local', 'C:\\ipi\\pub', 'win32'), false);
  });
});
