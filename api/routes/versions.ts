/** GET / and GET /versions, as Glance answers them (no token needed). */
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { VERSION_CHOICES_PATH } from '../version-negotiation.js';

/**
 * The Image API versions PIR implements, newest first: 2.17 (the location API:
 * POST/GET /v2/images/{id}/locations), 2.15 (/v2/info/stores/detail), 2.13 (/v2/info/usage),
 * 2.10 (DELETE /v2/stores/…), 2.12 (image tasks) and the rest. 2.14 and 2.16 are the cache API
 * (`pir cache`, which announces them too); Glance without a cache leaves them out the same way.
 * Clients read the newest: python-glanceclient asks for 2.12 before `image-tasks` and 2.14
 * before every `cache-*` command.
 */
const IMAGE_API = ['2.17', '2.15', '2.13', '2.12', '2.11', '2.10', '2.9', '2.8', '2.7', '2.6', '2.5', '2.4', '2.3', '2.2', '2.1', '2.0'];
/** A `pir cache` node adds the cache API: 2.14, and 2.16 (its PUT answering 202). */
const WITH_CACHE_API = [...IMAGE_API, '2.16', '2.14'].sort((a, b) => Number(b.split('.')[1]) - Number(a.split('.')[1]));

export interface VersionOptions {
  /** The base URL clients reach this process at (PIR_PUBLIC_URL); null: the listening address. */
  publicUrl: string | null;
  /** This process serves Glance's /v2/cache API. */
  imageCache?: boolean;
}

function versions(base: string, imageCache: boolean) {
  const entry = (id: string, status: string) => ({ id: `v${id}`, status, links: [{ rel: 'self', href: `${base}/v2/` }] });
  return { versions: (imageCache ? WITH_CACHE_API : IMAGE_API).map((v, i) => entry(v, i === 0 ? 'CURRENT' : 'SUPPORTED')) };
}

/**
 * Links come from PIR_PUBLIC_URL (Glance's public_endpoint), or from the address PIR listens on:
 * never from the request's Host header, which any client can set.
 */
export async function versionRoutes(app: FastifyInstance, options: VersionOptions): Promise<void> {
  const base = () => options.publicUrl ?? listeningUrl(app.server.address() as AddressInfo | string | null);
  const imageCache = options.imageCache ?? false;
  app.get('/', async (_request, reply) => reply.code(300).send(versions(base(), imageCache)));
  app.get('/versions', async () => versions(base(), imageCache));
  // A version PIR does not serve, whatever the method (api/version-negotiation.ts sends it here).
  app.all(VERSION_CHOICES_PATH, async (_request, reply) => reply.code(300).send(versions(base(), imageCache)));
}

/** The v2 minor versions served (2.17 → 17), for version negotiation. */
export function servedMinors(imageCache: boolean): Set<number> {
  return new Set((imageCache ? WITH_CACHE_API : IMAGE_API).map((v) => Number(v.split('.')[1])));
}

/** PIR's base URL from the address it listens on (loopback for a wildcard address). */
export function listeningUrl(address: AddressInfo | string | null): string {
  if (!address || typeof address === 'string') return 'http://127.0.0.1:9292';
  const host = address.address === '0.0.0.0' || address.address === '::' ? '127.0.0.1' : address.address;
  return `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
}
