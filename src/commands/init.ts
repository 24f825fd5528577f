// `ipi-pull init`: a commented .env from the settings table, written only where none exists.
import fs from 'node:fs/promises';
import path from 'node:path';
import { renderEnvTemplate } from '../config/template.js';
import { EXIT, type ExitCode } from '../errors.js';
import type { Tool } from '../config/settings.js';
import type { Argv } from 'yargs';
import type { GlobalArgs, Io, Program } from './shared.js';

export interface InitArgs extends GlobalArgs {
  /**
   * Where to write. A positional, not --env-file alone: Node itself reads `--env-file` even
   * after the program's name, and stops with "node: FILE: not found" (exit 9) when the file
   * does not exist yet, which for init it never does.
   */
  file?: string;
}

export async function initCommand(args: InitArgs, io: Io, tool: Tool = 'pull'): Promise<ExitCode> {
  const me = tool === 'push' ? 'ipi-push' : 'ipi-pull';
  const target = path.resolve(io.cwd, args.file ?? args['env-file'] ?? '.env');
  try {
    // 'wx' fails if the file exists, even if it appears between a check and the write.
    await fs.writeFile(target, renderEnvTemplate(tool), { flag: 'wx', mode: 0o600 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      io.stderr.write(`${me}: ${target} already exists; left unchanged (init never overwrites settings)\n`);
      return EXIT.ok;
    }
    io.stderr.write(`${me}: cannot write ${target} (${code ?? String(err)})\n`);
    return EXIT.failed;
  }
  io.stdout.write((tool === 'push' ? [
    `wrote ${target} (readable only by you).`,
    'Next: set SFTP_HOST, SFTP_USER, WATCH_DIR, SFTP_UPLOAD_DIR and a way to log in (SFTP_KEY or SFTP_PASS), then',
    '  ipi-push --dry-run        # see what would be uploaded',
    '  ipi-push --once           # upload what is new, then exit',
    '  ipi-push --watch          # run as a service',
    '',
  ] : [
    `wrote ${target} (readable only by you).`,
    'Next: set SFTP_HOST, SFTP_USER, SFTP_DIR and a way to log in (SFTP_KEY or SFTP_PASS), then',
    '  ipi-pull --dry-run        # check the connection and see what would be pulled',
    '  ipi-pull --once           # pull the next file',
    '',
  ]).join('\n'));
  return EXIT.ok;
}

/** `init [file]` as both programs declare it. */
export function withInitCommand<T>(y: Argv<T>, tool: Tool, run: Program['run']): Argv<T> {
  const me = tool === 'push' ? 'ipi-push' : 'ipi-pull';
  return y.command<InitArgs>(
    'init [file]',
    'Write a commented .env (or FILE) to fill in; never overwrites one',
    (b) => b.positional('file', { type: 'string', describe: 'Where to write it [default: ./.env]' })
      .example('$0 init', 'Create ./.env from the settings table')
      .example(`$0 init /etc/${me}/site-a.env`, `Create it elsewhere (then run with --env-file /etc/${me}/site-a.env)`) as unknown as Argv<InitArgs>,
    run((args: InitArgs, io: Io) => initCommand(args, io, tool)),
  );
}
