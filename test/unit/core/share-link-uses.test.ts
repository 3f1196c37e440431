import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ShareLinkUseCounter } from '../../../core/share-link-uses.js';
import { PirError } from '../../../core/errors.js';

test('share-link uses: 300 at once on one image are a few writes that count every use', async () => {
  const writes: Map<string, number>[] = [];
  const counter = new ShareLinkUseCounter(async (_id, uses) => {
    writes.push(new Map(uses));
    await new Promise((resolve) => setTimeout(resolve, 10));
  });
  await Promise.all(Array.from({ length: 300 }, (_, i) => counter.count('image-1', i % 3 === 0 ? 'link-a' : 'link-b')));
  assert.ok(writes.length <= 3, `${writes.length} writes`);
  const total = (link: string) => writes.reduce((sum, w) => sum + (w.get(link) ?? 0), 0);
  assert.deepEqual([total('link-a'), total('link-b')], [100, 200]);
});

test('share-link uses: a failed write is tried again with its uses; an image gone is given up at once', async () => {
  let calls = 0;
  const counted: number[] = [];
  const flaky = new ShareLinkUseCounter(async (_id, uses) => {
    if (++calls < 3) throw new Error('manifest busy');
    counted.push(uses.get('l')!);
  });
  await Promise.all([flaky.count('i', 'l'), flaky.count('i', 'l')]);
  assert.equal(counted.reduce((a, b) => a + b, 0), 2, 'both uses written, the failed batch included');
  let goneCalls = 0;
  const gone = new ShareLinkUseCounter(async () => {
    goneCalls++;
    throw new PirError('not_found', 'not_found', 'Image i was not found.');
  });
  const t0 = performance.now();
  await assert.rejects(gone.count('i', 'l'), /not found/);
  assert.equal(goneCalls, 1);
  assert.ok(performance.now() - t0 < 400);
});
