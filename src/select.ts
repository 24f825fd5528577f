// Which remote files come next, and in what order. Pure: a listing and the marker in,
// a queue out, so every ordering rule is unit-tested without a server.
import { unsafeNameReason } from './names.js';

export interface RemoteEntry {
  name: string;
  size: number;
  mtimeMs: number;
  isFile: boolean;
  /** Why a name that may stand for a file cannot be taken as one (a link the server cannot follow). */
  unreadable?: string;
}

export type OrderBy = 'date' | 'mtime' | 'name';

export interface SelectOptions {
  matches: (name: string) => boolean;
  orderBy: OrderBy;
  minAgeMs: number;
  nowMs: number;
  /**
   * ORDER_BY=mtime: the server mtime the marker's file had when we delivered it, from our
   * history. `current` when that delivery set the marker (it is the history's newest line):
   * the marker then stays where that version sat, though the file be rewritten on the server
   * since. Otherwise (the marker set by hand to an older name) the listed mtime wins, and this
   * only places a marker whose file is gone.
   */
  markerMtime?: { ms: number; current: boolean };
  /** Only the newest file after the marker (--latest, or START_FROM=latest on a first run). */
  latestOnly?: boolean;
  /** Companion files (NAME.sha256 ...) travel with their data file and are never delivered themselves. */
  isCompanion?: (name: string) => boolean;
  /**
   * From our history, when there is a line for the marker's file: when it was delivered, and
   * the server mtime each recently delivered file had. Without it (a marker set by hand, or
   * FTP_IPI.py's), files before the marker are not looked at.
   */
  delivered?: { markerAtMs: number; mtimeOf: ReadonlyMap<string, number> };
  /**
   * LOCAL_DIR and SERVER_DIR ignore case (Windows, macOS): names that differ only in case, or
   * in Unicode normalization, are one file there.
   */
  foldCase?: boolean;
}

export interface Skipped {
  name: string;
  reason: string;
}

export interface Selection {
  /** Files after the marker, in delivery order, up to (not including) the first that must wait. */
  queue: RemoteEntry[];
  /** Matching names we will never take, each with why (warned about every run). */
  skipped: Skipped[];
  /** The first file not ready yet; nothing after it is taken either, or the marker would pass it. */
  waiting: Skipped | null;
  /**
   * Files sorting before the marker that appeared, or changed, on the server after the
   * marker's file was delivered: the marker has passed their place, so no run takes them.
   */
  passedOver: Skipped[];
}

export class MarkerPlacementError extends Error {}

/**
 * The date (and time) in a file name as a sortable "YYYYMMDDhhmmss" key, or null.
 * Accepts the seed's 8-digit YYYYMMDD and YYYY-MM-DD / YYYY_MM_DD / YYYY.MM.DD, with an
 * optional time right after (T, _, - or space; hhmm[ss] or hh:mm[:ss] / hh-mm[-ss]).
 * Digits must form a real calendar date, so an id like 12345678 is not taken for one.
 */
export function dateKeyOf(name: string): string | null {
  const re = /(?<![0-9])((?:19|20)\d{2})([-_.]?)(\d{2})\2(\d{2})(?:[T_ -]?(\d{2})([:-]?)(\d{2})(?:\6(\d{2}))?)?(?![0-9])/g;
  for (let m = re.exec(name); m; m = re.exec(name)) {
    const [, y, , mo, d, hh, , mi, ss] = m;
    if (!isCalendarDate(Number(y), Number(mo), Number(d))) {
      // Not a date: look again from the next digit, so "20001234_20240115" still finds its date.
      re.lastIndex = m.index + 1;
      continue;
    }
    const time = hh !== undefined && Number(hh) < 24 && Number(mi) < 60 && Number(ss ?? '0') < 60
      ? `${hh}${mi}${ss ?? '00'}`
      : '000000';
    return `${y}${mo}${d}${time}`;
  }
  return null;
}

function isCalendarDate(y: number, m: number, d: number): boolean {
  if (m < 1 || m > 12 || d < 1) return false;
  const days = new Date(Date.UTC(y, m, 0)).getUTCDate();
  return d <= days;
}

/** Plain code-unit comparison: the same order on every machine and locale. */
function cmp(a: string | number, b: string | number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

type SortKey = [string | number, string];

function keyOf(entry: { name: string; mtimeMs: number }, orderBy: OrderBy): SortKey | null {
  if (orderBy === 'name') return ['', entry.name];
  if (orderBy === 'mtime') return [entry.mtimeMs, entry.name];
  const date = dateKeyOf(entry.name);
  return date === null ? null : [date, entry.name];
}

function compareKeys(a: SortKey, b: SortKey): number {
  return cmp(a[0], b[0]) || cmp(a[1], b[1]);
}

/** The order files would be delivered in, with the names that cannot take part and why. */
export function orderCandidates(entries: readonly RemoteEntry[], opts: Pick<SelectOptions, 'matches' | 'orderBy' | 'isCompanion' | 'foldCase'>): { ordered: RemoteEntry[]; skipped: Skipped[] } {
  const skipped: Skipped[] = [];
  const keyed: Array<{ entry: RemoteEntry; key: SortKey }> = [];
  // A name listed twice (a folder changing while it is read can do that) is one file: queued
  // twice, it would be downloaded twice at once into the same partial.
  const seen = new Set<string>();
  for (const entry of entries) {
    if (seen.has(entry.name)) continue;
    seen.add(entry.name);
    // A '/' never belongs in a listed name, and a glob cannot judge such a name (`*` stops at
    // '/'): it would be dropped in silence. It is reported as unsafe whatever FILE_PATTERN says.
    const hasSlash = entry.name.includes('/');
    if ((!hasSlash && !opts.matches(entry.name)) || opts.isCompanion?.(entry.name)) continue;
    if (!entry.isFile) {
      if (entry.unreadable) skipped.push({ name: entry.name, reason: entry.unreadable });
      continue;
    }
    const unsafe = unsafeNameReason(entry.name) ?? undecodable(entry.name);
    if (unsafe) {
      skipped.push({ name: entry.name, reason: `unsafe name: ${unsafe}` });
      continue;
    }
    const key = keyOf(entry, opts.orderBy);
    if (!key) {
      skipped.push({ name: entry.name, reason: 'no date (YYYYMMDD or YYYY-MM-DD) in the name; set ORDER_BY=mtime or name to take such files' });
      continue;
    }
    keyed.push({ entry, key });
  }
  keyed.sort((a, b) => compareKeys(a.key, b.key));
  if (!opts.foldCase) return { ordered: keyed.map((k) => k.entry), skipped };
  // Where case is ignored, the later of two such names would replace the earlier one's file
  // (and both at once would share one partial): the first in order goes, the other is named.
  const taken = new Map<string, string>();
  const ordered: RemoteEntry[] = [];
  for (const { entry } of keyed) {
    const folded = entry.name.normalize('NFC').toLowerCase();
    const first = taken.get(folded);
    if (first !== undefined) {
      skipped.push({ name: entry.name, reason: `the same name as ${first} where case is ignored (this machine's file system): taking it would replace that file` });
      continue;
    }
    taken.set(folded, entry.name);
    ordered.push(entry);
  }
  return { ordered, skipped };
}

/**
 * ssh2 reads listed names as UTF-8, so a name whose bytes are not (from a Latin-1 producer,
 * say) comes out with U+FFFD and no request can name the file. Asked for, the server answers
 * "no such file", which is taken for a file gone since the listing: every run would stop there.
 */
function undecodable(name: string): string | null {
  return name.includes('\uFFFD') ? 'not valid UTF-8 on the server (shown here with U+FFFD), so it cannot be asked for by name; rename it on the server' : null;
}

export function selectNext(entries: readonly RemoteEntry[], marker: string | null, opts: SelectOptions): Selection {
  const { ordered, skipped } = orderCandidates(entries, opts);
  let after = ordered;
  const passedOver: Skipped[] = [];
  if (marker !== null) {
    const markerKey = markerKeyOf(marker, entries, opts);
    after = ordered.filter((e) => compareKeys(keyOf(e, opts.orderBy)!, markerKey) > 0);
    if (opts.delivered) passedOver.push(...lateBefore(ordered, markerKey, marker, opts.orderBy, opts.delivered));
  }
  const queue: RemoteEntry[] = [];
  let waiting: Skipped | null = null;
  if (opts.latestOnly) after = after.slice(-1);
  for (const entry of after) {
    const age = opts.nowMs - entry.mtimeMs;
    if (age < opts.minAgeMs) {
      waiting = { name: entry.name, reason: `younger than MIN_AGE: ${Math.max(0, Math.round(age / 1000))} s old` };
      break;
    }
    queue.push(entry);
  }
  return { queue, skipped, waiting, passedOver };
}

/**
 * Files placed before the marker, and the marker's own, whose server mtime is later than the
 * marker's delivery: written after the marker passed their place (a late upload, a
 * correction), unless our history shows that very version delivered. A server clock running
 * ahead of ours can make a file delivered just before the marker look late: the history check
 * answers that.
 */
function lateBefore(
  ordered: readonly RemoteEntry[], markerKey: SortKey, marker: string, orderBy: OrderBy,
  delivered: NonNullable<SelectOptions['delivered']>,
): Skipped[] {
  const late: Skipped[] = [];
  for (const e of ordered) {
    if (compareKeys(keyOf(e, orderBy)!, markerKey) > 0) break;
    if (e.mtimeMs <= delivered.markerAtMs) continue;
    const had = delivered.mtimeOf.get(e.name);
    if (had === e.mtimeMs) continue;
    const when = new Date(e.mtimeMs).toISOString();
    const since = e.name === marker ? '' : ` after the marker (${marker}) was delivered`;
    late.push({
      name: e.name,
      reason: had === undefined
        ? `it sorts before the marker (${marker}) but appeared on the server (mtime ${when}) after that was delivered, so no run will take it`
        : `it was delivered, then changed on the server (mtime ${new Date(had).toISOString()} -> ${when})${since}, so no run will take it again`,
    });
  }
  return late;
}

function markerKeyOf(marker: string, entries: readonly RemoteEntry[], opts: SelectOptions): SortKey {
  if (opts.orderBy === 'mtime') {
    const listed = entries.find((e) => e.name === marker);
    // Placed by the listing after a rewrite, the marker would jump past every file that
    // arrived between the two versions, and none of them would ever be taken.
    const history = opts.markerMtime;
    const mtime = (history?.current ? history.ms : undefined) ?? listed?.mtimeMs ?? history?.ms;
    if (mtime === undefined) {
      throw new MarkerPlacementError(`the marker names ${JSON.stringify(marker)}, which is no longer on the server and not in the history, so its place in mtime order is unknown; set the marker to a listed file (ipi-pull mark NAME)`);
    }
    return [mtime, marker];
  }
  const key = keyOf({ name: marker, mtimeMs: 0 }, opts.orderBy);
  if (!key) {
    throw new MarkerPlacementError(`the marker names ${JSON.stringify(marker)}, which has no date in it, so ORDER_BY=date cannot place it; set ORDER_BY=name or mtime, or set the marker to a dated file name`);
  }
  return key;
}
