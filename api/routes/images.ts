/** Glance's image calls (glance/api/v2/images.py): create, list, show, update, delete, deactivate, reactivate (import: image-import.ts). */
import type { FastifyInstance } from 'fastify';
import type { ImageDoc } from '../../schemas/image.js';
import type { Caller } from '../../core/caller.js';
import { fail } from '../../core/error-catalog.js';
import { PATCH_MEDIA_TYPES, parsePatch, type PatchMediaType } from '../../core/image-patch.js';
import type { ImageService } from '../../core/image-service.js';
import type { Quotas } from '../../core/quota.js';
import { imageView } from '../glance-view.js';
import { collectPage, PAGE_LIMITS } from '../list-page.js';
import { linkQuery, parseListQuery, type RawQuery } from '../list-query.js';
import { importMethods } from './image-import.js';
import { checkCreateNames, createImage } from '../image-create.js';
import { CreateImageBody } from '../image-schema.js';
import { locationFields } from '../../core/external-location.js';
import type { LocationRegistrations } from '../../ingest/register-location.js';
import { locationPatch, touchesLocations } from './image-locations.js';
import { mediaTypeOf } from '../http-hygiene.js';
import { jsonBodyParser } from '../json-body.js';

export async function imageRoutes(app: FastifyInstance, images: ImageService, quotas: Quotas, locations?: LocationRegistrations, glanceDownload = false): Promise<void> {
  // The image as this caller may see it: locations only by the operator's and Glance's rules.
  const view = (caller: Caller, doc: ImageDoc) => imageView(doc, locations ? locationFields(caller, doc, locations.settings) : undefined);
  // Glance's JSON-patch media types are JSON, parsed with Fastify's own (prototype-poisoning-safe) parser.
  app.addContentTypeParser([...PATCH_MEDIA_TYPES], { parseAs: 'string' }, jsonBodyParser(app));
  app.post('/v2/images', {
    schema: { body: CreateImageBody },
    preValidation: async (request) => checkCreateNames(request.body),
  }, async (request, reply) => {
    const doc = await createImage(request.caller, request.body as Record<string, unknown>, images, quotas);
    reply.header('Location', `/v2/images/${doc.id}`);
    reply.header('OpenStack-image-import-methods', importMethods(images, glanceDownload).join(','));
    // Glance announces its stores on create when it has several.
    if (images.stores.multi) reply.header('OpenStack-image-store-ids', images.stores.ids.join(','));
    return reply.code(201).send(view(request.caller, doc));
  });

  app.get('/v2/images', async (request, reply) => {
    const raw = request.query as RawQuery;
    const listRequest = parseListQuery(raw);
    const { limit } = listRequest.query;
    // Serialized image by image, so a page never holds more than its byte budget (a full page
    // of large images is cut short, with a `next` link to the rest); the documents are read a
    // batch at a time (ImageService.listBatches).
    const page = await collectPage(
      images.listBatches(request.caller, listRequest, PAGE_LIMITS.batch),
      limit,
      (doc) => JSON.stringify(view(request.caller, doc)),
    );
    const query = linkQuery(raw);
    const first = query ? `/v2/images?${query}` : '/v2/images';
    // As Glance: a full page has a next link (which may turn out empty).
    const next = page.lastId !== null && (page.count === limit || page.cut) ? `,"next":${JSON.stringify(`/v2/images?${linkQuery(raw, page.lastId)}`)}` : '';
    return reply.type('application/json').send(`{"images":[${page.items.join(',')}],"first":${JSON.stringify(first)},"schema":"/v2/schemas/images"${next}}`);
  });

  app.get('/v2/images/:id', async (request) => view(request.caller, await images.get(request.caller, idOf(request.params))));

  app.patch('/v2/images/:id', {
    // The media type is checked before the body is parsed: anything but Glance's JSON-patch is 415,
    // with Accept-Patch naming the two it takes (RFC 5789 §2.2; Glance sends it too).
    onRequest: async (request, reply) => {
      try {
        patchMediaType(request.headers['content-type']);
      } catch (error) {
        reply.header('accept-patch', ACCEPT_PATCH);
        throw error;
      }
    },
  }, async (request) => {
    const mediaType = patchMediaType(request.headers['content-type']);
    if (locations && touchesLocations(request.body)) {
      await locationPatch(request.caller, idOf(request.params), request.body as unknown[], locations, images);
      return view(request.caller, await images.get(request.caller, idOf(request.params)));
    }
    const ops = parsePatch(request.body, mediaType);
    return view(request.caller, await images.update(request.caller, idOf(request.params), ops));
  });

  app.delete('/v2/images/:id', async (request, reply) => {
    const id = idOf(request.params);
    const { owner } = await images.get(request.caller, id);
    await images.remove(request.caller, id, (error) => request.log.warn({ err: error, image_id: id }, 'image deleted but its bytes could not be removed yet; the store janitor will'));
    await quotas.releaseAll(owner, id); // at once; the image.deleted event does it again, durably
    return reply.code(204).send();
  });

  app.post('/v2/images/:id/actions/deactivate', async (request, reply) => {
    await images.deactivate(request.caller, idOf(request.params));
    return reply.code(204).send();
  });

  app.post('/v2/images/:id/actions/reactivate', async (request, reply) => {
    await images.reactivate(request.caller, idOf(request.params));
    return reply.code(204).send();
  });
}

/** Accept-Patch of a 415 to PATCH: the media types it takes, in Glance's (sorted) order. */
const ACCEPT_PATCH = [...PATCH_MEDIA_TYPES].sort().join(', ');

/** The PATCH media type, or 415 naming the one to send. */
function patchMediaType(header: string | undefined): PatchMediaType {
  const type = mediaTypeOf(header);
  if ((PATCH_MEDIA_TYPES as readonly string[]).includes(type)) return type as PatchMediaType;
  throw fail('patch_media_type', `PATCH /v2/images/{id} takes Content-Type: ${PATCH_MEDIA_TYPES[0]} (got '${type.slice(0, 100) || 'none'}'), a JSON list like [{"op": "replace", "path": "/name", "value": "new name"}].`);
}

function idOf(params: unknown): string {
  return (params as { id: string }).id;
}
