/**
 * Pick the SFTP backend for e2e tests: a real OpenSSH sshd when installed
 * (closest to production), otherwise the embedded ssh2 server.
 *
 * Env IPI_TEST_SERVER=openssh|embedded forces one; forcing openssh on a host
 * without it fails loudly rather than silently testing something else.
 * Tests that need hostile behaviour (lying sizes, evil names, short reads)
 * should call startEmbeddedServer() directly: a real sshd cannot do that.
 */
import fs from 'node:fs';
import path from 'node:path';

import { startEmbeddedServer } from './embedded-server.js';
import { sshdAvailable, startSshd } from './sshd.js';
import type { SftpServerHandle } from './types.js';

export type { SftpServerHandle } from './types.js';

export interface TestServerOptions {
  /** Also create an authorized key protected by a passphrase (default true). */
  passphraseKey?: boolean;
  passphrase?: string;
}

export type ServerKind = SftpServerHandle['kind'];

let fallbackAnnounced = false;

/** Which backend startTestServer() will use in this environment. */
export function chosenServerKind(): ServerKind {
  const forced = process.env.IPI_TEST_SERVER?.trim().toLowerCase();
  if (forced === 'openssh' || forced === 'embedded') return forced;
  if (forced) throw new Error(`IPI_TEST_SERVER must be 'openssh' or 'embedded', got '${forced}'`);
  return sshdAvailable() ? 'openssh' : 'embedded';
}

export async function startTestServer(opts: TestServerOptions = {}): Promise<SftpServerHandle> {
  const kind = chosenServerKind();
  if (kind === 'openssh') {
    if (!sshdAvailable()) throw new Error('IPI_TEST_SERVER=openssh but sshd/sftp-server/ssh-keygen are not installed');
    return startSshd(opts);
  }
  if (!process.env.IPI_TEST_SERVER && !fallbackAnnounced) {
    // One line per process is enough to explain why the embedded server is used.
    fallbackAnnounced = true;
    process.stderr.write('e2e: sshd not installed, using embedded ssh2 SFTP server\n');
  }
  return startEmbeddedServer(opts);
}

/**
 * Create (or overwrite) a file in the server's served dir; returns its
 * absolute local path. `relPath` may contain sub directories.
 */
export function writeRemoteFile(server: SftpServerHandle, relPath: string, data: Buffer | string): string {
  const abs = path.join(server.root, relPath);
  fs.mkdirSync(path.dirname(abs), { recursive: true });
  fs.writeFileSync(abs, data);
  return abs;
}

/** The SFTP path a client should request for a file created with writeRemoteFile(). */
export function remotePathOf(server: SftpServerHandle, relPath: string): string {
  return path.posix.join(server.remoteDir, relPath.split(path.sep).join('/'));
}

/**
 * A fresh remote folder holding `files`, an hour old (whole seconds, as SFTP reports them),
 * so a run takes them at once; returns its name under the server's root.
 */
export function remoteFolderWith(server: SftpServerHandle, folder: string, files: Record<string, Buffer | string>): string {
  fs.mkdirSync(path.join(server.root, folder), { recursive: true });
  const old = new Date(Math.floor(Date.now() / 1000) * 1000 - 3600_000);
  for (const [name, data] of Object.entries(files)) fs.utimesSync(writeRemoteFile(server, `${folder}/${name}`, data), old, old);
  return folder;
}
