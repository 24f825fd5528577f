// runWithSetup, the frame of both programs' run commands: what it logs before the body runs.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';

import { runWithSetup, type Io } from '../../src/commands/shared.js';

test('near-miss keys of the .env are logged as warnings, once, when the log opens', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-setup-'));
  try {
    const log = path.join(dir, 'run.log');
    fs.writeFileSync(path.join(dir, '.env'), `SFTP_HOST=h\nSFTP_USER=u\nSFTP_DIR=/d\nSFTP_PASS=pw-Setup-77\nLOG_FILE=${log}\nSERVER_DIRR=/data/pub\n`, { mode: 0o600 });
    const io: Io = { stdout: new PassThrough(), stderr: new PassThrough(), env: {}, cwd: dir };
    const out = await runWithSetup({ json: true }, io, 'pull', {
      onSignal: 'stopping', doing: 'testing',
      body: async () => 'done',
    });
    assert.equal(out.failure, null);
    assert.equal(out.summary, 'done');
    const text = fs.readFileSync(log, 'utf8');
    assert.match(text, /WARN .* \S+\.env line 6: SERVER_DIRR is not a setting and is ignored; did you mean SERVER_DIR\?/);
    assert.equal(text.match(/SERVER_DIRR/g)?.length, 1, 'once');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
