import type { Logger } from '../../../src/log.js';

/** A Logger that records [level, message] pairs for assertions. */
export function fakeLog(): Logger & { lines: Array<[string, string]> } {
  const lines: Array<[string, string]> = [];
  return {
    lines,
    error: (m) => lines.push(['error', m]),
    warn: (m) => lines.push(['warn', m]),
    info: (m) => lines.push(['info', m]),
    debug: (m) => lines.push(['debug', m]),
    record: (m) => lines.push(['record', m]),
  };
}
