/**
 * Registered locations (Glance's image locations): bytes that already exist in an allowed S3
 * bucket (`s3://bucket/key`) or behind an http(s) URL (Glance's read-only HTTP store), made an
 * image without being copied into PIR's store. This module holds the pure rules: which URLs are
 * acceptable, the shape of validation_data, the blob key that names a location for the
 * pipeline and downloads, and who may add or see a location.
 *
 * The blob key `external/<base64url(JSON)>` carries the URL and the fingerprint taken at
 * registration, so every process (api, worker) reads the same bytes with the same checks without
 * another manifest read (infra/storage/location-blob-store.ts routes such keys to
 * infra/storage/location-reader.ts). Keys are never shown to users.
 */
import type { Caller } from './caller.js';
import { fail } from './error-catalog.js';
import { enforce, isAdminCaller, isServiceCaller } from './policy.js';
import type { ExternalLocation, ImageDoc, LocationFingerprint } from '../schemas/image.js';

/** What the operator allows (PIR_REGISTER_S3_BUCKETS, PIR_SHOW_IMAGE_DIRECT_URL, PIR_SHOW_MULTIPLE_LOCATIONS). */
export interface LocationSettings {
  /** Buckets of the configured S3 endpoint that may be registered from (never PIR's own). */
  s3Buckets: string[];
  /** PIR's own bucket (refused: its objects are other images' bytes). */
  ownBucket: string | null;
  /** Glance's show_image_direct_url: `direct_url` in the image view (owner and admin only). */
  showDirectUrl: boolean;
  /** Glance's show_multiple_locations: `locations` in the image view (owner and admin only). */
  showLocations: boolean;
  /** Smallest object accepted (a disk has at least one 512-byte sector). */
  minSize: number;
}

export const DEFAULT_LOCATION_SETTINGS: LocationSettings = { s3Buckets: [], ownBucket: null, showDirectUrl: false, showLocations: false, minSize: 512 };

export type ParsedLocation = { kind: 's3'; bucket: string; key: string } | { kind: 'http'; url: string };

/** A URL is not a place for data. */
export const MAX_LOCATION_URL = 4096;
const MAX_METADATA_BYTES = 16 * 1024;

/**
 * The location's kind and parts; refuses (400 location_refused) what PIR will not read. http(s)
 * URLs are checked further by the egress client (address, port, credentials) by the caller.
 * Messages repeat no part of the URL beyond its scheme and bucket.
 */
export function parseLocation(url: unknown, settings: LocationSettings): ParsedLocation {
  if (typeof url !== 'string' || url.length === 0) throw fail('location_refused', 'A location needs a "url": s3://bucket/key or an http(s) URL.');
  if (url.length > MAX_LOCATION_URL) throw fail('location_refused', `The location URL is longer than ${MAX_LOCATION_URL} characters.`);
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(url)?.[1]?.toLowerCase();
  if (scheme === 'http' || scheme === 'https') return { kind: 'http', url };
  if (scheme !== 's3') throw fail('location_refused', `Locations are s3://bucket/key or http(s) URLs${scheme ? ` (got ${scheme.slice(0, 16)}:)` : ''}.`);
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.+)$/.exec(url);
  if (!m) throw fail('location_refused', 'An S3 location is s3://<bucket>/<key>, with a valid bucket name and a key.');
  const [, bucket, key] = m as unknown as [string, string, string];
  // Keys are looked up as written: no empty, dot or dot-dot segments that a proxy might fold.
  if (key.split('/').some((s) => s === '' || s === '.' || s === '..') || key.length > 1024 || /[\u0000-\u001f\u007f]/.test(key)) {
    throw fail('location_refused', 'The S3 key has an empty, "." or ".." segment, a control character, or is longer than 1024 characters.');
  }
  if (settings.ownBucket !== null && bucket === settings.ownBucket) {
    throw fail('location_refused', "PIR's own bucket holds other images' bytes; it cannot be registered from.");
  }
  if (!settings.s3Buckets.includes(bucket)) {
    throw fail('location_refused', `Bucket ${bucket} is not one the operator allows registering from (PIR_REGISTER_S3_BUCKETS).`);
  }
  return { kind: 's3', bucket, key };
}

const HEX = (n: number) => new RegExp(`^[0-9a-f]{${n}}$`);

/** Glance's validation_data: checksum (md5 hex), os_hash_algo + os_hash_value (sha512 here, PIR's only hash). */
export function parseValidationData(raw: unknown): ExternalLocation['validation_data'] {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw fail('location_invalid', 'validation_data is an object: {"checksum": md5 hex, "os_hash_algo": "sha512", "os_hash_value": sha512 hex}.');
  const data = raw as Record<string, unknown>;
  const unknown = Object.keys(data).filter((k) => !['checksum', 'os_hash_algo', 'os_hash_value'].includes(k));
  if (unknown.length) throw fail('location_invalid', `validation_data takes checksum, os_hash_algo and os_hash_value only (got ${unknown.slice(0, 3).map((k) => k.slice(0, 40)).join(', ')}).`);
  const out: ExternalLocation['validation_data'] = {};
  if (data.checksum !== undefined) {
    if (typeof data.checksum !== 'string' || !HEX(32).test(data.checksum)) throw fail('location_invalid', 'validation_data.checksum is an md5 digest: 32 lowercase hex digits.');
    out.checksum = data.checksum;
  }
  if ((data.os_hash_algo === undefined) !== (data.os_hash_value === undefined)) {
    throw fail('location_invalid', 'validation_data needs os_hash_algo and os_hash_value together.');
  }
  if (data.os_hash_algo !== undefined) {
    if (data.os_hash_algo !== 'sha512') throw fail('location_invalid', "validation_data.os_hash_algo must be 'sha512' (the hash PIR computes for every image).");
    if (typeof data.os_hash_value !== 'string' || !HEX(128).test(data.os_hash_value)) throw fail('location_invalid', 'validation_data.os_hash_value is a sha512 digest: 128 lowercase hex digits.');
    out.os_hash_algo = 'sha512';
    out.os_hash_value = data.os_hash_value;
  }
  return out;
}

/** Glance's location metadata: a JSON object, kept as given (bounded). */
export function parseLocationMetadata(raw: unknown): Record<string, unknown> {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw fail('location_invalid', 'The location\'s "metadata" is a JSON object (e.g. {}).');
  if (JSON.stringify(raw).length > MAX_METADATA_BYTES) throw fail('location_invalid', `The location's metadata is larger than ${MAX_METADATA_BYTES} bytes of JSON.`);
  return raw as Record<string, unknown>;
}

// ---------------------------------------------------------------- blob keys

export const EXTERNAL_PREFIX = 'external/';

/** What a read needs: the URL and the object as registered. */
export interface LocationRef {
  url: string;
  fingerprint: LocationFingerprint;
}

export function externalKey(ref: LocationRef): string {
  const { size, etag, last_modified } = ref.fingerprint;
  return EXTERNAL_PREFIX + Buffer.from(JSON.stringify({ u: ref.url, s: size, e: etag, m: last_modified })).toString('base64url');
}

export function isExternalKey(key: string): boolean {
  return key.startsWith(EXTERNAL_PREFIX);
}

export function parseExternalKey(key: string): LocationRef {
  if (!isExternalKey(key)) throw new Error('not an external location key');
  const raw = JSON.parse(Buffer.from(key.slice(EXTERNAL_PREFIX.length), 'base64url').toString('utf8')) as { u: string; s: number; e: string | null; m: string | null };
  if (typeof raw.u !== 'string' || !Number.isSafeInteger(raw.s)) throw new Error('malformed external location key');
  return { url: raw.u, fingerprint: { size: raw.s, etag: raw.e ?? null, last_modified: raw.m ?? null } };
}

// ---------------------------------------------------------------- who may

/**
 * Who may add a location (README "Registering existing bytes"), after Glance's new location API:
 * an administrator or a service user, on any image they see; the image's owner (member role)
 * only for http(s) locations, as Glance allows end users only with its HTTP store. An S3 bucket
 * is the operator's, so s3:// takes the admin or service role.
 */
export function enforceAddLocation(caller: Caller, doc: Pick<ImageDoc, 'owner'>, kind: ParsedLocation['kind']): void {
  if (kind === 's3' && !isAdminCaller(caller) && !isServiceCaller(caller)) {
    throw fail('policy_denied', 'Policy does not allow add_image_location: s3:// locations are added by an administrator or a service user.');
  }
  enforce(caller, 'add_image_location', { owner: doc.owner });
}

/** GET /v2/images/{id}/locations: Glance's fetch_image_location, for service users (and administrators). */
export function enforceListLocations(caller: Caller): void {
  enforce(caller, 'fetch_image_location', { owner: null });
}

/** The location as Glance lists it. */
export function locationEntry(location: ExternalLocation): { url: string; metadata: Record<string, unknown> } {
  return { url: location.url, metadata: location.metadata };
}

/**
 * `locations` and `direct_url` of the image view: only what the operator enabled (both off by
 * default, as Glance), only to the owner project or an administrator, only for a registered
 * location (PIR's own keys are never shown). Empty object: nothing to add.
 */
export function locationFields(caller: Caller, doc: ImageDoc, settings: LocationSettings): Record<string, unknown> {
  if (!settings.showDirectUrl && !settings.showLocations) return {};
  if (!isAdminCaller(caller) && (doc.owner === null || doc.owner !== caller.project_id)) return {};
  const location = doc.location;
  const fields: Record<string, unknown> = {};
  if (settings.showLocations) fields.locations = location && doc.status !== 'deleted' ? [locationEntry(location)] : [];
  if (settings.showDirectUrl && location) fields.direct_url = location.url;
  return fields;
}
