/**
 * The ops page's list of live processes, on both heartbeat stores: files under the data
 * directory (embedded) and Redis (distributed, where processes may share no filesystem). Two
 * registries, as two processes, see each other; one that stops is gone at once; one that stops
 * beating (killed) is gone after three beats; another deployment's prefix is not listed.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { Redis } from 'ioredis';
import { openProcessRegistry, type ProcessRegistry } from '../../infra/telemetry/process-registry.js';
import { requireServices, services, uniqueName } from '../support/services.js';

async function seeEachOther(open: (role: string) => ProcessRegistry, other: ProcessRegistry): Promise<void> {
  const api = open('api');
  const worker = open('worker');
  await api.start();
  await worker.start();
  try {
    const seen = await worker.alive();
    assert.deepEqual(seen.map((p) => p.role), ['api', 'worker'], 'both, sorted by role');
    assert.ok(seen.every((p) => p.pid === process.pid && p.rss_bytes > 0 && Date.parse(p.started_at) <= Date.parse(p.seen_at)));
    assert.deepEqual(await other.alive(), [], "another deployment's processes are not listed");
    assert.deepEqual(await api.alive(Date.now() + 16_000), [], 'three beats missed: gone');
  } finally {
    await worker.stop();
  }
  assert.deepEqual((await api.alive()).map((p) => p.role), ['api'], 'a stopped process is gone at once');
  await api.stop();
  await other.stop();
}

describe('process registry', () => {
  it('in files under the data directory (embedded)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pir-processes-'));
    try {
      const other = openProcessRegistry('api', { dataDir: join(dir, 'other'), redisPrefix: 'unused' });
      await seeEachOther((role) => openProcessRegistry(role, { dataDir: dir, redisPrefix: 'unused', name: `host-${role}` }), other);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('in Redis, keys that expire with the process (distributed)', async (t: TestContext) => {
    if (!(await requireServices(t, ['redis']))) return;
    const prefix = uniqueName('procs');
    const other = openProcessRegistry('api', { dataDir: '/nonexistent', redisUrl: services.redisUrl, redisPrefix: `${prefix}-other` });
    await seeEachOther((role) => openProcessRegistry(role, { dataDir: '/nonexistent', redisUrl: services.redisUrl, redisPrefix: prefix, name: `host-${role}` }), other);
    const redis = new Redis(services.redisUrl);
    try {
      const probe = openProcessRegistry('worker', { dataDir: '/nonexistent', redisUrl: services.redisUrl, redisPrefix: prefix });
      await probe.start();
      const keys = await redis.keys(`${prefix}:processes:*`);
      assert.equal(keys.length, 1);
      const ttl = await redis.pttl(keys[0]!);
      assert.ok(ttl > 0 && ttl <= 15_000, `a heartbeat expires by itself (pttl ${ttl} ms)`);
      await probe.stop();
      assert.deepEqual(await redis.keys(`${prefix}:processes:*`), []);
    } finally {
      redis.disconnect();
    }
  });
});
