/** Embedded mode: manifest in SQLite, events and jobs in this process. No services needed. */
import type { Logger } from 'pino';
import type { RetryPolicy } from '../core/ports.js';
import { MemoryEventBus } from './embedded/memory-event-bus.js';
import { MemoryJobQueue } from './embedded/memory-job-queue.js';
import { SqliteManifestStore } from './embedded/sqlite-manifest-store.js';
import type { Adapters } from './runtime.js';

export async function openEmbeddedAdapters(manifestPath: string, retry: RetryPolicy, log: Logger): Promise<Adapters> {
  const store = new SqliteManifestStore({ path: manifestPath });
  const bus = new MemoryEventBus();
  const queue = new MemoryJobQueue({ retry, logger: log });
  return {
    mode: 'embedded',
    store,
    bus,
    queue,
    async close() {
      await bus.close();
      await store.close();
    },
  };
}
