/**
 * Shared handle type for the e2e SFTP test servers (real OpenSSH or the
 * embedded ssh2 server). Tests should depend only on this shape so that the
 * same test runs against either backend.
 */
export interface SftpServerHandle {
  kind: 'openssh' | 'embedded';
  /** Always '127.0.0.1': the test machine is loopback-only. */
  host: string;
  port: number;
  user: string;
  /** Absolute local directory the test writes "remote" files into. */
  root: string;
  /** What the client must use as SFTP_DIR to see `root` (absolute SFTP path). */
  remoteDir: string;
  /** Authorized private key without passphrase (OpenSSH format). */
  clientKeyPath: string;
  /** Authorized private key protected by `passphrase` (if created). */
  passphraseKeyPath?: string;
  passphrase?: string;
  /** Accepted password (embedded server only; OpenSSH has passwords disabled). */
  password?: string;
  /** 'SHA256:<base64 without padding>', same text as `ssh-keygen -lf` prints. */
  hostKeyFingerprint: string;
  /** '[127.0.0.1]:PORT ssh-ed25519 AAAA...' ready for a known_hosts file. */
  knownHostsLine: string;
  /** Temp dir holding keys, config and logs; removed by stop(). */
  tempDir: string;
  /**
   * Total bytes READ by clients so far (cumulative across restarts),
   * optionally only for remote paths ending with `file` (path-segment aware).
   */
  bytesServed(file?: string): Promise<number>;
  /** Kill the server and remove tempDir. Idempotent. */
  stop(): Promise<void>;
  /**
   * Drop every connection, stop listening, then listen again on the SAME port
   * with the same keys. Meant for "server restarted while client waits" tests.
   * `downMs` keeps the port closed (connections refused) for that long first.
   */
  restart(downMs?: number): Promise<void>;
}
