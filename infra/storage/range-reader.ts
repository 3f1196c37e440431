/**
 * Random access by bounded range requests, with a few aligned blocks cached (inspectors re-read
 * headers and tables in small pieces): for stores whose reads are network requests (the S3
 * adapter, registered locations).
 */
import type { BlobReader } from '../../core/ports.js';

/** Inspection reads come in small pieces: fetch at least this much per request. */
const READ_BLOCK = 256 * 1024;
const CACHED_BLOCKS = 16;

export class RangeReader implements BlobReader {
  private readonly blocks = new Map<number, Promise<Buffer>>();

  constructor(readonly size: number, private readonly readRange: (offset: number, length: number) => Promise<Buffer>) {}

  async read(offset: number, length: number): Promise<Buffer> {
    if (offset >= this.size || length <= 0) return Buffer.alloc(0);
    const end = Math.min(this.size, offset + length);
    if (end - offset > READ_BLOCK) return this.readRange(offset, end - offset);
    const first = Math.floor(offset / READ_BLOCK);
    const last = Math.floor((end - 1) / READ_BLOCK);
    const parts = await Promise.all(Array.from({ length: last - first + 1 }, (_, i) => this.block(first + i)));
    const joined = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    const from = offset - first * READ_BLOCK;
    return joined.subarray(from, from + (end - offset));
  }

  private block(index: number): Promise<Buffer> {
    let block = this.blocks.get(index);
    if (!block) {
      const start = index * READ_BLOCK;
      block = this.readRange(start, Math.min(READ_BLOCK, this.size - start));
      block.catch(() => this.blocks.delete(index));
      if (this.blocks.size >= CACHED_BLOCKS) this.blocks.delete(this.blocks.keys().next().value!);
      this.blocks.set(index, block);
    }
    return block;
  }

  async close(): Promise<void> {
    this.blocks.clear();
  }
}
