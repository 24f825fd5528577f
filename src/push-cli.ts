// ipi-push's commands and flags, and the one place where its outcome becomes the exit code.
// The same settings table, .env conventions and exit codes as ipi-pull (src/cli.ts).
import type { Argv } from 'yargs';
import { withInitCommand } from './commands/init.js';
import { pushCommand, type PushArgs } from './commands/push.js';
import { pushStatusCommand } from './commands/push-status.js';
import { exampleLines, processIo, program, withSettingFlags, type GlobalArgs, type Io } from './commands/shared.js';
import type { ExitCode } from './errors.js';
import { versionLine } from './version.js';

export async function pushMain(argv: string[], io: Io = processIo()): Promise<ExitCode> {
  const { parser: base, run, finish } = program(argv, 'ipi-push', io);
  const parser = withInitCommand(base, 'push', run)
    .usage([
      '$0 [command] [options]',
      '',
      'Uploads the files of WATCH_DIR (and its subfolders) to SFTP_UPLOAD_DIR: settled files only,',
      'to a temporary name then renamed, resumable, verified, recorded in STATE_FILE so nothing goes twice.',
      'Settings come from .env, then the environment, then flags.',
    ].join('\n'))
    .command<PushArgs>(
      ['$0', 'push'],
      'Upload what is new (the default command); --watch keeps running as a service',
      (y) => withSettingFlags(y, 'push')
        .option('once', { type: 'boolean', describe: 'Scan, upload what is new and settled, exit (the default without --watch)' })
        .option('watch', { type: 'boolean', describe: 'Run as a service: watch WATCH_DIR and upload files as they settle, until SIGINT/SIGTERM' })
        .option('dry-run', { type: 'boolean', default: false, describe: 'Scan and say what would be uploaded; connect to nothing, change nothing' })
        .option('retry-failed', { type: 'boolean', default: false, describe: 'Also retry files that failed permanently (normally retried only once they change)' })
        .option('accept-new-host-key', { type: 'boolean', default: false, describe: 'Trust and record a host key seen for the first time (never a changed one)' })
        .conflicts('once', 'watch')
        .example('$0 --once', 'Upload everything new in WATCH_DIR, then exit (cron)')
        .example('$0 --watch', 'Run as a service (systemd, Windows service)')
        .example('$0 --dry-run', 'Show what would be uploaded')
        .example(exampleLines('$0 --once --json', '--env-file /etc/ipi-push/site-a.env'), 'Another settings file; a JSON summary on stdout') as unknown as Argv<PushArgs>,
      run(pushCommand),
    )
    .command<GlobalArgs>(
      'status',
      'Show what was uploaded, what failed and when it is retried, an upload cut short, what waits, and the lock; changes nothing',
      (y) => withSettingFlags(y, 'push')
        .example('$0 status', 'In words')
        .example('$0 status --json', 'As JSON (for monitoring)') as unknown as Argv<GlobalArgs>,
      run(pushStatusCommand),
    )
    .epilog('Exit codes: 0 success (also "nothing new", and a clean stop by SIGINT/SIGTERM), 1 a file could not be uploaded (after retries), 2 bad usage, config or state file, 3 another run holds the lock, 4 authentication or host key refused.\nDocs: README.md ("ipi-push"); every setting is listed in .env.example.')
    .version(versionLine('ipi-push'));
  return finish(parser);
}
