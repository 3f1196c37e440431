/**
 * The blob readers of one stage run (a stage, or a fused chain of them), one per key, shared by
 * its stages and closed when the run ends. Unpack and inspect read the same staged disk: each
 * open is a round trip (open + fstat on a filesystem, a HeadObject on S3), and on a busy machine
 * a round trip costs milliseconds of a small image's time to `active`.
 */
import type { BlobReader, BlobStore } from '../core/ports.js';

export class ChainReaders {
  private readonly readers = new Map<string, Promise<BlobReader>>();

  constructor(private readonly blobs: BlobStore) {}

  /** The run's reader of `key`, opened on first use; rejects as BlobStore.openReader does (and a later call tries again). */
  open(key: string): Promise<BlobReader> {
    let reader = this.readers.get(key);
    if (!reader) {
      reader = this.blobs.openReader(key);
      this.readers.set(key, reader);
      reader.catch(() => this.readers.delete(key));
    }
    return reader;
  }

  /** Closes every reader opened; close failures are not the run's concern (its bytes were read). */
  async closeAll(): Promise<void> {
    const open = [...this.readers.values()];
    this.readers.clear();
    await Promise.allSettled(open.map(async (reader) => (await reader).close()));
  }
}
