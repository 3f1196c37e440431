/**
 * The catalog extension (README: Galleries, Metadata revisions, Metafiles): /v2/galleries,
 * /v2/images/{id}/revisions and /v2/images/{id}/metafile. Every decision is in CatalogService.
 */
import type { FastifyInstance } from 'fastify';
import type { CatalogService } from '../../core/catalog.js';
import type { GalleryMember, Revision } from '../../core/catalog-ports.js';
import { fail } from '../../core/error-catalog.js';
import { imageView } from '../glance-view.js';

const DEFAULT_LIMIT = 25;
const MAX_LIMIT = 200;

type Query = Record<string, string | string[] | undefined>;

const GALLERY_LIST_PARAMETERS = new Set(['shared', 'owner', 'parent_id']);

function one(query: unknown, key: string): string | undefined {
  const value = (query as Query | undefined)?.[key];
  if (Array.isArray(value)) throw fail(key === 'recursive' || key === 'parent_id' || key === 'owner' || key === 'shared' ? 'bad_gallery' : 'bad_revision', `Query parameter '${key}' was given ${value.length} times; give it once.`);
  return value;
}

function recursiveOf(query: unknown): boolean {
  const value = one(query, 'recursive');
  if (value === undefined) return false;
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw fail('bad_gallery', `Query parameter 'recursive' is true or false (got '${value.slice(0, 20)}').`);
}

function revisionNumber(text: string): number {
  if (!/^\d{1,9}$/.test(text) || Number(text) < 1) throw fail('bad_revision', `A revision number is a whole number from 1 (got '${text.slice(0, 20)}').`);
  return Number(text);
}

function revisionPaging(query: unknown): { after: number; limit: number } {
  const marker = one(query, 'marker');
  const limitText = one(query, 'limit');
  let limit = DEFAULT_LIMIT;
  if (limitText !== undefined) {
    if (!/^\d{1,6}$/.test(limitText)) throw fail('bad_revision', `Query parameter 'limit' is a whole number from 0 to ${MAX_LIMIT}.`);
    limit = Math.min(MAX_LIMIT, Number(limitText));
  }
  return { after: marker === undefined ? 0 : revisionNumber(marker), limit };
}

function revisionView(r: Revision, withMetadata: boolean): Record<string, unknown> {
  return {
    n: r.n, at: r.at, project_id: r.project_id, user_id: r.user_id, action: r.action, patch: r.patch,
    ...(withMetadata ? { metadata: r.metadata } : {}),
    self: `/v2/images/${r.image_id}/revisions/${r.n}`,
  };
}

export async function catalogRoutes(app: FastifyInstance, catalog: CatalogService): Promise<void> {
  // ------------------------------------------------------------ galleries
  app.post('/v2/galleries', async (request, reply) => {
    const gallery = await catalog.createGallery(request.caller, request.body);
    reply.header('Location', `/v2/galleries/${gallery.id}`);
    return reply.code(201).send(gallery);
  });

  app.get('/v2/galleries', async (request) => {
    // Said, not ignored: `shared=yes` quietly answered the caller's own galleries.
    for (const key of Object.keys((request.query ?? {}) as Query)) {
      if (!GALLERY_LIST_PARAMETERS.has(key)) throw fail('bad_gallery', `GET /v2/galleries takes shared, owner and parent_id (not '${key.slice(0, 40)}').`);
    }
    const shared = one(request.query, 'shared');
    if (shared !== undefined && shared !== 'true' && shared !== 'false') throw fail('bad_gallery', `Query parameter 'shared' is true or false (not '${shared.slice(0, 40)}').`);
    if (shared === 'true') return { galleries: await catalog.sharedWithMe(request.caller) };
    const owner = one(request.query, 'owner');
    const parent = one(request.query, 'parent_id');
    const galleries = await catalog.listGalleries(request.caller, {
      ...(owner !== undefined ? { owner } : {}),
      ...(parent !== undefined ? { parent_id: parent === '' || parent === 'null' ? null : parent } : {}),
    });
    return { galleries };
  });

  app.get('/v2/galleries/:id', async (request) => {
    const { id } = request.params as { id: string };
    return catalog.galleryWithCounts(request.caller, id, recursiveOf(request.query));
  });

  app.get('/v2/galleries/:id/galleries', async (request) => {
    const { id } = request.params as { id: string };
    return { galleries: await catalog.subGalleries(request.caller, id, recursiveOf(request.query)) };
  });

  app.patch('/v2/galleries/:id', async (request) => {
    const { id } = request.params as { id: string };
    return catalog.updateGallery(request.caller, id, request.body);
  });

  // Gallery members, as Glance's image members (README "Gallery sharing").
  const memberView = (m: GalleryMember) => ({ ...m, schema: '/v2/schemas/gallery-member' });
  app.post('/v2/galleries/:id/members', async (request) => {
    const { id } = request.params as { id: string };
    return memberView(await catalog.addGalleryMember(request.caller, id, request.body));
  });

  app.get('/v2/galleries/:id/members', async (request) => {
    const { id } = request.params as { id: string };
    return { members: (await catalog.listGalleryMembers(request.caller, id)).map(memberView), schema: '/v2/schemas/gallery-members' };
  });

  app.get('/v2/galleries/:id/members/:member', async (request) => {
    const { id, member } = request.params as { id: string; member: string };
    return memberView(await catalog.getGalleryMember(request.caller, id, member));
  });

  app.put('/v2/galleries/:id/members/:member', async (request) => {
    const { id, member } = request.params as { id: string; member: string };
    return memberView(await catalog.updateGalleryMember(request.caller, id, member, request.body));
  });

  app.delete('/v2/galleries/:id/members/:member', async (request, reply) => {
    const { id, member } = request.params as { id: string; member: string };
    await catalog.removeGalleryMember(request.caller, id, member);
    return reply.code(204).send();
  });

  app.delete('/v2/galleries/:id', async (request, reply) => {
    const { id } = request.params as { id: string };
    await catalog.deleteGallery(request.caller, id);
    return reply.code(204).send();
  });

  // ------------------------------------------------------------ revisions
  app.get('/v2/images/:id/revisions', async (request) => {
    const { id } = request.params as { id: string };
    const { after, limit } = revisionPaging(request.query);
    const revisions = await catalog.revisions(request.caller, id, after, limit);
    const last = revisions[revisions.length - 1];
    return {
      revisions: revisions.map((r) => revisionView(r, false)),
      ...(last && revisions.length === limit ? { next: `/v2/images/${id}/revisions?marker=${last.n}&limit=${limit}` } : {}),
    };
  });

  app.get('/v2/images/:id/revisions/:n', async (request) => {
    const { id, n } = request.params as { id: string; n: string };
    return revisionView(await catalog.revision(request.caller, id, revisionNumber(n)), true);
  });

  app.post('/v2/images/:id/revisions/:n/restore', async (request) => {
    const { id, n } = request.params as { id: string; n: string };
    return imageView(await catalog.restore(request.caller, id, revisionNumber(n)));
  });

  // ------------------------------------------------------------ metafiles
  app.get('/v2/images/:id/metafile', async (request) => {
    const { id } = request.params as { id: string };
    return catalog.metafile(request.caller, id);
  });
}
