/**
 * Declared job kinds (core/jobs.ts) on both adapters: retries by the kind's policy,
 * RetryLaterError's own delay, PermanentJobError failing at once and showing as failed,
 * id deduplication; and in embedded mode, durable jobs surviving a restart of the queue.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pino from 'pino';
import { DeferJobError, PermanentJobError, RetryLaterError, type JobKind } from '../../core/jobs.js';
import type { JobQueue } from '../../core/ports.js';
import { BullmqJobQueue } from '../../infra/bullmq/bullmq-job-queue.js';
import { MemoryJobQueue } from '../../infra/embedded/memory-job-queue.js';
import { SqliteJobJournal } from '../../infra/embedded/sqlite-job-journal.js';
import { requireServices, services, testLogLevel, uniqueName } from '../support/services.js';

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const quiet = pino({ level: testLogLevel });
const retry = { attempts: 3, backoffMs: 10 };

function kind(name: string, durable = false): JobKind<{ n: number; mode: string }> {
  return { name, durable, retry: { attempts: 3, delayMs: (made) => 20 * made } };
}

async function suite(label: string, make: () => Promise<JobQueue & { stateOf(...a: never[]): unknown }>, stateOf: (q: never, k: JobKind<unknown>, id: string) => Promise<unknown>, needs: 'redis' | null) {
  test(`${label}: a kind's jobs retry by its policy, dedupe by id, and a permanent failure shows as failed`, async (t) => {
    if (needs && !(await requireServices(t, [needs]))) return;
    const q = await make();
    const k = kind(`test-${Math.random().toString(36).slice(2, 8)}`);
    const calls: { id: number; attempt: number; at: number }[] = [];
    try {
      await q.work(k, 2, async (data, ctx) => {
        calls.push({ id: data.n, attempt: ctx.attempt, at: Date.now() });
        if (data.mode === 'flaky' && ctx.attempt < 3) throw new Error('not yet');
        if (data.mode === 'later' && ctx.attempt === 1) throw new RetryLaterError('retry after', 300);
        if (data.mode === 'never') throw new PermanentJobError('refused for good');
        if (data.mode === 'defer' && calls.filter((c) => c.id === data.n).length < 3) throw new DeferJobError(50);
      });
      await q.enqueue(k, 'job-flaky', { n: 1, mode: 'flaky' });
      await q.enqueue(k, 'job-flaky', { n: 99, mode: 'flaky' }); // same id: no-op
      await q.enqueue(k, 'job-later', { n: 2, mode: 'later' });
      await q.enqueue(k, 'job-never', { n: 3, mode: 'never' });
      await q.enqueue(k, 'job-defer', { n: 4, mode: 'defer' });
      await waitFor(async () => (await stateOf(q as never, k, 'job-flaky')) === 'completed' && (await stateOf(q as never, k, 'job-later')) === 'completed', 10_000);
      await waitFor(async () => (await stateOf(q as never, k, 'job-never')) === 'failed', 10_000);
      await waitFor(async () => (await stateOf(q as never, k, 'job-defer')) === 'completed', 10_000);
      assert.deepEqual(calls.filter((c) => c.id === 4).map((c) => c.attempt), [1, 1, 1], 'a deferred run is not an attempt');
      assert.deepEqual(calls.filter((c) => c.id === 1).map((c) => c.attempt), [1, 2, 3]);
      assert.equal(calls.filter((c) => c.id === 99).length, 0, 'the repeated id never ran');
      const later = calls.filter((c) => c.id === 2);
      assert.equal(later.length, 2);
      assert.ok(later[1]!.at - later[0]!.at >= 280, `RetryLaterError's delay honoured (${later[1]!.at - later[0]!.at} ms)`);
      assert.equal(calls.filter((c) => c.id === 3).length, 1, 'a permanent failure is not retried');
    } finally {
      await q.close(1000);
    }
  });
}

await suite('memory', async () => new MemoryJobQueue({ retry, logger: quiet }), async (q: MemoryJobQueue, _k, id) => q.stateOf(id), null);

const prefix = uniqueName('pir-kinds');
await suite('bullmq', async () => new BullmqJobQueue({ redisUrl: services.redisUrl, prefix, retry, logger: quiet }), (q: BullmqJobQueue, k, id) => q.stateOf(k, id), 'redis');

test.after(async () => {
  const redis = new Redis(services.redisUrl, { maxRetriesPerRequest: 1, lazyConnect: true });
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
  } catch { /* no Redis: nothing to clean */ } finally {
    redis.disconnect();
  }
});

test('memory: durable jobs pending at a restart (or a crash mid-job) run again from the journal', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'pir-journal-'));
  try {
    const k = kind('durable-test', true);
    const journal1 = new SqliteJobJournal(join(dir, 'jobs.sqlite'));
    const q1 = new MemoryJobQueue({ retry, logger: quiet, journal: journal1 });
    // No worker in the first life: the job stays pending; one delayed for later, too.
    await q1.enqueue(k, 'pending-1', { n: 1, mode: 'ok' });
    await q1.enqueue(k, 'pending-2', { n: 2, mode: 'ok' }, { delayMs: 200 });
    await q1.close(100);
    journal1.close();

    const journal2 = new SqliteJobJournal(join(dir, 'jobs.sqlite'));
    const q2 = new MemoryJobQueue({ retry, logger: quiet, journal: journal2 });
    const seen: number[] = [];
    await q2.work(k, 1, async (data) => { seen.push(data.n); });
    await waitFor(async () => seen.length === 2, 5000);
    assert.deepEqual(seen.sort(), [1, 2]);
    await waitFor(async () => journal2.pending(k.name).length === 0, 2000);
    await q2.close(100);
    journal2.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
