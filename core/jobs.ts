/**
 * Job kinds beyond the pipeline stages (webhook deliveries now; copy-image and the like later).
 * A kind is declared once (core/job-kinds.ts) with its queue and retry policy; a process that
 * runs it binds a handler with JobQueue.work(). Both adapters honour the same rules:
 *
 * - a job id is given by the caller: enqueueing an id the queue still knows is a no-op;
 * - a handler that throws is retried after `retry.delayMs(attemptsMade, error)` until
 *   `retry.attempts` attempts have been made (RetryLaterError carries its own delay);
 * - a handler that throws PermanentJobError fails for good at once, and shows as failed
 *   (BullMQ: UnrecoverableError), never as completed;
 * - `durable` kinds survive a restart in embedded mode too (kept in SQLite until finished).
 */
import type { JobContext } from './ports.js';

export interface JobRetry {
  /** Total attempts, the first included. */
  attempts: number;
  /** Delay before the next attempt, after `attemptsMade` attempts failed with `error`. */
  delayMs(attemptsMade: number, error: unknown): number;
}

export interface JobKind<T> {
  /** Unique; also names the queue (`pir-<name>`). Letters, digits and '-' only. */
  name: string;
  retry: JobRetry;
  durable: boolean;
  /** Type witness only (never read): lets enqueue()/work() check the data type. */
  readonly _data?: T;
}

export type JobHandler<T> = (data: T, ctx: JobContext) => Promise<void>;

export interface EnqueueOptions {
  /** Run no sooner than this many ms from now. */
  delayMs?: number;
}

/** Ends a job for good: no further attempt, and the queue shows it as failed. */
export class PermanentJobError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PermanentJobError';
  }
}

/** Retry this job after `delayMs` (overrides the kind's schedule for this attempt). */
export class RetryLaterError extends Error {
  constructor(message: string, readonly delayMs: number) {
    super(message);
    this.name = 'RetryLaterError';
  }
}

/**
 * Not an attempt: run this job again after `delayMs` without counting it against the attempts
 * (a per-endpoint concurrency limit that is full, say). BullMQ: moveToDelayed + DelayedError.
 */
export class DeferJobError extends Error {
  constructor(readonly delayMs: number) {
    super(`deferred by ${delayMs} ms`);
    this.name = 'DeferJobError';
  }
}

/**
 * A retry schedule doubling from `firstMs` (after the first failed attempt) up to `capMs`: the
 * kinds' delayMs, e.g. 1 s, 2 s, 4 s … capped at a minute.
 */
export function exponentialBackoff(firstMs: number, capMs: number): JobRetry['delayMs'] {
  return (attemptsMade) => Math.min(capMs, firstMs * 2 ** Math.min(30, Math.max(0, attemptsMade - 1)));
}

/** The delay a kind's policy asks for, with RetryLaterError's own delay taking precedence. */
export function retryDelay(kind: JobKind<unknown>, attemptsMade: number, error: unknown): number {
  if (error instanceof RetryLaterError) return Math.max(0, error.delayMs);
  return Math.max(0, kind.retry.delayMs(attemptsMade, error));
}

const NAME = /^[a-z][a-z0-9-]{0,62}$/;

/** Start-up check of a set of kinds: valid, unique names that do not clash with the stage queues. */
export function checkJobKinds(kinds: JobKind<unknown>[], reserved: readonly string[]): void {
  const seen = new Set<string>(reserved);
  for (const kind of kinds) {
    if (!NAME.test(kind.name)) throw new Error(`job kind '${kind.name}': names are lower-case letters, digits and '-'`);
    if (seen.has(kind.name)) throw new Error(`job kind '${kind.name}' is declared twice (or clashes with a stage queue)`);
    if (!(kind.retry.attempts >= 1)) throw new Error(`job kind '${kind.name}': retry.attempts must be at least 1`);
    seen.add(kind.name);
  }
}

export function checkJobId(id: string): void {
  // BullMQ's rules for custom ids, applied in both modes so they behave alike.
  if (!id || id.includes(':')) throw new Error(`job id '${id}' must be non-empty and must not contain ':'`);
  if (/^\d+$/.test(id)) throw new Error(`job id ${id} must not be an integer`);
}
