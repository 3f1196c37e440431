/** FreshRead: every caller gets a load begun after its call; callers during a load share the next. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FreshRead } from '../../../core/fresh-read.js';

test('FreshRead: a caller during a load waits for the next one, shared by all who came meanwhile', async () => {
  let value = 0;
  const started: number[] = [];
  const r = new FreshRead(async () => {
    const seen = ++value;
    started.push(seen);
    await new Promise((resolve) => setTimeout(resolve, 10));
    return seen;
  });
  const first = r.read();
  value = 10; // a write after the first load began: the callers below must see it
  const later = [r.read(), r.read(), r.read()];
  assert.equal(await first, 1);
  assert.deepEqual(await Promise.all(later), [11, 11, 11]);
  assert.deepEqual(started, [1, 11], 'two loads for four callers');
  assert.equal(await r.read(), 12, 'idle again: a new load');
});

test('FreshRead: a failed load fails its callers only; the next callers get a load of their own', async () => {
  let fail = true;
  const r = new FreshRead(async () => {
    await new Promise((resolve) => setTimeout(resolve, 5));
    if (fail) throw new Error('store down');
    return 'ok';
  });
  const first = r.read();
  const second = r.read();
  await assert.rejects(first, /store down/);
  fail = false; // before the second load checks (it sleeps first)
  assert.equal(await second, 'ok');
});
