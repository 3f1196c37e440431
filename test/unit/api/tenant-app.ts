/**
 * The whole API in process for route tests (Fastify inject()): embedded adapters (SQLite in
 * memory, in-process bus and queue), the real pipeline stages, and callers of several projects
 * chosen by token, so tests can act as project A or B with any role.
 */
import { imageView } from '../../../api/glance-view.js';
import { pino } from 'pino';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { buildApp } from '../../../api/app.js';
import { LiveEvents } from '../../../core/live-events.js';
import { tokenInvalid, type Authenticator } from '../../../core/authenticator.js';
import type { Caller } from '../../../core/caller.js';
import { Quotas, UNLIMITED } from '../../../core/quota.js';
import { HashPool } from '../../../ingest/hashing/index.js';
import { LocationRegistrations } from '../../../ingest/register-location.js';
import { LocationReader } from '../../../infra/storage/location-reader.js';
import { DEFAULT_LOCATION_SETTINGS } from '../../../core/external-location.js';
import { WebDownloads } from '../../../ingest/web-download.js';
import { parseAllowList } from '../../../infra/egress/address-policy.js';
import { DEFAULT_EGRESS, EgressClient } from '../../../infra/egress/egress-client.js';
import { SqliteQuotaStore } from '../../../infra/embedded/sqlite-quota-store.js';
import { MemoryJobQueue } from '../../../infra/embedded/memory-job-queue.js';
import { STAGES } from '../../../schemas/image.js';
import { startDispatcher } from '../../../workers/dispatcher.js';
import { StageRunner } from '../../../workers/stage-runner.js';
import { pipelineStages } from '../../../workers/stages/index.js';
import { domain, silent } from '../core/fixtures.js';
import { WebhookFanout, type FirstAttempts } from '../../../core/webhooks/fanout.js';
import { webhookDeliveryKind } from '../../../core/webhooks/jobs.js';
import { SecretBox } from '../../../core/webhooks/secret-box.js';
import { WebhookService } from '../../../core/webhooks/service.js';
import { SqliteWebhookStore } from '../../../infra/embedded/sqlite-webhook-store.js';
import { webhookUrlCheck } from '../../../infra/webhooks.js';
import { randomBytes } from 'node:crypto';
import { CatalogService } from '../../../core/catalog.js';
import { SqliteCatalogStore } from '../../../infra/embedded/sqlite-catalog-store.js';
import { MetadefService } from '../../../core/metadefs.js';
import { SqliteMetadefStore } from '../../../infra/embedded/sqlite-metadef-store.js';

/** Token → caller. Projects A and B with each role, a third project C, and an admin. */
/** Tokens whose validation takes this many ms (a Keystone that is slow to answer). */
export const AUTH_DELAYS: Record<string, number> = {};

export const CALLERS: Record<string, Caller> = {
  admin: { project_id: 'admin-project', user_id: 'admin-user', roles: ['admin'] },
  'a-member': { project_id: 'A', user_id: 'a1', roles: ['member'] },
  'a-reader': { project_id: 'A', user_id: 'a2', roles: ['reader'] },
  'b-member': { project_id: 'B', user_id: 'b1', roles: ['member'] },
  'b-reader': { project_id: 'B', user_id: 'b2', roles: ['reader'] },
  'c-member': { project_id: 'C', user_id: 'c1', roles: ['member'] },
  // Service users (nova, cinder) with the service role alone: no reader role.
  'a-service': { project_id: 'A', user_id: 'a9', roles: ['service'] },
  'b-service': { project_id: 'B', user_id: 'b9', roles: ['service'] },
};
export type Token = keyof typeof CALLERS;

export const PATCH_TYPE = 'application/openstack-images-v2.1-json-patch';

export interface TestApp {
  app: FastifyInstance;
  d: Awaited<ReturnType<typeof domain>>;
  call(token: Token, method: string, url: string, body?: unknown, headers?: Record<string, string>): Promise<LightMyRequestResponse>;
  /** Creates a raw/bare image as `token` with `body`'s fields and returns its id (throws unless 201). */
  create(token: Token, body?: Record<string, unknown>): Promise<string>;
  /** Uploads `bytes` of zeros as a raw image and waits until it is active. */
  activate(token: Token, id: string, bytes?: number): Promise<void>;
  patch(token: Token, id: string, ops: unknown): Promise<LightMyRequestResponse>;
  /** The webhooks extension: its store, and the fan-out (fed by the bus; fan-out jobs run; deliveries are enqueued, no worker runs them). */
  webhookStore: SqliteWebhookStore;
  /** The live events behind GET /v2/events, fed by the bus as the runtime feeds them. */
  live: LiveEvents;
  close(): Promise<void>;
}

/** `showLocations`: PIR_SHOW_MULTIPLE_LOCATIONS (default on here, so the matrix checks who sees them). */
export async function testApp(options: { showLocations?: boolean } = {}): Promise<TestApp> {
  const d = await domain();
  const queue = new MemoryJobQueue({ retry: { attempts: 2, backoffMs: 10 }, logger: silent });
  const runner = new StageRunner(d.manifest, d.blobs, pipelineStages(d.blobs,
    { maxOutputBytes: 2 ** 30, maxRatio: 200 }, { maxVirtualSize: 2 ** 40, allowEncrypted: false }), { stageDeadlineSeconds: 60 }, silent);
  for (const stage of STAGES) await queue.process(stage, 1, runner.handle);
  await startDispatcher(d.bus, d.manifest, queue, silent);
  const upload = { maxImageSize: 2 ** 30, heartbeatMs: 60_000, idleMs: 60_000 };
  const hashes = HashPool.shared();
  const quotas = new Quotas(new SqliteQuotaStore({ path: ':memory:' }), { default: UNLIMITED, projects: {} });
  const webDownloads = new WebDownloads({ images: d.images, quotas, blobs: d.blobs, hashes, upload, egress: new EgressClient({ ...DEFAULT_EGRESS, allowList: parseAllowList('') }), log: silent });
  // Registered locations with Glance's two view options on (README "Registering existing bytes"): the matrix checks who sees them.
  const egress = new EgressClient({ ...DEFAULT_EGRESS, allowList: parseAllowList('') });
  const locationReader = new LocationReader(egress, null);
  const locations = new LocationRegistrations({
    images: d.images, reader: locationReader, egress, upload, log: silent,
    settings: { ...DEFAULT_LOCATION_SETTINGS, s3Buckets: ['golden'], showDirectUrl: true, showLocations: options.showLocations ?? true },
  });
  const authenticator: Authenticator = {
    challenge: null,
    async authenticate(token) {
      const delay = AUTH_DELAYS[token];
      if (delay) await new Promise((resolve) => setTimeout(resolve, delay));
      const caller = CALLERS[token];
      if (!caller) throw tokenInvalid();
      return caller;
    },
    async close() {},
  };
  const webhookStore = new SqliteWebhookStore({ path: ':memory:' });
  const kind = webhookDeliveryKind([10]);
  const webhooks = new WebhookService(webhookStore, new SecretBox(randomBytes(32)), queue, kind,
    webhookUrlCheck(new EgressClient({ ...DEFAULT_EGRESS, allowList: parseAllowList('hooks.test:8080') })), 60);
  const catalogStore = new SqliteCatalogStore({ path: ':memory:' });
  const catalog = new CatalogService(catalogStore, d.images, { revisionsKeep: 100 });
  d.images.attachCatalog(catalog.hooks());
  // As infra/catalog.ts wires it: deliveries and streams follow gallery sharing.
  const grantsOf = (projectId: string) => catalog.grants({ project_id: projectId, user_id: '', roles: [] });
  // No receiver here: what is checked is who gets a delivery, so every first attempt is handed to a
  // delivery job, which no worker runs.
  const queueOnly: FirstAttempts = {
    firstAttempts: async (items, followUp) => {
      await webhookStore.addDeliveries(items.map((i) => i.delivery));
      for (const { delivery } of items) await followUp({ job: { delivery_id: delivery.id }, delayMs: 0 });
    },
  };
  await new WebhookFanout(webhookStore, d.manifest, queue, kind, silent, imageView, queueOnly, grantsOf).start(d.bus, 4);
  const live = new LiveEvents((id) => d.manifest.get(id), grantsOf);
  const metadefStore = new SqliteMetadefStore({ path: ':memory:' });
  const metadefs = new MetadefService(metadefStore);
  const stopLive = await d.bus.watch(async (e) => live.publish(e));
  const app = await buildApp({ images: d.images, manifest: d.manifest, blobs: d.blobs, hashes, log: (process.env.PIR_TEST_APP_LOG ? pino({ level: "error" }) : silent), upload, quotas, webDownloads, locations, authenticator, webhooks, catalog, live, metadefs });
  const call: TestApp['call'] = (token, method, url, body, headers = {}) => app.inject({
    method: method as 'GET', url,
    headers: { 'x-auth-token': token, ...(body !== undefined && !headers['content-type'] ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(body !== undefined ? { payload: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body) } : {}),
  });
  return {
    app, d, call, webhookStore, live,
    async create(token, body = {}) {
      const res = await call(token, 'POST', '/v2/images', { name: 'img', disk_format: 'raw', container_format: 'bare', ...body });
      if (res.statusCode !== 201) throw new Error(`create answered ${res.statusCode}: ${res.body}`);
      return res.json().id as string;
    },
    async activate(token, id, bytes = 64 * 1024) {
      const res = await call(token, 'PUT', `/v2/images/${id}/file`, Buffer.alloc(bytes), { 'content-type': 'application/octet-stream' });
      if (res.statusCode !== 204) throw new Error(`upload answered ${res.statusCode}: ${res.body}`);
    },
    patch: (token, id, ops) => call(token, 'PATCH', `/v2/images/${id}`, ops, { 'content-type': PATCH_TYPE }),
    async close() {
      await app.close();
      await stopLive();
      await webDownloads.close();
      await locations.close();
      locationReader.close();
      await queue.close(1000);
      await d.relay.drain();
      await d.close();
      await webhookStore.close();
      await catalogStore.close();
      await metadefStore.close();
    },
  };
}
