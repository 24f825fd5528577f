// The limits of numeric settings, declared once beside each setting: its parser refuses what is
// outside them and its help text (hence --help, .env.example and the README) states them.
import { ValueError, parseDuration, parseInteger, parseList, parseSize } from './parse.js';

const SECOND = 1000;
const DAY = 86_400_000;

/**
 * The longest wait a setting may ask for. Node's timers hold at most 2^31-1 ms (about 24.8
 * days); a longer one fires after 1 ms with a TimeoutOverflowWarning, so a timeout would
 * fire at once and a retry would hammer. 24 days is the round number below that.
 */
export const MAX_TIMER_MS = 24 * DAY;

export type Kind = 'duration' | 'size' | 'integer';

export interface Bounds {
  /** Smallest value allowed (0 too when `zero` is set). */
  min: number;
  max?: number;
  /** 0 is allowed below `min`: it means "off" (the help says what exactly). */
  zero?: true;
}

export interface Limits {
  kind: Kind;
  bounds: Bounds;
  /** The bounds hold for each item of a comma-separated list. */
  each?: true;
}

/** Common bounds: a timeout (0 would fail every run, 1 ms thrash it). */
export const TIMEOUT: Bounds = { min: SECOND, max: MAX_TIMER_MS };
/** A wait that may be 0 (no wait at all). */
export const WAIT: Bounds = { min: 0, max: MAX_TIMER_MS };
/** An interval where 0 turns the thing off and anything below a second would spin. */
export const INTERVAL_OR_OFF: Bounds = { min: SECOND, max: MAX_TIMER_MS, zero: true };

const DURATION_UNITS: Array<[string, number]> = [['d', DAY], ['h', 3_600_000], ['m', 60_000], ['s', SECOND], ['ms', 1]];
const SIZE_UNITS: Array<[string, number]> = [['TiB', 1024 ** 4], ['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024], ['', 1]];

/** 86400000 -> "1d", 1500 -> "1500ms": the largest unit that writes it whole. */
function inUnits(n: number, units: Array<[string, number]>): string {
  if (n === 0) return '0';
  const [unit, size] = units.find(([, size]) => n % size === 0)!;
  return `${n / size}${unit}`;
}

export function formatValue(kind: Kind, n: number): string {
  if (kind === 'duration') return inUnits(n, DURATION_UNITS);
  if (kind === 'size') return inUnits(n, SIZE_UNITS);
  return String(n);
}

/** "1s to 24d", "0, or 1s to 24d", "at least 1KiB", "0, or at least 1MiB". */
export function rangeText(kind: Kind, b: Bounds): string {
  const f = (n: number) => formatValue(kind, n);
  const span = b.max === undefined ? `at least ${f(b.min)}` : `${f(b.min)} to ${f(b.max)}`;
  return b.zero && b.min > 0 ? `0, or ${span}` : span;
}

function parseRaw(kind: Kind, raw: string): number {
  if (kind === 'duration') return parseDuration(raw);
  if (kind === 'size') return parseSize(raw);
  return parseInteger(raw, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
}

/** Parse one value and hold it to its bounds; the error quotes the input and the range. */
export function parseBounded(kind: Kind, b: Bounds, raw: string): number {
  const n = parseRaw(kind, raw);
  const ok = (b.zero && n === 0) || (n >= b.min && (b.max === undefined || n <= b.max));
  if (!ok) throw new ValueError(`${raw.trim()} is out of range (${rangeText(kind, b)})`);
  return n;
}

/**
 * The `help` and `parse` of a numeric setting, from one declaration of its limits: the help
 * gets "Allowed: ..." appended, so no document can state other limits than the parser's.
 */
export function bounded(kind: Kind, b: Bounds, help: string): { help: string; limits: Limits; parse: (raw: string) => number } {
  return { help: `${help} Allowed: ${rangeText(kind, b)}.`, limits: { kind, bounds: b }, parse: (raw) => parseBounded(kind, b, raw) };
}

/** The same for a comma-separated list of values, each held to the bounds. */
export function boundedList(kind: Kind, b: Bounds, help: string): { help: string; limits: Limits; parse: (raw: string) => number[] } {
  return {
    help: `${help} Allowed: each ${rangeText(kind, b)}.`,
    limits: { kind, bounds: b, each: true },
    parse: (raw) => parseList(raw).map((item) => parseBounded(kind, b, item)),
  };
}
