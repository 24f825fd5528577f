// `ipi-pull mark NAME`: set the marker on purpose (start later, or pull again from a point).
import path from 'node:path';
import picomatch from 'picomatch';
import { ConfigError, EXIT, classify, wrongKindOfPath, type ExitCode } from '../errors.js';
import { acquireLock, lockFileFor } from '../lock.js';
import { silentLogger } from '../log.js';
import { DamagedMarkerError, readMarker, writeMarker } from '../marker.js';
import { unsafeNameReason } from '../names.js';
import { sessionOptions } from '../sftp/session-options.js';
import { dateKeyOf } from '../select.js';
import { makeDir } from '../util/folders.js';
import { SftpSession } from '../sftp/session.js';
import type { Config } from '../config/load.js';
import { commandFailed, configFromArgs, writeJson, type GlobalArgs, type Io } from './shared.js';

export interface MarkArgs extends GlobalArgs {
  name: string;
  force: boolean;
}

export async function markCommand(args: MarkArgs, io: Io): Promise<ExitCode> {
  let loaded: Config | null = null;
  try {
    const unsafe = unsafeNameReason(args.name);
    if (unsafe) throw new ConfigError(`mark ${JSON.stringify(args.name)}: not a file name we would deliver (${unsafe})`);
    const config = configFromArgs(args, io, args.force);
    loaded = config;
    // Even with --force: every later run would stop at a marker it cannot place.
    if (config.orderBy === 'date' && dateKeyOf(args.name) === null) {
      throw new ConfigError(`mark ${args.name}: has no date in its name, and ORDER_BY=date places the marker by the date in it; no run could place it`);
    }
    if (!args.force) {
      if (!picomatch(config.pattern, { dot: true })(args.name)) {
        throw new ConfigError(`mark ${args.name}: does not match FILE_PATTERN ${config.pattern} (use --force to set it anyway)`);
      }
      const session = await SftpSession.open(sessionOptions(config, false, silentLogger));
      try {
        const listed = await session.list(config.remoteDir);
        if (!listed.some((e) => e.name === args.name && e.isFile)) {
          throw new ConfigError(`mark ${args.name}: no such file in ${config.remoteDir} on ${config.host} (use --force to set it anyway)`);
        }
      } finally {
        await session.end();
      }
    }
    await makeDir(path.dirname(config.markerFile)).catch((err: unknown) => {
      throw wrongKindOfPath(err, 'LAST_FILE_RECORD\'s folder', path.dirname(config.markerFile), 'folder') ?? err;
    });
    // Under the lock, so a run in progress cannot overwrite the marker we set (or we its).
    const lock = await acquireLock(lockFileFor(config.markerFile), (m) => io.stderr.write(`ipi-pull: ${m}\n`));
    try {
      // A damaged marker is what mark is for: it is replaced, not refused.
      const was = await readMarker(config.markerFile).catch((err: unknown) => {
        if (err instanceof DamagedMarkerError) return '(damaged)';
        throw err;
      });
      await writeMarker(config.markerFile, args.name);
      if (args.json) writeJson(io, { outcome: 'marked', marker: args.name, was });
      else io.stdout.write(`marker set to ${args.name} (was ${was ?? 'unset'}); the next run pulls the files after it\n`);
    } finally {
      await lock.release();
    }
    return EXIT.ok;
  } catch (err) {
    return commandFailed('ipi-pull', classify(err, 'setting the marker'), loaded, io, args.json);
  }
}
