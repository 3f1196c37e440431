/**
 * Resumable uploads (tus 1.0: core, creation, termination, checksum, expiration) at
 * /v2/images/{id}/uploads. The protocol's headers are read and written here; the upload itself
 * is ingest/tus/. Token and policy are those of PUT …/file; errors keep PIR's JSON shape.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { fail } from '../../core/error-catalog.js';
import type { ResumableUploads, UploadState } from '../../ingest/tus/resumable-uploads.js';
import {
  TUS_CHECKSUM_ALGORITHMS, TUS_CONTENT_TYPE, TUS_EXTENSIONS, TUS_VERSION,
  byteCount, httpDate, parseUploadChecksum, parseUploadMetadata, requireTusResumable,
} from '../../ingest/tus/protocol.js';
import { mediaTypeOf } from '../http-hygiene.js';

export interface UploadRouteDeps {
  uploads: ResumableUploads;
  maxImageSize: number;
  /** PIR_PUBLIC_URL: Location is absolute under it; otherwise a path (clients resolve it). */
  publicUrl: string | null;
}

type Params = { id: string; upload: string };

export async function imageUploadRoutes(app: FastifyInstance, deps: UploadRouteDeps): Promise<void> {
  await app.register(async (tus) => {
    // PATCH bodies are streamed, never parsed or buffered.
    tus.addContentTypeParser(TUS_CONTENT_TYPE, (_request, payload, done) => done(null, payload));
    // Every answer says which tus version it speaks, errors included; a 412 (only ever
    // tus_version_unsupported here) also lists the versions PIR speaks, as tus 1.0 requires.
    tus.addHook('onSend', async (_request, reply) => {
      reply.header('Tus-Resumable', TUS_VERSION);
      if (reply.statusCode === 412) reply.header('Tus-Version', TUS_VERSION);
    });

    const discovery = async (_request: FastifyRequest, reply: FastifyReply) => reply
      .header('Tus-Version', TUS_VERSION)
      .header('Tus-Extension', TUS_EXTENSIONS.join(','))
      .header('Tus-Max-Size', String(deps.maxImageSize))
      .header('Tus-Checksum-Algorithm', TUS_CHECKSUM_ALGORITHMS.join(','))
      .code(204).send();
    tus.options('/v2/images/:id/uploads', discovery);
    tus.options('/v2/images/:id/uploads/:upload', discovery);

    tus.post('/v2/images/:id/uploads', async (request, reply) => {
      requireTusResumable(request.headers['tus-resumable']);
      if (request.headers['upload-defer-length'] !== undefined) {
        throw fail('bad_header', 'Upload-Defer-Length is not supported: send Upload-Length, the size of the image in bytes.');
      }
      const length = byteCount('Upload-Length', request.headers['upload-length']);
      // Checked before the image is claimed; stored as sent, for HEAD.
      const metadata = parseUploadMetadata(request.headers['upload-metadata']);
      const { id } = request.params as Params;
      const created = await deps.uploads.create(request.caller, id, length, metadata);
      const path = `/v2/images/${id}/uploads/${created.id}`;
      return reply.code(201)
        .header('Location', deps.publicUrl ? `${deps.publicUrl}${path}` : path)
        .header('Upload-Expires', httpDate(created.expires_at))
        .header('Upload-Offset', '0')
        .send();
    });

    tus.head('/v2/images/:id/uploads/:upload', async (request, reply) => {
      requireTusResumable(request.headers['tus-resumable']);
      const { id, upload } = request.params as Params;
      const state = await deps.uploads.state(request.caller, id, upload);
      if (state.metadata !== undefined) reply.header('Upload-Metadata', state.metadata);
      return withState(reply.code(200), state).send();
    });

    // Checked before the body is read: another media type would be parsed as JSON (api/app.ts).
    const requirePatchHeaders = async (request: FastifyRequest) => {
      requireTusResumable(request.headers['tus-resumable']);
      const type = mediaTypeOf(request.headers['content-type']);
      if (type !== TUS_CONTENT_TYPE) {
        throw fail('bad_content_type', `Send PATCH data as Content-Type: ${TUS_CONTENT_TYPE} (got '${type.slice(0, 64) || 'none'}').`);
      }
    };
    tus.patch('/v2/images/:id/uploads/:upload', { onRequest: requirePatchHeaders }, async (request, reply) => {
      const offset = byteCount('Upload-Offset', request.headers['upload-offset']);
      const contentLength = request.headers['content-length'] === undefined ? null : byteCount('Content-Length', request.headers['content-length']);
      const checksum = parseUploadChecksum(request.headers['upload-checksum']);
      const body = request.body as NodeJS.ReadableStream | undefined;
      if (!body) throw fail('no_body', 'The PATCH has no data.');
      const { id, upload } = request.params as Params;
      const state = await deps.uploads.patch(request.caller, id, upload, { offset, body, contentLength, checksum });
      return withState(reply.code(204), state).send();
    });

    tus.delete('/v2/images/:id/uploads/:upload', async (request, reply) => {
      requireTusResumable(request.headers['tus-resumable']);
      const { id, upload } = request.params as Params;
      await deps.uploads.terminate(request.caller, id, upload);
      return reply.code(204).send();
    });
  });
}

function withState(reply: FastifyReply, state: UploadState): FastifyReply {
  return reply
    .header('Upload-Offset', String(state.offset))
    .header('Upload-Length', String(state.length))
    .header('Upload-Expires', httpDate(state.expires_at))
    .header('Cache-Control', 'no-store');
}
