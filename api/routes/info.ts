/** GET /v2/info/stores and /v2/info/usage: Glance's discovery calls (import methods: image-import.ts); GET /v2/info/caller: PIR's. */
import type { FastifyInstance } from 'fastify';
import type { Quotas } from '../../core/quota.js';

/** PIR has one store: the filesystem under the data directory. Glance writes `default` as the string "true". */
const STORES = { stores: [{ id: 'local', description: 'Local filesystem store under the PIR data directory', default: 'true' }] };

export async function infoRoutes(app: FastifyInstance, quotas: Quotas): Promise<void> {
  app.get('/v2/info/stores', async () => STORES);
  // The caller's project: limits (-1 = unlimited) and usage, sizes in MiB; {} when quotas are off, as Glance without unified limits.
  // PIR: who the token stands for (the CLI's `image register` matches names among its own project's images only).
  app.get('/v2/info/caller', async (request) => ({ project_id: request.caller.project_id, user_id: request.caller.user_id, roles: request.caller.roles }));
  app.get('/v2/info/usage', async (request) => ({ usage: await quotas.usage(request.caller.project_id) }));
}
