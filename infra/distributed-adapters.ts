/** Distributed mode: manifest in MongoDB, events on Kafka, jobs in BullMQ on Redis. */
import { WEBHOOKS_GROUP } from '../core/webhooks/fanout.js';
import type { Logger } from 'pino';
import type { RetryPolicy } from '../core/ports.js';
import { BullmqJobQueue } from './bullmq/bullmq-job-queue.js';
import type { DistributedUrls, PirConfig } from './config.js';
import { KafkaEventBus } from './kafka/kafka-event-bus.js';
import { MongoManifestStore } from './mongo/mongo-manifest-store.js';
import { DISPATCHER_GROUP } from '../workers/dispatcher.js';
import { QUOTA_SETTLER_GROUP } from '../workers/quota-settler.js';
import type { Adapters } from './runtime.js';
import { KAFKA, MONGODB, type StartupWait } from './startup-wait.js';

export async function openDistributedAdapters(urls: DistributedUrls, config: PirConfig, retry: RetryPolicy, log: Logger, startup: StartupWait): Promise<Adapters> {
  const store = new MongoManifestStore({ url: urls.mongodbUrl }); // the database named in the URL, or "pir"
  await startup.until(MONGODB, () => store.start());
  const bus = new KafkaEventBus({ brokers: urls.kafkaBrokers, topic: config.kafkaTopic, clientId: `pir-${process.pid}`, logger: log });
  // One quick question first: kafkajs retries a refused broker for ~15 s on its own, which would
  // make every attempt outlast a short PIR_STARTUP_WAIT_SECONDS.
  await startup.until(KAFKA, () => bus.ping());
  await startup.until(KAFKA, () => bus.start());
  const queue = new BullmqJobQueue({ redisUrl: urls.redisUrl, prefix: config.redisPrefix, retry, logger: log });
  return {
    mode: 'distributed',
    store,
    bus,
    queue,
    // The groups this deployment runs (a group that never committed would count the whole topic).
    consumerLag: () => bus.consumerLag([DISPATCHER_GROUP, WEBHOOKS_GROUP, ...(config.quotas ? [QUOTA_SETTLER_GROUP] : [])]),
    async close() {
      await bus.close();
      await store.close();
    },
  };
}
