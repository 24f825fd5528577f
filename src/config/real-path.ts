// Where a local path really leads, links followed: two paths of different text can be one place.
import fs from 'node:fs';
import path from 'node:path';

/**
 * The real path of `p` (absolute, resolved): that of its nearest existing parent with the rest
 * of `p` after it, for a file or folder not made yet; `p` itself when nothing of it can be read.
 */
export function realPathOf(p: string): string {
  let head = p;
  const rest: string[] = [];
  for (;;) {
    try {
      return path.join(fs.realpathSync.native(head), ...rest);
    } catch {
      const up = path.dirname(head);
      if (up === head) return p;
      rest.unshift(path.basename(head));
      head = up;
    }
  }
}
