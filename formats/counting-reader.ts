import type { RandomAccessReader } from './types.js';

/** Wraps a reader and counts what flows through it, so reports can prove reads stay bounded. */
export class CountingReader implements RandomAccessReader {
  bytesRead = 0;
  reads = 0;

  constructor(private readonly inner: RandomAccessReader) {}

  get size(): number {
    return this.inner.size;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = await this.inner.read(offset, length);
    this.reads += 1;
    this.bytesRead += buf.length;
    return buf;
  }
}
