/** POST /v2/images/{id}/import and GET /v2/info/import: Glance's interoperable import methods. */
import type { FastifyInstance } from 'fastify';
import { badRequest } from '../../core/errors.js';
import type { ImageService } from '../../core/image-service.js';
import type { WebDownloads } from '../../ingest/web-download.js';

export const IMPORT_METHODS = ['glance-direct', 'web-download'];

const importBody = {
  type: 'object',
  required: ['method'],
  properties: {
    method: {
      type: 'object',
      required: ['name'],
      properties: { name: { type: 'string', maxLength: 64 }, uri: { type: 'string' } },
    },
    // Glance's multi-store options: accepted with their types checked (one store here).
    all_stores_must_succeed: { type: 'boolean' },
    all_stores: { type: 'boolean' },
    stores: { type: 'array', maxItems: 16, items: { type: 'string', maxLength: 255 } },
  },
} as const;

export async function imageImportRoutes(app: FastifyInstance, images: ImageService, webDownloads: WebDownloads): Promise<void> {
  app.get('/v2/info/import', async () => ({
    'import-methods': { description: 'Import methods available.', type: 'array', value: IMPORT_METHODS },
  }));

  app.post('/v2/images/:id/import', { schema: { body: importBody } }, async (request, reply) => {
    const id = (request.params as { id: string }).id;
    const method = (request.body as { method: { name: string; uri?: unknown } }).method;
    if (!IMPORT_METHODS.includes(method.name)) {
      throw badRequest('unsupported_import_method', `Unknown import method name '${method.name}'; use one of: ${IMPORT_METHODS.join(', ')}.`);
    }
    if (method.name === 'web-download') await webDownloads.start(request.caller, id, method.uri);
    else await images.importStaged(request.caller, id);
    return reply.code(202).send();
  });
}
