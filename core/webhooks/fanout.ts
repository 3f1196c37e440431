/**
 * Fan-out: the event log's `pir-webhooks` consumer group turns each image event into one
 * delivery per subscription that wants it, recorded in the store (with the exact body every
 * attempt will send) and enqueued as a durable job. Events come at least once: the delivery id
 * is derived from (subscription, event), so a repeated event creates and enqueues nothing new.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Manifest } from '../manifest.js';
import type { EventBus, JobQueue } from '../ports.js';
import type { JobKind } from '../jobs.js';
import type { PirEvent } from '../../schemas/events.js';
import type { ImageDoc } from '../../schemas/image.js';
import type { DeliveryJob } from './jobs.js';
import { eventMatches, subscriberCaller, subscriptionWants } from './matching.js';
import { EventAudience, type GrantsOf } from '../event-audience.js';
import { WEBHOOK_EVENTS, type Delivery, type Subscription, type WebhookStore } from './model.js';

export const WEBHOOKS_GROUP = 'pir-webhooks';
const TYPES = new Set<string>(WEBHOOK_EVENTS);
const FANOUT_PARALLEL = 16;

export function deliveryId(subscriptionId: string, eventId: string): string {
  return `msg_${createHash('sha256').update(`${subscriptionId}/${eventId}`).digest('hex').slice(0, 32)}`;
}

/** The body: {type, timestamp, data}, data being the image as the API shows it. */
/** How an image is shown to subscribers: the API's image view, given by the composition root (core imports no API code). */
export type ImageViewFn = (doc: ImageDoc) => Record<string, unknown>;

export function eventBody(event: PirEvent, doc: ImageDoc | null, view: ImageViewFn): string {
  const data = doc ? view(doc) : { id: event.image_id, status: 'deleted', owner: (event.data as { owner?: string | null }).owner ?? null };
  return JSON.stringify({ type: event.type, timestamp: event.occurred_at, data });
}

export class WebhookFanout {
  constructor(
    private readonly store: WebhookStore,
    private readonly manifest: Manifest,
    private readonly queue: JobQueue,
    private readonly kind: JobKind<DeliveryJob>,
    private readonly log: Logger,
    private readonly view: ImageViewFn,
    /** The galleries shared with a project: images in them are delivered as if shared with it. */
    private readonly grantsOf?: GrantsOf,
  ) {}

  async start(bus: EventBus): Promise<void> {
    await bus.subscribe(WEBHOOKS_GROUP, (e) => this.handle(e));
  }

  async handle(event: PirEvent): Promise<void> {
    if (!TYPES.has(event.type)) return;
    const subs = await this.store.enabledSubscriptions();
    if (subs.length === 0) return;
    const doc = await this.manifest.get(event.image_id);
    const owner = doc?.owner ?? (event.data as { owner?: string | null }).owner ?? null;
    const body = eventBody(event, doc, this.view);
    const audience = new EventAudience(doc, this.grantsOf);
    const wanted: Subscription[] = [];
    for (const sub of subs) {
      if (event.occurred_at < sub.created_at) continue; // a new group reads the log from its start: only events after the subscription
      if (subscriptionWants(sub, event.type, doc, event.image_id, owner)) wanted.push(sub);
      else if (sub.enabled && eventMatches(sub.events, event.type)) {
        // Perhaps through a gallery shared with the project: its grants, read only then (a failed
        // read fails the event, which the bus delivers again).
        const grants = await audience.grantsFor(subscriberCaller(sub));
        if (grants.length > 0 && subscriptionWants(sub, event.type, doc, event.image_id, owner, grants)) wanted.push(sub);
      }
    }
    if (wanted.length === 0) return;
    const now = new Date().toISOString();
    const deliveries = wanted.map((sub): Delivery => ({
      id: deliveryId(sub.id, event.id), subscription_id: sub.id, event_id: event.id, event_type: event.type,
      payload: body, traceparent: event.traceparent ?? null, created_at: now,
      status: 'pending', redeliveries: 0, attempts: [],
    }));
    // One write records every subscriber's delivery (not one per subscriber).
    const existing = await this.store.addDeliveries(deliveries);
    // Several at a time: one event may fan out to many subscriptions, and the bus waits for the
    // handler (a slow one holds the partition and, on Kafka, the group's heartbeat).
    for (let i = 0; i < deliveries.length; i += FANOUT_PARALLEL) {
      await Promise.all(deliveries.slice(i, i + FANOUT_PARALLEL).map((d) => this.enqueue(d, existing.has(d.id), event)));
    }
  }

  private async enqueue(delivery: Delivery, existed: boolean, event: PirEvent): Promise<void> {
    // Enqueued again when the delivery exists but never ran (the previous try died in between).
    const current = existed ? await this.store.getDelivery(delivery.id) : delivery;
    if (current && current.status === 'pending' && current.attempts.length === 0 && current.redeliveries === 0) {
      const { subscription_id, event_type, payload, traceparent } = delivery;
      await this.queue.enqueue(this.kind, delivery.id, { delivery_id: delivery.id, snapshot: { subscription_id, event_type, payload, traceparent } });
    }
    this.log.debug({ image_id: event.image_id, event: event.type, webhook: delivery.subscription_id, delivery_id: delivery.id }, 'webhook delivery enqueued');
  }
}
