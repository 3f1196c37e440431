/** The webhook delivery job kind: one job per delivery (and per redelivery), retried on the configured schedule. */
import type { JobKind } from '../jobs.js';
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
