/**
 * Small building blocks shared by the e2e server helpers.
 * Everything here talks to 127.0.0.1 only.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import { LOOPBACK, pathMatches } from '../../../src/sftp-server/embedded.js';
import { onProcessExit } from '../../../src/util/process-exit.js';
import { delay, settleWithin } from '../../../src/util/time.js';

// Shared with the embedded server in src/; re-exported so the helpers keep one import.
export { LOOPBACK, delay, onProcessExit, pathMatches, settleWithin };




/**
 * Ask the kernel for a currently free loopback port. There is an unavoidable
 * window between closing this probe and the real server binding it; callers
 * that spawn external servers retry on EADDRINUSE.
 */
export function getFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.once('error', reject);
    probe.listen(0, LOOPBACK, () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: LOOPBACK, port });
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/**
 * Poll until something accepts TCP connections on `port`.
 * `whyDead` lets the caller abort early (e.g. the server process exited) and
 * supply the reason, so a broken config fails fast instead of after timeout.
 */
export async function waitForPort(
  port: number,
  timeoutMs: number,
  whyDead: () => string | undefined = () => undefined,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const dead = whyDead();
    if (dead !== undefined) throw new Error(dead);
    if (await canConnect(port)) return;
    if (Date.now() > deadline) {
      throw new Error(`nothing listening on ${LOOPBACK}:${port} after ${timeoutMs} ms`);
    }
    await delay(50);
  }
}

/** OpenSSH-style fingerprint of a raw public key blob: 'SHA256:' + unpadded base64. */
export function sha256Fingerprint(keyBlob: Buffer): string {
  const b64 = createHash('sha256').update(keyBlob).digest('base64');
  return 'SHA256:' + b64.replace(/=+$/, '');
}

/** Raw key blob from an authorized_keys/.pub style line ('type base64 [comment]'). */
export function publicKeyBlob(pubLine: string): Buffer {
  const b64 = pubLine.trim().split(/\s+/)[1];
  if (!b64) throw new Error(`not a public key line: ${pubLine}`);
  return Buffer.from(b64, 'base64');
}

/** known_hosts entry for a non-standard port, as ssh writes it. */
export function knownHostsLine(port: number, pubLine: string): string {
  const [type, b64] = pubLine.trim().split(/\s+/);
  return `[${LOOPBACK}]:${port} ${type} ${b64}`;
}



/** Parent pid of every process, read from /proc (Linux only; empty elsewhere). */
function readParentMap(): Map<number, number[]> {
  const children = new Map<number, number[]>();
  let entries: string[] = [];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return children;
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(path.join('/proc', name, 'stat'), 'utf8');
    } catch {
      continue; // raced with process exit
    }
    // comm (field 2) may contain spaces/parens, so parse after the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(name));
    children.set(ppid, list);
  }
  return children;
}

/** All transitive child pids of `pid`. */
export function descendantsOf(pid: number): number[] {
  const children = readParentMap();
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const next = children.get(queue.shift() as number) ?? [];
    out.push(...next);
    queue.push(...next);
  }
  return out;
}

export function trySignal(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/**
 * Kill a process and everything below it without a race: the root is
 * SIGSTOPped first so it cannot fork new children (e.g. sshd accepting a new
 * connection) while the tree is collected.
 */
export function killTreeSync(pid: number): void {
  trySignal(pid, 'SIGSTOP');
  for (const child of descendantsOf(pid)) trySignal(child, 'SIGKILL');
  trySignal(pid, 'SIGKILL');
}

/** Set or clear the immutable flag (a file even root cannot change); false where chattr or the filesystem cannot. */
export function chattr(flag: '+i' | '-i', target: string): boolean {
  try {
    execFileSync('chattr', [flag, target], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

/** Whether a command runs here (`tmux -V`, `ss -V`): tests that need one skip, saying so, where it does not. */
export function toolRuns(command: string, args: readonly string[] = ['-V']): boolean {
  try {
    execFileSync(command, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
