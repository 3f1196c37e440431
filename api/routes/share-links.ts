/**
 * Share links (PIR extension): the owner of an image mints an expiring, revocable, download-only
 * link for a third party without an account. Management is under the image and needs a token;
 * the link itself (/v2/shared/{token}) needs none and serves only the bytes, with Range and
 * checksums. Every use is logged (never the token) and counted.
 */
import type { AddressInfo } from 'node:net';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { fail } from '../../core/error-catalog.js';
import type { ImageService } from '../../core/image-service.js';
import type { Manifest } from '../../core/manifest.js';
import { LIMITS } from '../../core/limits.js';
import type { BlobStore } from '../../core/ports.js';
import { findLink, imageIdOfToken, newShareLink } from '../../core/share-links.js';
import type { ImageDoc, ShareLink } from '../../schemas/image.js';
import { sendStoredBytes, sendStoredHeaders } from './image-data.js';
import { listeningUrl } from './versions.js';

export const CreateShareLinkBody = Type.Object({
  expires_in: Type.Integer({ minimum: 1, maximum: LIMITS.shareLinkMaxSeconds, description: 'Seconds until the link stops working' }),
}, { additionalProperties: false });

const ShareLinkView = Type.Object({
  id: Type.String({ description: 'The link id (not its secret): used to revoke it' }),
  url: Type.Optional(Type.String({ description: 'The link; shown only when it is created' })),
  created_at: Type.String(),
  expires_at: Type.String(),
  created_by: Type.Object({ project_id: Type.String(), user_id: Type.String() }),
  uses: Type.Integer({ minimum: 0, description: 'How many times the link served bytes' }),
});
export const shareLinkSchema = { name: 'share-link', ...ShareLinkView };
export const shareLinksSchema = { name: 'share-links', ...Type.Object({ share_links: Type.Array(ShareLinkView) }) };

function view(doc: ImageDoc, link: ShareLink) {
  return { id: link.id, created_at: link.created_at, expires_at: link.expires_at, created_by: link.created_by, uses: doc.share_link_uses?.[link.id] ?? 0 };
}

/** Owner-side calls; registered where the token check runs. */
export async function shareLinkRoutes(app: FastifyInstance, images: ImageService, publicUrl: string | null): Promise<void> {
  app.post('/v2/images/:id/share-links', { schema: { body: CreateShareLinkBody } }, async (request, reply) => {
    const { id } = request.params as { id: string };
    const { expires_in } = request.body as { expires_in: number };
    // Looked up first: an id that is no image the caller sees is 404 (never a minted token).
    await images.get(request.caller, id);
    const { link, token } = newShareLink(id, expires_in, { project_id: request.caller.project_id, user_id: request.caller.user_id });
    const doc = await images.addShareLink(request.caller, id, link);
    request.log.info({ image_id: id, share_link_id: link.id, expires_at: link.expires_at }, 'share link created');
    const base = publicUrl ?? listeningUrl(app.server.address() as AddressInfo | string | null);
    return reply.code(201).send({ ...view(doc, link), url: `${base}/v2/shared/${token}` });
  });

  app.get('/v2/images/:id/share-links', async (request) => {
    const { doc, links } = await images.listShareLinks(request.caller, (request.params as { id: string }).id);
    return { share_links: links.map((l) => view(doc, l)) };
  });

  app.delete('/v2/images/:id/share-links/:link', async (request, reply) => {
    const { id, link } = request.params as { id: string; link: string };
    await images.revokeShareLink(request.caller, id, link);
    request.log.info({ image_id: id, share_link_id: link }, 'share link revoked');
    return reply.code(204).send();
  });
}

/** The link itself: no token header, bytes only. */
export async function sharedDownloadRoutes(app: FastifyInstance, deps: { manifest: Manifest; images: ImageService; blobs: BlobStore }): Promise<void> {
  const serve = async (request: FastifyRequest, reply: FastifyReply) => {
    const token = (request.params as { token: string }).token;
    const imageId = imageIdOfToken(token);
    const doc = imageId ? await deps.manifest.get(imageId) : null;
    const link = doc ? findLink(doc.share_links, token) : null;
    // Unknown, revoked, expired, or an image deleted or deactivated: all look alike.
    if (!doc || !link || doc.status !== 'active' || doc.size === null) {
      throw fail('share_link_not_found', 'This share link does not exist, was revoked, or has expired; ask its owner for a new one.');
    }
    request.log.info({ image_id: doc.id, share_link_id: link.id, method: request.method, range: request.headers.range ?? null, remote: request.ip }, 'share link used');
    reply.header('Content-Disposition', `attachment; filename="${doc.id}"`);
    if (request.method === 'HEAD') return sendStoredHeaders(reply, doc);
    // Counted when the bytes start going out; a failed count is logged, never the download's failure.
    deps.images.countShareLinkUse(doc.id, link.id).catch((error: unknown) => request.log.warn({ err: error, image_id: doc.id, share_link_id: link.id }, 'could not count a share link use'));
    return sendStoredBytes(request, reply, deps.images.stores, doc);
  };
  app.head('/v2/shared/:token', serve);
  app.get('/v2/shared/:token', { exposeHeadRoute: false }, serve);
}
