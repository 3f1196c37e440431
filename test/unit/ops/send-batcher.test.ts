/** SendBatcher's rules, against a send that records its batches (the real Kafka round trip is in test/contract/kafka-bus.test.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SendBatcher } from '../../../infra/kafka/send-batcher.js';

function recordingSend(limits = { maxMessages: 100, maxBytes: 1_000_000 }) {
  const sends: string[][] = [];
  let release: (() => void) | null = null;
  let fail: Error | null = null;
  const batcher = new SendBatcher<string>(async (messages) => {
    sends.push(messages);
    // The first send is held open until the test lets it go, as a Produce request in flight is.
    if (sends.length === 1) await new Promise<void>((resolve) => { release = resolve; });
    if (fail) throw fail;
  }, (m) => m.length, limits);
  return { batcher, sends, release: () => release?.(), failNext: (e: Error) => { fail = e; } };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

test('SendBatcher: a lone publish leaves at once; what arrives while it is in flight leaves together, in order', async () => {
  const { batcher, sends, release } = recordingSend();
  const first = batcher.publish(['a']);
  await tick();
  assert.deepEqual(sends, [['a']]);
  const later = [batcher.publish(['b', 'c']), batcher.publish(['d']), batcher.publish(['e'])];
  await tick();
  assert.equal(sends.length, 1, 'nothing else leaves while a send is in flight');
  release();
  await Promise.all([first, ...later]);
  assert.deepEqual(sends, [['a'], ['b', 'c', 'd', 'e']]);
});

test('SendBatcher: a batch stops at the message and byte limits, never splitting a caller', async () => {
  const { batcher, sends, release } = recordingSend({ maxMessages: 3, maxBytes: 10 });
  const first = batcher.publish(['x']);
  await tick();
  const rest = [
    batcher.publish(['a', 'b']), // 2 messages
    batcher.publish(['c', 'd']), // would make 4 > 3: next send
    batcher.publish(['eeeeeeee']), // 2 + 8 bytes = 10: fits beside c, d
    batcher.publish(['ffffffffffff']), // 12 bytes, more than the limit alone: goes alone
    batcher.publish([]),
  ];
  release();
  await Promise.all([first, ...rest]);
  assert.deepEqual(sends, [['x'], ['a', 'b'], ['c', 'd', 'eeeeeeee'], ['ffffffffffff']]);
});

test('SendBatcher: every caller of a failed send is rejected with its error; the next send goes on', async () => {
  const { batcher, sends, release, failNext } = recordingSend();
  const first = batcher.publish(['a']);
  await tick();
  const b = batcher.publish(['b']);
  const c = batcher.publish(['c']);
  const boom = new Error('broker gone');
  failNext(boom);
  release();
  await assert.rejects(first, boom);
  await assert.rejects(b, boom);
  await assert.rejects(c, boom);
  assert.deepEqual(sends, [['a'], ['b', 'c']]);
});
