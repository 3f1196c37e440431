/** OffsetCommitter's rules, against a consumer that records its commits (the real Kafka round trip is in test/contract/kafka-bus.test.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Consumer, TopicPartitionOffsetAndMetadata } from 'kafkajs';
import pino from 'pino';
import { OffsetCommitter } from '../../../infra/kafka/offset-committer.js';

function recordingConsumer(fail: () => Error | null = () => null) {
  const commits: TopicPartitionOffsetAndMetadata[][] = [];
  const consumer = {
    commitOffsets: async (offsets: TopicPartitionOffsetAndMetadata[]) => {
      const error = fail();
      if (error) throw error;
      commits.push(offsets);
    },
  } as unknown as Consumer;
  return { consumer, commits };
}

const quiet = pino({ level: 'silent' });

test('OffsetCommitter: commits the next offset of what was handled, once, and nothing when nothing is new', async () => {
  const { consumer, commits } = recordingConsumer();
  const c = new OffsetCommitter(consumer, 't', 60_000, quiet, 'g');
  await c.handle(0, '41', async () => undefined);
  await c.handle(0, '42', async () => undefined);
  await c.handle(3, '7', async () => undefined);
  await c.commit();
  assert.deepEqual(commits, [[{ topic: 't', partition: 0, offset: '43' }, { topic: 't', partition: 3, offset: '8' }]]);
  await c.commit();
  assert.equal(commits.length, 1, 'nothing new, no request');
});

test('OffsetCommitter: a handler that throws is not recorded', async () => {
  const { consumer, commits } = recordingConsumer();
  const c = new OffsetCommitter(consumer, 't', 60_000, quiet, 'g');
  await c.handle(1, '5', async () => undefined);
  await assert.rejects(c.handle(1, '6', async () => { throw new Error('handler failed'); }), /handler failed/);
  await c.commit();
  assert.deepEqual(commits, [[{ topic: 't', partition: 1, offset: '6' }]], 'offset 6 is read again');
});

test('OffsetCommitter: after a rebalance only the partitions kept are committed; a failed commit is retried at the next', async () => {
  let failing = true;
  const { consumer, commits } = recordingConsumer(() => (failing ? new Error('The coordinator is not aware of this member (UNKNOWN_MEMBER_ID)') : null));
  const c = new OffsetCommitter(consumer, 't', 60_000, quiet, 'g');
  await c.handle(0, '1', async () => undefined);
  await c.handle(2, '9', async () => undefined);
  await c.commit();
  assert.equal(commits.length, 0);
  c.retain([2]);
  failing = false;
  await c.commit();
  assert.deepEqual(commits, [[{ topic: 't', partition: 2, offset: '10' }]]);
});

test('OffsetCommitter: stop waits for the handlers running, then commits what they handled', async () => {
  const { consumer, commits } = recordingConsumer();
  const c = new OffsetCommitter(consumer, 't', 60_000, quiet, 'g');
  let finish!: () => void;
  const running = c.handle(4, '99', () => new Promise<void>((resolve) => { finish = resolve; }));
  const stopped = c.stop(5_000);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(commits.length, 0, 'not before the handler is done');
  finish();
  await running;
  await stopped;
  assert.deepEqual(commits, [[{ topic: 't', partition: 4, offset: '100' }]]);
});

test('OffsetCommitter: stop gives up waiting after its bound and commits what is done', async () => {
  const { consumer, commits } = recordingConsumer();
  const c = new OffsetCommitter(consumer, 't', 60_000, quiet, 'g');
  await c.handle(0, '3', async () => undefined);
  void c.handle(0, '4', () => new Promise<void>(() => undefined)); // never ends
  await c.stop(50);
  assert.deepEqual(commits, [[{ topic: 't', partition: 0, offset: '4' }]]);
});

test('OffsetCommitter: the timer commits on its own', async () => {
  const { consumer, commits } = recordingConsumer();
  const c = new OffsetCommitter(consumer, 't', 20, quiet, 'g');
  c.start();
  await c.handle(0, '0', async () => undefined);
  const deadline = Date.now() + 5_000;
  while (commits.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  await c.stop(0);
  assert.deepEqual(commits[0], [{ topic: 't', partition: 0, offset: '1' }]);
});
