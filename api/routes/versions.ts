/** GET / and GET /versions, as Glance answers them (no token needed). */
import type { FastifyInstance, FastifyRequest } from 'fastify';

const SUPPORTED = ['2.0', '2.1', '2.2', '2.3', '2.4', '2.5', '2.6', '2.7', '2.8', '2.9', '2.10', '2.11'];
const CURRENT = '2.12';

function versions(request: FastifyRequest) {
  const base = `${request.protocol}://${request.headers.host ?? 'localhost'}`;
  const entry = (id: string, status: string) => ({ id: `v${id}`, status, links: [{ rel: 'self', href: `${base}/v2/` }] });
  return { versions: [entry(CURRENT, 'CURRENT'), ...SUPPORTED.slice().reverse().map((v) => entry(v, 'SUPPORTED'))] };
}

export async function versionRoutes(app: FastifyInstance): Promise<void> {
  app.get('/', async (request, reply) => reply.code(300).send(versions(request)));
  app.get('/versions', async (request) => versions(request));
}
