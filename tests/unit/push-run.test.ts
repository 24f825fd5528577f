// ipi-push's orchestration (src/push/run.ts) where it needs no server: the lock around a run.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import { buildConfig } from '../../src/config/load.js';
import { EXIT, type IpiError } from '../../src/errors.js';
import { lockFileFor, pidAlive } from '../../src/lock.js';
import { noProgress } from '../../src/progress.js';
import { runPush } from '../../src/push/run.js';
import { chattr } from '../e2e/helpers/util.js';
import { fakeLog } from './helpers/fake-log.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-push-run-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

function pushConfig(dir: string) {
  return buildConfig({ host: '127.0.0.1', user: 'u', password: 'p', watchDir: './w', uploadDir: '/in', stateFile: './state/s.json' }, { envFile: null, baseDir: dir, tool: 'push' });
}

describe('runPush and its lock', () => {
  test('a failure while sweeping old temporaries beside the state still releases the lock', async (t) => {
    const dir = fs.mkdtempSync(path.join(root, 'sweep-'));
    const config = pushConfig(dir);
    fs.mkdirSync(config.watchDir, { recursive: true });
    fs.mkdirSync(path.dirname(config.stateFile), { recursive: true });
    // A temporary of a writer that died long ago, which cannot be removed (immutable).
    let deadPid = 4_000_000;
    while (pidAlive(deadPid)) deadPid--;
    const orphan = path.join(path.dirname(config.stateFile), `.s.json.tmp-${deadPid}-abc`);
    fs.writeFileSync(orphan, 'left by a dead run');
    const old = new Date(Date.now() - 2 * 3_600_000);
    fs.utimesSync(orphan, old, old);
    if (!chattr('+i', orphan)) return t.skip('chattr +i refused on this filesystem: no way to make the sweep fail');
    try {
      await assert.rejects(runPush(config, { mode: 'once', dryRun: false, acceptNewHostKey: false, retryFailed: false, signal: new AbortController().signal },
        { log: fakeLog(), progress: noProgress }));
      assert.equal(fs.existsSync(lockFileFor(config.stateFile)), false, 'the lock is released, so the next run is not refused');
    } finally {
      chattr('-i', orphan);
    }
  });
});

describe('runPush and WATCH_DIR', () => {
  const once = { mode: 'once' as const, dryRun: false, acceptNewHostKey: false, retryFailed: false, signal: new AbortController().signal };
  test('missing, or a file: exit 2 naming it, before anything is created', async () => {
    for (const make of [() => {}, (w: string) => fs.writeFileSync(w, 'not a folder')]) {
      const dir = fs.mkdtempSync(path.join(root, 'watch-'));
      const config = pushConfig(dir);
      make(config.watchDir);
      await assert.rejects(runPush(config, once, { log: fakeLog(), progress: noProgress }),
        (err: IpiError) => err.exitCode === EXIT.usage && err.message.startsWith(`WATCH_DIR ${config.watchDir}: `));
      assert.equal(fs.existsSync(path.dirname(config.stateFile)), false, 'no state folder made');
    }
  });
});

