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
import { isStorageFull, insufficientStorage } from '../../core/errors.js';
import type { ImageDoc, ResumableUpload } from '../../schemas/image.js';
import { ingestedBytes } from '../../infra/telemetry/metrics.js';
import { STORAGE_FULL_MESSAGE, tooLarge, type IngestDeps } from '../receive-upload.js';
import { RunningDigests, rebuildStats } from './digests.js';
import type { TusChecksumAlgorithm } from './protocol.js';
import type { TusStaging } from './staging.js';

export interface ResumableDeps extends IngestDeps {
  staging: TusStaging;
  /** How long an upload may take from creation before the sweepers abandon it. */
  expirySeconds: number;
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
  /** Set when this request brought the last byte: the image as it went on to import. */
  completed?: ImageDoc;
}

class LengthExceeded extends Error {}
class PatchIdle extends Error {}

export class ResumableUploads {
  /** Hash state of uploads this process is receiving, by `${image}.${run}`. */
  private readonly digests = new Map<string, RunningDigests>();
  /** One request at a time per upload in this process (a HEAD waits for a PATCH still writing). */
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly deps: ResumableDeps) {}

  async create(caller: Caller, imageId: string, length: number): Promise<{ id: string; expires_at: string; completed?: ImageDoc }> {
    const { images, quotas, staging, upload } = this.deps;
    if (length > upload.maxImageSize) throw tooLarge(upload.maxImageSize);
    const project = quotas.enabled ? (await images.get(caller, imageId)).owner : null;
    const resumable: ResumableUpload = {
      id: randomBytes(16).toString('hex'),
      length,
      expires_at: new Date(Date.now() + this.deps.expirySeconds * 1000).toISOString(),
    };
    const ticket = await images.beginResumableUpload(caller, imageId, resumable);
    try {
      await quotas.reserveFlight(project, imageId, length);
      await staging.create(imageId, ticket.run);
    } catch (error) {
      await this.abandon(imageId, ticket.run, error instanceof Error ? error.message : String(error));
      if (isStorageFull(error)) throw insufficientStorage('insufficient_storage', STORAGE_FULL_MESSAGE);
      throw error;
    }
    this.digests.set(`${imageId}.${ticket.run}`, RunningDigests.empty());
    // A zero-length upload is complete at once (the pipeline then refuses the empty image).
    const completed = length === 0 ? await this.complete(caller, imageId, ticket.run, RunningDigests.empty(), 0) : undefined;
    return { id: resumable.id, expires_at: resumable.expires_at, ...(completed ? { completed } : {}) };
  }

  /** HEAD: how many bytes are staged (after any PATCH of this process still writing). */
  async state(caller: Caller, imageId: string, uploadId: string): Promise<UploadState> {
    const { run, resumable } = await this.deps.images.resumableUpload(caller, imageId, uploadId);
    return this.locked(`${imageId}.${run}`, async () => {
      const current = await this.live(caller, imageId, uploadId);
      return { offset: current.offset, length: current.resumable.length, expires_at: resumable.expires_at };
    });
  }

  async patch(caller: Caller, imageId: string, uploadId: string, request: PatchRequest): Promise<UploadState> {
    const { run } = await this.deps.images.resumableUpload(caller, imageId, uploadId);
    const key = `${imageId}.${run}`;
    return this.locked(key, async () => {
      const { resumable, offset } = await this.live(caller, imageId, uploadId);
      const { length } = resumable;
      if (request.offset !== offset) {
        throw fail('upload_offset_mismatch', `Upload-Offset is ${request.offset} but ${offset} bytes are staged; resume from Upload-Offset: ${offset} (HEAD tells it).`);
      }
      if (request.contentLength !== null && offset + request.contentLength > length) {
        throw fail('upload_length_exceeded', `This PATCH would end at byte ${offset + request.contentLength}, past the upload's Upload-Length of ${length}.`);
      }
      const digests = await this.digestsAt(key, imageId, run, offset);
      const before = request.checksum ? digests.snapshot() : null;
      const partHash = request.checksum ? createHash(request.checksum.algorithm) : null;
      let end: number;
      try {
        end = await this.deps.staging.append(imageId, run, offset, bounded(request.body, length - offset, this.deps.upload.idleMs), (chunk) => {
          digests.update(chunk);
          partHash?.update(chunk);
        });
      } catch (error) {
        if (before) {
          // A PATCH with a checksum is all or nothing: what it wrote goes.
          await this.deps.staging.truncate(imageId, run, offset);
          this.digests.set(key, before);
        } else if ((await this.deps.staging.offset(imageId, run)) !== digests.offset) {
          // The hash state no longer matches the staged bytes: the next PATCH rebuilds it.
          this.digests.delete(key);
        }
        throw mapAppendError(error, length, this.deps.upload.idleMs);
      }
      ingestedBytes.inc(end - offset);
      if (request.checksum && !timingSafeEqualDigest(partHash!.digest(), request.checksum.digest)) {
        await this.deps.staging.truncate(imageId, run, offset);
        this.digests.set(key, before!);
        throw fail('tus_checksum_mismatch', `The ${request.checksum.algorithm} of this PATCH's ${end - offset} bytes is not the Upload-Checksum sent; they were discarded, resume from Upload-Offset: ${offset}.`);
      }
      if (end < length) {
        await this.deps.images.heartbeat(caller, imageId, run).catch(() => {});
        return { offset: end, length, expires_at: resumable.expires_at };
      }
      const completed = await this.complete(caller, imageId, run, digests, length);
      return { offset: end, length, expires_at: resumable.expires_at, completed };
    });
  }

  /** DELETE (termination): the upload ends, its bytes go, the image is back in queued. */
  async terminate(caller: Caller, imageId: string, uploadId: string): Promise<void> {
    const { run } = await this.deps.images.resumableUpload(caller, imageId, uploadId);
    await this.locked(`${imageId}.${run}`, () => this.abandon(imageId, run, 'the client terminated the resumable upload'));
  }

  /** The upload as it is now, refused when it expired (the sweepers then clear it). */
  private async live(caller: Caller, imageId: string, uploadId: string): Promise<{ resumable: ResumableUpload; offset: number }> {
    const { run, resumable } = await this.deps.images.resumableUpload(caller, imageId, uploadId);
    if (Date.parse(resumable.expires_at) <= Date.now()) {
      await this.abandon(imageId, run, 'the resumable upload expired');
      throw fail('upload_expired', `Upload ${uploadId} of image ${imageId} expired at ${resumable.expires_at}; the image is back in queued, start a new upload.`);
    }
    const offset = await this.deps.staging.offset(imageId, run);
    if (offset === null) throw fail('upload_not_found', `Upload ${uploadId} of image ${imageId} has no staged bytes any more; start a new upload.`);
    return { resumable, offset };
  }

  /** Hash state at `offset`: the one in memory, or rebuilt from the staged bytes alone. */
  private async digestsAt(key: string, imageId: string, run: number, offset: number): Promise<RunningDigests> {
    const held = this.digests.get(key);
    if (held && held.offset === offset) return held;
    const rebuilt = await RunningDigests.rebuild(offset > 0 ? this.deps.staging.readBack(imageId, run, offset) : null, offset);
    rebuildStats.uploads += 1;
    rebuildStats.bytes += offset;
    this.deps.log?.info({ image_id: imageId, run, bytes: offset }, 'rebuilt a resumable upload\'s hash state from its staged bytes');
    this.digests.set(key, rebuilt);
    return rebuilt;
  }

  private async complete(caller: Caller, imageId: string, run: number, digests: RunningDigests, length: number): Promise<ImageDoc> {
    this.digests.delete(`${imageId}.${run}`);
    const { md5, sha512 } = digests.digest();
    return this.deps.images.completeUpload(caller, imageId, run, { key: this.deps.staging.finish(imageId, run), size: length, md5, sha512 });
  }

  private async abandon(imageId: string, run: number, reason: string): Promise<void> {
    this.digests.delete(`${imageId}.${run}`);
    await this.deps.images.abortUpload(SYSTEM_CALLER, imageId, run, reason);
    await this.deps.quotas.settle(imageId, () => this.deps.images.get(SYSTEM_CALLER, imageId).catch(() => null)).catch(() => {});
  }

  private async locked<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(key) ?? Promise.resolve();
    const mine = previous.catch(() => {}).then(work);
    this.locks.set(key, mine);
    try {
      return await mine;
    } finally {
      if (this.locks.get(key) === mine) this.locks.delete(key);
    }
  }
}

/**
 * The body's chunks, at most `room` bytes (more → LengthExceeded before the excess is written),
 * and no wait longer than `idleMs` for the next one (→ PatchIdle; the bytes so far are kept).
 */
async function* bounded(body: NodeJS.ReadableStream, room: number, idleMs: number): AsyncGenerator<Uint8Array> {
  const readable = body as unknown as { iterator?: (o: { destroyOnReturn: boolean }) => AsyncIterable<Uint8Array> };
  const iterable: AsyncIterable<Uint8Array> = typeof readable.iterator === 'function' ? readable.iterator({ destroyOnReturn: false }) : (body as unknown as AsyncIterable<Uint8Array>);
  const iterator = iterable[Symbol.asyncIterator]();
  let received = 0;
  for (;;) {
    let timer: NodeJS.Timeout | undefined;
    const idle = new Promise<never>((_resolve, reject) => {
      if (idleMs > 0) timer = setTimeout(() => reject(new PatchIdle()), idleMs);
    });
    let next: IteratorResult<Uint8Array>;
    try {
      next = await Promise.race([iterator.next(), idle]);
    } finally {
      clearTimeout(timer);
    }
    if (next.done) return;
    received += next.value.length;
    if (received > room) throw new LengthExceeded();
    yield next.value;
  }
}

function mapAppendError(error: unknown, length: number, idleMs: number): unknown {
  if (error instanceof LengthExceeded) return fail('upload_length_exceeded', `More bytes arrived than the upload's Upload-Length of ${length}; the excess was not kept.`);
  if (error instanceof PatchIdle) return fail('upload_idle', `No data arrived for ${idleMs / 1000} s (PIR_UPLOAD_IDLE_SECONDS); the bytes received so far are kept: HEAD for the offset and resume.`);
  if (isStorageFull(error)) return insufficientStorage('insufficient_storage', 'PIR ran out of disk space while writing this PATCH; the bytes already acknowledged are kept. The operator must free space in PIR_DATA_DIR; then resume.');
  return error;
}

function timingSafeEqualDigest(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
