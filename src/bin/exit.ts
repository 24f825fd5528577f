// How both programs end: with their exit code, after what they printed has left.

/**
 * process.exit() does not wait for stdout: a pipe that is not drained yet (a --json summary
 * of a thousand files is a few hundred KB) would be cut off. An empty write's callback runs
 * once everything before it has been handed to the OS.
 */
export function exitAfterFlush(code: number): void {
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}
