/**
 * Integrity beyond size: companion checksum files on the server are honoured, a mismatch is
 * fetched once more from zero and then refused, and nothing bad is ever published.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { listDir, sha256, testBytes } from './helpers/cli.js';
import { pullSuite } from './helpers/suite.js';

const suite = pullSuite('integrity', 'int');
const setup = suite.setup;

describe('companion checksum files', () => {
  test('NAME.sha256 (sha256sum format) and NAME.md5 (bare hash) are checked, and not delivered themselves', async () => {
    const a = testBytes(3 * 1024 * 1024 + 5, 1);
    const b = testBytes(777, 2);
    const { ws } = setup({
      'IPI_20260101.dat': a,
      'IPI_20260101.dat.sha256': `${sha256(a)}  IPI_20260101.dat\n`,
      'IPI_20260102.dat': b,
      'IPI_20260102.dat.md5': createHash('md5').update(b).digest('hex'),
    });
    const r = await ws.run();
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(listDir(ws.serverDir), ['IPI_20260101.dat', 'IPI_20260102.dat']);
    assert.match(r.stdout, /IPI_20260101\.dat: sha256 matches IPI_20260101\.dat\.sha256/);
    assert.match(r.stdout, /IPI_20260102\.dat: md5 matches IPI_20260102\.dat\.md5/);
  });

  test('a mismatch is fetched once more from zero, then refused: exit 1, nothing published, marker unchanged', async () => {
    const data = testBytes(2 * 1024 * 1024, 3);
    const { ws } = setup({
      'IPI_20260201.dat': data,
      'IPI_20260201.dat.sha256': `${'0'.repeat(64)}  IPI_20260201.dat\n`,
    });
    fs.writeFileSync(ws.markerFile, 'IPI_20260131.dat');
    const before = await suite.server.bytesServed('IPI_20260201.dat');
    const r = await ws.run();
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /does not match IPI_20260201\.dat\.sha256.*discarded, fetching it once more/);
    assert.match(r.stderr, /again: not published, marker not moved/);
    assert.equal((await suite.server.bytesServed('IPI_20260201.dat')) - before, 2 * data.length, 'exactly two full downloads');
    assert.deepEqual(listDir(ws.serverDir), []);
    assert.deepEqual(listDir(ws.localDir), [], 'the rejected bytes are discarded, not kept under any name');
    assert.equal(ws.marker(), 'IPI_20260131.dat');
    assert.equal(ws.history().length, 0);
  });

  test('a run that fails after delivering files still reports them, and what waits, in --json and METRICS_FILE', async () => {
    const refused = testBytes(3000, 5);
    const { ws } = setup({
      'IPI_20260301.dat': testBytes(1000, 4),
      'IPI_20260302.dat': refused,
      'IPI_20260302.dat.sha256': `${'0'.repeat(64)}  IPI_20260302.dat\n`,
      'IPI_20260303.dat': testBytes(2000, 6),
    }, { METRICS_FILE: './ipi_pull.prom' });
    const r = await ws.run(['--json']);
    assert.equal(r.code, 1, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.outcome, 'failed');
    assert.deepEqual(out.files.map((f: { name: string }) => f.name), ['IPI_20260301.dat']);
    assert.equal(out.bytes, 1000);
    assert.deepEqual(out.pending, ['IPI_20260302.dat', 'IPI_20260303.dat']);
    assert.equal(ws.marker(), 'IPI_20260301.dat');
    const metrics = fs.readFileSync(path.join(ws.dir, 'ipi_pull.prom'), 'utf8');
    assert.match(metrics, /^ipi_pull_last_run_files_delivered 1$/m);
    assert.match(metrics, /^ipi_pull_files_pending 2$/m);
  });
});
