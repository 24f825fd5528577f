// The "ssh2 fastGet with its defaults" contender, run by bench/run.ts as its own process so
// that it is timed and its peak RSS measured exactly like ipi-pull and OpenSSH's sftp: process
// start, connect, log in, transfer, exit. Defaults means: no algorithm list, no setNoDelay,
// fastGet's own concurrency (64) and chunk size (32 KiB). Only the host key is checked.
// Usage: node dist/bench/fastget.js HOST PORT USER KEYFILE SHA256:FINGERPRINT REMOTE LOCAL
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import ssh2 from 'ssh2';

const { Client } = ssh2;
const [host, port, user, keyFile, fingerprint, remote, local] = process.argv.slice(2);
if (!local) {
  process.stderr.write('usage: fastget HOST PORT USER KEYFILE FINGERPRINT REMOTE LOCAL\n');
  process.exit(2);
}

const client = new Client();
client.on('handshake', (n) => process.stderr.write(`fastget: cipher ${n.sc.cipher}\n`));
client.on('error', (err) => {
  process.stderr.write(`fastget: ${err.message}\n`);
  process.exit(1);
});
client.on('ready', () => {
  client.sftp((err, sftp) => {
    if (err) throw err;
    sftp.fastGet(remote!, local, (e) => {
      if (e) {
        process.stderr.write(`fastget: ${e.message}\n`);
        process.exit(1);
      }
      client.end();
    });
  });
});
client.connect({
  host,
  port: Number(port),
  username: user,
  privateKey: fs.readFileSync(keyFile!),
  hostVerifier: (key: Buffer) => `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}` === fingerprint,
});
