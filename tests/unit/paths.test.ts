import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { looksLikeWindowsPath } from '../../src/config/paths.js';

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
