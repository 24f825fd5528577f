// Companion checksum files (NAME.sha256, NAME.md5 ...) published by many servers beside the
// data. Pure: parse the companion's text, and compare it with what we computed.

export type HashAlgo = 'sha256' | 'md5' | 'sha1' | 'sha512';

const HEX_LENGTH: Record<HashAlgo, number> = { md5: 32, sha1: 40, sha256: 64, sha512: 128 };

/** The algorithm a companion suffix names (".sha256" -> sha256), or null if we do not know it. */
export function algoOfSuffix(suffix: string): HashAlgo | null {
  const s = suffix.replace(/^\./, '').toLowerCase().replace(/sum$/, '');
  return s in HEX_LENGTH ? (s as HashAlgo) : null;
}

/**
 * The expected digest in a companion file: either a bare hash, or `sha256sum`-style lines
 * (`HASH  NAME` or `HASH *NAME`), where the line naming our file wins. BSD style
 * (`SHA256 (NAME) = HASH`) is read too. Returns lowercase hex, or null when absent.
 */
export function expectedDigest(text: string, name: string, algo: HashAlgo): string | null {
  const len = HEX_LENGTH[algo];
  const hex = `[0-9a-fA-F]{${len}}`;
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  let bare: string | null = null;
  for (const line of lines) {
    const bsd = new RegExp(`^\\w+ \\((.+)\\) = (${hex})$`).exec(line);
    if (bsd && baseName(bsd[1]!) === name) return bsd[2]!.toLowerCase();
    const gnu = new RegExp(`^(${hex}) [ *](.+)$`).exec(line);
    if (gnu && baseName(gnu[2]!) === name) return gnu[1]!.toLowerCase();
    const only = new RegExp(`^(${hex})$`).exec(line);
    if (only && bare === null) bare = only[1]!.toLowerCase();
  }
  // A bare hash counts only when the file holds just that (a list for other files does not).
  return lines.length === 1 ? bare : null;
}

function baseName(p: string): string {
  return p.split(/[\\/]/).pop() ?? p;
}
