/** JobQueue contract against the in-process queue (embedded) and BullMQ on Redis (distributed). */
import { Redis } from 'ioredis';
import pino from 'pino';
import { MemoryJobQueue } from '../../infra/embedded/memory-job-queue.js';
import { BullmqJobQueue } from '../../infra/bullmq/bullmq-job-queue.js';
import { services, testLogLevel, uniqueName } from '../support/services.js';
import { jobQueueContract } from './job-queue.contract.js';

const quiet = pino({ level: testLogLevel });
const report = (line: string) => console.log(`# ${line}`);

jobQueueContract('memory', (retry, logger) => new MemoryJobQueue({ retry, logger: logger ?? quiet }), { report });

// One key prefix per queue; all keys of this run are deleted afterwards.
const run = uniqueName('pir-contract');
let n = 0;
jobQueueContract('bullmq', (retry, logger) => new BullmqJobQueue({ redisUrl: services.redisUrl, prefix: `${run}-${n++}`, retry, logger: logger ?? quiet }), {
  services: ['redis'],
  report,
  teardown: async () => {
    const redis = new Redis(services.redisUrl, { maxRetriesPerRequest: 1 });
    try {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${run}-*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length) await redis.del(...keys);
      } while (cursor !== '0');
    } finally {
      redis.disconnect();
    }
  },
});
