// The connection settings of the validated config, as a session takes them: one mapping for
// every command that connects (pull, push, status, mark).
import type { Config } from '../config/load.js';
import { ConfigError } from '../errors.js';
import type { Logger } from '../log.js';
import type { SessionOptions } from './session.js';

export function sessionOptions(config: Config, acceptNewHostKey: boolean, log: Logger): SessionOptions {
  // Only a command that may run without logging in got this far with an unusable key (status):
  // connecting is where it finds out, with the message the loader wrote.
  if (config.keyProblem !== undefined) throw new ConfigError(config.keyProblem);
  return {
    host: config.host,
    port: config.port,
    user: config.user,
    password: config.password,
    key: config.key,
    keyPassphrase: config.keyPassphrase,
    agent: config.agent,
    defaultIdentities: config.defaultIdentities,
    pinnedHostKeys: config.hostKey,
    knownHostsFile: config.knownHosts,
    acceptNewHostKey,
    connectTimeoutMs: config.connectTimeout,
    dataTimeoutMs: config.dataTimeout,
    keepaliveIntervalMs: config.keepaliveInterval,
    keepaliveCountMax: config.keepaliveCountMax,
    rekeyBytes: config.rekeyBytes,
    log,
  };
}
