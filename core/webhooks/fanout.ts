/**
 * Fan-out: the event log's `pir-webhooks` consumer group turns each image event that an enabled
 * subscription may want (its type, after the subscription was created; read after the event
 * arrived) into one fan-out job (durable: BullMQ, or the embedded queue's journal), whose id is
 * derived from the event's, so an event that comes again adds nothing. The job finds the
 * subscriptions that want the event and makes every delivery's first attempt at once with the
 * subscriptions it just read (WebhookDeliverer.firstAttempts): each delivery's record is written
 * once its first attempt ended, with it; only what needs more (retries, full or slow endpoints)
 * becomes a delivery job.
 *
 * At least once: the job finishes only after every delivery was attempted and recorded, or
 * recorded and handed to a delivery job. A job that dies (a worker SIGKILLed) runs again
 * (ctx.attempt > 1 or ctx.redelivered): a delivery with a record is left to its delivery job if
 * still pending (the same job id, so enqueued once); one without a record (its attempt was cut
 * short) is attempted again, with the same webhook-id. A delivery whose record appears only after its first attempt ended
 * is not listed by GET …/deliveries while that attempt is in flight.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Manifest } from '../manifest.js';
import type { EventBus, JobContext, JobQueue } from '../ports.js';
import type { JobKind } from '../jobs.js';
import type { PirEvent } from '../../schemas/events.js';
import type { ImageDoc } from '../../schemas/image.js';
import { WEBHOOK_FANOUT_KIND, type DeliveryJob, type FanoutJob } from './jobs.js';
import { deliveryJob, type FollowUp } from './deliver.js';
import { eventMatches, membershipAudience, subscriberCaller, subscriptionWants } from './matching.js';
import { EventAudience, type GrantsOf } from '../event-audience.js';
import { FreshRead } from '../fresh-read.js';
import { WEBHOOK_EVENTS, type Delivery, type Subscription, type WebhookStore } from './model.js';

export const WEBHOOKS_GROUP = 'pir-webhooks';
const TYPES = new Set<string>(WEBHOOK_EVENTS);
const RECHECK_PARALLEL = 16;

export function deliveryId(subscriptionId: string, eventId: string): string {
  return `msg_${createHash('sha256').update(`${subscriptionId}/${eventId}`).digest('hex').slice(0, 32)}`;
}

export function fanoutJobId(eventId: string): string {
  return `fan_${createHash('sha256').update(eventId).digest('hex').slice(0, 32)}`;
}

/**
 * What a subscription may want, before the image is looked at: enabled, asking for the event's
 * type, and made before the event (a new group reads the log from its start: only events after
 * the subscription). The bus handler enqueues a job only if one may; the job checks the rest.
 */
function mayWant(sub: Subscription, event: PirEvent): boolean {
  return sub.enabled && event.occurred_at >= sub.created_at && eventMatches(sub.events, event.type);
}

/** How an image is shown to subscribers: the API's image view, given by the composition root (core imports no API code). */
export type ImageViewFn = (doc: ImageDoc) => Record<string, unknown>;

/** The body: {type, timestamp, data}, data being the image as the API shows it. */
export function eventBody(event: PirEvent, doc: ImageDoc | null, view: ImageViewFn): string {
  const data = doc ? view(doc) : { id: event.image_id, status: 'deleted', owner: (event.data as { owner?: string | null }).owner ?? null };
  return JSON.stringify({ type: event.type, timestamp: event.occurred_at, data });
}

/** What the fan-out needs of the deliverer (core/webhooks/deliver.ts). */
export interface FirstAttempts {
  firstAttempts(items: { delivery: Delivery; sub: Subscription }[], followUp: (f: FollowUp) => Promise<void>): Promise<void>;
}

export class WebhookFanout {
  /** The enabled subscriptions as of after the call; the bus handlers running together share one read. */
  private readonly subscriptions: FreshRead<Subscription[]>;

  constructor(
    private readonly store: WebhookStore,
    private readonly manifest: Manifest,
    private readonly queue: JobQueue,
    private readonly kind: JobKind<DeliveryJob>,
    private readonly log: Logger,
    private readonly view: ImageViewFn,
    private readonly deliverer: FirstAttempts,
    /** The galleries shared with a project: images in them are delivered as if shared with it. */
    private readonly grantsOf?: GrantsOf,
  ) {
    this.subscriptions = new FreshRead(() => this.store.enabledSubscriptions());
  }

  /** Consumes the event log and runs the fan-out jobs (`concurrency` at once in this process). */
  async start(bus: EventBus, concurrency: number): Promise<void> {
    await this.queue.work(WEBHOOK_FANOUT_KIND, concurrency, this.run);
    await bus.subscribe(WEBHOOKS_GROUP, (e) => this.handle(e));
  }

  /**
   * The bus handler: one durable job per event a subscription may want (a failure here fails the
   * handler: the bus retries). Most events have none (no subscription, or none for that type):
   * they cost a shared read instead of a job (in distributed mode three Redis round trips and a
   * worker's turn; embedded, two fsynced journal writes). The subscriptions are read after the
   * event arrived, so one created before the event happened is seen, as the job would see it.
   */
  async handle(event: PirEvent): Promise<void> {
    if (!TYPES.has(event.type)) return;
    const subs = await this.subscriptions.read();
    if (!subs.some((sub) => mayWant(sub, event))) return;
    await this.queue.enqueue(WEBHOOK_FANOUT_KIND, fanoutJobId(event.id), { event });
  }

  /** The fan-out job. */
  run = async ({ event }: FanoutJob, ctx?: JobContext): Promise<void> => {
    const subs = await this.store.enabledSubscriptions();
    if (subs.length === 0) return;
    const doc = await this.manifest.get(event.image_id);
    const owner = doc?.owner ?? (event.data as { owner?: string | null }).owner ?? null;
    const audience = new EventAudience(doc, this.grantsOf);
    const wanted: Subscription[] = [];
    for (const sub of subs) {
      if (!mayWant(sub, event)) continue;
      const membership = membershipAudience(event.type, event.data, sub.project_id, sub.all_projects || (owner !== null && owner === sub.project_id), doc);
      if (membership === 'not-told') continue;
      if (subscriptionWants(sub, event.type, doc, event.image_id, owner, [], membership === 'told')) wanted.push(sub);
      else {
        // Perhaps through a gallery shared with the project: its grants, read only then (a failed
        // read fails the job, which runs again).
        const grants = await audience.grantsFor(subscriberCaller(sub));
        if (grants.length > 0 && subscriptionWants(sub, event.type, doc, event.image_id, owner, grants)) wanted.push(sub);
      }
    }
    if (wanted.length === 0) return;
    const body = eventBody(event, doc, this.view);
    const now = new Date().toISOString();
    const deliveries = wanted.map((sub): Delivery => ({
      id: deliveryId(sub.id, event.id), subscription_id: sub.id, event_id: event.id, event_type: event.type,
      payload: body, traceparent: event.traceparent ?? null, created_at: now,
      status: 'pending', redeliveries: 0, attempts: [],
    }));
    const followUp = (f: FollowUp) => this.queue.enqueue(this.kind, f.job.delivery_id, f.job, { delayMs: f.delayMs });
    // This job ran before (its worker died, or it failed): what a delivery still needs is read
    // from its record, if it has one. Only then: a first run has no record to read.
    const existing = ctx && (ctx.attempt > 1 || ctx.redelivered) ? await this.recorded(deliveries) : new Map<string, Delivery>();
    const fresh = deliveries.filter((d) => !existing.has(d.id));
    const subOf = new Map(wanted.map((s) => [s.id, s]));
    await Promise.all([
      this.deliverer.firstAttempts(fresh.map((delivery) => ({ delivery, sub: subOf.get(delivery.subscription_id)! })), followUp),
      this.resume([...existing.values()], followUp),
    ]);
    this.log.debug({ image_id: event.image_id, event: event.type, deliveries: deliveries.length, resumed: existing.size }, 'webhook event fanned out');
  };

  /** The records these deliveries have (read one by one: only when a fan-out runs again). */
  private async recorded(deliveries: Delivery[]): Promise<Map<string, Delivery>> {
    const found = new Map<string, Delivery>();
    for (let i = 0; i < deliveries.length; i += RECHECK_PARALLEL) {
      await Promise.all(deliveries.slice(i, i + RECHECK_PARALLEL).map(async (d) => {
        const current = await this.store.getDelivery(d.id);
        if (current) found.set(d.id, current);
      }));
    }
    return found;
  }

  /**
   * Deliveries recorded by an earlier run of this job: each one still pending goes to its delivery
   * job, numbered after the attempts it has (enqueued once: a job it has already is left alone).
   */
  private async resume(records: Delivery[], followUp: (f: FollowUp) => Promise<void>): Promise<void> {
    await Promise.all(records.map(async (current) => {
      if (current.status !== 'pending' || current.redeliveries > 0) return; // done, or a redelivery's job has it
      const next = current.attempts.at(-1)?.next_attempt_at;
      await followUp({ job: deliveryJob(current, current.attempts.length + 1), delayMs: next ? Math.max(0, Date.parse(next) - Date.now()) : 0 });
    }));
  }
}
