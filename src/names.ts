// Is a name that came from the server safe to create on this machine? A hostile or broken
// server must never make us write outside LOCAL_DIR / SERVER_DIR, or create a file Windows
// cannot open. Pure: the answer depends on the name alone.

const WINDOWS_RESERVED = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$/i;
const MAX_NAME_BYTES = 200; // leaves room for our ".part.json" suffixes under the usual 255-byte limit

/**
 * null when safe, else the reason it is refused. Device names (CON, NUL...) are refused
 * everywhere: no real data file is called that, and SERVER_DIR may be a Windows share.
 * Characters only Windows forbids (`:` in an ISO time, say) are refused only on Windows,
 * where the file could not be created; elsewhere such names are legitimate.
 */
export function unsafeNameReason(name: string, platform: NodeJS.Platform = process.platform): string | null {
  if (name.length === 0) return 'empty name';
  if (name === '.' || name === '..') return 'a path component, not a file name';
  if (/[/\\]/.test(name)) return 'contains a path separator';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'contains a control character';
  if (WINDOWS_RESERVED.test(name)) return 'is a reserved device name on Windows';
  if (platform === 'win32') {
    if (/[<>:"|?*]/.test(name)) return 'contains a character Windows does not allow in file names';
    if (/[. ]$/.test(name)) return 'ends with a dot or space (Windows would silently change it)';
  }
  if (name.startsWith('.')) return 'is a hidden name (we use dot-names for our own temporary files)';
  if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) return `longer than ${MAX_NAME_BYTES} bytes`;
  if (name.endsWith('.part') || name.endsWith('.part.json')) return 'ends like our own partial-download files';
  return null;
}

/** For log lines: control characters shown escaped so a name cannot forge log output. */
export function printableName(name: string): string {
  return JSON.stringify(name);
}
