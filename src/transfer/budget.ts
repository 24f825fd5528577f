// How many CHUNK_SIZE buffers a run holds at once, decided here only: the pull's pool is sized
// from it, and the config refuses, at load, settings whose buffers could not be set aside
// (rather than a run failing later with Node's own "size out of range").
import { DIRECT_ALIGN } from '../util/direct.js';

/** Chunks handed to the sink and not yet written: the one being written and the next, so the disk does not wait for this thread. */
export const WRITE_BEHIND = 2;

/** Buffers an O_DIRECT publish copy borrows from the chunk pool (one being read, one being written). */
export const PUBLISH_BUFFERS = 2;

/**
 * The most the chunk buffers of a run may take. A pull's buffers are one block (buffers.ts):
 * one WebAssembly.Memory, or one Buffer, holds at most 4 GiB. A push's are separate, but
 * more than this for chunks alone is a setting mistake, not a plan.
 */
export const MAX_CHUNK_MEMORY = 4 * 1024 ** 3;

export interface BufferSettings {
  chunkSize: number;
  chunksInFlight: number;
  filesInFlight: number;
}

/** One download of a large file: CHUNKS_IN_FLIGHT being fetched, WRITE_BEHIND being written. */
export function downloadBuffers(chunksInFlight: number): number {
  return chunksInFlight + WRITE_BEHIND;
}

/** A pull connection's pool: one large file, or FILES_IN_FLIGHT small files (one buffer each), plus what a publish borrows. */
export function pullBuffers(s: Pick<BufferSettings, 'chunksInFlight' | 'filesInFlight'>): number {
  return Math.max(downloadBuffers(s.chunksInFlight), s.filesInFlight) + PUBLISH_BUFFERS;
}

/** ipi-push reads each chunk in flight into a buffer of its own: a large file's CHUNKS_IN_FLIGHT, or one per small file in flight. */
export function pushBuffers(s: Pick<BufferSettings, 'chunksInFlight' | 'filesInFlight'>): number {
  return Math.max(s.chunksInFlight, s.filesInFlight);
}

/** Bytes a buffer of `size` takes in the pool: each starts on a DIRECT_ALIGN boundary. */
export function slotSize(size: number): number {
  return Math.ceil(size / DIRECT_ALIGN) * DIRECT_ALIGN;
}

/** Why these settings' buffers cannot be set aside, or null when they can. */
export function bufferBudgetProblem(tool: 'pull' | 'push', s: BufferSettings): { count: number; bytes: number } | null {
  const count = tool === 'pull' ? pullBuffers(s) : pushBuffers(s);
  const bytes = slotSize(s.chunkSize) * count;
  return bytes > MAX_CHUNK_MEMORY ? { count, bytes } : null;
}
