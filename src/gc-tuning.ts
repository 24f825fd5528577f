// V8's garbage collector tuned for the machines this runs on; applied by src/bin/gc-first.ts
// before anything else is loaded.
//
// A transfer makes ssh2 allocate a short-lived buffer per SSH packet and per SFTP reply,
// some 2 GiB of external memory per GiB moved, and V8 answers with a full marking cycle
// every ~16 MiB or so. By default each cycle is incremental, with its marking running
// concurrently on V8's helper threads. With two cores or fewer those threads take the CPU
// from the one thread doing the transfer (and from a local sshd), and the garbage waits
// for the cycle to end. Marking in one short pause instead (the heap is ~10 MB; the
// buffers are outside it) measured ~25 % faster for a 1 GiB download and ~15 % for an
// upload, with ~20 MB less peak memory (BENCHMARKS.md). With more cores V8's helpers
// have room, so its defaults stay.
//
// The flag is set before any marking cycle has started, the only time changing it is the
// same as passing it on node's command line (which npm's bin shims cannot do portably, and
// NODE_OPTIONS refuses). A marking flag given to node explicitly wins.
import os from 'node:os';
import v8 from 'node:v8';

export const ATOMIC_MARKING_MAX_CPUS = 2;

/** Pure: whether to mark in one pause, for this many CPUs and node's own flags. */
export function wantAtomicMarking(cpus: number, execArgv: readonly string[]): boolean {
  return cpus <= ATOMIC_MARKING_MAX_CPUS && !execArgv.some((a) => /(incremental|concurrent)[-_]marking/.test(a));
}

let applied = false;

export function applyGcTuning(): void {
  if (applied || !wantAtomicMarking(os.availableParallelism(), process.execArgv)) return;
  v8.setFlagsFromString('--no-incremental-marking');
  applied = true;
}

/** For --version: what was changed, if anything. */
export function gcTuningNote(): string {
  return applied ? `V8 incremental marking off (${os.availableParallelism()} CPUs)` : 'V8 GC defaults';
}
