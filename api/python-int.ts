/**
 * A whole number as Glance reads `limit` and the `size_min`/`size_max` range filters: python's
 * int() on the text. The blanks int() strips around it (U+0085 and U+00A0 are some; a BOM is
 * not, nor are U+001C–U+001F, which str.isspace() counts), a sign (`+5`), single underscores
 * between digits (`1_000`) and any Unicode decimal digits (`５`, `٥`) pass; anything else is null. Numbers beyond 2^53 come
 * back rounded (every caller clamps or compares them).
 */
const SPACE = '[\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const INT = new RegExp(`^${SPACE}*([+-]?)(\\p{Nd}+(?:_\\p{Nd}+)*)${SPACE}*$`, 'u');
const DIGIT = /\p{Nd}/u;

export function pythonInt(text: string): number | null {
  const m = INT.exec(text);
  if (!m) return null;
  const n = Number(m[2]!.replaceAll('_', '').replace(/\p{Nd}/gu, (d) => String(digitValue(d.codePointAt(0)!))));
  return m[1] === '-' && n !== 0 ? -n : n;
}

/** Unicode encodes each set of decimal digits as 0–9 in a row, sets side by side at most: count from the run's start. */
function digitValue(codePoint: number): number {
  let zero = codePoint;
  while (DIGIT.test(String.fromCodePoint(zero - 1))) zero--;
  return (codePoint - zero) % 10;
}
