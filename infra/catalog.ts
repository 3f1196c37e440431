/**
 * Wiring of the catalog extension (galleries, revisions, metafiles): its store (SQLite beside
 * the manifest, or MongoDB) and the hooks ImageService calls on every metadata change.
 */
import { join } from 'node:path';
import { CatalogService } from '../core/catalog.js';
import type { CatalogStore } from '../core/catalog-ports.js';
import type { ImageService } from '../core/image-service.js';
import type { DistributedUrls, PirConfig } from './config.js';
import { SqliteCatalogStore } from './embedded/sqlite-catalog-store.js';
import { MongoCatalogStore } from './mongo/mongo-catalog-store.js';

export interface Catalog {
  store: CatalogStore;
  service: CatalogService;
  close(): Promise<void>;
}

export async function openCatalog(config: Pick<PirConfig, 'dataDir' | 'revisionsKeep'>, urls: DistributedUrls | null, images: ImageService): Promise<Catalog> {
  let store: CatalogStore;
  if (urls) {
    const mongo = new MongoCatalogStore({ url: urls.mongodbUrl });
    await mongo.start();
    store = mongo;
  } else {
    store = new SqliteCatalogStore({ path: join(config.dataDir, 'catalog.sqlite') });
  }
  const service = new CatalogService(store, images, { revisionsKeep: config.revisionsKeep });
  images.attachCatalog(service.hooks());
  return { store, service, close: () => store.close() };
}
