// Commands and flags, and the one place where a command's outcome becomes the process's
// exit code. Each command lives in src/commands/.
import type { Argv } from 'yargs';
import { demoCommand, type DemoArgs } from './commands/demo.js';
import { withInitCommand } from './commands/init.js';
import { markCommand, type MarkArgs } from './commands/mark.js';
import { pullCommand, type PullArgs } from './commands/pull.js';
import { exampleLines, processIo, program, withSettingFlags, type Io } from './commands/shared.js';
import { statusCommand, type StatusArgs } from './commands/status.js';
import type { ExitCode } from './errors.js';
import { versionLine } from './version.js';

export type { Io } from './commands/shared.js';

export async function main(argv: string[], io: Io = processIo()): Promise<ExitCode> {
  const { parser: base, run, finish } = program(argv, 'ipi-pull', io);
  const parser = withInitCommand(base, 'pull', run)
    .usage([
      '$0 [command] [options]',
      '',
      'Pulls the next IPI file(s) from an SFTP server: resumable, verified, published atomically,',
      'and only then recorded in the marker. Settings come from .env, then the environment, then flags.',
    ].join('\n'))
    .command<PullArgs>(
      ['$0', 'pull'],
      'Pull the files after the marker (the default command)',
      (y) => withSettingFlags(y)
        .option('once', { type: 'boolean', default: false, describe: 'Pull at most one file, then stop' })
        .option('latest', { type: 'boolean', default: false, describe: 'Pull only the newest file (files between the marker and it are skipped)' })
        .option('dry-run', { type: 'boolean', default: false, describe: 'Connect and list; say what would be pulled; change nothing' })
        .option('accept-new-host-key', { type: 'boolean', default: false, describe: 'Trust and record a host key seen for the first time (never a changed one)' })
        .example('$0', 'Pull everything new after the marker, using ./.env')
        .example('$0 --once', 'Pull at most one file (the next in date order)')
        .example('$0 --dry-run', 'Show which files would be pulled; change nothing')
        .example(exampleLines('$0 --json', '--env-file /etc/ipi-pull/site-a.env'), 'Another settings file; a JSON summary on stdout for a wrapper or CI')
        .example(exampleLines('$0 --sftp-host sftp.example.com', '--sftp-user ipi', '--sftp-key ~/.ssh/id_ed25519', '--sftp-dir /out'), 'Everything from flags, no .env') as unknown as Argv<PullArgs>,
      run(pullCommand),
    )
    .command<StatusArgs>(
      'status',
      'Show the marker, the last delivery, a download in progress, the lock, and what waits on the server; changes nothing',
      (y) => withSettingFlags(y)
        .option('local', { type: 'boolean', default: false, describe: 'Do not connect to the server' })
        .example('$0 status', 'Everything, including the files waiting on the server')
        .example('$0 status --json --local', 'Local state only, as JSON (for monitoring)') as unknown as Argv<StatusArgs>,
      run(statusCommand),
    )
    .command<DemoArgs>(
      'demo',
      'See it work, with no configuration: a local SFTP server with sample files, pulled with every real step',
      (y) => y.option('dir', { type: 'string', default: 'ipi-pull-demo', describe: 'Folder for the demo\'s downloads, marker, log and metrics' })
        .example('$0 demo', 'Run the demo into ./ipi-pull-demo')
        .example('$0 demo --dir /tmp/ipi-demo --json', 'Elsewhere, with a JSON summary') as unknown as Argv<DemoArgs>,
      run(demoCommand),
    )
    .command<MarkArgs>(
      'mark <name>',
      'Set the marker: the next run pulls the files after NAME',
      (y) => withSettingFlags(y)
        .positional('name', { type: 'string', demandOption: true, describe: 'A file name on the server, e.g. IPI_20240131.dat' })
        .option('force', { type: 'boolean', default: false, describe: 'Do not check that NAME is on the server' })
        .example('$0 mark IPI_20240131.dat', 'Start after that file (it must be listed on the server)')
        .example('$0 mark IPI_20240131.dat --force', 'Set it without connecting') as unknown as Argv<MarkArgs>,
      run(markCommand),
    )
    .epilog('Exit codes: 0 success (also "nothing new"), 1 failed after retries, 2 bad usage or config, 3 another run holds the lock, 4 authentication or host key refused, 130 interrupted.\nDocs: README.md; every setting is listed in .env.example.')
    .version(versionLine());
  return finish(parser);
}
