/**
 * Where a tus upload's bytes wait: the one module that knows they are a file. Everything else
 * (protocol, hashing, the image lifecycle) sees only create / offset / append-at-offset /
 * truncate / read-back / finish, so the staging can move onto a key-based blob port later
 * (append = write the next part under `${key}.partN`, offset = sum of part sizes) without
 * touching the protocol code.
 */
import { createReadStream } from 'node:fs';
import { mkdir, open, stat, truncate } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { stagingKey } from '../../core/blob-keys.js';
import type { BlobStore } from '../../core/ports.js';

export interface TusStaging {
  /** An empty staging object for the upload (replacing any leftover). */
  create(imageId: string, run: number): Promise<void>;
  /** Bytes staged so far, or null when nothing is staged (removed, never created). */
  offset(imageId: string, run: number): Promise<number | null>;
  /**
   * Appends `chunks` at `offset` (which must be the current end). `onWritten` sees each chunk
   * after it is written, in order. The bytes are durable when it resolves, and also when it
   * rejects: what was written before the failure stays (tus keeps a cut PATCH's bytes).
   */
  append(imageId: string, run: number, offset: number, chunks: AsyncIterable<Uint8Array>, onWritten: (chunk: Uint8Array) => void): Promise<number>;
  /** Cuts the staged bytes back to `offset` (a PATCH whose checksum did not match). */
  truncate(imageId: string, run: number, offset: number): Promise<void>;
  /** The first `end` staged bytes, to rebuild hash state after a restart. */
  readBack(imageId: string, run: number, end: number): Readable;
  /** The blob key of the complete bytes, for the pipeline. */
  finish(imageId: string, run: number): string;
}

/** TusStaging over the staging files of a store whose blobs are local files (BlobStore.filePath). */
export class FileTusStaging implements TusStaging {
  private readonly filePath: (key: string) => string;

  constructor(blobs: Pick<BlobStore, 'filePath'>) {
    if (!blobs.filePath) throw new Error('tus staging needs a store whose blobs are local files');
    this.filePath = blobs.filePath.bind(blobs);
  }

  private path(imageId: string, run: number): string {
    return this.filePath(stagingKey(imageId, run, 'upload'));
  }

  async create(imageId: string, run: number): Promise<void> {
    const path = this.path(imageId, run);
    await mkdir(dirname(path), { recursive: true });
    const handle = await open(path, 'w');
    await handle.close();
  }

  async offset(imageId: string, run: number): Promise<number | null> {
    try {
      return (await stat(this.path(imageId, run))).size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
  }

  async append(imageId: string, run: number, offset: number, chunks: AsyncIterable<Uint8Array>, onWritten: (chunk: Uint8Array) => void): Promise<number> {
    const handle = await open(this.path(imageId, run), 'r+');
    let position = offset;
    try {
      const size = (await handle.stat()).size;
      if (size !== offset) throw new Error(`staged size ${size} is not the expected offset ${offset}`);
      for await (const chunk of chunks) {
        let done = 0;
        while (done < chunk.length) {
          const { bytesWritten } = await handle.write(chunk, done, chunk.length - done, position + done);
          done += bytesWritten;
        }
        position += chunk.length;
        onWritten(chunk);
      }
      return position;
    } finally {
      // Whatever happened, what was written is on disk before the offset is reported.
      await handle.datasync().catch(() => {});
      await handle.close();
    }
  }

  async truncate(imageId: string, run: number, offset: number): Promise<void> {
    await truncate(this.path(imageId, run), offset);
  }

  readBack(imageId: string, run: number, end: number): Readable {
    return createReadStream(this.path(imageId, run), { start: 0, end: end - 1, highWaterMark: 1024 * 1024 });
  }

  finish(imageId: string, run: number): string {
    return stagingKey(imageId, run, 'upload');
  }
}
