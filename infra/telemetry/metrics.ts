/**
 * PIR's Prometheus metrics (prom-client), all named pir_…, in one registry per process.
 * Counters and histograms are updated where things happen; gauges about shared state (images by
 * status, queues, consumer lag, outbox) are read from the stores when scraped, cached briefly
 * so that many scrapers (or processes) cost one query per few seconds.
 */
import client from 'prom-client';
import type { Logger } from 'pino';
import type { ManifestStore, JobQueue } from '../../core/ports.js';
import { pacedDelay } from '../pacing.js';

export const registry = new client.Registry();
client.collectDefaultMetrics({ register: registry, prefix: 'pir_' });

export const ingestedBytes = new client.Counter({
  name: 'pir_ingested_bytes_total',
  help: 'Image bytes received and staged (uploads, stage, web-download)',
  registers: [registry],
});

export const servedBytes = new client.Counter({
  name: 'pir_served_bytes_total',
  help: 'Image bytes read from the store to answer downloads',
  registers: [registry],
});

export const stageDuration = new client.Histogram({
  name: 'pir_stage_duration_seconds',
  help: 'Duration of pipeline stage runs, by stage and outcome (done, retry, failed)',
  labelNames: ['stage', 'outcome'] as const,
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600],
  registers: [registry],
});

export const httpDuration = new client.Histogram({
  name: 'pir_http_request_duration_seconds',
  help: 'HTTP request latency by method, route pattern and status code',
  labelNames: ['method', 'route', 'status_code'] as const,
  buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120],
  registers: [registry],
});

export interface MetricSources {
  store: Pick<ManifestStore, 'countByStatus' | 'countPendingEvents'>;
  queue: Pick<JobQueue, 'stats'>;
  /** Distributed mode: lag of PIR's consumer groups on the event topic. */
  consumerLag?: () => Promise<{ group: string; lag: number }[]>;
  log?: Logger;
}

let sources: MetricSources | null = null;
const CACHE_MS = 5000;
/** The share of the time a scrape's store reads may take (see cached()). */
const CACHE_SHARE = 0.05;

/** Makes this process's gauges read from these sources (the last call wins). */
export function setMetricSources(next: MetricSources | null): void {
  sources = next;
  for (const c of caches) c.clear();
}

/** Forgets cached gauge values, so the next scrape reads the stores (tests). */
export function refreshMetricSources(): void {
  for (const c of caches) c.clear();
}

interface Cache<T> { get(): Promise<T | null>; clear(): void }
const caches: Cache<unknown>[] = [];

/**
 * The value of `read()` at most CACHE_MS old, or older when reading takes more than CACHE_SHARE
 * of the time (infra/pacing.ts: the status counts scan the collection on FerretDB's SQLite
 * backend); null when it fails (the gauge then keeps its last value).
 */
function cached<T>(what: string, read: (s: MetricSources) => Promise<T>): Cache<T> {
  let at = 0;
  let maxAgeMs = CACHE_MS;
  let value: Promise<T | null> | null = null;
  const cache: Cache<T> = {
    get() {
      const s = sources;
      if (!s) return Promise.resolve(null);
      if (!value || Date.now() - at > maxAgeMs) {
        at = Date.now();
        const started = performance.now();
        value = read(s).then((v) => {
          const took = performance.now() - started;
          maxAgeMs = took + pacedDelay(CACHE_MS, took, CACHE_SHARE);
          return v;
        }, (err: unknown) => {
          s.log?.warn({ err, metric: what }, 'metric source failed; its gauge keeps its last value');
          at = 0;
          return null;
        });
      }
      return value;
    },
    clear() { value = null; at = 0; maxAgeMs = CACHE_MS; },
  };
  caches.push(cache as Cache<unknown>);
  return cache;
}

const statusCounts = cached('images', (s) => s.store.countByStatus());
const queueStats = cached('queues', (s) => s.queue.stats());
const pendingEvents = cached('outbox', (s) => s.store.countPendingEvents());
const lag = cached('consumer_lag', (s) => s.consumerLag ? s.consumerLag() : Promise.resolve(null));

new client.Gauge({
  name: 'pir_images',
  help: 'Images by status (from the manifest store)',
  labelNames: ['status'] as const,
  registers: [registry],
  async collect() {
    const counts = await statusCounts.get();
    if (counts) for (const [status, n] of Object.entries(counts)) this.set({ status }, n);
  },
});

new client.Gauge({
  name: 'pir_queue_depth',
  help: 'Stage jobs waiting to run (ready or waiting for a retry), per stage queue',
  labelNames: ['queue'] as const,
  registers: [registry],
  async collect() {
    for (const q of (await queueStats.get()) ?? []) this.set({ queue: q.stage }, q.waiting);
  },
});

new client.Gauge({
  name: 'pir_queue_active_jobs',
  help: 'Stage jobs running, per stage queue',
  labelNames: ['queue'] as const,
  registers: [registry],
  async collect() {
    for (const q of (await queueStats.get()) ?? []) this.set({ queue: q.stage }, q.active);
  },
});

new client.Gauge({
  name: 'pir_queue_oldest_job_age_seconds',
  help: 'Age of the oldest job waiting to run, per stage queue (0 when none waits)',
  labelNames: ['queue'] as const,
  registers: [registry],
  async collect() {
    for (const q of (await queueStats.get()) ?? []) this.set({ queue: q.stage }, q.oldestWaitingSeconds);
  },
});

new client.Gauge({
  name: 'pir_outbox_backlog',
  help: 'Images whose outbox still holds events not yet published to the bus',
  registers: [registry],
  async collect() {
    const n = await pendingEvents.get();
    if (n !== null) this.set(n);
  },
});

new client.Gauge({
  name: 'pir_kafka_consumer_lag',
  help: 'Events on the topic a consumer group has not read yet (distributed mode)',
  labelNames: ['group'] as const,
  registers: [registry],
  async collect() {
    for (const { group, lag: n } of (await lag.get()) ?? []) this.set({ group }, n);
  },
});

export const mongoCommandDuration = new client.Histogram({
  name: 'pir_mongo_command_duration_seconds',
  help: 'MongoDB-wire commands sent by the stores (manifest, catalog, webhooks, quotas) and their latency, by store and command',
  labelNames: ['store', 'command'] as const,
  buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  registers: [registry],
});

export const manifestWrites = new client.Counter({
  name: 'pir_manifest_writes_total',
  help: 'Manifest writes by kind (create, update: compare-and-set, ack: outbox) and outcome (won, lost: another writer was first)',
  labelNames: ['kind', 'outcome'] as const,
  registers: [registry],
});

export const sqliteWalSyncs = new client.Counter({
  name: 'pir_sqlite_wal_syncs_total',
  help: 'Embedded mode: fdatasyncs of a SQLite database\'s write-ahead log by its group commit, by database file',
  labelNames: ['db'] as const,
  registers: [registry],
});

export const sqliteDurableWrites = new client.Counter({
  name: 'pir_sqlite_durable_writes_total',
  help: 'Embedded mode: SQLite writes made durable by the group commit (divided by pir_sqlite_wal_syncs_total: writes per fdatasync), by database file',
  labelNames: ['db'] as const,
  registers: [registry],
});
