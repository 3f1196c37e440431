/**
 * Where a tus upload's bytes wait. Everything else (protocol, the image lifecycle) sees only
 * create / offset / append-at-offset / hash state / finish, so the bytes can be a local file
 * (FileTusStaging, below) or an S3 multipart upload (S3TusStaging, ./s3-staging.ts).
 */
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rm, stat, truncate } from 'node:fs/promises';
import { dirname } from 'node:path';
import { stagingKey } from '../../core/blob-keys.js';
import type { BlobStore } from '../../core/ports.js';
import { RunningDigests, rebuildStats, type UploadDigests } from './digests.js';

export interface AppendOptions {
  /** Sees each chunk as it is taken, in order, after `digests` (a PATCH's own Upload-Checksum). */
  onChunk?: (chunk: Uint8Array) => void;
  /**
   * Makes the append all or nothing (tus's checksum extension): called once the body has ended,
   * before the bytes count as staged; when it throws, or anything else fails, the staged bytes
   * end at `offset` again and the caller goes back to its own copy of the digests.
   */
  verify?: () => void;
  /** Aborted when the writer lost its lease (another process may write now): nothing more is staged. */
  signal?: AbortSignal;
}

export interface TusStaging {
  /** An empty staging for an upload of `length` bytes (replacing any leftover). */
  create(imageId: string, run: number, length: number): Promise<void>;
  /** Bytes staged so far, or null when nothing is staged (removed, never created). */
  offset(imageId: string, run: number): Promise<number | null>;
  /** Hash state for a new upload, of the kind restoreDigests gives back. */
  newDigests(): Promise<UploadDigests>;
  /**
   * Hash state over the first `offset` staged bytes, for a process that does not hold it (a
   * restart, another API process): rebuilt from what is staged, never from the client.
   */
  restoreDigests(imageId: string, run: number, offset: number): Promise<UploadDigests>;
  /**
   * Appends `chunks` at `offset` (which must be the current end), each hashed into `digests`.
   * Without `verify`, the bytes are durable when it resolves and also when it rejects: what was
   * taken before the failure stays as far as the store took it (tus keeps a cut PATCH's bytes).
   */
  append(imageId: string, run: number, offset: number, chunks: AsyncIterable<Uint8Array>, digests: UploadDigests, options?: AppendOptions): Promise<number>;
  /** The blob key of the complete bytes, for the pipeline (all `length` bytes are staged). */
  finish(imageId: string, run: number): Promise<string>;
}

/**
 * Beside a staging file while a checksummed PATCH appends to it: the offset before that PATCH.
 * Its bytes are written as they come, so a process that dies before the checksum is checked
 * leaves them in the file; the mark says they were never verified, and they are not counted.
 */
const UNVERIFIED_MARK = '.unverified-from';

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

  private markPath(imageId: string, run: number): string {
    return this.path(imageId, run) + UNVERIFIED_MARK;
  }

  async create(imageId: string, run: number): Promise<void> {
    const path = this.path(imageId, run);
    await mkdir(dirname(path), { recursive: true });
    await rm(this.markPath(imageId, run), { force: true });
    const handle = await open(path, 'w');
    await handle.close();
  }

  async offset(imageId: string, run: number): Promise<number | null> {
    let size: number;
    try {
      size = (await stat(this.path(imageId, run))).size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
    const verified = await this.verifiedEnd(imageId, run);
    return verified === null ? size : Math.min(size, verified);
  }

  /** Where the verified bytes end while a checksummed PATCH is (or was, before a crash) appending; null when none is. */
  private async verifiedEnd(imageId: string, run: number): Promise<number | null> {
    const text = await readFile(this.markPath(imageId, run), 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return null;
      throw error;
    });
    if (text === null) return null;
    const end = Number(text);
    // A mark cut by a crash while it was written: nothing after it can be trusted either.
    return Number.isSafeInteger(end) && end >= 0 ? end : 0;
  }

  /** Written and made durable before a checksummed PATCH's first byte is. */
  private async markUnverified(imageId: string, run: number, offset: number): Promise<void> {
    const path = this.markPath(imageId, run);
    const handle = await open(path, 'w');
    try {
      await handle.writeFile(String(offset));
      await handle.datasync();
    } finally {
      await handle.close();
    }
    // Its name too: after a power cut, a mark that vanished would let the bytes count.
    const dir = await open(dirname(path), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  async newDigests(): Promise<UploadDigests> {
    return RunningDigests.empty();
  }

  /** Node's hash state cannot be saved: it is rebuilt by reading back exactly the staged bytes. */
  async restoreDigests(imageId: string, run: number, offset: number): Promise<UploadDigests> {
    const staged = offset > 0 ? createReadStream(this.path(imageId, run), { start: 0, end: offset - 1, highWaterMark: 1024 * 1024 }) : null;
    const rebuilt = await RunningDigests.rebuild(staged, offset);
    rebuildStats.uploads += 1;
    rebuildStats.bytes += offset;
    return rebuilt;
  }

  async append(imageId: string, run: number, offset: number, chunks: AsyncIterable<Uint8Array>, digests: UploadDigests, options: AppendOptions = {}): Promise<number> {
    const path = this.path(imageId, run);
    const handle = await open(path, 'r+');
    let position = offset;
    let kept = false;
    let marked = false;
    try {
      let size = (await handle.stat()).size;
      const verified = await this.verifiedEnd(imageId, run);
      if (verified !== null) {
        // A checksummed PATCH died before its check (this caller holds the upload's lease, so
        // no live request is writing): its bytes go, and the upload resumes where they began.
        if (size > verified) await handle.truncate(verified);
        await handle.datasync();
        await rm(this.markPath(imageId, run), { force: true });
        size = Math.min(size, verified);
      }
      if (size !== offset) throw new Error(`staged size ${size} is not the expected offset ${offset}`);
      if (options.verify) {
        await this.markUnverified(imageId, run, offset);
        marked = true;
      }
      for await (const chunk of chunks) {
        options.signal?.throwIfAborted();
        let done = 0;
        while (done < chunk.length) {
          const { bytesWritten } = await handle.write(chunk, done, chunk.length - done, position + done);
          done += bytesWritten;
        }
        position += chunk.length;
        digests.update(chunk);
        options.onChunk?.(chunk);
      }
      options.verify?.();
      kept = true;
      return position;
    } finally {
      // Whatever happened, what is kept is on disk before the offset is reported.
      if (!kept && options.verify) await handle.truncate(offset).catch(() => truncate(path, offset));
      await handle.datasync().catch(() => {});
      await handle.close();
      // Only once the verified bytes are durable do they count.
      if (marked) await rm(this.markPath(imageId, run), { force: true });
    }
  }

  async finish(imageId: string, run: number): Promise<string> {
    return stagingKey(imageId, run, 'upload');
  }
}
