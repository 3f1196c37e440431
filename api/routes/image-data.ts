/** Image data: PUT …/file (upload and import), PUT …/stage (glance-direct), GET …/file (download, Range). */
import { countServed } from '../../infra/telemetry/served-bytes.js';
import { recycleAfterWrite } from '../../infra/storage/file-stream.js';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errorSpec, fail } from '../../core/error-catalog.js';
import { PirError, badRequest } from '../../core/errors.js';
import type { ImageService } from '../../core/image-service.js';
import type { Quotas } from '../../core/quota.js';
import type { Manifest } from '../../core/manifest.js';
import type { BlobStore } from '../../core/ports.js';
import type { ImageDoc } from '../../schemas/image.js';
import { copiesOf, readingOrder } from '../../core/image-stores.js';
import type { StoreRegistry } from '../../core/store-registry.js';
import { uploadTargets } from '../store-targets.js';
import { LocationChangedError, LocationUnreadableError } from '../../infra/storage/location-errors.js';
import type { HashPool } from '../../ingest/hashing/index.js';
import { expectedDigests } from '../../ingest/digest-fields.js';
import { receiveUpload, type UploadSettings } from '../../ingest/receive-upload.js';
import { requestedRange } from '../byte-range.js';
import { sendError } from '../error-handler.js';
import { mediaTypeOf, sendContinue } from '../http-hygiene.js';
import { isSettled, waitForSettled } from '../wait-for-settled.js';


export interface DataRouteDeps {
  images: ImageService;
  manifest: Manifest;
  blobs: BlobStore;
  hashes: HashPool;
  upload: UploadSettings;
  quotas: Quotas;
}

export async function imageDataRoutes(app: FastifyInstance, deps: DataRouteDeps): Promise<void> {
  // Image bytes are never parsed or buffered: the handler streams the raw request.
  app.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload));

  app.put('/v2/images/:id/file', { onRequest: requireImageData }, async (request, reply) => {
    const id = (request.params as { id: string }).id;
    await receive(request, reply, deps, id, 'upload');
    if (wantsAsync(request)) return reply.code(202).send();
    // The body is in; the pipeline may take long with nothing on the wire: no idle cut meanwhile
    // (Node arms the keep-alive timeout again after the answer).
    const socket = request.raw.socket;
    socket.setTimeout?.(0); // (absent on inject()'s simulated socket)
    // The wait ends when the client goes, or after settleWaitMs: a pipeline that cannot go on
    // (its workers down, a service silent) must not hold the client for good. The answer is then
    // 202, as for respond-async, and the image goes on importing.
    const stop = new AbortController();
    const onClose = () => stop.abort();
    // One listener per upload, removed when it is done: a keep-alive connection carries many.
    socket.once('close', onClose);
    const waitMs = deps.upload.settleWaitMs;
    // A timer cleared when the wait ends (AbortSignal.timeout's would stay pending for its whole delay).
    const timer = waitMs === undefined ? null : setTimeout(() => stop.abort(), waitMs);
    let settled;
    try {
      settled = await waitForSettled(deps.manifest, id, stop.signal);
    } finally {
      socket.off('close', onClose);
      if (timer) clearTimeout(timer);
    }
    if (settled && !isSettled(settled.status)) {
      if (!socket.destroyed) request.log.info({ image_id: id, status: settled.status, waited_ms: waitMs }, 'upload answered 202: the image did not settle within PIR_UPLOAD_SETTLE_WAIT_SECONDS');
      return reply.code(202).send();
    }
    if (!settled || settled.status === 'deleted') return sendError(reply, 410, 'image_deleted', `Image ${id} was deleted while it was being imported.`);
    if (settled.status === 'killed' && settled.failure) {
      const { code, message, stage } = settled.failure;
      // Failures of the image itself answer their catalog status (415 for the inspectors' refusals,
      // as Glance; 400 for the others); failures of PIR answer 500.
      const spec = errorSpec(code);
      return sendError(reply, spec?.class === 'refusal' ? spec.status : 500, code, `Image ${id} was refused at the ${stage} stage: ${message}`);
    }
    return reply.code(204).send();
  });

  app.put('/v2/images/:id/stage', { onRequest: requireImageData }, async (request, reply) => {
    await receive(request, reply, deps, (request.params as { id: string }).id, 'stage');
    return reply.code(204).send();
  });

  // HEAD has its own route: Fastify's automatic one would run GET and drain the file.
  const download = async (request: FastifyRequest, reply: FastifyReply) => {
    const id = (request.params as { id: string }).id;
    const doc = await deps.images.forDownload(request.caller, id);
    // forDownload let through a deactivated image only for an administrator.
    if ((doc.status !== 'active' && doc.status !== 'deactivated') || doc.size === null) return reply.code(204).send();
    // From the image's metadata alone: no file is opened (Fastify would read a stream to its end).
    if (request.method === 'HEAD') return sendStoredHeaders(reply, doc);
    return sendStoredBytes(request, reply, deps.images.stores, doc, preferredStores(request, deps.images.stores));
  };
  app.head('/v2/images/:id/file', download);
  app.get('/v2/images/:id/file', { exposeHeadRoute: false }, download);
}

/**
 * Image data is octet-stream, checked before any body is read (as Glance's deserializer): a JSON
 * or other body sent here is answered 415 unread, never parsed.
 */
async function requireImageData(request: FastifyRequest): Promise<void> {
  const type = mediaTypeOf(request.headers['content-type']);
  if (type !== 'application/octet-stream') {
    throw new PirError('unsupported_media_type', 'bad_content_type', `Send image data as Content-Type: application/octet-stream (got '${type.slice(0, 64) || 'none'}').`);
  }
}

async function receive(request: FastifyRequest, reply: FastifyReply, deps: DataRouteDeps, id: string, kind: 'upload' | 'stage') {
  const body = request.body as NodeJS.ReadableStream | undefined;
  if (!body) throw badRequest('no_body', 'The request has no image data.');
  return receiveUpload(request.caller, deps, id, kind, {
    body,
    contentLength: headerInt(request, 'content-length'),
    declaredSize: headerInt(request, 'x-openstack-image-size'),
    expected: expectedDigests(request.headers),
    trailers: () => request.raw.trailers ?? {},
    onClaimed: () => sendContinue(request.raw, reply.raw),
    targets: uploadTargets(request, deps.images.stores),
  });
}

function wantsAsync(request: FastifyRequest): boolean {
  const prefer = request.headers.prefer;
  return typeof prefer === 'string' && prefer.split(',').some((p) => p.trim().toLowerCase() === 'respond-async');
}

function headerInt(request: FastifyRequest, name: string): number | null {
  const value = request.headers[name];
  if (value === undefined) return null;
  if (typeof value !== 'string' || !/^\d{1,16}$/.test(value)) throw badRequest('bad_header', `${name} must be a whole number of bytes.`);
  return Number(value);
}

/**
 * The image's stored bytes, whole or one Range, with its checksums: Content-MD5 on a whole
 * answer (as Glance), and Repr-Digest (RFC 9530: the sha512 of the whole image, valid on a
 * partial answer too). Shared by GET …/file and share links.
 */
export async function sendStoredBytes(request: FastifyRequest, reply: FastifyReply, stores: StoreRegistry, doc: ImageDoc, preferred: readonly string[] = []) {
  const id = doc.id;
  // The store failing (an object store down, a blob gone) is a 503 for the client, logged for the operator.
  const unavailable = (detail: { err?: unknown; stored?: number; expected?: number | null }) => {
    // A registered location that changed is refused as such (409), one that cannot be read is a
    // 503 of its own; neither message names the location.
    if (detail.err instanceof LocationChangedError) {
      request.log.warn({ image_id: id, reason: detail.err.detail }, 'registered location changed; download refused');
      return detail.err;
    }
    if (detail.err instanceof LocationUnreadableError) {
      request.log.warn({ image_id: id, code: detail.err.code, reason: detail.err.message }, 'registered location unreadable');
      return new PirError('unavailable', 'location_unreadable', `Image ${id}'s data could not be read from its registered location (${detail.err.message}); retry later or ask the image's owner.`, true);
    }
    request.log.error({ image_id: id, ...detail }, 'stored bytes missing, wrong size or unreadable');
    return new PirError('unavailable', 'data_unavailable', `Image ${id}'s data is not available right now; the operator has been told.`);
  };
  const source = await readableCopy(request, stores, doc, preferred);
  if ('failure' in source) throw unavailable({ err: source.failure.err, stored: source.failure.stored, expected: doc.size });
  const { blobs, key } = source;
  const size = doc.size!;
  const open = async (range?: { start: number; end: number }) => {
    const stream = await blobs.read(key, range).catch((err: unknown) => { throw unavailable({ err }); });
    // Fastify pipes it into the response: a file's stream may then reuse its read buffers.
    recycleAfterWrite(stream, reply.raw);
    return stream;
  };
  reply.header('Accept-Ranges', 'bytes').type('application/octet-stream');
  setReprDigest(reply, doc);
  const asked = requestedRange(request.headers, size);
  if (asked.kind === 'refused') {
    if (asked.status === 416) reply.header('Content-Range', `bytes */${size}`);
    return sendError(reply, asked.status, asked.code, asked.message);
  }
  if (asked.kind === 'range') {
    const { range } = asked;
    reply.code(206).header('Content-Range', `bytes ${range.start}-${range.end}/${size}`).header('Content-Length', range.end - range.start + 1);
    return reply.send(countServed(await open(range), range.end - range.start + 1));
  }
  if (doc.checksum) reply.header('Content-MD5', doc.checksum);
  reply.header('Content-Length', size);
  return reply.send(countServed(await open(), size));
}

/** Repr-Digest (RFC 9530): the whole image's sha512, the same on a whole, partial or HEAD answer. */
function setReprDigest(reply: FastifyReply, doc: ImageDoc): void {
  if (doc.os_hash_algo === 'sha512' && doc.os_hash_value) reply.header('Repr-Digest', `sha-512=:${Buffer.from(doc.os_hash_value, 'hex').toString('base64')}:`);
}

/** A HEAD of the image's bytes: the headers a whole GET answers with, from the metadata alone. */
export function sendStoredHeaders(reply: FastifyReply, doc: ImageDoc) {
  reply.header('Accept-Ranges', 'bytes').header('Content-Length', doc.size).type('application/octet-stream');
  if (doc.checksum) reply.header('Content-MD5', doc.checksum);
  setReprDigest(reply, doc);
  return reply.code(200).send();
}

/**
 * Glance's `?prefer=store1,store2` (multi-store): the stores to read the image from first, if
 * they hold it; 400 for a store that is not configured, or when there is one store only.
 */
function preferredStores(request: FastifyRequest, stores: StoreRegistry): string[] {
  const prefer = (request.query as Record<string, unknown> | undefined)?.prefer;
  if (prefer === undefined || prefer === '') return [];
  if (typeof prefer !== 'string') throw fail('unknown_store', 'Give prefer once, as a comma-separated list of store ids.');
  if (!stores.multi) throw fail('unknown_store', 'Store selection for download (prefer) needs several stores (PIR_STORES); this PIR has one.');
  const ids = prefer.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  for (const id of ids) {
    if (!stores.has(id)) throw fail('unknown_store', `Store '${id.slice(0, 64)}' is not configured; GET /v2/info/stores lists them.`);
  }
  return ids;
}

/**
 * The first copy of the image that its store answers for with the right size: the preferred
 * stores' first, then the default store's, then the others (a store down or missing the blob
 * is logged and skipped).
 */
async function readableCopy(request: FastifyRequest, stores: StoreRegistry, doc: ImageDoc, preferred: readonly string[]): Promise<{ blobs: BlobStore; key: string } | { failure: { err?: unknown; stored?: number } }> {
  // The last store's failure is what the client hears (a registered location's own error included).
  let failure: { err?: unknown; stored?: number } = {};
  for (const copy of readingOrder(copiesOf(doc, stores.defaultId), stores.defaultId, preferred)) {
    if (!stores.has(copy.store)) continue;
    const blobs = stores.get(copy.store);
    try {
      const size = (await blobs.stat(copy.key))?.size ?? -1;
      if (size === doc.size) return { blobs, key: copy.key };
      failure = { stored: size };
      request.log.error({ image_id: doc.id, store: copy.store, stored: size, expected: doc.size }, 'copy in store missing or the wrong size; trying the next store');
    } catch (err) {
      failure = { err };
      request.log.error({ image_id: doc.id, store: copy.store, err }, 'store unreadable; trying the next store');
    }
  }
  return { failure };
}

