// Judging local paths from the settings: does a value written for Windows land on a machine
// that is not. Pure: the platform is the caller's, so it is tested for every platform anywhere.

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
