/** Glance's image metadata calls: create, list, show, delete, tasks, schemas (import: image-import.ts). */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { CONTAINER_FORMATS, DISK_FORMATS, VISIBILITIES, type ImageDoc } from '../../schemas/image.js';
import { badRequest, conflict } from '../../core/errors.js';
import type { CreateImageInput, ImageService } from '../../core/image-service.js';
import { ManifestConflictError, type ListQuery, type SortKey } from '../../core/ports.js';
import type { Quotas } from '../../core/quota.js';
import { imageView, taskViews } from '../glance-view.js';
import { imageSchema, imagesSchema } from '../image-schema.js';
import { collectPage } from '../list-page.js';
import { refusalForProperty } from '../reserved-properties.js';
import { IMPORT_METHODS } from './image-import.js';

const BASE_FIELDS = new Set(['id', 'name', 'disk_format', 'container_format', 'visibility', 'protected', 'os_hidden', 'min_disk', 'min_ram', 'tags', 'os_hash_algo', 'os_hash_value']);
const SORT_KEYS = new Set<SortKey>(['created_at', 'updated_at', 'name', 'status', 'size', 'id', 'disk_format', 'container_format']);
const FILTERS = ['name', 'status', 'visibility', 'disk_format', 'container_format', 'owner', 'id'] as const;

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
  // Bounds on count, names and total size are the domain's (core/image-limits.ts).
  additionalProperties: { type: 'string', maxLength: 65535 },
} as const;

export async function imageRoutes(app: FastifyInstance, images: ImageService, quotas: Quotas): Promise<void> {
  app.get('/v2/schemas/image', async () => imageSchema);
  app.get('/v2/schemas/images', async () => imagesSchema);

  app.post('/v2/images', {
    schema: { body: createBody },
    // Read-only and reserved names are refused (403) whatever their value, before the schema's 400.
    preValidation: async (request) => {
      const body = request.body;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) return;
      for (const key of Object.keys(body)) {
        const refusal = BASE_FIELDS.has(key) ? null : refusalForProperty(key);
        if (refusal) throw refusal;
      }
    },
  }, async (request, reply) => {
    const body = request.body as Record<string, unknown>;
    const input: CreateImageInput = { properties: {} };
    for (const [key, value] of Object.entries(body)) {
      if (!BASE_FIELDS.has(key)) input.properties![key] = value as string;
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

  app.get('/v2/images', async (request, reply) => {
    const query = request.query as Record<string, string | string[] | undefined>;
    const listQuery = await parseListQuery(query, images);
    // Serialized image by image, so a page never holds more than its byte budget (a full page
    // of large images is cut short, with a `next` link to the rest).
    const page = await collectPage((q) => images.list(q), listQuery, (doc) => JSON.stringify(imageView(doc)), (doc) => ({ value: sortValue(doc, listQuery.sortKey), id: doc.id }));
    let next = '';
    if (page.lastId !== null && (page.count === listQuery.limit || page.cut)) {
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(query)) {
        if (key === 'marker' || value === undefined) continue;
        for (const v of Array.isArray(value) ? value : [value]) params.append(key, v);
      }
      params.set('marker', page.lastId);
      next = `,"next":${JSON.stringify(`/v2/images?${params.toString()}`)}`;
    }
    return reply.type('application/json').send(`{"images":[${page.items.join(',')}],"first":"/v2/images","schema":"/v2/schemas/images"${next}}`);
  });

  app.get('/v2/images/:id', async (request) => imageView(await images.get(idOf(request.params))));
  app.get('/v2/images/:id/tasks', async (request) => ({ tasks: taskViews(await images.get(idOf(request.params))) }));

  app.delete('/v2/images/:id', async (request, reply) => {
    const id = idOf(request.params);
    const { owner } = await images.get(id);
    await images.remove(id, (error) => request.log.warn({ err: error, image_id: id }, 'image deleted but its bytes could not be removed yet; the store janitor will'));
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

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[value.length - 1] : value;
}

async function parseListQuery(query: Record<string, string | string[] | undefined>, images: ImageService): Promise<ListQuery> {
  const limitText = single(query.limit);
  if (limitText !== undefined && !/^\d{1,9}$/.test(limitText)) {
    throw badRequest('bad_limit', `Query parameter 'limit' must be a whole number, 0 or more (a page holds at most 1000 images; got '${clip(limitText)}').`);
  }
  const limit = limitText === undefined ? 25 : Number(limitText);
  let sortKey: SortKey = 'created_at';
  let sortDir: 'asc' | 'desc' = 'desc';
  const sort = single(query.sort);
  if (sort !== undefined) {
    if (query.sort_key !== undefined || query.sort_dir !== undefined) {
      throw badRequest('bad_sort', "Query parameter 'sort' cannot be combined with 'sort_key' or 'sort_dir'; use one syntax.");
    }
    const [key, dir] = sort.split(',')[0].split(':').map((part) => part.trim());
    if (!key) throw badRequest('bad_sort', `Query parameter 'sort' must be key[:asc|desc] (got '${clip(sort)}').`);
    sortKey = key as SortKey;
    if (dir !== undefined) sortDir = dir as 'asc' | 'desc';
  } else {
    if (query.sort_key !== undefined) sortKey = (single(query.sort_key) ?? '').trim() as SortKey;
    if (query.sort_dir !== undefined) sortDir = (single(query.sort_dir) ?? '').trim() as 'asc' | 'desc';
  }
  const sortParam = sort !== undefined ? 'sort' : 'sort_key';
  if (!SORT_KEYS.has(sortKey)) throw badRequest('bad_sort_key', `Query parameter '${sortParam}': cannot sort by '${clip(sortKey)}'; use one of ${[...SORT_KEYS].join(', ')}.`);
  if (sortDir !== 'asc' && sortDir !== 'desc') throw badRequest('bad_sort_dir', `Query parameter '${sort !== undefined ? 'sort' : 'sort_dir'}': the direction must be asc or desc (got '${clip(sortDir)}').`);
  const where: ListQuery['where'] = {};
  for (const field of FILTERS) {
    const value = single(query[field]);
    if (value === undefined) continue;
    where[field] = value.startsWith('in:') ? value.slice(3).split(',').map((v) => v.replace(/^"|"$/g, '')) : value;
  }
  const listQuery: ListQuery = { where, sortKey, sortDir, limit: Math.min(limit, 1000) };
  const marker = single(query.marker);
  if (marker !== undefined) {
    const doc = marker === '' ? null : await images.get(marker).catch(() => null);
    if (!doc) throw badRequest('bad_marker', `Query parameter 'marker' must be the id of an image that can be listed (got '${clip(marker)}').`);
    listQuery.after = { value: sortValue(doc, sortKey), id: doc.id };
  }
  return listQuery;
}

/** A client's text quoted back in an error, cut short. */
function clip(text: string): string {
  return text.length > 64 ? `${text.slice(0, 64)}…` : text;
}

function sortValue(doc: ImageDoc, key: SortKey): string | number | null {
  return doc[key] as string | number | null;
}
