/** The JobQueue contract: every adapter passes the same suite. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { pino, type Logger } from 'pino';
import type { JobContext, JobQueue, RetryPolicy, StageJob } from '../../core/ports.js';
import { STAGES } from '../../schemas/image.js';
import type { StageName } from '../../schemas/image.js';
import { requireServices } from '../support/services.js';
import type { ContractOptions } from './manifest-store.contract.js';
import { sleep, waitFor } from './helpers.js';
import { DeferJobError } from '../../core/jobs.js';

/** Each call must return a new queue, isolated from every other (its own key prefix). */
/** `logger`, when given, receives the queue's log lines (checked by a test). */
export type MakeQueue = (retry: RetryPolicy, logger?: Logger) => JobQueue | Promise<JobQueue>;

export interface JobQueueContractOptions extends ContractOptions {
  /** Latency figures are printed with this label (diagnostic output, never asserted). */
  report?: (line: string) => void;
}

interface Run {
  id: string;
  stage: StageName;
  imageId: string;
  attempt: number;
  maxAttempts: number;
  start: number;
  end: number | null;
  ok: boolean | null;
  job: StageJob;
}

/** Records every handler call; `behaviour` decides what a call does. */
class Recorder {
  readonly runs: Run[] = [];
  active = 0;
  maxActive = 0;
  constructor(private readonly behaviour: (job: StageJob, ctx: JobContext) => Promise<void> = async () => {}) {}

  handler = async (job: StageJob, ctx: JobContext): Promise<void> => {
    const run: Run = { id: `${job.imageId}.${job.run}.${job.stage}`, stage: job.stage, imageId: job.imageId, attempt: ctx.attempt, maxAttempts: ctx.maxAttempts, start: performance.now(), end: null, ok: null, job };
    this.runs.push(run);
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      await this.behaviour(job, ctx);
      run.ok = true;
    } catch (err) {
      run.ok = false;
      throw err;
    } finally {
      this.active--;
      run.end = performance.now();
    }
  };

  of(imageId: string): Run[] {
    return this.runs.filter((r) => r.imageId === imageId);
  }
}

function chain(imageId: string, stages: readonly StageName[] = STAGES, run = 1): StageJob[] {
  return stages.map((stage) => ({ imageId, run, stage }));
}

export function jobQueueContract(name: string, makeQueue: MakeQueue, opts: JobQueueContractOptions = {}): void {
  test(`JobQueue contract: ${name}`, { timeout: 180_000 }, async (t) => {
    if (!(await requireServices(t, opts.services ?? []))) return;
    const opened: JobQueue[] = [];
    const fresh = async (retry: RetryPolicy = { attempts: 3, backoffMs: 50 }, logger?: Logger) => {
      const q = await makeQueue(retry, logger);
      opened.push(q);
      return q;
    };
    const processAll = async (q: JobQueue, rec: Recorder, concurrency = 2) => {
      for (const stage of STAGES) await q.process(stage, concurrency, rec.handler);
    };
    t.after(async () => {
      for (const q of opened) await q.close(1000).catch(() => undefined);
      await opts.teardown?.();
    });

    await t.test('a chain runs its jobs in order, each after the previous completed, with the job data', async () => {
      const q = await fresh();
      const rec = new Recorder(() => sleep(20));
      await processAll(q, rec);
      const img = randomUUID();
      const jobs = chain(img).map((j, i) => (i === 0 ? { ...j, traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' } : j));
      await q.enqueueChain(jobs);
      await waitFor('the whole chain', () => rec.of(img).filter((r) => r.ok).length === 4);
      const runs = rec.of(img);
      assert.deepEqual(runs.map((r) => r.stage), [...STAGES]);
      for (let i = 1; i < runs.length; i++) assert.ok(runs[i]!.start >= runs[i - 1]!.end!, `${runs[i]!.stage} started before ${runs[i - 1]!.stage} ended`);
      assert.deepEqual(runs[0]!.job, jobs[0]);
      assert.deepEqual(runs.map((r) => [r.attempt, r.maxAttempts]), STAGES.map(() => [1, 3]));
    });

    await t.test('stats: depth and oldest waiting age per stage; ping answers', async () => {
      const q = await fresh();
      await q.ping();
      const idle = await q.stats();
      assert.deepEqual(idle.map((x) => x.stage), [...STAGES]);
      // Nobody processes unpack yet: two chains wait in its queue.
      const imgs = [randomUUID(), randomUUID()];
      for (const img of imgs) await q.enqueueChain(chain(img));
      await sleep(300);
      const waiting = await q.stats();
      const unpack = waiting.find((x) => x.stage === 'unpack')!;
      assert.equal(unpack.waiting, 2);
      assert.equal(unpack.active, 0);
      assert.ok(unpack.oldestWaitingSeconds >= 0.25 && unpack.oldestWaitingSeconds < 30, `oldest ${unpack.oldestWaitingSeconds}`);
      assert.equal(waiting.find((x) => x.stage === 'inspect')!.waiting, 0, 'later stages wait for their chain, not in the queue');
      const rec = new Recorder();
      await processAll(q, rec);
      await waitFor('both chains', () => rec.runs.filter((r) => r.ok).length === 2 * STAGES.length, 20_000);
      const done = await q.stats();
      for (const x of done) assert.deepEqual([x.waiting, x.oldestWaitingSeconds], [0, 0], x.stage);
    });

    await t.test('enqueue→process latency (diagnostic)', async () => {
      const q = await fresh();
      const rec = new Recorder();
      await q.process('unpack', 1, rec.handler);
      const samples: number[] = [];
      for (let i = 0; i < 25; i++) {
        const img = randomUUID();
        const t0 = performance.now();
        await q.enqueueChain(chain(img, ['unpack']));
        await waitFor('the job', () => rec.of(img).length === 1, 10_000, 0.2);
        if (i >= 5) samples.push(rec.of(img)[0]!.start - t0);
      }
      samples.sort((a, b) => a - b);
      const p = (x: number) => samples[Math.min(samples.length - 1, Math.floor(x * samples.length))]!.toFixed(2);
      // And stage-to-stage hand-off inside a chain.
      const rec2 = new Recorder();
      await processAll(q, rec2, 1);
      const img = randomUUID();
      await q.enqueueChain(chain(img, ['inspect', 'checksum', 'promote']));
      await waitFor('the chain', () => rec2.of(img).filter((r) => r.ok).length === 3);
      const hops = rec2.of(img).slice(1).map((r, i) => r.start - rec2.of(img)[i]!.end!);
      opts.report?.(`${name}: enqueue→handler p50 ${p(0.5)} ms, p90 ${p(0.9)} ms, max ${p(1)} ms; stage→next stage ${hops.map((h) => h.toFixed(2)).join(', ')} ms`);
    });

    await t.test('enqueueing the same chain again is a no-op (while running and after completion)', async () => {
      const q = await fresh();
      const rec = new Recorder(() => sleep(30));
      await processAll(q, rec);
      const img = randomUUID();
      await q.enqueueChain(chain(img));
      await q.enqueueChain(chain(img));
      await waitFor('the first stage to start', () => rec.of(img).length >= 1);
      await q.enqueueChain(chain(img));
      await waitFor('the chain to finish', () => rec.of(img).filter((r) => r.ok).length >= 4);
      await q.enqueueChain(chain(img));
      await q.enqueueChain(chain(img, ['checksum', 'promote'])); // a tail of it: also known
      await sleep(300);
      assert.deepEqual(rec.of(img).map((r) => r.stage), [...STAGES], 'each job ran exactly once');
      // A new run of the same image is new work.
      await q.enqueueChain(chain(img, STAGES, 2));
      await waitFor('run 2', () => rec.of(img).filter((r) => r.job.run === 2 && r.ok).length === 4);
    });

    await t.test('a failing job is retried with exponential backoff, then the chain continues', async () => {
      const q = await fresh({ attempts: 3, backoffMs: 100 });
      const rec = new Recorder(async (job, ctx) => {
        if (job.stage === 'inspect' && ctx.attempt < 3) throw new Error(`injected failure on attempt ${ctx.attempt}`);
      });
      await processAll(q, rec);
      const img = randomUUID();
      await q.enqueueChain(chain(img));
      await waitFor('the chain to finish', () => rec.of(img).filter((r) => r.ok).length === 4, 15_000);
      const inspect = rec.of(img).filter((r) => r.stage === 'inspect');
      assert.deepEqual(inspect.map((r) => [r.attempt, r.maxAttempts, r.ok]), [[1, 3, false], [2, 3, false], [3, 3, true]]);
      const gap1 = inspect[1]!.start - inspect[0]!.end!;
      const gap2 = inspect[2]!.start - inspect[1]!.end!;
      assert.ok(gap1 >= 90, `first retry after ${gap1.toFixed(0)} ms, expected about 100`);
      assert.ok(gap2 >= 180, `second retry after ${gap2.toFixed(0)} ms, expected about 200`);
      assert.deepEqual(rec.of(img).filter((r) => r.ok).map((r) => r.stage), [...STAGES]);
    });

    await t.test('a job that defers itself runs again after its delay, no attempt counted, then the chain continues', async () => {
      const q = await fresh({ attempts: 2, backoffMs: 30 });
      let deferrals = 0;
      const rec = new Recorder(async (job, ctx) => {
        if (job.stage === 'inspect' && ctx.attempt === 2 && deferrals < 3) { deferrals++; throw new DeferJobError(150); }
        if (job.stage === 'inspect' && ctx.attempt === 1) throw new Error('injected failure');
      });
      await processAll(q, rec);
      const img = randomUUID();
      await q.enqueueChain(chain(img));
      await waitFor('the chain to finish', () => rec.of(img).filter((r) => r.ok).length === 4, 15_000);
      const inspect = rec.of(img).filter((r) => r.stage === 'inspect');
      assert.deepEqual(inspect.map((r) => r.attempt), [1, 2, 2, 2, 2], 'the last attempt ran four times: three deferrals did not use it up');
      for (let i = 2; i < inspect.length; i++) {
        const gap = inspect[i]!.start - inspect[i - 1]!.end!;
        assert.ok(gap >= 140, `deferred run ${i} after ${gap.toFixed(0)} ms, expected about 150`);
      }
      assert.deepEqual(rec.of(img).filter((r) => r.ok).map((r) => r.stage), [...STAGES]);
    });

    await t.test('when the last attempt fails, the rest of the chain does not run (other chains do)', async () => {
      const q = await fresh({ attempts: 2, backoffMs: 30 });
      const bad = randomUUID();
      const good = randomUUID();
      const rec = new Recorder(async (job) => {
        if (job.imageId === bad && job.stage === 'inspect') throw new Error('always fails');
      });
      await processAll(q, rec);
      await q.enqueueChain(chain(bad));
      await q.enqueueChain(chain(good));
      await waitFor('the good chain', () => rec.of(good).filter((r) => r.ok).length === 4);
      await waitFor('both attempts of the bad stage', () => rec.of(bad).filter((r) => r.stage === 'inspect').length === 2);
      await sleep(500);
      assert.deepEqual(rec.of(bad).map((r) => [r.stage, r.attempt, r.ok]), [['unpack', 1, true], ['inspect', 1, false], ['inspect', 2, false]]);
      await q.enqueueChain(chain(bad)); // a failed chain's ids are still known
      await sleep(200);
      assert.equal(rec.of(bad).length, 3);
    });

    await t.test('a pool never runs more than its concurrency at once', async () => {
      const q = await fresh();
      const rec = new Recorder(() => sleep(80));
      await q.process('unpack', 3, rec.handler);
      const imgs = Array.from({ length: 9 }, () => randomUUID());
      await Promise.all(imgs.map((img) => q.enqueueChain(chain(img, ['unpack']))));
      await waitFor('all nine jobs', () => rec.runs.filter((r) => r.ok).length === 9);
      assert.equal(rec.maxActive, 3);
    });

    await t.test('jobs wait for a pool: enqueued before process() was called, they run once it is', async () => {
      const q = await fresh();
      const img = randomUUID();
      await q.enqueueChain(chain(img, ['unpack', 'inspect']));
      await sleep(150);
      const rec = new Recorder(async (_job, ctx) => {
        await ctx.reportProgress(50);
        await ctx.reportProgress(100);
      });
      await q.process('unpack', 1, rec.handler);
      await waitFor('unpack', () => rec.of(img).length === 1);
      await sleep(100);
      assert.equal(rec.of(img).length, 1, 'inspect has no pool yet');
      await q.process('inspect', 1, rec.handler);
      await waitFor('inspect', () => rec.of(img).filter((r) => r.ok).length === 2);
    });

    await t.test('close waits for running jobs and then takes no more', async () => {
      const q = await fresh();
      let finished = false;
      const rec = new Recorder(async () => {
        await sleep(400);
        finished = true;
      });
      await q.process('unpack', 1, rec.handler);
      const img = randomUUID();
      await q.enqueueChain(chain(img, ['unpack', 'inspect']));
      await waitFor('the job to start', () => rec.runs.length === 1);
      const t0 = performance.now();
      await q.close(10_000);
      assert.equal(finished, true, 'close returned before the running job finished');
      assert.ok(performance.now() - t0 >= 300);
      await assert.rejects(q.enqueueChain(chain(randomUUID(), ['unpack'])));
    });

    await t.test('close gives up on a job that outlives the grace period, naming its image', async () => {
      const lines: Record<string, unknown>[] = [];
      const logger = pino({ level: 'warn' }, { write: (line: string) => { lines.push(JSON.parse(line)); } });
      const q = await fresh(undefined, logger);
      const rec = new Recorder(() => sleep(3000));
      await q.process('unpack', 1, rec.handler);
      const img = randomUUID();
      await q.enqueueChain(chain(img, ['unpack']));
      await waitFor('the job to start', () => rec.runs.length === 1);
      const t0 = performance.now();
      await q.close(200);
      const took = performance.now() - t0;
      assert.ok(took < 2000, `close took ${took.toFixed(0)} ms with a 200 ms grace`);
      const cut = lines.find((line) => /still running/.test(String(line.msg)));
      assert.deepEqual(cut?.image_ids, [img], JSON.stringify(lines));
    });
  });
}
