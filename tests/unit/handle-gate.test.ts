// The open-files limit learned from a server's refusals (src/sftp/handle-gate.ts), without a
// server; the e2e tests run ipi-pull and ipi-push against the embedded server with maxHandles.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HandleGate } from '../../src/sftp/handle-gate.js';

const turn = () => new Promise((r) => setImmediate(r));

/** `n` opens asked for and granted. */
async function granted(g: HandleGate, n: number): Promise<void> {
  for (let i = 0; i < n; i++) g.opened(await g.acquire());
}

describe('HandleGate', () => {
  test('no limit until a refusal: every open goes at once; other failures change nothing', async () => {
    const g = new HandleGate();
    await granted(g, 100);
    g.failed(await g.acquire());
    assert.equal(g.limit, Infinity);
  });

  test('opens sent together and refused past the server\'s limit: the limit is the number granted, news once', async () => {
    const g = new HandleGate();
    // Eight asked for at once; the server grants two and refuses the rest (answering in order).
    const t = await Promise.all(Array.from({ length: 8 }, () => g.acquire()));
    g.opened(t[0]!);
    g.opened(t[1]!);
    const verdicts = [];
    for (let i = 2; i < 8; i++) verdicts.push(await g.refused(t[i]!));
    assert.deepEqual(verdicts, ['lowered', 'full', 'full', 'full', 'full', 'full']);
    assert.equal(g.limit, 2);
    // The six try again: none goes until one of the two closes, then one at a time, in order.
    const order: number[] = [];
    for (let i = 0; i < 6; i++) void g.acquire().then(() => order.push(i));
    await turn();
    assert.deepEqual(order, []);
    g.closed();
    await turn();
    assert.deepEqual(order, [0]);
    g.closed();
    await turn();
    assert.deepEqual(order, [0, 1]);
  });

  test('a server answering out of order: a refusal waits for the opens sent before it, then counts them', async () => {
    const g = new HandleGate();
    const [a, b, c] = [await g.acquire(), await g.acquire(), await g.acquire()];
    // The third is refused before the first two are granted.
    const verdict = g.refused(c);
    await turn();
    g.opened(a);
    g.opened(b);
    assert.equal(await verdict, 'lowered');
    assert.equal(g.limit, 2);
  });

  test('a refusal with nothing else open is the file\'s own: the limit stays', async () => {
    const g = new HandleGate();
    assert.equal(await g.refused(await g.acquire()), 'alone');
    assert.equal(g.limit, Infinity);
    await granted(g, 50);
  });

  test('a file refused each time is tried with fewer others open each time, and ends refused alone', async () => {
    const g = new HandleGate();
    await granted(g, 2);
    const verdicts = [];
    for (;;) {
      const v = await g.refused(await g.acquire());
      verdicts.push(v);
      if (v === 'alone') break;
      g.closed(); // one of the others closes, making room for the next try
    }
    assert.deepEqual(verdicts, ['lowered', 'lowered', 'alone'], 'tried with two others open, with one, then alone');
    assert.equal(g.limit, 1);
  });

  test('a lost connection lets every waiter through (their requests then fail at once)', async () => {
    const g = new HandleGate();
    await granted(g, 1);
    await g.refused(await g.acquire());
    const waiters = [g.acquire(), g.acquire()];
    g.close();
    await Promise.all(waiters);
    await g.acquire();
  });
});
