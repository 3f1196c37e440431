/** A Kafka consumer of PIR's event topic for the distributed e2e suites. */
import { Kafka, logLevel } from 'kafkajs';
import { services, uniqueName } from './services.js';

/** Records every event on the topic from its beginning, for assertions about what was published. */
export class TopicRecorder {
  readonly events: { id: string; type: string; image_id: string }[] = [];
  private readonly consumer;

  constructor(private readonly topic: string) {
    const kafka = new Kafka({ brokers: [...services.kafkaBrokers], clientId: 'pir-e2e-recorder', logLevel: logLevel.NOTHING });
    this.consumer = kafka.consumer({ groupId: uniqueName('e2e-recorder'), maxWaitTimeInMs: 100 });
  }

  async start(): Promise<void> {
    await this.consumer.connect();
    await this.consumer.subscribe({ topic: this.topic, fromBeginning: true });
    await this.consumer.run({ eachMessage: async ({ message }) => { this.events.push(JSON.parse(message.value!.toString())); } });
  }

  idsOf(imageId: string, type: string): Set<string> {
    return new Set(this.events.filter((e) => e.image_id === imageId && e.type === type).map((e) => e.id));
  }

  stop(): Promise<void> {
    return this.consumer.disconnect();
  }
}
