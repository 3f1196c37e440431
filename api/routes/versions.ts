/** GET / and GET /versions, as Glance answers them (no token needed). */
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';

const SUPPORTED = ['2.0', '2.1', '2.2', '2.3', '2.4', '2.5', '2.6', '2.7', '2.8', '2.9', '2.10', '2.11'];
const CURRENT = '2.12';

function versions(base: string) {
  const entry = (id: string, status: string) => ({ id: `v${id}`, status, links: [{ rel: 'self', href: `${base}/v2/` }] });
  return { versions: [entry(CURRENT, 'CURRENT'), ...SUPPORTED.slice().reverse().map((v) => entry(v, 'SUPPORTED'))] };
}

/**
 * Links come from PIR_PUBLIC_URL (Glance's public_endpoint), or from the address PIR listens on:
 * never from the request's Host header, which any client can set.
 */
export async function versionRoutes(app: FastifyInstance, publicUrl: string | null): Promise<void> {
  const base = () => publicUrl ?? listeningUrl(app.server.address() as AddressInfo | string | null);
  app.get('/', async (_request, reply) => reply.code(300).send(versions(base())));
  app.get('/versions', async () => versions(base()));
}

/** PIR's base URL from the address it listens on (loopback for a wildcard address). */
export function listeningUrl(address: AddressInfo | string | null): string {
  if (!address || typeof address === 'string') return 'http://127.0.0.1:9292';
  const host = address.address === '0.0.0.0' || address.address === '::' ? '127.0.0.1' : address.address;
  return `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
}
