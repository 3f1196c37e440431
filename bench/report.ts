/**
 * Benchmark figures printed beside the physical limit they are bounded by and their target.
 * Ratios matter, not absolute times: limits are measured in the same run as the figure.
 */

export interface Figure {
  name: string;
  value: number;
  unit: string;
  /** The physical limit this figure is bounded by (same unit), measured in the same run. */
  limit?: number;
  /** PASS when value ≥ targetRatio × limit. */
  targetRatio?: number;
  /** PASS when value ≤ atMost (e.g. memory). */
  atMost?: number;
  /** PASS when value ≥ atLeast. */
  atLeast?: number;
  /** Shown after the result (how the figure was taken, spread, …). */
  note?: string;
}

export interface BenchContext {
  /** Scratch directory on the data disk; benchmarks clean up what they write there. */
  dir: string;
  /** Prints a line of progress (to stderr, so the tables stay clean on stdout). */
  log(msg: string): void;
}

export interface Bench {
  name: string;
  run(ctx: BenchContext): Promise<Figure[]>;
}

export type Verdict = 'PASS' | 'MISS' | '';

export function verdict(f: Figure): Verdict {
  const checks: boolean[] = [];
  if (f.targetRatio !== undefined && f.limit !== undefined) checks.push(f.value >= f.targetRatio * f.limit);
  if (f.atMost !== undefined) checks.push(f.value <= f.atMost);
  if (f.atLeast !== undefined) checks.push(f.value >= f.atLeast);
  if (checks.length === 0) return '';
  return checks.every(Boolean) ? 'PASS' : 'MISS';
}

function num(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return '';
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
}

function target(f: Figure): string {
  const parts: string[] = [];
  if (f.targetRatio !== undefined) parts.push(`≥ ${(f.targetRatio * 100).toFixed(0)}% of limit`);
  if (f.atLeast !== undefined) parts.push(`≥ ${num(f.atLeast)} ${f.unit}`);
  if (f.atMost !== undefined) parts.push(`≤ ${num(f.atMost)} ${f.unit}`);
  return parts.join(', ');
}

/** An aligned table: name, value, unit, limit, ratio %, target, PASS/MISS (and notes). */
export function formatTable(title: string, figures: Figure[]): string {
  const header = ['name', 'value', 'unit', 'limit', 'ratio', 'target', 'result'];
  const rows = figures.map((f) => [
    f.name,
    num(f.value),
    f.unit,
    num(f.limit),
    f.limit ? `${((f.value / f.limit) * 100).toFixed(0)}%` : '',
    target(f),
    verdict(f),
  ]);
  const right = [false, true, false, true, true, false, false];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (right[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const out = [`== ${title}`, line(header), widths.map((w) => '-'.repeat(w)).join('  ')];
  rows.forEach((r, i) => {
    const note = figures[i]!.note;
    out.push(line(r) + (note ? `   (${note})` : ''));
  });
  return out.join('\n');
}

export function printTable(title: string, figures: Figure[]): void {
  process.stdout.write(formatTable(title, figures) + '\n\n');
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile (p in 0–100). */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

/** Times `fn` `n` times (ms each) after `warm` untimed runs, stopping early past `budgetMs` (after at least 3). */
export async function sample(fn: () => Promise<void>, n: number, warm: number, budgetMs: number): Promise<number[]> {
  for (let i = 0; i < warm; i++) await fn();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < n && (times.length < 3 || performance.now() - start < budgetMs)) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  return times;
}

/** "min–max" of a series, for notes. */
export function spread(xs: number[]): string {
  return `${num(Math.min(...xs))}–${num(Math.max(...xs))}`;
}
