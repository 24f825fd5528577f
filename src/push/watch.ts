// The file watcher: chokidar on WATCH_DIR, recursive, symbolic links not followed, ignored
// names never reported. It only says "look at this path again"; what a path is and whether it
// is ready is decided by scan.ts and decide.ts, the same as for a start-up scan.
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from '../log.js';
import { toRel, type IgnoreTest } from './decide.js';

export interface Watcher {
  close(): Promise<void>;
}

export async function startWatcher(
  root: string,
  ignored: IgnoreTest,
  on: { changed: (rel: string) => void; removed: (rel: string) => void; dirAdded: (rel: string) => void },
  log: Logger,
): Promise<Watcher> {
  const w: FSWatcher = watch(root, {
    ignoreInitial: true,
    followSymlinks: false,
    persistent: true,
    ignored: (p: string) => {
      const rel = path.relative(root, p);
      return rel !== '' && !rel.startsWith('..') && ignored(toRel(rel));
    },
  });
  const relOf = (p: string) => toRel(path.relative(root, p));
  w.on('add', (p) => on.changed(relOf(p)));
  w.on('change', (p) => on.changed(relOf(p)));
  w.on('unlink', (p) => on.removed(relOf(p)));
  w.on('addDir', (p) => {
    const rel = relOf(p);
    if (rel !== '') on.dirAdded(rel);
  });
  w.on('error', (err) => log.warn(`watching ${root}: ${err instanceof Error ? err.message : String(err)}; the periodic rescan (RESCAN_INTERVAL) still finds new files`));
  await new Promise<void>((resolve) => w.once('ready', () => resolve()));
  return { close: () => w.close() };
}
