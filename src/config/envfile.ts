// A .env reader that gives a file the meaning python-dotenv gives it, because the .env files
// we must keep working were written for FTP_IPI.py. The `dotenv` package differs where it
// hurts: it cuts `SFTP_PASS=abc#123` to `abc` and does not expand `${VAR}`. python-dotenv's
// rules, which this follows:
//   KEY=value            unquoted: trailing whitespace dropped; ` #...` (space before #) is a comment
//   KEY='value'          \' and \\ are the only escapes; may span lines
//   KEY="value"          escapes \n \t \r \" \\ ...; may span lines
//   export KEY=value     `export ` is ignored
//   KEY                  any characters but blanks, = and # (`2FA_SECRET`, `DB_URL[primary]`, `é`),
//                        or 'single-quoted'; not ours, so ignored, but never a reason to stop
//   KEY                  alone on its line (or before a # comment): no value, left unset
//   ${VAR} ${VAR:-dflt}  in every value, single-quoted too: expanded from the process environment
//                        first, then earlier keys; VAR is anything up to } or : (`${B-x}` is "")

export class EnvFileError extends Error {}

type Quote = 'none' | 'single' | 'double';

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

const DOUBLE_ESCAPES: Record<string, string> = {
  n: '\n', t: '\t', r: '\r', '"': '"', '\\': '\\', "'": "'", a: '\x07', b: '\b', f: '\f', v: '\v',
};

export function parseEnvFile(content: string, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  return parseEnvEntries(content, env).values;
}

/** The values, and the line each key was (last) given on, for messages about a key. */
export function parseEnvEntries(content: string, env: NodeJS.ProcessEnv = process.env): { values: Record<string, string>; lineOf: Record<string, number> } {
  const src = content.replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n');
  // No prototype: a key such as `__proto__` or `constructor` is then a key like any other,
  // not a way into Object's own properties.
  const out: Record<string, string> = Object.create(null);
  const lineOf: Record<string, number> = Object.create(null);
  // Keys given alone, without a value: python-dotenv holds them as None, so `${KEY:-d}` is "".
  const bare = new Set<string>();
  let i = 0;
  let line = 1;
  const fail = (why: string): never => {
    throw new EnvFileError(`line ${line}: ${why}`);
  };

  while (i < src.length) {
    // Skip blank lines and comment lines.
    const rest = src.slice(i);
    const blank = /^[^\S\n]*(#[^\n]*)?(\n|$)/.exec(rest);
    if (blank && blank[0].length > 0) {
      i += blank[0].length;
      line += blank[2] === '\n' ? 1 : 0;
      continue;
    }
    // A key as python-dotenv reads one before `=`: any characters but blanks, = and # (a shared
    // .env may hold other programs' `2FA_SECRET=`, `DB_URL[primary]=`, `key:x=`), or 'quoted'.
    // A line without `=` is read with the narrower key of ours, below.
    const head = /^[^\S\n]*(?:export[^\S\n]+)?(?:([^=#\s'][^=#\s]*)|'([^'\n]+)')[^\S\n]*(=)[^\S\n]*/.exec(rest)
      ?? /^[^\S\n]*(?:export[^\S\n]+)?(?:([A-Za-z_][A-Za-z0-9_.-]*)|'([^'\n]+)')[^\S\n]*()/.exec(rest);
    // The line's text is not quoted back: it may hold a password.
    if (!head) fail('cannot read this line (expected KEY=value, or a # comment)');
    const key = (head![1] ?? head![2])!;
    // Errors name the key, never the value; a key may be anything, so it is named only when
    // it reads like a key.
    const named = PLAIN_KEY.test(key) ? key : head![2] !== undefined ? 'the quoted key' : 'the key';
    i += head![0].length;
    if (head![3] !== '=') {
      // python-dotenv reads a bare `KEY` (alone, or before a comment) as "no value": we leave
      // it unset. Anything else after the key is a line that lost its `=` (`LOCAL_DIR /data`,
      // `SERVER_DIR: /pub`, `LOCAL DIR=/x`): python-dotenv skips it with a warning and the
      // default would be used, which delivers files somewhere nobody looks. We refuse it, and
      // name only the key: the rest of the line may be a password.
      const eol = src.indexOf('\n', i);
      const after = src.slice(i, eol === -1 ? src.length : eol);
      if (after !== '' && !after.startsWith('#')) {
        const write = named === key ? `write ${key}=value` : 'write KEY=value';
        fail(after.startsWith(':')
          ? `${named}: ':' where '=' belongs (${write})`
          : `${named}: text after the key without '=' (${write}; a key cannot hold blanks)`);
      }
      i = eol === -1 ? src.length : eol + 1;
      line++;
      // Also after a value: python-dotenv's later binding (None) wins, and FTP_IPI.py saw no value.
      delete out[key];
      delete lineOf[key];
      bare.add(key);
      continue;
    }

    const keyLine = line;
    let value: string;
    let quote: Quote = 'none';
    const q = src[i];
    if (q === "'" || q === '"') {
      quote = q === "'" ? 'single' : 'double';
      const openedOn = line;
      let j = i + 1;
      let buf = '';
      for (;;) {
        if (j >= src.length) {
          line = openedOn;
          fail(`${named}: the ${quote}-quoted value is not closed`);
        }
        const c = src[j]!;
        if (c === '\\' && j + 1 < src.length) {
          const n = src[j + 1]!;
          if (n === '\n') line++;
          if (quote === 'single') buf += n === "'" || n === '\\' ? n : `\\${n}`;
          else buf += DOUBLE_ESCAPES[n] ?? `\\${n}`;
          j += 2;
          continue;
        }
        if (c === q) break;
        if (c === '\n') line++;
        buf += c;
        j++;
      }
      value = buf;
      i = j + 1;
      // After a quoted value only whitespace and a comment may follow.
      const tail = /^[ \t]*(#[^\n]*)?(\n|$)/.exec(src.slice(i));
      if (!tail) fail(`${named}: unexpected text after the closing quote`);
      i += tail![0].length;
    } else {
      const eol = src.indexOf('\n', i);
      const raw = src.slice(i, eol === -1 ? src.length : eol);
      i = eol === -1 ? src.length : eol + 1;
      const comment = /[ \t]#/.exec(raw);
      value = (comment ? raw.slice(0, comment.index) : raw).trimEnd();
    }
    line++;
    // python-dotenv expands single-quoted values too (FTP_IPI.py's load_dotenv did).
    out[key] = expand(value, env, out, bare);
    bare.delete(key);
    lineOf[key] = keyLine;
  }
  // Spread copies define own properties (a `__proto__` key stays a key), and callers get plain objects.
  return { values: { ...out }, lineOf: { ...lineOf } };
}

/**
 * What `keys` are set to on lines of their own, each line read alone, whatever the quotes
 * around it: a quote left open earlier makes such a line part of another key's value, and a
 * password there must still be known, to be kept out of an error that quotes that value.
 * Each value is given as written, without its quotes, and without a ` #` comment, since which
 * one the file meant cannot be told. For scrubbing only: never a value to use.
 */
export function valuesOnOwnLines(content: string, keys: readonly string[]): string[] {
  const out = new Set<string>();
  for (const line of content.replace(/^\uFEFF/, '').split(/\r\n?|\n/)) {
    const m = /^[ \t]*(?:export[ \t]+)?(['"]?)([^'"=\s]+)\1[ \t]*=[ \t]*(.*)$/.exec(line);
    if (!m || !keys.includes(m[2]!)) continue;
    const written = m[3]!.trim();
    const unquoted = written.replace(/^['"]/, '').replace(/['"]$/, '');
    for (const v of [written, unquoted, unquoted.replace(/[ \t]#.*$/, '').trim()]) if (v !== '') out.add(v);
  }
  return [...out];
}

/**
 * `${VAR}` and `${VAR:-default}`, as python-dotenv reads them: VAR is anything up to `}` or
 * `:`, so `${B-x}` and `${B.x}` name variables that are never set and give "" (`${B:x}` is no
 * variable and stays). A bare `$` (common in passwords) stays.
 */
function expand(value: string, env: NodeJS.ProcessEnv, earlier: Record<string, string>, bare: ReadonlySet<string>): string {
  return value.replace(/\$\{([^}:]*)(?::-([^}]*))?\}/g, (_m, name: string, dflt?: string) => {
    // Own values only: `${constructor}` must not expand to Object's constructor.
    const v = (Object.hasOwn(env, name) ? env[name] : undefined) ?? (Object.hasOwn(earlier, name) ? earlier[name] : undefined);
    return v !== undefined ? v : bare.has(name) ? '' : dflt ?? '';
  });
}
