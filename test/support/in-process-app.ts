/**
 * The real Fastify app over a given ManifestStore, for in-process route tests (app.inject) and
 * benchmarks: the same ImageService, Manifest and routes as `pir serve`, no listening socket.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp } from '../../api/app.js';
import { FaultHooks } from '../../core/fault-hooks.js';
import { ImageService } from '../../core/image-service.js';
import { Manifest } from '../../core/manifest.js';
import { OutboxRelay } from '../../core/outbox-relay.js';
import type { ManifestStore } from '../../core/ports.js';
import type { Caller } from '../../core/caller.js';
import { TokensFileAuthenticator } from '../../infra/identity/tokens-file.js';
import { MemoryEventBus } from '../../infra/embedded/memory-event-bus.js';
import { FsBlobStore } from '../../infra/storage/fs-blob-store.js';
import { HashPool } from '../../ingest/hashing/index.js';
import { WebDownloads } from '../../ingest/web-download.js';
import { Quotas, UNLIMITED } from '../../core/quota.js';
import { DEFAULT_EGRESS, EgressClient } from '../../infra/egress/egress-client.js';
import { CatalogService } from '../../core/catalog.js';
import type { CatalogStore } from '../../core/catalog-ports.js';
import { SqliteCatalogStore } from '../../infra/embedded/sqlite-catalog-store.js';

export interface InProcessApp {
  app: FastifyInstance;
  images: ImageService;
  manifest: Manifest;
  token: string;
  catalog: CatalogService;
  catalogStore: CatalogStore;
  close(): Promise<void>;
}

export interface InProcessAppOptions {
  /** The admin token (project admin, role admin). */
  token?: string;
  /** More tokens and the callers they stand for, served by the real tokens-file adapter. */
  tokens?: Record<string, Omit<Caller, 'roles'> & { roles: string[] }>;
  /** The catalog's store (galleries, revisions); default: SQLite in the app's temporary directory. */
  catalogStore?: CatalogStore;
  /** Revisions kept per image (default 100). */
  revisionsKeep?: number;
  /** Runs before the app is ready (to add hooks). */
  setup?: (app: FastifyInstance) => void;
}

export async function inProcessApp(store: ManifestStore, opts: InProcessAppOptions = {}): Promise<InProcessApp> {
  const dir = mkdtempSync(join(tmpdir(), 'pir-app-'));
  const log = pino({ level: 'silent' });
  const blobs = new FsBlobStore(dir);
  await blobs.init();
  const bus = new MemoryEventBus();
  const relay = new OutboxRelay(store, bus, log);
  const manifest = new Manifest(store, relay, new FaultHooks([]));
  const images = new ImageService(manifest, blobs, { stageDeadlineSeconds: 900 });
  const hashes = new HashPool();
  const token = opts.token ?? 'test-token';
  let tokensFile: string | null = null;
  if (opts.tokens) {
    tokensFile = join(dir, 'tokens.json');
    writeFileSync(tokensFile, JSON.stringify({ tokens: Object.entries(opts.tokens).map(([t, caller]) => ({ token: t, ...caller })) }), { mode: 0o600 });
  }
  const authenticator = await TokensFileAuthenticator.open({ path: tokensFile, adminToken: token, log });
  const upload = { maxImageSize: 1 << 30, heartbeatMs: 30_000, idleMs: 300_000 };
  const quotas = new Quotas(null, { default: UNLIMITED, projects: {} });
  const webDownloads = new WebDownloads({ images, quotas, blobs, hashes, upload, egress: new EgressClient(DEFAULT_EGRESS), log });
  const catalogStore = opts.catalogStore ?? new SqliteCatalogStore({ path: join(dir, 'catalog.sqlite') });
  const catalog = new CatalogService(catalogStore, images, { revisionsKeep: opts.revisionsKeep ?? 100, log });
  relay.onPurge((imageId) => catalogStore.dropRevisions(imageId));
  images.attachCatalog(catalog.hooks());
  const app = await buildApp({ images, manifest, blobs, hashes, upload, quotas, webDownloads, authenticator, log, catalog });
  opts.setup?.(app);
  await app.ready();
  return {
    app, images, manifest, token, catalog, catalogStore,
    async close() {
      await app.close();
      if (!opts.catalogStore) await catalogStore.close();
      await webDownloads.close();
      await authenticator.close();
      await hashes.close();
      await bus.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
