// `ipi-pull status`: what a person on call wants to know, without changing anything:
// the marker, the last delivery, a download in progress, who holds the lock, and (when the
// server answers) what is waiting there, in the order it will be pulled.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config/load.js';
import { EXIT, classify, type ExitCode } from '../errors.js';
import { historyFileFor, recentDeliveries, type Delivery } from '../history.js';
import { lockFileFor, lockStatus, type LockStatus } from '../lock.js';
import { silentLogger } from '../log.js';
import { readMarker } from '../marker.js';
import { selectionOptions } from '../pull.js';
import { sessionOptions } from '../sftp/session-options.js';
import { selectNext } from '../select.js';
import { SftpSession } from '../sftp/session.js';
import { partialPaths, readMeta } from '../transfer/partial.js';
import { formatBytes } from '../util/space.js';
import { commandFailed, configFromArgs, writeJson, type GlobalArgs, type Io } from './shared.js';

export interface StatusArgs extends GlobalArgs {
  local: boolean;
}

export interface Status {
  marker: string | null;
  lastDelivery: Delivery | null;
  inProgress: Array<{ name: string; bytes: number; size: number | null; percent: number | null }>;
  lock: LockStatus;
  remote: { checked: boolean; pending: string[]; waiting: string | null; passedOver: string[]; error: string | null };
}

export async function statusCommand(args: StatusArgs, io: Io): Promise<ExitCode> {
  let config: Config;
  try {
    config = configFromArgs(args, io, true);
  } catch (err) {
    const e = classify(err, 'reading the settings');
    return commandFailed('ipi-pull', e, null, io, args.json);
  }
  let status: Status;
  try {
    status = await gatherStatus(config, !args.local);
  } catch (err) {
    // The local records could not be read (a folder where a file belongs, no permission).
    const e = classify(err, 'reading the marker, history and lock');
    return commandFailed('ipi-pull', e, config, io, args.json);
  }
  if (args.json) writeJson(io, status);
  else io.stdout.write(renderStatus(status, config));
  return EXIT.ok;
}

export async function gatherStatus(config: Config, checkRemote: boolean): Promise<Status> {
  const marker = await readMarker(config.markerFile);
  const [lastDelivery] = await recentDeliveries(historyFileFor(config.markerFile), 64 * 1024);
  const status: Status = {
    marker,
    lastDelivery: lastDelivery ?? null,
    inProgress: await partials(config.localDir),
    lock: await lockStatus(lockFileFor(config.markerFile)),
    remote: { checked: false, pending: [], waiting: null, passedOver: [], error: null },
  };
  if (!checkRemote) return status;
  if (!config.host || !config.user || !config.remoteDir) {
    status.remote.error = 'SFTP_HOST, SFTP_USER and SFTP_DIR are needed to look at the server';
    return status;
  }
  try {
    const session = await SftpSession.open(sessionOptions(config, false, silentLogger));
    try {
      const sel = selectNext(await session.list(config.remoteDir), marker, await selectionOptions(config, marker, false));
      status.remote = {
        checked: true, pending: sel.queue.map((e) => e.name), waiting: sel.waiting?.name ?? null, passedOver: sel.passedOver.map((e) => e.name), error: null,
      };
    } finally {
      await session.end();
    }
  } catch (err) {
    status.remote.error = classify(err, `looking at ${config.host}`).message;
  }
  return status;
}

async function partials(localDir: string): Promise<Status['inProgress']> {
  let names: string[];
  try {
    names = await fs.readdir(localDir);
  } catch {
    return [];
  }
  const out: Status['inProgress'] = [];
  for (const n of names.filter((x) => x.endsWith('.part')).sort()) {
    const name = n.slice(0, -'.part'.length);
    const p = partialPaths(localDir, name);
    const meta = await readMeta(p.meta);
    const bytes = (await fs.stat(path.join(localDir, n)).catch(() => null))?.size ?? 0;
    const size = meta?.remoteSize ?? null;
    out.push({ name, bytes, size, percent: size ? Math.floor((bytes / size) * 1000) / 10 : null });
  }
  return out;
}

function renderStatus(s: Status, config: Config): string {
  const lines: string[] = [];
  lines.push(`marker (${config.markerFile}): ${s.marker ?? 'none yet: the first run starts from the ' + config.startFrom + ' file'}`);
  if (s.lastDelivery) {
    const d = s.lastDelivery;
    lines.push(`last delivered: ${d.name}, ${formatBytes(d.size)}, at ${d.deliveredAt}, sha256 ${d.sha256}`);
  } else lines.push('last delivered: nothing recorded yet');
  for (const p of s.inProgress) {
    // Without a record only its tail can be checked, and a one-chunk file is not resumed at all (transfer/download.ts).
    lines.push(p.size === null
      ? `in progress: ${p.name}: ${formatBytes(p.bytes)}, with no record of the remote file: the next run resumes it if its tail matches the server, else (or for a file of one chunk) fetches it again`
      : `in progress: ${p.name}: ${formatBytes(p.bytes)} of ${formatBytes(p.size)} (${p.percent}%), resumes on the next run`);
  }
  lines.push(`lock: ${s.lock.held ? `held by ${s.lock.description}` : 'free'}`);
  if (s.remote.checked) {
    lines.push(`waiting on the server: ${s.remote.pending.length === 0 ? 'nothing new' : `${s.remote.pending.length} file(s), in order: ${s.remote.pending.join(', ')}`}`);
    if (s.remote.waiting) lines.push(`not ready yet: ${s.remote.waiting}`);
    if (s.remote.passedOver.length > 0) lines.push(`passed over (before the marker, but new or changed on the server since it moved there; no run takes them): ${s.remote.passedOver.join(', ')}`);
  } else if (s.remote.error) lines.push(`server: not checked (${s.remote.error})`);
  return `${lines.join('\n')}\n`;
}
