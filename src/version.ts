// What --version and debug output say about this build: our version, whether ssh2's native
// crypto binding is in use (without it AES-GCM runs in JavaScript, several times slower), and
// the GC tuning in effect (gc-tuning.ts).
import { createRequire } from 'node:module';
import { gcTuningNote } from './gc-tuning.js';

const require = createRequire(import.meta.url);

export function packageVersion(): string {
  return (require('../../package.json') as { version: string }).version;
}

export function nativeCryptoAvailable(): boolean {
  try {
    return (require('ssh2/lib/protocol/crypto.js') as { bindingAvailable?: boolean }).bindingAvailable === true;
  } catch {
    return false;
  }
}

export function versionLine(program = 'ipi-pull'): string {
  const crypto = nativeCryptoAvailable() ? 'native crypto binding in use' : 'WARNING: ssh2 native crypto binding NOT built (slow); reinstall with build tools';
  return `${program} ${packageVersion()} (node ${process.versions.node}; ssh2 ${crypto}; ${gcTuningNote()})`;
}
