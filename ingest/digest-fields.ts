/**
 * The digests a client may send with an upload so PIR verifies the bytes it receives:
 * `Repr-Digest` / `Content-Digest` (RFC 9530; PIR stores the bytes as sent, so both name the
 * same digest) with `sha-512`, and `Content-MD5` (RFC 1864). Each may come as a header or, when
 * the client hashes while it sends, as a trailer (`Trailer: Repr-Digest`). Algorithms PIR does
 * not compute are ignored, as RFC 9530 allows; a malformed field is a 400, never ignored.
 */
import { ParseError, parseDictionary } from 'structured-headers';
import { badRequest } from '../core/errors.js';

export interface ExpectedDigests {
  /** Hex. */
  md5?: string;
  /** Hex. */
  sha512?: string;
  /** The field each digest came from ('the Content-MD5 trailer'), for the checksum stage's message. */
  md5_from?: string;
  sha512_from?: string;
}

type FieldSource = Record<string, string | string[] | undefined>;

const DIGEST_FIELDS = ['repr-digest', 'content-digest'] as const;

const FIELD_NAMES: Record<(typeof DIGEST_FIELDS)[number], string> = { 'repr-digest': 'Repr-Digest', 'content-digest': 'Content-Digest' };

/** Digests named by `fields` (headers or trailers, lower-case names). */
export function expectedDigests(fields: FieldSource, as: 'header' | 'trailer' = 'header'): ExpectedDigests {
  const found: ExpectedDigests = {};
  const md5 = parseContentMd5(single(fields, 'content-md5'));
  if (md5) Object.assign(found, { md5, md5_from: `the Content-MD5 ${as}` });
  for (const name of DIGEST_FIELDS) {
    const sha512 = sha512From(name, single(fields, name));
    if (!sha512) continue;
    if (found.sha512 && found.sha512 !== sha512) {
      throw badRequest('bad_digest', 'Repr-Digest and Content-Digest name different sha-512 digests; send one.');
    }
    found.sha512_from ??= `the ${FIELD_NAMES[name]} ${as}`;
    found.sha512 = sha512;
  }
  return found;
}

/** Merges what the headers and the trailers said; the two must agree where both speak. */
export function mergeDigests(headers: ExpectedDigests, trailers: ExpectedDigests): ExpectedDigests {
  for (const key of ['md5', 'sha512'] as const) {
    if (headers[key] && trailers[key] && headers[key] !== trailers[key]) {
      throw badRequest('bad_digest', `The ${key} digest in the trailer differs from the one in the header; send one.`);
    }
  }
  return { ...headers, ...trailers };
}

function single(fields: FieldSource, name: string): string | undefined {
  const value = fields[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

function sha512From(name: string, value: string | undefined): string | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  let dictionary;
  try {
    dictionary = parseDictionary(value);
  } catch (error) {
    if (error instanceof ParseError || error instanceof Error) {
      throw badRequest('bad_digest', `${name} is not a valid structured field (RFC 9530): send it as sha-512=:<base64 digest>:.`);
    }
    throw error;
  }
  const member = dictionary.get('sha-512');
  if (member === undefined) return undefined;
  const [item] = member;
  if (!(item instanceof ArrayBuffer) || item.byteLength !== 64) {
    throw badRequest('bad_digest', `${name}'s sha-512 must be a byte sequence of 64 bytes (:<base64>:).`);
  }
  return Buffer.from(item).toString('hex');
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
