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

test('part buffers: at most `max` shared ones, never dropped; past them an upload gets an ordinary buffer at once, one holding some waits for its own', async () => {
  const cache = new PartBufferCache(4096, 2);
  const never = new AbortController().signal;
  const a = cache.lease(3);
  const a1 = await a.take(never);
  const a2 = await a.take(never);
  assert.equal(cache.allocated, 2);
  assert.ok(a1.shared && a2.shared);
  // B holds nothing and none is free: an ordinary buffer now (a slow client elsewhere holds no one up).
  const b = cache.lease(1);
  const b1 = await b.take(never);
  assert.equal(b1.shared, false);
  assert.equal(b1.bytes.length, 4096);
  assert.ok(!(b1.bytes.buffer instanceof SharedArrayBuffer));
  // A holds two and wants a third: it waits for one of its own.
  let aGot: unknown = null;
  const aWaiting = a.take(never).then((x) => { aGot = x; return x; });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(aGot, null);
  a.unref(a1);
  assert.equal((await aWaiting).bytes, a1.bytes, "A's own buffer came back to A");
  // Ordinary buffers never join the cache; shared ones go back to it.
  b.unref(b1);
  b.close();
  assert.equal(cache.cached, 0);
  a.unref(a2);
  a.unref(a1);
  a.close();
  assert.equal(cache.cached, 2);
  // Many uploads one after the other: still two shared buffers in all.
  for (let i = 0; i < 50; i++) {
    const lease = cache.lease(2);
    const x = await lease.take(never);
    assert.ok(x.shared);
    lease.unref(x);
    lease.close();
  }
  assert.equal(cache.allocated, 2);
});
