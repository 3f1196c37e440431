/** Embedded mode: manifest in SQLite, events and jobs in this process. No services needed. */
import type { Logger } from 'pino';
import type { RetryPolicy } from '../core/ports.js';
import { MemoryEventBus } from './embedded/memory-event-bus.js';
import { dirname, join } from 'node:path';
import { MemoryJobQueue } from './embedded/memory-job-queue.js';
import { SqliteJobJournal } from './embedded/sqlite-job-journal.js';
import { SqliteManifestStore } from './embedded/sqlite-manifest-store.js';
import type { Adapters } from './runtime.js';

export async function openEmbeddedAdapters(manifestPath: string, retry: RetryPolicy, log: Logger): Promise<Adapters> {
  const store = new SqliteManifestStore({ path: manifestPath, logger: log });
  const bus = new MemoryEventBus({ logger: log });
  // Jobs of durable kinds (webhook deliveries) wait in SQLite beside the manifest until they finish.
  const journal = new SqliteJobJournal(join(dirname(manifestPath), 'jobs.sqlite'));
  const queue = new MemoryJobQueue({ retry, logger: log, journal });
  return {
    mode: 'embedded',
    store,
    bus,
    queue,
    async close() {
      await bus.close();
      await store.close();
      journal.close();
    },
  };
}
