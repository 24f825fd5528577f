/**
 * Shared handle type for the e2e SFTP test servers (real OpenSSH or the embedded ssh2
 * server). Tests depend only on this shape, so the same test runs against either backend.
 * It is the embedded server's own handle, widened: sshd has no password and says 'openssh'.
 */
import type { EmbeddedServer } from '../../../src/sftp-server/embedded.js';

export type SftpServerHandle = Omit<EmbeddedServer, 'kind' | 'password'> & {
  kind: 'openssh' | 'embedded';
  /** Accepted password (embedded server only; OpenSSH has passwords disabled). */
  password?: string;
};
