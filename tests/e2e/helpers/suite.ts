/**
 * The frame of an ipi-pull e2e test file: one test server started before its tests and
 * stopped after them, a fresh remote folder and workspace per test, and whatever else a
 * test starts (proxies, extra servers, child processes) cleaned up at the end.
 */
import { after, before } from 'node:test';

import { makeWorkspace, type AuthKind, type Workspace } from './cli.js';
import { remoteFolderWith, startTestServer, type SftpServerHandle, type TestServerOptions } from './server.js';

export interface SetupOptions {
  auth?: AuthKind;
  /** Another server to put the folder on (default: the suite's). */
  on?: SftpServerHandle;
}

export interface PullSuite {
  /** The suite's server (started by the time a test runs). */
  readonly server: SftpServerHandle;
  /** A fresh remote folder with these files (an hour old), and a workspace pointed at it with `extra` settings. */
  setup(files: Record<string, Buffer | string>, extra?: Record<string, string>, opts?: SetupOptions): { ws: Workspace; folder: string };
  /** A workspace made by the test itself, removed with the others. */
  track(ws: Workspace): Workspace;
  /** Run at the end of the file, in the order registered, before the server stops. */
  onCleanup(fn: () => unknown): void;
}

/** `label` names the file in the one line saying which server it runs against; `prefix` its folders. */
export function pullSuite(label: string, prefix: string, serverOpts: TestServerOptions = {}): PullSuite {
  let server: SftpServerHandle | undefined;
  const cleanups: Array<() => unknown> = [];
  let seq = 0;

  before(async () => {
    server = await startTestServer(serverOpts);
    process.stderr.write(`e2e ${label}: using ${server.kind} server on port ${server.port}\n`);
  });
  after(async () => {
    for (const fn of cleanups) await fn();
    await server?.stop();
  });

  const suite: PullSuite = {
    get server() {
      if (!server) throw new Error('the test server is started in before(): use it inside a test');
      return server;
    },
    setup(files, extra = {}, opts = {}) {
      const on = opts.on ?? suite.server;
      const folder = remoteFolderWith(on, `${prefix}${++seq}`, files);
      const ws = suite.track(makeWorkspace(on, { auth: opts.auth, extra: { SFTP_DIR: `${on.remoteDir}/${folder}`, ...extra } }));
      return { ws, folder };
    },
    track(ws) {
      cleanups.push(() => ws.cleanup());
      return ws;
    },
    onCleanup(fn) {
      cleanups.push(fn);
    },
  };
  return suite;
}
