/**
 * The in-process side of declared job kinds (core/jobs.ts) for MemoryJobQueue: one waiting list
 * per kind, pools started by work(), retries by the kind's policy, PermanentJobError ends a job
 * as failed. Jobs of durable kinds are written to the journal (SQLite) when enqueued and removed
 * when they finish, so the jobs pending at a crash or a restart run again once work() starts.
 */
import type { Logger } from 'pino';
import { DeferJobError, PermanentJobError, checkJobId, retryDelay, type EnqueueOptions, type JobHandler, type JobKind } from '../../core/jobs.js';
import type { JobContext } from '../../core/ports.js';
import type { JobJournal } from './sqlite-job-journal.js';

type Finished = 'completed' | 'failed';

interface Entry {
  id: string;
  kind: JobKind<unknown>;
  data: unknown;
  attemptsMade: number;
  state: 'delayed' | 'waiting' | 'active';
  timer: NodeJS.Timeout | null;
  /** Left in the journal by an earlier run of the process: it may have started then. */
  fromJournal?: boolean;
}

interface Pool {
  handler: JobHandler<unknown>;
  concurrency: number;
  active: number;
}

export class MemoryKindJobs {
  private readonly live = new Map<string, Entry>();
  private readonly finished = new Map<string, Finished>();
  private readonly waiting = new Map<string, Entry[]>();
  private readonly pools = new Map<string, Pool[]>();
  readonly running = new Set<Promise<void>>();
  private closed = false;

  constructor(private readonly logger: Logger, private readonly journal: JobJournal | null, private readonly rememberFinished: number) {}

  async enqueue<T>(kind: JobKind<T>, id: string, data: T, options: EnqueueOptions = {}): Promise<void> {
    if (this.closed) throw new Error('job queue is closed');
    checkJobId(id);
    if (this.live.has(id) || this.finished.has(id)) return;
    const delay = Math.max(0, options.delayMs ?? 0);
    const copy = JSON.parse(JSON.stringify(data)) as unknown; // as a real queue would: no shared references
    if (kind.durable && this.journal) {
      if (!this.journal.add({ id, kind: kind.name, data: copy, attemptsMade: 0, runAt: Date.now() + delay })) return;
      await this.journal.durable(); // enqueued means on disk
      if (this.closed || this.live.has(id) || this.finished.has(id)) return;
    }
    this.schedule({ id, kind: kind as JobKind<unknown>, data: copy, attemptsMade: 0, state: 'delayed', timer: null }, delay);
  }

  async work<T>(kind: JobKind<T>, concurrency: number, handler: JobHandler<T>): Promise<void> {
    if (this.closed) throw new Error('job queue is closed');
    if (!(concurrency >= 1)) throw new Error('concurrency must be at least 1');
    const pools = this.pools.get(kind.name) ?? [];
    pools.push({ handler: handler as JobHandler<unknown>, concurrency: Math.floor(concurrency), active: 0 });
    this.pools.set(kind.name, pools);
    if (kind.durable && this.journal && pools.length === 1) {
      // Jobs left by the previous run of this process (a restart or a crash).
      for (const row of this.journal.pending(kind.name)) {
        if (this.live.has(row.id)) continue;
        this.schedule({ id: row.id, kind: kind as JobKind<unknown>, data: row.data, attemptsMade: row.attemptsMade, state: 'delayed', timer: null, fromJournal: true }, Math.max(0, row.runAt - Date.now()));
      }
    }
    this.drain(kind.name);
  }

  close(): void {
    this.closed = true;
    for (const entry of this.live.values()) {
      if (entry.timer) clearTimeout(entry.timer);
      entry.timer = null;
    }
  }

  stateOf(id: string): Entry['state'] | Finished | null {
    return this.live.get(id)?.state ?? this.finished.get(id) ?? null;
  }

  private schedule(entry: Entry, delayMs: number): void {
    this.live.set(entry.id, entry);
    entry.state = 'delayed';
    if (delayMs <= 0) return this.makeWaiting(entry);
    entry.timer = setTimeout(() => {
      entry.timer = null;
      if (!this.closed) this.makeWaiting(entry);
    }, delayMs);
  }

  private makeWaiting(entry: Entry): void {
    entry.state = 'waiting';
    const list = this.waiting.get(entry.kind.name) ?? [];
    list.push(entry);
    this.waiting.set(entry.kind.name, list);
    this.drain(entry.kind.name);
  }

  private drain(kindName: string): void {
    if (this.closed) return;
    const list = this.waiting.get(kindName) ?? [];
    while (list.length > 0) {
      const pool = (this.pools.get(kindName) ?? []).find((p) => p.active < p.concurrency);
      if (!pool) return;
      this.start(pool, list.shift()!);
    }
  }

  private start(pool: Pool, entry: Entry): void {
    entry.state = 'active';
    pool.active++;
    const ctx: JobContext = { attempt: entry.attemptsMade + 1, maxAttempts: entry.kind.retry.attempts, reportProgress: async () => {}, redelivered: entry.fromJournal === true };
    const run = Promise.resolve()
      .then(() => pool.handler(JSON.parse(JSON.stringify(entry.data)) as unknown, ctx))
      .then(() => this.finish(entry, 'completed'), (err: unknown) => this.attemptFailed(entry, err))
      .catch((err: unknown) => this.logger.error({ err, job_id: entry.id }, 'job bookkeeping failed'))
      .finally(() => {
        pool.active--;
        this.running.delete(run);
        this.drain(entry.kind.name);
      });
    this.running.add(run);
  }

  private attemptFailed(entry: Entry, err: unknown): void {
    if (err instanceof DeferJobError) {
      if (entry.kind.durable) this.journal?.reschedule(entry.id, entry.attemptsMade, Date.now() + err.delayMs);
      if (!this.closed) this.schedule(entry, err.delayMs);
      return;
    }
    entry.attemptsMade++;
    const log = { err, job_id: entry.id, kind: entry.kind.name, attempt: entry.attemptsMade, max_attempts: entry.kind.retry.attempts };
    if (!(err instanceof PermanentJobError) && entry.attemptsMade < entry.kind.retry.attempts) {
      const delay = retryDelay(entry.kind, entry.attemptsMade, err);
      this.logger.debug({ ...log, retry_in_ms: delay }, 'job failed; retrying');
      if (entry.kind.durable) this.journal?.reschedule(entry.id, entry.attemptsMade, Date.now() + delay);
      if (this.closed) return;
      this.schedule(entry, delay);
      return;
    }
    this.logger.warn(log, 'job failed for good');
    this.finish(entry, 'failed');
  }

  private finish(entry: Entry, how: Finished): void {
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = null;
    if (entry.kind.durable) this.journal?.remove(entry.id);
    this.live.delete(entry.id);
    this.finished.set(entry.id, how);
    if (this.finished.size > this.rememberFinished) {
      const oldest = this.finished.keys().next().value;
      if (oldest !== undefined) this.finished.delete(oldest);
    }
  }
}
