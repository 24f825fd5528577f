import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  ValueError, controlCharacterProblem, parseBoolean, parseChoice, parseDuration, parseFingerprints, parseHost, parseInteger, parseList, parseSize, shown,
} from '../../src/config/parse.js';

describe('shown: a value as an error line quotes it', () => {
  test('on one line: control characters escaped as JSON escapes them; a backslash is kept as written', () => {
    assert.equal(shown('22\nSFTP_PASS=x\r\n'), "'22\\nSFTP_PASS=x\\r\\n'");
    assert.equal(shown('a\tb\u0000c\u007f\u2028'), "'a\\tb\\u0000c\\u007f\\u2028'");
    assert.equal(shown('C:\\ipi\\local'), "'C:\\ipi\\local'");
  });

  test('at most 60 characters, then ...', () => {
    assert.equal(shown('x'.repeat(60)), `'${'x'.repeat(60)}'`);
    assert.equal(shown(`${'é'.repeat(60)}tail`), `'${'é'.repeat(60)}...'`);
  });

  test('a parser\'s error quoting a multi-line value stays one line, and a long one is cut', () => {
    assert.throws(() => parseInteger('22\nX=1"', 1, 65535), (err: unknown) => err instanceof ValueError && err.message === "'22\\nX=1\"' is not a whole number");
    assert.throws(() => parseDuration(`5\n${'y'.repeat(80)}hunter2xyz`), (err: unknown) => err instanceof ValueError && !err.message.includes('\n') && !err.message.includes('hunter2xyz'));
  });
});

describe('controlCharacterProblem', () => {
  test('a line break: says a quote may be left open, and shows nothing of the value', () => {
    const why = controlCharacterProblem('22\nSFTP_PASS=hunter2xyz');
    assert.match(why ?? '', /^the value holds a line break, which no setting can: is a quote of the \.env left open/);
    assert.ok(!why!.includes('hunter2xyz') && !why!.includes('22'));
    assert.match(controlCharacterProblem('a\rb') ?? '', /line break/);
  });

  test('another control character is named, escaped; none: null', () => {
    assert.equal(controlCharacterProblem('a\tb'), "the value holds the control character '\\t', which no setting can");
    assert.equal(controlCharacterProblem('C:\\ipi é $x #y'), null);
  });
});

describe('parseDuration', () => {
  test('a bare number is seconds', () => {
    assert.equal(parseDuration('15'), 15_000);
    assert.equal(parseDuration('0'), 0);
  });

  test('units ms, s, m, h, d', () => {
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('15s'), 15_000);
    assert.equal(parseDuration('5m'), 300_000);
    assert.equal(parseDuration('2h'), 7_200_000);
    assert.equal(parseDuration('1d'), 86_400_000);
  });

  test('fractions are allowed and rounded to whole milliseconds', () => {
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration('1.5'), 1500);
    assert.equal(parseDuration('0.5m'), 30_000);
    assert.equal(parseDuration('1.0004s'), 1000);
    assert.equal(parseDuration('0.0006s'), 1);
  });

  test('units are case-insensitive and surrounding / inner blanks are tolerated', () => {
    assert.equal(parseDuration('5M'), 300_000);
    assert.equal(parseDuration('500MS'), 500);
    assert.equal(parseDuration(' 5 m '), 300_000);
  });

  test('bad input throws ValueError that quotes the input and shows the accepted forms', () => {
    for (const bad of ['', ' ', 'abc', '5x', '-5', '5 minutes', '1.5.5s', '.5s', 's', '5ms5', '1e3']) {
      assert.throws(() => parseDuration(bad), (err: unknown) => {
        assert.ok(err instanceof ValueError, `${JSON.stringify(bad)} should throw ValueError`);
        assert.ok(err.message.includes(`'${bad}'`), err.message);
        assert.match(err.message, /not a duration/);
        assert.match(err.message, /500ms/);
        return true;
      });
    }
  });
});

describe('parseSize', () => {
  test('plain bytes', () => {
    assert.equal(parseSize('2097152'), 2_097_152);
    assert.equal(parseSize('0'), 0);
    assert.equal(parseSize('10b'), 10);
  });

  test('binary units: KiB, MiB, GiB, TiB and the OpenSSH-style single letters', () => {
    assert.equal(parseSize('2MiB'), 2 * 1024 * 1024);
    assert.equal(parseSize('2M'), 2 * 1024 * 1024);
    assert.equal(parseSize('512KiB'), 512 * 1024);
    assert.equal(parseSize('512K'), 512 * 1024);
    assert.equal(parseSize('1GiB'), 1024 ** 3);
    assert.equal(parseSize('1G'), 1024 ** 3);
    assert.equal(parseSize('1TiB'), 1024 ** 4);
    assert.equal(parseSize('1T'), 1024 ** 4);
  });

  test('decimal units: KB, MB, GB, TB', () => {
    assert.equal(parseSize('2MB'), 2_000_000);
    assert.equal(parseSize('1KB'), 1000);
    assert.equal(parseSize('1GB'), 1_000_000_000);
    assert.equal(parseSize('1TB'), 1_000_000_000_000);
  });

  test('units are case-insensitive; blanks and fractions are accepted', () => {
    assert.equal(parseSize('2mib'), 2 * 1024 * 1024);
    assert.equal(parseSize('2mb'), 2_000_000);
    assert.equal(parseSize(' 2 MiB '), 2 * 1024 * 1024);
    assert.equal(parseSize('1.5KiB'), 1536);
    assert.equal(parseSize('0.5MiB'), 512 * 1024);
  });

  test('bad input throws ValueError naming the input', () => {
    // `constructor` is a key every object inherits: it once passed as a unit and gave NaN.
    for (const bad of ['', 'MiB', '2 XB', '2MiBs', '-1', 'two', '2 M B', '1,5MiB', '2constructor', '2__proto__']) {
      assert.throws(() => parseSize(bad), (err: unknown) => {
        assert.ok(err instanceof ValueError, `${JSON.stringify(bad)} should throw ValueError`);
        assert.ok(err.message.includes(`'${bad}'`), err.message);
        assert.match(err.message, /not a size/);
        return true;
      });
    }
  });
});

describe('parseInteger', () => {
  test('whole numbers inside the range, bounds included', () => {
    assert.equal(parseInteger('22', 1, 65535), 22);
    assert.equal(parseInteger('1', 1, 65535), 1);
    assert.equal(parseInteger('65535', 1, 65535), 65535);
    assert.equal(parseInteger(' 7 ', 0, 10), 7);
    assert.equal(parseInteger('-3', -5, 5), -3);
    assert.equal(parseInteger('007', 0, 10), 7);
  });

  test('out of range names the value and the range', () => {
    assert.throws(() => parseInteger('0', 1, 65535), (err: unknown) => {
      assert.ok(err instanceof ValueError);
      assert.equal(err.message, '0 is out of range (1 to 65535)');
      return true;
    });
    assert.throws(() => parseInteger('65536', 1, 65535), /65536 is out of range \(1 to 65535\)/);
    assert.throws(() => parseInteger('-1', 0, 1000), /-1 is out of range \(0 to 1000\)/);
  });

  test('anything but a whole number is refused', () => {
    for (const bad of ['', 'abc', '1.5', '1e3', '0x10', '22abc', '+5', '1 000']) {
      assert.throws(() => parseInteger(bad, 0, 100_000), (err: unknown) => {
        assert.ok(err instanceof ValueError, JSON.stringify(bad));
        assert.equal(err.message, `'${bad}' is not a whole number`);
        return true;
      });
    }
  });
});

describe('parseList', () => {
  test('splits on commas and trims items', () => {
    assert.deepEqual(parseList('5,10,30'), ['5', '10', '30']);
    assert.deepEqual(parseList(' 5 , 10 ,30 '), ['5', '10', '30']);
    assert.deepEqual(parseList('one'), ['one']);
  });

  test('an empty item is an error, not silently dropped', () => {
    for (const bad of ['5,,10', '5,10,', ',5', '', ' ', '5, ,10']) {
      assert.throws(() => parseList(bad), (err: unknown) => {
        assert.ok(err instanceof ValueError, JSON.stringify(bad));
        assert.match(err.message, /has an empty item/);
        assert.ok(err.message.includes(`'${bad}'`));
        return true;
      });
    }
  });
});

describe('parseBoolean', () => {
  test('true spellings', () => {
    for (const v of ['1', 'true', 'TRUE', 'True', 'yes', 'YES', 'on', ' on ']) assert.equal(parseBoolean(v), true, v);
  });

  test('false spellings', () => {
    for (const v of ['0', 'false', 'FALSE', 'no', 'No', 'off', ' off ']) assert.equal(parseBoolean(v), false, v);
  });

  test('anything else is refused', () => {
    for (const bad of ['', 'y', 'n', '2', 'maybe', 'enabled']) {
      assert.throws(() => parseBoolean(bad), (err: unknown) => {
        assert.ok(err instanceof ValueError);
        assert.match(err.message, /is not yes\/no/);
        return true;
      });
    }
  });
});

describe('parseChoice', () => {
  const choices = ['date', 'mtime', 'name'] as const;

  test('returns the matching choice, case-insensitively and trimmed', () => {
    assert.equal(parseChoice('date', choices), 'date');
    assert.equal(parseChoice('MTIME', choices), 'mtime');
    assert.equal(parseChoice(' Name ', choices), 'name');
  });

  test('an unknown value lists the choices', () => {
    assert.throws(() => parseChoice('size', choices), (err: unknown) => {
      assert.ok(err instanceof ValueError);
      assert.equal(err.message, "'size' is not one of date, mtime, name");
      return true;
    });
    assert.throws(() => parseChoice('', choices), ValueError);
  });
});

describe('parseFingerprints', () => {
  const fp1 = 'SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s';
  const fp2 = 'SHA256:+/abcdefghijklmnopqrstuvwxyzABCDEFGHIJ01234';

  test('one fingerprint, as ssh-keygen -lf prints it', () => {
    assert.deepEqual(parseFingerprints(fp1), [fp1]);
  });

  test('several, comma-separated, with blanks', () => {
    assert.deepEqual(parseFingerprints(`${fp1}, ${fp2}`), [fp1, fp2]);
  });

  test('a trailing = padding is accepted and dropped', () => {
    assert.deepEqual(parseFingerprints(`${fp1}=`), [fp1]);
  });

  test('malformed fingerprints are refused with an example', () => {
    const bad = [
      'uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s', // no prefix
      'MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48',
      'SHA256:tooShort',
      `${fp1}A`, // 44 chars
      'sha256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s', // prefix is case-sensitive
      'SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2-', // not base64
    ];
    for (const b of bad) {
      assert.throws(() => parseFingerprints(b), (err: unknown) => {
        assert.ok(err instanceof ValueError, b);
        assert.ok(err.message.includes(`'${b}'`), err.message);
        assert.match(err.message, /is not a SHA256 host key fingerprint/);
        assert.match(err.message, /ssh-keygen -lf/);
        return true;
      });
    }
  });

  test('an empty item in the list is refused', () => {
    assert.throws(() => parseFingerprints(`${fp1},,${fp2}`), /has an empty item/);
  });
});

describe('parseHost', () => {
  test('host names, IPv4 and bare IPv6 addresses are taken, trimmed', () => {
    for (const [raw, want] of [
      [' sftp.example.com ', 'sftp.example.com'], ['10.0.0.1', '10.0.0.1'], ['localhost', 'localhost'],
      ['my_host-01.corp.', 'my_host-01.corp.'], ['::1', '::1'], ['2001:db8::1', '2001:db8::1'],
      ['fe80::1%eth0', 'fe80::1%eth0'], ['::ffff:10.0.0.1', '::ffff:10.0.0.1'], ['bücher.example', 'bücher.example'],
    ]) {
      assert.equal(parseHost(raw!), want);
    }
  });

  test('user info or a URL scheme is refused without echoing the value, pointing to SFTP_USER and SFTP_PASS', () => {
    for (const bad of ['sftp://ipi:Pw-leak-1@host', 'ipi:Pw-leak-1@host', 'Pw-leak-1@host', 'sftp://Pw-leak-1', 'ssh://Pw-leak-1:22']) {
      assert.throws(() => parseHost(bad), (err: unknown) => {
        assert.ok(err instanceof ValueError);
        assert.match(err.message, /^must be a bare host name or address, without sftp:\/\/ or user@: the user goes in SFTP_USER and the password in SFTP_PASS/);
        assert.ok(!err.message.includes('Pw-leak-1'), err.message);
        return true;
      });
    }
  });

  test('HOST:PORT and [IPv6]:PORT point to SFTP_PORT', () => {
    for (const bad of ['sftp.example.com:2222', '10.0.0.1:22', '[::1]:2222', 'host:']) {
      assert.throws(() => parseHost(bad), (err: unknown) => err instanceof ValueError && err.message === 'must be a bare host name or address, without :PORT: the port goes in SFTP_PORT');
    }
  });

  test('a bracketed IPv6 address is refused with the bare form to write', () => {
    for (const bad of ['[::1]', '[2001:db8::1]', '[::1']) {
      assert.throws(() => parseHost(bad), /write an IPv6 address without brackets \(e\.g\. ::1\)/);
    }
  });

  test('other colons, blanks, slashes and odd characters are refused without echoing the value', () => {
    for (const [bad, why] of [
      ['ipi:Pw-leak-1', /^is not a host name, an IPv4 address or an IPv6 address$/],
      ['two Pw-leak-1', /^is not a host name: it holds a blank, which a host name cannot$/],
      ['host/Pw-leak-1', /^is not a host name: it holds '\/', which a host name cannot$/],
      ['a;Pw-leak-1', /it holds ';'/],
    ] as const) {
      assert.throws(() => parseHost(bad), (err: unknown) => {
        assert.ok(err instanceof ValueError);
        assert.match(err.message, why);
        assert.ok(!err.message.includes('Pw-leak-1'), err.message);
        return true;
      });
    }
    assert.throws(() => parseHost('   '), (err: unknown) => err instanceof ValueError && err.message === 'is empty');
  });
});
