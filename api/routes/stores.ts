/** DELETE /v2/stores/{store_id}/{image_id}: Glance's "delete image from store" (multi-store). */
import type { FastifyInstance } from 'fastify';
import type { StoreOperations } from '../../core/store-operations.js';
import { rejectBody } from '../body-reject.js';

export async function storeRoutes(app: FastifyInstance, storeOps: StoreOperations): Promise<void> {
  app.delete('/v2/stores/:store/:id', { onRequest: rejectBody }, async (request, reply) => {
    const { store, id } = request.params as { store: string; id: string };
    await storeOps.deleteFromStore(request.caller, id, store);
    return reply.code(204).send();
  });
}
