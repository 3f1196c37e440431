import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KeyedMutex } from '../../../core/keyed-mutex.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

test('KeyedMutex: one key runs one at a time in call order; other keys do not wait; nothing kept when idle', async () => {
  const mutex = new KeyedMutex();
  const order: string[] = [];
  let inside = 0;
  const job = (key: string, name: string) => mutex.run(key, async () => {
    inside++;
    assert.equal(inside <= 2, true);
    order.push(`${name} in`);
    await tick();
    await tick();
    order.push(`${name} out`);
    inside--;
    return name;
  });
  const results = await Promise.all([job('a', 'a1'), job('a', 'a2'), job('b', 'b1'), job('a', 'a3')]);
  assert.deepEqual(results, ['a1', 'a2', 'b1', 'a3']);
  const a = order.filter((line) => line.startsWith('a'));
  assert.deepEqual(a, ['a1 in', 'a1 out', 'a2 in', 'a2 out', 'a3 in', 'a3 out']);
  assert.ok(order.indexOf('b1 in') < order.indexOf('a1 out'), 'b did not wait for a');
  await assert.rejects(mutex.run('a', async () => { throw new Error('boom'); }), /boom/);
  assert.equal(await mutex.run('a', async () => 'next'), 'next', 'a failure releases the key');
  assert.equal((mutex as unknown as { tails: Map<string, unknown> }).tails.size, 0);
});
