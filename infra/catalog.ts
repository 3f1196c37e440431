/**
 * Wiring of the catalog extension (galleries, revisions, metafiles): its store (SQLite beside
 * the manifest, or MongoDB) and the hooks ImageService calls on every metadata change.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { OutboxRelay } from '../core/outbox-relay.js';
import { CatalogService } from '../core/catalog.js';
import type { CatalogStore } from '../core/catalog-ports.js';
import type { GrantsOf } from '../core/event-audience.js';
import type { ImageService } from '../core/image-service.js';
import type { DistributedUrls, PirConfig } from './config.js';
import { SqliteCatalogStore } from './embedded/sqlite-catalog-store.js';
import { MongoCatalogStore } from './mongo/mongo-catalog-store.js';
import { MONGODB, type StartupWait } from './startup-wait.js';

export interface Catalog {
  store: CatalogStore;
  service: CatalogService;
  /** The galleries shared with a project (webhooks and GET /v2/events follow gallery sharing). */
  grantsOf: GrantsOf;
  close(): Promise<void>;
}

/** With `relay`, a purged image's revisions go with it; with `log`, a revision that could not be written is reported. */
export async function openCatalog(config: Pick<PirConfig, 'dataDir' | 'revisionsKeep'>, urls: DistributedUrls | null, images: ImageService, wiring: { relay?: OutboxRelay; log?: Logger; startup: StartupWait }): Promise<Catalog> {
  let store: CatalogStore;
  if (urls) {
    const mongo = new MongoCatalogStore({ url: urls.mongodbUrl });
    await wiring.startup.until(MONGODB, () => mongo.start());
    store = mongo;
  } else {
    store = new SqliteCatalogStore({ path: join(config.dataDir, 'catalog.sqlite') });
  }
  const service = new CatalogService(store, images, { revisionsKeep: config.revisionsKeep, ...(wiring.log ? { log: wiring.log } : {}) });
  wiring.relay?.onPurge((imageId) => store.dropRevisions(imageId));
  images.attachCatalog(service.hooks());
  // Events reach accepted members only (core/webhooks/visibility.ts): no other share is walked.
  const grantsOf: GrantsOf = (projectId) => service.grants({ project_id: projectId, user_id: '', roles: [] }, ['accepted']);
  return { store, service, grantsOf, close: () => store.close() };
}
