// V8's garbage collector tuned for the machines this runs on; applied by src/bin/gc-first.ts
// before anything else is loaded.
//
// A transfer makes ssh2 allocate a short-lived buffer per SSH packet and per SFTP reply,
// some 2 GiB of external memory per GiB moved, and V8 answers with frequent full marking
// cycles. By default their marking runs concurrently on V8's helper threads. With two cores
// or fewer those threads take the CPU from the one thread doing the transfer (and from a
// local sshd): marking on the main thread, still incremental, measured ~25 % faster for a
// 1 GiB download and ~15 % for an upload, with the same peak memory (BENCHMARKS.md). With
// more cores the helpers have room, so V8's default stays.
//
// The flag is set before any marking cycle has started, the only time changing it is the
// same as passing it on node's command line (which npm's bin shims cannot do portably, and
// NODE_OPTIONS refuses). An explicit --concurrent-marking / --no-concurrent-marking wins.
import os from 'node:os';
import v8 from 'node:v8';

export const SERIAL_MARKING_MAX_CPUS = 2;

/** Pure: whether to turn concurrent marking off, for this many CPUs and node's own flags. */
export function wantSerialMarking(cpus: number, execArgv: readonly string[]): boolean {
  return cpus <= SERIAL_MARKING_MAX_CPUS && !execArgv.some((a) => a.includes('concurrent-marking'));
}

let applied = false;

export function applyGcTuning(): void {
  if (applied || !wantSerialMarking(os.availableParallelism(), process.execArgv)) return;
  v8.setFlagsFromString('--no-concurrent-marking');
  applied = true;
}

/** For --version: what was changed, if anything. */
export function gcTuningNote(): string {
  return applied ? `V8 concurrent marking off (${os.availableParallelism()} CPUs)` : 'V8 GC defaults';
}
