/**
 * Wiring of the webhooks extension: the store (SQLite beside the manifest, or MongoDB), the
 * secret key (PIR_WEBHOOK_SECRET_KEY, or one generated into <data dir>/webhook-secret-key like
 * the admin token, so processes sharing the data dir agree), the delivery job kind, and the
 * egress client deliveries go through (webhook timeouts; the operator's allow-list).
 */
import { imageView } from '../api/glance-view.js';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { fail } from '../core/error-catalog.js';
import type { JobKind } from '../core/jobs.js';
import type { Manifest } from '../core/manifest.js';
import type { EventBus, JobQueue } from '../core/ports.js';
import { WebhookDeliverer } from '../core/webhooks/deliver.js';
import { InProcessEndpointLimiter, type EndpointLimiter } from '../core/webhooks/endpoint-limiter.js';
import { RedisEndpointLimiter } from './bullmq/redis-endpoint-limiter.js';
import { WebhookFanout } from '../core/webhooks/fanout.js';
import type { GrantsOf } from '../core/event-audience.js';
import { WEBHOOK_FANOUT_KIND, webhookDeliveryKind, type DeliveryJob } from '../core/webhooks/jobs.js';
import type { WebhookStore } from '../core/webhooks/model.js';
import { SecretBox, parseSecretKey } from '../core/webhooks/secret-box.js';
import { WebhookService, type UrlCheck } from '../core/webhooks/service.js';
import type { DistributedUrls, PirConfig } from './config.js';
import { createFileOnce } from './create-file-once.js';
import { allowedByAddress } from './egress/address-policy.js';
import { EgressClient, EgressError } from './egress/egress-client.js';
import { SqliteWebhookStore } from './embedded/sqlite-webhook-store.js';
import { MongoWebhookStore } from './mongo/mongo-webhook-store.js';
import { repeatPaced, type PacedLoop } from './pacing.js';
import { MONGODB, type StartupWait } from './startup-wait.js';
import { StartupError } from './startup-error.js';

/**
 * Fan-out jobs at once per worker process. Each makes its event's first attempts concurrently
 * (within PIR_WEBHOOK_CONCURRENCY deliveries in flight), so a few suffice; slow endpoints are
 * sent through delivery jobs, so they do not hold these.
 */
const FANOUT_CONCURRENCY = 8;

export interface Webhooks {
  store: WebhookStore;
  kind: JobKind<DeliveryJob>;
  /** Every job kind the webhooks run (deliveries and fan-outs), for the start-up check. */
  kinds: JobKind<unknown>[];
  service: WebhookService;
  /** Worker role: fan-out in its own consumer group, and the delivery workers. */
  /** `grantsOf`: the galleries shared with a project, so deliveries follow gallery sharing. */
  startWorker(bus: EventBus, grantsOf?: GrantsOf): Promise<void>;
  close(): Promise<void>;
}

export async function resolveWebhookKey(configured: Buffer | null, dataDir: string): Promise<Buffer> {
  if (configured) return configured;
  const path = join(dataDir, 'webhook-secret-key');
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await createFileOnce(path, randomBytes(32).toString('base64') + '\n');
  try {
    return parseSecretKey(await readFile(path, 'utf8'));
  } catch (error) {
    throw new Error(`${path}: ${(error as Error).message}; set PIR_WEBHOOK_SECRET_KEY or restore the file (deleting it makes every stored webhook secret unreadable).`);
  }
}

/**
 * Distributed processes seal and open the same secrets, so they need one key. Each generated its
 * own into a private data directory (S3: nothing else shared): deliveries then failed on the
 * workers of other machines, silently. The first process records the key's fingerprint in the
 * database; one whose key differs stops at start, unless its key opens the stored secrets (the
 * key in use was changed on every process: the record follows it).
 */
export async function agreeOnSecretKey(store: MongoWebhookStore, box: SecretBox, source: string, log: Logger): Promise<void> {
  const mine = box.fingerprint();
  if ((await store.sharedKeyFingerprint(mine)) === mine) return;
  if (await opensStoredSecrets(store, box)) {
    await store.replaceKeyFingerprint(mine);
    log.warn({ source }, 'webhooks: this process\'s secret key opens the stored secrets; recorded as the key in use');
    return;
  }
  throw new StartupError(`the webhook secret key of this process (${source}) is not the one the other PIR processes on this database seal webhook secrets with, so it could not sign their deliveries; give every process the same key with PIR_WEBHOOK_SECRET_KEY (for instance the contents of the webhook-secret-key file of the data directory of the first process)`);
}

/** Whether `box` opens the secrets of stored subscriptions (a sample: one key seals them all). */
export async function opensStoredSecrets(store: WebhookStore, box: SecretBox): Promise<boolean> {
  const sample = await store.listSubscriptions(null, 20);
  return sample.some((sub) => sub.secrets.some((s) => box.opens(s.enc, sub.id)));
}

/** The API's check of a subscription URL: the egress rules, and https unless the allow-list names the destination. */
export function webhookUrlCheck(egress: EgressClient): UrlCheck {
  return (url) => {
    try {
      const checked = egress.check(url);
      const exempt = checked.allowedByName || (checked.literal && allowedByAddress(egress.settings.allowList, checked.host));
      if (checked.url.protocol !== 'https:' && !exempt) throw new EgressError('uri_refused', 'Webhook URLs must be https (an operator can allow an http destination with PIR_EGRESS_ALLOWLIST).');
    } catch (error) {
      if (error instanceof EgressError) throw fail('webhook_url_refused', error.message.replace('PIR does not download from it', 'PIR does not deliver to it'));
      throw error;
    }
  };
}

/** How often worker processes delete deliveries past their retention, and the share of the time it may take. */
const RETENTION_EVERY_MS = 60 * 60_000;
const RETENTION_SHARE = 0.02;
/** Deleted per call, and calls per pass at most (a pass that stops short is continued by the next). */
const RETENTION_BATCH = 1000;
const RETENTION_BATCHES_PER_PASS = 50;

/** One retention pass: ended deliveries created before the retention window, a batch at a time. */
export async function deleteOldDeliveries(store: WebhookStore, retentionMs: number, log: Logger, now = Date.now()): Promise<number> {
  const before = new Date(now - retentionMs).toISOString();
  let total = 0;
  for (let i = 0; i < RETENTION_BATCHES_PER_PASS; i++) {
    const n = await store.deleteEndedDeliveries(before, RETENTION_BATCH);
    total += n;
    if (n < RETENTION_BATCH) break;
  }
  if (total > 0) log.info({ deleted: total, created_before: before }, 'deleted webhook deliveries past their retention');
  return total;
}

export async function openWebhooks(config: PirConfig, urls: DistributedUrls | null, queue: JobQueue, manifest: Manifest, log: Logger, startup: StartupWait): Promise<Webhooks> {
  const settings = config.webhooks;
  const box = new SecretBox(await resolveWebhookKey(settings.secretKey, config.dataDir));
  let store: WebhookStore;
  if (urls) {
    const mongo = new MongoWebhookStore({ url: urls.mongodbUrl });
    await startup.until(MONGODB, () => mongo.start());
    await agreeOnSecretKey(mongo, box, settings.secretKey ? 'PIR_WEBHOOK_SECRET_KEY' : join(config.dataDir, 'webhook-secret-key'), log);
    store = mongo;
  } else {
    store = new SqliteWebhookStore({ path: join(config.dataDir, 'webhooks.sqlite') });
  }
  const kind = webhookDeliveryKind(settings.retrySchedule);
  const egress = new EgressClient({ ...config.egress, connectTimeoutMs: settings.connectTimeoutMs, idleTimeoutMs: settings.timeoutMs, totalTimeoutMs: settings.timeoutMs, purpose: 'webhook' });
  const service = new WebhookService(store, box, queue, kind, webhookUrlCheck(egress), settings.rotationGraceSeconds, settings.pingsPerMinute);
  const wlog = log.child({ component: 'webhooks' });
  let limiter: EndpointLimiter | null = null;
  let retention: PacedLoop | null = null;
  return {
    store,
    kind,
    kinds: [kind as JobKind<unknown>, WEBHOOK_FANOUT_KIND as JobKind<unknown>],
    service,
    async startWorker(bus, grantsOf) {
      // Distributed: the per-endpoint limit holds across every worker process.
      limiter = urls ? new RedisEndpointLimiter({ redisUrl: urls.redisUrl, prefix: config.redisPrefix }, wlog) : new InProcessEndpointLimiter();
      const deliverer = new WebhookDeliverer(store, box, egress, settings, wlog, limiter);
      await queue.work(kind, settings.concurrency, deliverer.handle, deliverer.abandoned);
      await new WebhookFanout(store, manifest, queue, kind, wlog, imageView, deliverer, grantsOf).start(bus, FANOUT_CONCURRENCY);
      retention = repeatPaced(() => deleteOldDeliveries(store, settings.deliveryRetentionMs, wlog), RETENTION_EVERY_MS, RETENTION_SHARE,
        (error) => wlog.warn({ err: error }, 'deleting old webhook deliveries failed; the next pass tries again'));
    },
    async close() {
      await retention?.stop();
      await limiter?.close();
      await store.close();
    },
  };
}
