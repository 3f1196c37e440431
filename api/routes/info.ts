/** GET /v2/info/stores (and /detail), /v2/info/usage: Glance's discovery calls (import methods: image-import.ts); GET /v2/info/caller: PIR's. */
import type { FastifyInstance } from 'fastify';
import { enforce } from '../../core/policy.js';
import type { Quotas } from '../../core/quota.js';
import type { StoreRegistry } from '../../core/store-registry.js';
import { rejectBody } from '../body-reject.js';

/** Glance's driver names for /detail's `type`. */
const GLANCE_TYPE: Record<string, string> = { filesystem: 'file', s3: 's3' };

export async function infoRoutes(app: FastifyInstance, quotas: Quotas, stores: StoreRegistry): Promise<void> {
  // Glance writes the default store's `default` as the string "true"; the others carry none.
  const brief = (detail: boolean) => ({
    stores: stores.entries.map((s) => ({
      id: s.id,
      description: s.description,
      ...(s.id === stores.defaultId ? { default: 'true' } : {}),
      ...(detail ? { type: GLANCE_TYPE[s.blobs.kind] ?? s.blobs.kind, weight: 0, properties: s.properties } : {}),
    })),
  });
  app.get('/v2/info/stores', { onRequest: rejectBody }, async () => brief(false));
  // Glance's stores_info_detail policy: administrators only (403 otherwise).
  app.get('/v2/info/stores/detail', { onRequest: rejectBody }, async (request) => {
    enforce(request.caller, 'stores_info_detail', { owner: null });
    return brief(true);
  });
  // The caller's project: limits (-1 = unlimited) and usage, sizes in MiB; {} when quotas are off, as Glance without unified limits.
  // PIR: who the token stands for (the CLI's `image register` matches names among its own project's images only).
  app.get('/v2/info/caller', async (request) => ({ project_id: request.caller.project_id, user_id: request.caller.user_id, roles: request.caller.roles }));
  app.get('/v2/info/usage', async (request) => ({ usage: await quotas.usage(request.caller.project_id) }));
}
