/** Wiring of the metadata definitions catalog (/v2/metadefs): its store (SQLite beside the manifest, or MongoDB) and its service. */
import { join } from 'node:path';
import { MetadefService } from '../core/metadefs.js';
import type { MetadefStore } from '../core/metadef-ports.js';
import type { DistributedUrls, PirConfig } from './config.js';
import { SqliteMetadefStore } from './embedded/sqlite-metadef-store.js';
import { MongoMetadefStore } from './mongo/mongo-metadef-store.js';
import { MONGODB, type StartupWait } from './startup-wait.js';

export interface Metadefs {
  service: MetadefService;
  close(): Promise<void>;
}

export async function openMetadefs(config: Pick<PirConfig, 'dataDir'>, urls: DistributedUrls | null, startup: StartupWait): Promise<Metadefs> {
  let store: MetadefStore;
  if (urls) {
    const mongo = new MongoMetadefStore({ url: urls.mongodbUrl });
    await startup.until(MONGODB, () => mongo.start());
    store = mongo;
  } else {
    store = new SqliteMetadefStore({ path: join(config.dataDir, 'metadefs.sqlite') });
  }
  return { service: new MetadefService(store), close: () => store.close() };
}
