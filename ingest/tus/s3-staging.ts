/**
 * TusStaging over S3 (as tusd's s3store): a tus upload is one S3 multipart upload to the image's
 * staging key, so the complete bytes become the staged object with no copy. S3 parts must be at
 * least 5 MiB (but the last), and a PATCH may end anywhere, so:
 * - every full part the PATCH fills is uploaded as the next S3 part and committed at once;
 * - the bytes after the last full part (the tail) are kept as the body of one small "commit"
 *   object, `<staging key>.tus`, whose metadata names the multipart upload, how many parts and
 *   bytes it holds, and the md5/sha512 state over all of them (hash-wasm, saved).
 * Rewriting the commit object is the commit point: one PutObject, atomic in S3. Parts uploaded
 * after it (a process killed mid-part, a PATCH whose checksum failed) are not counted and are
 * overwritten by the next upload of that part number. Any API process can therefore resume:
 * offset = committed part bytes + tail size, and the hash state is loaded, not rebuilt (the
 * parts of an unfinished multipart upload cannot be read back through the S3 API).
 * Termination, expiry and the sweepers remove the staging key, which aborts the multipart upload.
 */
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, DeleteObjectCommand, GetObjectCommand,
  HeadObjectCommand, ListPartsCommand, PutObjectCommand, UploadPartCommand, type CompletedPart,
} from '@aws-sdk/client-s3';
import { stagingKey } from '../../core/blob-keys.js';
import { BlobNotFoundError, BlobStoreUnavailableError } from '../../core/ports.js';
import type { S3BlobStore } from '../../infra/storage/s3-blob-store.js';
import { SavableDigests, rebuildStats, type UploadDigests } from './digests.js';
import type { AppendOptions, TusStaging } from './staging.js';

const MiB = 1024 * 1024;
/** S3's smallest part but the last. */
export const S3_MIN_PART_BYTES = 5 * MiB;
const S3_MAX_PARTS = 10_000;
/** Memory held per PATCH in flight, and the most a tail object (rewritten by each PATCH) can hold. */
const PREFERRED_PART_BYTES = 8 * MiB;

/** The part size of an upload of `length` bytes: fixed at creation so every process cuts the same parts. */
export function tusPartSize(length: number, preferred = PREFERRED_PART_BYTES): number {
  return Math.max(S3_MIN_PART_BYTES, preferred, Math.ceil(length / S3_MAX_PARTS / MiB) * MiB);
}

/** What the commit object's metadata says. */
interface Commit {
  uploadId: string;
  partSize: number;
  length: number;
  /** Parts 1..parts are committed, each partSize bytes (the last may be shorter once all bytes are in). */
  parts: number;
  partsBytes: number;
  /** SavableDigests state over partsBytes + the tail. */
  hash: string;
}

const EMPTY = Buffer.alloc(0);

export class S3TusStaging implements TusStaging {
  constructor(private readonly store: S3BlobStore, private readonly partSizeFor: (length: number) => number = tusPartSize) {}

  private key(imageId: string, run: number): string {
    return stagingKey(imageId, run, 'upload');
  }

  private commitKey(imageId: string, run: number): string {
    return `${this.key(imageId, run)}.tus`;
  }

  private get bucket(): string {
    return this.store.settings.bucket;
  }

  async create(imageId: string, run: number, length: number): Promise<void> {
    const key = this.key(imageId, run);
    // A leftover of the same run (a retried creation) goes first, unfinished multipart uploads included.
    await s3(`clear ${key}`, () => Promise.all([this.store.delete(key), this.store.delete(this.commitKey(imageId, run))]));
    const created = await s3(`start a multipart upload to ${key}`, () => this.store.client.send(new CreateMultipartUploadCommand({
      Bucket: this.bucket, Key: this.store.bucketKey(key), ContentType: 'application/octet-stream',
    })));
    if (!created.UploadId) throw new BlobStoreUnavailableError(`S3 gave no upload id for ${key}`);
    const digests = await SavableDigests.empty();
    await this.commit(imageId, run, { uploadId: created.UploadId, partSize: this.partSizeFor(length), length, parts: 0, partsBytes: 0, hash: digests.save() }, EMPTY);
  }

  async offset(imageId: string, run: number): Promise<number | null> {
    const head = await this.head(imageId, run);
    return head ? head.commit.partsBytes + head.tailBytes : null;
  }

  async newDigests(): Promise<UploadDigests> {
    return SavableDigests.empty();
  }

  /** The saved state: no staged byte is read (rebuildStats counts the upload, with 0 bytes). */
  async restoreDigests(imageId: string, run: number, offset: number): Promise<UploadDigests> {
    const head = await this.head(imageId, run);
    if (!head) throw new BlobNotFoundError(this.commitKey(imageId, run));
    const staged = head.commit.partsBytes + head.tailBytes;
    if (staged !== offset) throw new Error(`the saved hash state covers ${staged} bytes, not ${offset}`);
    const digests = await SavableDigests.load(head.commit.hash, offset);
    rebuildStats.uploads += 1;
    return digests;
  }

  async append(imageId: string, run: number, offset: number, chunks: AsyncIterable<Uint8Array>, digests: UploadDigests, options: AppendOptions = {}): Promise<number> {
    if (!(digests instanceof SavableDigests)) throw new Error('S3 tus staging needs SavableDigests');
    const staged = await this.read(imageId, run);
    if (!staged) throw new BlobNotFoundError(this.commitKey(imageId, run));
    const next = { ...staged.commit };
    if (next.partsBytes + staged.tail.length !== offset) throw new Error(`staged size ${next.partsBytes + staged.tail.length} is not the expected offset ${offset}`);
    // A checksummed PATCH commits nothing until its checksum is known to match.
    const provisional = Boolean(options.verify);
    let pieces: Buffer[] = staged.tail.length > 0 ? [staged.tail] : [];
    let buffered = staged.tail.length;
    const sendPart = async () => {
      await this.uploadPart(imageId, run, next.uploadId, next.parts + 1, Buffer.concat(pieces, buffered));
      next.parts += 1;
      next.partsBytes += buffered;
      pieces = [];
      buffered = 0;
    };
    const commitNow = () => options.signal?.aborted ? Promise.reject(options.signal.reason) : this.commit(imageId, run, { ...next, hash: digests.save() }, Buffer.concat(pieces, buffered));
    try {
      // A tail left full by a part that failed to upload goes first.
      if (buffered >= next.partSize) {
        await sendPart();
        if (!provisional) await commitNow();
      }
      for await (const chunk of chunks) {
        const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        for (let at = 0; at < bytes.length;) {
          // Cut at the part boundary, so the committed hash state ends exactly where the parts do.
          const piece = bytes.subarray(at, at + Math.min(bytes.length - at, next.partSize - buffered));
          at += piece.length;
          pieces.push(piece);
          buffered += piece.length;
          digests.update(piece);
          options.onChunk?.(piece);
          if (buffered === next.partSize) {
            await sendPart();
            if (!provisional) await commitNow();
          }
        }
      }
      options.verify?.();
      // The last bytes go as the (short) last part now, so finishing needs no read of them.
      if (buffered > 0 && next.partsBytes + buffered === next.length) await sendPart();
      const end = next.partsBytes + buffered;
      await commitNow();
      return end;
    } catch (error) {
      // tus keeps what a cut PATCH brought: the bytes not yet in a part become the tail.
      if (!provisional) await commitNow().catch(() => {});
      throw error;
    }
  }

  async finish(imageId: string, run: number): Promise<string> {
    const key = this.key(imageId, run);
    const staged = await this.read(imageId, run);
    if (!staged) {
      // A finish that completed before (its commit object is gone once the object exists).
      if (await this.store.stat(key)) return key;
      throw new BlobNotFoundError(key);
    }
    const { commit, tail } = staged;
    if (commit.partsBytes + tail.length !== commit.length) throw new Error(`only ${commit.partsBytes + tail.length} of ${commit.length} bytes are staged`);
    const objectKey = this.store.bucketKey(key);
    if (commit.parts === 0) {
      // Nothing in parts (an empty upload): the tail is the object.
      await s3(`store ${key}`, () => this.store.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: objectKey, Body: tail, ContentLength: tail.length, ContentType: 'application/octet-stream' })));
      await this.store.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey, UploadId: commit.uploadId })).catch(() => {});
    } else {
      let parts = commit.parts;
      if (tail.length > 0) {
        await this.uploadPart(imageId, run, commit.uploadId, parts + 1, tail);
        parts += 1;
      }
      const listed = await this.listParts(key, commit.uploadId, parts);
      await s3(`complete the multipart upload of ${key}`, () => this.store.client.send(new CompleteMultipartUploadCommand({
        Bucket: this.bucket, Key: objectKey, UploadId: commit.uploadId, MultipartUpload: { Parts: listed },
      })));
    }
    await s3(`remove ${this.commitKey(imageId, run)}`, () => this.store.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.store.bucketKey(this.commitKey(imageId, run)) })));
    return key;
  }

  /** Parts 1..count as S3 lists them (later uploads of a part number replace earlier ones). */
  private async listParts(key: string, uploadId: string, count: number): Promise<CompletedPart[]> {
    const found = new Map<number, CompletedPart>();
    let marker: string | undefined;
    do {
      const out = await s3(`list the parts of ${key}`, () => this.store.client.send(new ListPartsCommand({
        Bucket: this.bucket, Key: this.store.bucketKey(key), UploadId: uploadId, ...(marker ? { PartNumberMarker: marker } : {}),
      })));
      for (const part of out.Parts ?? []) {
        if (part.PartNumber && part.ETag && part.PartNumber <= count) found.set(part.PartNumber, { PartNumber: part.PartNumber, ETag: part.ETag });
      }
      marker = out.IsTruncated ? out.NextPartNumberMarker : undefined;
    } while (marker);
    const parts = Array.from({ length: count }, (_, i) => found.get(i + 1));
    const missing = parts.findIndex((p) => !p);
    if (missing >= 0) throw new BlobStoreUnavailableError(`S3 lists no part ${missing + 1} of the multipart upload of ${key}`);
    return parts as CompletedPart[];
  }

  private async uploadPart(imageId: string, run: number, uploadId: string, partNumber: number, body: Buffer): Promise<void> {
    const key = this.key(imageId, run);
    await s3(`upload part ${partNumber} of ${key}`, () => this.store.client.send(new UploadPartCommand({
      Bucket: this.bucket, Key: this.store.bucketKey(key), UploadId: uploadId, PartNumber: partNumber, Body: body, ContentLength: body.length,
    })));
  }

  private async commit(imageId: string, run: number, commit: Commit, tail: Buffer): Promise<void> {
    const key = this.commitKey(imageId, run);
    await s3(`commit ${key}`, () => this.store.client.send(new PutObjectCommand({
      Bucket: this.bucket, Key: this.store.bucketKey(key), Body: tail, ContentLength: tail.length, ContentType: 'application/octet-stream',
      Metadata: {
        'tus-upload-id': commit.uploadId,
        'tus-part-size': String(commit.partSize),
        'tus-length': String(commit.length),
        'tus-parts': String(commit.parts),
        'tus-parts-bytes': String(commit.partsBytes),
        'tus-hash': commit.hash,
      },
    })));
  }

  private async head(imageId: string, run: number): Promise<{ commit: Commit; tailBytes: number } | null> {
    try {
      const out = await this.store.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.store.bucketKey(this.commitKey(imageId, run)) }));
      return { commit: parseCommit(out.Metadata), tailBytes: out.ContentLength ?? 0 };
    } catch (error) {
      if (notFound(error)) return null;
      throw new BlobStoreUnavailableError(`S3 did not answer for ${this.commitKey(imageId, run)}: ${(error as Error).message}`, { cause: error });
    }
  }

  private async read(imageId: string, run: number): Promise<{ commit: Commit; tail: Buffer } | null> {
    try {
      const out = await this.store.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.store.bucketKey(this.commitKey(imageId, run)) }));
      const tail = Buffer.from(await out.Body!.transformToByteArray());
      return { commit: parseCommit(out.Metadata), tail };
    } catch (error) {
      if (notFound(error)) return null;
      throw new BlobStoreUnavailableError(`S3 did not answer for ${this.commitKey(imageId, run)}: ${(error as Error).message}`, { cause: error });
    }
  }
}

function parseCommit(metadata: Record<string, string> | undefined): Commit {
  const m = metadata ?? {};
  const count = (name: string) => {
    const value = m[name];
    if (!value || !/^\d{1,16}$/.test(value)) throw new Error(`the tus commit object has no valid ${name}`);
    return Number(value);
  };
  if (!m['tus-upload-id'] || !m['tus-hash']) throw new Error('the tus commit object names no multipart upload or hash state');
  return {
    uploadId: m['tus-upload-id'], hash: m['tus-hash'],
    partSize: count('tus-part-size'), length: count('tus-length'), parts: count('tus-parts'), partsBytes: count('tus-parts-bytes'),
  };
}

function notFound(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

/** An S3 call; its failure is the store's (503 blob_store_unavailable), not the client's. */
async function s3<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof BlobStoreUnavailableError) throw error;
    throw new BlobStoreUnavailableError(`S3 refused to ${what}: ${(error as Error)?.message ?? String(error)}`, { cause: error });
  }
}
