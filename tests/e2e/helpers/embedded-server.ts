/**
 * The embedded ssh2 SFTP server lives in src/ (the demo ships it); the tests use it as is,
 * with its fault options, where OpenSSH is missing or a hostile server is needed.
 */
export {
  generateValidEd25519, startEmbeddedServer, type EmbeddedServerOptions, type ExtraEntry,
} from '../../../src/sftp-server/embedded.js';
