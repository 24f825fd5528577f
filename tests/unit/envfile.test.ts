import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { EnvFileError, parseEnvFile, valuesOnOwnLines } from '../../src/config/envfile.js';
import dotenv from 'dotenv';

// An empty environment unless a test says otherwise, so the machine's variables never leak in.
const parse = (content: string, env: NodeJS.ProcessEnv = {}) => parseEnvFile(content, env);

describe('parseEnvFile: unquoted values', () => {
  test('plain KEY=value lines', () => {
    assert.deepEqual(parse('SFTP_HOST=sftp.example.com\nSFTP_PORT=22\n'), { SFTP_HOST: 'sftp.example.com', SFTP_PORT: '22' });
  });

  test('a # without a space before it is part of the value (python-dotenv, unlike the dotenv package)', () => {
    assert.deepEqual(parse('SFTP_PASS=abc#123'), { SFTP_PASS: 'abc#123' });
    assert.deepEqual(parse('SFTP_PASS=#abc'), { SFTP_PASS: '#abc' });
  });

  test('a # after a space or tab starts a comment, and trailing blanks are dropped', () => {
    assert.deepEqual(parse('A=abc # a comment\nB=def\t# tab comment\nC=ghi   \n'), { A: 'abc', B: 'def', C: 'ghi' });
  });

  test('blanks right after = are skipped; inner blanks are kept', () => {
    assert.deepEqual(parse('A=  hello world  \n'), { A: 'hello world' });
    assert.deepEqual(parse('A = b'), { A: 'b' });
  });

  test('an empty value is the empty string', () => {
    assert.deepEqual(parse('SFTP_PASS=\nB=1'), { SFTP_PASS: '', B: '1' });
  });

  test('= and quotes inside an unquoted value are kept', () => {
    assert.deepEqual(parse('A=x=y\nB=it\'s\nC=say"hi"'), { A: 'x=y', B: "it's", C: 'say"hi"' });
  });

  test('a bare $ (common in passwords) is untouched', () => {
    assert.deepEqual(parse('SFTP_PASS=pa$$word\nB=$HOME\nC=cost$5'), { SFTP_PASS: 'pa$$word', B: '$HOME', C: 'cost$5' });
    assert.deepEqual(parse('SFTP_PASS="pa$$word"'), { SFTP_PASS: 'pa$$word' });
  });

  test('a later line with the same key wins', () => {
    assert.deepEqual(parse('A=1\nA=2\n'), { A: '2' });
  });

  test('keys may contain letters, digits, _, . and -', () => {
    assert.deepEqual(parse('_A1.b-c=v'), { '_A1.b-c': 'v' });
  });
});

describe('parseEnvFile: comments, blank lines, export, bare keys', () => {
  test('comment lines and blank lines are skipped', () => {
    const src = '# heading\n\n   # indented comment\n\t\nA=1\n#B=2\n';
    assert.deepEqual(parse(src), { A: '1' });
  });

  test('export KEY=value is read as KEY=value', () => {
    assert.deepEqual(parse('export SFTP_HOST=h\nexport\tSFTP_USER=u\n'), { SFTP_HOST: 'h', SFTP_USER: 'u' });
  });

  test('a key literally named "export" still works', () => {
    assert.deepEqual(parse('export=1'), { export: '1' });
  });

  test('a bare KEY without = is skipped (left unset) and parsing goes on', () => {
    assert.deepEqual(parse('SFTP_PASS\nA=1\nLONELY'), { A: '1' });
  });

  test('an empty file and a file of only comments give nothing', () => {
    assert.deepEqual(parse(''), {});
    assert.deepEqual(parse('# only\n# comments'), {});
  });
});

describe('parseEnvFile: single quotes', () => {
  test('no \\n escape, but ${} is expanded, as python-dotenv does', () => {
    const out = parse("A='${HOME} and \\n stay'", { HOME: '/home/x' });
    assert.equal(out.A, '/home/x and \\n stay');
  });

  test("\\' and \\\\ are the only escapes", () => {
    assert.equal(parse("A='it\\'s'").A, "it's");
    assert.equal(parse("A='back\\\\slash'").A, 'back\\slash');
    assert.equal(parse("A='a\\tb'").A, 'a\\tb');
  });

  test('# inside quotes is not a comment, and a comment may follow the closing quote', () => {
    assert.deepEqual(parse("A='abc #123' # real comment\nB=2"), { A: 'abc #123', B: '2' });
  });

  test('may span lines', () => {
    assert.deepEqual(parse("A='line1\nline2'\nB=2"), { A: 'line1\nline2', B: '2' });
  });

  test('a double quote inside single quotes is literal', () => {
    assert.equal(parse(`A='say "hi"'`).A, 'say "hi"');
  });
});

describe('parseEnvFile: double quotes', () => {
  test('escapes \\n \\t \\r \\" \\\\ and friends are decoded', () => {
    assert.equal(parse('A="a\\nb"').A, 'a\nb');
    assert.equal(parse('A="a\\tb\\rc"').A, 'a\tb\rc');
    assert.equal(parse('A="say \\"hi\\""').A, 'say "hi"');
    assert.equal(parse('A="back\\\\slash"').A, 'back\\slash');
    assert.equal(parse('A="it\\\'s"').A, "it's");
  });

  test('an unknown escape keeps its backslash', () => {
    assert.equal(parse('A="C:\\path\\x"').A, 'C:\\path\\x');
  });

  test('${VAR} is expanded from the environment', () => {
    assert.equal(parse('A="${USER_NAME}@host"', { USER_NAME: 'ipi' }).A, 'ipi@host');
  });

  test('may span lines', () => {
    assert.deepEqual(parse('A="line1\nline2"\nB=2'), { A: 'line1\nline2', B: '2' });
  });

  test('# inside double quotes is kept', () => {
    assert.equal(parse('SFTP_PASS="abc #123" # comment').SFTP_PASS, 'abc #123');
  });

  test('an empty quoted value is the empty string', () => {
    assert.deepEqual(parse('A=""\nB=\'\''), { A: '', B: '' });
  });
});

describe('parseEnvFile: ${VAR} expansion', () => {
  test('earlier keys of the file can be referenced', () => {
    assert.deepEqual(parse('BASE=/data\nLOCAL_DIR=${BASE}/in\nQ="${BASE}/q"'), { BASE: '/data', LOCAL_DIR: '/data/in', Q: '/data/q' });
  });

  test('the process environment wins over an earlier key (load_dotenv(override=False))', () => {
    assert.equal(parse('BASE=/file\nX=${BASE}', { BASE: '/env' }).X, '/env');
  });

  test('${VAR:-default} uses the default only when VAR is unset', () => {
    assert.equal(parse('A=${NOPE:-fallback}').A, 'fallback');
    assert.equal(parse('A=${SET:-fallback}', { SET: 'given' }).A, 'given');
    assert.equal(parse('A="${NOPE:-two words}"').A, 'two words');
    assert.equal(parse('A=${NOPE:-}').A, '');
  });

  test('an unset variable without default expands to the empty string', () => {
    assert.equal(parse('A=x${NOPE}y').A, 'xy');
  });

  test('$VAR without braces is not expanded', () => {
    assert.equal(parse('A=$SET', { SET: 'given' }).A, '$SET');
  });

  test('the default environment is process.env', () => {
    const key = `IPI_PULL_TEST_${process.pid}`;
    process.env[key] = 'from-process';
    try {
      assert.equal(parseEnvFile(`A=\${${key}}`).A, 'from-process');
    } finally {
      delete process.env[key];
    }
  });
});

describe('parseEnvFile: line endings and encoding', () => {
  test('CRLF files read like LF files', () => {
    const src = 'SFTP_HOST=h\r\nSFTP_PASS=abc#123\r\nA="x\r\ny"\r\n# c\r\nB=2 # note\r\n';
    assert.deepEqual(parse(src), { SFTP_HOST: 'h', SFTP_PASS: 'abc#123', A: 'x\ny', B: '2' });
  });

  test('old-Mac CR-only files read too', () => {
    assert.deepEqual(parse('A=1\rB=2\r'), { A: '1', B: '2' });
  });

  test('a UTF-8 BOM is ignored (Notepad writes one)', () => {
    assert.deepEqual(parse('\uFEFFSFTP_HOST=h\nB=2'), { SFTP_HOST: 'h', B: '2' });
  });

  test('no newline at the end of the file', () => {
    assert.deepEqual(parse('A=1\nB=last'), { A: '1', B: 'last' });
  });

  test('non-ASCII values are kept', () => {
    assert.equal(parse('A=pässwörd€').A, 'pässwörd€');
  });
});

describe('parseEnvFile: errors', () => {
  test('an unclosed double quote is an EnvFileError naming the key', () => {
    assert.throws(() => parse('A=1\nB="abc\nC=2\n'), (err: unknown) => {
      assert.ok(err instanceof EnvFileError);
      assert.match(err.message, /^line \d+: B: the double-quoted value is not closed$/);
      return true;
    });
  });

  test('an unclosed single quote is an EnvFileError naming the key', () => {
    assert.throws(() => parse("SFTP_PASS='abc"), (err: unknown) => {
      assert.ok(err instanceof EnvFileError);
      assert.equal(err.message, 'line 1: SFTP_PASS: the single-quoted value is not closed');
      return true;
    });
  });

  test('the error names the line of a later problem', () => {
    assert.throws(() => parse('A=1\n# c\n\nB="x" junk\n'), (err: unknown) => {
      assert.ok(err instanceof EnvFileError);
      assert.equal(err.message, 'line 4: B: unexpected text after the closing quote');
      return true;
    });
  });

  test('line numbers count lines inside an earlier multi-line value', () => {
    assert.throws(() => parse('A="one\ntwo\nthree"\nB=\'x\' y\n'), (err: unknown) => err instanceof EnvFileError && err.message === 'line 4: B: unexpected text after the closing quote');
  });

  test('a line that is not KEY=value is an EnvFileError naming the line', () => {
    assert.throws(() => parse('A=1\n!!!\n'), (err: unknown) => {
      assert.ok(err instanceof EnvFileError);
      assert.match(err.message, /^line 2: cannot read this line \(expected KEY=value, or a # comment\)$/);
      assert.ok(!err.message.includes("!!!"), "the line is not echoed: it may hold a password");
      return true;
    });
  });

  test('an unclosed quote names the line where the value starts, not the end of the file',
    () => {
      assert.throws(() => parse('A=1\nB="abc\nC=2\n'), (err: unknown) => {
        assert.ok(err instanceof EnvFileError);
        assert.match(err.message, /^line 2: /);
        return true;
      });
    });

  test('a backslash-newline inside a double-quoted value still counts as a line',
    () => {
      assert.throws(() => parse('A="x\\\ny"\nB="x" junk\n'), (err: unknown) => {
        assert.ok(err instanceof EnvFileError);
        assert.equal(err.message, 'line 3: B: unexpected text after the closing quote');
        return true;
      });
    });
});

describe('parseEnvFile: a line that lost its =', () => {
  // Each of these used to be read as a bare key (left unset), so the default folder was used.
  const cases: Array<[string, RegExp]> = [
    ['LOCAL_DIR /data/x', /^line 2: LOCAL_DIR: text after the key without '=' \(write LOCAL_DIR=value; a key cannot hold blanks\)$/],
    ['SERVER_DIR: /data/pub', /^line 2: SERVER_DIR: ':' where '=' belongs \(write SERVER_DIR=value\)$/],
    ['SERVER_DIR:/data/pub', /^line 2: SERVER_DIR: ':' where '=' belongs/],
    ['LOCAL DIR=/x', /^line 2: LOCAL: text after the key without '='/],
    ['export LOCAL_DIR /data/x', /^line 2: LOCAL_DIR: text after the key without '='/],
    ['\tLOCAL_DIR\t/data/x # note', /^line 2: LOCAL_DIR: text after the key without '='/],
  ];
  for (const [bad, message] of cases) {
    test(`${JSON.stringify(bad)} is an EnvFileError naming the line and the key`, () => {
      assert.throws(() => parse(`A=1\n${bad}\nB=2\n`), (err: unknown) => {
        assert.ok(err instanceof EnvFileError);
        assert.match(err.message, message);
        assert.ok(!err.message.includes('/data'), `the value is not echoed: ${err.message}`);
        return true;
      });
    });
  }

  test('the value of such a line never appears in the error (it may be a password)', () => {
    for (const bad of ['SFTP_PASS hunter2-leak', 'SFTP_PASS: hunter2-leak', "'SFTP_PASS' hunter2-leak", "'hunter2-leak x' y"]) {
      assert.throws(() => parse(bad), (err: unknown) => {
        assert.ok(err instanceof EnvFileError);
        assert.ok(!err.message.includes('hunter2-leak'), `leaks the value: ${err.message}`);
        return true;
      });
    }
  });

  test('a line after a multi-line value is counted right', () => {
    assert.throws(() => parse('A="one\ntwo"\nLOCAL_DIR /x\n'), (err: unknown) => err instanceof EnvFileError && err.message.startsWith('line 3: LOCAL_DIR: '));
  });

  test('a bare KEY before a comment, or with trailing blanks, is still a bare key', () => {
    assert.deepEqual(parse('SFTP_PASS # set in the environment\nB=1\nC   \nexport D\nE#c\n'), { B: '1' });
  });
});

describe('parseEnvFile: python-dotenv forms', () => {
  test("a single-quoted key ('KEY'=value) is read as python-dotenv reads it",
    () => {
      assert.deepEqual(parse("'SFTP_PASS'=abc#123\nB=2"), { SFTP_PASS: 'abc#123', B: '2' });
    });
});

// Expected values are python-dotenv 1.2.2's, from
//   python3 -c 'import io; from dotenv import dotenv_values; print(dict(dotenv_values(stream=io.StringIO(TEXT))))'
// (dotenv_values lets the file win over the environment; load_dotenv, which FTP_IPI.py
// used, the reverse: these cases give both the same answer).
describe('parseEnvFile against python-dotenv (FTP_IPI.py)', () => {
  test('${VAR} is expanded in single-quoted values too', () => {
    assert.deepEqual(parse("A=1\nS='x${A}y'\nD='${A:-d}'\nT='${NOPE:-d}'\nE='a\\'b${A}'\n"), { A: '1', S: 'x1y', D: '1', T: 'd', E: "a'b1" });
  });

  test('a key is anything but blanks, = and #: other programs\' keys are read, not refused', () => {
    assert.deepEqual(parse('2FA_SECRET=x\nDB_URL[primary]=x\nkey:x=3\né=1\n'), { '2FA_SECRET': 'x', 'DB_URL[primary]': 'x', 'key:x': '3', é: '1' });
    assert.deepEqual(parse('"Q=1\na\'b=2\n'), { '"Q': '1', "a'b": '2' });
    assert.deepEqual(parse('x=${é}\né=1\ny=${é}\n'), { x: '', é: '1', y: '1' });
  });

  test('any blank around the key and =, a no-break space too', () => {
    assert.deepEqual(parse('\u00a0K=v\nK1 \u00a0= v\n\u00a0\n'), { K: 'v', K1: 'v' });
  });

  test('${VAR} names anything up to } or : : ${B-x} and ${B.x} are "", ${B:x} stays', () => {
    assert.deepEqual(parse('A=${B-x}\nC=${B.x}\nD=${}\nE=${B:x}\nF=${B:-x}\nG=$B\n'), { A: '', C: '', D: '', E: '${B:x}', F: 'x', G: '$B' });
  });

  test('a key alone has no value: ${KEY:-d} is "", and it unsets an earlier value', () => {
    assert.deepEqual(parse('A\nB=${A:-d}\n'), { B: '' });
    assert.deepEqual(parse('A=1\nA\nB=${A:-d}\n'), { B: '' });
    assert.deepEqual(parse('A\nA=2\nB=${A:-d}\n'), { A: '2', B: '2' });
  });
});

// The dotenv package is the reference for what Node users expect of a .env; python-dotenv is
// the reference for the files we must keep reading. Where the two agree our reader must agree
// with dotenv; the two places they differ are the reason this reader exists.
describe('parseEnvFile against the dotenv package', () => {
  test('the forms both libraries read alike give the same values', () => {
    const text = [
      'SFTP_HOST=sftp.example.com', 'SFTP_PORT=22', 'export LOG_LEVEL=debug', '# a comment', '',
      'SFTP_DIR=/in box', "LOCAL_DIR='C:\\Data\\ipi'", 'SERVER_DIR="two\\nlines"', 'MIN_AGE=5m # trailing comment',
      'RETRY_DELAYS = 5,10,30', 'EMPTY=', 'QUOTED_HASH="pa#ss"',
    ].join('\n');
    assert.deepEqual(parse(text), dotenv.parse(text));
  });
  test('where they differ, python-dotenv (FTP_IPI.py) is followed: # inside a value, ${VAR}', () => {
    const text = 'SFTP_PASS=abc#123\nLOCAL_DIR=${BASE}/in\n';
    assert.deepEqual(dotenv.parse(text), { SFTP_PASS: 'abc', LOCAL_DIR: '${BASE}/in' });
    assert.deepEqual(parse(text, { BASE: '/data' }), { SFTP_PASS: 'abc#123', LOCAL_DIR: '/data/in' });
  });
});

describe('parseEnvFile: keys that are names of Object properties', () => {
  test('${constructor} and ${toString:-d} expand from values, never from Object.prototype', () => {
    const got = parse('A="${constructor}"\nB=${toString:-d}\nC=${hasOwnProperty}');
    assert.deepEqual(got, { A: '', B: 'd', C: '' });
  });

  test('__proto__ and constructor are keys like any other, and do not change the result object', () => {
    const got = parse('__proto__=x\nconstructor=y\nZ=${constructor}');
    assert.deepEqual(Object.keys(got), ['__proto__', 'constructor', 'Z']);
    assert.equal(Object.getPrototypeOf(got), Object.prototype);
    assert.equal(Object.getOwnPropertyDescriptor(got, '__proto__')?.value, 'x');
    assert.equal(got.Z, 'y');
  });

  test('the process environment is asked only for its own variables', () => {
    assert.equal(parseEnvFile('A=${constructor}', process.env).A, '');
  });
});

describe('valuesOnOwnLines: what secrets may be in a file, for scrubbing', () => {
  test('a key\'s line read alone, even inside another key\'s open quote: as written, unquoted, without a comment', () => {
    const text = 'SFTP_PORT="22\nSFTP_PASS=hunter2xyz\nX=1"\nexport SFTP_KEY_PASSPHRASE="open sesame" # mine\r\nOTHER=zzz\n';
    assert.deepEqual(valuesOnOwnLines(text, ['SFTP_PASS', 'SFTP_KEY_PASSPHRASE']),
      ['hunter2xyz', '"open sesame" # mine', 'open sesame" # mine', 'open sesame"']);
  });

  test('nothing for other keys, nor an empty value', () => {
    assert.deepEqual(valuesOnOwnLines('SFTP_PASS=\nSFTP_PASSWORD=x\n', ['SFTP_PASS']), []);
  });
});
