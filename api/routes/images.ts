/** Glance's image metadata calls: create, list, show, delete, tasks, schemas (import: image-import.ts). */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { CONTAINER_FORMATS, DISK_FORMATS, READ_ONLY_FIELDS, VISIBILITIES } from '../../schemas/image.js';
import { badRequest, conflict, forbidden } from '../../core/errors.js';
import type { CreateImageInput, ImageService } from '../../core/image-service.js';
import { ManifestConflictError } from '../../core/ports.js';
import type { Quotas } from '../../core/quota.js';
import { linkQuery, parseListQuery, type RawQuery } from '../list-query.js';
import { imageView, taskViews } from '../glance-view.js';
import { imageSchema, imagesSchema } from '../image-schema.js';
import { IMPORT_METHODS } from './image-import.js';

const BASE_FIELDS = new Set(['id', 'name', 'disk_format', 'container_format', 'visibility', 'protected', 'os_hidden', 'min_disk', 'min_ram', 'tags', 'os_hash_algo', 'os_hash_value']);

const createBody = {
  type: 'object',
  properties: {
    id: { type: 'string', pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' },
    name: { type: ['string', 'null'], maxLength: 255 },
    disk_format: { type: ['string', 'null'], enum: [null, ...DISK_FORMATS] },
    container_format: { type: ['string', 'null'], enum: [null, ...CONTAINER_FORMATS] },
    visibility: { type: 'string', enum: [...VISIBILITIES] },
    protected: { type: 'boolean' },
    os_hidden: { type: 'boolean' },
    min_disk: { type: 'integer', minimum: 0 },
    min_ram: { type: 'integer', minimum: 0 },
    tags: { type: 'array', maxItems: 128, items: { type: 'string', minLength: 1, maxLength: 255 } },
    os_hash_algo: { type: 'string', enum: ['sha512'] },
    os_hash_value: { type: 'string', pattern: '^[0-9a-fA-F]{128}$' },
  },
  // Glance's extra properties are strings; read-only and reserved names are refused below.
  additionalProperties: { type: 'string', maxLength: 65535 },
  maxProperties: 256,
} as const;

export async function imageRoutes(app: FastifyInstance, images: ImageService, quotas: Quotas): Promise<void> {
  app.get('/v2/schemas/image', async () => imageSchema);
  app.get('/v2/schemas/images', async () => imagesSchema);

  app.post('/v2/images', { schema: { body: createBody } }, async (request, reply) => {
    const body = request.body as Record<string, unknown>;
    const input: CreateImageInput = { properties: {} };
    for (const [key, value] of Object.entries(body)) {
      if (key.startsWith('os_glance_')) throw forbidden('reserved_property', `Property '${key}' is reserved (os_glance_*); choose another name.`);
      if (BASE_FIELDS.has(key)) continue;
      if (READ_ONLY_FIELDS.has(key) || key === 'owner' || key.startsWith('pir_')) {
        throw forbidden('read_only_property', `Attribute '${key}' is read-only; leave it out of the request.`);
      }
      if (key.length > 255) throw badRequest('property_name_too_long', 'Property names are at most 255 characters.');
      input.properties![key] = value as string;
    }
    Object.assign(input, pick(body, ['id', 'name', 'disk_format', 'container_format', 'visibility', 'protected', 'os_hidden', 'min_disk', 'min_ram', 'tags']));
    if (typeof body.os_hash_value === 'string') input.expected_sha512 = body.os_hash_value;
    input.id ??= randomUUID();
    const owner = request.caller.project_id;
    await quotas.reserveImage(owner, input.id);
    const doc = await images.create(input, owner).catch(async (error: unknown) => {
      // Give the hold back, unless it is the existing image's (a duplicate id).
      if (!(await images.get(input.id!).catch(() => null))) await quotas.cancelImage(owner, input.id!);
      if (error instanceof ManifestConflictError) throw conflict('duplicate_id', `An image with id ${String(input.id)} already exists; leave id out to get a new one.`);
      throw error;
    });
    reply.header('Location', `/v2/images/${doc.id}`);
    reply.header('OpenStack-image-import-methods', IMPORT_METHODS.join(','));
    return reply.code(201).send(imageView(doc));
  });

  app.get('/v2/images', async (request) => {
    const raw = request.query as RawQuery;
    const listRequest = parseListQuery(raw);
    const docs = await images.list(request.caller, listRequest);
    const query = linkQuery(raw);
    const result: Record<string, unknown> = { images: docs.map(imageView), first: query ? `/v2/images?${query}` : '/v2/images', schema: '/v2/schemas/images' };
    // As Glance: a full page has a next link (which may turn out empty).
    if (docs.length > 0 && docs.length === listRequest.query.limit) result.next = `/v2/images?${linkQuery(raw, docs[docs.length - 1]!.id)}`;
    return result;
  });

  app.get('/v2/images/:id', async (request) => imageView(await images.get(idOf(request.params))));
  app.get('/v2/images/:id/tasks', async (request) => ({ tasks: taskViews(await images.get(idOf(request.params))) }));

  app.delete('/v2/images/:id', async (request, reply) => {
    const id = idOf(request.params);
    const { owner } = await images.get(id);
    await images.remove(id);
    await quotas.releaseAll(owner, id); // at once; the image.deleted event does it again, durably
    return reply.code(204).send();
  });
}

function idOf(params: unknown): string {
  return (params as { id: string }).id;
}

function pick(body: Record<string, unknown>, keys: string[]): Partial<CreateImageInput> {
  return Object.fromEntries(keys.filter((k) => k in body).map((k) => [k, body[k]])) as Partial<CreateImageInput>;
}
