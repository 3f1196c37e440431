import { CountingReader } from './counting-reader.js';
import type { RandomAccessReader } from './types.js';

/** Hard cap on bytes one detection may pull from the reader; keeps inspection O(1) in image size. */
export const READ_BUDGET = 4 * 1024 * 1024;
/** Cache granularity: inspectors re-read the same headers, so whole blocks are fetched once. */
const BLOCK = 4096;

/** Raised when an inspector would exceed READ_BUDGET; detectFormat turns it into a refusal. */
export class ReadBudgetExceeded extends Error {
  constructor(wanted: number) {
    super(`format inspection would read more than ${READ_BUDGET} bytes (wanted ${wanted} more)`);
  }
}

/** Wraps a failure of the caller's reader so detectFormat can re-throw it untouched. */
export class ReaderIOError extends Error {
  constructor(readonly original: unknown) {
    super('image reader failed');
  }
}

/**
 * Bounded, cached view of an image shared by all inspectors during one detection.
 * Reads never fail for out-of-range or absurd offsets (hostile headers produce
 * those); they just return fewer bytes, which inspectors treat as truncation.
 */
/**
 * The blocks read from one image, by block number. Contexts over the same reader may share one
 * (inspect's detection, then its embedded-metadata probes), so a header read by the first is
 * not read again by the second; a block one of them fetched costs the other nothing, and so
 * does not count against its budget.
 */
export type BlockCache = Map<number, Buffer>;

export class ReadContext {
  readonly size: number;
  private readonly counter: CountingReader;

  constructor(reader: RandomAccessReader, private readonly budget = READ_BUDGET, private readonly blocks: BlockCache = new Map()) {
    this.counter = new CountingReader(reader);
    const s = reader.size;
    this.size = Number.isSafeInteger(s) && s > 0 ? s : 0;
  }

  get bytesRead(): number {
    return this.counter.bytesRead;
  }

  /** Read up to `length` bytes at `offset`; shorter at EOF, empty when out of range. */
  async read(offset: number | bigint, length: number): Promise<Buffer> {
    const off = typeof offset === 'bigint' ? (offset <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(offset) : -1) : offset;
    if (!Number.isSafeInteger(off) || off < 0 || off >= this.size || !Number.isSafeInteger(length) || length <= 0) {
      return Buffer.alloc(0);
    }
    const end = Math.min(this.size, off + length);
    const first = Math.floor(off / BLOCK);
    const last = Math.floor((end - 1) / BLOCK);
    await this.fill(first, last);
    const parts: Buffer[] = [];
    for (let b = first; b <= last; b++) {
      const blk = this.blocks.get(b) ?? Buffer.alloc(0);
      const from = b === first ? off - b * BLOCK : 0;
      const to = Math.min(blk.length, b === last ? end - b * BLOCK : BLOCK);
      if (to > from) parts.push(blk.subarray(from, to));
      // A short block means the reader hit EOF early: nothing after it is readable.
      if (blk.length < Math.min(BLOCK, this.size - b * BLOCK)) break;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /** Fetch missing blocks in [first, last] with one reader call spanning them. */
  private async fill(first: number, last: number): Promise<void> {
    let lo = first;
    while (lo <= last && this.blocks.has(lo)) lo++;
    let hi = last;
    while (hi >= lo && this.blocks.has(hi)) hi--;
    if (lo > hi) return;
    const start = lo * BLOCK;
    const len = Math.min(this.size, (hi + 1) * BLOCK) - start;
    if (this.counter.bytesRead + len > this.budget) throw new ReadBudgetExceeded(len);
    let got: Buffer;
    try {
      got = await this.counter.read(start, len);
    } catch (err) {
      throw new ReaderIOError(err);
    }
    if (!Buffer.isBuffer(got)) got = Buffer.from(got as Uint8Array);
    if (got.length > len) got = got.subarray(0, len);
    for (let b = lo; b <= hi; b++) {
      if (this.blocks.has(b)) continue;
      const from = (b - lo) * BLOCK;
      this.blocks.set(b, from < got.length ? got.subarray(from, Math.min(got.length, from + BLOCK)) : Buffer.alloc(0));
    }
  }
}
