// Reading the pointer tables a header names (L1/L2, grain directories and tables, BATs, block
// maps) for the bounds checks: bounded, so a huge table costs no more than the limit.
import type { ReadContext } from './read-context.js';
import { TABLE_READ_LIMIT } from './util.js';

export interface Table {
  /** The bytes read: the first `entries` entries of the table (fewer at EOF or past `limit`). */
  buf: Buffer;
  entries: number;
  /** Every entry of the table was read. */
  complete: boolean;
}

/** Reads at most `limit` bytes of a table of `count` entries of `width` bytes at `offset`. */
export async function readTable(ctx: ReadContext, offset: number | bigint, count: number, width: number, limit = TABLE_READ_LIMIT): Promise<Table> {
  const want = Math.min(count * width, Math.floor(limit / width) * width);
  const buf = want > 0 ? await ctx.read(offset, want) : Buffer.alloc(0);
  const entries = Math.floor(buf.length / width);
  return { buf, entries, complete: entries >= count };
}

/** Unique non-zero values, highest first: second-level tables are checked from the end of the file back. */
export function highestFirst(values: Iterable<bigint>): bigint[] {
  return [...new Set(values)].filter((v) => v !== 0n).sort((a, b) => (a < b ? 1 : a > b ? -1 : 0));
}
