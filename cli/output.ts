/** Printing results: tables for people, JSON or YAML for scripts (--format). */
import { stringify as toYaml } from 'yaml';
import { UsageError } from './exit-codes.js';

export type Format = 'table' | 'json' | 'yaml';
export const FORMATS: Format[] = ['table', 'json', 'yaml'];

export function parseFormat(value: string | undefined): Format {
  const format = (value ?? 'table') as Format;
  if (!FORMATS.includes(format)) throw new UsageError(`--format must be one of ${FORMATS.join(', ')} (got '${value}')`);
  return format;
}

/** Serialises a value for a script, or returns null when the format is a table. */
function machine(value: unknown, format: Format): string | null {
  if (format === 'json') return JSON.stringify(value, null, 2) + '\n';
  if (format === 'yaml') return toYaml(value);
  return null;
}

/** One record: a two-column property/value table, or the whole object. */
export function printRecord(record: Record<string, unknown>, format: Format, out: NodeJS.WritableStream = process.stdout): void {
  const text = machine(record, format);
  if (text !== null) return void out.write(text);
  const rows = Object.keys(record).sort().map((key) => [key, cell(record[key])]);
  out.write(table(['property', 'value'], rows));
}

/** Several records: chosen columns in a table, or the whole objects. */
export function printList(records: Record<string, unknown>[], columns: string[], format: Format, out: NodeJS.WritableStream = process.stdout): void {
  const text = machine(records, format);
  if (text !== null) return void out.write(text);
  out.write(table(columns, records.map((r) => columns.map((c) => cell(r[c])))));
}

export function cell(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'object') return JSON.stringify(value);
  return printable(String(value));
}

/**
 * Text from the server as a terminal may show it: control characters (ESC and the rest of C0
 * and C1, DEL) become \xHH. Image names and properties are other projects' words: raw, an escape
 * sequence in one would retitle the window, recolour the screen or write the clipboard.
 */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** A plain aligned table; long values are not cut (scripts should use --format json). */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd() + '\n';
  return line(headers) + line(widths.map((w) => '-'.repeat(w))) + rows.map(line).join('');
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
export function humanBytes(n: number): string {
  let i = 0;
  let v = n;
  while (v >= 1024 && i < UNITS.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${UNITS[i]}`;
}

export function humanDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 60) return `${Math.round(seconds)}s`;
  const m = Math.floor(seconds / 60);
  return m < 60 ? `${m}m${String(Math.round(seconds % 60)).padStart(2, '0')}s` : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
