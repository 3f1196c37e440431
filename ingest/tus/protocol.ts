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

/** The most Upload-Metadata PIR keeps with an upload (the header as sent, in bytes). */
export const UPLOAD_METADATA_MAX_BYTES = 4096;
/** Printable ASCII but space and comma: what tus allows in a metadata key. */
const METADATA_KEY = /^[\x21-\x2b\x2d-\x7e]+$/;
/** Standard base64 with its padding (RFC 4648 §4), possibly empty. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Upload-Metadata (creation extension): comma-separated `key base64value` pairs, keys unique,
 * ASCII without spaces or commas; a value may be left out (`key` or `key `). Returns the header
 * as sent, to be stored and given back unchanged by HEAD, or null when there is none (absent or
 * empty). PIR reads none of the keys: metadata never sets an image's fields.
 */
export function parseUploadMetadata(header: string | string[] | undefined): string | null {
  if (header === undefined) return null;
  const bad = (why: string) => fail('tus_metadata_invalid', `Upload-Metadata ${why}; send comma-separated 'key base64value' pairs (e.g. 'filename ZGlzay5yYXc=,type cmF3'), keys unique and without spaces or commas.`);
  if (typeof header !== 'string') throw bad('was sent more than once');
  if (Buffer.byteLength(header, 'latin1') > UPLOAD_METADATA_MAX_BYTES) throw bad(`is ${Buffer.byteLength(header, 'latin1')} bytes long, more than the ${UPLOAD_METADATA_MAX_BYTES} PIR keeps`);
  if (header.trim() === '') return null;
  const keys = new Set<string>();
  for (const [index, part] of header.split(',').entries()) {
    const pair = part.replace(/^[ \t]+|[ \t]+$/g, '');
    if (pair === '') throw bad(`has an empty pair (pair ${index + 1})`);
    const space = pair.indexOf(' ');
    const key = space === -1 ? pair : pair.slice(0, space);
    const value = space === -1 ? '' : pair.slice(space + 1);
    if (!METADATA_KEY.test(key)) throw bad(`key '${key.slice(0, 32)}' is not printable ASCII without spaces`);
    if (keys.has(key)) throw bad(`names the key '${key.slice(0, 32)}' twice`);
    keys.add(key);
    if (!BASE64.test(value)) throw bad(`value of '${key.slice(0, 32)}' is not base64 ('${value.slice(0, 32)}')`);
  }
  return header;
}

/** RFC 9110 IMF-fixdate, as tus's Upload-Expires wants. */
export function httpDate(iso: string): string {
  return new Date(iso).toUTCString();
}
