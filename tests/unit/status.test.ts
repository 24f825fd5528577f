// `ipi-pull status` with a key it cannot use: the settings load (status must show the local
// side whatever the server settings are), and the key's problem is why the server was not
// looked at, as it was when the key was still read at connect time.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';

import { gatherStatus } from '../../src/commands/status.js';
import { loadConfig } from '../../src/config/load.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-status-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

test('an unreadable SFTP_KEY: the local records are shown, and remote.error names the key, without connecting', async () => {
  // Port 1 on loopback: were a connection attempted, the error would say "connecting to".
  fs.writeFileSync(path.join(root, '.env'), 'SFTP_HOST=127.0.0.1\nSFTP_PORT=1\nSFTP_USER=u\nSFTP_DIR=/out\nSFTP_KEY=./missing_key\n');
  fs.writeFileSync(path.join(root, 'last_file.txt'), 'IPI_20250101.dat');
  const config = loadConfig({ cwd: root, env: {}, serverOptional: true });
  const status = await gatherStatus(config, true);
  assert.equal(status.marker, 'IPI_20250101.dat');
  assert.deepEqual(status.remote, {
    checked: false, pending: [], waiting: null, passedOver: [], error: `SFTP_KEY ${path.join(root, 'missing_key')}: cannot read it (ENOENT)`,
  });
});
