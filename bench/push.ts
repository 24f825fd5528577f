/**
 * Upload throughput: `ipi-push --once` against OpenSSH's own `sftp put`, same file, same sshd
 * (the tests' real OpenSSH server on 127.0.0.1), alternating runs, best of N each.
 * Target (issue 6): ipi-push <= 1.2 x sftp's time for 1 GiB.
 *
 *   npm run bench:push                          # 1 GiB, 2 runs each
 *   BENCH_SIZE=256MiB BENCH_RUNS=3 npm run bench:push
 *
 * ipi-push runs with VERIFY=size here so both sides do the same work (sftp verifies nothing);
 * the time of VERIFY=sha256 (the server hashing the file once more) is measured separately.
 * Results: bench/results/push-<time>.json. Meant to be folded into bench/run.ts.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { parseSize } from '../src/config/parse.js';
import { startSshd, sshdAvailable } from '../tests/e2e/helpers/sshd.js';
import { testBytes } from '../tests/e2e/helpers/cli.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const PUSH = path.resolve(here, '../src/bin/ipi-push.js');
const size = parseSize(process.env.BENCH_SIZE ?? '1GiB');
const runs = Number(process.env.BENCH_RUNS ?? 2);

function timeIt(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err}`));
      resolve(Number(process.hrtime.bigint() - t0) / 1e6);
    });
  });
}

async function main(): Promise<void> {
  if (!sshdAvailable()) {
    console.error('bench:push needs OpenSSH sshd and sftp (apt-get install openssh-server openssh-client): skipped');
    process.exit(0);
  }
  const server = await startSshd({ passphraseKey: false });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-bench-push-'));
  try {
    const watchDir = path.join(work, 'outgoing');
    fs.mkdirSync(watchDir);
    const file = path.join(watchDir, 'bench.bin');
    // Written in 64 MiB pieces so a 1 GiB file does not need 1 GiB of memory.
    const fd = fs.openSync(file, 'w');
    for (let off = 0, i = 0; off < size; off += 64 * 1024 * 1024, i++) fs.writeSync(fd, testBytes(Math.min(64 * 1024 * 1024, size - off), i + 1));
    fs.closeSync(fd);
    fs.utimesSync(file, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    const knownHosts = path.join(work, 'known_hosts');
    fs.writeFileSync(knownHosts, `${server.knownHostsLine}\n`);
    const batch = path.join(work, 'batch');
    fs.writeFileSync(batch, `put ${file} ${server.remoteDir}/sftp.bin\n`);
    const sftpArgs = ['-q', '-b', batch, '-P', String(server.port), '-i', server.clientKeyPath, '-o', `UserKnownHostsFile=${knownHosts}`,
      '-o', 'BatchMode=yes', `${server.user}@127.0.0.1`];
    const env = (verify: string, n: number): NodeJS.ProcessEnv => ({
      PATH: process.env.PATH, HOME: work,
      SFTP_HOST: '127.0.0.1', SFTP_PORT: String(server.port), SFTP_USER: server.user, SFTP_KEY: server.clientKeyPath,
      SFTP_KNOWN_HOSTS: knownHosts, WATCH_DIR: watchDir, SFTP_UPLOAD_DIR: `${server.remoteDir}/push${n}`,
      STATE_FILE: path.join(work, `state-${n}.json`), PUSH_SETTLE: '0', VERIFY: verify, LOG_FILE: 'none', LOG_LEVEL: 'warn',
    });
    const sftpTimes: number[] = [];
    const pushTimes: number[] = [];
    for (let i = 0; i < runs; i++) {
      sftpTimes.push(await timeIt('sftp', sftpArgs));
      pushTimes.push(await timeIt(process.execPath, [PUSH, '--once'], { cwd: work, env: env('size', i) }));
      fs.rmSync(path.join(server.root, 'sftp.bin'), { force: true });
      fs.rmSync(path.join(server.root, `push${i}`), { recursive: true, force: true });
    }
    const sha = await timeIt(process.execPath, [PUSH, '--once'], { cwd: work, env: env('sha256', 99) });
    const best = (xs: number[]) => Math.min(...xs);
    const ratio = best(pushTimes) / best(sftpTimes);
    const mbps = (ms: number) => ((size / ms) * 1000 / 1e6).toFixed(1);
    const result = {
      when: new Date().toISOString(), size, runs, cpus: os.cpus().length, node: process.versions.node,
      sftpMs: sftpTimes, pushMs: pushTimes, pushSha256Ms: sha, ratio: Number(ratio.toFixed(3)), target: 1.2, pass: ratio <= 1.2,
    };
    console.log(`upload ${(size / 1024 ** 2).toFixed(0)} MiB over loopback to OpenSSH sshd, best of ${runs}:`);
    console.log(`  sftp put           ${(best(sftpTimes) / 1000).toFixed(2)} s  ${mbps(best(sftpTimes))} MB/s`);
    console.log(`  ipi-push --once    ${(best(pushTimes) / 1000).toFixed(2)} s  ${mbps(best(pushTimes))} MB/s  (VERIFY=size)`);
    console.log(`  ipi-push --once    ${(sha / 1000).toFixed(2)} s  (VERIFY=sha256: plus sha256sum on the server)`);
    console.log(`  ratio ${ratio.toFixed(2)} (target <= 1.2): ${result.pass ? 'PASS' : 'FAIL'}`);
    const out = path.resolve(here, '../../bench/results');
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(path.join(out, `push-${result.when.replace(/[:.]/g, '-')}.json`), `${JSON.stringify(result, null, 2)}\n`);
    if (!result.pass) process.exitCode = 1;
  } finally {
    await server.stop();
    fs.rmSync(work, { recursive: true, force: true });
  }
  void execFileSync;
}

await main();
