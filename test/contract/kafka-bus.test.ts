/** Kafka-specific behaviour of the event bus, beyond the shared contract. */
import { scriptArgs } from '../support/child-script.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import pino from 'pino';
import { KafkaEventBus } from '../../infra/kafka/kafka-event-bus.js';
import type { PirEvent } from '../../schemas/events.js';
import { requireServices, services, uniqueName } from '../support/services.js';
import { makeEvent, waitFor, within } from './helpers.js';

const quiet = pino({ level: 'silent' });
const brokers = [...services.kafkaBrokers];

async function deleteTopic(topic: string): Promise<void> {
  const admin = new Kafka({ clientId: 'pir-contract-cleanup', brokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [topic], timeout: 5000 }).catch(() => undefined);
  await admin.disconnect();
}

test('Kafka: key is the image id, value the JSON event, traceparent a header', { timeout: 60_000 }, async (t) => {
  if (!(await requireServices(t, ['kafka']))) return;
  const topic = uniqueName('pir-contract-wire');
  const bus = new KafkaEventBus({ brokers, topic, logger: quiet });
  const consumer = new Kafka({ clientId: 'pir-contract-raw', brokers, logLevel: logLevel.NOTHING }).consumer({ groupId: `${topic}-raw`, maxWaitTimeInMs: 100 });
  t.after(async () => {
    await consumer.disconnect();
    await bus.close();
    await deleteTopic(topic);
  });
  await bus.start();
  const raw: { key: string; value: string; traceparent: string | undefined; partition: number }[] = [];
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      raw.push({ key: message.key!.toString(), value: message.value!.toString(), traceparent: message.headers?.traceparent?.toString(), partition });
    },
  });
  const img = randomUUID();
  const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const events = [makeEvent(img, 0, 'image.created', { traceparent: tp }), makeEvent(img, 1)];
  await bus.publish(events);
  await waitFor('two raw messages', () => raw.length === 2, 15_000);
  assert.deepEqual(raw.map((r) => r.key), [img, img]);
  assert.deepEqual(raw.map((r) => JSON.parse(r.value) as PirEvent), events);
  assert.deepEqual(raw.map((r) => r.traceparent), [tp, undefined]);
  assert.equal(raw[0]!.partition, raw[1]!.partition);
  const meta = await (async () => {
    const admin = new Kafka({ clientId: 'pir-contract-meta', brokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try { return await admin.fetchTopicMetadata({ topics: [topic] }); } finally { await admin.disconnect(); }
  })();
  assert.equal(meta.topics[0]!.partitions.length, 6, 'created with 6 partitions');
});

test('Kafka: concurrent publishes leave together, every event arrives, and each image keeps its order', { timeout: 60_000 }, async (t) => {
  if (!(await requireServices(t, ['kafka']))) return;
  const topic = uniqueName('pir-contract-batch');
  const bus = new KafkaEventBus({ brokers, topic, logger: quiet });
  const received: PirEvent[] = [];
  t.after(async () => {
    await bus.close();
    await deleteTopic(topic);
  });
  await bus.start();
  // Counts the Produce requests this bus's producer sends (kafkajs's request instrumentation).
  const producer = (bus as unknown as { producer: import('kafkajs').Producer }).producer;
  let produces = 0;
  const off = producer.on(producer.events.REQUEST, (e) => { if (e.payload.apiName === 'Produce') produces++; });
  await bus.subscribe(`${topic}-g`, async (e) => { received.push(e); });
  const images = Array.from({ length: 20 }, () => randomUUID());
  // Each image publishes its five events one call at a time, as the outbox relay does; the
  // twenty images run at once.
  await Promise.all(images.map(async (img) => {
    for (let seq = 0; seq < 5; seq++) await bus.publish([makeEvent(img, seq)]);
  }));
  off();
  await waitFor('100 events', () => received.length === 100, 20_000);
  for (const img of images) {
    assert.deepEqual(received.filter((e) => e.image_id === img).map((e) => e.data), [0, 1, 2, 3, 4].map((seq) => makeEvent(img, seq).data), `image ${img} in order`);
  }
  assert.ok(produces < 100 / 2, `100 publishes went out in ${produces} Produce requests`);
});

test('Kafka: a poison event is retried in place without killing the consumer; the rest follows', { timeout: 60_000 }, async (t) => {
  if (!(await requireServices(t, ['kafka']))) return;
  const topic = uniqueName('pir-contract-poison');
  const bus = new KafkaEventBus({ brokers, topic, logger: quiet, retryBaseMs: 10, retryMaxMs: 40, loudAfterFailures: 3 });
  t.after(async () => {
    await bus.close();
    await deleteTopic(topic);
  });
  const img = randomUUID();
  let failures = 0;
  const got: PirEvent[] = [];
  await bus.subscribe('g-poison', async (e) => {
    if (e.image_id === img && (e.data as { attempt: number }).attempt === 0 && failures < 25) {
      failures++;
      throw new Error('poison');
    }
    got.push(e);
  });
  const others = Array.from({ length: 12 }, () => makeEvent(randomUUID()));
  await bus.publish([makeEvent(img, 0), makeEvent(img, 1), ...others]);
  await waitFor('the poison event to pass and everything after it', () => got.length === 14, 20_000);
  assert.equal(failures, 25);
  assert.deepEqual(got.filter((e) => e.image_id === img).map((e) => (e.data as { attempt: number }).attempt), [0, 1]);
});

test('Kafka: an event whose consumer died mid-handler is delivered again to the group', { timeout: 90_000 }, async (t) => {
  if (!(await requireServices(t, ['kafka']))) return;
  const topic = uniqueName('pir-contract-kill');
  const group = `${topic}-g`;
  const sessionTimeoutMs = 6000; // the broker's minimum by default
  const bus = new KafkaEventBus({ brokers, topic, logger: quiet, sessionTimeoutMs });
  await bus.start();
  const child = spawn(process.execPath, [...scriptArgs('./fixtures/kafka-hang-consumer', import.meta.url), brokers.join(','), topic, group, String(sessionTimeoutMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.after(async () => {
    child.kill('SIGKILL');
    await bus.close();
    await deleteTopic(topic);
  });
  await waitFor('the child consumer', () => out.includes('ready'), 30_000);
  const event = makeEvent(randomUUID());
  await bus.publish([event]);
  await waitFor('the child to get the event', () => out.includes(`got ${event.id}`), 15_000);
  child.kill('SIGKILL');
  await within('the child to die', exited, 5000);
  const killedAt = performance.now();
  const got: PirEvent[] = [];
  await bus.subscribe(group, async (e) => { got.push(e); });
  await waitFor('redelivery', () => got.length >= 1, sessionTimeoutMs * 3 + 10_000);
  assert.equal(got[0]!.id, event.id);
  console.log(`# kafka: event of a SIGKILLed consumer redelivered after ${(performance.now() - killedAt).toFixed(0)} ms (session timeout ${sessionTimeoutMs} ms)`);
});

test('Kafka: a subscription commits on its timer and on close, not per batch; a clean close hands nothing out again', { timeout: 90_000 }, async (t) => {
  if (!(await requireServices(t, ['kafka']))) return;
  const topic = uniqueName('pir-contract-commit');
  const group = `${topic}-g`;
  // A timer that never fires within the test: only close() may commit.
  const bus = new KafkaEventBus({ brokers, topic, logger: quiet, commitIntervalMs: 600_000 });
  const observer = new KafkaEventBus({ brokers, topic, logger: quiet });
  t.after(async () => {
    await bus.close();
    await observer.close();
    await deleteTopic(topic);
  });
  await bus.start();
  const got: PirEvent[] = [];
  await bus.subscribe(group, async (e) => { got.push(e); });
  const events = Array.from({ length: 20 }, () => makeEvent(randomUUID()));
  for (const e of events) await bus.publish([e]); // one batch each
  await waitFor('all 20 handled', () => got.length === 20, 30_000);
  const [before] = await observer.consumerLag([group]);
  assert.equal(before!.lag, 20, 'nothing committed while the timer has not fired (kafkajs autoCommit would have committed every batch)');
  await bus.close();
  const [after] = await observer.consumerLag([group]);
  assert.equal(after!.lag, 0, 'close committed what was handled');

  // A new member of the group starts after the last handled event; a short timer commits on its own.
  const again = new KafkaEventBus({ brokers, topic, logger: quiet, commitIntervalMs: 200 });
  t.after(() => again.close());
  const gotAgain: PirEvent[] = [];
  await again.subscribe(group, async (e) => { gotAgain.push(e); });
  const last = makeEvent(randomUUID());
  await again.publish([last]);
  await waitFor('the new event', () => gotAgain.length === 1, 30_000);
  assert.equal(gotAgain[0]!.id, last.id, 'none of the 20 was handed out again');
  const deadline = Date.now() + 10_000;
  while ((await observer.consumerLag([group]))[0]!.lag !== 0) {
    assert.ok(Date.now() < deadline, 'the 200 ms timer committed the new event within 10 s');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
});
