// LAST_FILE_RECORD: one line, the name of the last file fully delivered to SERVER_DIR.
// The format is FTP_IPI.py's (the bare name), so either program can read the other's marker.
import fs from 'node:fs/promises';
import { ConfigError, withPath, wrongKindOfPath } from './errors.js';
import { printableName, unsafeNameReason } from './names.js';
import { prepareFileAtomic, temporariesOf, writeFileAtomic, type PreparedFile } from './util/atomic.js';

/** A marker that names no file we could have delivered: garbage, a path, control characters. */
export class DamagedMarkerError extends ConfigError {}

/** The marker's name, or null when there is no marker yet (first run). */
export async function readMarker(file: string): Promise<string | null> {
  let content: string;
  try {
    content = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw wrongKindOfPath(err, 'LAST_FILE_RECORD', file, 'file') ?? withPath(err, file);
  }
  const name = parseMarker(content);
  // Placing garbage in the order of the server's files could mean pulling everything again.
  const unsafe = name === null ? null : unsafeNameReason(name);
  if (unsafe) {
    throw new DamagedMarkerError(`LAST_FILE_RECORD ${file} is damaged: it holds ${printableName(name!)}, not a file name (${unsafe}). Set it with 'ipi-pull mark NAME', or delete it to start from START_FROM`);
  }
  return name;
}

/** Tolerates what editors and the seed leave: a BOM, CRLF, trailing newline or spaces. */
export function parseMarker(content: string): string | null {
  const first = content.replace(/^\uFEFF/, '').split(/\r?\n/)[0]?.trim() ?? '';
  return first === '' ? null : first;
}

/** Written only after the file is in SERVER_DIR; atomic, so a crash leaves the old marker or the new. */
export async function writeMarker(file: string, name: string): Promise<void> {
  await writeFileAtomic(file, name);
}

/** The new marker made durable under a temporary name; commit() moves the marker. */
export function prepareMarker(file: string, name: string): Promise<PreparedFile> {
  return prepareFileAtomic(file, name);
}

/**
 * Remove next-marker temporaries left by a run killed between preparing and committing.
 * Call only while holding the marker's lock: only its holder writes them, so any found then
 * belong to a dead run (no hour's grace, unlike temporaries in shared folders).
 */
export async function removeStaleMarkerTemporaries(file: string): Promise<string[]> {
  const stale = await temporariesOf(file);
  for (const f of stale) await fs.rm(f, { force: true });
  return stale;
}
