/**
 * Composition root: picks the adapter set (embedded or distributed) from the config, and starts
 * the roles a process runs (api, worker, or both). Same pipeline code in both modes.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp } from '../api/app.js';
import { LiveEvents } from '../core/live-events.js';
import { FaultHooks } from '../core/fault-hooks.js';
import { ImageService } from '../core/image-service.js';
import { setDeactivatePolicy } from '../core/policy.js';
import { Manifest } from '../core/manifest.js';
import { OutboxRelay } from '../core/outbox-relay.js';
import { Quotas, UNLIMITED } from '../core/quota.js';
import type { EventBus, JobQueue, ManifestStore } from '../core/ports.js';
import { HashPool } from '../ingest/hashing/index.js';
import { WebDownloads } from '../ingest/web-download.js';
import { KeystoneCatalog } from '../ingest/glance-download.js';
import { LocationRegistrations, REGISTER_LOCATION_KIND } from '../ingest/register-location.js';
import { STAGES } from '../schemas/image.js';
import { startDispatcher } from '../workers/dispatcher.js';
import { startQuotaSettler } from '../workers/quota-settler.js';
import { StageRunner } from '../workers/stage-runner.js';
import { pipelineStages } from '../workers/stages/index.js';
import { Sweepers } from '../workers/sweepers.js';
import { resolveAdminToken } from './admin-token.js';
import { distributedUrls, webDownloadEgress, type PirConfig } from './config.js';
import { openDistributedAdapters } from './distributed-adapters.js';
import { EgressClient } from './egress/egress-client.js';
import { openEmbeddedAdapters } from './embedded-adapters.js';
import { openAuthenticator } from './identity/index.js';
import { openQuotaStore } from './quota-store.js';
import { openBlobStore } from './storage/open-blob-store.js';
import { removeDeadProcessCopies } from './storage/local-copies.js';
import { startMetricsServer, type MetricsServer } from './telemetry/metrics-server.js';
import { setMetricSources } from './telemetry/metrics.js';
import { readinessChecks } from './telemetry/readiness.js';
import { openProcessRegistry } from './telemetry/process-registry.js';
import { openWebhooks } from './webhooks.js';
import { openCatalog } from './catalog.js';
import { openMetadefs } from './metadefs.js';
import { StartupWait } from './startup-wait.js';
import { lockDataDir, prepareDataDir, type DataDirLock } from './data-dir.js';
import { openTusLeases } from './tus-leases.js';
import { checkJobKinds } from '../core/jobs.js';
import { COPY_IMAGE_KIND, StoreOperations } from '../core/store-operations.js';

export interface Adapters {
  mode: 'embedded' | 'distributed';
  store: ManifestStore;
  bus: EventBus;
  queue: JobQueue;
  /** Distributed mode: how far PIR's consumer groups trail the event topic. */
  consumerLag?: () => Promise<{ group: string; lag: number }[]>;
  close(): Promise<void>;
}

export interface Roles {
  api: boolean;
  worker: boolean;
}

export interface RunningPir {
  mode: Adapters['mode'];
  app: FastifyInstance | null;
  url: string | null;
  /** PIR_METRICS_PORT's server, when set. */
  metricsUrl: string | null;
  /** Null with Keystone: then only Keystone tokens are accepted. */
  adminToken: string | null;
  stop(): Promise<void>;
}

const SHUTDOWN_GRACE_MS = 30_000;
/** Events after which an image is no longer in flight (what upload waiters wait for). */
const OUTBOX_SWEEP_MS = 5_000;
const OUTBOX_GRACE_MS = 5_000;
/** Below OUTBOX_GRACE_MS, so the sweeper does not republish what is only waiting for its ack. */
const DISTRIBUTED_ACK_DELAY_MS = 1_500;
/** While the pipeline runs, its next stage write usually comes first and drops the events itself. */
const DISTRIBUTED_IN_FLIGHT_ACK_DELAY_MS = 4_000;
const STALE_SWEEP_MS = 10_000;
/** copy-image jobs a worker runs at once (each streams a whole image between stores). */
const COPY_CONCURRENCY = 2;
/** register-location jobs a worker runs at once (each reads a whole object once for its digests). */
const REGISTER_CONCURRENCY = 4;

type AdminToken = Awaited<ReturnType<typeof resolveAdminToken>>;

export async function startPir(config: PirConfig, roles: Roles, log: Logger): Promise<RunningPir> {
  await prepareDataDir(config.dataDir);
  // Embedded mode's SQLite files and staging are one process's; distributed processes may share
  // a directory (a filesystem store on one machine).
  const lock = distributedUrls(config) ? null : await lockDataDir(config.dataDir);
  try {
    // Identity first: a bad tokens file stops start-up before anything else is opened.
    const token = config.keystone ? null : await resolveAdminToken(config.adminToken, config.dataDir);
    try {
      return await start(config, roles, log, token, lock);
    } catch (error) {
      // Generated on this start, the token is in no one's hands yet: a start that fails (its port
      // taken, a service down) shows it now, as the next start will not (the file keeps it).
      if (token?.generated) showAdminToken(token);
      throw error;
    }
  } catch (error) {
    await lock?.release();
    throw error;
  }
}

function showAdminToken(token: AdminToken): void {
  process.stdout.write(`PIR admin token (shown once; also in ${token.path}): ${token.token}\n`);
}

async function start(config: PirConfig, roles: Roles, log: Logger, token: AdminToken | null, lock: DataDirLock | null): Promise<RunningPir> {
  const authenticator = roles.api ? await openAuthenticator(config, token?.token ?? null, log) : null;
  setDeactivatePolicy(config.deactivatePolicy);
  const urls = distributedUrls(config);
  // Distributed: the services may still be starting (or this process started beside them).
  const startup = new StartupWait(config.startupWaitSeconds, log);
  // The data directory holds more than image bytes (the embedded manifest, the process registry):
  // it must exist whichever store keeps the images.
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const hashes = HashPool.shared();
  const store = await openBlobStore(config, hashes, startup);
  const blobs = store.blobs;
  // What a killed process of this host left in $TMPDIR (a local copy of an image mid-unpack).
  void removeDeadProcessCopies(log).catch((error: unknown) => log.warn({ err: error }, 'could not look for local copies left behind'));
  const retry = { attempts: config.stageAttempts, backoffMs: config.stageBackoffMs };
  const adapters = urls
    ? await openDistributedAdapters(urls, config, retry, log, startup)
    : await openEmbeddedAdapters(join(config.dataDir, 'manifest.sqlite'), retry, log);
  // A separate acknowledgement costs a whole compare-and-set on the MongoDB-wire server: wait
  // longer there, so that the image's next write (usually the next stage's) drops the events.
  const relay = new OutboxRelay(adapters.store, adapters.bus, log, ...(adapters.mode === 'distributed' ? [DISTRIBUTED_ACK_DELAY_MS, DISTRIBUTED_IN_FLIGHT_ACK_DELAY_MS] : []));
  const manifest = new Manifest(adapters.store, relay, new FaultHooks(config.testFaults));
  const images = new ImageService(manifest, blobs, { stageDeadlineSeconds: config.stageDeadlineSeconds, stores: store.stores });
  const storeOps = new StoreOperations(manifest, store.stores, adapters.queue, log);
  const sweepers = new Sweepers(manifest, images, relay, blobs, {
    stageDeadlineSeconds: config.stageDeadlineSeconds,
    uploadStallSeconds: config.uploadStallSeconds,
    maxResumes: 3,
    outboxGraceMs: OUTBOX_GRACE_MS,
    multipartMaxAgeMs: config.multipartAbortAfterSeconds * 1000,
  }, log);
  const quotaStore = config.quotas ? await openQuotaStore(config.dataDir, urls, startup) : null;
  const quotas = new Quotas(quotaStore, config.quotas ?? { default: UNLIMITED, projects: {} });

  if (adapters.mode === 'embedded') await sweepers.recoverAfterRestart();
  const health = readinessChecks(adapters, config, store.checks, authenticator?.ready?.bind(authenticator));
  const processes = openProcessRegistry(roles.api && roles.worker ? 'serve' : roles.api ? 'api' : 'worker', { dataDir: config.dataDir, redisUrl: urls?.redisUrl ?? null, redisPrefix: config.redisPrefix });
  await processes.start();
  setMetricSources({ store: adapters.store, queue: adapters.queue, ...(adapters.consumerLag ? { consumerLag: adapters.consumerLag } : {}), log });
  const webhooks = await openWebhooks(config, urls, adapters.queue, manifest, log, startup);
  const catalog = await openCatalog(config, urls, images, { relay, log, startup });
  checkJobKinds([...webhooks.kinds, COPY_IMAGE_KIND, REGISTER_LOCATION_KIND], STAGES);
  const upload = { maxImageSize: config.maxImageSize, heartbeatMs: Math.max(1000, (config.uploadStallSeconds * 1000) / 4), idleMs: config.uploadIdleSeconds * 1000, settleWaitMs: config.uploadSettleWaitSeconds * 1000 };
  const egress = new EgressClient(config.egress);
  // Registrations are durable jobs: the api enqueues them, any worker reads the location.
  const locations = new LocationRegistrations({ images, reader: store.locations, egress, settings: config.locations, upload, log, queue: adapters.queue });

  if (roles.worker) {
    const runner = new StageRunner(manifest, blobs, pipelineStages(blobs,
      { maxOutputBytes: config.maxUnpackedSize, maxRatio: config.maxExpansionRatio, ratioFloorBytes: config.unpackRatioFloor },
      { maxVirtualSize: config.maxVirtualSize, allowEncrypted: config.allowEncryptedImages },
      store.stores,
    ), { stageDeadlineSeconds: config.stageDeadlineSeconds }, log);
    for (const stage of STAGES) await adapters.queue.process(stage, config.concurrency[stage], runner.handle);
    adapters.queue.onStageJobStalledOut?.((job) => {
      sweepers.resumeStalledOut(job).catch((error: unknown) => log.warn({ err: error, image_id: job.imageId }, 'could not resume an import whose job stalled out; the stage deadline will'));
    });
    await startDispatcher(adapters.bus, manifest, adapters.queue, log, {
      fusedStagesMaxSize: config.fusedStagesMaxSize,
      continueImport: store.stores.multi ? (id, eventId) => storeOps.continueImport(id, eventId) : null,
    });
    if (quotas.enabled) await startQuotaSettler(adapters.bus, manifest, quotas, log);
    await webhooks.startWorker(adapters.bus, catalog.grantsOf);
    if (store.stores.multi) await adapters.queue.work(COPY_IMAGE_KIND, COPY_CONCURRENCY, storeOps.handle, storeOps.abandoned);
    await adapters.queue.work(REGISTER_LOCATION_KIND, REGISTER_CONCURRENCY, locations.handle);
  }
  // The relay publishes every write at once; the sweepers only catch what a crash or a failed
  // publish left behind, and their queries scan the collection on FerretDB, so only workers (or
  // the single embedded process) run them: any process can publish any image's leftover events,
  // and an api sweeping too only added scans (measured on an idle catalog, docs/benchmarks.md).
  if (roles.worker) sweepers.start(OUTBOX_SWEEP_MS, STALE_SWEEP_MS, config.storeSweepSeconds * 1000);

  let app: FastifyInstance | null = null;
  let url: string | null = null;
  let webDownloads: WebDownloads | null = null;
  let stopWatching: () => Promise<void> = async () => {};
  // Only the API reads and writes metadata definitions.
  const metadefs = roles.api ? await openMetadefs(config, urls, startup) : null;
  const tus = roles.api ? openTusLeases(urls?.redisUrl ?? null, config.redisPrefix) : null;
  if (roles.api) {
    // Wake upload requests waiting for their image as soon as a worker's event says it settled.
    // The same watcher feeds the console's live event streams (GET /v2/events).
    const live = new LiveEvents((id) => manifest.get(id), catalog.grantsOf);
    stopWatching = await adapters.bus.watch(async (e) => {
      manifest.signalFromBus(e);
      live.publish(e);
    });
    // glance-download finds other regions' Glance in the Keystone catalog: offered only behind Keystone.
    const glance = config.keystone ? { endpoints: new KeystoneCatalog(config.keystone), properties: config.glanceDownloadProperties } : null;
    webDownloads = new WebDownloads({ images, quotas, blobs, hashes, upload, egress: new EgressClient(webDownloadEgress(config)), log, glance });
    app = await buildApp({ images, manifest, blobs, hashes, log, authenticator: authenticator!, upload, quotas, webDownloads, locations, publicUrl: config.publicUrl, health, tusExpirySeconds: config.tusExpirySeconds,
      ops: { store: adapters.store, queue: adapters.queue, registry: processes, traceUiUrl: config.traceUiUrl }, webhooks: webhooks.service, catalog: catalog.service, metadefs: metadefs!.service,
      live, eventStreamsPerUser: config.eventStreamsPerUser, keystone: config.keystone, storeOps, ...(tus ? { tusLeases: tus.leases } : {}) });
    url = await app.listen({ host: config.host, port: config.port });
  }
  const metricsServer: MetricsServer | null = config.metricsPort !== null ? await startMetricsServer(config.host, config.metricsPort, health) : null;
  if (token?.generated) showAdminToken(token);
  log.info({ mode: adapters.mode, roles, url, metrics_url: metricsServer?.url ?? null, data_dir: config.dataDir, blob_store: blobs.kind, stores: store.stores.ids, default_store: store.stores.defaultId }, 'PIR started');

  let stopping: Promise<void> | null = null;
  const stop = () => {
    stopping ??= (async () => {
      log.info('stopping: no new work; finishing what is running');
      const deadline = Date.now() + SHUTDOWN_GRACE_MS;
      // The requests first, with the queue still taking jobs: an upload whose last byte came in
      // is answered once its image settles, which in `serve` the workers of this process do.
      const drained = async () => {
        if (!app || (await withTimeout(app.close(), SHUTDOWN_GRACE_MS))) return;
        // Their clients see the connection close: say so where an operator looks.
        log.warn({ grace_ms: SHUTDOWN_GRACE_MS }, 'stopping: requests still in flight after the grace (downloads, uploads) were cut off');
      };
      await Promise.all([drained(), webDownloads?.close(), locations.close(), metricsServer?.close()]);
      await adapters.queue.close(Math.max(1_000, deadline - Date.now()));
      setMetricSources(null);
      await processes.stop();
      await stopWatching();
      await tus?.close();
      await sweepers.stop();
      await relay.drain();
      await adapters.close();
      await webhooks.close();
      await catalog.close();
      await metadefs?.close();
      await quotaStore?.close();
      store.close();
      await hashes.close();
      await authenticator?.close();
      await lock?.release();
      log.info('stopped');
    })();
    return stopping;
  };
  return { mode: adapters.mode, app, url, metricsUrl: metricsServer?.url ?? null, adminToken: token?.token ?? null, stop };
}

/** Whether `promise` settled within `ms`. */
async function withTimeout(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([promise.then(() => true), new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), ms); })]);
  clearTimeout(timer);
  return settled;
}
