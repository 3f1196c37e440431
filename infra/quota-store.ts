/** Opens the QuotaStore of the mode: SQLite beside the manifest (embedded), MongoDB (distributed). */
import { join } from 'node:path';
import type { QuotaStore } from '../core/quota.js';
import type { DistributedUrls } from './config.js';
import { SqliteQuotaStore } from './embedded/sqlite-quota-store.js';
import { MongoQuotaStore } from './mongo/mongo-quota-store.js';
import { MONGODB, type StartupWait } from './startup-wait.js';

export async function openQuotaStore(dataDir: string, urls: DistributedUrls | null, startup: StartupWait): Promise<QuotaStore> {
  if (!urls) return new SqliteQuotaStore({ path: join(dataDir, 'quotas.sqlite') });
  const store = new MongoQuotaStore({ url: urls.mongodbUrl });
  await startup.until(MONGODB, () => store.start());
  return store;
}
