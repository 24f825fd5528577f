// `ipi-pull demo`: zero configuration. Starts the embedded SFTP server on 127.0.0.1 with
// sample IPI files and pulls them with every real step (lock, select, resume, verify,
// publish, history, marker, metrics), through the same runPull a scheduled run uses.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { buildConfig } from '../config/load.js';
import { SAMPLES, writeSamples } from '../demo/samples.js';
import { ConfigError, EXIT, classify, type ExitCode } from '../errors.js';
import { historyFileFor } from '../history.js';
import { createLogger } from '../log.js';
import { recordRun } from '../metrics.js';
import { createProgress } from '../progress.js';
import { runPull } from '../pull.js';
import { startEmbeddedServer } from '../sftp-server/embedded.js';
import { writeJson, type GlobalArgs, type Io } from './shared.js';

export interface DemoArgs extends GlobalArgs {
  dir: string;
}

/** Marks a folder as the demo's own, so a second demo may clear it and nothing else is ever cleared. */
const STAMP = '.ipi-pull-demo';

export async function demoCommand(args: DemoArgs, io: Io): Promise<ExitCode> {
  const dir = path.resolve(io.cwd, args.dir);
  try {
    await prepareDir(dir);
  } catch (err) {
    const e = classify(err, `preparing the demo folder ${dir}`);
    io.stderr.write(`ipi-pull: ${e.message}\n`);
    return e.exitCode;
  }
  const password = randomBytes(12).toString('base64url');
  const server = await startEmbeddedServer({ password, passphraseKey: false });
  try {
    await writeSamples(server.root);
    const config = buildConfig({
      host: server.host, port: String(server.port), user: 'demo', password, remoteDir: server.remoteDir,
      hostKey: server.hostKeyFingerprint, knownHosts: 'known_hosts',
      localDir: 'local_downloads', serverDir: 'synced_server', markerFile: 'last_file.txt',
      logFile: 'logs/sftp_transfer.log', metricsFile: 'metrics/ipi_pull.prom',
      // Short waits so the demo is quick; MIN_AGE shows a file "still being written" waiting.
      minAge: '30', settleTime: '1', retryDelays: '1,2,5',
    }, { envFile: null, baseDir: dir });
    await fs.mkdir(path.dirname(config.metricsFile!), { recursive: true });
    await leaveHalfADownload(server.root, config.localDir);

    const log = createLogger({
      tool: 'ipi-pull', level: 'info', file: config.logFile, maxSize: config.logMaxSize, maxFiles: config.logMaxFiles,
      secrets: config.secrets, allToStderr: args.json,
    });
    const say = (line: string) => (args.json ? io.stderr : io.stdout).write(`${line}\n`);
    say(`demo: an SFTP server with ${SAMPLES.length} sample files is running on ${server.host}:${server.port}; pulling into ${dir}`);
    const tty = !args.json && io.stderr.isTTY ? (io.stderr as NodeJS.WriteStream) : null;
    const startedAtMs = Date.now();
    let summary;
    try {
      summary = await runPull(config, { once: false, latest: false, dryRun: false, acceptNewHostKey: false }, { log, progress: createProgress(log, tty) });
    } finally {
      await log.close();
    }
    await recordRun(config.metricsFile!, { delivered: summary.delivered, pending: summary.pending.length, exitCode: EXIT.ok, startedAtMs });
    const rel = (p: string) => path.relative(io.cwd, p) || '.';
    if (args.json) {
      writeJson(io, { outcome: 'delivered', exitCode: 0, dir, files: summary.delivered, waiting: summary.waiting });
    } else {
      say([
        '',
        'Demo finished. What happened:',
        `  delivered, in date order:  ${summary.delivered.map((f) => f.name).join(', ')}`,
        '  resumed:                   IPI_20250101.dat continued from the half left in LOCAL_DIR (only the rest was fetched)',
        '  checked:                   IPI_20250103.dat against its .sha256 companion file',
        `  waiting for a later run:   ${summary.waiting ? `${summary.waiting.name} (${summary.waiting.reason})` : 'none'}`,
        '  left alone:                readme.txt (does not match FILE_PATTERN=IPI*)',
        '',
        'Where everything went:',
        `  downloads (LOCAL_DIR):      ${rel(config.localDir)}`,
        `  published (SERVER_DIR):     ${rel(config.serverDir)}`,
        `  marker (LAST_FILE_RECORD):  ${rel(config.markerFile)}`,
        `  history:                    ${rel(historyFileFor(config.markerFile))}`,
        `  log (LOG_FILE):             ${rel(config.logFile!)}`,
        `  metrics (METRICS_FILE):     ${rel(config.metricsFile!)}`,
        '',
        'For a real server:',
        '  ipi-pull init              # writes a commented .env; then set at least:',
        '    SFTP_HOST=sftp.example.com',
        '    SFTP_USER=ipi',
        '    SFTP_DIR=/outgoing/ipi',
        '    SFTP_KEY=~/.ssh/id_ed25519      (or SFTP_PASS=...; FTP_IPI.py\'s .env works as it is)',
        '  ipi-pull --dry-run         # check the connection and the host key; see what would be pulled',
        '  ipi-pull --once            # pull the next file',
        '  ipi-pull status            # marker, last delivery, what waits on the server',
        '',
      ].join('\n'));
    }
    return EXIT.ok;
  } catch (err) {
    const e = classify(err, 'the demo');
    io.stderr.write(`ipi-pull: ${e.message}\n`);
    return e.exitCode;
  } finally {
    await server.stop();
  }
}

async function prepareDir(dir: string): Promise<void> {
  const entries = await fs.readdir(dir).catch(() => null);
  if (entries && entries.length > 0) {
    if (!entries.includes(STAMP)) {
      throw new ConfigError(`--dir ${dir} exists and is not a demo folder; choose another with --dir`);
    }
    await fs.rm(dir, { recursive: true, force: true });
  }
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, STAMP), 'Created by `ipi-pull demo`; a later demo may clear this folder.\n');
}

/** As if an earlier run had been interrupted: half of the first file, with its record. */
async function leaveHalfADownload(serverRoot: string, localDir: string): Promise<void> {
  const name = 'IPI_20250101.dat';
  const src = path.join(serverRoot, name);
  const data = await fs.readFile(src);
  const st = await fs.stat(src);
  await fs.mkdir(localDir, { recursive: true });
  await fs.writeFile(path.join(localDir, `${name}.part`), data.subarray(0, Math.floor(data.length / 2)));
  await fs.writeFile(path.join(localDir, `${name}.part.json`), JSON.stringify({
    name, remoteSize: st.size, remoteMtimeMs: Math.floor(st.mtimeMs / 1000) * 1000, startedAt: new Date().toISOString(),
  }));
}
