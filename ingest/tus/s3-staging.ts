/**
 * TusStaging over S3 (as tusd's s3store): a tus upload is one S3 multipart upload to the image's
 * staging key, so the complete bytes become the staged object with no copy. S3 parts must be at
 * least 5 MiB (but the last), and a PATCH may end anywhere, so:
 * - every full part the PATCH fills is uploaded as the next S3 part and committed at once;
 * - the bytes after the last full part (the tail) are kept as the body of one small "commit"
 *   object, `<staging key>.tus`, whose metadata names the multipart upload, how many parts and
 *   bytes it holds, and the md5/sha512 state over all of them (hash-wasm, saved).
 * Rewriting the commit object is the commit point: one PutObject, atomic in S3. A part uploaded
 * after it (a process killed mid-part, a PATCH whose checksum failed) is not counted, and its
 * number is never used again: S3 would replace it, but SeaweedFS lists both uploads of a part
 * number and may complete with the stale one. So the commit lists the committed part numbers (as
 * ranges, "1-40,42-97"), and an append starts after the highest number S3 lists. Any API process can therefore resume:
 * offset = committed part bytes + tail size, and the hash state is loaded, not rebuilt (the
 * parts of an unfinished multipart upload cannot be read back through the S3 API).
 * Termination, expiry and the sweepers remove the staging key, which aborts the multipart upload.
 * The commit object outlives the finish and goes with the image's staging, so that a HEAD can
 * still complete an upload whose process died between the finish and the catalog's record.
 */
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, GetObjectCommand,
  HeadObjectCommand, ListPartsCommand, PutObjectCommand, UploadPartCommand, type CompletedPart,
} from '@aws-sdk/client-s3';
import { stagingKey } from '../../core/blob-keys.js';
import { BlobNotFoundError, BlobStoreUnavailableError } from '../../core/ports.js';
import type { S3BlobStore } from '../../infra/storage/s3-blob-store.js';
import { SavableDigests, rebuildStats, type UploadDigests } from './digests.js';
import type { AppendOptions, TusStaging } from './staging.js';
import { isStoreOutage } from '../../core/store-outage.js';

const MiB = 1024 * 1024;
/** S3's smallest part but the last. */
export const S3_MIN_PART_BYTES = 5 * MiB;
const S3_MAX_PARTS = 10_000;
/** Part numbers kept spare for parts that were uploaded but never committed. */
const SPARE_PART_NUMBERS = 1_000;
/** Memory held per PATCH in flight, and the most a tail object (rewritten by each PATCH) can hold. */
const PREFERRED_PART_BYTES = 8 * MiB;

/** The part size of an upload of `length` bytes: fixed at creation so every process cuts the same parts. */
export function tusPartSize(length: number, preferred = PREFERRED_PART_BYTES): number {
  return Math.max(S3_MIN_PART_BYTES, preferred, Math.ceil(length / (S3_MAX_PARTS - SPARE_PART_NUMBERS) / MiB) * MiB);
}

/** What the commit object's metadata says. */
interface Commit {
  uploadId: string;
  partSize: number;
  length: number;
  /** The committed part numbers, ascending, each partSize bytes (the last may be shorter once all bytes are in). */
  parts: number[];
  partsBytes: number;
  /** SavableDigests state over partsBytes + the tail. */
  hash: string;
}

const EMPTY = Buffer.alloc(0);
/** Parts uploaded at once by one PATCH while it goes on receiving (each held in memory). */
const PARTS_IN_FLIGHT = 2;

interface InflightPart {
  body: Buffer;
  /** Counted among the commit's parts (uploaded, and every part before it too). */
  counted: boolean;
  /** Resolves once counted (and committed, when its hash state is known). */
  committed: Promise<void>;
}

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
    await this.commit(imageId, run, { uploadId: created.UploadId, partSize: this.partSizeFor(length), length, parts: [], partsBytes: 0, hash: digests.save() }, EMPTY);
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
    const next = { ...staged.commit, parts: [...staged.commit.parts] };
    if (next.partsBytes + staged.tail.length !== offset) throw new Error(`staged size ${next.partsBytes + staged.tail.length} is not the expected offset ${offset}`);
    let partNumber = await this.nextPartNumber(imageId, run, next);
    // A checksummed PATCH commits nothing until its checksum is known to match.
    const provisional = Boolean(options.verify);
    /** Parts being uploaded, oldest first; each is committed as soon as it and all before it are in. */
    const inflight: InflightPart[] = [];
    /** The commits, one after the other in part order; a failed part stops those after it. */
    let chain: Promise<void> = Promise.resolve();
    let pieces: Buffer[] = [];
    let buffered = 0;
    /** Bytes of the upload up to the end of the buffer. */
    let total = offset;
    const refuseIfLost = () => { if (options.signal?.aborted) throw options.signal.reason; };
    // Every byte after the committed parts (parts not counted, the buffer) is the tail.
    const commitTail = async () => {
      refuseIfLost();
      const rest = [...inflight.filter((p) => !p.counted).map((p) => p.body), ...pieces];
      await this.commit(imageId, run, { ...next, hash: digests.save() }, Buffer.concat(rest));
    };
    const settleOldest = async () => {
      await inflight[0]!.committed;
      inflight.shift();
    };
    // Sends the first `size` buffered bytes as the next part. `hash`: the state at the part's
    // end, or null for a part cut from a restored tail (unknown there: a later commit covers it).
    // The bytes leave the buffer only once the part is in flight, so a failure never loses them.
    const startPart = async (size: number, hash: string | null) => {
      if (inflight.length >= PARTS_IN_FLIGHT) await settleOldest();
      const joined = Buffer.concat(pieces, buffered);
      const body = joined.subarray(0, size);
      pieces = size < joined.length ? [joined.subarray(size)] : [];
      buffered = joined.length - size;
      const number = partNumber;
      partNumber += 1;
      const uploaded = this.uploadPart(imageId, run, next.uploadId, number, body);
      const part: InflightPart = { body, counted: false, committed: Promise.resolve() };
      part.committed = chain.then(() => uploaded).then(async () => {
        next.parts.push(number);
        next.partsBytes += body.length;
        part.counted = true;
        if (!provisional && hash !== null) {
          refuseIfLost();
          await this.commit(imageId, run, { ...next, hash }, EMPTY);
        }
      });
      uploaded.catch(() => {});
      part.committed.catch(() => {}); // awaited in order by settleOldest
      chain = part.committed;
      inflight.push(part);
    };
    try {
      if (staged.tail.length > 0) {
        pieces.push(staged.tail);
        buffered = staged.tail.length;
      }
      // A tail left long by failed part uploads: its full parts go first.
      while (buffered >= next.partSize) await startPart(next.partSize, null);
      for await (const chunk of chunks) {
        const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        for (let at = 0; at < bytes.length;) {
          // Cut at the part boundary, so each part's saved hash state ends exactly where it does.
          const piece = bytes.subarray(at, at + Math.min(bytes.length - at, next.partSize - buffered));
          at += piece.length;
          pieces.push(piece);
          buffered += piece.length;
          total += piece.length;
          digests.update(piece);
          options.onChunk?.(piece);
          if (buffered === next.partSize) await startPart(buffered, digests.save());
        }
      }
      options.verify?.();
      // The last bytes go as the (short) last part now, so finishing needs no read of them.
      if (buffered > 0 && total === next.length) await startPart(buffered, digests.save());
      while (inflight.length > 0) await settleOldest();
      const end = next.partsBytes + buffered;
      await commitTail();
      return end;
    } catch (error) {
      if (!provisional && !isStoreOutage(error)) {
        // tus keeps what a cut PATCH brought: the parts that went in, in order, and every byte
        // after them (a part that failed, those after it, the partial part) as the tail.
        while (inflight.length > 0) {
          try {
            await settleOldest();
          } catch {
            break;
          }
        }
        await commitTail().catch(() => {});
      } else {
        // A checksummed PATCH keeps nothing. Nor does one the store failed under (unreachable,
        // timing out): its tail commit would only wait out the store's timeouts once more before
        // the client hears 503; the client sends again from the offset committed so far. The
        // parts in flight are let finish either way, so no part number is taken twice.
        await Promise.allSettled(inflight.map((p) => p.committed));
      }
      throw error;
    }
  }

  async finish(imageId: string, run: number): Promise<string> {
    const key = this.key(imageId, run);
    const staged = await this.read(imageId, run);
    if (!staged) throw new BlobNotFoundError(key);
    const { commit, tail } = staged;
    // Run again after a crash (HEAD completes an upload found fully staged): the object is whole.
    if ((await this.store.stat(key))?.size === commit.length) return key;
    if (commit.partsBytes + tail.length !== commit.length) throw new Error(`only ${commit.partsBytes + tail.length} of ${commit.length} bytes are staged`);
    const objectKey = this.store.bucketKey(key);
    if (commit.parts.length === 0) {
      // Nothing in parts (an empty upload): the tail is the object.
      await s3(`store ${key}`, () => this.store.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: objectKey, Body: tail, ContentLength: tail.length, ContentType: 'application/octet-stream' })));
      await this.store.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey, UploadId: commit.uploadId })).catch(() => {});
    } else {
      const parts = [...commit.parts];
      if (tail.length > 0) {
        const number = await this.nextPartNumber(imageId, run, commit);
        await this.uploadPart(imageId, run, commit.uploadId, number, tail);
        parts.push(number);
      }
      const listed = await this.listParts(key, commit.uploadId, parts);
      await s3(`complete the multipart upload of ${key}`, () => this.store.client.send(new CompleteMultipartUploadCommand({
        Bucket: this.bucket, Key: objectKey, UploadId: commit.uploadId, MultipartUpload: { Parts: listed },
      })));
    }
    // The commit object stays until the image's staging is removed (it is under the same prefix):
    // a process that dies before the catalog records the finished upload leaves the length and
    // hash state that a HEAD needs to complete it.
    return key;
  }

  /** The committed parts as S3 lists them, by number (a number S3 lists twice was uploaded twice with the same bytes). */
  private async listParts(key: string, uploadId: string, numbers: number[]): Promise<CompletedPart[]> {
    const wanted = new Set(numbers);
    const found = new Map<number, CompletedPart>();
    for (const part of await this.listedParts(key, uploadId, 0)) {
      if (part.PartNumber && part.ETag && wanted.has(part.PartNumber)) found.set(part.PartNumber, { PartNumber: part.PartNumber, ETag: part.ETag });
    }
    return numbers.map((n) => {
      const part = found.get(n);
      if (!part) throw new BlobStoreUnavailableError(`S3 lists no part ${n} of the multipart upload of ${key}`);
      return part;
    });
  }

  /** Parts S3 lists after part number `after`. */
  private async listedParts(key: string, uploadId: string, after: number): Promise<{ PartNumber?: number; ETag?: string }[]> {
    const parts: { PartNumber?: number; ETag?: string }[] = [];
    let marker: string | undefined = after > 0 ? String(after) : undefined;
    do {
      const out = await s3(`list the parts of ${key}`, () => this.store.client.send(new ListPartsCommand({
        Bucket: this.bucket, Key: this.store.bucketKey(key), UploadId: uploadId, ...(marker ? { PartNumberMarker: marker } : {}),
      })));
      parts.push(...(out.Parts ?? []));
      marker = out.IsTruncated ? out.NextPartNumberMarker : undefined;
    } while (marker);
    return parts;
  }

  /** A part number no upload has used: after the committed ones and any uncommitted part S3 lists beyond them. */
  private async nextPartNumber(imageId: string, run: number, commit: Commit): Promise<number> {
    const last = commit.parts.at(-1) ?? 0;
    const beyond = await this.listedParts(this.key(imageId, run), commit.uploadId, last);
    return Math.max(last, ...beyond.map((p) => p.PartNumber ?? 0)) + 1;
  }

  protected async uploadPart(imageId: string, run: number, uploadId: string, partNumber: number, body: Buffer): Promise<void> {
    const key = this.key(imageId, run);
    if (partNumber > S3_MAX_PARTS) throw new BlobStoreUnavailableError(`the multipart upload of ${key} ran out of part numbers (too many interrupted PATCHes); start a new upload`);
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
        'tus-parts': encodeRanges(commit.parts),
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
    partSize: count('tus-part-size'), length: count('tus-length'), parts: decodeRanges(m['tus-parts'] ?? ''), partsBytes: count('tus-parts-bytes'),
  };
}

/** Ascending part numbers as ranges: [1,2,3,5] → "1-3,5" (uninterrupted uploads stay one range). */
export function encodeRanges(numbers: number[]): string {
  const ranges: string[] = [];
  for (let i = 0; i < numbers.length;) {
    let j = i;
    while (j + 1 < numbers.length && numbers[j + 1] === numbers[j]! + 1) j += 1;
    ranges.push(i === j ? String(numbers[i]) : `${numbers[i]}-${numbers[j]}`);
    i = j + 1;
  }
  return ranges.join(',');
}

export function decodeRanges(text: string): number[] {
  if (text === '') return [];
  const numbers: number[] = [];
  for (const range of text.split(',')) {
    const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(range);
    if (!match) throw new Error('the tus commit object has no valid tus-parts');
    const from = Number(match[1]);
    const to = Number(match[2] ?? match[1]);
    if (from < 1 || to < from || to > S3_MAX_PARTS || from <= (numbers.at(-1) ?? 0)) throw new Error('the tus commit object has no valid tus-parts');
    for (let n = from; n <= to; n++) numbers.push(n);
  }
  return numbers;
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
