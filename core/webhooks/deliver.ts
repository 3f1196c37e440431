/**
 * One delivery attempt, per Standard Webhooks: POST the stored body with webhook-id (the
 * delivery id, the same on every attempt), webhook-timestamp and webhook-signature (one `v1,`
 * signature per live secret), through the SSRF-safe egress client (the address is resolved and
 * checked again on every attempt). At most 64 KiB of the answer is read.
 *
 * - 2xx: delivered; the endpoint's failure run resets.
 * - 410: the endpoint is disabled (its owner sees why); no retry.
 * - timeout, connection error, 408, 429, 5xx: retried on the schedule, never sooner than a
 *   Retry-After the receiver sent; after the last attempt the delivery failed for good.
 * - any other answer (3xx, 4xx) or a refused address: failed for good at once.
 * A delivery that failed for good counts toward disabling the endpoint.
 *
 * Per-endpoint limit: at most N deliveries in flight to one subscription (counted by the
 * EndpointLimiter: in the process when embedded, across every worker in distributed mode); a
 * job that finds it full is deferred (not an attempt), so one slow receiver never holds the
 * workers the others need.
 */
import type { Logger } from 'pino';
import { DeferJobError, PermanentJobError, RetryLaterError } from '../jobs.js';
import type { JobContext } from '../ports.js';
import type { EgressClient } from '../../infra/egress/egress-client.js';
import { EgressError } from '../../infra/egress/egress-client.js';
import type { EndpointLimiter } from './endpoint-limiter.js';
import type { DeliveryJob } from './jobs.js';
import { scheduledDelay } from './jobs.js';
import type { Attempt, Delivery, Subscription, WebhookStore } from './model.js';
import type { SecretBox } from './secret-box.js';
import { liveSecrets } from './secrets.js';
import { signatureHeader } from './signing.js';

/** What an attempt needs of a delivery. */
type SentDelivery = Pick<Delivery, 'id' | 'subscription_id' | 'event_type' | 'payload' | 'traceparent'>;

export const MAX_RESPONSE_BYTES = 64 * 1024;
const MAX_RETRY_AFTER_MS = 86_400_000;
const RETRYABLE_ERRORS = new Set(['timeout', 'connection_failed', 'dns_failed']);

export interface DeliverySettings {
  retrySchedule: number[];
  disableAfterFailures: number;
  perEndpointConcurrency: number;
}

interface Outcome {
  status: number | null;
  error: string | null;
  retryAfterMs: number | null;
  latencyMs: number;
}

export class WebhookDeliverer {
  constructor(
    private readonly store: WebhookStore,
    private readonly box: SecretBox,
    private readonly egress: EgressClient,
    private readonly settings: DeliverySettings,
    private readonly log: Logger,
    private readonly limiter: EndpointLimiter,
  ) {}

  handle = async (job: DeliveryJob, ctx: JobContext): Promise<void> => {
    // A snapshot's fields never change after fan-out; a delivery record goes only with its
    // subscription, which is read (fresh) below either way.
    const delivery: SentDelivery | null = job.snapshot ? { id: job.delivery_id, ...job.snapshot } : await this.store.getDelivery(job.delivery_id);
    if (!delivery) throw new PermanentJobError(`delivery ${job.delivery_id} no longer exists`);
    const sub = await this.store.getSubscription(delivery.subscription_id);
    if (!sub) throw new PermanentJobError(`webhook ${delivery.subscription_id} was deleted`);
    if (!sub.enabled) {
      await this.store.recordAttempt(delivery.id, attemptRecord(ctx.attempt, null, `not sent: the webhook is disabled (${sub.disabled_reason ?? 'by its owner'})`, 0, null), 'failed');
      throw new PermanentJobError(`webhook ${sub.id} is disabled`);
    }
    const lease = await this.limiter.tryAcquire(sub.id, this.settings.perEndpointConcurrency);
    if (!lease) throw new DeferJobError(100 + Math.floor(Math.random() * 400));
    try {
      await this.attempt(delivery, sub, ctx);
    } finally {
      await lease.release();
    }
  };

  private async attempt(delivery: SentDelivery, sub: Subscription, ctx: JobContext): Promise<void> {
    const outcome = await this.send(delivery, sub);
    const at = new Date().toISOString();
    const fields = { webhook: sub.id, delivery_id: delivery.id, event: delivery.event_type, attempt: ctx.attempt, status: outcome.status, error: outcome.error, latency_ms: outcome.latencyMs };
    if (outcome.status !== null && outcome.status >= 200 && outcome.status <= 299) {
      await this.store.recordAttempt(delivery.id, attemptRecord(ctx.attempt, outcome.status, null, outcome.latencyMs, null), 'delivered');
      if (sub.consecutive_failures > 0) await this.store.recordSuccess(sub.id);
      this.log.debug(fields, 'webhook delivered');
      return;
    }
    if (outcome.status === 410) {
      await this.store.recordAttempt(delivery.id, attemptRecord(ctx.attempt, 410, null, outcome.latencyMs, null), 'failed');
      await this.store.disable(sub.id, `The endpoint answered 410 Gone at ${at}; update the webhook with enabled: true to resume.`, at);
      this.log.info(fields, 'webhook endpoint answered 410: disabled');
      throw new PermanentJobError('the endpoint answered 410 Gone');
    }
    const retryable = outcome.status === null ? RETRYABLE_ERRORS.has(outcome.error?.split(':')[0] ?? '') : outcome.status === 408 || outcome.status === 429 || outcome.status >= 500;
    if (retryable && ctx.attempt < ctx.maxAttempts) {
      const delay = Math.max(scheduledDelay(this.settings.retrySchedule, ctx.attempt), outcome.retryAfterMs ?? 0);
      const next = new Date(Date.now() + delay).toISOString();
      await this.store.recordAttempt(delivery.id, attemptRecord(ctx.attempt, outcome.status, outcome.error, outcome.latencyMs, next), 'pending');
      this.log.debug({ ...fields, retry_in_ms: delay }, 'webhook attempt failed; retrying');
      throw new RetryLaterError(`attempt ${ctx.attempt} failed (${outcome.status ?? outcome.error})`, delay);
    }
    await this.store.recordAttempt(delivery.id, attemptRecord(ctx.attempt, outcome.status, outcome.error, outcome.latencyMs, null), 'failed');
    const reason = `${this.settings.disableAfterFailures} deliveries in a row failed; the last (${delivery.id}, ${at}) got ${outcome.status !== null ? `HTTP ${outcome.status}` : outcome.error}. Fix the endpoint, then update the webhook with enabled: true.`;
    const disabled = await this.store.recordFailure(sub.id, this.settings.disableAfterFailures, reason, at);
    this.log.info({ ...fields, disabled }, 'webhook delivery failed for good');
    throw new PermanentJobError(`delivery failed for good (${outcome.status ?? outcome.error})`);
  }

  private async send(delivery: SentDelivery, sub: Subscription): Promise<Outcome> {
    const timestamp = Math.floor(Date.now() / 1000);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': 'PIR-Webhooks/1',
      'webhook-id': delivery.id,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': signatureHeader(liveSecrets(this.box, sub), delivery.id, timestamp, delivery.payload),
    };
    if (delivery.traceparent) headers.traceparent = delivery.traceparent;
    const started = performance.now();
    try {
      const response = await this.egress.request(sub.url, {
        method: 'POST', headers, body: Buffer.from(delivery.payload), maxBytes: Number.MAX_SAFE_INTEGER, followRedirects: false, anyStatus: true,
      });
      await readAtMost(response.body, MAX_RESPONSE_BYTES);
      return { status: response.status, error: null, latencyMs: Math.round(performance.now() - started), ...retryAfterOf(response) };
    } catch (error) {
      const text = error instanceof EgressError ? `${error.code}: ${error.message}` : `connection_failed: ${(error as Error).message}`;
      return { status: null, error: text, retryAfterMs: null, latencyMs: Math.round(performance.now() - started) };
    }
  }
}

function attemptRecord(attempt: number, status: number | null, error: string | null, latency: number, next: string | null): Attempt {
  return { attempt, at: new Date().toISOString(), status, error, latency_ms: latency, next_attempt_at: next };
}

/** Reads up to `limit` bytes of the answer and drops the rest (and the connection with it). */
async function readAtMost(body: NodeJS.ReadableStream & { destroy(): void }, limit: number): Promise<void> {
  let seen = 0;
  try {
    for await (const chunk of body) {
      seen += (chunk as Buffer).length;
      if (seen >= limit) break;
    }
  } catch {
    // The status is what counts; a body cut short does not change it.
  } finally {
    body.destroy();
  }
}

function retryAfterOf(response: { headers: Record<string, string | string[] | undefined> }): { retryAfterMs: number | null } {
  const raw = response.headers['retry-after'];
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (!value) return { retryAfterMs: null };
  const ms = /^\d+$/.test(value.trim()) ? Number(value.trim()) * 1000 : Date.parse(value) - Date.now();
  return { retryAfterMs: Number.isFinite(ms) && ms > 0 ? Math.min(ms, MAX_RETRY_AFTER_MS) : null };
}
