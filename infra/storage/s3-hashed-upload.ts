/**
 * One object written to S3 from a stream, hashed on the hash pool in the same pass.
 *
 * Each byte is copied once on the main thread, from the source's chunk into a shared part
 * buffer; the hash threads read that buffer in place (1 MiB windows, while it fills) and the
 * part's request sends it from there. At most `queueSize` parts are in flight and one fills,
 * so memory is (queueSize + 1) × partSize per upload. A source of one part or less is a single
 * PutObject; a bigger one a multipart upload, completed after its last part and aborted on any
 * failure (a writer killed mid-way leaves an unfinished upload the sweepers list and delete).
 *
 * (@aws-sdk/lib-storage's Upload does the same with client-s3 but concatenates each part into a
 * fresh buffer: a second copy of every byte and a 16 MiB allocation per part, the main thread's
 * largest cost in a profile of a 512 MiB upload.)
 */
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, PutObjectCommand, UploadPartCommand,
  type CompletedPart, type S3Client,
} from '@aws-sdk/client-s3';
import { BlobStoreUnavailableError, type WrittenBlob } from '../../core/ports.js';
import { HashPool, guardedChunks } from '../../ingest/hashing/index.js';
import type { PartBuffer, PartBufferCache } from './s3-part-buffers.js';

const HASH_WINDOW = 1024 * 1024;
/** S3 takes at most this many parts in one upload. */
const MAX_PARTS = 10_000;

export interface HashedUploadTarget {
  client: S3Client;
  bucket: string;
  /** The object's full key (prefix included). */
  objectKey: string;
  /** Shown in errors: the blob key. */
  label: string;
  queueSize: number;
  buffers: PartBufferCache;
  pool?: HashPool;
}

export interface HashedUploadOptions {
  maxBytes: number;
  idleMs?: number;
  signal?: AbortSignal;
}

/** Counts of what an upload sent, for tests and benchmarks. */
export interface HashedUploadResult extends WrittenBlob {
  parts: number;
}

export async function uploadHashed(
  target: HashedUploadTarget,
  source: AsyncIterable<Uint8Array> | NodeJS.ReadableStream,
  options: HashedUploadOptions,
): Promise<HashedUploadResult> {
  const { client, bucket, objectKey: Key } = target;
  const partSize = target.buffers.partSize;
  const stop = new AbortController();
  const onAbort = (): void => stop.abort(options.signal!.reason);
  if (options.signal?.aborted) throw options.signal.reason;
  options.signal?.addEventListener('abort', onAbort, { once: true });

  const lease = target.buffers.lease(target.queueSize + 1);
  const session = (target.pool ?? HashPool.shared()).open();
  let digesting = false;
  let uploadId: Promise<string> | null = null;
  const parts: CompletedPart[] = [];
  const sending = new Set<Promise<void>>();
  let storeFailure: BlobStoreUnavailableError | null = null;
  let part: PartBuffer | null = null;
  let partNumber = 0;
  let size = 0;
  let fill = 0;
  let hashed = 0;

  /** A request to the store; its failure is the store's (503), unless the upload was already stopping. */
  const send = async <T>(request: (options: { abortSignal: AbortSignal }) => Promise<T>): Promise<T> => {
    try {
      return await request({ abortSignal: stop.signal });
    } catch (error) {
      if (stop.signal.aborted) throw stop.signal.reason;
      throw new BlobStoreUnavailableError(`S3 did not take ${target.label}: ${(error as Error)?.message ?? String(error)}`, { cause: error });
    }
  };

  /** A shared buffer is hashed in place; an ordinary one (all shared ones busy) is copied into the pool's slots. */
  const hashUpTo = async (buffer: PartBuffer, end: number): Promise<void> => {
    while (hashed < end) {
      const n = Math.min(HASH_WINDOW, buffer.shared ? Infinity : session.slotBytes, end - hashed);
      if (buffer.shared) {
        buffer.refs++;
        session.hashShared(buffer.bytes.subarray(hashed, hashed + n), () => lease.unref(buffer));
      } else {
        const slot = await session.acquire();
        slot.view.set(buffer.bytes.subarray(hashed, hashed + n));
        session.submit(slot, n);
      }
      hashed += n;
    }
  };

  const sendPart = (buffer: PartBuffer, n: number): void => {
    const PartNumber = ++partNumber;
    uploadId ??= send((o) => client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key, ContentType: 'application/octet-stream' }), o))
      .then((out) => {
        if (!out.UploadId) throw new BlobStoreUnavailableError(`S3 gave no upload id for ${target.label}`);
        return out.UploadId;
      });
    buffer.refs++;
    const sent: Promise<void> = (async () => {
      const UploadId = await uploadId!;
      const out = await send((o) => client.send(new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber, Body: buffer.bytes.subarray(0, n), ContentLength: n }), o));
      if (!out.ETag) throw new BlobStoreUnavailableError(`S3 gave no ETag for part ${PartNumber} of ${target.label}`);
      parts.push({ PartNumber, ETag: out.ETag });
    })().catch((error: unknown) => {
      if (error instanceof BlobStoreUnavailableError) storeFailure ??= error;
      if (!stop.signal.aborted) stop.abort(error); // the source stops; the other parts are cancelled
    }).finally(() => {
      sending.delete(sent);
      lease.unref(buffer);
    });
    sending.add(sent);
  };

  try {
    part = await lease.take(stop.signal);
    // Beyond 10,000 parts S3 refuses: say "too big" (413) before sending them, not "store failed" after.
    const maxBytes = Math.min(options.maxBytes, MAX_PARTS * partSize);
    for await (const chunk of guardedChunks(source, { maxBytes, idleMs: options.idleMs ?? 0, signal: stop.signal })) {
      let off = 0;
      while (off < chunk.length) {
        const n = Math.min(partSize - fill, chunk.length - off);
        part.bytes.set(n === chunk.length ? chunk : chunk.subarray(off, off + n), fill);
        fill += n;
        off += n;
        if (fill - hashed >= HASH_WINDOW) await hashUpTo(part, fill - ((fill - hashed) % HASH_WINDOW));
        if (fill === partSize) {
          await hashUpTo(part, fill);
          const full: PartBuffer = part;
          part = null;
          sendPart(full, fill);
          lease.unref(full);
          part = await lease.take(stop.signal);
          fill = 0;
          hashed = 0;
        }
      }
      size += chunk.length;
      if (session.error) throw session.error;
    }
    await hashUpTo(part, fill);
    if (partNumber === 0) {
      // One part or less: a single PutObject, no multipart bookkeeping.
      const body = part.bytes.subarray(0, fill);
      await send((o) => client.send(new PutObjectCommand({ Bucket: bucket, Key, Body: body, ContentLength: fill, ContentType: 'application/octet-stream' }), o));
    } else {
      if (fill > 0) sendPart(part, fill);
      lease.unref(part);
      part = null;
      while (sending.size > 0) await Promise.all([...sending]);
      if (stop.signal.aborted) throw stop.signal.reason;
      parts.sort((a, b) => a.PartNumber! - b.PartNumber!);
      const UploadId = await uploadId!;
      await send((o) => client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key, UploadId, MultipartUpload: { Parts: parts } }), o));
      uploadId = null; // complete: nothing to abort
    }
    digesting = true;
    const { md5, sha512 } = await session.digests();
    return { size, md5, sha512, parts: Math.max(1, partNumber) };
  } catch (error) {
    if (!stop.signal.aborted) stop.abort(error);
    if (!digesting) session.abort();
    await Promise.allSettled([...sending]);
    if (uploadId) {
      // Best effort: if this fails too, the unfinished upload is listed and deleted by the sweepers.
      const id = await (uploadId as Promise<string>).catch(() => null);
      const aborted = id ? client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId: id })).catch(() => {}) : null;
      // A store that failed the upload would most likely hold the abort for its timeouts too: the
      // caller's answer (503) does not wait for it.
      if (!storeFailure) await aborted;
    }
    // The source's own failure (size limit, idle, abort) wins; else the store's.
    throw error === stop.signal.reason && storeFailure ? storeFailure : error;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    if (part) lease.unref(part);
    lease.close();
  }
}
