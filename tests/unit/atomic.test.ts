import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { isOrphanTemp, prepareFileAtomic, renameDurably, sweepTemporaries, tempNameFor, writeFileAtomic } from '../../src/util/atomic.js';
import { withTempDir } from './helpers/tmp.js';

const HOUR = 3_600_000;

test('isOrphanTemp: our temp names whose writer is gone and that are an hour old', () => {
  const dead = () => false;
  const alive = () => true;
  const name = path.basename(tempNameFor('/x/IPI_20240101.dat', 'publishing'));
  assert.equal(isOrphanTemp(name, 0, 2 * HOUR, dead), true);
  assert.equal(isOrphanTemp(name, 0, 2 * HOUR, alive), false, 'writer still running');
  assert.equal(isOrphanTemp(name, HOUR, HOUR + 60_000, dead), false, 'touched within the hour: maybe another machine');
  assert.equal(isOrphanTemp('IPI_20240101.dat', 0, 2 * HOUR, dead), false, 'a delivered file is never a temp');
  assert.equal(isOrphanTemp('.IPI_20240101.dat.part', 0, 2 * HOUR, dead), false);
  assert.equal(isOrphanTemp(path.basename(tempNameFor('/x/last_file.txt')), 0, 2 * HOUR, dead), true);
});

test('isOrphanTemp: a temp of the dead run whose lock we took over is an orphan at once; others keep the hour', () => {
  const dead = () => false;
  const at = (pid: number) => `.IPI_20240101.dat.publishing-${pid}-abc`;
  assert.equal(isOrphanTemp(at(4242), HOUR, HOUR + 1, dead, 4242), true, 'cut short a moment ago by a SIGKILL');
  assert.equal(isOrphanTemp(at(4243), HOUR, HOUR + 1, dead, 4242), false, 'another pid: maybe another machine');
  assert.equal(isOrphanTemp('IPI_20240101.dat', HOUR, HOUR + 1, dead, 4242), false, 'a delivered file is never a temp');
  assert.equal(isOrphanTemp(at(4242), HOUR, HOUR + 1, () => true, 4242), false, 'that pid taken again since: maybe a run of ours writing it');
});

test('sweepTemporaries removes only orphaned temporaries', async () => {
  await withTempDir('ipi-sweep-', async (dir) => {
    const orphan = tempNameFor(path.join(dir, 'IPI_1.dat'), 'publishing');
    fs.writeFileSync(orphan, 'half');
    const old = new Date(Date.now() - 2 * HOUR);
    fs.utimesSync(orphan, old, old);
    fs.writeFileSync(path.join(dir, 'IPI_1.dat'), 'whole');
    await writeFileAtomic(path.join(dir, 'last_file.txt'), 'IPI_1.dat');
    const removed = await sweepTemporaries(dir, () => false);
    assert.deepEqual(removed, [orphan]);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['IPI_1.dat', 'last_file.txt']);
  });
});

test('renameDurably: a failed rename leaves the source where it was (it may be the only copy)', async () => {
  await withTempDir('ipi-atomic-', async (dir) => {
    const from = path.join(dir, 'IPI_1.dat.part');
    fs.writeFileSync(from, 'verified bytes');
    fs.mkdirSync(path.join(dir, 'IPI_1.dat', 'occupied'), { recursive: true });
    await assert.rejects(renameDurably(from, path.join(dir, 'IPI_1.dat')));
    assert.equal(fs.readFileSync(from, 'utf8'), 'verified bytes');
  });
});

test('prepareFileAtomic: a commit that fails removes its own temporary', async () => {
  await withTempDir('ipi-atomic-', async (dir) => {
    const target = path.join(dir, 'last_file.txt');
    const prepared = await prepareFileAtomic(target, 'IPI_2.dat');
    fs.mkdirSync(path.join(target, 'occupied'), { recursive: true });
    await assert.rejects(prepared.commit());
    assert.deepEqual(fs.readdirSync(dir), ['last_file.txt']);
  });
});
