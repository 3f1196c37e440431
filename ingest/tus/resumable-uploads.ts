/**
 * tus uploads of an image's bytes: created by POST, continued by PATCHes, each appending at the
 * offset the client says it resumes from, until the declared length is in. The image is claimed
 * as PUT …/file claims it (core/image-service.ts), quota for the whole length is held at
 * creation (core/quota.ts), and when the last byte arrives the upload completes exactly as a
 * PUT does: the pipeline starts on the staged bytes with md5 and sha512 computed once over them.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { SYSTEM_CALLER, type Caller } from '../../core/caller.js';
import { fail } from '../../core/error-catalog.js';
import { PirError, isStorageFull, insufficientStorage } from '../../core/errors.js';
import { allowed } from '../../core/policy.js';
import { deletedWhileArriving } from '../../core/image-service.js';
import { KeyedMutex } from '../../core/keyed-mutex.js';
import type { ImageDoc, ResumableUpload } from '../../schemas/image.js';
import { ingestedBytes } from '../../infra/telemetry/metrics.js';
import { STORAGE_FULL_MESSAGE, emptyUploadRefusal, tooLarge, type IngestDeps } from '../receive-upload.js';
import type { UploadDigests } from './digests.js';
import type { TusChecksumAlgorithm } from './protocol.js';
import type { TusStaging } from './staging.js';
import { LocalLeases, type Lease, type UploadLeases } from './upload-leases.js';

export interface ResumableDeps extends IngestDeps {
  staging: TusStaging;
  /** How long an upload may take from creation before the sweepers abandon it. */
  expirySeconds: number;
  /** One appending PATCH per upload across API processes (default: within this process only). */
  leases?: UploadLeases;
  log?: Pick<Logger, 'info'>;
}

export interface PatchRequest {
  offset: number;
  body: NodeJS.ReadableStream;
  contentLength: number | null;
  checksum: { algorithm: TusChecksumAlgorithm; digest: Buffer } | null;
}

export interface UploadState {
  offset: number;
  length: number;
  expires_at: string;
  /** Upload-Metadata as sent at creation (absent: none was). */
  metadata?: string;
  /** Set when this request brought the last byte: the image as it went on to import. */
  completed?: ImageDoc;
}

class LengthExceeded extends Error {}
class PatchIdle extends Error {}
class LeaseLost extends Error {}

export class ResumableUploads {
  /** Hash state of uploads this process is receiving, by `${image}.${run}`. */
  private readonly digests = new Map<string, UploadDigests>();
  /** One request at a time per upload in this process (a HEAD waits for a PATCH still writing). */
  private readonly locks = new KeyedMutex();
  private readonly leases: UploadLeases;

  constructor(private readonly deps: ResumableDeps) {
    this.leases = deps.leases ?? new LocalLeases();
  }

  /** `metadata`: Upload-Metadata as sent (validated by the caller), kept with the upload for HEAD. */
  async create(caller: Caller, imageId: string, length: number, metadata: string | null = null): Promise<{ id: string; expires_at: string; completed?: ImageDoc }> {
    const { images, quotas, staging, upload } = this.deps;
    if (length > upload.maxImageSize) throw tooLarge(upload.maxImageSize);
    const doc = await images.get(caller, imageId);
    await this.releaseUnheard(caller, doc);
    const project = quotas.enabled ? doc.owner : null;
    const resumable: ResumableUpload = {
      id: randomBytes(16).toString('hex'),
      length,
      expires_at: new Date(Date.now() + this.deps.expirySeconds * 1000).toISOString(),
      ...(metadata !== null ? { metadata } : {}),
    };
    const ticket = await images.beginResumableUpload(caller, imageId, resumable);
    // Nothing will come for a format with a header: refused now, the image stays queued (as PUT …/file).
    const empty = emptyUploadRefusal(ticket, length);
    if (empty) {
      await this.abandon(imageId, ticket.run, empty.message);
      throw empty;
    }
    try {
      await quotas.reserveFlight(project, imageId, length);
      await staging.create(imageId, ticket.run, length);
    } catch (error) {
      await this.abandon(imageId, ticket.run, error instanceof Error ? error.message : String(error));
      if (isStorageFull(error)) throw insufficientStorage('insufficient_storage', STORAGE_FULL_MESSAGE);
      throw error;
    }
    const digests = await staging.newDigests();
    this.digests.set(`${imageId}.${ticket.run}`, digests);
    // A zero-length upload (an empty raw disk) is complete at once.
    const completed = length === 0 ? await this.complete(caller, imageId, ticket.run, digests, 0) : undefined;
    return { id: resumable.id, expires_at: resumable.expires_at, ...(completed ? { completed } : {}) };
  }

  /** HEAD: how many bytes are staged (after any PATCH of this process still writing). */
  async state(caller: Caller, imageId: string, uploadId: string): Promise<UploadState> {
    const found = await this.deps.images.resumableUpload(caller, imageId, uploadId).catch(async (error: unknown) => {
      // Finished: all its bytes arrived and the import began. A client that lost the last PATCH's
      // answer (PIR died after the commit) resumes with HEAD: it learns there is nothing left to send.
      if (!(error instanceof PirError && error.code === 'upload_not_found')) throw error;
      const finished = (await this.deps.images.get(caller, imageId)).finished_upload;
      if (finished?.id !== uploadId) throw error;
      return finished;
    });
    if (!('run' in found)) return { offset: found.length, length: found.length, expires_at: found.expires_at };
    const { run, resumable } = found;
    const key = `${imageId}.${run}`;
    return this.locks.run(key, async () => {
      const current = await this.live(caller, imageId, uploadId);
      // Every byte is staged but the upload never completed: PIR died between the last byte and
      // the commit. A client that HEADs to resume (tus-js-client does) sees nothing left to send,
      // so the upload completes here, as the last PATCH would have.
      if (current.offset === current.resumable.length && current.offset > 0) await this.completeStaged(caller, imageId, run, key, current.offset);
      const { metadata } = current.resumable;
      return { offset: current.offset, length: current.resumable.length, expires_at: resumable.expires_at, ...(metadata !== undefined ? { metadata } : {}) };
    });
  }

  async patch(caller: Caller, imageId: string, uploadId: string, request: PatchRequest): Promise<UploadState> {
    const { run } = await this.deps.images.resumableUpload(caller, imageId, uploadId);
    const key = `${imageId}.${run}`;
    return this.locks.run(key, async () => {
      // Another API process may be appending to the same upload: only the lease holder writes.
      const lease = await this.leases.acquire(key);
      if (!lease) throw fail('upload_locked', `Another request is appending to upload ${uploadId} of image ${imageId} (perhaps on another PIR API process); HEAD it in a moment and resume from its Upload-Offset.`);
      try {
        return await this.append(caller, imageId, uploadId, run, request, lease);
      } finally {
        await lease.release();
      }
    });
  }

  private async append(caller: Caller, imageId: string, uploadId: string, run: number, request: PatchRequest, lease: Lease): Promise<UploadState> {
    const key = `${imageId}.${run}`;
    const { staging } = this.deps;
    const { resumable, offset } = await this.live(caller, imageId, uploadId);
    const { length } = resumable;
    if (request.offset !== offset) {
      throw fail('upload_offset_mismatch', `Upload-Offset is ${request.offset} but ${offset} bytes are staged; resume from Upload-Offset: ${offset} (HEAD tells it).`);
    }
    if (request.contentLength !== null && offset + request.contentLength > length) {
      throw fail('upload_length_exceeded', `This PATCH would end at byte ${offset + request.contentLength}, past the upload's Upload-Length of ${length}.`);
    }
    const digests = await this.digestsAt(key, imageId, run, offset);
    const { checksum } = request;
    // A PATCH with a checksum is all or nothing: the staging keeps none of it unless it matches.
    const before = checksum ? await digests.snapshot() : null;
    const partHash = checksum ? createHash(checksum.algorithm) : null;
    let received = 0;
    let end: number;
    try {
      end = await staging.append(imageId, run, offset, bounded(request.body, length - offset, this.deps.upload.idleMs, lease.signal), digests, {
        signal: lease.signal,
        onChunk: (chunk) => {
          received += chunk.length;
          partHash?.update(chunk);
        },
        ...(checksum ? {
          verify: () => {
            if (!timingSafeEqualDigest(partHash!.digest(), checksum.digest)) {
              throw fail('tus_checksum_mismatch', `The ${checksum.algorithm} of this PATCH's ${received} bytes is not the Upload-Checksum sent; they were discarded, resume from Upload-Offset: ${offset}.`);
            }
          },
        } : {}),
      });
    } catch (error) {
      if (before) {
        this.digests.set(key, before);
      } else if ((await staging.offset(imageId, run).catch(() => null)) !== digests.offset) {
        // The hash state no longer matches the staged bytes: the next PATCH restores it.
        this.digests.delete(key);
      }
      // Deleted meanwhile (on S3 the delete aborts the multipart upload under the PATCH): 410, as PUT …/file answers.
      if (!(error instanceof PirError) && (await this.deps.images.wasDeleted(imageId))) throw deletedWhileArriving(imageId);
      throw mapAppendError(error, length, this.deps.upload.idleMs);
    }
    ingestedBytes.inc(end - offset);
    if (end < length) {
      await this.deps.images.heartbeat(caller, imageId, run).catch(() => {});
      return { offset: end, length, expires_at: resumable.expires_at };
    }
    const completed = await this.complete(caller, imageId, run, digests, length);
    return { offset: end, length, expires_at: resumable.expires_at, completed };
  }

  /** Completes an upload whose bytes are all staged, unless another request (or process) holds it. */
  private async completeStaged(caller: Caller, imageId: string, run: number, key: string, length: number): Promise<void> {
    const lease = await this.leases.acquire(key);
    if (!lease) return;
    try {
      const digests = await this.digestsAt(key, imageId, run, length);
      await this.complete(caller, imageId, run, digests, length);
      this.deps.log?.info({ image_id: imageId, run, bytes: length }, 'completed a resumable upload found fully staged');
    } finally {
      await lease.release();
    }
  }

  /**
   * A resumable upload with no byte staged gives way to a new creation: its client may never
   * have heard of it (PIR died answering the POST), and it would hold the image in `saving`
   * until it expires. One that received bytes is kept (its client resumes it).
   */
  private async releaseUnheard(caller: Caller, doc: ImageDoc): Promise<void> {
    const upload = doc.upload;
    if (doc.status !== 'saving' || !upload?.resumable || !allowed(caller, 'upload_image', { owner: doc.owner })) return;
    const key = `${doc.id}.${upload.run}`;
    // A request of this process is at it (a PATCH, a HEAD): its client knows the upload. Not
    // waited for: the new creation is refused at once (409) as before.
    if (this.locks.held(key)) return;
    await this.locks.run(key, async () => {
      if ((await this.deps.staging.offset(doc.id, upload.run).catch(() => null)) !== 0) return;
      const lease = await this.leases.acquire(key);
      if (!lease) return;
      try {
        await this.abandon(doc.id, upload.run, 'a new resumable upload replaced one that had received no byte');
      } finally {
        await lease.release();
      }
    });
  }

  /** DELETE (termination): the upload ends, its bytes go, the image is back in queued. */
  async terminate(caller: Caller, imageId: string, uploadId: string): Promise<void> {
    const { run } = await this.deps.images.resumableUpload(caller, imageId, uploadId);
    const key = `${imageId}.${run}`;
    await this.locks.run(key, async () => {
      // A PATCH of this process waited for may have finished the upload: then there is nothing
      // to terminate (404), and its bytes are the import's now.
      const { resumable } = await this.deps.images.resumableUpload(caller, imageId, uploadId);
      // Not while another process appends: its commit would outlive the removal.
      const lease = await this.leases.acquire(key);
      if (!lease) throw fail('upload_locked', `Another request is appending to upload ${uploadId} of image ${imageId}; terminate it in a moment.`);
      try {
        // Expired: abandoned as such (410, as HEAD and PATCH answer), not terminated.
        if (isExpired(resumable)) await this.expire(imageId, uploadId, run, resumable);
        await this.abandon(imageId, run, 'the client terminated the resumable upload');
      } finally {
        await lease.release();
      }
    });
  }

  /** The upload as it is now, refused when it expired (the sweepers then clear it). */
  private async live(caller: Caller, imageId: string, uploadId: string): Promise<{ resumable: ResumableUpload; offset: number }> {
    const { run, resumable } = await this.deps.images.resumableUpload(caller, imageId, uploadId);
    if (isExpired(resumable)) await this.expire(imageId, uploadId, run, resumable);
    const offset = await this.deps.staging.offset(imageId, run);
    if (offset === null) throw fail('upload_not_found', `Upload ${uploadId} of image ${imageId} has no staged bytes any more; start a new upload.`);
    return { resumable, offset };
  }

  /**
   * Abandons an upload past its expiry (as the sweepers would), remembered on the image so that
   * every later request for it is 410 too, then refuses this one with 410 upload_expired.
   */
  private async expire(imageId: string, uploadId: string, run: number, resumable: ResumableUpload): Promise<never> {
    await this.abandon(imageId, run, 'the resumable upload expired', true);
    throw fail('upload_expired', `Upload ${uploadId} of image ${imageId} expired at ${resumable.expires_at} and was abandoned with its bytes; start a new upload with POST /v2/images/${imageId}/uploads.`);
  }

  /** Hash state at `offset`: the one in memory, or restored from what is staged alone. */
  private async digestsAt(key: string, imageId: string, run: number, offset: number): Promise<UploadDigests> {
    const held = this.digests.get(key);
    if (held && held.offset === offset) return held;
    const restored = await this.deps.staging.restoreDigests(imageId, run, offset);
    this.deps.log?.info({ image_id: imageId, run, bytes: offset }, 'restored a resumable upload\'s hash state from its staging');
    this.digests.set(key, restored);
    return restored;
  }

  private async complete(caller: Caller, imageId: string, run: number, digests: UploadDigests, length: number): Promise<ImageDoc> {
    this.digests.delete(`${imageId}.${run}`);
    const { md5, sha512 } = digests.digest();
    const key = await this.deps.staging.finish(imageId, run);
    return this.deps.images.completeUpload(caller, imageId, run, { key, size: length, md5, sha512 });
  }

  private async abandon(imageId: string, run: number, reason: string, expired = false): Promise<void> {
    this.digests.delete(`${imageId}.${run}`);
    await this.deps.images.abortUpload(SYSTEM_CALLER, imageId, run, reason, { expired });
    await this.deps.quotas.settle(imageId, () => this.deps.images.get(SYSTEM_CALLER, imageId).catch(() => null)).catch(() => {});
  }
}

/**
 * The body's chunks, at most `room` bytes (more → LengthExceeded before the excess is written),
 * and no wait longer than `idleMs` for the next one (→ PatchIdle; the bytes so far are kept).
 */
async function* bounded(body: NodeJS.ReadableStream, room: number, idleMs: number, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  const readable = body as unknown as { iterator?: (o: { destroyOnReturn: boolean }) => AsyncIterable<Uint8Array> };
  const iterable: AsyncIterable<Uint8Array> = typeof readable.iterator === 'function' ? readable.iterator({ destroyOnReturn: false }) : (body as unknown as AsyncIterable<Uint8Array>);
  const iterator = iterable[Symbol.asyncIterator]();
  let received = 0;
  for (;;) {
    let timer: NodeJS.Timeout | undefined;
    let onLost: (() => void) | undefined;
    const idle = new Promise<never>((_resolve, reject) => {
      if (idleMs > 0) timer = setTimeout(() => reject(new PatchIdle()), idleMs);
      onLost = () => reject(new LeaseLost());
      signal.addEventListener('abort', onLost, { once: true });
    });
    let next: IteratorResult<Uint8Array>;
    try {
      next = await Promise.race([iterator.next(), idle]);
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onLost!);
    }
    if (next.done) return;
    if (signal.aborted) throw new LeaseLost();
    received += next.value.length;
    if (received > room) throw new LengthExceeded();
    yield next.value;
  }
}

function mapAppendError(error: unknown, length: number, idleMs: number): unknown {
  if (error instanceof LengthExceeded) return fail('upload_length_exceeded', `More bytes arrived than the upload's Upload-Length of ${length}; the excess was not kept.`);
  if (error instanceof LeaseLost) return fail('upload_locked', 'This PATCH lost its hold on the upload (its lease could not be renewed); the bytes taken before are kept: HEAD for the offset and resume.');
  if (error instanceof PatchIdle) return fail('upload_idle', `No data arrived for ${idleMs / 1000} s (PIR_UPLOAD_IDLE_SECONDS); the bytes received so far are kept: HEAD for the offset and resume.`);
  if (isStorageFull(error)) return insufficientStorage('insufficient_storage', 'PIR ran out of disk space while writing this PATCH; the bytes already acknowledged are kept. The operator must free space in PIR_DATA_DIR; then resume.');
  return error;
}

function isExpired(resumable: ResumableUpload): boolean {
  return Date.parse(resumable.expires_at) <= Date.now();
}

function timingSafeEqualDigest(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
