// A key in the .env that is not ours may belong to another program sharing the file, so it is
// no error and usually not worth a word. But one that is almost ours (`SFTP_HOSTT`,
// `LOCALDIR`, `local_dir`) is a typo that silently leaves a setting at its default: that is
// worth a warning naming the setting it probably meant.

export interface NearMiss {
  /** The key as written in the file. */
  key: string;
  /** Our key it most likely meant. */
  meant: string;
  /** Only the letter case differs. */
  caseOnly: boolean;
}

/** Levenshtein distance, stopping early once it is certain to exceed `limit`. */
export function editDistance(a: string, b: string, limit = Infinity): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const v = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      cur.push(v);
      rowMin = Math.min(rowMin, v);
    }
    if (rowMin > limit) return limit + 1;
    prev = cur;
  }
  return prev[b.length]!;
}

/**
 * Our key that `key` is a near miss of: equal ignoring case, equal ignoring `_`, or within two
 * edits (ignoring case). The closest wins; on a tie, the first in `ours`. Null for one of our
 * own keys, and for anything farther away.
 */
export function nearMiss(key: string, ours: readonly string[]): NearMiss | null {
  if (ours.includes(key)) return null;
  const upper = key.toUpperCase();
  const bare = (k: string) => k.replace(/_/g, '');
  let best: { meant: string; score: number } | null = null;
  for (const k of ours) {
    const score = upper === k || bare(upper) === bare(k) ? 0 : editDistance(upper, k, 2);
    if (score <= 2 && (best === null || score < best.score)) best = { meant: k, score };
  }
  return best && { key, meant: best.meant, caseOnly: upper === best.meant };
}
