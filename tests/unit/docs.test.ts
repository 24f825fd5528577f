// The docs are generated from the settings table; these tests fail when someone edits one
// without the other (fix: `npm run docs`).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { test } from 'node:test';
import { execFileSync } from 'node:child_process';

import { renderEnvTemplate, withSettingsTable } from '../../src/config/template.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

test('.env.example is the rendered settings table', () => {
  assert.equal(fs.readFileSync(path.join(root, '.env.example'), 'utf8'), renderEnvTemplate());
});

test('README settings table is the rendered settings table', () => {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  assert.equal(readme, withSettingsTable(readme));
});

/** Every `ipi-pull ...` (or `ipi-push ...`) command line written in the docs, with its arguments. */
function documentedCommands(program = 'ipi-pull'): Array<{ file: string; args: string[] }> {
  const files = ['README.md', 'docs/scheduling.md', 'docs/examples/ipi-pull.service', 'docs/examples/ipi-pull-task.xml', 'docs/examples/github-actions.yml', 'docs/examples/ipi-push.service'];
  const out: Array<{ file: string; args: string[] }> = [];
  for (const file of files) {
    let inCode = !file.endsWith('.md');
    for (const line of fs.readFileSync(path.join(root, file), 'utf8').split('\n')) {
      // In Markdown only code blocks hold commands; prose mentions the name too.
      if (file.endsWith('.md') && line.trimStart().startsWith('```')) {
        inCode = !inCode;
        continue;
      }
      if (!inCode) continue;
      const m = new RegExp(`(?:^|[\\s/])${program}(?:\\.cmd|\\.js)?((?: +[^\\s>"&|;#]+)*)`).exec(line.replace(/&gt;.*$/, ''));
      if (!m || /npm (install|ci)|^#|\bipi-pu(ll|sh):|name:|Description=|systemctl|journalctl|nssm (set|start)|\.service\b/.test(line)) continue;
      out.push({ file, args: m[1]!.trim().split(/\s+/).filter(Boolean) });
    }
  }
  return out;
}

test('every ipi-pull command line in the docs uses commands and flags that exist', async () => {
  const commands = documentedCommands();
  assert.ok(commands.length >= 8, `found ${commands.length} documented command lines`);
  const { main } = await import('../../src/cli.js');
  for (const { file, args } of commands) {
    let stderr = '';
    const sink = { write: (s: string) => ((stderr += s), true) } as unknown as NodeJS.WritableStream;
    // An empty folder: settings are missing, so a run stops at validation, after argument parsing.
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-docs-'));
    try {
      await main([...args.filter((a) => a !== '--help'), '--dry-run'].filter((a, i, all) => !(a === '--dry-run' && (all[0] === 'init' || all[0] === 'status' || all[0] === 'mark'))), {
        stdout: sink, stderr: sink, env: {}, cwd,
      });
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
    assert.doesNotMatch(stderr, /Unknown argument|Unknown command|Not enough non-option|Missing required/i, `${file}: ipi-pull ${args.join(' ')}\n${stderr}`);
  }
});

test('every ipi-push command line in the docs uses commands and flags that exist', async () => {
  const commands = documentedCommands('ipi-push');
  assert.ok(commands.length >= 8, `found ${commands.length} documented command lines`);
  const { pushMain } = await import('../../src/push-cli.js');
  for (const { file, args } of commands) {
    let stderr = '';
    const sink = { write: (s: string) => ((stderr += s), true) } as unknown as NodeJS.WritableStream;
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-docs-'));
    try {
      // --dry-run on a run: it stops at validation (no settings here) after argument parsing.
      const cmd = args.filter((a) => a !== '--help');
      const run = cmd[0] === 'init' || cmd[0] === 'status' ? cmd : [...cmd.filter((a) => a !== '--once' && a !== '--watch'), '--dry-run'];
      await pushMain(run, { stdout: sink, stderr: sink, env: {}, cwd });
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
    assert.doesNotMatch(stderr, /Unknown argument|Unknown command|Not enough non-option|Missing required|mutually exclusive/i, `${file}: ipi-push ${args.join(' ')}\n${stderr}`);
  }
});

test('--help examples: a line of the command column starts a command, or continues one ending in \\', () => {
  // yargs broke a long example at any blank: `ipi` or `--json` began a line of its own, and read
  // as a command. 80 columns (the narrowest usual terminal) and 100 (without one: cron, a pipe).
  for (const program of ['ipi-pull', 'ipi-push']) {
    for (const columns of [80, 100]) {
      const help = execFileSync(process.execPath, [`--import=data:text/javascript,process.stdout.columns=${columns}`, path.join(root, `dist/src/bin/${program}.js`), '--help'], { encoding: 'utf8' });
      const rows = help.slice(help.indexOf('Examples:\n')).split('\n\n')[0]!.split('\n').slice(1)
        // A row with text in the command column (a description's own wrapped lines have none).
        .filter((l) => /^ {2}\S/.test(l)).map((l) => l.slice(2).split(/ {2,}/)[0]!);
      assert.ok(rows.length >= 4, `${program} at ${columns} columns:\n${help}`);
      rows.forEach((row, i) => {
        const continues = i > 0 && rows[i - 1]!.endsWith(' \\');
        assert.ok(continues ? row.startsWith('--') : row.startsWith(`${program}`), `${program} at ${columns} columns, example line ${JSON.stringify(row)}:\n${help}`);
      });
    }
  }
});
