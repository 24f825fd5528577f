// The private keys a login may use, read once when the settings are loaded: SFTP_KEY's, or
// without it OpenSSH's default identities (`sftp` tries ~/.ssh/id_ed25519, id_ecdsa and
// id_rsa, and so do we). The session only ever gets the bytes read here.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ssh2 from 'ssh2';
import { ConfigError } from '../errors.js';

/**
 * SFTP_KEY's bytes, once they are known to be a private key that SFTP_KEY_PASSPHRASE (if any)
 * decrypts. Otherwise a ConfigError naming the file and what is wrong with it: found at
 * connect time instead, the run would have taken the lock and made its folders first.
 */
export function loadPrivateKey(file: string, passphrase: string | undefined): Buffer {
  let key: Buffer;
  try {
    key = fs.readFileSync(file);
  } catch (err) {
    throw new ConfigError(`SFTP_KEY ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? err})`);
  }
  const problem = privateKeyProblem(key, passphrase);
  if (problem !== null) throw new ConfigError(`SFTP_KEY ${file}: ${problem}`);
  return key;
}

/**
 * Pure: why `key` cannot be used to log in with this passphrase, or null when it can. The
 * answer never quotes the passphrase or the key's bytes.
 */
export function privateKeyProblem(key: Buffer, passphrase: string | undefined): string | null {
  const parsed = ssh2.utils.parseKey(key, passphrase);
  if (parsed instanceof Error) {
    if (/passphrase|decrypt|bad|encrypted/i.test(parsed.message)) {
      return passphrase === undefined ? 'it is encrypted: set SFTP_KEY_PASSPHRASE' : 'SFTP_KEY_PASSPHRASE does not decrypt it';
    }
    // The one reason of ssh2's that quotes the file: the first 15 bytes under the armour.
    return `not a private key ssh2 can read (${parsed.message.replace(/^(Unsupported OpenSSH key magic):[\s\S]*$/, '$1')})`;
  }
  // A .pub parses too; the server would then refuse the login, blaming the wrong thing.
  const first = Array.isArray(parsed) ? parsed[0] : parsed;
  if (first && !first.isPrivateKey()) return 'a public key; SFTP_KEY takes the private key (usually the same name without .pub)';
  return null;
}

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
