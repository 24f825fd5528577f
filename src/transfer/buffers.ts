// Chunk buffers for the engine, shared by every file of a connection: a run of a thousand
// small files must not allocate (and page-fault, and garbage-collect) a fresh CHUNK_SIZE
// buffer per file, and a large file must not hold more than budget.ts allows.
//
// The buffers are carved from one WebAssembly.Memory because its backing store is mapped
// page-aligned, which O_DIRECT writes need (Node has no aligned Buffer allocator). Where
// that is unavailable (e.g. node --jitless) they are ordinary Buffers, `aligned` is false,
// and chunks are written through the page cache. A misaligned buffer cannot cause harm
// either way: the kernel refuses the O_DIRECT write with EINVAL and the writer falls back.

import { slotSize } from './budget.js';

const WASM_PAGE = 64 * 1024;

/** `count` buffers of `size` bytes each starting on a DIRECT_ALIGN boundary, or unaligned ones (aligned: false). */
export function alignedBuffers(size: number, count: number): { buffers: Buffer[]; aligned: boolean } {
  const slot = slotSize(size);
  let block: Buffer;
  let aligned = true;
  try {
    // Pages are committed only when first written: an unused slot costs no memory.
    const memory = new WebAssembly.Memory({ initial: Math.ceil((slot * count) / WASM_PAGE) });
    block = Buffer.from(memory.buffer, 0, slot * count);
  } catch {
    block = Buffer.allocUnsafeSlow(slot * count);
    aligned = false;
  }
  const buffers = Array.from({ length: count }, (_, i) => block.subarray(i * slot, i * slot + size));
  return { buffers, aligned };
}

export class ChunkPool {
  private free: Buffer[] | null = null;
  private isAligned = false;

  constructor(readonly chunkSize: number, readonly capacity: number) {}

  /** True when every buffer handed out starts on a DIRECT_ALIGN boundary. */
  get aligned(): boolean {
    this.allocate();
    return this.isAligned;
  }

  /** A buffer of chunkSize bytes (contents undefined). */
  take(): Buffer {
    // More than capacity outstanding is a caller bug; stay correct rather than fail.
    return this.allocate().pop() ?? Buffer.allocUnsafeSlow(this.chunkSize);
  }

  give(buf: Buffer): void {
    if (this.free && buf.length === this.chunkSize && this.free.length < this.capacity) this.free.push(buf);
  }

  private allocate(): Buffer[] {
    if (!this.free) {
      const { buffers, aligned } = alignedBuffers(this.chunkSize, this.capacity);
      this.free = buffers.reverse();
      this.isAligned = aligned;
    }
    return this.free;
  }
}
