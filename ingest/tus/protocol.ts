/** The tus 1.0 wire format: headers in and out (https://tus.io/protocols/resumable-upload). */
import { fail } from '../../core/error-catalog.js';

export const TUS_VERSION = '1.0.0';
export const TUS_EXTENSIONS = ['creation', 'termination', 'checksum', 'expiration'] as const;
export const TUS_CHECKSUM_ALGORITHMS = ['sha1', 'sha256', 'md5'] as const;
export type TusChecksumAlgorithm = (typeof TUS_CHECKSUM_ALGORITHMS)[number];
export const TUS_CONTENT_TYPE = 'application/offset+octet-stream';

/** Every tus request but OPTIONS must say which version it speaks (412 otherwise). */
export function requireTusResumable(header: string | string[] | undefined): void {
  if (header !== TUS_VERSION) {
    throw fail('tus_version_unsupported', `Send Tus-Resumable: ${TUS_VERSION} (got '${String(header ?? 'none').slice(0, 32)}'); it is the only tus version PIR speaks.`);
  }
}

/** A non-negative integer header (Upload-Length, Upload-Offset). */
export function byteCount(name: string, header: string | string[] | undefined): number {
  if (typeof header !== 'string' || !/^\d{1,16}$/.test(header)) {
    throw fail('bad_header', `${name} must be a whole number of bytes (got '${String(header ?? 'none').slice(0, 32)}').`);
  }
  return Number(header);
}

/** Upload-Checksum: "<algorithm> <base64 digest>". */
export function parseUploadChecksum(header: string | string[] | undefined): { algorithm: TusChecksumAlgorithm; digest: Buffer } | null {
  if (header === undefined) return null;
  const match = typeof header === 'string' ? /^([a-z0-9-]{1,16}) ([A-Za-z0-9+/]+=*)$/.exec(header.trim()) : null;
  if (!match) throw fail('bad_header', "Upload-Checksum must be '<algorithm> <base64 digest>', e.g. 'sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0='.");
  const algorithm = match[1] as TusChecksumAlgorithm;
  if (!TUS_CHECKSUM_ALGORITHMS.includes(algorithm)) {
    throw fail('tus_checksum_algorithm', `Upload-Checksum algorithm '${match[1]}' is not supported; use one of ${TUS_CHECKSUM_ALGORITHMS.join(', ')}.`);
  }
  return { algorithm, digest: Buffer.from(match[2]!, 'base64') };
}

/** RFC 9110 IMF-fixdate, as tus's Upload-Expires wants. */
export function httpDate(iso: string): string {
  return new Date(iso).toUTCString();
}
