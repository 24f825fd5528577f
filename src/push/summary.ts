// What a run of ipi-push did, for its last log line, --json and the --watch service's metrics.
// A service runs for months, so its lists keep only the latest entries while the totals count
// everything.
import type { UploadResult } from './upload.js';

export interface PushSummary {
  /** The uploads of this run; in --watch only the latest WATCH_SUMMARY_KEEPS (see `totals`). */
  uploaded: UploadResult[];
  /** Folders of WATCH_DIR made on the server (or found there) and recorded by this run; in --watch only the latest. */
  folders: string[];
  /** Every upload and folder of the run, counted. */
  totals: PushTotals;
  failed: Array<{ rel: string; error: string; permanent: boolean }>;
  /** Still being written when the run looked (size or mtime moved within PUSH_SETTLE). */
  waiting: string[];
  /** Files that need an upload and had not been uploaded when the run ended. */
  pending: string[];
  /** --dry-run: what would be uploaded, in order. */
  wouldUpload: string[];
  /** --dry-run: the folders that would be made on the server, parents first. */
  wouldCreateFolders: string[];
  /** Ended by SIGINT/SIGTERM after checkpointing the current upload. */
  stopped: boolean;
}

export interface PushTotals {
  /** Files sent (wholly or from a resume point). */
  uploaded: number;
  /** Files found already on the server and recorded without sending. */
  alreadyThere: number;
  /** The sizes of both. */
  bytes: number;
  bytesSent: number;
  folders: number;
}

/**
 * A --watch service runs for months: its summary lists only this many of the latest uploads
 * and folders (for --json when it stops), or it would grow by every file ever uploaded.
 */
export const WATCH_SUMMARY_KEEPS = 1000;

export function newPushSummary(): PushSummary {
  return {
    uploaded: [], folders: [], totals: { uploaded: 0, alreadyThere: 0, bytes: 0, bytesSent: 0, folders: 0 },
    failed: [], waiting: [], pending: [], wouldUpload: [], wouldCreateFolders: [], stopped: false,
  };
}

/** Count an upload and list it; with `keep`, the list holds only about the latest `keep`. */
export function noteUpload(summary: PushSummary, result: UploadResult, keep?: number): void {
  if (result.adopted) summary.totals.alreadyThere++;
  else summary.totals.uploaded++;
  summary.totals.bytes += result.size;
  summary.totals.bytesSent += result.bytesSent;
  summary.uploaded.push(result);
  if (keep !== undefined) trimToLatest(summary.uploaded, keep);
}

export function noteFolders(summary: PushSummary, rels: readonly string[], keep?: number): void {
  summary.totals.folders += rels.length;
  summary.folders.push(...rels);
  if (keep !== undefined) trimToLatest(summary.folders, keep);
}

/** Down to the latest `keep` once it has twice that: the copying is paid once per `keep` additions. */
function trimToLatest(list: unknown[], keep: number): void {
  if (list.length >= 2 * keep) list.splice(0, list.length - keep);
}
