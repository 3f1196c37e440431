import type { RandomAccessReader } from './types.js';

/** A RandomAccessReader over an in-memory Buffer (tests, fuzzing, small uploads). */
export class BufferReader implements RandomAccessReader {
  constructor(private readonly buf: Buffer) {}

  get size(): number {
    return this.buf.length;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length <= 0) {
      return Buffer.alloc(0);
    }
    // subarray clamps at EOF, which is the documented short-read behaviour.
    return this.buf.subarray(offset, offset + length);
  }
}
