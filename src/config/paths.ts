// Judging local paths from the settings: does a value written for Windows land on a machine
// that is not, and does one folder or file sit inside another. Pure: the platform is the
// caller's, so both answers are tested for every platform on any machine.
import path from 'node:path';

/**
 * A path that only means something on Windows: a drive letter (`C:\ipi`, `D:/share`, `E:`),
 * a UNC share (`\\server\share`), or backslashes used as separators with no `/` at all
 * (`logs\ipi.log`, `.\downloads`). On POSIX each of these is a legal but absurd relative name:
 * the run would create a folder literally called `C:\ipi\local` and deliver into it.
 */
export function looksLikeWindowsPath(raw: string): boolean {
  const v = raw.trim();
  return /^[A-Za-z]:(?:[\\/]|$)/.test(v) || v.startsWith('\\\\') || (v.includes('\\') && !v.includes('/'));
}

/**
 * The path rules of `platform`, not of this machine: Node's `path` is the host's, so on Linux
 * `C:\ipi\local` was no absolute path and `\` no separator, and a test of Windows' answers
 * there was no test of them.
 */
export function pathFor(platform: NodeJS.Platform): path.PlatformPath {
  return platform === 'win32' ? path.win32 : path.posix;
}

/** Filesystems on these platforms ignore case by default: `/Data/IPI` and `/data/ipi` are one folder. */
function foldsCase(platform: NodeJS.Platform): boolean {
  return platform === 'win32' || platform === 'darwin';
}

/** Is `p` the folder `dir` itself, or anywhere below it? Both are resolved absolute paths. */
export function isInsideOrSame(p: string, dir: string, platform: NodeJS.Platform = process.platform): boolean {
  const [a, b] = foldsCase(platform) ? [p.toLowerCase(), dir.toLowerCase()] : [p, dir];
  const paths = pathFor(platform);
  const rel = paths.relative(b, a);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${paths.sep}`) && !paths.isAbsolute(rel));
}

/** Are these one path (compared as isInsideOrSame compares)? */
export function isSame(a: string, b: string, platform: NodeJS.Platform = process.platform): boolean {
  return isInsideOrSame(a, b, platform) && isInsideOrSame(b, a, platform);
}
