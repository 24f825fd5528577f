import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_TIMER_MS, bounded, boundedList, formatValue, parseBounded, rangeText } from '../../src/config/bounds.js';
import { ValueError } from '../../src/config/parse.js';

describe('bounds', () => {
  test('the timer limit is below what Node timers hold (2^31-1 ms)', () => {
    assert.ok(MAX_TIMER_MS <= 2 ** 31 - 1);
    assert.equal(formatValue('duration', MAX_TIMER_MS), '24d');
  });

  test('values are written in the largest unit that keeps them whole', () => {
    assert.equal(formatValue('duration', 1000), '1s');
    assert.equal(formatValue('duration', 1500), '1500ms');
    assert.equal(formatValue('duration', 300_000), '5m');
    assert.equal(formatValue('duration', 0), '0');
    assert.equal(formatValue('size', 1024), '1KiB');
    assert.equal(formatValue('size', 256 * 1024 * 1024), '256MiB');
    assert.equal(formatValue('size', 1000), '1000');
    assert.equal(formatValue('integer', 65535), '65535');
  });

  test('ranges read as a person would write them', () => {
    assert.equal(rangeText('duration', { min: 1000, max: MAX_TIMER_MS }), '1s to 24d');
    assert.equal(rangeText('duration', { min: 1000, max: MAX_TIMER_MS, zero: true }), '0, or 1s to 24d');
    assert.equal(rangeText('duration', { min: 0, max: MAX_TIMER_MS, zero: true }), '0 to 24d');
    assert.equal(rangeText('size', { min: 1024 }), 'at least 1KiB');
    assert.equal(rangeText('size', { min: 1024 * 1024, zero: true }), '0, or at least 1MiB');
  });

  test('parseBounded takes the edges and refuses outside them, quoting the input and the range', () => {
    const b = { min: 1000, max: MAX_TIMER_MS };
    assert.equal(parseBounded('duration', b, '1'), 1000);
    assert.equal(parseBounded('duration', b, '24d'), MAX_TIMER_MS);
    for (const raw of ['0', '999ms', ' 25d ', '24.9d']) {
      assert.throws(() => parseBounded('duration', b, raw), (err: unknown) => err instanceof ValueError && err.message === `${raw.trim()} is out of range (1s to 24d)`);
    }
    assert.equal(parseBounded('duration', { ...b, zero: true }, '0'), 0);
    assert.throws(() => parseBounded('duration', b, 'soon'), /not a duration/);
    assert.throws(() => parseBounded('integer', { min: 1, max: 3 }, '4'), (err: unknown) => err instanceof ValueError && err.message === '4 is out of range (1 to 3)');
  });

  test('bounded and boundedList state the range in the help they return', () => {
    const one = bounded('size', { min: 1024 }, 'Rotate at this size.');
    assert.equal(one.help, 'Rotate at this size. Allowed: at least 1KiB.');
    assert.deepEqual(one.limits, { kind: 'size', bounds: { min: 1024 } });
    assert.equal(one.parse('1KiB'), 1024);
    const list = boundedList('duration', { min: 100, max: MAX_TIMER_MS }, 'Waits.');
    assert.equal(list.help, 'Waits. Allowed: each 100ms to 24d.');
    assert.deepEqual(list.parse('0.1,5'), [100, 5000]);
    assert.throws(() => list.parse('5,0'), /0 is out of range \(100ms to 24d\)/);
  });
});
