import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PartBufferCache } from '../../../infra/storage/s3-part-buffers.js';

test('part buffers: shared memory, at most `max` per upload, reused, back to the cache when the upload ends', async () => {
  const cache = new PartBufferCache(64 * 1024, 3);
  const lease = cache.lease(2);
  const never = new AbortController().signal;
  const a = await lease.take(never);
  const b = await lease.take(never);
  assert.ok(a.bytes.buffer instanceof SharedArrayBuffer);
  assert.equal(a.bytes.length, 64 * 1024);
  let third: unknown = null;
  const waiting = lease.take(never).then((x) => { third = x; return x; });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(third, null, 'a third buffer waits while two are in use');
  a.refs++; // e.g. a hash thread still reading it
  lease.unref(a);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(third, null, 'still in use by another reader');
  lease.unref(a);
  const c = await waiting;
  assert.equal(c.bytes, a.bytes, 'the freed buffer is reused, not a new one');
  assert.equal(c.refs, 1);
  lease.unref(b);
  lease.close();
  assert.equal(cache.cached, 1, 'free buffers go back to the cache at the end');
  lease.unref(c);
  assert.equal(cache.cached, 2, 'a busy one goes back when its last user lets go');
  const next = cache.lease(1);
  const reused = await next.take(never);
  assert.ok(reused.bytes === a.bytes || reused.bytes === b.bytes, 'the next upload reuses a cached buffer');
  next.close();
});

test('part buffers: a wait for a buffer ends when the upload is stopped', async () => {
  const lease = new PartBufferCache(4096, 1).lease(1);
  const stop = new AbortController();
  await lease.take(stop.signal);
  const waiting = lease.take(stop.signal);
  stop.abort(new Error('stopped'));
  await assert.rejects(waiting, /stopped/);
});
