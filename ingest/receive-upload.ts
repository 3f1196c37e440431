/**
 * Receives an image's bytes (PUT …/file or PUT …/stage): claims the image, streams the body to
 * staging (a blob key) while hashing it, and hands the result to the image service. A body that breaks off,
 * runs over the size limit or is empty where the disk format has a header leaves no staging blob and
 * puts the image back in `queued`.
 */
import { ingestedBytes } from '../infra/telemetry/metrics.js';
import { PirError, badRequest, insufficientStorage, isStorageFull, requestTimeout } from '../core/errors.js';
import { SYSTEM_CALLER, type Caller } from '../core/caller.js';
import { deletedWhileArriving, type ImageService, type StoreTargets, type UploadTicket } from '../core/image-service.js';
import type { Quotas } from '../core/quota.js';
import type { ImageDoc } from '../schemas/image.js';
import { BlobStoreUnavailableError, type BlobStore } from '../core/ports.js';
import { expectedDigests, mergeDigests, type ExpectedDigests } from './digest-fields.js';
import { SizeLimitError, SourceIdleError, type HashPool, type HashedFile } from './hashing/index.js';
import { emptyImageRefusal } from '../formats/index.js';

export interface UploadRequest {
  body: NodeJS.ReadableStream;
  /** Content-Length, when the client sent one. */
  contentLength: number | null;
  /** x-openstack-image-size: the size the client says the image has. */
  declaredSize: number | null;
  /** Digests the request's headers name (ingest/digest-fields.ts). */
  expected: ExpectedDigests;
  /** The request's trailers, once the body has ended (a client that hashes as it sends puts its digests there). */
  trailers?: () => Record<string, string | undefined>;
  /** Called once the image is claimed, before the body is read (answers Expect: 100-continue). */
  onClaimed?: () => void;
  /** X-Image-Meta-Store: the store the image goes to (multi-store); absent: the default store. */
  targets?: StoreTargets;
}

export interface UploadSettings {
  maxImageSize: number;
  heartbeatMs: number;
  /** PIR_UPLOAD_IDLE_SECONDS in ms: a body that brings no byte for this long is abandoned. */
  idleMs: number;
  /**
   * PIR_UPLOAD_SETTLE_WAIT_SECONDS in ms: how long a synchronous PUT …/file waits after its last
   * byte for the image to settle before it answers 202 (the image goes on importing). Unset: no limit.
   */
  settleWaitMs?: number;
}

export const STORAGE_FULL_MESSAGE = 'PIR ran out of disk space while writing the image data (ENOSPC); nothing was kept and the image is back in queued. The operator must free space in PIR_DATA_DIR (or raise its quota); then upload again.';

/** What receiving bytes needs besides the image service. */
export interface IngestDeps {
  images: ImageService;
  quotas: Quotas;
  /** Where the bytes go (the store hashes while it writes; the filesystem one on `hashes`). */
  blobs: BlobStore;
  hashes: HashPool;
  upload: UploadSettings;
}

/** Quota is held in steps of this many bytes while a body of unknown size streams in. */
const QUOTA_STEP = 64 * 1024 * 1024;
const NEAR_LIMIT_STEP = 1024 * 1024;

export function tooLarge(limit: number): PirError {
  return new PirError('too_large', 'image_too_large', `The image is larger than this PIR accepts (${limit} bytes, PIR_MAX_IMAGE_SIZE). Ask the operator for a higher limit.`);
}

/**
 * The refusal of an upload of `size` bytes into the image `ticket` claimed, when it is empty and
 * the disk format has a header; null otherwise. Nothing to inspect, so the request is refused as
 * it stands and the caller puts the image back in queued for the real upload (Glance does too):
 * the glance and openstack CLIs send an empty stdin when a script creates an image without a file.
 */
export function emptyUploadRefusal(ticket: UploadTicket, size: number): PirError | null {
  const refusal = size === 0 ? emptyImageRefusal(ticket.diskFormat) : null;
  // 415, as every inspector refusal (Glance answers an upload its format inspection refuses so).
  return refusal && new PirError('unsupported_media_type', 'empty_image', `${refusal.message} Nothing was kept; the image is back in queued.`);
}

export async function receiveUpload(
  caller: Caller,
  deps: IngestDeps,
  imageId: string,
  kind: 'upload' | 'stage',
  request: UploadRequest,
): Promise<ImageDoc> {
  const { images, quotas, upload: settings } = deps;
  const announced = request.declaredSize ?? request.contentLength;
  if (announced !== null && announced > settings.maxImageSize) throw tooLarge(settings.maxImageSize);
  const project = quotas.enabled ? (await images.get(caller, imageId)).owner : null;
  const ticket = await images.beginUpload(caller, imageId, kind, request.targets);
  // A write that failed once sent (not a refusal) may leave the claim with nobody to run it.
  const releaseOnFault = (error: unknown): never => {
    if (!(error instanceof PirError)) images.releaseLater(imageId, { run: ticket.run, started_at: ticket.startedAt }, ticket.stagingKey);
    throw error;
  };
  let blob;
  let claimed = request.expected;
  try {
    await quotas.reserveFlight(project, imageId, announced ?? 0);
    request.onClaimed?.();
    blob = await streamToStaging(caller, deps, imageId, project, ticket, request.body, announced ?? 0);
    if (request.declaredSize !== null && blob.size !== request.declaredSize) {
      throw badRequest('size_mismatch', `x-openstack-image-size said ${request.declaredSize} bytes but ${blob.size} arrived; send the header with the file's real size, or leave it out.`);
    }
    const empty = emptyUploadRefusal(ticket, blob.size);
    if (empty) throw empty;
    if (request.trailers) claimed = mergeDigests(claimed, expectedDigests(request.trailers(), 'trailer'));
  } catch (error) {
    const storageFull = isStorageFull(error);
    const reason = error instanceof SizeLimitError ? 'over the size limit'
      : error instanceof SourceIdleError ? `the client sent nothing for ${error.idleMs / 1000} s`
      : storageFull ? 'the disk is full'
      : error instanceof BlobStoreUnavailableError ? 'the image store did not take the bytes'
      : error instanceof PirError ? error.message
      : `the data stopped arriving (${(error as Error).message})`;
    await images.abortUpload(caller, imageId, ticket.run, reason).catch(releaseOnFault);
    // Give the hold back now, not only when the event arrives (which does it again, durably).
    await quotas.settle(imageId, () => images.get(SYSTEM_CALLER, imageId).catch(() => null)).catch(() => {});
    // Deleted meanwhile (on S3 the delete aborts the upload under it): that is the answer, as
    // completeUpload gives it when the bytes all came in; not a store fault.
    if (!(error instanceof PirError) && (await images.wasDeleted(imageId))) {
      throw deletedWhileArriving(imageId);
    }
    if (error instanceof SizeLimitError) throw tooLarge(settings.maxImageSize);
    if (error instanceof SourceIdleError) {
      throw requestTimeout('upload_idle', `No image data arrived for ${error.idleMs / 1000} s (PIR_UPLOAD_IDLE_SECONDS), so the upload was abandoned and the image is back in queued; upload again.`);
    }
    if (storageFull) throw insufficientStorage('insufficient_storage', STORAGE_FULL_MESSAGE);
    if (error instanceof BlobStoreUnavailableError) {
      throw new PirError('unavailable', 'storage_unavailable', 'The image store (the S3 bucket) did not take the data, so nothing was kept and the image is back in queued; upload again. The operator can check the store with pir doctor.');
    }
    throw error;
  }
  // Not written, or written with the answer lost: the release changes nothing in the second case.
  return images.completeUpload(caller, imageId, ticket.run, { key: ticket.stagingKey, ...blob }, claimed).catch(releaseOnFault);
}

/**
 * The shared ingest path (upload, stage, web-download): streams `body` into the ticket's staging
 * blob while md5 and sha512 are computed, keeps the upload heartbeat going, and holds quota for
 * the bytes as they arrive (`held` bytes are already held). Leaves no blob when it throws.
 */
export async function streamToStaging(
  caller: Caller,
  deps: IngestDeps,
  imageId: string,
  project: string | null,
  ticket: UploadTicket,
  body: NodeJS.ReadableStream,
  held: number,
  /** `heartbeat: false`: the caller keeps its own (a download's covers the requests before the body too). */
  options: { heartbeat?: boolean } = {},
): Promise<HashedFile> {
  const { images, quotas, blobs, upload: settings } = deps;
  const heartbeat = options.heartbeat === false ? undefined : setInterval(() => {
    images.heartbeat(caller, imageId, ticket.run).catch(() => {});
  }, settings.heartbeatMs);
  heartbeat?.unref();
  try {
    const source = quotas.enabled && project !== null ? metered(body, held, async (received) => {
      // Hold the next step ahead; near the limit, hold only a little ahead (what is left, at
      // most NEAR_LIMIT_STEP), so one upload of unknown size does not take all the room.
      const want = Math.min(received + QUOTA_STEP, Math.max(received, settings.maxImageSize));
      try {
        await quotas.reserveFlight(project, imageId, want);
        return want;
      } catch (error) {
        const room = await quotas.flightRoom(project, imageId);
        if (room < received) throw error;
        const near = Math.min(room, received + NEAR_LIMIT_STEP);
        await quotas.reserveFlight(project, imageId, near);
        return near;
      }
    }) : body;
    const file = await blobs.write(ticket.stagingKey, source, { maxBytes: settings.maxImageSize, idleMs: settings.idleMs });
    ingestedBytes.inc(file.size);
    return file;
  } finally {
    clearInterval(heartbeat);
  }
}

/** The body's chunks, with quota held ahead of them: `grow(received)` returns the new amount held. */
async function* metered(body: NodeJS.ReadableStream, held: number, grow: (received: number) => Promise<number>): AsyncGenerator<Uint8Array> {
  // Like writeHashedFile: stop reading without destroying the request, so a 413 can still be sent.
  const readable = body as unknown as { iterator?: (o: { destroyOnReturn: boolean }) => AsyncIterable<Uint8Array> };
  const chunks: AsyncIterable<Uint8Array> = typeof readable.iterator === 'function' ? readable.iterator({ destroyOnReturn: false }) : (body as unknown as AsyncIterable<Uint8Array>);
  let received = 0;
  for await (const chunk of chunks) {
    received += chunk.length;
    if (received > held) held = await grow(received);
    yield chunk;
  }
}
