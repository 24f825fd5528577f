import ssh2 from 'ssh2';
import fs from 'node:fs';
import { startSshd } from '/work/main/dist/tests/e2e/helpers/sshd.js';
import { startFaultProxy } from '/work/main/dist/tests/e2e/helpers/fault-proxy.js';
const s = await startSshd();
fs.writeFileSync(s.root + '/big.bin', Buffer.alloc(2e6, 1));
const p = await startFaultProxy(s.port);
const c = new ssh2.Client();
c.on('error', e => console.log('client error', e.message));
c.on('close', () => console.log('client close'));
c.on('end', () => console.log('client end'));
c.on('ready', () => c.sftp((err, sftp) => {
  console.log('sftp ready', p.bytesToClient);
  p.cutAfter(100000);
  sftp.open(s.remoteDir + '/big.bin', 'r', (err, h) => {
    console.log('open', err?.message);
    const loop = (pos) => sftp.read(h, Buffer.alloc(32768), 0, 32768, pos, (err, n) => { if (err) { console.log('read err', err.message); return; } loop(pos + n); });
    loop(0);
  });
}));
c.connect({ host: '127.0.0.1', port: p.port, username: s.user, privateKey: fs.readFileSync(s.clientKeyPath) });
const iv = setInterval(() => console.log('tick', p.bytesToClient, p.activeConnections, c._sock?.destroyed, c._sock?.readyState), 300);
setTimeout(async () => { clearInterval(iv); await p.stop(); await s.stop(); }, 2000);
