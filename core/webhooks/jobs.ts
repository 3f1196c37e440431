/**
 * The webhook job kinds: one fan-out job per event (matching, the deliveries' records and their
 * first attempts, made together), and one delivery job per delivery that needs more than that
 * (a retry, an endpoint that was full or slow, a ping, a redelivery), retried on the schedule.
 */
import { exponentialBackoff, type JobKind } from '../jobs.js';
import type { PirEvent } from '../../schemas/events.js';
import type { Delivery } from './model.js';

/** What an attempt sends: the delivery's fields that never change after fan-out. */
export type DeliverySnapshot = Pick<Delivery, 'subscription_id' | 'event_type' | 'payload' | 'traceparent'>;

export interface DeliveryJob {
  delivery_id: string;
  /**
   * Set by the fan-out: the attempt sends this without reading the delivery record back (one
   * MongoDB-wire read fewer per delivery). Jobs without it (redeliveries, jobs queued by an
   * older version) read the record.
   */
  snapshot?: DeliverySnapshot;
  /**
   * The number this job's first try has in the delivery's run of the schedule (default 1): a
   * retry after the fan-out's first attempt starts at 2, so the schedule is not restarted.
   */
  first_attempt?: number;
}

/** One event to fan out; the job id is derived from the event id (a repeated event adds nothing). */
export interface FanoutJob {
  event: PirEvent;
}

/** Schedule entry for the retry after `attemptsMade` failed attempts, with ±10% jitter. */
export function scheduledDelay(schedule: number[], attemptsMade: number, random = Math.random): number {
  const base = schedule[Math.min(attemptsMade, schedule.length) - 1] ?? 0;
  return Math.round(base * (0.9 + 0.2 * random()));
}

export function webhookDeliveryKind(schedule: number[]): JobKind<DeliveryJob> {
  return {
    name: 'webhook-delivery',
    durable: true,
    retry: { attempts: schedule.length + 1, delayMs: (made) => scheduledDelay(schedule, made) },
  };
}

/**
 * The fan-out kind. A fan-out that fails (the store or the queue unreachable) is retried until it
 * runs, as the event bus would retry its handler: backoff from 1 s doubling to 30 s, for days.
 */
export const WEBHOOK_FANOUT_KIND: JobKind<FanoutJob> = {
  name: 'webhook-fanout',
  durable: true,
  retry: { attempts: 10_000, delayMs: exponentialBackoff(1000, 30_000) },
};
