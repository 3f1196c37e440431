/**
 * Receives an image's bytes (PUT …/file or PUT …/stage): claims the image, streams the body to
 * staging while hashing it, and hands the result to the image service. A body that breaks off
 * or runs over the size limit leaves no staging file and puts the image back in `queued`.
 */
import { PirError, badRequest } from '../core/errors.js';
import type { Caller } from '../core/caller.js';
import type { ImageService } from '../core/image-service.js';
import type { ImageDoc } from '../schemas/image.js';
import { SizeLimitError, writeHashedFile, type HashPool } from './hashing/index.js';

export interface UploadRequest {
  body: NodeJS.ReadableStream;
  /** Content-Length, when the client sent one. */
  contentLength: number | null;
  /** x-openstack-image-size: the size the client says the image has. */
  declaredSize: number | null;
  /** Content-MD5 as hex, already decoded from base64 if needed. */
  contentMd5: string | null;
}

export interface UploadSettings {
  maxImageSize: number;
  heartbeatMs: number;
}

export function tooLarge(limit: number): PirError {
  return new PirError('too_large', 'image_too_large', `The image is larger than this PIR accepts (${limit} bytes, PIR_MAX_IMAGE_SIZE). Ask the operator for a higher limit.`);
}

export async function receiveUpload(
  caller: Caller,
  images: ImageService,
  imageId: string,
  kind: 'upload' | 'stage',
  request: UploadRequest,
  settings: UploadSettings,
  hashes: HashPool,
): Promise<ImageDoc> {
  const announced = request.declaredSize ?? request.contentLength;
  if (announced !== null && announced > settings.maxImageSize) throw tooLarge(settings.maxImageSize);
  const ticket = await images.beginUpload(caller, imageId, kind);
  const heartbeat = setInterval(() => {
    images.heartbeat(caller, imageId, ticket.run).catch(() => {});
  }, settings.heartbeatMs);
  heartbeat.unref();
  let blob;
  try {
    blob = await writeHashedFile(request.body, ticket.stagingPath, { maxBytes: settings.maxImageSize, pool: hashes });
    if (request.declaredSize !== null && blob.size !== request.declaredSize) {
      throw badRequest('size_mismatch', `x-openstack-image-size said ${request.declaredSize} bytes but ${blob.size} arrived; send the header with the file's real size, or leave it out.`);
    }
  } catch (error) {
    const reason = error instanceof SizeLimitError ? 'over the size limit'
      : error instanceof PirError ? error.message
      : `the data stopped arriving (${(error as Error).message})`;
    await images.abortUpload(caller, imageId, ticket.run, reason);
    if (error instanceof SizeLimitError) throw tooLarge(settings.maxImageSize);
    throw error;
  } finally {
    clearInterval(heartbeat);
  }
  return images.completeUpload(caller, imageId, ticket.run, { path: ticket.stagingPath, ...blob }, request.contentMd5);
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
