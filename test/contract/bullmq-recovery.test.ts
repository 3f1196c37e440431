/**
 * BullMQ-specific: a worker killed with SIGKILL mid-job leaves the job locked; the stalled-job
 * checker of a live worker puts it back once the lock lapses, and the chain goes on.
 */
import { scriptArgs } from '../support/child-script.js';
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import pino from 'pino';
import { BullmqJobQueue } from '../../infra/bullmq/bullmq-job-queue.js';
import { requireServices, services, uniqueName } from '../support/services.js';
import { waitFor, within } from './helpers.js';
import { HANG_KIND } from './fixtures/hang-kind.js';

const LOCK_MS = 2000;
const STALLED_INTERVAL_MS = 1000;

/** Removes every Redis key of a test's queue prefix. */
async function removeKeys(prefix: string): Promise<void> {
  const redis = new Redis(services.redisUrl, { maxRetriesPerRequest: 1 });
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) await redis.del(...keys);
  } while (cursor !== '0');
  redis.disconnect();
}

test('BullMQ: the job of a SIGKILLed worker is recovered by stalled-job detection', { timeout: 60_000 }, async (t) => {
  if (!(await requireServices(t, ['redis']))) return;
  const prefix = uniqueName('pir-contract-stall');
  const child = spawn(process.execPath, [...scriptArgs('./fixtures/bullmq-hang-worker', import.meta.url), services.redisUrl, prefix, String(LOCK_MS), String(STALLED_INTERVAL_MS)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const queue = new BullmqJobQueue({ redisUrl: services.redisUrl, prefix, retry: { attempts: 3, backoffMs: 100 }, lockDurationMs: LOCK_MS, stalledIntervalMs: STALLED_INTERVAL_MS, logger: pino({ level: 'silent' }) });
  t.after(async () => {
    child.kill('SIGKILL');
    await queue.close(1000);
    await removeKeys(prefix);
  });

  await waitFor('the child worker', () => out.includes('ready'), 20_000);
  const img = randomUUID();
  await queue.enqueueChain([{ imageId: img, run: 1, stage: 'unpack' }, { imageId: img, run: 1, stage: 'inspect' }]);
  await waitFor('the child to take the job', () => out.includes(`started ${img}`), 10_000);
  child.kill('SIGKILL');
  await within('the child to die', exited, 5000);
  const killedAt = performance.now();

  const seen: { stage: string; attempt: number; at: number }[] = [];
  const handler = async (job: { stage: string }, ctx: { attempt: number }) => { seen.push({ stage: job.stage, attempt: ctx.attempt, at: performance.now() }); };
  await queue.process('unpack', 1, handler);
  await queue.process('inspect', 1, handler);
  await waitFor('the chain to finish after recovery', () => seen.length === 2, LOCK_MS + STALLED_INTERVAL_MS * 3 + 10_000);
  const recoveredAfter = seen[0]!.at - killedAt;
  assert.deepEqual(seen.map((s) => s.stage), ['unpack', 'inspect']);
  assert.ok(recoveredAfter <= LOCK_MS + STALLED_INTERVAL_MS * 2 + 1500, `recovered after ${recoveredAfter.toFixed(0)} ms`);
  console.log(`# bullmq: job of a SIGKILLed worker re-run after ${recoveredAfter.toFixed(0)} ms (lock ${LOCK_MS} ms, stalled check every ${STALLED_INTERVAL_MS} ms)`);
});

test('BullMQ: a job whose workers died twice is reported as stalled out (the import is then resumed), not left for its deadline', { timeout: 90_000 }, async (t) => {
  if (!(await requireServices(t, ['redis']))) return;
  const prefix = uniqueName('pir-contract-stallout');
  const { queue, children } = stallOutQueue(t, prefix);
  const dieHoldingTheJob = (img: string) => dieHolding(children, prefix, img);

  const img = randomUUID();
  const queued = queue.enqueueChain([{ imageId: img, run: 1, stage: 'unpack' }, { imageId: img, run: 1, stage: 'inspect' }]);
  await queued;
  await dieHoldingTheJob(img);
  await dieHoldingTheJob(img); // the first stall put it back; this worker took it again
  const stalledOut: { imageId: string; run: number; stage: string }[] = [];
  queue.onStageJobStalledOut((job) => stalledOut.push(job));
  const ran: string[] = [];
  await queue.process('unpack', 1, async (job) => { ran.push(job.stage); });
  await queue.process('inspect', 1, async (job) => { ran.push(job.stage); });
  await waitFor('the stalled-out job to be reported', () => stalledOut.length === 1, LOCK_MS + STALLED_INTERVAL_MS * 3 + 10_000);
  assert.deepEqual(stalledOut.map((j) => [j.imageId, j.run, j.stage]), [[img, 1, 'unpack']]);
  assert.deepEqual(ran, [], 'neither the stalled-out job nor the rest of its chain ran');
});

/** A worker process that takes the job (a stage job, or with `kind` one of HANG_KIND) and is SIGKILLed holding it. */
async function dieHolding(children: ReturnType<typeof spawn>[], prefix: string, id: string, mode?: 'kind'): Promise<void> {
  const child = spawn(process.execPath, [...scriptArgs('./fixtures/bullmq-hang-worker', import.meta.url), services.redisUrl, prefix, String(LOCK_MS), String(STALLED_INTERVAL_MS), ...(mode ? [mode] : [])], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitFor('a worker to take the job', () => out.includes(`started ${id}`), LOCK_MS + STALLED_INTERVAL_MS * 3 + 20_000);
  child.kill('SIGKILL');
  await within('the worker to die', exited, 5000);
}

test('BullMQ: a job of a kind whose workers died twice is handed to its kind\'s abandoned hook (copy-image records the store as failed), its handler never run', { timeout: 90_000 }, async (t) => {
  if (!(await requireServices(t, ['redis']))) return;
  const prefix = uniqueName('pir-contract-kind-stallout');
  const { queue, children } = stallOutQueue(t, prefix);
  const id = randomUUID();
  await queue.enqueue(HANG_KIND, `hang-${id}`, { id });
  await dieHolding(children, prefix, id, 'kind');
  await dieHolding(children, prefix, id, 'kind');
  const abandoned: string[] = [];
  const ran: string[] = [];
  await queue.work(HANG_KIND, 1, async (job) => { ran.push(job.id); }, async (job) => { abandoned.push(job.id); });
  await waitFor('the abandoned job to be reported', () => abandoned.length === 1, LOCK_MS + STALLED_INTERVAL_MS * 3 + 10_000);
  assert.deepEqual(abandoned, [id]);
  assert.deepEqual(ran, [], 'the handler never saw the job');
});

/** A queue for a stall-out test, and the worker processes it SIGKILLs; both cleared after the test. */
function stallOutQueue(t: TestContext, prefix: string): { queue: BullmqJobQueue; children: ReturnType<typeof spawn>[] } {
  const children: ReturnType<typeof spawn>[] = [];
  const queue = new BullmqJobQueue({ redisUrl: services.redisUrl, prefix, retry: { attempts: 5, backoffMs: 100 }, lockDurationMs: LOCK_MS, stalledIntervalMs: STALLED_INTERVAL_MS, logger: pino({ level: 'silent' }) });
  t.after(async () => {
    for (const child of children) child.kill('SIGKILL');
    await queue.close(1000);
    await removeKeys(prefix);
  });
  return { queue, children };
}
