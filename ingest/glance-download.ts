/**
 * Glance's glance-download import (Glance 2023.1+): POST …/import {"method": {"name":
 * "glance-download", "glance_image_id", "glance_region", "glance_service_interface"?}} copies an
 * image's data, formats and selected properties from the Glance of another region (or this one).
 *
 * The request's checks are Glance's (images.py import_image); then, in the background, as a
 * web-download (ingest/web-download.ts): the remote Glance's URL is looked up in the Keystone
 * catalog the caller's token sees (service type `image`, region and interface), the remote image
 * is read with the caller's token (it must be active), and its data streams through the same
 * SSRF-safe egress client into staging. The token is held in memory for those first requests only
 * (never recorded), as Glance's flow uses its request context's token.
 */
import { randomUUID } from 'node:crypto';
import { pipeline, Transform, type Readable } from 'node:stream';
import { badRequest } from '../core/errors.js';
import type { RemoteAdoption } from '../core/image-entity.js';
import { CONTAINER_FORMATS, DISK_FORMATS, type ContainerFormat, type DiskFormat, type ImageDoc } from '../schemas/image.js';
import { EgressError, type EgressClient, type EgressResponse } from '../infra/egress/egress-client.js';

/** Glance's [glance_download_properties] extra_properties default: prefixes of the properties copied. */
export const DEFAULT_GLANCE_DOWNLOAD_PROPERTIES = ['hw_', 'trait:', 'os_distro', 'os_secure_boot', 'os_type'];

/** What an import call asks for, checked. */
export interface GlanceDownloadRequest {
  imageId: string;
  region: string;
  serviceInterface: string;
}

/** Longest region or interface name taken (Keystone's region ids are at most 255 characters). */
const MAX_NAME_LENGTH = 255;
/** Largest remote image record read (a Glance image record is a few kilobytes). */
export const MAX_RECORD_BYTES = 1 << 20;
/** How long the remote record may take (a few kilobytes: not the image data's hour). */
export const RECORD_TIMEOUT_MS = 60_000;

/**
 * Glance's checks of the method's fields, in its order (after the image's status and formats):
 * glance_region needed, glance_image_id needed and a UUID; glance_service_interface defaults to
 * public. Returns the remote image id in its canonical form (it goes into a URL path).
 */
export function checkGlanceDownloadMethod(method: Record<string, unknown>): GlanceDownloadRequest {
  if (!('glance_region' in method)) throw badRequest('invalid_request', "'glance_region' needs to be set for glance-download import method");
  if (!('glance_image_id' in method)) throw badRequest('invalid_request', "'glance_image_id' needs to be set for glance-download import method");
  const imageId = canonicalUuid(method.glance_image_id);
  if (imageId === null) throw badRequest('invalid_request', `Remote image id does not look like a UUID: ${String(method.glance_image_id).slice(0, 64)}`);
  const region = name(method.glance_region, 'glance_region');
  const serviceInterface = 'glance_service_interface' in method ? name(method.glance_service_interface, 'glance_service_interface') : 'public';
  return { imageId, region, serviceInterface };
}

function name(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_NAME_LENGTH) {
    throw badRequest('invalid_request', `'${field}' must be a non-empty string of at most ${MAX_NAME_LENGTH} characters.`);
  }
  return value;
}

/** The forms Python's uuid.UUID() takes (hyphens or not, braces, urn:uuid:), as 8-4-4-4-12 lowercase; else null. */
export function canonicalUuid(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  const hex = value.replace('urn:', '').replace('uuid:', '').replace(/^\{+|\}+$/g, '').replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) return null;
  const h = hex.toLowerCase();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * The properties Glance copies (_ImportMetadata): every key of the remote image that starts with
 * one of `prefixes`, but never Glance's reserved os_glance namespace nor PIR's pir_ one, and only
 * string values (extra properties are strings; a base attribute matched by a prefix is not one).
 */
export function selectRemoteProperties(remote: Record<string, unknown>, prefixes: readonly string[]): Record<string, string> {
  const selected: Record<string, string> = {};
  for (const [key, value] of Object.entries(remote)) {
    if (typeof value !== 'string' || key.startsWith('os_glance') || key.startsWith('pir_') || BASE_ATTRIBUTES.has(key)) continue;
    if (prefixes.some((prefix) => key.startsWith(prefix))) selected[key] = value;
  }
  return selected;
}

/** Glance's image attributes that are no extra properties (a prefix such as 'os_' must not copy os_hash_value). */
const BASE_ATTRIBUTES = new Set(['id', 'name', 'status', 'visibility', 'protected', 'os_hidden', 'owner', 'checksum', 'os_hash_algo', 'os_hash_value',
  'size', 'virtual_size', 'min_disk', 'min_ram', 'disk_format', 'container_format', 'created_at', 'updated_at', 'tags', 'self', 'file', 'schema',
  'locations', 'direct_url', 'stores', 'location', 'deleted', 'deleted_at']);

/** What the remote image gives: its size and digests (to check the bytes against) and what the image takes. */
export interface RemoteImage {
  size: number;
  adoption: RemoteAdoption;
  /** The remote digests, which the checksum stage verifies the arrived bytes against. */
  claimed: ImageDoc['expected'];
}

/** Reads a remote image record: it must be active, with formats PIR knows and a size. */
export function remoteImageFrom(record: unknown, id: string, prefixes: readonly string[]): RemoteImage {
  if (typeof record !== 'object' || record === null || Array.isArray(record)) throw new GlanceDownloadError('remote_image_unreadable', `The remote Glance's answer for image ${id} is not an image record.`);
  const remote = record as Record<string, unknown>;
  if (remote.status !== 'active') throw new GlanceDownloadError('remote_image_not_active', `Source image status should be active instead of ${String(remote.status).slice(0, 32)}.`);
  const disk = remote.disk_format;
  const container = remote.container_format;
  if (!(DISK_FORMATS as readonly unknown[]).includes(disk) || !(CONTAINER_FORMATS as readonly unknown[]).includes(container)) {
    throw new GlanceDownloadError('remote_image_unreadable', `The remote image's formats (disk_format ${String(disk).slice(0, 32)}, container_format ${String(container).slice(0, 32)}) are not ones this PIR takes.`);
  }
  const size = remote.size;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw new GlanceDownloadError('remote_image_unreadable', `Size attribute of remote image ${id} could not be determined.`);
  const claimed: ImageDoc['expected'] = {};
  if (typeof remote.checksum === 'string' && /^[0-9a-f]{32}$/.test(remote.checksum)) Object.assign(claimed, { md5: remote.checksum, md5_from: `the remote image's checksum` });
  if (remote.os_hash_algo === 'sha512' && typeof remote.os_hash_value === 'string' && /^[0-9a-f]{128}$/.test(remote.os_hash_value)) {
    Object.assign(claimed, { sha512: remote.os_hash_value, sha512_from: `the remote image's os_hash_value` });
  }
  return { size, claimed, adoption: { disk_format: disk as DiskFormat, container_format: container as ContainerFormat, properties: selectRemoteProperties(remote, prefixes) } };
}

/** A glance-download that cannot go on; `message` says why (it reaches the task and the image). */
export class GlanceDownloadError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'GlanceDownloadError';
  }
}

/** Finds a region's image endpoint in the catalog the caller's token sees. */
export interface ImageEndpointFinder {
  imageEndpoint(token: string, region: string, serviceInterface: string, signal?: AbortSignal): Promise<string>;
}

/** The image endpoint for `region` and `serviceInterface` in a Keystone v3 catalog (region compared without case, as Glance). */
export function imageEndpointIn(catalog: unknown, region: string, serviceInterface: string): string | null {
  const services = (catalog as { catalog?: unknown } | null)?.catalog;
  if (!Array.isArray(services)) return null;
  const wanted = region.toLowerCase();
  for (const service of services) {
    if (service?.type !== 'image' || !Array.isArray(service.endpoints)) continue;
    for (const endpoint of service.endpoints) {
      const inRegion = [endpoint?.region_id, endpoint?.region].some((r) => typeof r === 'string' && r.toLowerCase() === wanted);
      if (inRegion && endpoint.interface === serviceInterface && typeof endpoint.url === 'string') return endpoint.url;
    }
  }
  return null;
}

/**
 * The catalog from Keystone (GET /v3/auth/catalog with the caller's own token): what the caller
 * may see, from the Keystone PIR validates tokens with (an operator's URL, not a user's).
 */
export class KeystoneCatalog implements ImageEndpointFinder {
  constructor(private readonly settings: { url: string; timeoutSeconds: number }) {}

  async imageEndpoint(token: string, region: string, serviceInterface: string, signal?: AbortSignal): Promise<string> {
    const timeout = AbortSignal.timeout(this.settings.timeoutSeconds * 1000);
    let response: Response;
    try {
      response = await fetch(`${this.settings.url}/auth/catalog`, { headers: { 'X-Auth-Token': token, Accept: 'application/json' }, signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
    } catch (error) {
      throw new GlanceDownloadError('catalog_unavailable', `Keystone did not answer PIR's request for the service catalog (${(error as Error).name === 'TimeoutError' ? `no answer within ${this.settings.timeoutSeconds} s` : (error as Error).message}).`);
    }
    if (response.status === 401 || response.status === 403) {
      await response.body?.cancel();
      throw new GlanceDownloadError('catalog_unavailable', `Keystone refused the caller's token when PIR asked for the service catalog (HTTP ${response.status}): it may have expired; import again with a fresh token.`);
    }
    if (response.status !== 200) {
      await response.body?.cancel();
      throw new GlanceDownloadError('catalog_unavailable', `Keystone answered HTTP ${response.status} to PIR's request for the service catalog.`);
    }
    const url = imageEndpointIn(await response.json().catch(() => null), region, serviceInterface);
    if (!url) throw new GlanceDownloadError('glance_endpoint_not_found', `No image service endpoint for region '${region.slice(0, 64)}' and interface '${serviceInterface.slice(0, 64)}' in the Keystone catalog.`);
    return url;
  }
}

/** What the egress client needs to talk to a remote Glance with the caller's token. */
export interface RemoteGlanceDeps {
  egress: EgressClient;
  endpoints: ImageEndpointFinder;
  /** Prefixes of the properties copied (PIR_GLANCE_DOWNLOAD_PROPERTIES). */
  properties: readonly string[];
  maxImageSize: number;
  /** The remote record's own deadline; default RECORD_TIMEOUT_MS. */
  recordTimeoutMs?: number;
  /**
   * Checks what the image will take from the remote record, before its data is requested (throws
   * when the image cannot take it): a refusal costs no download.
   */
  accept?: (remote: RemoteImage) => void;
}

/** The remote image's record and its data, opened: the bytes are still to be read. */
export interface OpenedRemoteImage {
  remote: RemoteImage;
  response: EgressResponse;
}

/**
 * Looks up the remote Glance, reads the image's record and opens its data, with the caller's
 * token. The requests never follow a redirect (the token would go with it to wherever it points).
 */
export async function openRemoteImage(deps: RemoteGlanceDeps, token: string, request: GlanceDownloadRequest, signal?: AbortSignal): Promise<OpenedRemoteImage> {
  const endpoint = (await deps.endpoints.imageEndpoint(token, request.region, request.serviceInterface, signal)).replace(/\/+$/, '');
  const imageUrl = `${endpoint}/v2/images/${request.imageId}`;
  const headers = { 'x-auth-token': token, 'x-openstack-request-id': `req-${randomUUID()}` };
  const record = await readRecord(deps, imageUrl, { ...headers, accept: 'application/json' }, request, signal);
  const remote = remoteImageFrom(record, request.imageId, deps.properties);
  if (remote.size > deps.maxImageSize) throw new EgressError('too_large', `The remote image is ${remote.size} bytes, more than the ${deps.maxImageSize} this PIR accepts.`);
  deps.accept?.(remote);
  const response = await remoteCall(deps.egress, `${imageUrl}/file`, { ...headers, accept: 'application/octet-stream' }, deps.maxImageSize, request, signal);
  if (response.contentLength !== null && response.contentLength !== remote.size) {
    response.body.destroy();
    throw new GlanceDownloadError('remote_size_mismatch', `The remote image is ${remote.size} bytes but its data is announced as ${response.contentLength}.`);
  }
  return { remote, response: { ...response, body: cappedAt(response.body, remote.size) } };
}

/** The remote image record, read within its own deadline and size cap. */
async function readRecord(deps: RemoteGlanceDeps, url: string, headers: Record<string, string>, request: GlanceDownloadRequest, signal?: AbortSignal): Promise<unknown> {
  const timeoutMs = deps.recordTimeoutMs ?? RECORD_TIMEOUT_MS;
  const deadline = AbortSignal.timeout(timeoutMs);
  let text: string;
  try {
    const response = await remoteCall(deps.egress, url, headers, MAX_RECORD_BYTES, request, signal ? AbortSignal.any([signal, deadline]) : deadline);
    text = (await readAll(response.body)).toString('utf8');
  } catch (error) {
    if (!(error instanceof EgressError)) throw error;
    if (error.code === 'too_large') throw new GlanceDownloadError('remote_record_too_large', `The remote Glance's record of image ${request.imageId} is larger than ${MAX_RECORD_BYTES} bytes (an image record is a few kilobytes); PIR stopped reading it.`);
    if (deadline.aborted && !signal?.aborted) throw new GlanceDownloadError('remote_record_timeout', `The remote Glance did not send the record of image ${request.imageId} within ${timeoutMs / 1000} s.`);
    throw error;
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new GlanceDownloadError('remote_image_unreadable', `The remote Glance's answer for image ${request.imageId} is not JSON.`);
  }
}

/** The data, failing as soon as it runs past the remote record's size (a lying remote is not read to PIR_MAX_IMAGE_SIZE). */
function cappedAt(body: Readable, size: number): Readable {
  let received = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received > size) return callback(new GlanceDownloadError('remote_size_mismatch', `The remote image is ${size} bytes but its data runs past that; PIR stopped reading it.`));
      callback(null, chunk);
    },
  });
  pipeline(body, counter, () => {});
  return counter;
}

/** One GET to the remote Glance through the egress client; its refusals as clear failures. */
async function remoteCall(egress: EgressClient, url: string, headers: Record<string, string>, maxBytes: number, request: GlanceDownloadRequest, signal?: AbortSignal): Promise<EgressResponse> {
  const response = await egress.request(url, { method: 'GET', headers, maxBytes, followRedirects: false, anyStatus: true, ...(signal ? { signal } : {}) });
  if (response.status >= 200 && response.status <= 299) return response;
  response.body.destroy();
  const where = `the Glance of region '${request.region.slice(0, 64)}'`;
  if (response.status === 404) throw new GlanceDownloadError('remote_image_not_found', `Image ${request.imageId} was not found in ${where} (or the caller may not see it).`);
  if (response.status === 401 || response.status === 403) throw new GlanceDownloadError('remote_refused', `${where} refused the caller's token (HTTP ${response.status}): it may have expired, or the caller may not read image ${request.imageId} there.`);
  if (response.status >= 300 && response.status <= 399) throw new GlanceDownloadError('remote_redirect', `${where} answered a redirect (HTTP ${response.status}), which glance-download does not follow: the caller's token would go with it.`);
  throw new EgressError('upstream_status', `${where} answered HTTP ${response.status} for image ${request.imageId}.`);
}

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
