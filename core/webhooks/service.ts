/**
 * What the /v2/webhooks API does, scoped to the caller's project: a subscription belongs to the
 * project that created it; another project's is "not found". Admins see every project's and may
 * subscribe to every image (all_projects). Secrets are returned only by create and rotate.
 */
import { randomUUID } from 'node:crypto';
import { isAdmin, type Caller } from '../caller.js';
import { fail } from '../error-catalog.js';
import { LIMITS } from '../limits.js';
import { hasRole } from '../policy.js';
import type { JobKind } from '../jobs.js';
import type { JobQueue } from '../ports.js';
import type { DeliveryJob } from './jobs.js';
import type { Delivery, Subscription, WebhookFilters, WebhookStore } from './model.js';
import { EVENT_PATTERN, WEBHOOK_EVENTS } from './model.js';
import { eventMatches } from './matching.js';
import type { SecretBox } from './secret-box.js';
import { rotateSecrets, sealNewSecret } from './secrets.js';

export interface WebhookInput {
  url?: string;
  events?: string[];
  description?: string;
  filters?: WebhookFilters;
  enabled?: boolean;
  all_projects?: boolean;
}

/** Checks a URL for the webhooks (egress rules, https unless allow-listed); throws a PirError. */
export type UrlCheck = (url: string) => void;

export const webhookNotFound = (id: string) => fail('webhook_not_found', `Webhook ${id} was not found. List your project's webhooks with GET /v2/webhooks.`);

export class WebhookService {
  /** When each webhook was pinged by this process in the last minute (pings are paced: each is outbound traffic). */
  private readonly recentPings = new Map<string, number[]>();

  constructor(
    private readonly store: WebhookStore,
    private readonly box: SecretBox,
    private readonly queue: JobQueue,
    private readonly kind: JobKind<DeliveryJob>,
    private readonly checkUrl: UrlCheck,
    private readonly rotationGraceSeconds: number,
    private readonly pingsPerMinute = 5,
  ) {}

  async create(caller: Caller, input: WebhookInput): Promise<{ sub: Subscription; secret: string }> {
    requireWriter(caller);
    if (!input.url) throw fail('webhook_invalid', 'A webhook needs a url.');
    if (!input.events?.length) throw fail('webhook_invalid', 'A webhook needs events, e.g. ["image.active"] or ["image.*"].');
    this.checkUrl(input.url);
    checkEvents(input.events);
    if (input.all_projects && !isAdmin(caller)) throw fail('webhook_all_projects_admin_only', 'Only an admin may subscribe to every project\'s images (all_projects).');
    const checked = { ...input, url: input.url, events: input.events };
    return this.store.exclusive(`project:${caller.project_id}`, `project ${caller.project_id}'s webhooks`, () => this.createCounted(caller, checked));
  }

  /** Counted and inserted while no other create of the project runs: the cap holds exactly. */
  private async createCounted(caller: Caller, input: WebhookInput & { url: string; events: string[] }): Promise<{ sub: Subscription; secret: string }> {
    const held = await this.store.listSubscriptions(caller.project_id, LIMITS.webhooksPerProject);
    if (held.length >= LIMITS.webhooksPerProject) {
      throw fail('too_many_webhooks', `Project ${caller.project_id} already has ${held.length} webhooks, the most a project may have; delete one (or widen one's events and filters) first.`);
    }
    const now = new Date().toISOString();
    const id = randomUUID();
    const { secret, stored } = sealNewSecret(this.box, id, now);
    const sub: Subscription = {
      id, project_id: caller.project_id, user_id: caller.user_id, all_projects: Boolean(input.all_projects),
      url: input.url, events: dedupe(input.events), description: input.description ?? '', filters: input.filters ?? {},
      enabled: input.enabled ?? true, disabled_reason: null, disabled_at: null, consecutive_failures: 0,
      secrets: [stored], created_at: now, updated_at: now,
    };
    await this.store.createSubscription(sub);
    return { sub, secret };
  }

  async list(caller: Caller, limit: number, marker?: string): Promise<Subscription[]> {
    requireReader(caller);
    // As Glance's markers: one that is not in the caller's list is an error, not a silent partial page.
    if (marker !== undefined) {
      const at = await this.store.getSubscription(marker);
      if (!at || !canSee(caller, at)) {
        throw fail('bad_marker', `Query parameter 'marker' must be the id of a webhook you can list (got '${marker.slice(0, 64)}'); start again without it.`);
      }
    }
    if (isAdmin(caller)) return this.store.listSubscriptions(null, limit, marker);
    // The project's all-projects subscriptions (made by an admin scoped to it) are left out, page by page.
    const page: Subscription[] = [];
    for (let after = marker; page.length < limit;) {
      const batch = await this.store.listSubscriptions(caller.project_id, limit, after);
      page.push(...batch.filter((sub) => canSee(caller, sub)));
      if (batch.length < limit) break;
      after = batch[batch.length - 1]!.id;
    }
    return page.slice(0, limit);
  }

  async get(caller: Caller, id: string): Promise<Subscription> {
    requireReader(caller);
    const sub = await this.store.getSubscription(id);
    if (!sub || !canSee(caller, sub)) throw webhookNotFound(id);
    return sub;
  }

  async update(caller: Caller, id: string, input: WebhookInput): Promise<Subscription> {
    await this.get(caller, id);
    return this.store.exclusive(`webhook:${id}`, `webhook ${id}`, () => this.updateNow(caller, id, input));
  }

  /** Read again and written while no other change of the webhook runs: concurrent changes all land. */
  private async updateNow(caller: Caller, id: string, input: WebhookInput): Promise<Subscription> {
    const sub = await this.get(caller, id);
    requireWriter(caller);
    if (input.url !== undefined) this.checkUrl(input.url);
    if (input.events !== undefined) {
      if (!input.events.length) throw fail('webhook_invalid', 'events may not be empty; delete the webhook or disable it instead.');
      checkEvents(input.events);
    }
    if (input.all_projects && !isAdmin(caller)) throw fail('webhook_all_projects_admin_only', 'Only an admin may subscribe to every project\'s images (all_projects).');
    const next: Subscription = {
      ...sub,
      ...(input.url !== undefined ? { url: input.url } : {}),
      ...(input.events !== undefined ? { events: dedupe(input.events) } : {}),
      ...(input.description !== undefined ? { description: input.description } : {}),
      ...(input.filters !== undefined ? { filters: input.filters } : {}),
      ...(input.all_projects !== undefined ? { all_projects: input.all_projects } : {}),
      updated_at: new Date().toISOString(),
    };
    if (input.enabled === true && !sub.enabled) Object.assign(next, { enabled: true, disabled_reason: null, disabled_at: null, consecutive_failures: 0 });
    if (input.enabled === false && sub.enabled) Object.assign(next, { enabled: false, disabled_reason: 'Disabled by its owner.', disabled_at: next.updated_at });
    await this.store.replaceSubscription(next);
    return next;
  }

  async remove(caller: Caller, id: string): Promise<void> {
    await this.get(caller, id);
    requireWriter(caller);
    await this.store.deleteSubscription(id);
  }

  async rotate(caller: Caller, id: string): Promise<{ sub: Subscription; secret: string }> {
    await this.get(caller, id);
    requireWriter(caller);
    // Concurrent rotations each keep the secrets the others added (every returned secret signs).
    return this.store.exclusive(`webhook:${id}`, `webhook ${id}`, () => this.rotateNow(caller, id));
  }

  private async rotateNow(caller: Caller, id: string): Promise<{ sub: Subscription; secret: string }> {
    const sub = await this.get(caller, id);
    const now = new Date().toISOString();
    const { secret, stored } = sealNewSecret(this.box, id, now);
    const next = { ...sub, secrets: rotateSecrets(sub.secrets, stored, this.rotationGraceSeconds), updated_at: now };
    await this.store.replaceSubscription(next);
    return { sub: next, secret };
  }

  /** Sends a `webhook.ping` event to the endpoint (even when disabled it is refused: enable first). */
  async ping(caller: Caller, id: string): Promise<Delivery> {
    const sub = await this.get(caller, id);
    requireWriter(caller);
    if (!sub.enabled) throw fail('webhook_disabled', `Webhook ${id} is disabled (${sub.disabled_reason ?? 'by its owner'}); update it with enabled: true first.`);
    this.pacePing(id);
    const now = new Date().toISOString();
    const eventId = randomUUID();
    const delivery: Delivery = {
      id: `msg_${eventId.replace(/-/g, '')}`, subscription_id: id, event_id: eventId, event_type: 'webhook.ping',
      payload: JSON.stringify({ type: 'webhook.ping', timestamp: now, data: { webhook_id: id } }),
      traceparent: null, created_at: now, status: 'pending', redeliveries: 0, attempts: [],
    };
    await this.store.addDelivery(delivery);
    await this.queue.enqueue(this.kind, delivery.id, { delivery_id: delivery.id });
    return delivery;
  }

  private pacePing(id: string): void {
    const now = Date.now();
    const recent = (this.recentPings.get(id) ?? []).filter((at) => now - at < 60_000);
    if (recent.length >= this.pingsPerMinute) {
      const wait = Math.max(1, Math.ceil((recent[0]! + 60_000 - now) / 1000));
      const error = fail('webhook_ping_too_soon', `Webhook ${id} was pinged ${recent.length} times in the last minute, the most it may be; ping it again in ${wait} s.`);
      error.retryAfterSeconds = wait;
      throw error;
    }
    // Webhooks with no ping in the last minute are forgotten: the map stays small.
    for (const [other, times] of this.recentPings) if (now - times[times.length - 1]! >= 60_000) this.recentPings.delete(other);
    this.recentPings.set(id, [...recent, now]);
  }

  async deliveries(caller: Caller, id: string, limit: number, marker?: string): Promise<Delivery[]> {
    await this.get(caller, id);
    if (marker !== undefined && (await this.store.getDelivery(marker))?.subscription_id !== id) {
      throw fail('bad_marker', `Query parameter 'marker' must be the id of one of this webhook's deliveries (got '${marker.slice(0, 64)}'); start again without it.`);
    }
    return this.store.listDeliveries(id, limit, marker);
  }

  /** Sends a delivery again (same webhook-id, fresh timestamp and signatures), on a new run of the schedule. */
  async redeliver(caller: Caller, id: string, deliveryId: string): Promise<Delivery> {
    const sub = await this.get(caller, id);
    requireWriter(caller);
    const delivery = await this.store.getDelivery(deliveryId);
    if (!delivery || delivery.subscription_id !== id) throw fail('delivery_not_found', `Delivery ${deliveryId} of webhook ${id} was not found; list them with GET /v2/webhooks/${id}/deliveries.`);
    if (!sub.enabled) throw fail('webhook_disabled', `Webhook ${id} is disabled (${sub.disabled_reason ?? 'by its owner'}); update it with enabled: true first.`);
    if (delivery.status === 'pending') throw fail('delivery_pending', `Delivery ${deliveryId} is still being attempted; see its next_attempt_at.`);
    const n = await this.store.restartDelivery(deliveryId);
    const restarted = n > 0 ? await this.store.getDelivery(deliveryId) : null;
    // Gone meanwhile (its webhook deleted, or its record past retention): nothing to redeliver.
    if (!restarted) throw fail('delivery_not_found', `Delivery ${deliveryId} of webhook ${id} was not found; list them with GET /v2/webhooks/${id}/deliveries.`);
    await this.queue.enqueue(this.kind, `${deliveryId}.r${n}`, { delivery_id: deliveryId });
    return restarted;
  }
}

/** Each entry names an event type, or a pattern that matches at least one: a typo would make a webhook that never fires. */
function checkEvents(events: string[]): void {
  for (const e of events) {
    const known = EVENT_PATTERN.test(e) && WEBHOOK_EVENTS.some((type) => eventMatches([e], type));
    if (!known) throw fail('webhook_invalid', `'${e.slice(0, 64)}' is not an event type PIR sends to webhooks; use ${WEBHOOK_EVENTS.join(', ')}, or the patterns image.member.* and image.*.`);
  }
}

function dedupe(values: string[]): string[] {
  return [...new Set(values)];
}

/**
 * A project's own webhooks, to its members and readers. One that hears every project's images
 * (all_projects, made by an admin scoped to the project) is an admin's alone: its URL, deliveries
 * and secret would carry other projects' private images to whoever could change them.
 */
function canSee(caller: Caller, sub: Subscription): boolean {
  return isAdmin(caller) || (sub.project_id === caller.project_id && !sub.all_projects);
}

/** Looking at a project's webhooks (their URLs, filters, deliveries) needs the reader role. */
function requireReader(caller: Caller): void {
  if (hasRole(caller, 'reader')) return; // member and admin imply reader
  throw fail('policy_denied', `Policy does not allow reading webhooks: your roles (${caller.roles.join(', ') || 'none'}) do not include reader.`);
}

/** Managing a project's webhooks (their URLs, secrets, deliveries) needs the member role; readers only look. */
function requireWriter(caller: Caller): void {
  if (hasRole(caller, 'member')) return; // admin implies member
  throw fail('policy_denied', `Policy does not allow managing webhooks: your roles (${caller.roles.join(', ') || 'none'}) only read; it needs the member role.`);
}
