// OpenSSH's default identities: with no SFTP_KEY, `sftp` tries ~/.ssh/id_ed25519, id_ecdsa and
// id_rsa, and so do we. One list, read once, for the settings check and for the login.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ssh2 from 'ssh2';

export function defaultIdentityFiles(home = os.homedir()): string[] {
  return ['id_ed25519', 'id_ecdsa', 'id_rsa'].map((n) => path.join(home, '.ssh', n));
}

/**
 * The default identities that can be used as they are. An encrypted one is left out: ssh
 * would prompt for its passphrase, and a job run by cron cannot answer.
 */
export function usableDefaultIdentities(home = os.homedir()): Array<{ file: string; key: Buffer }> {
  const out: Array<{ file: string; key: Buffer }> = [];
  for (const file of defaultIdentityFiles(home)) {
    let key: Buffer;
    try {
      key = fs.readFileSync(file);
    } catch {
      continue;
    }
    const parsed = ssh2.utils.parseKey(key);
    if (!(parsed instanceof Error)) out.push({ file, key });
  }
  return out;
}
