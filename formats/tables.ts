// Reading the pointer tables a header names (L1/L2, grain directories and tables, BATs, block
// maps) for the bounds checks: bounded, so a huge table costs no more than the limit.
import type { ReadContext } from './read-context.js';
import { SECOND_LEVEL_READ_LIMIT, TABLE_READ_LIMIT } from './util.js';

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

/**
 * The second-level tables (L2 tables, grain tables) of `count` entries of `width` bytes at
 * `offsets`, highest first, until SECOND_LEVEL_READ_LIMIT bytes have been fetched from the image
 * for them. Counted as the read context fetches (whole 4 KiB blocks, nothing for a block already
 * read), not by the tables' own size: 512-byte tables one to a block cost 4 KiB each, and counting
 * 512 let a valid image with 512-byte clusters run the whole detection out of READ_BUDGET.
 */
export async function* secondLevelTables(ctx: ReadContext, offsets: Iterable<bigint>, count: number, width: number): AsyncGenerator<{ at: bigint; table: Table }> {
  const start = ctx.bytesRead;
  for (const at of highestFirst(offsets)) {
    const left = SECOND_LEVEL_READ_LIMIT - (ctx.bytesRead - start);
    if (left <= 0) return;
    yield { at, table: await readTable(ctx, at, count, width, Math.min(count * width, left)) };
  }
}
