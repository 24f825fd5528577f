import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { editDistance, nearMiss } from '../../src/config/nearmiss.js';
import { SETTINGS, SETTING_NAMES } from '../../src/config/settings.js';

const OURS = SETTING_NAMES.map((n) => SETTINGS[n].env);

describe('editDistance', () => {
  test('insertions, deletions and substitutions count one each', () => {
    assert.equal(editDistance('SFTP_HOST', 'SFTP_HOST'), 0);
    assert.equal(editDistance('SFTP_HOSTT', 'SFTP_HOST'), 1);
    assert.equal(editDistance('SFTP_HST', 'SFTP_HOST'), 1);
    assert.equal(editDistance('SFTP_POST', 'SFTP_PORT'), 1);
    assert.equal(editDistance('SFTP_HSOT', 'SFTP_HOST'), 2);
    assert.equal(editDistance('', 'ABC'), 3);
  });

  test('stops early past the limit, answering limit + 1', () => {
    assert.equal(editDistance('A', 'ABCDEFG', 2), 3);
    assert.equal(editDistance('ABCDEFGH', 'ZYXWVUTS', 2), 3);
  });
});

describe('nearMiss against our keys', () => {
  test('typos, a missing underscore and another case are near misses, naming the key meant', () => {
    for (const [key, meant] of [
      ['SFTP_HOSTT', 'SFTP_HOST'], ['LOCALDIR', 'LOCAL_DIR'], ['local_dir', 'LOCAL_DIR'], ['Sftp_Pass', 'SFTP_PASS'],
      ['SFTP_KNOWN_HOST', 'SFTP_KNOWN_HOSTS'], ['SERVERDIR', 'SERVER_DIR'], ['LAST_FILE_RECORDS', 'LAST_FILE_RECORD'],
      ['LAST_FILERECORD', 'LAST_FILE_RECORD'], ['L_OCAL_DIR', 'LOCAL_DIR'], ['DATA_TIMOUT', 'DATA_TIMEOUT'], ['WATCHDIR', 'WATCH_DIR'],
    ]) {
      assert.equal(nearMiss(key!, OURS)?.meant, meant, key);
    }
  });

  test('only a difference of case is flagged as such', () => {
    assert.equal(nearMiss('local_dir', OURS)?.caseOnly, true);
    assert.equal(nearMiss('LOCALDIR', OURS)?.caseOnly, false);
  });

  test('our own keys, of either command, are not near misses', () => {
    for (const key of OURS) assert.equal(nearMiss(key, OURS), null, key);
  });

  test("other programs' keys are left alone", () => {
    for (const key of ['DATABASE_URL', 'PATH', 'HOME', 'BASE', 'API_TOKEN', 'SMTP_SERVER', 'LOG_DIR', 'NODE_ENV', 'HTTP_PROXY', 'export']) {
      assert.equal(nearMiss(key, OURS), null, key);
    }
  });

  test('the closest key wins', () => {
    // One edit from SFTP_PORT, two from SFTP_HOST; one from SFTP_USER, two from SFTP_DIR.
    assert.equal(nearMiss('SFTP_PORTS', OURS)?.meant, 'SFTP_PORT');
    assert.equal(nearMiss('SFTP_USR', OURS)?.meant, 'SFTP_USER');
  });
});
