// ipi-push's upload history: one JSON line per file put on the server, appended and fsynced
// beside STATE_FILE after the remote rename and before AFTER_UPLOAD moves or deletes the local
// file. The state forgets files that leave WATCH_DIR (it stays the size of the folder); this
// file never forgets, so it is what says, years later, what was uploaded, where and how it
// was checked. Same appender and tail reader as ipi-pull's delivery history (src/history.ts).
import { HistoryAppender, historyFileFor, recentLines } from '../history.js';

export interface UploadLine {
  /** Path relative to WATCH_DIR, '/' separated. */
  path: string;
  size: number;
  /** The local file's modification time (ISO, and in ms as compared by the state). */
  mtime: string;
  mtimeMs: number;
  sha256: string;
  remotePath: string;
  uploadedAt: string;
  /** How the remote copy was checked: 'sha256' only when the server's sha256sum agreed. */
  verified: 'sha256' | 'size';
  /** Already on the server (same size and mtime, and SHA-256 when checked): recorded, nothing sent. */
  alreadyThere: boolean;
  resumedFrom: number;
  bytesSent: number;
  durationMs: number;
}

/** `ipi-push-state.json` -> `ipi-push-state.history.jsonl`, beside it (as its lock is). */
export const uploadHistoryFileFor = historyFileFor;

export type UploadHistory = HistoryAppender<UploadLine>;

export function openUploadHistory(stateFile: string): UploadHistory {
  return new HistoryAppender<UploadLine>(uploadHistoryFileFor(stateFile));
}

/** Pure: does a parsed line have the fields status shows, with their types? */
export function isUploadLine(v: unknown): v is UploadLine {
  const d = v as Partial<UploadLine> | null;
  return typeof d === 'object' && d !== null && typeof d.path === 'string' && typeof d.size === 'number' && typeof d.sha256 === 'string'
    && typeof d.remotePath === 'string' && typeof d.uploadedAt === 'string' && !Number.isNaN(Date.parse(d.uploadedAt))
    && (d.verified === 'sha256' || d.verified === 'size');
}

/** Newest uploads first, from the tail of the history only (it grows for years). */
export function recentUploads(stateFile: string, tailBytes?: number): Promise<UploadLine[]> {
  return recentLines(uploadHistoryFileFor(stateFile), isUploadLine, tailBytes);
}
