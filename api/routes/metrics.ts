/** GET /metrics on the API port: Prometheus text, for admins only (a token with the admin role). */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isAdmin } from '../../core/caller.js';
import { forbidden } from '../../core/errors.js';
import { registry } from '../../infra/telemetry/metrics.js';

type Hook = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

export async function metricsRoutes(app: FastifyInstance, checkToken: Hook): Promise<void> {
  app.get('/metrics', {
    onRequest: [checkToken, async (request) => {
      if (!isAdmin(request.caller)) throw forbidden('policy_denied', 'GET /metrics needs a token with the admin role (or scrape PIR_METRICS_PORT, which needs none).');
    }],
  }, async (_request, reply) => {
    return reply.type(registry.contentType).header('cache-control', 'no-store').send(await registry.metrics());
  });
}
