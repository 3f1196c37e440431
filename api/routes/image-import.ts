/** POST /v2/images/{id}/import and GET /v2/info/import: Glance's interoperable import methods. */
import type { FastifyInstance } from 'fastify';
import { badRequest } from '../../core/errors.js';
import type { ImageService } from '../../core/image-service.js';
import type { StoreOperations } from '../../core/store-operations.js';
import type { WebDownloads } from '../../ingest/web-download.js';
import { rejectBody } from '../body-reject.js';
import { importTargets, type ImportStoreFields } from '../store-targets.js';

export const IMPORT_METHODS = ['glance-direct', 'web-download'];

/**
 * The methods offered: glance-download only behind Keystone (its catalog names the other regions'
 * Glance); copy-image only with several stores (Glance offers it with multi-store).
 */
export function importMethods(images: ImageService, glanceDownload = false): string[] {
  return [...IMPORT_METHODS, ...(glanceDownload ? ['glance-download'] : []), ...(images.stores.multi ? ['copy-image'] : [])];
}

const importBody = {
  type: 'object',
  required: ['method'],
  properties: {
    method: {
      type: 'object',
      required: ['name'],
      // glance-download's glance_* fields are checked by ingest/glance-download.ts, with Glance's messages.
      properties: { name: { type: 'string', maxLength: 64 }, uri: { type: 'string' } },
    },
    // Glance's multi-store options (api/store-targets.ts).
    all_stores_must_succeed: { type: 'boolean' },
    all_stores: { type: 'boolean' },
    stores: { type: 'array', maxItems: 16, items: { type: 'string', maxLength: 255 } },
  },
} as const;

/** A task input keeps at most this much of the body: any real import body, never a megabyte of extra keys in the image's record. */
const TASK_BODY_BYTES = 8 * 1024;

/** The import body for the task's input (Glance keeps it whole): whole when small, else only the fields Glance reads. */
function taskImportReq(body: ImportBody): Record<string, unknown> {
  if (JSON.stringify(body).length <= TASK_BODY_BYTES) return body as unknown as Record<string, unknown>;
  const { method, stores, all_stores, all_stores_must_succeed } = body;
  const kept = Object.fromEntries(['uri', ...GLANCE_DOWNLOAD_FIELDS]
    .filter((key) => typeof method[key] === 'string' && (method[key] as string).length <= TASK_BODY_BYTES).map((key) => [key, method[key]]));
  return JSON.parse(JSON.stringify({ method: { name: method.name, ...kept }, stores, all_stores, all_stores_must_succeed })) as Record<string, unknown>;
}

const GLANCE_DOWNLOAD_FIELDS = ['glance_image_id', 'glance_region', 'glance_service_interface'];

type ImportBody = { method: { name: string; uri?: unknown; [field: string]: unknown } } & ImportStoreFields;

export async function imageImportRoutes(app: FastifyInstance, images: ImageService, webDownloads: WebDownloads, storeOps: StoreOperations | null): Promise<void> {
  const methods = importMethods(images, webDownloads.glanceDownloadOffered).filter((m) => m !== 'copy-image' || storeOps);
  app.get('/v2/info/import', { onRequest: rejectBody }, async () => ({
    'import-methods': { description: 'Import methods available.', type: 'array', value: methods },
  }));

  app.post('/v2/images/:id/import', { schema: { body: importBody } }, async (request, reply) => {
    const id = (request.params as { id: string }).id;
    const body = request.body as ImportBody;
    const method = body.method;
    if (!methods.includes(method.name) || (method.name === 'copy-image' && !storeOps)) {
      throw badRequest('unsupported_import_method', `Unknown import method name '${method.name}'; use one of: ${methods.join(', ')}.`);
    }
    const targets = importTargets(request, body, images.stores);
    if (method.name === 'copy-image') {
      // Naming none copies to the default store, as Glance's get_stores_from_request falls back to
      // default_backend (then "already present" when the image is there, as it usually is).
      const { stores, must_succeed } = targets ?? { stores: [images.stores.defaultId], must_succeed: body.all_stores_must_succeed ?? true };
      await storeOps!.copyImage(request.caller, id, stores, must_succeed, body.all_stores === true, taskImportReq(body));
    } else if (method.name === 'web-download') await webDownloads.start(request.caller, id, method.uri, targets, taskImportReq(body));
    else if (method.name === 'glance-download') {
      // The remote Glance is read with the caller's own token, as Glance's flow does.
      await webDownloads.startGlanceDownload(request.caller, request.headers['x-auth-token'] as string, id, method, targets, taskImportReq(body));
    }
    else await images.importStaged(request.caller, id, targets, taskImportReq(body));
    return reply.code(202).send();
  });
}
