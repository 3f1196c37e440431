/**
 * In-process JobQueue for embedded mode, with BullMQ's semantics (see infra/bullmq):
 *
 * - one waiting list per stage, served by the pools that process() started for that stage,
 *   each running at most `concurrency` jobs at once; jobs wait until a pool exists;
 * - a chain is a list of jobs where each one waits for the one before it to complete; when a
 *   job fails for good, the rest of its chain fails with it (BullMQ's failParentOnFailure);
 * - job ids are stageJobId(job): enqueueing a job whose id is waiting, running, completed or
 *   failed is a no-op (ids of finished jobs are remembered, up to `rememberFinished`, in LRU
 *   order); a new job that follows a known one waits for it, or starts at once if it completed;
 * - a handler that throws is retried after backoffMs * 2^(attempt-1) up to policy.attempts;
 *   one that throws DeferJobError runs again after its delay, no attempt counted.
 *
 * Jobs of declared kinds (enqueue/work, core/jobs.ts) are run by MemoryKindJobs.
 */
import pino from 'pino';
import type { Logger } from 'pino';
import { STAGES, type StageName } from '../../schemas/image.js';
import { stageJobId } from '../../core/ports.js';
import type { JobContext, JobQueue, QueueStats, RetryPolicy, StageHandler, StageJob } from '../../core/ports.js';
import { DeferJobError, type EnqueueOptions, type JobHandler, type JobKind } from '../../core/jobs.js';
import { MemoryKindJobs } from './memory-kind-jobs.js';
import type { JobJournal } from './sqlite-job-journal.js';

export interface MemoryJobQueueOptions {
  retry: RetryPolicy;
  /** How many finished job ids are remembered for deduplication (default 100 000). */
  rememberFinished?: number;
  logger?: Logger;
  /** Where jobs of durable kinds are kept until they finish (embedded mode: SQLite). */
  journal?: JobJournal;
}

type State = 'waiting-children' | 'waiting' | 'delayed' | 'active';
type Finished = 'completed' | 'failed';

interface Entry {
  id: string;
  job: StageJob;
  state: State;
  /** Attempts that have ended (failed); the running attempt is attemptsMade + 1. */
  attemptsMade: number;
  progress: number;
  /** When the job last became ready to run (ms since epoch), for the oldest-waiting age. */
  waitingSince: number;
  dependents: Entry[];
  timer: NodeJS.Timeout | null;
}

interface Pool {
  stage: StageName;
  handler: StageHandler;
  concurrency: number;
  active: number;
}

interface StageState {
  waiting: Entry[];
  pools: Pool[];
}

const DEFAULT_GRACE_MS = 30_000;

export class MemoryJobQueue implements JobQueue {
  private readonly live = new Map<string, Entry>();
  private readonly finished = new Map<string, Finished>();
  private readonly stages = new Map<StageName, StageState>();
  /** Running stage jobs, by the promise of their run (the images they are for, said at a cut-off stop). */
  private readonly running = new Map<Promise<void>, StageJob>();
  private readonly retry: RetryPolicy;
  private readonly rememberFinished: number;
  private readonly logger: Logger;
  private readonly kinds: MemoryKindJobs;
  private closed = false;

  constructor(opts: MemoryJobQueueOptions) {
    if (!(opts.retry.attempts >= 1)) throw new Error('retry.attempts must be at least 1');
    this.retry = { attempts: Math.floor(opts.retry.attempts), backoffMs: Math.max(0, opts.retry.backoffMs) };
    this.rememberFinished = opts.rememberFinished ?? 100_000;
    this.logger = opts.logger ?? pino({ name: 'pir-memory-queue', level: 'warn' });
    this.kinds = new MemoryKindJobs(this.logger, opts.journal ?? null, this.rememberFinished);
  }

  enqueue<T>(kind: JobKind<T>, id: string, data: T, options?: EnqueueOptions): Promise<void> {
    return this.kinds.enqueue(kind, id, data, options);
  }

  work<T>(kind: JobKind<T>, concurrency: number, handler: JobHandler<T>): Promise<void> {
    return this.kinds.work(kind, concurrency, handler);
  }

  async enqueueChain(jobs: StageJob[]): Promise<void> {
    if (this.closed) throw new Error('job queue is closed');
    const ids = jobs.map((j) => stageJobId(j));
    if (new Set(ids).size !== ids.length) throw new Error(`enqueueChain: repeated job id in chain ${ids.join(', ')}`);
    let prev: Entry | Finished | null = null;
    for (let i = 0; i < jobs.length; i++) {
      const id = ids[i]!;
      const known = this.live.get(id) ?? this.finished.get(id);
      if (known) {
        prev = known;
        continue;
      }
      const entry: Entry = { id, job: { ...jobs[i]! }, state: 'waiting-children', attemptsMade: 0, progress: 0, waitingSince: 0, dependents: [], timer: null };
      this.live.set(id, entry);
      if (prev === 'failed') {
        this.fail(entry);
        continue; // prev stays 'failed'
      }
      if (prev === null || prev === 'completed') this.makeWaiting(entry);
      else prev.dependents.push(entry);
      prev = entry;
    }
  }

  async process(stage: StageName, concurrency: number, handler: StageHandler): Promise<void> {
    if (this.closed) throw new Error('job queue is closed');
    if (!(concurrency >= 1)) throw new Error('concurrency must be at least 1');
    this.stage(stage).pools.push({ stage, handler, concurrency: Math.floor(concurrency), active: 0 });
    this.drain(stage);
  }

  async close(graceMs: number = DEFAULT_GRACE_MS): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.kinds.close();
    for (const entry of this.live.values()) {
      if (entry.timer) clearTimeout(entry.timer);
      entry.timer = null;
    }
    const running = [...this.running.keys(), ...this.kinds.running];
    if (running.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        Promise.allSettled(running).then(() => false),
        new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(true), graceMs); }),
      ]);
      clearTimeout(timer);
      if (timedOut) this.logger.warn({ running: this.running.size, image_ids: [...this.running.values()].map((job) => job.imageId), stages: [...this.running.values()].map((job) => job.stage), grace_ms: graceMs }, 'job queue closed with jobs still running');
    }
  }

  async stats(): Promise<QueueStats[]> {
    const now = Date.now();
    return STAGES.map((stage) => {
      const s = this.stages.get(stage);
      const oldest = s?.waiting[0]?.waitingSince;
      let delayed = 0;
      for (const entry of this.live.values()) if (entry.job.stage === stage && entry.state === 'delayed') delayed++;
      return {
        stage,
        waiting: (s?.waiting.length ?? 0) + delayed,
        active: s?.pools.reduce((n, p) => n + p.active, 0) ?? 0,
        oldestWaitingSeconds: oldest ? (now - oldest) / 1000 : 0,
      };
    });
  }

  /** In this process: up while open. */
  async ping(): Promise<void> {
    if (this.closed) throw new Error('job queue is closed');
  }

  /** For tests and diagnostics: the state of a job id, or null if unknown. */
  stateOf(id: string): string | null {
    return this.live.get(id)?.state ?? this.finished.get(id) ?? this.kinds.stateOf(id);
  }

  private stage(stage: StageName): StageState {
    let s = this.stages.get(stage);
    if (!s) {
      s = { waiting: [], pools: [] };
      this.stages.set(stage, s);
    }
    return s;
  }

  private makeWaiting(entry: Entry): void {
    entry.state = 'waiting';
    entry.waitingSince = Date.now();
    this.stage(entry.job.stage).waiting.push(entry);
    this.drain(entry.job.stage);
  }

  private drain(stageName: StageName): void {
    if (this.closed) return;
    const s = this.stage(stageName);
    while (s.waiting.length > 0) {
      const pool = s.pools.find((p) => p.active < p.concurrency);
      if (!pool) return;
      this.start(pool, s.waiting.shift()!);
    }
  }

  private start(pool: Pool, entry: Entry): void {
    entry.state = 'active';
    pool.active++;
    const ctx: JobContext = {
      attempt: entry.attemptsMade + 1,
      maxAttempts: this.retry.attempts,
      reportProgress: async (percent: number) => {
        entry.progress = Math.max(0, Math.min(100, percent));
      },
    };
    const run = Promise.resolve()
      .then(() => pool.handler({ ...entry.job }, ctx))
      .then(
        () => this.complete(entry),
        (err: unknown) => this.attemptFailed(entry, err),
      )
      .finally(() => {
        pool.active--;
        this.running.delete(run);
        this.drain(pool.stage);
      });
    this.running.set(run, entry.job);
  }

  private complete(entry: Entry): void {
    this.finish(entry, 'completed');
    for (const next of entry.dependents) {
      if (next.state === 'waiting-children') this.makeWaiting(next);
    }
    entry.dependents = [];
  }

  private attemptFailed(entry: Entry, err: unknown): void {
    if (err instanceof DeferJobError) {
      // Not an attempt: run again later (a stage waiting for an unreachable store).
      this.delay(entry, err.delayMs);
      return;
    }
    entry.attemptsMade++;
    const log = { err, job_id: entry.id, image_id: entry.job.imageId, stage: entry.job.stage, attempt: entry.attemptsMade, max_attempts: this.retry.attempts };
    if (entry.attemptsMade < this.retry.attempts) {
      const delay = this.retry.backoffMs * 2 ** (entry.attemptsMade - 1);
      this.logger.warn({ ...log, retry_in_ms: delay }, 'stage job failed; retrying');
      this.delay(entry, delay);
      return;
    }
    this.logger.error(log, 'stage job failed for good; dropping the rest of its chain');
    this.fail(entry);
  }

  private delay(entry: Entry, ms: number): void {
    entry.state = 'delayed';
    if (this.closed) return;
    entry.timer = setTimeout(() => {
      entry.timer = null;
      if (!this.closed) this.makeWaiting(entry);
    }, ms);
  }

  private fail(entry: Entry): void {
    this.finish(entry, 'failed');
    for (const next of entry.dependents) this.fail(next);
    entry.dependents = [];
  }

  private finish(entry: Entry, how: Finished): void {
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = null;
    this.live.delete(entry.id);
    this.finished.delete(entry.id);
    this.finished.set(entry.id, how);
    if (this.finished.size > this.rememberFinished) {
      const oldest = this.finished.keys().next().value;
      if (oldest !== undefined) this.finished.delete(oldest);
    }
  }
}
