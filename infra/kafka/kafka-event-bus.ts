/**
 * EventBus on Kafka (kafkajs): one topic, key = image id, so each image's events stay in one
 * partition and in order.
 *
 * - start() makes sure the topic exists (createTopics; an existing topic is fine).
 * - publish(): one send with acks=all on an idempotent producer; it resolves once every
 *   in-sync replica has the batch. Publishes made while a send is in flight leave together as
 *   the next send (send-batcher.ts).
 * - subscribe(group): one consumer per call (members of one group split the partitions),
 *   reading from the beginning when the group has no committed offset. eachMessage awaits the
 *   handler; only then is the offset resolved, and committed at the next tick of the group's
 *   OffsetCommitter (every commitIntervalMs, on a rebalance and on close). A handler that
 *   throws gets the same message again after a backoff (100 ms doubling, capped at 5 s), in the
 *   consumer, heartbeating meanwhile: the offset never moves past an unhandled event, other
 *   partitions keep flowing, and a poison message never crashes the consumer (it is logged,
 *   louder after `loudAfterFailures`). A rebalance while retrying hands the message to the
 *   partition's new owner. Undecodable messages (not JSON, not a PirEvent) can never succeed:
 *   logged and skipped.
 * - kafkajs's own logs go to the given pino logger at WARN and above; rebalance chatter that
 *   kafkajs reports as errors is downgraded to info.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Kafka, Partitioners, logLevel as KafkaLogLevel } from 'kafkajs';
import type { Admin, Consumer, LogEntry, Message, Producer, IHeaders } from 'kafkajs';
import pino from 'pino';
import type { Logger } from 'pino';
import { isPirEvent } from '../../schemas/events.js';
import type { PirEvent } from '../../schemas/events.js';
import type { EventBus, EventHandler } from '../../core/ports.js';
import { REBALANCE_CHATTER } from './chatter.js';
import { OffsetCommitter } from './offset-committer.js';
import { SendBatcher } from './send-batcher.js';

const DEFAULT_TOPIC = 'pir.image-events';
const HANDLER_HEARTBEAT_MS = 120_000;
/** On close, how long the handlers running are awaited before the last commit. */
const CLOSE_DRAIN_MS = 5_000;
/** One send's bounds: far under the broker's default of 1 MB per record batch (an event is ~1 KB). */
const SEND_LIMITS = { maxMessages: 200, maxBytes: 256 * 1024 };

/**
 * Kafka consumer groups are cluster-wide, not per topic: two PIRs (or test runs) on one cluster
 * with different topics but the same group name would be handed each other's partitions, and
 * neither would read its own. So a group is qualified by its topic, except on the default topic,
 * where the bare name is kept so existing deployments keep their committed offsets.
 */
export function groupIdFor(group: string, topic: string): string {
  return topic === DEFAULT_TOPIC ? group : `${group}.${topic}`;
}

export interface KafkaEventBusOptions {
  brokers: string[];
  /** Default 'pir.image-events'. */
  topic?: string;
  clientId?: string;
  /** Partitions when this bus creates the topic (default 6). */
  partitions?: number;
  /** Replication factor when this bus creates the topic (default: the broker's default). */
  replicationFactor?: number;
  /** Consumer session timeout (default 10 000 ms): how soon a dead member's partitions move. */
  sessionTimeoutMs?: number;
  /** Default 500 ms: also how soon a member learns of a rebalance. */
  heartbeatIntervalMs?: number;
  /** How long the broker waits for members to rejoin a rebalance (default 10 000 ms). */
  rebalanceTimeoutMs?: number;
  /** Longest a fetch waits for data on an idle partition (default 100 ms). */
  maxWaitTimeMs?: number;
  /**
   * How often a durable subscription commits the offsets it handled (default 1000 ms; see
   * offset-committer.ts): also the most a crash or rebalance hands out again.
   */
  commitIntervalMs?: number;
  /** Idempotent producer (default true). */
  idempotent?: boolean;
  /** First redelivery delay after a handler throws (default 100 ms), doubling, capped at retryMaxMs. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** After this many failures of one message, each further failure is logged as an error (default 10). */
  loudAfterFailures?: number;
  logger?: Logger;
}

class BusClosingError extends Error {
  constructor() {
    super('event bus closing: message left uncommitted, it will be delivered again');
    this.name = 'BusClosingError';
  }
}

/** Expected with a bounded retry count: publish fails (and the outbox keeps the events) instead of hanging. */
const EXPECTED_WARNINGS = /Limiting retries for the idempotent producer/;

function kafkaLogCreator(logger: Logger) {
  return (_level: KafkaLogLevel) => (entry: LogEntry) => {
    const { message, timestamp: _ts, logger: _l, ...extra } = entry.log;
    void _ts; void _l;
    const fields = { kafka_ns: entry.namespace, ...extra };
    const msg = `kafkajs: ${message}`;
    const error = String((extra as { error?: unknown }).error ?? '');
    const chatter = EXPECTED_WARNINGS.test(message) || REBALANCE_CHATTER.test(message) || REBALANCE_CHATTER.test(error) || error.includes('BusClosingError');
    switch (entry.level) {
      case KafkaLogLevel.ERROR:
      case KafkaLogLevel.NOTHING:
        if (chatter) logger.info(fields, msg);
        else logger.error(fields, msg);
        break;
      case KafkaLogLevel.WARN:
        if (chatter) logger.info(fields, msg);
        else logger.warn(fields, msg);
        break;
      case KafkaLogLevel.INFO:
        logger.info(fields, msg);
        break;
      default:
        logger.debug(fields, msg);
    }
  };
}

export class KafkaEventBus implements EventBus {
  readonly topic: string;
  private readonly kafka: Kafka;
  /** For ping(): one attempt, no log of its own (its callers say what failed). */
  private readonly probe: Kafka;
  private readonly logger: Logger;
  private readonly consumers = new Set<Consumer>();
  /** The durable subscriptions' offset committers (watchers commit nothing). */
  private readonly committers = new Map<Consumer, OffsetCommitter>();
  private readonly producer: Producer;
  private readonly admin: Admin;
  /** Concurrent publishes leave together, as one Produce request (send-batcher.ts). */
  private readonly sends: SendBatcher<Message>;
  private readonly o: Required<Omit<KafkaEventBusOptions, 'logger' | 'replicationFactor' | 'clientId' | 'topic'>> & { replicationFactor?: number };
  private started: Promise<void> | null = null;
  private closing = false;
  /** Wakes backoff sleeps when the bus closes. */
  private readonly sleepers = new Set<() => void>();

  constructor(opts: KafkaEventBusOptions) {
    this.topic = opts.topic ?? 'pir.image-events';
    this.logger = opts.logger ?? pino({ name: 'pir-kafka-bus', level: 'warn' });
    this.o = {
      brokers: opts.brokers,
      partitions: opts.partitions ?? 6,
      sessionTimeoutMs: opts.sessionTimeoutMs ?? 10_000,
      heartbeatIntervalMs: opts.heartbeatIntervalMs ?? 500,
      rebalanceTimeoutMs: opts.rebalanceTimeoutMs ?? 10_000,
      maxWaitTimeMs: opts.maxWaitTimeMs ?? 100,
      commitIntervalMs: opts.commitIntervalMs ?? 1000,
      idempotent: opts.idempotent ?? true,
      retryBaseMs: opts.retryBaseMs ?? 100,
      retryMaxMs: opts.retryMaxMs ?? 5000,
      loudAfterFailures: opts.loudAfterFailures ?? 10,
      ...(opts.replicationFactor !== undefined ? { replicationFactor: opts.replicationFactor } : {}),
    };
    this.kafka = new Kafka({
      clientId: opts.clientId ?? 'pir',
      brokers: opts.brokers,
      logLevel: KafkaLogLevel.WARN,
      logCreator: kafkaLogCreator(this.logger),
      connectionTimeout: 3000,
      retry: { initialRetryTime: 100, maxRetryTime: 5000, retries: 8 },
    });
    // The client above retries a broker's connection ~15 s (8 times) inside every call, its
    // admin's own retry setting notwithstanding: a readiness check or a start-up that may wait
    // only a few seconds needs one attempt.
    this.probe = new Kafka({ clientId: opts.clientId ?? 'pir', brokers: opts.brokers, logLevel: KafkaLogLevel.NOTHING, connectionTimeout: 3000, retry: { retries: 0 } });
    this.producer = this.kafka.producer({
      idempotent: this.o.idempotent,
      ...(this.o.idempotent ? { maxInFlightRequests: 1 } : {}),
      allowAutoTopicCreation: false,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    this.admin = this.kafka.admin();
    this.sends = new SendBatcher<Message>(
      async (messages) => { await this.producer.send({ topic: this.topic, acks: -1, messages }); },
      (m) => Buffer.byteLength(m.value as string),
      SEND_LIMITS,
    );
  }

  /** Creates the topic if needed and connects the producer; publish/subscribe call it. */
  async start(): Promise<void> {
    if (this.closing) throw new Error('event bus is closed');
    if (!this.started) {
      this.started = (async () => {
        await this.admin.connect();
        try {
          // Asked first: kafkajs logs a CreateTopics answer of TOPIC_ALREADY_EXISTS at error
          // level on every start after the first, before it reaches the check below.
          const exists = (await this.admin.listTopics()).includes(this.topic);
          if (!exists) {
            await this.admin.createTopics({
              waitForLeaders: true,
              topics: [{
                topic: this.topic,
                numPartitions: this.o.partitions,
                ...(this.o.replicationFactor !== undefined ? { replicationFactor: this.o.replicationFactor } : {}),
              }],
            });
          }
        } catch (err) {
          if ((err as { type?: string }).type !== 'TOPIC_ALREADY_EXISTS') throw err;
        } finally {
          await this.admin.disconnect(); // only needed once
        }
        await this.producer.connect();
      })();
      this.started.catch(() => { this.started = null; });
    }
    return this.started;
  }

  async publish(events: PirEvent[]): Promise<void> {
    if (events.length === 0) return;
    await this.start();
    await this.sends.publish(events.map((e) => {
      const headers: IHeaders = {};
      if (e.traceparent) headers.traceparent = e.traceparent;
      return { key: e.image_id, value: JSON.stringify(e), headers };
    }));
  }

  async subscribe(group: string, handler: EventHandler): Promise<void> {
    await this.consume(group, handler, { fromBeginning: true, commit: true });
  }

  /**
   * A consumer of its own (a group per process), from the newest offset on, committing nothing:
   * the broker forgets the group once it leaves.
   */
  async watch(handler: EventHandler): Promise<() => Promise<void>> {
    const group = `pir-watch-${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
    // "Latest" is resolved lazily at the first fetch, after events published meanwhile: start from
    // the high watermarks read now instead, so nothing published after watch() returns is missed.
    await this.start();
    const admin = this.kafka.admin();
    await admin.connect();
    const highWatermarks = await admin.fetchTopicOffsets(this.topic).finally(() => admin.disconnect());
    const consumer = await this.consume(group, async (event) => {
      await handler(event).catch((err: unknown) => this.logger.debug({ err, group }, 'watcher failed; ignored'));
    }, { fromBeginning: false, commit: false });
    for (const { partition, high } of highWatermarks) consumer.seek({ topic: this.topic, partition, offset: high });
    return async () => {
      this.consumers.delete(consumer);
      await consumer.disconnect().catch(() => undefined);
    };
  }

  /** Replaces a consumer kafkajs gave up on, retrying with backoff until it runs or the bus closes. */
  private async startAgain(dead: Consumer, group: string, handler: EventHandler, options: { fromBeginning: boolean; commit: boolean }): Promise<void> {
    this.consumers.delete(dead);
    await this.forgetCommitter(dead);
    await dead.disconnect().catch(() => undefined);
    for (let attempt = 0; !this.closing; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** attempt, 5000)));
      if (this.closing) return;
      try {
        await this.consume(group, handler, options);
        this.logger.warn({ group, attempt }, 'kafka consumer started again after a crash');
        return;
      } catch (err) {
        this.logger.warn({ err, group, attempt }, 'kafka consumer could not start again yet; retrying');
      }
    }
  }

  private async consume(group: string, handler: EventHandler, options: { fromBeginning: boolean; commit: boolean }): Promise<Consumer> {
    await this.start();
    const consumer = this.kafka.consumer({
      groupId: groupIdFor(group, this.topic),
      sessionTimeout: this.o.sessionTimeoutMs,
      heartbeatInterval: this.o.heartbeatIntervalMs,
      rebalanceTimeout: this.o.rebalanceTimeoutMs,
      maxWaitTimeInMs: this.o.maxWaitTimeMs,
      allowAutoTopicCreation: false,
      retry: { initialRetryTime: 100, maxRetryTime: 5000, retries: 8, restartOnFailure: async () => !this.closing },
    });
    this.consumers.add(consumer);
    // A durable subscription commits on a timer (offset-committer.ts), not after every batch.
    const committer = options.commit ? new OffsetCommitter(consumer, this.topic, this.o.commitIntervalMs, this.logger, group) : null;
    if (committer) {
      this.committers.set(consumer, committer);
      consumer.on(consumer.events.REBALANCING, () => void committer.commit());
      consumer.on(consumer.events.GROUP_JOIN, (e) => committer.retain(e.payload.memberAssignment[this.topic] ?? []));
    }
    let joined!: () => void;
    const joinedP = new Promise<void>((resolve) => { joined = resolve; });
    const offJoin = consumer.on(consumer.events.GROUP_JOIN, () => joined());
    consumer.on(consumer.events.CRASH, (e) => {
      if (this.closing) this.logger.debug({ err: e.payload.error, group }, 'kafka consumer stopped while closing');
      else this.logger.error({ err: e.payload.error, group, restart: e.payload.restart }, 'kafka consumer crashed');
      // kafkajs restarts a consumer only after a retriable error; a non-retriable one (no group
      // coordinator yet while a restarted broker comes back) would end this group's work here
      // for good. A durable subscription starts again with a new consumer (watchers are best effort).
      if (!e.payload.restart && !this.closing && options.commit) void this.startAgain(consumer, group, handler, options);
    });
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [this.topic], fromBeginning: options.fromBeginning });
      await consumer.run({
        autoCommit: false,
        partitionsConsumedConcurrently: this.o.partitions,
        eachMessage: async ({ partition, message, heartbeat }) => {
          const raw = message.value?.toString('utf8') ?? '';
          let event: unknown;
          try {
            event = JSON.parse(raw);
          } catch {
            event = undefined;
          }
          const work = async () => {
            if (!isPirEvent(event)) {
              this.logger.error({ group, topic: this.topic, partition, offset: message.offset, value: raw.slice(0, 200) }, 'undecodable message on the event topic; skipped');
              return;
            }
            await this.deliver(group, handler, event, heartbeat, partition, message.offset);
          };
          await (committer ? committer.handle(partition, message.offset, work) : work());
        },
      });
      // run() returns once the member joined; wait for the join event too in case it crashed first.
      let timer: NodeJS.Timeout | undefined;
      const ok = await Promise.race([
        joinedP.then(() => true),
        new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), this.o.sessionTimeoutMs * 3); }),
      ]);
      clearTimeout(timer);
      if (!ok) this.logger.warn({ group }, 'kafka consumer has not joined its group yet; it keeps trying');
      committer?.start();
      return consumer;
    } catch (err) {
      this.consumers.delete(consumer);
      await this.forgetCommitter(consumer);
      await consumer.disconnect().catch(() => undefined);
      throw err;
    } finally {
      offJoin();
    }
  }

  /** Asks the cluster for its brokers on a short-lived admin connection, once. */
  async ping(): Promise<void> {
    const admin = this.probe.admin({ retry: { retries: 0 } });
    try {
      await admin.connect();
      await admin.describeCluster();
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  }

  /**
   * How many events each consumer group has yet to read: the topic's high watermarks minus the
   * group's committed offsets, summed over partitions (a partition never committed counts whole).
   */
  async consumerLag(groups: string[]): Promise<{ group: string; lag: number }[]> {
    const admin = this.kafka.admin({ retry: { retries: 0 } });
    try {
      await admin.connect();
      const high = await admin.fetchTopicOffsets(this.topic);
      return await Promise.all(groups.map(async (group) => {
        const [committed] = await admin.fetchOffsets({ groupId: groupIdFor(group, this.topic), topics: [this.topic] });
        let lag = 0;
        for (const { partition, high: end, low } of high) {
          const c = committed?.partitions.find((p) => p.partition === partition)?.offset ?? '-1';
          const from = Number(c) >= 0 ? Number(c) : Number(low);
          lag += Math.max(0, Number(end) - from);
        }
        return { group, lag };
      }));
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const wake of this.sleepers) wake();
    const consumers = [...this.consumers];
    this.consumers.clear();
    // No handler starts once closing; those running finish, and what they handled is committed
    // while each consumer is still in its group.
    await Promise.allSettled(consumers.map((c) => this.forgetCommitter(c)));
    await Promise.allSettled(consumers.map((c) => c.disconnect()));
    await Promise.allSettled([this.producer.disconnect(), this.admin.disconnect()]);
  }

  private async forgetCommitter(consumer: Consumer): Promise<void> {
    const committer = this.committers.get(consumer);
    this.committers.delete(consumer);
    await committer?.stop(CLOSE_DRAIN_MS);
  }

  private async deliver(group: string, handler: EventHandler, event: PirEvent, heartbeat: () => Promise<void>, partition: number, offset: string): Promise<void> {
    for (let failures = 0; ; ) {
      if (this.closing) throw new BusClosingError();
      // A long handler (a webhook fan-out to many subscriptions) keeps the member alive: kafkajs
      // heartbeats only between messages, and a session that lapses mid-handler costs a rebalance.
      // Only for HANDLER_HEARTBEAT_MS: a handler stuck longer lets the session lapse, so the
      // partition moves to another member as before.
      const stopAt = Date.now() + HANDLER_HEARTBEAT_MS;
      const beat = setInterval(() => {
        if (Date.now() > stopAt) clearInterval(beat);
        else heartbeat().catch(() => undefined);
      }, this.o.heartbeatIntervalMs);
      try {
        await handler(event);
        return;
      } catch (err) {
        failures++;
        const delay = Math.min(this.o.retryBaseMs * 2 ** Math.min(failures - 1, 30), this.o.retryMaxMs);
        const fields = { err, group, partition, offset, image_id: event.image_id, event_id: event.id, event_type: event.type, failures, retry_in_ms: delay };
        if (failures >= this.o.loudAfterFailures) this.logger.error(fields, 'event handler keeps failing; redelivering (this partition waits)');
        else this.logger.warn(fields, 'event handler failed; redelivering');
        await this.sleep(delay);
        // Throws on rebalance: kafkajs rejoins and the partition's new owner gets this message.
        await heartbeat();
      } finally {
        clearInterval(beat);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleepers.add(done);
    });
  }
}
