// Synchronous clean-up when the process exits (temporary folders of an embedded server).

/**
 * Synchronous "kill on exit" registry. process.on('exit') handlers cannot be
 * async, so each server registers a sync killer; one shared listener avoids
 * MaxListenersExceeded warnings when a test file starts many servers.
 */
const exitKillers = new Set<() => void>();
let exitHookInstalled = false;

export function onProcessExit(kill: () => void): () => void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const k of exitKillers) {
        try {
          k();
        } catch {
          // best effort: the process is going away anyway
        }
      }
    });
  }
  exitKillers.add(kill);
  return () => exitKillers.delete(kill);
}
