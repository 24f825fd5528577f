// The transfer engine's guarantees, against a fake server that answers with short reads,
// out of order, and fails on demand: the file is a correct prefix at every moment, one
// write per chunk in file order, bounded buffers, O_DIRECT refused -> page cache.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp, { type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';

import { RemoteChangedError } from '../../src/errors.js';
import { ChunkPool } from '../../src/transfer/buffers.js';
import { WRITE_BEHIND } from '../../src/transfer/budget.js';
import { fetchRange, type RemoteReader } from '../../src/transfer/engine.js';
import { HashingWriter } from '../../src/transfer/sink.js';
import { HASH_SLICE } from '../../src/transfer/sliced-hash.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipi-engine-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
let seq = 0;

const CHUNK = 64 * 1024;

function source(size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + (i >> 8)) & 0xff;
  return b;
}

/** Serves `data`; reads return at most `maxShort` bytes sometimes, answer in random order, and can fail at a byte. */
function fakeServer(data: Buffer, opts: { maxRead?: number; shortEvery?: number; failAt?: number; failLate?: boolean } = {}): RemoteReader & { reads: number } {
  let n = 0;
  const server = {
    maxReadLen: opts.maxRead ?? 16 * 1024,
    reads: 0,
    read(_h: Buffer, buf: Buffer, off: number, len: number, position: number): Promise<number> {
      server.reads++;
      const k = ++n;
      return new Promise((resolve, reject) => {
        setTimeout(() => {
          if (opts.failAt !== undefined && position <= opts.failAt && opts.failAt < position + len) return reject(new Error(`injected failure at ${opts.failAt}`));
          let take = Math.min(len, data.length - position);
          if (opts.shortEvery && k % opts.shortEvery === 0) take = Math.max(1, Math.floor(take / 3));
          if (take <= 0) return resolve(0);
          data.copy(buf, off, position, position + take);
          resolve(take);
        }, opts.failLate && opts.failAt !== undefined && position <= opts.failAt && opts.failAt < position + len ? 50 : k % 3); // answers overtake each other
      });
    },
  };
  return server;
}

interface WriteLog {
  position: number;
  length: number;
}

/** A FileHandle that records every write before doing it. */
function recording(fh: FileHandle, log: WriteLog[]): FileHandle {
  return new Proxy(fh, {
    get(target, prop, receiver) {
      if (prop === 'write') {
        return (buf: Buffer, off: number, len: number, pos: number) => {
          log.push({ position: pos, length: len });
          return target.write(buf, off, len, pos);
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

async function run(data: Buffer, opts: { from?: number; reader?: RemoteReader; direct?: 'einval' | null; chunksInFlight?: number } = {}) {
  const file = path.join(dir, `f${++seq}`);
  const from = opts.from ?? 0;
  fs.writeFileSync(file, data.subarray(0, from));
  const raw = await fsp.open(file, 'r+');
  const writes: WriteLog[] = [];
  const local = recording(raw, writes);
  let refused = '';
  const directWrites: WriteLog[] = [];
  const direct = opts.direct === 'einval'
    ? ({ write: async (_b: Buffer, _o: number, len: number, pos: number) => {
        directWrites.push({ position: pos, length: len });
        throw Object.assign(new Error('EINVAL'), { code: 'EINVAL' });
      } } as unknown as FileHandle)
    : null;
  const pool = new ChunkPool(CHUNK, (opts.chunksInFlight ?? 4) + WRITE_BEHIND);
  const sink = new HashingWriter({ local, direct, aligned: true, onDirectRefused: (c) => (refused = c) });
  await sink.hashExisting(from);
  const progress: number[] = [];
  let error: unknown = null;
  try {
    await fetchRange({
      name: 'IPI_test.dat',
      reader: opts.reader ?? fakeServer(data, { shortEvery: 5 }),
      handle: Buffer.alloc(4),
      sink,
      from,
      size: data.length,
      chunkSize: CHUNK,
      chunksInFlight: opts.chunksInFlight ?? 4,
      readSize: 20_000,
      pool,
      dataTimeoutMs: 10_000,
      onStall: () => {},
      onChunk: (end) => progress.push(end),
    });
  } catch (err) {
    error = err;
  }
  const sha = error ? '' : (await sink.digests()).sha256;
  await raw.close();
  return { file, content: fs.readFileSync(file), writes, directWrites, progress, sha, error, refused };
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('files of awkward sizes arrive whole despite short and reordered reads, one write per chunk in order', async () => {
  for (const size of [1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 12_345]) {
    const data = source(size);
    const r = await run(data);
    assert.equal(r.error, null, `size ${size}`);
    assert.ok(r.content.equals(data), `content, size ${size}`);
    assert.equal(r.sha, sha256(data));
    // One write per chunk, contiguous, in file order.
    assert.deepEqual(r.writes.map((w) => w.position), Array.from({ length: Math.ceil(size / CHUNK) }, (_, i) => i * CHUNK));
    assert.ok(r.writes.every((w) => w.length === Math.min(CHUNK, size - w.position)));
    assert.deepEqual(r.progress, r.writes.map((w) => w.position + w.length));
  }
});

test('a resume from an odd offset realigns the chunks after one short chunk, and hashes the whole file', async () => {
  const data = source(4 * CHUNK + 100);
  const from = CHUNK + 777;
  const r = await run(data, { from });
  assert.equal(r.error, null);
  assert.ok(r.content.equals(data));
  assert.equal(r.sha, sha256(data));
  assert.deepEqual(r.writes.map((w) => w.position), [from, 2 * CHUNK, 3 * CHUNK, 4 * CHUNK]);
});

test('a failed read leaves a correct prefix ending on a chunk boundary before the failure', async () => {
  const data = source(8 * CHUNK);
  const failAt = 5 * CHUNK + 10;
  const r = await run(data, { reader: fakeServer(data, { failAt }) });
  assert.match(String(r.error), /injected failure/);
  assert.ok(r.content.length <= 5 * CHUNK && r.content.length % CHUNK === 0, `length ${r.content.length}`);
  assert.ok(r.content.equals(data.subarray(0, r.content.length)), 'the partial is a prefix of the remote file');
});

test('after a failed read, the data that arrived contiguously before it is written too (the retry resumes there)', async () => {
  const data = source(8 * CHUNK);
  const span = 16 * 1024; // CHUNK in four reads at the fake server's 16 KiB limit
  const failAt = 5 * CHUNK + 2 * span + 10;
  const r = await run(data, { reader: fakeServer(data, { failAt, failLate: true }) });
  assert.match(String(r.error), /injected failure/);
  // Chunk 5's first two reads arrived before the third failed; chunk 6 arrived too but is
  // not contiguous with them, so it is not written.
  assert.equal(r.content.length, 5 * CHUNK + 2 * span);
  assert.ok(r.content.equals(data.subarray(0, r.content.length)), 'the partial is a prefix of the remote file');
  assert.equal(r.progress.at(-1), r.content.length, 'progress reports the salvaged bytes');
});

test('a server that ends the file early is an error, not a short file', async () => {
  const data = source(3 * CHUNK);
  const shorter = data.subarray(0, 2 * CHUNK + 5);
  const r = await run(data, { reader: fakeServer(shorter) });
  assert.ok(r.error instanceof RemoteChangedError, String(r.error));
  assert.match(String(r.error), /IPI_test\.dat ended on the server at byte \d+, before its listed size/);
  assert.ok(r.content.equals(data.subarray(0, r.content.length)));
});

test('a filesystem that refuses O_DIRECT gets the same bytes through the page cache', async () => {
  const data = source(3 * CHUNK + 10);
  const r = await run(data, { direct: 'einval' });
  assert.equal(r.error, null);
  assert.equal(r.refused, 'EINVAL');
  assert.equal(r.directWrites.length, 1, 'O_DIRECT is tried once, then given up');
  assert.ok(r.content.equals(data));
});

test('buffers stay within CHUNKS_IN_FLIGHT + WRITE_BEHIND whatever the file size', async () => {
  const data = source(40 * CHUNK);
  const pool = new ChunkPool(CHUNK, 2 + WRITE_BEHIND);
  const taken = new Set<Buffer>();
  let extra = 0;
  const take = pool.take.bind(pool);
  pool.take = () => {
    const b = take();
    if (taken.size >= pool.capacity && !taken.has(b)) extra++;
    taken.add(b);
    return b;
  };
  const file = path.join(dir, `f${++seq}`);
  const fh = await fsp.open(file, 'w+');
  const sink = new HashingWriter({ local: fh, direct: null, aligned: false, onDirectRefused: () => {} });
  await fetchRange({
    name: 'IPI_test.dat', reader: fakeServer(data), handle: Buffer.alloc(4), sink, from: 0, size: data.length, chunkSize: CHUNK,
    chunksInFlight: 2, readSize: 20_000, pool, dataTimeoutMs: 10_000, onStall: () => {}, onChunk: () => {},
  });
  await fh.close();
  assert.equal(extra, 0, 'no buffer beyond the pool was needed');
  assert.ok(fs.readFileSync(file).equals(data));
});

test('the hash is taken in slices, in put order, and done with a buffer before put resolves', async () => {
  const file = path.join(dir, `f${++seq}`);
  const fh = await fsp.open(file, 'w+');
  const sink = new HashingWriter({ local: fh, direct: null, aligned: false, onDirectRefused: () => {} }, ['md5']);
  const size = 3 * HASH_SLICE + 123;
  const data = source(2 * size);
  const first = Buffer.from(data.subarray(0, size));
  const second = Buffer.from(data.subarray(size));
  // Both put at once: the second's slices must not go into the hash before the first's.
  const puts = [sink.put(first, 0), sink.put(second, size)];
  await Promise.all(puts);
  // The caller may now reuse the buffers: nothing of this may reach the hash or the file.
  first.fill(0);
  second.fill(0);
  const digests = await sink.digests();
  await fh.close();
  assert.equal(digests.sha256, createHash('sha256').update(data).digest('hex'));
  assert.equal(digests.md5, createHash('md5').update(data).digest('hex'));
  assert.ok(fs.readFileSync(file).equals(data));
});
