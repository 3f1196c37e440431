/**
 * Liveness and readiness, without a token (load balancers and orchestrators call them):
 * /healthz answers while the process serves HTTP; /readyz checks every dependency with its
 * latency and answers 503 when one is down. Neither reveals URLs or credentials.
 */
import type { FastifyInstance } from 'fastify';
import { runChecks, type DependencyCheck } from '../../infra/telemetry/health.js';

export async function healthRoutes(app: FastifyInstance, checks: DependencyCheck[]): Promise<void> {
  app.get('/healthz', async (_request, reply) => {
    return reply.header('cache-control', 'no-store').send({ status: 'ok' });
  });
  app.get('/readyz', async (_request, reply) => {
    const readiness = await runChecks(checks);
    return reply.code(readiness.ok ? 200 : 503).header('cache-control', 'no-store')
      .send({ status: readiness.ok ? 'ready' : 'not_ready', checks: readiness.checks });
  });
}
