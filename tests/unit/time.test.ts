import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { atMostEvery } from '../../src/util/time.js';

describe('atMostEvery', () => {
  test('open on the first call, then only once the interval has passed since it last opened', () => {
    let now = 1_000;
    const due = atMostEvery(100, () => now);
    assert.equal(due(), true, 'the first call');
    now += 40;
    assert.equal(due(), false);
    now += 59;
    assert.equal(due(), false, '99 ms after');
    now += 1;
    assert.equal(due(), true, '100 ms after');
    now += 99;
    assert.equal(due(), false, 'the interval counts from the last time it opened, not from the last call');
    now += 1_000;
    assert.equal(due(), true);
  });

  test('a clock at zero still opens the first time', () => {
    const due = atMostEvery(100, () => 0);
    assert.equal(due(), true);
    assert.equal(due(), false);
  });
});
