/** Builds the Fastify app (no listening here: tests inject, the CLI listens). */
import { canonicalImageIds } from './canonical-image-ids.js';
import { negotiatedUrl } from './version-negotiation.js';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Authenticator } from '../core/authenticator.js';
import type { ImageService } from '../core/image-service.js';
import type { Manifest } from '../core/manifest.js';
import type { Quotas } from '../core/quota.js';
import type { BlobStore } from '../core/ports.js';
import type { HashPool } from '../ingest/hashing/index.js';
import type { UploadSettings } from '../ingest/receive-upload.js';
import type { WebDownloads } from '../ingest/web-download.js';
import type { DependencyCheck } from '../infra/telemetry/health.js';
import { httpDuration } from '../infra/telemetry/metrics.js';
import { authHook } from './auth.js';
import { healthRoutes } from './routes/health.js';
import { opsRoutes, type OpsDeps } from './routes/ops.js';
import { handleError, handleFrameworkError, methodNotAllowed, sendError, writeClientError } from './error-handler.js';
import { closeStalledSends } from './send-stall.js';
import { HTTP_TIMEOUTS } from './http-timeouts.js';
import { awaitsContinue, bodyConsumed, deferExpect, hasBufferedBody, hasMalformedQuery, lingerOnRefusedBody, malformedFraming, requestIdOf, requestLogView, sendContinue, unmetExpectation, unsupportedTransferCoding } from './http-hygiene.js';
import { LIMITS } from '../core/limits.js';
import { RouteMethods } from './route-methods.js';
import { imageDataRoutes } from './routes/image-data.js';
import { imageImportRoutes } from './routes/image-import.js';
import { imageMemberRoutes } from './routes/image-members.js';
import { imageTagRoutes } from './routes/image-tags.js';
import { schemaRoutes } from './routes/schemas.js';
import { taskRoutes } from './routes/tasks.js';
import { imageRoutes } from './routes/images.js';
import { imageLocationRoutes } from './routes/image-locations.js';
import type { LocationRegistrations } from '../ingest/register-location.js';
import { infoRoutes } from './routes/info.js';
import { storeRoutes } from './routes/stores.js';
import { StoreOperations } from '../core/store-operations.js';
import { metricsRoutes } from './routes/metrics.js';
import { servedMinors, versionRoutes } from './routes/versions.js';
import { webhookRoutes } from './routes/webhooks.js';
import { imageUploadRoutes } from './routes/image-uploads.js';
import { shareLinkRoutes, sharedDownloadRoutes } from './routes/share-links.js';
import { ResumableUploads } from '../ingest/tus/resumable-uploads.js';
import { tusStagingFor } from '../ingest/tus/staging-for.js';
import type { UploadLeases } from '../ingest/tus/upload-leases.js';
import type { WebhookService } from '../core/webhooks/service.js';
import type { CatalogService } from '../core/catalog.js';
import { catalogRoutes } from './routes/catalog.js';
import type { MetadefService } from '../core/metadefs.js';
import { metadefRoutes } from './routes/metadefs.js';
import type { LiveEvents } from '../core/live-events.js';
import { consoleRoutes } from './routes/console.js';
import { eventRoutes } from './routes/events.js';
import { tokenExchangeRoutes, type TokenExchangeSettings } from './routes/token-exchange.js';
import { jsonBodyParser } from './json-body.js';

/** The v2 minor versions this API serves (no cache API here: `pir cache` has its own app). */
const SERVED_MINORS = servedMinors(false);

export interface AppDeps {
  images: ImageService;
  manifest: Manifest;
  blobs: BlobStore;
  hashes: HashPool;
  upload: UploadSettings;
  quotas: Quotas;
  webDownloads: WebDownloads;
  /** Registering existing bytes (Glance's locations); absent: the locations API is not served. */
  locations?: LocationRegistrations;
  authenticator: Authenticator;
  log: Logger;
  /** What /readyz checks (none: it answers ready). */
  health?: DependencyCheck[];
  /** The ops dashboard's data sources (none: no /ops). */
  ops?: OpsDeps;
  /** PIR_PUBLIC_URL; when unset, links are built from the address the server listens on. */
  publicUrl?: string | null;
  /** Tests shorten the HTTP timeouts. */
  httpTimeouts?: Partial<typeof HTTP_TIMEOUTS>;
  /** PIR_TUS_EXPIRY_SECONDS: how long a resumable upload may take (default a day). */
  tusExpirySeconds?: number;
  /** Who may append to a tus upload: shared by every API process in distributed mode (default: this process). */
  tusLeases?: UploadLeases;
  /** The webhooks extension; absent: /v2/webhooks is not served. */
  webhooks?: WebhookService;
  /** The catalog extension (galleries, revisions, metafiles); absent: not served. */
  catalog?: CatalogService;
  /** Glance's metadata definitions catalog (/v2/metadefs); absent: not served. */
  metadefs?: MetadefService;
  /** Live image events for GET /v2/events; absent: the event stream is not served. */
  live?: LiveEvents;
  /** PIR_EVENT_STREAMS_PER_USER: open GET /v2/events streams per user and project (default 16). */
  eventStreamsPerUser?: number;
  /** Multi-store operations (copy-image, DELETE /v2/stores/…); absent: deletes only, no copy-image. */
  storeOps?: StoreOperations;
  /** Keystone, when PIR runs behind it: POST /auth/tokens exchanges a password for a token (the web console's sign-in). */
  keystone?: TokenExchangeSettings | null;
}

/** The routes that take image data, whose refused bodies PIR goes on reading (lingerOnRefusedBody). */
const IMAGE_DATA_ROUTES = new Set(['PUT /v2/images/:id/file', 'PUT /v2/images/:id/stage', 'POST /v2/images/:id/uploads', 'PATCH /v2/images/:id/uploads/:upload']);

function takesImageData(request: FastifyRequest): boolean {
  return IMAGE_DATA_ROUTES.has(`${request.method} ${request.routeOptions.url ?? ''}`);
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const timeouts = { ...HTTP_TIMEOUTS, ...deps.httpTimeouts };
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    bodyLimit: LIMITS.jsonBodyBytes, // JSON bodies only; image data is streamed past the body parser
    genReqId: requestIdOf,
    childLoggerFactory: (logger, bindings, options) => logger.child(bindings, { ...options, serializers: { ...options.serializers, req: requestLogView } }),
    // A path segment (tag, member id) longer than this answers 414; shorter ones reach the domain's own limits.
    routerOptions: { maxParamLength: 1024 },
    // Glance's version negotiation: /v2.N/…, the vendor Accept type, and 300 for other versions;
    // then an image id in the path in lower case.
    rewriteUrl: (req) => canonicalImageIds(negotiatedUrl(req.url ?? '/', req.headers.accept, SERVED_MINORS)),
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false } },
    requestTimeout: 0,
    // Node's own answer to a missing Host is an empty 400: PIR checks Host itself (malformedFraming).
    http: { requireHostHeader: false },
    keepAliveTimeout: timeouts.keepAliveMs,
    connectionTimeout: timeouts.socketIdleMs,
    frameworkErrors: handleFrameworkError,
    // Requests arriving while PIR shuts down get the 503 below, in PIR's error shape.
    return503OnClosing: false,
    clientErrorHandler(error, socket) {
      const answered = writeClientError(socket, error as NodeJS.ErrnoException);
      if (answered) deps.log.info({ status: answered.status, error_code: answered.code, reason: (error as NodeJS.ErrnoException).code }, 'refused a request the HTTP parser could not read');
    },
  });
  app.server.headersTimeout = timeouts.headersMs;
  const stopStallWatch = closeStalledSends(app.server, timeouts.sendStallMs);
  app.addHook('onClose', async () => stopStallWatch());
  jsonBodies(app);
  deferExpect(app.server);
  app.setErrorHandler(handleError);
  const routeMethods = new RouteMethods();
  routeMethods.watch(app);
  // What Node's parser lets through (or answers with an empty body) but HTTP/1.1 refuses, in PIR's shape.
  app.addHook('onRequest', async (request, reply) => {
    const malformed = malformedFraming(request.raw);
    if (malformed !== null) {
      reply.header('Connection', 'close');
      return sendError(reply, 400, 'malformed_request', `The request is not valid HTTP/1.1: ${malformed}.`);
    }
    if (hasMalformedQuery(request.url)) {
      return sendError(reply, 400, 'bad_url', 'The query string holds a malformed %-escape (encode a literal % as %25, and text as UTF-8).');
    }
    const expectation = unmetExpectation(request.raw);
    if (expectation !== null) {
      return sendError(reply, 417, 'expectation_failed', `PIR meets no expectation but 100-continue (this request says Expect: ${expectation.slice(0, 64)}); send it without that Expect header.`);
    }
  });
  app.addHook('onRequest', (request, reply, done) => {
    if (hasBufferedBody(request.raw)) armBodyDeadline(request, reply, timeouts.bufferedBodyMs);
    done();
  });
  let closing = false;
  app.addHook('preClose', async () => { closing = true; });
  app.addHook('onRequest', async (request, reply) => {
    if (!closing) return;
    reply.header('Connection', 'close');
    return sendError(reply, 503, 'shutting_down', 'PIR is shutting down; retry in a moment (or on another PIR).');
  });
  app.addHook('onRequest', async (request, reply) => {
    const coding = unsupportedTransferCoding(request.raw);
    if (coding === null) return;
    reply.header('Connection', 'close'); // the body's framing cannot be trusted: nothing more is read
    return sendError(reply, 501, 'transfer_coding_unsupported', `PIR takes request bodies as they are or chunked, with no other transfer coding (this one says Transfer-Encoding: ${coding.slice(0, 64)}). Send the image's bytes as they are: PIR itself unpacks a gzip, xz, zstd or bzip2 image.`);
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!;
    const allow = routeMethods.allowedFor(path);
    // (A method the path takes that still found no route is the router's 404, e.g. an empty id.)
    if (allow.length > 0 && !allow.includes(request.method)) return methodNotAllowed(reply, request.method, path, allow);
    return sendError(reply, 404, 'no_route', `There is no ${request.method} ${path.slice(0, 200)} here; see GET /versions and the Image API v2 reference.`);
  });
  // A body nobody wants (image data) is said "continue" to by its route, once it will read it.
  app.addHook('preParsing', async (request, reply) => {
    if (!(request.headers['content-type'] ?? '').toLowerCase().startsWith('application/octet-stream')) sendContinue(request.raw, reply.raw);
  });
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-openstack-request-id', request.id);
    if (bodyConsumed(request.raw) || String(reply.getHeader('connection') ?? '').toLowerCase() === 'close') return;
    // A body left unread (a refusal before the data was wanted). Only image data is worth
    // waiting for: a client waiting for "continue" sends none, a 408 answers a body that went
    // silent, and any other body is not read (the connection closes).
    if (awaitsContinue(request.raw) || request.raw.destroyed || reply.statusCode === 408 || !takesImageData(request)) {
      reply.header('Connection', 'close');
      return;
    }
    // Callers without a valid token get less of PIR's reading than those it knows.
    const bytes = request.caller ? timeouts.refusedBodyLingerBytes : timeouts.anonymousBodyLingerBytes;
    const drained = lingerOnRefusedBody(request.raw, { ms: timeouts.refusedBodyLingerMs, bytes });
    // Node closes at once after the answer to a client that asked to close (or HTTP/1.0): that
    // one gets its answer once its body is in.
    if (!reply.raw.shouldKeepAlive) await drained;
  });
  // Latency by route pattern (never the raw URL: ids would make every image its own series).
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    httpDuration.observe({ method: request.method, route, status_code: String(reply.statusCode) }, reply.elapsedTime / 1000);
  });
  await app.register(async (root) => versionRoutes(root, { publicUrl: deps.publicUrl ?? null }));
  const checkToken = authHook(deps.authenticator);
  // Share links answer without a token: the link is the credential.
  await app.register(async (shared) => sharedDownloadRoutes(shared, deps));
  // tus stages in a local file (filesystem store) or an S3 multipart upload (S3 store).
  const tusStaging = await tusStagingFor(deps.blobs);
  const resumable = tusStaging ? new ResumableUploads({
    ...deps, staging: tusStaging, expirySeconds: deps.tusExpirySeconds ?? 86_400, ...(deps.tusLeases ? { leases: deps.tusLeases } : {}),
  }) : null;
  await healthRoutes(app, deps.health ?? []);
  await metricsRoutes(app, checkToken);
  if (deps.ops) await opsRoutes(app, deps.ops, checkToken);
  await consoleRoutes(app, { passwordSignIn: Boolean(deps.keystone) });
  if (deps.keystone) await app.register(async (root) => tokenExchangeRoutes(root, deps.keystone!));
  await app.register(async (v2) => {
    // HEAD only where a route declares it (…/file, tus uploads): elsewhere 405, as Glance's router,
    // answered before the token is read, as the other 405s.
    routeMethods.refuseImplicitHead(v2);
    v2.addHook('onRequest', async (request, reply) => {
      if (request.method !== 'HEAD' || !routeMethods.headRefused(request.routeOptions.url)) return;
      const path = request.url.split('?')[0]!;
      return methodNotAllowed(reply, 'HEAD', path, routeMethods.allowedFor(path));
    });
    v2.addHook('onRequest', checkToken);
    await schemaRoutes(v2, { multiStore: deps.images.stores.multi });
    await imageRoutes(v2, deps.images, deps.quotas, deps.locations, deps.webDownloads.glanceDownloadOffered);
    if (deps.locations) await imageLocationRoutes(v2, deps.images, deps.locations);
    await imageTagRoutes(v2, deps.images);
    await imageMemberRoutes(v2, deps.images);
    await taskRoutes(v2, deps.images, deps.quotas, deps.webDownloads);
    const storeOps = deps.storeOps ?? new StoreOperations(deps.manifest, deps.images.stores, null, deps.log);
    await imageImportRoutes(v2, deps.images, deps.webDownloads, storeOps.canCopy ? storeOps : null);
    await infoRoutes(v2, deps.quotas, deps.images.stores);
    await storeRoutes(v2, storeOps);
    await imageDataRoutes(v2, deps);
    if (resumable) await imageUploadRoutes(v2, { uploads: resumable, maxImageSize: deps.upload.maxImageSize, publicUrl: deps.publicUrl ?? null });
    await shareLinkRoutes(v2, deps.images, deps.publicUrl ?? null);
    if (deps.webhooks) await webhookRoutes(v2, deps.webhooks);
    if (deps.catalog) await catalogRoutes(v2, deps.catalog);
    if (deps.metadefs) await metadefRoutes(v2, deps.metadefs);
    if (deps.live) await eventRoutes(v2, deps.live, deps.authenticator, deps.eventStreamsPerUser ? { streamsPerUser: deps.eventStreamsPerUser } : {});
  });
  return app;
}

/** 405 with the methods the path takes in `Allow` (Glance's router). */
/**
 * JSON bodies are read as JSON whatever their Content-Type says, as Glance's deserializer reads
 * them (curl's -d sends application/x-www-form-urlencoded, some scripts text/plain or nothing).
 * The routes that take other bodies have their own parsers and refuse any other media type before
 * reading (image data, tus, JSON patch). PIR has no cookies, so this opens no CSRF path: a
 * cross-site form cannot send X-Auth-Token. A request that says `Content-Type:
 * application/json` but sends no body (tempest's REST client sends that header on every DELETE,
 * tag PUT and action POST) is a request without a body, as in Glance, instead of Fastify's 400;
 * a body that is there is parsed by Fastify's own prototype-poisoning-safe parser
 * (api/json-body.ts: a prototype key is refused by name, not as invalid JSON).
 */
function jsonBodies(app: FastifyInstance): void {
  const parseJson = jsonBodyParser(app);
  const parse: Parameters<FastifyInstance['addContentTypeParser']>[2] = (request, body, done) => {
    const text = body.toString();
    // No route, no body to read: the answer is 404 or 405 whatever was sent.
    if (text === '' || request.is404) {
      done(null, undefined);
      return;
    }
    parseJson(request, text, done);
  };
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser('application/json', { parseAs: 'string' }, parse);
  app.addContentTypeParser('*', { parseAs: 'string' }, parse);
}

/** Answers 408 and closes the connection when a buffered body is not all in after `ms`. */
function armBodyDeadline(request: FastifyRequest, reply: FastifyReply, ms: number): void {
  const timer = setTimeout(() => {
    if (request.raw.complete || reply.sent) return;
    request.log.info({ deadline_ms: ms }, 'request body not all received in time; answered 408 and closed the connection');
    reply.header('connection', 'close');
    void sendError(reply, 408, 'body_timeout', `The request body did not all arrive within ${ms / 1000} s; send the request again.`);
    // The body parser still waits for the rest: the connection ends once the answer is out.
    reply.raw.once('finish', () => request.raw.socket?.destroy());
  }, ms);
  timer.unref();
  const clear = () => clearTimeout(timer);
  request.raw.once('end', clear);
  reply.raw.once('close', clear);
}
