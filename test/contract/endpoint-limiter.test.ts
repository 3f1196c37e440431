/**
 * The webhook per-endpoint limit: the in-process counter (embedded) and the Redis lease
 * semaphore shared by worker processes (distributed): never more than N leases per endpoint,
 * a released slot is free again, endpoints are independent, and the lease of a worker that died
 * (its limiter gone without releasing) expires so the slot comes back.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import { Redis } from 'ioredis';
import { InProcessEndpointLimiter, type EndpointLimiter } from '../../core/webhooks/endpoint-limiter.js';
import { RedisEndpointLimiter } from '../../infra/bullmq/redis-endpoint-limiter.js';
import { requireServices, services, uniqueName } from '../support/services.js';

const log = pino({ level: 'silent' });

async function limitHolds(a: EndpointLimiter, b: EndpointLimiter): Promise<void> {
  const ep = `ep-${Math.random().toString(36).slice(2)}`;
  const l1 = await a.tryAcquire(ep, 2);
  const l2 = await b.tryAcquire(ep, 2);
  assert.ok(l1 && l2);
  assert.equal(await a.tryAcquire(ep, 2), null, 'full for the first holder');
  assert.equal(await b.tryAcquire(ep, 2), null, 'full for the second holder');
  assert.ok(await a.tryAcquire(`${ep}-other`, 2), 'another endpoint is independent');
  await l1.release();
  await l1.release(); // twice is harmless
  const l3 = await b.tryAcquire(ep, 2);
  assert.ok(l3, 'a released slot is free again');
  assert.equal(await a.tryAcquire(ep, 2), null);
  await l2.release();
  await l3.release();
  // Many at once (a fan-out's first attempts): per endpoint in order, the same rule.
  const busy = [await a.tryAcquire(`${ep}-busy`, 2), await a.tryAcquire(`${ep}-busy`, 2)];
  assert.ok(busy[0] && busy[1]);
  const many = await b.tryAcquireMany([`${ep}-m1`, `${ep}-busy`, `${ep}-m1`, `${ep}-m1`], 2);
  assert.deepEqual(many.map((l) => l !== null), [true, false, true, false], 'the full endpoint refused; the third of a limit of two refused');
  assert.equal(await a.tryAcquire(`${ep}-m1`, 2), null, 'leases taken together count like any other');
  await many[0]!.release();
  assert.ok(await a.tryAcquire(`${ep}-m1`, 2), 'one of them released frees its slot');
  assert.deepEqual(await b.tryAcquireMany([], 2), []);
  for (const l of busy) await l!.release();
}

describe('webhook endpoint limiter', () => {
  it('in process: at most N, released slots return', async () => {
    const l = new InProcessEndpointLimiter();
    await limitHolds(l, l);
  });

  it('Redis: the limit is shared by two limiters (two worker processes), and a dead holder\'s lease expires', { timeout: 30_000 }, async (t) => {
    if (!(await requireServices(t, ['redis']))) return;
    const prefix = uniqueName('pir-contract-limiter');
    const a = new RedisEndpointLimiter({ redisUrl: services.redisUrl, prefix, leaseMs: 600 }, log);
    const b = new RedisEndpointLimiter({ redisUrl: services.redisUrl, prefix, leaseMs: 600 }, log);
    t.after(async () => {
      await b.close();
      const redis = new Redis(services.redisUrl, { maxRetriesPerRequest: 1 });
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length) await redis.del(...keys);
      redis.disconnect();
    });
    await limitHolds(a, b);
    // a lease held past its ttl stays while its holder renews it
    const held = await a.tryAcquire('slow', 1);
    assert.ok(held);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await b.tryAcquire('slow', 1), null, 'a renewed lease is kept past its ttl');
    // the holder dies: its limiter stops renewing, nothing is released
    await a.close();
    await new Promise((r) => setTimeout(r, 900));
    const taken = await b.tryAcquire('slow', 1);
    assert.ok(taken, 'the dead holder\'s lease expired and its slot came back');
    await taken.release();
  });
});
