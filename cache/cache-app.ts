/**
 * The cache role's HTTP surface: GET/HEAD /v2/images/{id}/file answered from the cache, Glance's
 * /v2/cache API and /metrics for administrators, the webhook receiver, and every other request
 * passed to the upstream unchanged (method, path, headers, streamed body) by @fastify/reply-from.
 */
import type { Readable } from 'node:stream';
import replyFrom from '@fastify/reply-from';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { handleError, methodNotAllowed, sendError } from '../api/error-handler.js';
import { requestedRange } from '../api/byte-range.js';
import { requestIdOf } from '../api/http-hygiene.js';
import { versionRoutes } from '../api/routes/versions.js';
import { HTTP_TIMEOUTS } from '../api/http-timeouts.js';
import { closeStalledSends } from '../api/send-stall.js';
import { openFileStream } from '../infra/storage/file-stream.js';
import { CACHEABLE_ID, type CacheStore, type Entry } from './cache-store.js';
import { verifiedDelivery } from './event-follower.js';
import { UpstreamFailure } from './fill.js';
import { GrowingFileReader } from './growing-file-reader.js';
import { cacheMetrics, cacheRegistry } from './metrics.js';
import type { PrefetchQueue } from './prefetch-queue.js';
import { TokenRejected, type ImageFacts, type Upstream } from './upstream.js';

export const WEBHOOK_PATH = '/_pir-cache/events';

export interface CacheAppDeps {
  log: Logger;
  store: CacheStore;
  upstream: Upstream;
  queue: PrefetchQueue;
  /** The cache's own admin token (PIR_ADMIN_TOKEN or generated); upstream admins are admins too. */
  adminToken: string;
  /** What the cache's own admin token stands for upstream (PIR_CACHE_UPSTREAM_TOKEN); null: nothing. */
  upstreamToken?: string | null;
  /** The signing secret of this node's webhook upstream; null: no webhook receiver. */
  webhookSecret: () => string | null;
  onEvent: (type: string, imageId: string, data: Record<string, unknown>) => Promise<void>;
  /** The base URL clients reach this cache at (PIR_CACHE_PUBLIC_URL), for /versions' links. */
  publicUrl?: string | null;
  /** The API's connection limits (api/http-timeouts.ts) by default; tests shorten them. */
  httpTimeouts?: Partial<Pick<typeof HTTP_TIMEOUTS, 'headersMs' | 'socketIdleMs' | 'sendStallMs'>>;
}

export async function buildCacheApp(deps: CacheAppDeps): Promise<FastifyInstance> {
  const timeouts = { ...HTTP_TIMEOUTS, ...deps.httpTimeouts };
  // The API's rules for connections that stop moving: a silent socket, slow headers, and a
  // client that stopped reading a download (which would hold its buffered megabytes).
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger, requestTimeout: 0, keepAliveTimeout: timeouts.keepAliveMs,
    connectionTimeout: timeouts.socketIdleMs, routerOptions: { maxParamLength: 1024 }, genReqId: requestIdOf,
  });
  // The upstream's answers carry its own request id; the cache's own answers carry the cache's.
  app.addHook('onSend', async (request, reply) => {
    if (!reply.hasHeader('x-openstack-request-id')) reply.header('x-openstack-request-id', request.id);
  });
  app.server.headersTimeout = timeouts.headersMs;
  const stopStallWatch = closeStalledSends(app.server, timeouts.sendStallMs);
  app.addHook('onClose', async () => stopStallWatch());
  app.setErrorHandler(handleError);
  await app.register(replyFrom, {
    base: deps.upstream.base,
    // Uploads and pass-through downloads are long: only an upstream silent this long fails.
    undici: { headersTimeout: 120_000, bodyTimeout: 300_000 },
  });
  const proxy = (request: FastifyRequest, reply: FastifyReply) => {
    // Only an origin-form path goes upstream: an absolute-form target (`GET http://host/x`) or a
    // path reply-from would read as another host (`//host`, `/\\host`) is no route of PIR's.
    if (!/^\/(?![/\\])/.test(request.url)) return sendError(reply, 404, 'no_route', 'There is no such path here; see GET /versions and the Image API v2 reference.');
    return reply.from(request.url);
  };

  // Bodies pass through as streams (never parsed, never buffered), except in the scopes below.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
  app.all('/*', proxy);
  // This node's own versions: the upstream's with the cache API added, which python-glanceclient
  // looks for (v2.14) before any `glance cache-*` command.
  await app.register(async (root) => versionRoutes(root, { publicUrl: deps.publicUrl ?? null, imageCache: true }));

  const download = (request: FastifyRequest, reply: FastifyReply) => serveFile(request, reply, deps, proxy);
  app.head('/v2/images/:id/file', download);
  app.get('/v2/images/:id/file', { exposeHeadRoute: false }, download);

  // Glance's cache paths answer their other methods 405 (not passed upstream, which has no such
  // path), HEAD and OPTIONS included: Glance's router matches neither to GET.
  for (const [url, allow] of [['/v2/cache', ['GET', 'DELETE']], ['/v2/cache/:image_id', ['DELETE', 'PUT']]] as const) {
    const others = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'].filter((m) => !(allow as readonly string[]).includes(m));
    app.route({ method: others, url, handler: (request, reply) => methodNotAllowed(reply, request.method, request.url.split('?')[0]!, [...allow]) });
  }
  await app.register(async (admin) => {
    admin.addHook('onRequest', async (request, reply) => {
      const token = request.headers['x-auth-token'];
      if (typeof token !== 'string' || token.length === 0) return sendError(reply, 401, 'token_missing', 'This request needs an X-Auth-Token header carrying a valid token.');
      if (token === deps.adminToken) return;
      let admin: boolean;
      try {
        admin = await deps.upstream.isAdmin(token);
      } catch (error) {
        // A token the upstream does not take gets the upstream's own 401, as any other call.
        if (error instanceof TokenRejected) return reply.code(401).headers(error.headers).send(error.body);
        // Whether the token is an upstream admin's is unknown, not "no".
        return sendError(reply, 503, 'upstream_unavailable', 'The upstream PIR did not answer whether this token is an administrator\'s; retry in a few seconds.');
      }
      if (!admin) return sendError(reply, 403, 'policy_denied', 'The cache API and /metrics need an administrator\'s token.');
    });
    admin.get('/metrics', async (_request, reply) => reply.type(cacheRegistry.contentType).header('cache-control', 'no-store').send(await cacheRegistry.metrics()));
    cacheApiRoutes(admin, deps);
  });

  await app.register(async (hooks) => {
    hooks.removeAllContentTypeParsers();
    hooks.addContentTypeParser('*', { parseAs: 'string', bodyLimit: 1 << 20 }, (_request, body, done) => done(null, body));
    hooks.post(WEBHOOK_PATH, async (request, reply) => {
      const secret = deps.webhookSecret();
      if (!secret) return sendError(reply, 404, 'no_route', 'This cache receives no webhooks.');
      const event = verifiedDelivery(secret, request.headers, typeof request.body === 'string' ? request.body : '');
      if (!event) return sendError(reply, 401, 'bad_signature', 'The webhook signature or timestamp is not valid.');
      if (event.imageId) await deps.onEvent(event.type, event.imageId, event.data);
      return reply.code(204).send();
    });
  });

  app.get('/healthz', async () => ({ status: 'ok' }));
  return app;
}

function cacheApiRoutes(app: FastifyInstance, deps: CacheAppDeps): void {
  const { store, queue } = deps;
  /** The token to ask the upstream with: the caller's, or for the node's own admin token PIR_CACHE_UPSTREAM_TOKEN. */
  const upstreamTokenOf = (request: FastifyRequest): string | null => {
    const token = request.headers['x-auth-token'] as string;
    return token === deps.adminToken ? deps.upstreamToken ?? null : token;
  };
  app.get('/v2/cache', { exposeHeadRoute: false }, async () => { // HEAD is 405 (above)
    const { entries, filling } = store.list();
    const queued = new Set([...queue.ids(), ...filling.map((f) => f.target.imageId)]);
    return {
      cached_images: entries.map((e: Entry) => ({
        image_id: e.imageId, hits: e.hits, size: e.size, last_accessed: e.lastAccessed, last_modified: e.lastModified,
        os_hash_algo: e.algo, os_hash_value: e.hash, readers: e.readers,
      })),
      queued_images: [...queued],
    };
  });
  app.put('/v2/cache/:image_id', async (request, reply) => {
    const id = imageIdParam(request.params as { image_id: string });
    if (!CACHEABLE_ID.test(id)) return sendError(reply, 400, 'bad_image_id', 'An image id has 1 to 64 letters, digits and dashes.');
    const token = upstreamTokenOf(request);
    const noIdentity = () => sendError(reply, 400, 'cache_needs_upstream_token', 'This cache node\'s own admin token has no identity upstream, so it cannot fetch the image: queue it with an upstream administrator\'s token, or give the node one in PIR_CACHE_UPSTREAM_TOKEN.');
    if (!token) return noIdentity();
    // As Glance: an image that does not exist is 404, one that is not active 400. An upstream that
    // cannot say now (unreachable) leaves it to the prefetcher, which logs what it could not cache.
    const seen = await deps.upstream.imageStatus(token, id).catch(() => null);
    if (seen?.code === 401 || seen?.code === 403) return noIdentity();
    if (seen?.code === 404) return sendError(reply, 404, 'not_found', `Image ${id} does not exist upstream.`);
    if (seen?.code === 200 && seen.status !== 'active') return sendError(reply, 400, 'image_not_active', `Only an active image can be queued for caching; image ${id} is ${seen.status ?? 'in an unknown status'}.`);
    queue.add(id, token);
    return reply.code(202).send();
  });
  app.delete('/v2/cache/queue', async (_request, reply) => {
    queue.clear();
    return reply.code(204).send();
  });
  app.delete('/v2/cache/:image_id', async (request, reply) => {
    const id = imageIdParam(request.params as { image_id: string });
    if (!CACHEABLE_ID.test(id)) return sendError(reply, 400, 'bad_image_id', 'An image id has 1 to 64 letters, digits and dashes.');
    const removed = queue.remove(id);
    if (!(await store.drop(id, 'admin')) && !removed) {
      // As Glance: removing an image that exists but is not cached is done (204); 404 only when
      // the image is neither here nor upstream (an upstream that cannot say: nothing to remove).
      const token = upstreamTokenOf(request);
      const seen = token ? await deps.upstream.imageStatus(token, id).catch(() => null) : null;
      if (seen?.code === 404) return sendError(reply, 404, 'not_cached', `Image ${id} is neither cached nor queued, and the upstream does not show it.`);
    }
    return reply.code(204).send();
  });
  // Glance: x-image-cache-clear-target says what to clear (cache, queue; both when absent).
  app.delete('/v2/cache', async (request, reply) => {
    const target = String(request.headers['x-image-cache-clear-target'] ?? '').toLowerCase();
    if (target && target !== 'cache' && target !== 'queue') return sendError(reply, 400, 'bad_clear_target', 'x-image-cache-clear-target is "cache" or "queue" (or absent: both).');
    if (target !== 'cache') queue.clear();
    if (target !== 'queue') await store.dropAll('admin');
    return reply.code(204).send();
  });
}

/** GET/HEAD …/file: from a verified entry, a fill (joined or started), or the upstream as-is. */
async function serveFile(request: FastifyRequest, reply: FastifyReply, deps: CacheAppDeps, proxy: (request: FastifyRequest, reply: FastifyReply) => unknown) {
  const id = imageIdParam(request.params as { id: string });
  const token = request.headers['x-auth-token'];
  if (typeof token !== 'string' || token.length === 0 || !CACHEABLE_ID.test(id)) return proxy(request, reply);
  // Authorized upstream with the caller's own token; anything but "active and yours to read" gets the upstream's own answer.
  const decision = await deps.upstream.downloadable(token, id).catch((error: Error) => {
    request.log.warn({ image_id: id, err: error.message }, 'upstream did not answer the authorization check');
    return null;
  });
  const facts = decision?.facts ?? null;
  if (!facts) {
    // The upstream showed the image as not active (deactivated, deleted …): its entry goes, events or not.
    if (decision?.status && decision.status !== 'active') void deps.store.drop(id, decision.status);
    return proxy(request, reply);
  }
  // HEAD answers for the whole image whatever Range says, as the upstream does.
  if (request.method === 'HEAD') {
    describe(reply, facts, null);
    return reply.code(200).send();
  }
  const asked = requestedRange(request.headers, facts.size);
  if (asked.kind === 'refused') return proxy(request, reply); // the upstream's own 400 or 416
  const range = asked.kind === 'range' ? asked.range : { start: 0, end: facts.size - 1 };
  // Set only on the answer that serves the bytes: an error answer must not describe the image.
  const describeImage = () => describe(reply, facts, asked.kind === 'range' ? range : null);

  for (let attempt = 0; attempt < 2; attempt += 1) {
    const found = await deps.store.lookup({ imageId: id, size: facts.size, algo: facts.algo, hash: facts.hash }, (signal) => deps.upstream.fetchFile(token, id, signal));
    if (!found) {
      cacheMetrics.misses.inc({ kind: 'pass-through' });
      reply.header('x-pir-cache', 'pass');
      return proxy(request, reply);
    }
    if (facts.size === 0 && found.kind === 'fill') await found.fill.done.catch(() => {});
    if (found.kind === 'hit') {
      const release = deps.store.claim(found.entry);
      // Opened before answering: an entry dropped meanwhile is a miss, not a broken response.
      const stream = await openFileStream(found.entry.path, { start: range.start, end: Math.max(range.start, range.end) }).catch(() => null);
      if (!stream) {
        release();
        continue;
      }
      cacheMetrics.hits.inc();
      describeImage();
      reply.header('x-pir-cache', 'hit');
      stream.recycleAfterWrite(reply.raw);
      return reply.send(counted(stream, release, (n) => cacheMetrics.bytesFromCache.inc(n)));
    }
    cacheMetrics.misses.inc({ kind: found.started ? 'fill' : 'joined' });
    // Every reader of the fill (started or joined) gets the same answer if the upstream fails it first.
    const failure = await found.fill.answered.then(() => null, (error: Error) => error);
    if (failure instanceof UpstreamFailure) {
      request.log.warn({ image_id: id, err: failure.message }, 'upstream did not send the image\'s data');
      return sendError(reply, 503, 'upstream_unavailable', `The upstream PIR did not send image ${id}'s data (${failure.message}); retry in a few seconds.`);
    }
    if (failure) throw failure;
    describeImage();
    reply.header('x-pir-cache', 'miss');
    const release = deps.store.claimFill(found.fill);
    return reply.send(counted(new GrowingFileReader(found.fill, range.start, range.end), release, (n) => cacheMetrics.bytesFromFill.inc(n)));
  }
  return sendError(reply, 503, 'cache_busy', 'The cache entry changed twice while being opened; retry.');
}

/**
 * The image id of a path, in lower case: the upstream takes an id in any case, and so one image
 * must be one entry and one set of authorization answers however a caller spells it.
 */
function imageIdParam(params: { id?: string; image_id?: string }): string {
  return (params.id ?? params.image_id ?? '').toLowerCase();
}

function describe(reply: FastifyReply, facts: ImageFacts, range: { start: number; end: number } | null): void {
  reply.header('accept-ranges', 'bytes').type('application/octet-stream');
  // RFC 9530, as the upstream: the whole image's sha512, on whole, partial and HEAD answers alike.
  if (facts.algo === 'sha512') reply.header('repr-digest', `sha-512=:${Buffer.from(facts.hash, 'hex').toString('base64')}:`);
  if (range) {
    reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${facts.size}`).header('content-length', range.end - range.start + 1);
  } else {
    if (facts.checksum) reply.header('content-md5', facts.checksum);
    reply.header('content-length', facts.size);
  }
}

/** Releases the entry and counts the bytes when the stream closes (ended or cut short). */
function counted<T extends Readable & { bytesRead?: number }>(stream: T, release: () => void, count: (n: number) => void): T {
  stream.once('close', () => {
    release();
    if (stream.bytesRead) count(stream.bytesRead);
  });
  return stream;
}
