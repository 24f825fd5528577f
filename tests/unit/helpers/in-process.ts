// Either program run in this process through its command line, its output captured: what a
// person at a terminal sees, without a child process per case.
import { Writable } from 'node:stream';
import { main } from '../../../src/cli.js';
import type { Io } from '../../../src/commands/shared.js';
import { pushMain } from '../../../src/push-cli.js';

function capture(): Writable & { text: () => string } {
  const chunks: string[] = [];
  const w = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(String(chunk));
      cb();
    },
  }) as Writable & { text: () => string };
  w.text = () => chunks.join('');
  return w;
}

/** Run `program` in `cwd` with exactly `env` (nothing from the developer's shell unless given). */
export async function runInProcess(program: 'ipi-pull' | 'ipi-push', argv: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = capture();
  const stderr = capture();
  const io: Io = { stdout, stderr, env, cwd };
  const code = await (program === 'ipi-push' ? pushMain : main)(argv, io);
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}
