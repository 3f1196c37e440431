/** Glance's image tags (glance/api/v2/image_tags.py): PUT and DELETE /v2/images/{id}/tags/{tag}. */
import type { FastifyInstance } from 'fastify';
import type { ImageService } from '../../core/image-service.js';

export async function imageTagRoutes(app: FastifyInstance, images: ImageService): Promise<void> {
  app.put('/v2/images/:id/tags/:tag', async (request, reply) => {
    const { id, tag } = request.params as { id: string; tag: string };
    await images.addTag(request.caller, id, tag);
    return reply.code(204).send();
  });

  app.delete('/v2/images/:id/tags/:tag', async (request, reply) => {
    const { id, tag } = request.params as { id: string; tag: string };
    await images.removeTag(request.caller, id, tag);
    return reply.code(204).send();
  });
}
