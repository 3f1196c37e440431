/**
 * The blob store every process uses: PIR's own store, plus read-only access to registered
 * locations under `external/…` keys (core/external-location.ts). The pipeline and downloads name
 * a registered image's bytes by such a key exactly as they name staged or stored bytes; this
 * wrapper sends the reads to the LocationReader and refuses to write, move or delete them (PIR
 * never touches bytes it does not own: deleting the image leaves the object where it was).
 */
import type { Readable } from 'node:stream';
import { isExternalKey, parseExternalKey } from '../../core/external-location.js';
import type { BlobInfo, BlobReader, BlobStore, BlobWriteOptions, ByteRange, WrittenBlob } from '../../core/ports.js';
import type { LocationReader } from './location-reader.js';
import { RangeReader } from './range-reader.js';

export class LocationAwareBlobStore implements BlobStore {
  readonly kind: string;
  readonly filePath?: (key: string) => string;

  constructor(private readonly inner: BlobStore, readonly locations: LocationReader) {
    this.kind = inner.kind;
    // tus offers itself only where the store has files: keep that answer the inner store's.
    if (inner.filePath) this.filePath = (key) => inner.filePath!(key);
  }

  /** PIR's own store behind the locations (tus stages in it directly: ingest/tus/staging-for.ts). */
  get own(): BlobStore {
    return this.inner;
  }

  write(key: string, source: AsyncIterable<Uint8Array> | NodeJS.ReadableStream, options: BlobWriteOptions): Promise<WrittenBlob> {
    if (isExternalKey(key)) return Promise.reject(new Error('registered locations are read-only'));
    return this.inner.write(key, source, options);
  }

  read(key: string, range?: ByteRange): Promise<Readable> {
    return isExternalKey(key) ? this.locations.read(parseExternalKey(key), range) : this.inner.read(key, range);
  }

  async openReader(key: string): Promise<BlobReader> {
    if (!isExternalKey(key)) return this.inner.openReader(key);
    const ref = parseExternalKey(key);
    return new RangeReader(ref.fingerprint.size, (offset, length) => this.locations.readRange(ref, offset, length));
  }

  /** For a location: asks the server, and fails (LocationChangedError) when the object is not the registered one. */
  async stat(key: string): Promise<BlobInfo | null> {
    if (!isExternalKey(key)) return this.inner.stat(key);
    const ref = parseExternalKey(key);
    await this.locations.verify(ref);
    return { key, size: ref.fingerprint.size, modifiedAt: ref.fingerprint.last_modified ? Date.parse(ref.fingerprint.last_modified) : 0 };
  }

  /** A location is not PIR's to delete: a no-op. */
  async delete(key: string): Promise<void> {
    if (!isExternalKey(key)) await this.inner.delete(key);
  }

  list(prefix: string): Promise<BlobInfo[]> {
    return this.inner.list(prefix);
  }

  localFile(key: string): Promise<{ path: string; release(): Promise<void> }> {
    // Only unpack asks for a file (zip input), and registered bytes are never unpacked.
    if (isExternalKey(key)) return Promise.reject(new Error('registered locations are not copied to local files'));
    return this.inner.localFile(key);
  }

  /** A registered location stays where it is: its key is the stored key. */
  promote(stagedKey: string, imageId: string): Promise<string> {
    return isExternalKey(stagedKey) ? Promise.resolve(stagedKey) : this.inner.promote(stagedKey, imageId);
  }

  ping(): Promise<void> {
    return this.inner.ping();
  }

  get unfinishedWrites(): BlobStore['unfinishedWrites'] {
    return this.inner.unfinishedWrites?.bind(this.inner);
  }

  get abortUnfinishedWrite(): BlobStore['abortUnfinishedWrite'] {
    return this.inner.abortUnfinishedWrite?.bind(this.inner);
  }
}
