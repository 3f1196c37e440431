/** `pir cache`: wires the store, the upstream client, the event follower and the HTTP app. */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { resolveAdminToken } from '../infra/admin-token.js';
import type { PirConfig } from '../infra/config.js';
import { startMetricsServer } from '../infra/telemetry/metrics-server.js';
import { buildCacheApp, WEBHOOK_PATH } from './cache-app.js';
import type { CacheConfig } from './cache-config.js';
import { CacheStore } from './cache-store.js';
import { followKafka, registerWebhook } from './event-follower.js';
import { cacheMetrics, cacheRegistry, setGaugeSource } from './metrics.js';
import { PrefetchQueue } from './prefetch-queue.js';
import { Upstream } from './upstream.js';

export interface RunningCache {
  url: string;
  stop(): Promise<void>;
}

const DROPPING = new Set(['image.deleted', 'image.deactivated', 'image.killed']);

export async function startCache(pir: PirConfig, config: CacheConfig, log: Logger): Promise<RunningCache> {
  const dir = join(pir.dataDir, 'cache');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const { token: adminToken, generated, path: adminTokenPath } = await resolveAdminToken(pir.adminToken, pir.dataDir);
  if (generated) log.warn({ path: adminTokenPath }, 'no PIR_ADMIN_TOKEN: generated the cache\'s admin token into this file');
  const upstream = new Upstream({ base: config.upstream, decisionTtlMs: config.decisionTtlMs, maxDecisions: config.maxDecisions, timeoutMs: 30_000 });
  const store = new CacheStore(dir, config.maxSize, log, {
    evicted: (_entry, reason) => cacheMetrics.evictions.inc({ reason }),
    corrupt: () => cacheMetrics.corrupt.inc(),
    upstreamBytes: (n) => cacheMetrics.bytesUpstream.inc(n),
  });
  await store.open();
  // Entries kept from before are served only after their hash is checked again.
  void store.verifyAll().catch((error: Error) => log.error({ err: error }, 'verifying cache entries failed'));
  setGaugeSource(() => ({ size: store.used(), entries: store.list().entries.length, maxSize: config.maxSize }));
  const queue = new PrefetchQueue(store, upstream, log);

  const onEvent = async (type: string, imageId: string, data: Record<string, unknown>) => {
    cacheMetrics.events.inc({ type });
    upstream.forget(imageId);
    const status = typeof data.status === 'string' ? data.status : null;
    if (DROPPING.has(type) || (status !== null && status !== 'active')) {
      await store.drop(imageId, type.replace(/^image\./, ''));
      return;
    }
    const hash = typeof data.os_hash_value === 'string' ? data.os_hash_value : null;
    const entry = store.list().entries.find((e) => e.imageId === imageId);
    if (hash && entry && entry.hash !== hash) await store.drop(imageId, 'replaced');
  };

  let webhookSecret: string | null = null;
  const app = await buildCacheApp({ log, store, upstream, queue, adminToken, upstreamToken: config.upstreamToken, webhookSecret: () => webhookSecret, onEvent, publicUrl: config.publicUrl });
  await app.listen({ host: pir.host, port: pir.port });
  const address = app.server.address() as { address: string; port: number };
  const url = `http://${address.address.includes(':') ? `[${address.address}]` : address.address}:${address.port}`;
  const metricsServer = pir.metricsPort === null ? null : await startMetricsServer(pir.host, pir.metricsPort, [], cacheRegistry);

  let stopEvents: (() => Promise<void>) | null = null;
  let stopped = false;
  let retryTimer: NodeJS.Timeout | null = null;
  if (config.events === 'kafka') {
    const nodeId = await nodeIdOf(dir);
    stopEvents = await followKafka(pir.kafkaBrokers!, pir.kafkaTopic, `pir-cache-${nodeId}`, log, onEvent);
  } else if (config.events === 'webhook') {
    if (!config.upstreamToken) throw new Error('webhook events need an upstream admin token: set PIR_CACHE_UPSTREAM_TOKEN (or PIR_ADMIN_TOKEN)');
    const callback = `${config.publicUrl}${WEBHOOK_PATH}`;
    const token = config.upstreamToken;
    // An upstream not reachable yet (hosts often start before it) is retried in the background;
    // meanwhile every request is still checked against the upstream.
    const register = async (delayMs: number): Promise<void> => {
      try {
        webhookSecret = await registerWebhook(upstream, token, callback, join(dir, 'webhook.json'), log);
      } catch (error) {
        if (stopped) return;
        log.error({ err: (error as Error).message, retry_in_ms: delayMs }, 'could not register the cache\'s webhook upstream; retrying');
        retryTimer = setTimeout(() => void register(Math.min(delayMs * 2, 60_000)), delayMs);
      }
    };
    await register(1000);
  } else {
    log.warn('cache follows no image events (PIR_CACHE_EVENTS=off): entries are checked against the upstream on each request only');
  }
  log.info({ url, upstream: config.upstream, max_size: config.maxSize, events: config.events }, 'PIR started');

  return {
    url,
    async stop() {
      stopped = true;
      if (retryTimer) clearTimeout(retryTimer);
      queue.stop();
      await app.close();
      await metricsServer?.close();
      await stopEvents?.();
      await store.flush();
    },
  };
}

/** A stable id per cache data dir: names this node's Kafka consumer group across restarts. */
async function nodeIdOf(dir: string): Promise<string> {
  const path = join(dir, 'node-id');
  const existing = await readFile(path, 'utf8').then((t) => t.trim(), () => '');
  if (/^[a-f0-9]{16}$/.test(existing)) return existing;
  const id = createHash('sha256').update(randomBytes(32)).digest('hex').slice(0, 16);
  await writeFile(path, `${id}\n`);
  return id;
}
