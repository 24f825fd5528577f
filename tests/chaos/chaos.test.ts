/**
 * Chaos: many CLI runs against the real sshd through the fault proxy, each with a random fault
 * (link cut at a random byte, stall, SIGKILL, sshd restart, or none), while new files keep
 * arriving on the server. After every run, and at the end, the promises must hold: every file in
 * SERVER_DIR is byte-identical to the server's, the marker names a delivered file and every file
 * up to it is delivered, and after a clean final run nothing temporary is left. At the end, the
 * faults must really have fired, and every partial they left must have been resumed.
 *
 * CHAOS_RUNS (default 20) sets the number of runs, CHAOS_SEED replays a sequence; the seed is
 * printed first.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { collect, listDir, makeWorkspace, sha256, sha256File, testBytes, type Workspace } from '../e2e/helpers/cli.js';
import { startFaultProxy, type FaultProxy } from '../e2e/helpers/fault-proxy.js';
import { startTestServer, writeRemoteFile, type SftpServerHandle } from '../e2e/helpers/server.js';
import { delay } from '../e2e/helpers/util.js';

const MiB = 1024 * 1024;
const RUNS = Math.max(1, Number(process.env.CHAOS_RUNS ?? 20) || 20);
const SEED = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));

let server: SftpServerHandle;
let proxy: FaultProxy;
let ws: Workspace;

/** mulberry32: small, seeded, good enough to pick faults. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

before(async () => {
  server = await startTestServer();
  proxy = await startFaultProxy(server.port);
  process.stderr.write(`chaos: seed ${SEED} (CHAOS_SEED=${SEED} replays it), ${RUNS} runs, ${server.kind} server\n`);
});
after(async () => {
  await proxy?.stop();
  await server?.stop();
  ws?.cleanup();
});

test(`chaos: ${RUNS} runs with random cuts, stalls, SIGKILLs and sshd restarts deliver every file byte-identical`, async () => {
  const rand = prng(SEED);
  const between = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  fs.mkdirSync(path.join(server.root, 'chaos'), { recursive: true });
  ws = makeWorkspace(server, {
    extra: {
      SFTP_DIR: `${server.remoteDir}/chaos`, SFTP_PORT: String(proxy.port), SFTP_HOST_KEY: server.hostKeyFingerprint,
      DATA_TIMEOUT: '1', CONNECT_TIMEOUT: '2', KEEPALIVE_INTERVAL: '1', KEEPALIVE_COUNT_MAX: '2', RETRIES: '3', RETRY_DELAYS: '0.2',
    },
  });
  const remoteData = new Map<string, Buffer>();
  let day = 0;
  const addFiles = (n: number) => {
    for (let i = 0; i < n; i++) {
      day++;
      const name = `IPI_2026${String(1 + Math.floor((day - 1) / 28)).padStart(2, '0')}${String(1 + ((day - 1) % 28)).padStart(2, '0')}.dat`;
      const data = testBytes(between(1 * MiB, 4 * MiB) + between(0, 4095), SEED + day);
      const file = writeRemoteFile(server, `chaos/${name}`, data);
      const old = new Date(Date.now() - 3600_000);
      fs.utimesSync(file, old, old);
      remoteData.set(name, data);
    }
  };
  addFiles(3);

  /**
   * File bytes the next run must still fetch (a lower bound): what is after the marker and not
   * yet in SERVER_DIR, less what LOCAL_DIR already holds of it. A fault placed below this
   * byte count happens while the run is still transferring, so it really fires.
   */
  const bytesToFetch = () => {
    const marker = ws.marker()?.trim() ?? '';
    let n = 0;
    for (const [name, data] of remoteData) {
      if (name <= marker || fs.existsSync(path.join(ws.serverDir, name))) continue;
      const held = [`${name}.part`, name].map((f) => path.join(ws.localDir, f)).find((f) => fs.existsSync(f));
      n += Math.max(0, data.length - (held ? fs.statSync(held).size : 0));
    }
    return n;
  };

  /**
   * `NAME: resuming at byte N` lines a later run owes: one for every partial (with its record)
   * a run left behind. The final clean run pays whatever is still owed.
   */
  const owed = new Set<string>();
  const settleResumes = (stdout: string) => {
    for (const line of owed) if (stdout.includes(line)) owed.delete(line);
    for (const n of listDir(ws.localDir).filter((x) => x.endsWith('.part'))) {
      const size = fs.statSync(path.join(ws.localDir, n)).size;
      if (size > 0 && fs.existsSync(path.join(ws.localDir, `${n}.json`))) owed.add(`${n.slice(0, -'.part'.length)}: resuming at byte ${size}`);
    }
  };
  // A fault counts once it has fired: `picked` is how many were chosen, `fired` how many happened.
  const misses: string[] = [];
  const counts = { picked: 0, fired: 0, cut: 0, stall: 0, kill: 0, restart: 0, none: 0, runs: 0, resumes: 0, exit0: 0, exitOther: 0 };

  const checkInvariants = (when: string) => {
    const names = [...remoteData.keys()].sort();
    for (const n of listDir(ws.serverDir)) {
      if (n.startsWith('.')) continue; // a temporary a killed run left: never under a final name
      assert.ok(remoteData.has(n), `${when}: unexpected ${n} in SERVER_DIR`);
      assert.equal(sha256File(path.join(ws.serverDir, n)), sha256(remoteData.get(n)!), `${when}: SERVER_DIR/${n} differs`);
    }
    const marker = ws.marker()?.trim() || null;
    if (marker) {
      assert.ok(remoteData.has(marker), `${when}: marker names ${marker}`);
      for (const n of names.filter((x) => x <= marker)) {
        assert.ok(fs.existsSync(path.join(ws.serverDir, n)), `${when}: marker is ${marker} but ${n} is not in SERVER_DIR`);
      }
    }
    for (const n of listDir(ws.localDir)) {
      if (n.endsWith('.part') || n.endsWith('.part.json') || n.startsWith('.')) continue;
      // A final name in LOCAL_DIR is only ever a verified file.
      assert.equal(sha256File(path.join(ws.localDir, n)), sha256(remoteData.get(n)!), `${when}: LOCAL_DIR/${n} differs`);
    }
  };

  const started = Date.now();
  for (let run = 1; run <= RUNS; run++) {
    // Always at least a megabyte to fetch, so every run has a transfer for its fault to hit.
    if (bytesToFetch() < MiB) addFiles(between(1, 3));
    proxy.throttle(between(6, 20) * MiB);
    const kinds = ['cut', 'cut', 'stall', 'kill', 'kill', 'restart', 'none'] as const;
    let kind: (typeof kinds)[number] = kinds[Math.floor(rand() * kinds.length)]!;
    // Even CHAOS_RUNS=1 injects a fault: a run of only 'none' would prove nothing about faults.
    if (run === RUNS && counts.picked === 0 && kind === 'none') kind = 'cut';
    if (kind === 'none') counts.none++;
    else counts.picked++;
    // A connection a previous run left open would take the cut budget meant for this run's.
    await proxy.waitForIdle(10_000);
    const toFetch = bytesToFetch();
    const child = ws.spawn();
    const done = collect(child, 90_000);
    const startBytes = proxy.bytesToClient;
    const startCuts = proxy.cuts;
    // Within what the run must fetch (at most 80 % of it), so the run is still transferring then.
    const at = between(20_000, Math.min(6 * MiB, Math.floor(toFetch * 0.8)));
    const running = () => child.exitCode === null && child.signalCode === null;
    let fired = false;
    if (kind === 'cut') {
      proxy.cutAfter(at);
    } else if (kind !== 'none') {
      const reached = await proxy.waitForBytesToClient(startBytes + at, 15_000).then(() => true, () => false);
      fired = reached && running();
      if (fired && kind === 'stall') {
        proxy.stall();
        await delay(between(1200, 3000));
        proxy.unstall();
      } else if (fired && kind === 'kill') {
        child.kill('SIGKILL');
      } else if (fired && kind === 'restart') {
        await server.restart(between(100, 1500));
      }
    }
    const r = await done;
    if (kind === 'cut') fired = proxy.cuts > startCuts;
    proxy.cutEvery(null);
    if (fired && kind !== 'none') {
      counts.fired++;
      counts[kind]++;
    } else if (kind !== 'none') {
      misses.push(`run ${run}: ${kind} at ${at} of ${toFetch} bytes to fetch`);
    }
    counts.runs++;
    counts.resumes += (r.stdout.match(/resuming at byte [1-9]/g) ?? []).length;
    settleResumes(r.stdout);
    if (r.code === 0) counts.exit0++;
    else counts.exitOther++;
    const what = `run ${run} (${kind} at ${at}, ${fired ? 'fired' : 'did not fire'})`;
    if (fired && kind === 'kill') assert.equal(r.signal, 'SIGKILL', `${what}: exit ${r.code}`);
    // A fault that fired may use up the retries (exit 1); a run without one has no excuse.
    else if (fired) assert.ok(r.code === 0 || r.code === 1, `${what} exit ${r.code}: ${r.stderr.slice(-2000)}`);
    else assert.equal(r.code, 0, `${what} exit ${r.code}: ${r.stderr.slice(-2000)}`);
    checkInvariants(`after ${what}`);
  }

  // A clean last run: everything still on the server gets delivered.
  proxy.throttle(null);
  const final = await ws.run([], {}, 120_000);
  assert.equal(final.code, 0, final.stdout + final.stderr);
  counts.resumes += (final.stdout.match(/resuming at byte [1-9]/g) ?? []).length;
  settleResumes(final.stdout);
  checkInvariants('after the final clean run');
  const names = [...remoteData.keys()].sort();
  assert.deepEqual(listDir(ws.serverDir), names, 'every file delivered, nothing else in SERVER_DIR');
  for (const n of names) assert.equal(sha256File(path.join(ws.serverDir, n)), sha256(remoteData.get(n)!), n);
  assert.equal(ws.marker()?.trim(), names.at(-1));
  const stray = [ws.localDir, ws.serverDir, ws.dir].flatMap((d) => listDir(d).filter((n) =>
    n.endsWith('.part') || n.endsWith('.part.json') || /\.(tmp|publishing)-\d+/.test(n) || n.includes('.lock')).map((n) => path.join(d, n)));
  assert.deepEqual(stray, [], 'no temporary files after success');

  const delivered = names.reduce((s, n) => s + remoteData.get(n)!.length, 0);
  const overhead = ((proxy.bytesToClient - delivered) / delivered) * 100;
  const summary = `chaos: seed ${SEED}: ${counts.runs} runs (+1 clean), ${counts.fired} of ${counts.picked} faults fired `
    + `(cut ${counts.cut}, stall ${counts.stall}, kill ${counts.kill}, sshd restart ${counts.restart}, none ${counts.none}); `
    + `${counts.exit0} runs exited 0, ${counts.exitOther} did not; ${counts.resumes} resumes; ${names.length} files, `
    + `${(delivered / MiB).toFixed(1)} MiB delivered, ${(proxy.bytesToClient / MiB).toFixed(1)} MiB on the wire (${overhead.toFixed(1)} % overhead); `
    + `${((Date.now() - started) / 1000).toFixed(1)} s`;
  process.stderr.write(`${summary}\n`);

  // A proxy or server helper that injected nothing would pass every check above. Each fault is
  // placed inside what its run must fetch, so it fires; a long run may lose one in ten to a
  // slow machine (the 15 s wait), a short one none.
  assert.ok(counts.picked > 0, 'no fault was picked');
  assert.ok(counts.fired >= counts.picked - Math.floor(counts.picked / 10),
    `only ${counts.fired} of ${counts.picked} faults fired; missed: ${misses.join('; ')}`);
  assert.deepEqual([...owed], [], 'every partial a fault left behind is resumed from its length by a later run');
});
