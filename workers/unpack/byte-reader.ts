/** Pull-based exact-length reads over an async stream of chunks (no copies unless a read spans chunks). */

export class TruncatedInputError extends Error {
  constructor(
    readonly wanted: number,
    readonly got: number,
  ) {
    super(`input ended ${wanted - got} bytes early`);
    this.name = 'TruncatedInputError';
  }
}

const EMPTY = new Uint8Array(0);

export class ByteReader {
  private readonly it: AsyncIterator<Uint8Array>;
  private cur: Uint8Array = EMPTY;
  private pos = 0;
  private ended = false;
  /** Bytes handed out (read, streamed or skipped) so far. */
  position = 0;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.it = source[Symbol.asyncIterator]();
  }

  /** Make sure some unread bytes are buffered; false at the end of input. */
  private async fill(): Promise<boolean> {
    while (this.pos >= this.cur.length) {
      if (this.ended) return false;
      const next = await this.it.next();
      if (next.done) {
        this.ended = true;
        this.cur = EMPTY;
        this.pos = 0;
        return false;
      }
      this.cur = next.value;
      this.pos = 0;
    }
    return true;
  }

  /** True when no byte is left. */
  async atEnd(): Promise<boolean> {
    return !(await this.fill());
  }

  /**
   * Read exactly `n` bytes. Returns null when the input ends before the first byte;
   * throws `TruncatedInputError` when it ends in the middle.
   */
  async readExact(n: number): Promise<Uint8Array | null> {
    if (n === 0) return EMPTY;
    if (!(await this.fill())) return null;
    const available = this.cur.length - this.pos;
    if (available >= n) {
      const out = this.cur.subarray(this.pos, this.pos + n);
      this.pos += n;
      this.position += n;
      return out;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      if (!(await this.fill())) throw new TruncatedInputError(n, filled);
      const take = Math.min(n - filled, this.cur.length - this.pos);
      out.set(this.cur.subarray(this.pos, this.pos + take), filled);
      this.pos += take;
      filled += take;
      this.position += take;
    }
    return out;
  }

  /** Yield exactly `n` bytes as they arrive (sub-views of the source chunks); throws if the input ends first. */
  async *take(n: number): AsyncGenerator<Uint8Array, void, undefined> {
    let left = n;
    while (left > 0) {
      if (!(await this.fill())) throw new TruncatedInputError(n, n - left);
      const take = Math.min(left, this.cur.length - this.pos);
      const view = this.cur.subarray(this.pos, this.pos + take);
      this.pos += take;
      this.position += take;
      left -= take;
      yield view;
    }
  }

  /** Discard exactly `n` bytes; throws if the input ends first. */
  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      if (!(await this.fill())) throw new TruncatedInputError(n, n - left);
      const take = Math.min(left, this.cur.length - this.pos);
      this.pos += take;
      this.position += take;
      left -= take;
    }
  }

  /** Stop reading: closes the source iterator (which kills decompressors, closes files). */
  async close(): Promise<void> {
    this.ended = true;
    this.cur = EMPTY;
    await this.it.return?.();
  }
}
