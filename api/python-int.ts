/**
 * A whole number as Glance reads `limit` and the `size_min`/`size_max` range filters: python's
 * int() on the text. Blanks around it, a sign (`+5`) and single underscores between digits
 * (`1_000`) pass; anything else is null. Numbers beyond 2^53 come back rounded (every caller
 * clamps or compares them).
 */
export function pythonInt(text: string): number | null {
  const m = /^([+-]?)(\d+(?:_\d+)*)$/.exec(text.trim());
  if (!m) return null;
  const n = Number(m[2]!.replaceAll('_', ''));
  return m[1] === '-' && n !== 0 ? -n : n;
}
