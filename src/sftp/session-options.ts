// The connection settings of the validated config, as a session takes them: one mapping for
// every command that connects (pull, push, status, mark).
import type { Config } from '../config/load.js';
import type { Logger } from '../log.js';
import type { SessionOptions } from './session.js';

export function sessionOptions(config: Config, acceptNewHostKey: boolean, log: Logger): SessionOptions {
  return {
    host: config.host,
    port: config.port,
    user: config.user,
    password: config.password,
    keyFile: config.keyFile,
    keyPassphrase: config.keyPassphrase,
    agent: config.agent,
    defaultIdentities: config.defaultIdentities,
    pinnedHostKeys: config.hostKey,
    knownHostsFile: config.knownHosts,
    acceptNewHostKey,
    connectTimeoutMs: config.connectTimeout,
    keepaliveIntervalMs: config.keepaliveInterval,
    keepaliveCountMax: config.keepaliveCountMax,
    rekeyBytes: config.rekeyBytes,
    log,
  };
}
