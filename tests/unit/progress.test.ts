import { test, describe, mock, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createProgress, dueForLine, noProgress, rate } from '../../src/progress.js';
import { fakeLog } from './helpers/fake-log.js';


/** A controllable clock for Date.now. */
function clock(start: number) {
  let now = start;
  mock.method(Date, 'now', () => now);
  return { set: (t: number) => { now = t; }, advance: (ms: number) => { now += ms; } };
}

afterEach(() => {
  mock.restoreAll();
});

describe('dueForLine (pure)', () => {
  test('due after 10 s, whatever the progress', () => {
    assert.equal(dueForLine({ atMs: 0, fraction: 0 }, 10_000, 0), true);
    assert.equal(dueForLine({ atMs: 5_000, fraction: 0.5 }, 15_001, 0.5), true);
  });

  test('not due before 10 s with less than 10 % more', () => {
    assert.equal(dueForLine({ atMs: 0, fraction: 0 }, 9_999, 0.099), false);
    assert.equal(dueForLine({ atMs: 1_000, fraction: 0.5 }, 1_000, 0.55), false);
  });

  test('due at 10 % more, however soon', () => {
    assert.equal(dueForLine({ atMs: 0, fraction: 0 }, 1, 0.1), true);
    assert.equal(dueForLine({ atMs: 0, fraction: 0.5 }, 1, 0.65), true);
    assert.equal(dueForLine({ atMs: 0, fraction: 0 }, 0, 1), true);
  });

  test('exactly 10 % more is due from any starting point',
    () => {
      assert.equal(dueForLine({ atMs: 0, fraction: 0.2 }, 1, 0.3), true);
      assert.equal(dueForLine({ atMs: 0, fraction: 0.5 }, 1, 0.6), true);
    });
});

describe('rate', () => {
  test('MB/s (decimal) with one decimal', () => {
    assert.equal(rate(10_000_000, 1000), '10.0 MB/s');
    assert.equal(rate(1_500_000, 2000), '0.8 MB/s');
    assert.equal(rate(0, 1000), '0.0 MB/s');
  });

  test('no time elapsed: a dash', () => {
    assert.equal(rate(100, 0), '-');
    assert.equal(rate(100, -5), '-');
  });
});

describe('createProgress without a terminal (cron)', () => {
  test('logs only every 10 % or 10 s, never at the end', () => {
    const t = clock(1_000_000);
    const log = fakeLog();
    const p = createProgress(log, null);
    p.start('IPI_1.csv', 1000, 0);

    t.advance(1000);
    p.update(50); // 5 %, 1 s: not due
    assert.equal(log.lines.length, 0);

    p.update(100); // 10 %: due
    assert.equal(log.lines.length, 1);
    assert.deepEqual(log.lines[0], ['info', 'IPI_1.csv: 100 B of 1000 B (10%), 0.0 MB/s, ETA 0:09']);

    t.advance(1000);
    p.update(150); // +5 %, +1 s since the last line: not due
    assert.equal(log.lines.length, 1);

    t.advance(9000);
    p.update(160); // +6 %, but 10 s since the last line: due
    assert.equal(log.lines.length, 2);
    assert.match(log.lines[1]![1], /^IPI_1\.csv: 160 B of 1000 B \(16%\), /);

    t.advance(100);
    p.update(900); // +74 %: due
    assert.equal(log.lines.length, 3);

    t.advance(20_000);
    p.update(1000); // complete: the caller logs the result, not the progress
    assert.equal(log.lines.length, 3);
    p.end();
    assert.equal(log.lines.length, 3);
    assert.ok(log.lines.every(([level]) => level === 'info'));
  });

  test('a resumed download counts from where it resumed', () => {
    const t = clock(5_000_000);
    const log = fakeLog();
    const p = createProgress(log, null);
    const MiB = 1024 * 1024;
    p.start('IPI_2.csv', 100 * MiB, 50 * MiB);
    t.advance(1000);
    p.update(55 * MiB); // 5 % more: not due, even though 55 % done
    assert.equal(log.lines.length, 0);
    t.advance(1000);
    p.update(61 * MiB); // 11 % more: due
    assert.equal(log.lines.length, 1);
    // 11 MiB moved in 2 s = 5.8 MB/s; 39 MiB left at that speed is 7 s.
    assert.equal(log.lines[0]![1], 'IPI_2.csv: 61.0 MiB of 100.0 MiB (61%), 5.8 MB/s, ETA 0:07');
  });

  test('a new start resets the reference point', () => {
    const t = clock(0);
    const log = fakeLog();
    const p = createProgress(log, null);
    p.start('a', 100, 0);
    t.advance(10);
    p.update(50);
    assert.equal(log.lines.length, 1);
    p.start('b', 100, 0);
    t.advance(10);
    p.update(5);
    assert.equal(log.lines.length, 1, 'b has only moved 5 %');
    p.update(20);
    assert.equal(log.lines.length, 2);
    assert.match(log.lines[1]![1], /^b: /);
  });

  test('an empty file logs nothing', () => {
    clock(0);
    const log = fakeLog();
    const p = createProgress(log, null);
    p.start('empty', 0, 0);
    p.update(0);
    p.end();
    assert.deepEqual(log.lines, []);
  });
});

describe('createProgress on a terminal', () => {
  test('draws a bar (throttled), and clears it at the end', () => {
    const t = clock(1_000_000);
    const log = fakeLog();
    const writes: string[] = [];
    const tty = { write: (s: string) => { writes.push(s); return true; } } as unknown as NodeJS.WriteStream;
    const p = createProgress(log, tty);
    p.start('IPI_3.csv', 1000, 0);
    t.advance(200);
    p.update(500);
    assert.equal(writes.length, 1);
    assert.match(writes[0]!, /^\r\x1b\[KIPI_3\.csv \[#{12}-{12}\] 500 B of 1000 B \(50%\)/);
    t.advance(50);
    p.update(600); // within 100 ms of the last draw: skipped
    assert.equal(writes.length, 1);
    p.update(1000); // the end is always drawn
    assert.equal(writes.length, 2);
    assert.match(writes[1]!, /\[#{24}\]/);
    p.end();
    assert.equal(writes.at(-1), '\r\x1b[K');
  });

  test('the console gets the bar; LOG_FILE still gets a line every 10 %, not the console', () => {
    const t = clock(2_000_000);
    const log = fakeLog();
    const tty = { write: () => true } as unknown as NodeJS.WriteStream;
    const p = createProgress(log, tty);
    p.start('IPI_4.csv', 1000, 0);
    t.advance(200);
    p.update(50); // under 10 % and under 10 s: no line
    p.update(150);
    t.advance(200);
    p.update(200); // only 5 % more than the last line
    p.update(1000); // the delivery line says the end, not progress
    assert.deepEqual(log.lines, [['record', 'IPI_4.csv: 150 B of 1000 B (15%), 0.0 MB/s, ETA 0:01']]);
  });

  test('end without a drawn bar writes nothing', () => {
    clock(0);
    const writes: string[] = [];
    const tty = { write: (s: string) => { writes.push(s); return true; } } as unknown as NodeJS.WriteStream;
    const p = createProgress(fakeLog(), tty);
    p.start('x', 10, 0);
    p.end();
    assert.deepEqual(writes, []);
  });
});

describe('noProgress', () => {
  test('accepts every call and does nothing', () => {
    noProgress.start('x', 1, 0);
    noProgress.update(1);
    noProgress.end();
    assert.equal(typeof noProgress.update, 'function');
  });
});
