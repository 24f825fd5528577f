// `npm run bench -- --ciphers`: how fast ssh2 receives a file with each cipher, to check
// the order ssh2 negotiates (its default list, which ipi-pull uses unchanged). Reads the
// file the way the engine does (many 255 KiB READs in flight, TCP_NODELAY) and throws the
// bytes away, so only the cipher and ssh2 differ between runs. Bench-only: ipi-pull itself
// has no cipher setting (see BENCHMARKS.md for why none is needed).
// Usage: node dist/bench/cipher-probe.js HOST PORT USER KEYFILE SHA256:FINGERPRINT REMOTE CIPHER
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import ssh2, { type Stats } from 'ssh2';

const { Client } = ssh2;
const [host, port, user, keyFile, fingerprint, remote, cipher] = process.argv.slice(2);
if (!cipher) {
  process.stderr.write('usage: cipher-probe HOST PORT USER KEYFILE FINGERPRINT REMOTE CIPHER\n');
  process.exit(2);
}
const IN_FLIGHT = 36;
const READ = 255 * 1024;

const client = new Client();
client.on('error', (err) => {
  process.stderr.write(`cipher-probe: ${err.message}\n`);
  process.exit(1);
});
client.on('handshake', (n) => {
  if (n.sc.cipher !== cipher) {
    process.stderr.write(`cipher-probe: negotiated ${n.sc.cipher}, not ${cipher}\n`);
    process.exit(1);
  }
});
client.on('ready', () => {
  client.setNoDelay(true);
  client.sftp((err, sftp) => {
    if (err) throw err;
    sftp.open(remote!, 'r', (e, handle) => {
      if (e) throw e;
      sftp.fstat(handle, (e2, st: Stats) => {
        if (e2) throw e2;
        const buf = Buffer.allocUnsafe(READ * IN_FLIGHT);
        let next = 0;
        let got = 0;
        const free: number[] = Array.from({ length: IN_FLIGHT }, (_, i) => i);
        const issue = (): void => {
          while (free.length > 0 && next < st.size) {
            const slot = free.pop()!;
            const pos = next;
            const len = Math.min(READ, st.size - pos);
            next += len;
            sftp.read(handle, buf, slot * READ, len, pos, (e3, n) => {
              if (e3) throw e3;
              // OpenSSH's sftp-server answers reads of a regular file in full; a probe needs no more.
              got += n;
              free.push(slot);
              if (got >= st.size) client.end();
              else issue();
            });
          }
        };
        issue();
      });
    });
  });
});
client.connect({
  host,
  port: Number(port),
  username: user,
  privateKey: fs.readFileSync(keyFile!),
  algorithms: { cipher: [cipher as never] },
  hostVerifier: (key: Buffer) => `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}` === fingerprint,
});
