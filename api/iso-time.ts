/**
 * ISO 8601 times as Glance reads its created_at/updated_at filters: oslo's
 * timeutils.parse_isotime, that is the python `iso8601` library's parse_date. The same forms,
 * no more and no fewer: `2026`, `2026-12`, `2026-12-06`, basic `20261206T225551Z`, a time with
 * hours only or hours and minutes, seconds with a fraction (`.` or `,`, any number of digits,
 * microseconds kept), a zone `Z`, `+05`, `+0530` or `+05:30`, or none (UTC). Upper case T and Z
 * only; no surrounding blanks (a single final newline passes, as Python's `$` lets it).
 */

/**
 * The library's pattern, group for group (JavaScript backtracks as Python does, so every input
 * splits into the same fields): year, then optionally month (`-M`, `-MM`, or `MM` not at the
 * end), then optionally day (`-D`, `-DD` or `DD`), then optionally a time.
 */
const ISO8601 = new RegExp(
  '^(?<year>[0-9]{4})(?:' +
    '(?:-(?<monthdash>[0-9]{1,2})|(?<month>[0-9]{2})(?!\\n?$))' +
    '(?:' +
      '(?:-(?<daydash>[0-9]{1,2})|(?<day>[0-9]{2}))' +
      '(?:[ T](?<hour>[0-9]{2})(?::?(?<minute>[0-9]{2}))?' +
        '(?::?(?<second>[0-9]{1,2})(?:[.,](?<fraction>[0-9]+))?)?' +
        '(?<zone>Z|(?<sign>[-+])(?<tzhour>[0-9]{2}):?(?<tzminute>[0-9]{2})?)?' +
      ')?' +
    ')?' +
  ')?\\n?$',
);

/** Milliseconds since the epoch (microsecond fractions kept), or null when parse_date refuses the text. */
export function parseIsoTime(text: string): number | null {
  const g = ISO8601.exec(text)?.groups;
  if (!g) return null;
  const n = (value: string | undefined, otherwise: number) => (value === undefined ? otherwise : Number(value));
  const year = n(g.year, 0);
  const month = n(g.month ?? g.monthdash, 1);
  const day = n(g.day ?? g.daydash, 1);
  const [hour, minute, second] = [n(g.hour, 0), n(g.minute, 0), n(g.second, 0)];
  // datetime()'s checks: what the pattern lets through but no calendar has.
  if (year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return null;
  const date = new Date(Date.UTC(2000, month - 1, day, hour, minute, second));
  date.setUTCFullYear(year);
  if (date.getUTCDate() !== day || date.getUTCMonth() !== month - 1) return null; // 2023-02-30
  // parse_date keeps microseconds, truncated.
  const micro = g.fraction === undefined ? 0 : Number(g.fraction.slice(0, 6).padEnd(6, '0'));
  // A fixed offset of less than a day either way (datetime.timezone's bound); the minutes may exceed 59.
  const offset = g.sign === undefined ? 0 : (g.sign === '-' ? -1 : 1) * (Number(g.tzhour) * 60 + n(g.tzminute, 0));
  if (Math.abs(offset) >= 24 * 60) return null;
  return date.getTime() + micro / 1000 - offset * 60_000;
}
