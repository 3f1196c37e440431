/** Builds the Fastify app (no listening here: tests inject, the CLI listens). */
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Authenticator } from '../core/authenticator.js';
import type { ImageService } from '../core/image-service.js';
import type { Manifest } from '../core/manifest.js';
import type { Quotas } from '../core/quota.js';
import type { BlobStore } from '../core/ports.js';
import type { HashPool } from '../ingest/hashing/index.js';
import type { UploadSettings } from '../ingest/receive-upload.js';
import type { WebDownloads } from '../ingest/web-download.js';
import { authHook } from './auth.js';
import { handleError, sendError } from './error-handler.js';
import { LIMITS } from '../core/limits.js';
import { imageDataRoutes } from './routes/image-data.js';
import { imageImportRoutes } from './routes/image-import.js';
import { imageMemberRoutes } from './routes/image-members.js';
import { imageTagRoutes } from './routes/image-tags.js';
import { schemaRoutes } from './routes/schemas.js';
import { taskRoutes } from './routes/tasks.js';
import { imageRoutes } from './routes/images.js';
import { infoRoutes } from './routes/info.js';
import { versionRoutes } from './routes/versions.js';
import { webhookRoutes } from './routes/webhooks.js';
import type { WebhookService } from '../core/webhooks/service.js';

export interface AppDeps {
  images: ImageService;
  manifest: Manifest;
  blobs: BlobStore;
  hashes: HashPool;
  upload: UploadSettings;
  quotas: Quotas;
  webDownloads: WebDownloads;
  authenticator: Authenticator;
  log: Logger;
  /** The webhooks extension; absent: /v2/webhooks is not served. */
  webhooks?: WebhookService;
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    bodyLimit: LIMITS.jsonBodyBytes, // JSON bodies only; image data is streamed past the body parser
    requestIdHeader: 'x-openstack-request-id',
    // A path segment (tag, member id) longer than this answers 414; shorter ones reach the domain's own limits.
    routerOptions: { maxParamLength: 1024 },
    // Errors the router raises before any route (a bad URL, an over-long segment), in PIR's shape.
    frameworkErrors: (error, request, reply) => {
      if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') return sendError(reply, 414, 'uri_too_long', 'A path segment is longer than 1024 characters; tags and names are at most 255.');
      return sendError(reply, 400, 'bad_url', `The URL could not be read (${error.message}); percent-encode it properly.`);
    },
    genReqId: () => `req-${crypto.randomUUID()}`,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false } },
  });
  app.setErrorHandler(handleError);
  app.setNotFoundHandler((request, reply) => sendError(reply, 404, 'no_route', `There is no ${request.method} ${request.url.split('?')[0]} here; see GET /versions and the Image API v2 reference.`));
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-openstack-request-id', request.id);
  });
  await app.register(versionRoutes);
  const checkToken = authHook(deps.authenticator);
  await app.register(async (v2) => {
    v2.addHook('onRequest', checkToken);
    await schemaRoutes(v2);
    await imageRoutes(v2, deps.images, deps.quotas);
    await imageTagRoutes(v2, deps.images);
    await imageMemberRoutes(v2, deps.images);
    await taskRoutes(v2, deps.images);
    await imageImportRoutes(v2, deps.images, deps.webDownloads);
    await infoRoutes(v2, deps.quotas);
    await imageDataRoutes(v2, deps);
    if (deps.webhooks) await webhookRoutes(v2, deps.webhooks);
  });
  return app;
}
