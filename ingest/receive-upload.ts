/**
 * Receives an image's bytes (PUT …/file or PUT …/stage): claims the image, streams the body to
 * staging while hashing it, and hands the result to the image service. A body that breaks off
 * or runs over the size limit leaves no staging file and puts the image back in `queued`.
 */
import { PirError, badRequest, insufficientStorage, requestTimeout } from '../core/errors.js';
import type { ImageService } from '../core/image-service.js';
import type { ImageDoc } from '../schemas/image.js';
import { SizeLimitError, SourceIdleError, writeHashedFile, type HashPool } from './hashing/index.js';

export interface UploadRequest {
  body: NodeJS.ReadableStream;
  /** Content-Length, when the client sent one. */
  contentLength: number | null;
  /** x-openstack-image-size: the size the client says the image has. */
  declaredSize: number | null;
  /** Content-MD5 as hex, already decoded from base64 if needed. */
  contentMd5: string | null;
  /** Called once the image is claimed, before the body is read (answers Expect: 100-continue). */
  onClaimed?: () => void;
}

export interface UploadSettings {
  maxImageSize: number;
  heartbeatMs: number;
  /** PIR_UPLOAD_IDLE_SECONDS in ms: a body that brings no byte for this long is abandoned. */
  idleMs: number;
}

/** The disk is full or over quota: the operator must act, the image is not at fault. */
const STORAGE_FULL = new Set(['ENOSPC', 'EDQUOT']);

export const STORAGE_FULL_MESSAGE = 'PIR ran out of disk space while writing the image data (ENOSPC); nothing was kept and the image is back in queued. The operator must free space in PIR_DATA_DIR (or raise its quota); then upload again.';

export function tooLarge(limit: number): PirError {
  return new PirError('too_large', 'image_too_large', `The image is larger than this PIR accepts (${limit} bytes, PIR_MAX_IMAGE_SIZE). Ask the operator for a higher limit.`);
}

export async function receiveUpload(
  images: ImageService,
  imageId: string,
  kind: 'upload' | 'stage',
  request: UploadRequest,
  settings: UploadSettings,
  hashes: HashPool,
): Promise<ImageDoc> {
  const announced = request.declaredSize ?? request.contentLength;
  if (announced !== null && announced > settings.maxImageSize) throw tooLarge(settings.maxImageSize);
  const ticket = await images.beginUpload(imageId, kind);
  request.onClaimed?.();
  const heartbeat = setInterval(() => {
    images.heartbeat(imageId, ticket.run).catch(() => {});
  }, settings.heartbeatMs);
  heartbeat.unref();
  let blob;
  try {
    blob = await writeHashedFile(request.body, ticket.stagingPath, { maxBytes: settings.maxImageSize, pool: hashes, idleMs: settings.idleMs });
    if (request.declaredSize !== null && blob.size !== request.declaredSize) {
      throw badRequest('size_mismatch', `x-openstack-image-size said ${request.declaredSize} bytes but ${blob.size} arrived; send the header with the file's real size, or leave it out.`);
    }
  } catch (error) {
    const storageFull = STORAGE_FULL.has((error as NodeJS.ErrnoException).code ?? '');
    const reason = error instanceof SizeLimitError ? 'over the size limit'
      : error instanceof SourceIdleError ? `the client sent nothing for ${error.idleMs / 1000} s`
      : storageFull ? 'the disk is full'
      : error instanceof PirError ? error.message
      : `the data stopped arriving (${(error as Error).message})`;
    await images.abortUpload(imageId, ticket.run, reason);
    if (error instanceof SizeLimitError) throw tooLarge(settings.maxImageSize);
    if (error instanceof SourceIdleError) {
      throw requestTimeout('upload_idle', `No image data arrived for ${error.idleMs / 1000} s (PIR_UPLOAD_IDLE_SECONDS), so the upload was abandoned and the image is back in queued; upload again.`);
    }
    if (storageFull) throw insufficientStorage('insufficient_storage', STORAGE_FULL_MESSAGE);
    throw error;
  } finally {
    clearInterval(heartbeat);
  }
  return images.completeUpload(imageId, ticket.run, { path: ticket.stagingPath, ...blob }, request.contentMd5);
}

/** Content-MD5 is base64 per RFC 1864; some clients send hex. Returns hex, or throws 400. */
export function parseContentMd5(header: string | undefined): string | null {
  if (!header) return null;
  const value = header.trim();
  if (/^[0-9a-fA-F]{32}$/.test(value)) return value.toLowerCase();
  const bytes = Buffer.from(value, 'base64');
  if (bytes.length === 16 && bytes.toString('base64') === value) return bytes.toString('hex');
  throw badRequest('bad_content_md5', 'Content-MD5 must be the base64 (or hex) of a 16-byte MD5 digest.');
}
