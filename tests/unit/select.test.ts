import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  MarkerPlacementError, dateKeyOf, orderCandidates, selectNext, type RemoteEntry, type SelectOptions,
} from '../../src/select.js';

const NOW = Date.UTC(2024, 5, 1);
const HOUR = 3_600_000;

function f(name: string, mtimeMs = NOW - 24 * HOUR, size = 100): RemoteEntry {
  return { name, size, mtimeMs, isFile: true };
}
function d(name: string): RemoteEntry {
  return { name, size: 0, mtimeMs: NOW - HOUR, isFile: false };
}
const ipi = (n: string) => n.startsWith('IPI');
const opts = (o: Partial<SelectOptions> = {}): SelectOptions => ({ matches: ipi, orderBy: 'date', minAgeMs: 0, nowMs: NOW, ...o });
const names = (es: readonly RemoteEntry[]) => es.map((e) => e.name);

describe('dateKeyOf', () => {
  test('the seed\'s 8-digit YYYYMMDD', () => {
    assert.equal(dateKeyOf('IPI_20240115.csv'), '20240115000000');
    assert.equal(dateKeyOf('20240115'), '20240115000000');
    assert.equal(dateKeyOf('IPI20240115data'), '20240115000000');
  });

  test('YYYY-MM-DD, YYYY_MM_DD and YYYY.MM.DD', () => {
    assert.equal(dateKeyOf('IPI_2024-01-15.csv'), '20240115000000');
    assert.equal(dateKeyOf('IPI_2024_01_15.csv'), '20240115000000');
    assert.equal(dateKeyOf('IPI_2024.01.15.csv'), '20240115000000');
  });

  test('mixed separators are not a date', () => {
    assert.equal(dateKeyOf('IPI_2024-01_15.csv'), null);
    assert.equal(dateKeyOf('IPI_202401-15.csv'), null);
  });

  test('a time right after the date: _hhmm, Thh:mm:ss, hhmmss, space and dashes', () => {
    assert.equal(dateKeyOf('IPI_20240115_1230.csv'), '20240115123000');
    assert.equal(dateKeyOf('IPI_2024-01-15T12:30:45.csv'), '20240115123045');
    assert.equal(dateKeyOf('IPI_2024-01-15T12:30.csv'), '20240115123000');
    assert.equal(dateKeyOf('IPI_20240115123045.csv'), '20240115123045');
    assert.equal(dateKeyOf('IPI_20240115_123045.csv'), '20240115123045');
    assert.equal(dateKeyOf('IPI_2024-01-15 12-30-45.csv'), '20240115123045');
    assert.equal(dateKeyOf('IPI_2024-01-15-0930.csv'), '20240115093000');
  });

  test('an impossible time is ignored but the date still counts', () => {
    assert.equal(dateKeyOf('IPI_20240115_2460.csv'), '20240115000000');
    assert.equal(dateKeyOf('IPI_20240115_1299.csv'), '20240115000000');
    assert.equal(dateKeyOf('IPI_2024-01-15T23:59:60.csv'), '20240115000000');
  });

  test('a later time sorts after an earlier one on the same day, and any time after the bare date', () => {
    const bare = dateKeyOf('IPI_20240115.csv')!;
    const morning = dateKeyOf('IPI_20240115_0900.csv')!;
    const noon = dateKeyOf('IPI_2024-01-15T12:00:00.csv')!;
    assert.ok(bare <= morning && morning < noon);
  });

  test('invalid calendar dates are rejected', () => {
    for (const n of ['IPI_20241332.csv', 'IPI_20240001.csv', 'IPI_20240100.csv', 'IPI_20240132.csv', 'IPI_20230229.csv', 'IPI_2024-02-30.csv', 'IPI_20240431.csv']) {
      assert.equal(dateKeyOf(n), null, n);
    }
  });

  test('leap days are accepted in leap years', () => {
    assert.equal(dateKeyOf('IPI_20240229.csv'), '20240229000000');
    assert.equal(dateKeyOf('IPI_20000229.csv'), '20000229000000');
    assert.equal(dateKeyOf('IPI_19000229.csv'), null);
  });

  test('8-digit numbers that are not dates are not taken for dates', () => {
    assert.equal(dateKeyOf('IPI_12345678.csv'), null);
    assert.equal(dateKeyOf('IPI_30240115.csv'), null, 'years outside 19xx/20xx');
    assert.equal(dateKeyOf('IPI_18991231.csv'), null);
  });

  test('digits glued to a longer number are not a date', () => {
    assert.equal(dateKeyOf('IPI_120240115.csv'), null);
    assert.equal(dateKeyOf('IPI_202401151.csv'), null);
    assert.equal(dateKeyOf('IPI_2024011512304599.csv'), null);
  });

  test('no digits, no date', () => {
    assert.equal(dateKeyOf('IPI_latest.csv'), null);
    assert.equal(dateKeyOf(''), null);
  });

  test('the first valid date wins', () => {
    assert.equal(dateKeyOf('IPI_20240101_20231231.csv'), '20240101000000');
    assert.equal(dateKeyOf('IPI_20241332_20240101.csv'), '20240101000000', 'an invalid date is skipped, the next one is used');
    assert.equal(dateKeyOf('IPI_12345678_2024-03-04.csv'), '20240304000000');
  });

  test('an invalid 8-digit id directly before a date does not hide the date',
    () => {
      assert.equal(dateKeyOf('IPI_20001234_2024-01-15.csv'), '20240115000000');
    });
});

describe('selectNext: date order', () => {
  test('no marker: everything, earliest first, by the date in the name not the name itself', () => {
    const entries = [f('IPI_A_20240103.csv'), f('IPI_C_20240101.csv'), f('IPI_B_2024-01-02.csv')];
    const s = selectNext(entries, null, opts());
    assert.deepEqual(names(s.queue), ['IPI_C_20240101.csv', 'IPI_B_2024-01-02.csv', 'IPI_A_20240103.csv']);
    assert.deepEqual(s.skipped, []);
    assert.equal(s.waiting, null);
  });

  test('two files of the same day are both delivered, in name order', () => {
    const entries = [f('IPI_20240102_b.csv'), f('IPI_20240102_a.csv'), f('IPI_20240101.csv')];
    const s = selectNext(entries, null, opts());
    assert.deepEqual(names(s.queue), ['IPI_20240101.csv', 'IPI_20240102_a.csv', 'IPI_20240102_b.csv']);
  });

  test('the second file of a day is still taken after the first was delivered', () => {
    const entries = [f('IPI_20240102_b.csv'), f('IPI_20240102_a.csv'), f('IPI_20240101.csv')];
    const s = selectNext(entries, 'IPI_20240102_a.csv', opts());
    assert.deepEqual(names(s.queue), ['IPI_20240102_b.csv']);
  });

  test('times order files of the same day', () => {
    const entries = [f('IPI_20240102_1800.csv'), f('IPI_20240102_0600.csv'), f('IPI_2024-01-02T12:00:00.csv')];
    const s = selectNext(entries, null, opts());
    assert.deepEqual(names(s.queue), ['IPI_20240102_0600.csv', 'IPI_2024-01-02T12:00:00.csv', 'IPI_20240102_1800.csv']);
  });

  test('a marker written by the seed: only files after it', () => {
    const entries = ['IPI_20240101.csv', 'IPI_20240102.csv', 'IPI_20240103.csv', 'IPI_20240104.csv'].map((n) => f(n));
    const s = selectNext(entries, 'IPI_20240102.csv', opts());
    assert.deepEqual(names(s.queue), ['IPI_20240103.csv', 'IPI_20240104.csv']);
  });

  test('marker at the newest file: nothing to do', () => {
    const entries = [f('IPI_20240101.csv'), f('IPI_20240102.csv')];
    const s = selectNext(entries, 'IPI_20240102.csv', opts());
    assert.deepEqual(s.queue, []);
    assert.equal(s.waiting, null);
  });

  test('the marker\'s file gone from the server is still placed by its date', () => {
    const entries = [f('IPI_20240101.csv'), f('IPI_20240103.csv'), f('IPI_20240105.csv')];
    const s = selectNext(entries, 'IPI_20240102.csv', opts());
    assert.deepEqual(names(s.queue), ['IPI_20240103.csv', 'IPI_20240105.csv']);
  });

  test('a marker newer than every file on the server gives an empty queue', () => {
    const s = selectNext([f('IPI_20240101.csv')], 'IPI_20250101.csv', opts());
    assert.deepEqual(s.queue, []);
  });

  test('the marker may be in another date format than the files', () => {
    const entries = [f('IPI_20240101.csv'), f('IPI_20240102.csv'), f('IPI_20240103.csv')];
    const s = selectNext(entries, 'IPI_2024-01-02.csv', opts());
    assert.deepEqual(names(s.queue), ['IPI_20240102.csv', 'IPI_20240103.csv'], 'same date, name IPI_20240102 sorts after IPI_2024-01-02');
  });

  test('a marker without a date cannot be placed in date order', () => {
    assert.throws(() => selectNext([f('IPI_20240101.csv')], 'IPI_latest.csv', opts()), (err: unknown) => {
      assert.ok(err instanceof MarkerPlacementError);
      assert.match(err.message, /"IPI_latest\.csv"/);
      assert.match(err.message, /no date/);
      assert.match(err.message, /ORDER_BY=name or mtime/);
      return true;
    });
  });

  test('the input list is not modified', () => {
    const entries = [f('IPI_20240103.csv'), f('IPI_20240101.csv')];
    const copy = structuredClone(entries);
    selectNext(entries, null, opts());
    assert.deepEqual(entries, copy);
  });
});

describe('selectNext: filtering and skipping', () => {
  test('non-matching names and directories are ignored silently', () => {
    const entries = [f('IPI_20240101.csv'), f('README.txt'), f('other_20240102.csv'), d('IPI_20240103'), d('archive')];
    const s = selectNext(entries, null, opts());
    assert.deepEqual(names(s.queue), ['IPI_20240101.csv']);
    assert.deepEqual(s.skipped, []);
  });

  test('undated matching names are skipped with a reason that says what to do', () => {
    const entries = [f('IPI_20240101.csv'), f('IPI_latest.csv')];
    const s = selectNext(entries, null, opts());
    assert.deepEqual(names(s.queue), ['IPI_20240101.csv']);
    assert.equal(s.skipped.length, 1);
    assert.equal(s.skipped[0]!.name, 'IPI_latest.csv');
    assert.match(s.skipped[0]!.reason, /no date/);
    assert.match(s.skipped[0]!.reason, /ORDER_BY=mtime or name/);
  });

  test('unsafe names are skipped with the reason, whatever the order', () => {
    const bad = ['IPI_20240102.csv.part', 'IPI_20240103\\x.csv', 'IPI_20240104\u0007.csv', 'IPI_20240105\n.csv', 'IPI_20240106_caf\uFFFD.csv'];
    for (const orderBy of ['date', 'mtime', 'name'] as const) {
      const s = selectNext([f('IPI_20240101.csv'), ...bad.map((n) => f(n))], null, opts({ orderBy }));
      assert.deepEqual(names(s.queue), ['IPI_20240101.csv'], orderBy);
      assert.deepEqual(s.skipped.map((x) => x.name), bad);
      for (const x of s.skipped) assert.match(x.reason, /^unsafe name: /);
    }
  });

  test('an unsafe name that has no date is reported as unsafe (the more serious reason)', () => {
    const s = selectNext([f('IPI/../../etc/passwd')], null, opts());
    assert.equal(s.skipped[0]!.reason, 'unsafe name: contains a path separator');
  });

  test('skipped files are reported even when a marker is set', () => {
    const s = selectNext([f('IPI_20240101.csv'), f('IPI_20240102.csv'), f('IPI_nodate')], 'IPI_20240101.csv', opts());
    assert.deepEqual(names(s.queue), ['IPI_20240102.csv']);
    assert.deepEqual(s.skipped.map((x) => x.name), ['IPI_nodate']);
  });
});

describe('selectNext: MIN_AGE', () => {
  test('the queue stops at the first too-young file; nothing after it is taken', () => {
    const entries = [
      f('IPI_20240101.csv', NOW - 10 * HOUR),
      f('IPI_20240102.csv', NOW - 30_000), // 30 s old
      f('IPI_20240103.csv', NOW - 10 * HOUR), // old, but after the young one
    ];
    const s = selectNext(entries, null, opts({ minAgeMs: 120_000 }));
    assert.deepEqual(names(s.queue), ['IPI_20240101.csv']);
    assert.deepEqual(s.waiting, { name: 'IPI_20240102.csv', reason: 'younger than MIN_AGE: 30 s old' });
  });

  test('a file exactly MIN_AGE old is taken', () => {
    const s = selectNext([f('IPI_20240101.csv', NOW - 60_000)], null, opts({ minAgeMs: 60_000 }));
    assert.deepEqual(names(s.queue), ['IPI_20240101.csv']);
    assert.equal(s.waiting, null);
  });

  test('a first file too young gives an empty queue', () => {
    const s = selectNext([f('IPI_20240101.csv', NOW - 1000), f('IPI_20240102.csv')], null, opts({ minAgeMs: 5000 }));
    assert.deepEqual(s.queue, []);
    assert.equal(s.waiting?.name, 'IPI_20240101.csv');
  });

  test('a file dated in the future (clock skew) is waiting and reported as 0 s old', () => {
    const s = selectNext([f('IPI_20240101.csv', NOW + 5000)], null, opts({ minAgeMs: 1000 }));
    assert.deepEqual(s.queue, []);
    assert.equal(s.waiting?.reason, 'younger than MIN_AGE: 0 s old');
  });

  test('files before the marker do not count, however young', () => {
    const entries = [f('IPI_20240101.csv', NOW), f('IPI_20240102.csv', NOW - HOUR)];
    const s = selectNext(entries, 'IPI_20240101.csv', opts({ minAgeMs: 60_000 }));
    assert.deepEqual(names(s.queue), ['IPI_20240102.csv']);
    assert.equal(s.waiting, null);
  });

  test('MIN_AGE 0 takes even a file modified this instant', () => {
    const s = selectNext([f('IPI_20240101.csv', NOW)], null, opts({ minAgeMs: 0 }));
    assert.deepEqual(names(s.queue), ['IPI_20240101.csv']);
  });
});

describe('selectNext: ORDER_BY=name', () => {
  test('plain code-unit name order; undated names take part', () => {
    const entries = [f('IPI_b'), f('IPI_B'), f('IPI_a'), f('IPI_10'), f('IPI_9')];
    const s = selectNext(entries, null, opts({ orderBy: 'name' }));
    assert.deepEqual(names(s.queue), ['IPI_10', 'IPI_9', 'IPI_B', 'IPI_a', 'IPI_b']);
    assert.deepEqual(s.skipped, []);
  });

  test('only names after the marker, even if the marker is gone', () => {
    const entries = [f('IPI_a'), f('IPI_c'), f('IPI_d')];
    assert.deepEqual(names(selectNext(entries, 'IPI_a', opts({ orderBy: 'name' })).queue), ['IPI_c', 'IPI_d']);
    assert.deepEqual(names(selectNext(entries, 'IPI_b', opts({ orderBy: 'name' })).queue), ['IPI_c', 'IPI_d']);
  });
});

describe('selectNext: ORDER_BY=mtime', () => {
  test('oldest modification first, ties by name', () => {
    const entries = [f('IPI_z', NOW - 3 * HOUR), f('IPI_y', NOW - 1 * HOUR), f('IPI_b', NOW - 2 * HOUR), f('IPI_a', NOW - 2 * HOUR)];
    const s = selectNext(entries, null, opts({ orderBy: 'mtime' }));
    assert.deepEqual(names(s.queue), ['IPI_z', 'IPI_a', 'IPI_b', 'IPI_y']);
  });

  test('a listed marker is placed by its server mtime', () => {
    const entries = [f('IPI_c', NOW - 3 * HOUR), f('IPI_a', NOW - 2 * HOUR), f('IPI_b', NOW - 1 * HOUR)];
    const s = selectNext(entries, 'IPI_a', opts({ orderBy: 'mtime' }));
    assert.deepEqual(names(s.queue), ['IPI_b']);
  });

  test('a file with the same mtime as the marker but a later name is after it', () => {
    const entries = [f('IPI_a', NOW - HOUR), f('IPI_b', NOW - HOUR), f('IPI_0', NOW - HOUR)];
    const s = selectNext(entries, 'IPI_a', opts({ orderBy: 'mtime' }));
    assert.deepEqual(names(s.queue), ['IPI_b']);
  });

  test('a marker missing from the listing is placed with its mtime from the history', () => {
    const entries = [f('IPI_old', NOW - 5 * HOUR), f('IPI_new', NOW - 1 * HOUR)];
    const s = selectNext(entries, 'IPI_gone', opts({ orderBy: 'mtime', markerMtime: { ms: NOW - 3 * HOUR, current: false } }));
    assert.deepEqual(names(s.queue), ['IPI_new']);
  });

  test('a marker set by hand to an older delivery: the listed mtime wins over the history\'s', () => {
    const entries = [f('IPI_a', NOW - 5 * HOUR), f('IPI_b', NOW - 3 * HOUR), f('IPI_c', NOW - 1 * HOUR)];
    const s = selectNext(entries, 'IPI_b', opts({ orderBy: 'mtime', markerMtime: { ms: NOW - 10 * HOUR, current: false } }));
    assert.deepEqual(names(s.queue), ['IPI_c']);
  });

  test('the marker\'s file rewritten on the server after its delivery: the files that came between are still taken, then the new version', () => {
    // IPI_a delivered at its mtime -5 h; IPI_b and IPI_c arrived; then IPI_a was re-issued.
    const entries = [f('IPI_b', NOW - 4 * HOUR), f('IPI_c', NOW - 3 * HOUR), f('IPI_a', NOW - 2 * HOUR)];
    const delivered = { markerAtMs: NOW - 4.9 * HOUR, mtimeOf: new Map([['IPI_a', NOW - 5 * HOUR]]) };
    const s = selectNext(entries, 'IPI_a', opts({ orderBy: 'mtime', markerMtime: { ms: NOW - 5 * HOUR, current: true }, delivered }));
    assert.deepEqual(names(s.queue), ['IPI_b', 'IPI_c', 'IPI_a']);
    assert.deepEqual(s.passedOver, []);
  });

  test('a marker missing from the listing and the history cannot be placed', () => {
    assert.throws(() => selectNext([f('IPI_a')], 'IPI_gone', opts({ orderBy: 'mtime' })), (err: unknown) => {
      assert.ok(err instanceof MarkerPlacementError);
      assert.match(err.message, /"IPI_gone"/);
      assert.match(err.message, /no longer on the server and not in the history/);
      assert.match(err.message, /ipi-pull mark NAME/);
      return true;
    });
  });

  test('a listed marker that no longer matches the pattern still places the others', () => {
    const entries = [f('old_marker', NOW - 3 * HOUR), f('IPI_a', NOW - 4 * HOUR), f('IPI_b', NOW - 2 * HOUR)];
    const s = selectNext(entries, 'old_marker', opts({ orderBy: 'mtime' }));
    assert.deepEqual(names(s.queue), ['IPI_b']);
  });
});

describe('orderCandidates', () => {
  test('returns the order and the skipped names, without a marker', () => {
    const { ordered, skipped } = orderCandidates([f('IPI_20240102.csv'), f('IPI_x'), f('IPI_20240101.csv'), d('IPI_dir')], { matches: ipi, orderBy: 'date' });
    assert.deepEqual(names(ordered), ['IPI_20240101.csv', 'IPI_20240102.csv']);
    assert.deepEqual(skipped.map((s) => s.name), ['IPI_x']);
  });
});

describe('files the marker has passed over', () => {
  const deliveredAt = NOW - 2 * HOUR;
  // History: the marker's file delivered two hours ago; the file before it delivered as it was then.
  const delivered = { markerAtMs: deliveredAt, mtimeOf: new Map([['IPI_20240102.dat', NOW - 30 * HOUR], ['IPI_20240103.dat', NOW - 26 * HOUR]]) };
  const listing = (late: RemoteEntry) => [f('IPI_20240102.dat', NOW - 30 * HOUR), f('IPI_20240103.dat', NOW - 26 * HOUR), late, f('IPI_20240105.dat', NOW - HOUR)];

  test('a file placed before the marker, written after the marker\'s delivery: reported, not queued', () => {
    const sel = selectNext(listing(f('IPI_20240101.dat', NOW - HOUR)), 'IPI_20240103.dat', opts({ delivered }));
    assert.deepEqual(names(sel.queue), ['IPI_20240105.dat']);
    assert.deepEqual(sel.passedOver.map((s) => s.name), ['IPI_20240101.dat']);
    assert.match(sel.passedOver[0]!.reason, /sorts before the marker \(IPI_20240103\.dat\) but appeared on the server .* after that was delivered/);
  });

  test('a delivered file changed on the server after the marker\'s delivery: reported as changed', () => {
    const sel = selectNext([f('IPI_20240102.dat', NOW - HOUR), f('IPI_20240103.dat', NOW - 26 * HOUR)], 'IPI_20240103.dat', opts({ delivered }));
    assert.deepEqual(sel.passedOver.map((s) => s.name), ['IPI_20240102.dat']);
    assert.match(sel.passedOver[0]!.reason, /was delivered, then changed on the server/);
  });

  test('older files, the delivered version of a file (a server clock ahead of ours), and files after the marker are not', () => {
    const aheadClock = { markerAtMs: deliveredAt, mtimeOf: new Map([['IPI_20240102.dat', NOW - HOUR]]) };
    const sel = selectNext(listing(f('IPI_20240101.dat', NOW - 48 * HOUR)).map((e) => (e.name === 'IPI_20240102.dat' ? f(e.name, NOW - HOUR) : e)), 'IPI_20240103.dat', opts({ delivered: aheadClock }));
    assert.deepEqual(sel.passedOver, []);
    assert.deepEqual(names(sel.queue), ['IPI_20240105.dat']);
  });

  test('the marker\'s own file rewritten on the server after its delivery: reported as changed', () => {
    const sel = selectNext([f('IPI_20240102.dat', NOW - 30 * HOUR), f('IPI_20240103.dat', NOW - HOUR)], 'IPI_20240103.dat', opts({ delivered }));
    assert.deepEqual(sel.passedOver, [{
      name: 'IPI_20240103.dat',
      reason: `it was delivered, then changed on the server (mtime ${new Date(NOW - 26 * HOUR).toISOString()} -> ${new Date(NOW - HOUR).toISOString()}), so no run will take it again`,
    }]);
    assert.deepEqual(sel.queue, []);
  });

  test('without a history line for the marker (set by hand, or by FTP_IPI.py) nothing is looked at', () => {
    assert.deepEqual(selectNext(listing(f('IPI_20240101.dat', NOW - HOUR)), 'IPI_20240103.dat', opts()).passedOver, []);
  });
});

describe('names that cannot be taken as files', () => {
  test('a matching name the server cannot follow is skipped with why; a folder, or a name that does not match, in silence', () => {
    const link = { ...d('IPI_20240102.dat'), unreadable: 'a symbolic link to nothing on the server' };
    const other = { ...d('notes-link'), unreadable: 'a symbolic link to nothing on the server' };
    const sel = selectNext([f('IPI_20240101.dat'), link, d('IPI_20240103.dat'), other, f('IPI_20240104.dat')], null, opts());
    assert.deepEqual(names(sel.queue), ['IPI_20240101.dat', 'IPI_20240104.dat']);
    assert.deepEqual(sel.skipped, [{ name: 'IPI_20240102.dat', reason: 'a symbolic link to nothing on the server' }]);
  });
});

describe('a listing that names a file twice', () => {
  test('it is queued once (the first entry), never twice', () => {
    const sel = selectNext([f('IPI_20240101.dat'), f('IPI_20240102.dat', NOW - 20 * HOUR), f('IPI_20240102.dat', NOW - 10 * HOUR), f('IPI_20240103.dat')], null, opts());
    assert.deepEqual(names(sel.queue), ['IPI_20240101.dat', 'IPI_20240102.dat', 'IPI_20240103.dat']);
    assert.equal(sel.queue[1]!.mtimeMs, NOW - 20 * HOUR);
  });
});

describe('names that differ only in case', () => {
  const listing = [f('IPI_20240101.dat'), f('IPI_20240102.DAT'), f('IPI_20240102.dat'), f('IPI_20240103.dat')];

  test('where case is ignored, the first in order goes and the other is skipped, named', () => {
    const sel = selectNext(listing, null, opts({ foldCase: true }));
    assert.deepEqual(names(sel.queue), ['IPI_20240101.dat', 'IPI_20240102.DAT', 'IPI_20240103.dat']);
    assert.deepEqual(sel.skipped.map((s) => s.name), ['IPI_20240102.dat']);
    assert.match(sel.skipped[0]!.reason, /the same name as IPI_20240102\.DAT where case is ignored/);
  });

  test('Unicode normalization too (NFC and NFD spellings of one name)', () => {
    const nfc = 'IPI_20240104_\u00e9.dat';
    const nfd = 'IPI_20240104_e\u0301.dat';
    const sel = selectNext([f(nfc), f(nfd)], null, opts({ foldCase: true }));
    assert.equal(sel.queue.length, 1);
    assert.equal(sel.skipped.length, 1);
  });

  test('where case matters (Linux), both are files of their own', () => {
    assert.equal(selectNext(listing, null, opts()).queue.length, 4);
  });
});
