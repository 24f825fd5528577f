import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { FetchAhead, mayStartAhead } from '../../src/fetch-ahead.js';

const CHUNK = 2 * 1024 * 1024;
const SMALL = 10 * 1024;
const LARGE = CHUNK + 1;

describe('mayStartAhead', () => {
  const sizes = [SMALL, SMALL, SMALL, LARGE, SMALL, SMALL];

  test('the head always starts, whatever its size', () => {
    assert.equal(mayStartAhead(sizes, 0, 0, CHUNK, 1), true);
    assert.equal(mayStartAhead(sizes, 3, 3, CHUNK, 4), true);
  });

  test('small files start beside the head up to the limit', () => {
    assert.equal(mayStartAhead(sizes, 0, 1, CHUNK, 3), true);
    assert.equal(mayStartAhead(sizes, 0, 2, CHUNK, 3), true);
    assert.equal(mayStartAhead(sizes, 0, 3, CHUNK, 3), false, 'three at once is the limit');
    assert.equal(mayStartAhead(sizes, 0, 1, CHUNK, 1), false, 'a limit of 1 is one file at a time');
  });

  test('a file of more than one chunk waits until it is the head, and nothing starts beside it', () => {
    assert.equal(mayStartAhead(sizes, 1, 3, CHUNK, 8), false);
    assert.equal(mayStartAhead(sizes, 3, 4, CHUNK, 8), false);
    assert.equal(mayStartAhead(sizes, 4, 5, CHUNK, 8), true);
  });

  test('a file of exactly one chunk counts as small', () => {
    assert.equal(mayStartAhead([CHUNK, CHUNK], 0, 1, CHUNK, 2), true);
  });
});

/** A FetchAhead over `sizes` whose downloads finish only when the test says so. */
function harness(sizes: number[], limit: number) {
  const started: number[] = [];
  const finish = new Map<number, { resolve: (v: string) => void; reject: (e: Error) => void }>();
  let running = 0;
  let mostAtOnce = 0;
  const ahead = new FetchAhead<string>(
    sizes.length,
    (head, next) => mayStartAhead(sizes, head, next, CHUNK, limit),
    (i, asHead) => {
      started.push(i);
      running++;
      mostAtOnce = Math.max(mostAtOnce, running);
      return new Promise<string>((resolve, reject) => finish.set(i, { resolve, reject })).finally(() => running--).then((v) => `${v}${asHead ? ' (head)' : ''}`);
    },
  );
  return { ahead, started, finish, mostAtOnce: () => mostAtOnce };
}

describe('FetchAhead', () => {
  test('starts the head and the small files after it up to the limit, then one more as each is taken', async () => {
    const h = harness([SMALL, SMALL, SMALL, SMALL, SMALL], 3);
    const first = h.ahead.take(0);
    assert.deepEqual(h.started, [0, 1, 2]);
    h.finish.get(1)!.resolve('b');
    h.finish.get(0)!.resolve('a');
    assert.equal(await first, 'a (head)');
    assert.throws(() => h.ahead.take(0), /taken out of turn/, 'a result is handed out once; the window keeps no taken file');
    assert.equal(await h.ahead.take(1), 'b', 'started beside the head');
    assert.deepEqual(h.started, [0, 1, 2, 3], 'taking the second started the fourth');
    for (const i of [2, 3, 4]) {
      const got = h.ahead.take(i);
      h.finish.get(i)!.resolve(String(i));
      await got;
    }
    assert.deepEqual(h.started, [0, 1, 2, 3, 4], 'each file started once, in order');
    assert.equal(h.mostAtOnce(), 3);
  });

  test('fill starts what a widened window allows without waiting for a take, each file once', async () => {
    let allowed = 1;
    const started: number[] = [];
    const ahead = new FetchAhead<number>(5, (_head, next) => next < allowed, (i) => {
      started.push(i);
      return Promise.resolve(i);
    });
    const first = ahead.take(0);
    assert.deepEqual(started, [0]);
    allowed = 3;
    ahead.fill(0);
    assert.deepEqual(started, [0, 1, 2], 'the caller widened the window (a file was sent): two more start');
    ahead.fill(0);
    assert.deepEqual(started, [0, 1, 2], 'nothing starts twice');
    assert.equal(await first, 0);
    assert.equal(await ahead.take(1), 1);
    assert.equal(await ahead.take(2), 2);
    allowed = 5;
    assert.equal(await ahead.take(3), 3);
    assert.deepEqual(started, [0, 1, 2, 3, 4]);
  });

  test('a large file is started only as the head, alone; the small files after it wait for it to be taken', async () => {
    const h = harness([SMALL, LARGE, SMALL, SMALL], 4);
    const a = h.ahead.take(0);
    assert.deepEqual(h.started, [0]);
    h.finish.get(0)!.resolve('a');
    await a;
    const b = h.ahead.take(1);
    assert.deepEqual(h.started, [0, 1]);
    h.finish.get(1)!.resolve('b');
    assert.equal(await b, 'b (head)');
    h.ahead.take(2);
    assert.deepEqual(h.started, [0, 1, 2, 3]);
    h.finish.get(2)!.resolve('c');
    h.finish.get(3)!.resolve('d');
    await h.ahead.settled();
    assert.equal(h.mostAtOnce(), 2);
  });

  test('a later file failing first is seen at its turn, not as an unhandled rejection; settled waits for everything', async () => {
    const h = harness([SMALL, SMALL, SMALL], 3);
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const a = h.ahead.take(0);
      h.finish.get(1)!.reject(new Error('b failed'));
      await new Promise((r) => setImmediate(r));
      h.finish.get(0)!.resolve('a');
      assert.equal(await a, 'a (head)');
      await assert.rejects(h.ahead.take(1), /b failed/);
      let settled = false;
      const s = h.ahead.settled().then(() => (settled = true));
      await new Promise((r) => setImmediate(r));
      assert.equal(settled, false, 'the third is still running');
      h.finish.get(2)!.resolve('c');
      await s;
      assert.equal(settled, true);
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
