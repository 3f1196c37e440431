/**
 * JobQueue on BullMQ (Redis, through ioredis).
 *
 * - One queue per stage: `pir-unpack`, `pir-inspect`, `pir-checksum`, `pir-promote`, under the
 *   key prefix (default 'pir').
 * - enqueueChain() adds one flow: the last job is the root parent and each earlier job is the
 *   only child of the next one, so BullMQ runs them first to last. Every job has its
 *   deterministic id (stageJobId), so adding the same chain again is a no-op (BullMQ ignores an
 *   id it already has, whatever its state, while it is kept: `keepSeconds`, default 24 h).
 *   Children carry failParentOnFailure: when a job fails for good, its parent fails too, and so
 *   on up the chain: the rest of the chain never runs.
 * - attempts/backoff come from the RetryPolicy (exponential: backoffMs * 2^(attempt-1)).
 * - process() starts a Worker with that concurrency. A worker that dies (SIGKILL) leaves its
 *   job locked; the lock lapses after lockDurationMs and the stalled-job checker of any live
 *   worker (every stalledIntervalMs) puts the job back: recovered in about lock + interval.
 * - close(graceMs) stops taking jobs and waits for the running ones; past the grace it drops the
 *   connections: the unfinished jobs' locks lapse and another worker picks them up.
 * - Declared job kinds (core/jobs.ts): one queue per kind, `pir-<name>`; the kind's retry policy
 *   is a custom backoff strategy of its workers (so RetryLaterError's own delay is honoured);
 *   PermanentJobError becomes BullMQ's UnrecoverableError: the job shows as failed at once.
 */
import { DelayedError, FlowProducer, Queue, UnrecoverableError, Worker } from 'bullmq';
import type { FlowJob, Job, JobsOptions } from 'bullmq';
import { Redis } from 'ioredis';
import { bullmqTelemetryOption } from '../telemetry/bullmq-telemetry.js';
import pino from 'pino';
import type { Logger } from 'pino';
import { STAGES, type StageName } from '../../schemas/image.js';
import { stageJobId } from '../../core/ports.js';
import type { JobContext, JobQueue, QueueStats, RetryPolicy, StageHandler, StageJob } from '../../core/ports.js';
import { DeferJobError, PermanentJobError, checkJobId, retryDelay, type EnqueueOptions, type JobHandler, type JobKind } from '../../core/jobs.js';
import { redisRetryDelay } from '../redis-reconnect.js';

export interface BullmqJobQueueOptions {
  redisUrl: string;
  /** Redis key prefix (default 'pir'). */
  prefix?: string;
  retry: RetryPolicy;
  /** Job lock lifetime, renewed while the job runs (default 10 000 ms). */
  lockDurationMs?: number;
  /** How often workers look for jobs whose lock lapsed (default 5000 ms). */
  stalledIntervalMs?: number;
  /** How many times a job may stall (its worker died) before it fails (default 1, BullMQ's). */
  maxStalledCount?: number;
  /** How long finished jobs (and so their ids, for deduplication) are kept (default 86 400 s). */
  keepSeconds?: number;
  /** At most this many finished jobs are kept per queue and outcome (default 100 000). */
  keepCount?: number;
  logger?: Logger;
}

export function stageQueueName(stage: StageName): string {
  return `pir-${stage}`;
}

const DEFAULT_GRACE_MS = 30_000;

export function kindQueueName(kind: JobKind<unknown>): string {
  return `pir-${kind.name}`;
}

interface RunningWorker {
  stage: string;
  worker: Worker;
  connection: Redis;
  /** Stage pools: the images of the jobs running now. */
  running?: Set<string>;
}

export class BullmqJobQueue implements JobQueue {
  private readonly prefix: string;
  private readonly retry: RetryPolicy;
  private readonly logger: Logger;
  private readonly connection: Redis;
  private readonly flow: FlowProducer;
  private readonly workers: RunningWorker[] = [];
  private readonly jobOpts: JobsOptions;
  private readonly queues = new Map<string, Queue>();
  private closing: Promise<void> | null = null;
  private readonly stalledOutListeners: ((job: StageJob) => void)[] = [];
  /** Queue handles for stats(), made on first use; they share the producer's connection. */
  private statQueues: Map<StageName, Queue> | null = null;

  constructor(private readonly opts: BullmqJobQueueOptions) {
    if (!(opts.retry.attempts >= 1)) throw new Error('retry.attempts must be at least 1');
    this.prefix = opts.prefix ?? 'pir';
    this.retry = opts.retry;
    this.logger = opts.logger ?? pino({ name: 'pir-bullmq', level: 'warn' });
    // Enqueueing fails after a few reconnect attempts instead of waiting for Redis forever: the
    // caller (the dispatcher's event handler) then fails and the event is delivered again.
    this.connection = this.redis('producer', 5);
    this.flow = new FlowProducer({ connection: this.connection, prefix: this.prefix, ...bullmqTelemetryOption() });
    this.flow.on('error', (err) => this.logger.error({ err }, 'bullmq flow producer error'));
    const keep = { age: opts.keepSeconds ?? 86_400, count: opts.keepCount ?? 100_000 };
    this.jobOpts = {
      attempts: Math.floor(opts.retry.attempts),
      backoff: { type: 'exponential', delay: Math.max(0, opts.retry.backoffMs) },
      removeOnComplete: keep,
      removeOnFail: keep,
    };
  }

  private get maxStalledCount(): number {
    return this.opts.maxStalledCount ?? 1;
  }

  async enqueueChain(jobs: StageJob[]): Promise<void> {
    if (this.closing) throw new Error('job queue is closed');
    if (jobs.length === 0) return;
    const ids = jobs.map((j) => stageJobId(j));
    if (new Set(ids).size !== ids.length) throw new Error(`enqueueChain: repeated job id in chain ${ids.join(', ')}`);
    for (const id of ids) {
      // BullMQ's rules for custom ids.
      if (id.includes(':')) throw new Error(`job id ${id} must not contain ':'`);
      if (/^\d+$/.test(id)) throw new Error(`job id ${id} must not be an integer`);
    }
    let node: FlowJob | undefined;
    for (let i = 0; i < jobs.length; i++) {
      const job = jobs[i]!;
      const last = i === jobs.length - 1;
      const data: StageJob = { imageId: job.imageId, run: job.run, stage: job.stage, ...(job.traceparent ? { traceparent: job.traceparent } : {}), ...(job.fused ? { fused: true } : {}) };
      const next: FlowJob = {
        name: job.stage,
        queueName: stageQueueName(job.stage),
        data,
        opts: { ...this.jobOpts, jobId: ids[i]!, ...(last ? {} : { failParentOnFailure: true }) },
        ...(node ? { children: [node] } : {}),
      } as FlowJob;
      node = next;
    }
    await this.flow.add(node!);
  }

  onStageJobStalledOut(listener: (job: StageJob) => void): void {
    this.stalledOutListeners.push(listener);
  }

  async process(stage: StageName, concurrency: number, handler: StageHandler): Promise<void> {
    if (this.closing) throw new Error('job queue is closed');
    if (!(concurrency >= 1)) throw new Error('concurrency must be at least 1');
    const connection = this.redis(`worker-${stage}`);
    const maxAttempts = Math.floor(this.retry.attempts);
    // The images this pool's jobs are for, named when a stop cuts them off.
    const running = new Set<string>();
    const worker = new Worker<StageJob>(
      stageQueueName(stage),
      async (job: Job<StageJob>, token?: string) => {
        const ctx: JobContext = {
          attempt: job.attemptsMade + 1,
          redelivered: job.attemptsStarted > job.attemptsMade + 1 || job.stalledCounter > 0,
          maxAttempts: job.opts.attempts ?? maxAttempts,
          reportProgress: async (percent: number) => {
            await job.updateProgress(Math.max(0, Math.min(100, percent)));
          },
        };
        running.add(job.data.imageId);
        try {
          await handler({ ...job.data }, ctx);
        } catch (err) {
          // Not an attempt: run again later (a stage waiting for an unreachable store).
          if (err instanceof DeferJobError) {
            await job.moveToDelayed(Date.now() + err.delayMs, token);
            throw new DelayedError();
          }
          throw err;
        } finally {
          running.delete(job.data.imageId);
        }
      },
      this.workerOptions(connection, concurrency),
    );
    worker.on('error', (err) => {
      if (!this.closing) this.logger.error({ err, stage }, 'bullmq worker error');
    });
    worker.on('failed', (job, err) => {
      if (!job) return;
      const fields = { err, job_id: job.id, image_id: job.data.imageId, stage, attempt: job.attemptsMade, max_attempts: job.opts.attempts };
      // BullMQ fails a job itself (a deferred failure, never retried) when it stalled too often,
      // or when the earlier job of its chain failed for good (that one was reported already).
      if (failedByBullmq(job, err)) {
        if (this.stalledOut(job)) {
          this.logger.error(fields, 'stage job stalled too often (the workers running it died or froze); its chain is dropped and the import resumed');
          for (const listener of this.stalledOutListeners) listener({ ...job.data });
        } else {
          this.logger.debug(fields, 'stage job dropped with its chain: an earlier stage failed for good');
        }
      } else if (job.attemptsMade >= (job.opts.attempts ?? 1)) {
        this.logger.error(fields, 'stage job failed for good; the rest of its chain is dropped');
      } else {
        this.logger.warn(fields, 'stage job failed; retrying');
      }
    });
    this.workers.push({ stage, worker, connection, running });
    await worker.waitUntilReady();
  }

  /**
   * Counts from Redis. The oldest waiting job's age counts from when its job was created: for a
   * stage after the first, that is when its chain was enqueued (BullMQ keeps no "ready since").
   */
  async stats(): Promise<QueueStats[]> {
    await this.ping();
    this.statQueues ??= new Map(STAGES.map((stage) => [stage, new Queue(stageQueueName(stage), { connection: this.connection, prefix: this.prefix, ...bullmqTelemetryOption() })]));
    const now = Date.now();
    return Promise.all(STAGES.map(async (stage) => {
      const queue = this.statQueues!.get(stage)!;
      const counts = await queue.getJobCounts('wait', 'prioritized', 'delayed', 'active');
      const [oldest] = await queue.getJobs(['wait'], 0, 0, true);
      return {
        stage,
        waiting: (counts.wait ?? 0) + (counts.prioritized ?? 0) + (counts.delayed ?? 0),
        active: counts.active ?? 0,
        oldestWaitingSeconds: oldest ? Math.max(0, now - oldest.timestamp) / 1000 : 0,
      };
    }));
  }

  /**
   * Fails at once while the connection is down, instead of waiting for ioredis to reconnect; a
   * connection being made is given up to 2 s (its error, if it fails, is the answer).
   */
  async ping(): Promise<void> {
    const c = this.connection;
    if (c.status === 'connecting' || c.status === 'connect') {
      await new Promise<void>((resolve, reject) => {
        const done = (error?: Error) => {
          clearTimeout(timer);
          c.off('ready', onReady);
          c.off('error', done);
          if (error) reject(error); else resolve();
        };
        const onReady = () => done();
        const timer = setTimeout(() => done(new Error('Redis did not answer within 2000 ms')), 2000);
        c.once('ready', onReady);
        c.once('error', done);
      });
    }
    if (c.status !== 'ready') throw new Error(`not connected to Redis (connection ${c.status})`);
    await c.ping();
  }

  async enqueue<T>(kind: JobKind<T>, id: string, data: T, options: EnqueueOptions = {}): Promise<void> {
    if (this.closing) throw new Error('job queue is closed');
    checkJobId(id);
    let queue = this.queues.get(kind.name);
    if (!queue) {
      queue = new Queue(kindQueueName(kind as JobKind<unknown>), { connection: this.connection, prefix: this.prefix, ...bullmqTelemetryOption() });
      queue.on('error', (err) => this.logger.error({ err, kind: kind.name }, 'bullmq queue error'));
      this.queues.set(kind.name, queue);
    }
    await queue.add(kind.name, data, {
      jobId: id,
      attempts: Math.floor(kind.retry.attempts),
      backoff: { type: 'pir-kind' },
      delay: Math.max(0, options.delayMs ?? 0),
      removeOnComplete: this.jobOpts.removeOnComplete,
      removeOnFail: this.jobOpts.removeOnFail,
    });
  }

  async work<T>(kind: JobKind<T>, concurrency: number, handler: JobHandler<T>, onAbandoned?: (data: T) => Promise<void>): Promise<void> {
    if (this.closing) throw new Error('job queue is closed');
    if (!(concurrency >= 1)) throw new Error('concurrency must be at least 1');
    const connection = this.redis(`worker-${kind.name}`);
    const worker = new Worker<T>(
      kindQueueName(kind as JobKind<unknown>),
      async (job: Job<T>, token?: string) => {
        const ctx: JobContext = {
          attempt: job.attemptsMade + 1, maxAttempts: job.opts.attempts ?? kind.retry.attempts, reportProgress: async (p) => { await job.updateProgress(p); },
          // attemptsStarted counts a run whose worker died (the stalled job taken again) too.
          redelivered: job.attemptsStarted > job.attemptsMade + 1 || job.stalledCounter > 0,
        };
        try {
          await handler(job.data, ctx);
        } catch (err) {
          if (err instanceof PermanentJobError) throw new UnrecoverableError(err.message);
          if (err instanceof DeferJobError) {
            await job.moveToDelayed(Date.now() + err.delayMs, token);
            throw new DelayedError();
          }
          throw err;
        }
      },
      {
        ...this.workerOptions(connection, concurrency),
        settings: { backoffStrategy: (attemptsMade: number, _type?: string, err?: Error) => retryDelay(kind as JobKind<unknown>, attemptsMade, err) },
      },
    );
    worker.on('error', (err) => {
      if (!this.closing) this.logger.error({ err, kind: kind.name }, 'bullmq worker error');
    });
    worker.on('failed', (job, err) => {
      if (!job) return;
      const fields = { err, job_id: job.id, kind: kind.name, attempt: job.attemptsMade, max_attempts: job.opts.attempts };
      // BullMQ's own deferred failure of a job that stalled too often: no handler saw its end.
      if (failedByBullmq(job, err) && this.stalledOut(job)) {
        this.logger.error(fields, 'job stalled too often (the workers running it died or froze); given up');
        void onAbandoned?.(job.data).catch((error: Error) => this.logger.error({ ...fields, err: error }, 'recording an abandoned job failed'));
      } else if (err instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1)) {
        this.logger.warn(fields, 'job failed for good');
      } else {
        this.logger.debug(fields, 'job failed; retrying');
      }
    });
    this.workers.push({ stage: kind.name, worker: worker as Worker, connection });
    await worker.waitUntilReady();
  }

  /** For tests and diagnostics: the BullMQ state of a job of a kind ('completed', 'failed', …). */
  async stateOf(kind: JobKind<unknown>, id: string): Promise<string> {
    const queue = this.queues.get(kind.name) ?? new Queue(kindQueueName(kind), { connection: this.connection, prefix: this.prefix, ...bullmqTelemetryOption() });
    this.queues.set(kind.name, queue);
    return queue.getJobState(id);
  }

  /** A job BullMQ gave up because the workers running it died or froze past its lock too often. */
  private stalledOut(job: Job): boolean {
    return job.stalledCounter > this.maxStalledCount;
  }

  /** Worker settings shared by stage and job-kind workers: locks and stall recovery as the header says. */
  private workerOptions(connection: Redis, concurrency: number) {
    return {
      connection,
      prefix: this.prefix,
      ...bullmqTelemetryOption(),
      concurrency: Math.floor(concurrency),
      lockDuration: this.opts.lockDurationMs ?? 10_000,
      stalledInterval: this.opts.stalledIntervalMs ?? 5_000,
      maxStalledCount: this.maxStalledCount,
    };
  }

  close(graceMs: number = DEFAULT_GRACE_MS): Promise<void> {
    this.closing ??= (async () => {
      const closing = this.workers.map(async ({ stage, worker, connection, running }) => {
        const closed = worker.close().then(() => true, (err: unknown) => {
          this.logger.warn({ err, stage }, 'bullmq worker close failed');
          return true;
        });
        let timer: NodeJS.Timeout | undefined;
        const inTime = await Promise.race([closed, new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), graceMs); })]);
        clearTimeout(timer);
        if (!inTime) {
          this.logger.warn({ stage, ...(running ? { image_ids: [...running] } : {}), grace_ms: graceMs }, 'stage jobs still running after the grace period; dropping them (their locks lapse and another worker takes them)');
          worker.cancelAllJobs('shutdown');
          connection.disconnect();
          return;
        }
        await connection.quit().catch(() => connection.disconnect());
      });
      await Promise.all(closing);
      await Promise.all([...(this.statQueues?.values() ?? [])].map((q) => q.close().catch(() => undefined)));
      await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => undefined)));
      await this.flow.close().catch((err: unknown) => this.logger.warn({ err }, 'bullmq flow producer close failed'));
      await this.connection.quit().catch(() => this.connection.disconnect());
    })();
    return this.closing;
  }

  /** Workers need maxRetriesPerRequest: null (their blocking commands wait across reconnects). */
  private redis(role: string, maxRetriesPerRequest: number | null = null): Redis {
    const r = new Redis(this.opts.redisUrl, { maxRetriesPerRequest, enableReadyCheck: true, retryStrategy: redisRetryDelay, connectionName: `pir-${role}` });
    let last = 0;
    r.on('error', (err: Error) => {
      const now = Date.now();
      if (this.closing || now - last < 5000) return; // ioredis repeats while reconnecting
      last = now;
      this.logger.error({ err, role }, 'redis connection error');
    });
    return r;
  }
}

/** BullMQ's own deferred failure of a job (never retried, no handler saw it end): a stall-out, or a chain dropped after an earlier job. */
function failedByBullmq(job: Job, err: Error): boolean {
  return job.deferredFailure !== undefined && err.message === job.deferredFailure;
}
