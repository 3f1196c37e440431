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
 *
 * The first attempt of a fan-out's deliveries is made by the fan-out job itself
 * (firstAttempts: one lease step, one fan-out, no job per delivery); a delivery job carries on
 * from there (retries), or takes the first attempt when the endpoint was full or slow.
 */
import { SpanStatusCode } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { DeferJobError, PermanentJobError, RetryLaterError } from '../jobs.js';
import { currentTraceparent, inClientSpan } from '../trace-context.js';
import type { JobContext } from '../ports.js';
import type { EgressClient } from '../../infra/egress/egress-client.js';
import { EgressError } from '../../infra/egress/egress-client.js';
import type { EndpointLimiter } from './endpoint-limiter.js';
import type { DeliveryJob } from './jobs.js';
import { scheduledDelay } from './jobs.js';
import { InFlightGate, SlowEndpoints } from './in-flight.js';
import type { Attempt, Delivery, DeliveryStatus, Subscription, WebhookStore } from './model.js';
import type { SecretBox } from './secret-box.js';
import { liveSecrets } from './secrets.js';
import { signatureHeader } from './signing.js';

/** What an attempt needs of a delivery. */
export type SentDelivery = Pick<Delivery, 'id' | 'subscription_id' | 'event_type' | 'payload' | 'traceparent'>;

export const MAX_RESPONSE_BYTES = 64 * 1024;
const MAX_RETRY_AFTER_MS = 86_400_000;
const RETRYABLE_ERRORS = new Set(['timeout', 'connection_failed', 'dns_failed']);

export interface DeliverySettings {
  retrySchedule: number[];
  disableAfterFailures: number;
  perEndpointConcurrency: number;
  /** Deliveries in flight in this process (delivery jobs and the fan-out's first attempts together). */
  concurrency?: number;
}

interface Outcome {
  status: number | null;
  error: string | null;
  retryAfterMs: number | null;
  latencyMs: number;
}

/** What an attempt's outcome asks for next (it is recorded already). */
type Verdict = { result: 'delivered' } | { result: 'retry'; delayMs: number; message: string } | { result: 'failed'; message: string };

/** A delivery the fan-out could not finish with its first attempt: a delivery job to enqueue. */
export interface FollowUp {
  job: DeliveryJob;
  delayMs: number;
}

export class WebhookDeliverer {
  private readonly gate: InFlightGate;
  private readonly slow = new SlowEndpoints();

  constructor(
    private readonly store: WebhookStore,
    private readonly box: SecretBox,
    private readonly egress: EgressClient,
    private readonly settings: DeliverySettings,
    private readonly log: Logger,
    private readonly limiter: EndpointLimiter,
  ) {
    this.gate = new InFlightGate(Math.max(1, settings.concurrency ?? 64));
  }

  /** Attempts in a delivery's run of the schedule: the first and one per retry delay. */
  get maxAttempts(): number {
    return this.settings.retrySchedule.length + 1;
  }

  /** A delivery job: one attempt, its subscription read fresh. */
  handle = async (job: DeliveryJob, ctx: JobContext): Promise<void> => {
    // A snapshot's fields never change after fan-out; a delivery record goes only with its
    // subscription, which is read (fresh) below either way.
    const delivery: SentDelivery | null = job.snapshot ? { id: job.delivery_id, ...job.snapshot } : await this.store.getDelivery(job.delivery_id);
    if (!delivery) throw new PermanentJobError(`delivery ${job.delivery_id} no longer exists`);
    const attempt = (job.first_attempt ?? 1) - 1 + ctx.attempt;
    const sub = await this.store.getSubscription(delivery.subscription_id);
    if (!sub) throw new PermanentJobError(`webhook ${delivery.subscription_id} was deleted`);
    if (!sub.enabled) {
      await this.store.recordAttempt(delivery.id, attemptRecord(attempt, null, `not sent: the webhook is disabled (${sub.disabled_reason ?? 'by its owner'})`, 0, null), 'failed');
      throw new PermanentJobError(`webhook ${sub.id} is disabled`);
    }
    const lease = await this.limiter.tryAcquire(sub.id, this.settings.perEndpointConcurrency);
    if (!lease) throw new DeferJobError(100 + Math.floor(Math.random() * 400));
    let verdict: Verdict;
    try {
      verdict = await this.gate.run(sub.project_id, () => this.attempt(delivery, sub, attempt, Math.min(ctx.maxAttempts, this.maxAttempts)));
    } finally {
      await lease.release();
    }
    if (verdict.result === 'retry') throw new RetryLaterError(verdict.message, verdict.delayMs);
    if (verdict.result === 'failed') throw new PermanentJobError(verdict.message);
  };

  /**
   * A delivery job the queue gave up (the workers sending it died or froze twice): recorded as
   * failed instead of pending for good, which would also refuse its redelivery. It may have
   * reached the receiver; its owner can send it again (POST …/redeliver, the same webhook-id).
   */
  abandoned = async (job: DeliveryJob): Promise<void> => {
    const delivery = await this.store.getDelivery(job.delivery_id);
    if (!delivery || delivery.status !== 'pending') return;
    const attempt = delivery.attempts.length + 1;
    const reason = 'not known to have been sent: the workers sending it died or froze twice; redeliver it with POST /v2/webhooks/{id}/deliveries/{delivery_id}/redeliver';
    await this.store.recordAttempt(delivery.id, attemptRecord(attempt, null, reason, 0, null), 'failed');
    this.log.error({ webhook: delivery.subscription_id, delivery_id: delivery.id }, 'webhook delivery given up: the workers sending it died or froze');
  };

  /**
   * The fan-out's first attempts, all at once: the endpoints' leases in one step, the attempts
   * concurrently (within this process's limit). A delivery's record is written once its first
   * attempt ended, with that attempt in it (one insert; the store groups those that end together)
   * rather than written before and updated after. What needs more becomes a delivery job, handed
   * to `followUp` as soon as it is known, its record written first: a retry (numbered from 2,
   * after the schedule's delay), an endpoint whose slots are all taken or that was slow lately (a
   * job from the first attempt), an attempt whose outcome could not be recorded (a job, which
   * sends again with the same webhook-id). `subs` were read for this event.
   */
  async firstAttempts(items: { delivery: Delivery; sub: Subscription }[], followUp: (f: FollowUp) => Promise<void>): Promise<void> {
    const slow = items.filter((i) => this.slow.has(i.sub.id));
    const inline = items.filter((i) => !slow.includes(i));
    const leases = await this.limiter.tryAcquireMany(inline.map((i) => i.sub.id), this.settings.perEndpointConcurrency);
    // Sent by a job (which waits for a slot): recorded as pending first, together.
    const deferred = [...slow, ...inline.filter((_, n) => !leases[n])].map((i) => i.delivery);
    const tasks: Promise<void>[] = [];
    if (deferred.length > 0) tasks.push(this.handOver(deferred, 0, followUp));
    inline.forEach(({ delivery, sub }, n) => {
      const lease = leases[n];
      if (!lease) return;
      tasks.push((async () => {
        let verdict: Verdict;
        try {
          const record = (attempt: Attempt, status: DeliveryStatus) => this.store.addAttempted({ ...delivery, status, attempts: [attempt] }).then(() => undefined);
          verdict = await this.gate.run(sub.project_id, () => this.attempt(delivery, sub, 1, this.maxAttempts, record));
        } catch (err) {
          await lease.release();
          this.log.warn({ err, webhook: sub.id, delivery_id: delivery.id }, 'webhook first attempt not recorded; a delivery job takes it');
          return this.handOver([delivery], scheduledDelay(this.settings.retrySchedule, 1), followUp);
        }
        await lease.release();
        if (verdict.result === 'retry') await followUp({ job: deliveryJob(delivery, 2), delayMs: verdict.delayMs });
      })());
    });
    const settled = await Promise.allSettled(tasks);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Records deliveries as pending (those that exist are kept as they are) and gives each to a delivery job. */
  private async handOver(deliveries: Delivery[], delayMs: number, followUp: (f: FollowUp) => Promise<void>): Promise<void> {
    await this.store.addDeliveries(deliveries);
    await Promise.all(deliveries.map((d) => followUp({ job: deliveryJob(d, 1), delayMs })));
  }

  /** Sends, records the attempt, and applies what its outcome means to the endpoint. */
  private async attempt(
    delivery: SentDelivery, sub: Subscription, attempt: number, maxAttempts: number,
    record = (a: Attempt, status: DeliveryStatus) => this.store.recordAttempt(delivery.id, a, status),
  ): Promise<Verdict> {
    const outcome = await this.send(delivery, sub, attempt);
    this.slow.note(sub.id, outcome.latencyMs);
    const at = new Date().toISOString();
    const fields = { webhook: sub.id, delivery_id: delivery.id, event: delivery.event_type, attempt, status: outcome.status, error: outcome.error, latency_ms: outcome.latencyMs };
    if (outcome.status !== null && outcome.status >= 200 && outcome.status <= 299) {
      await record(attemptRecord(attempt, outcome.status, null, outcome.latencyMs, null), 'delivered');
      if (sub.consecutive_failures > 0) await this.store.recordSuccess(sub.id);
      this.log.debug(fields, 'webhook delivered');
      return { result: 'delivered' };
    }
    if (outcome.status === 410) {
      await record(attemptRecord(attempt, 410, null, outcome.latencyMs, null), 'failed');
      await this.store.disable(sub.id, `The endpoint answered 410 Gone at ${at}; update the webhook with enabled: true to resume.`, at);
      this.log.info(fields, 'webhook endpoint answered 410: disabled');
      return { result: 'failed', message: 'the endpoint answered 410 Gone' };
    }
    const retryable = outcome.status === null ? RETRYABLE_ERRORS.has(outcome.error?.split(':')[0] ?? '') : outcome.status === 408 || outcome.status === 429 || outcome.status >= 500;
    if (retryable && attempt < maxAttempts) {
      const delay = Math.max(scheduledDelay(this.settings.retrySchedule, attempt), outcome.retryAfterMs ?? 0);
      const next = new Date(Date.now() + delay).toISOString();
      await record(attemptRecord(attempt, outcome.status, outcome.error, outcome.latencyMs, next), 'pending');
      this.log.debug({ ...fields, retry_in_ms: delay }, 'webhook attempt failed; retrying');
      return { result: 'retry', delayMs: delay, message: `attempt ${attempt} failed (${outcome.status ?? outcome.error})` };
    }
    await record(attemptRecord(attempt, outcome.status, outcome.error, outcome.latencyMs, null), 'failed');
    const reason = `${this.settings.disableAfterFailures} deliveries in a row failed; the last (${delivery.id}, ${at}) got ${outcome.status !== null ? `HTTP ${outcome.status}` : outcome.error}. Fix the endpoint, then update the webhook with enabled: true.`;
    const disabled = await this.store.recordFailure(sub.id, this.settings.disableAfterFailures, reason, at);
    this.log.info({ ...fields, disabled }, 'webhook delivery failed for good');
    return { result: 'failed', message: `delivery failed for good (${outcome.status ?? outcome.error})` };
  }

  /** One attempt, in a client span of the event's trace (the span's traceparent goes to the receiver). */
  private send(delivery: SentDelivery, sub: Subscription, attempt: number): Promise<Outcome> {
    const attributes = {
      'http.request.method': 'POST', 'pir.webhook.id': sub.id, 'pir.webhook.delivery_id': delivery.id,
      'pir.webhook.event': delivery.event_type, 'pir.webhook.attempt': attempt,
    };
    return inClientSpan(`POST webhook ${delivery.event_type}`, delivery.traceparent, attributes, async (span) => {
      const outcome = await this.post(delivery, sub);
      if (outcome.status !== null) span.setAttribute('http.response.status_code', outcome.status);
      if (outcome.status === null || outcome.status >= 400) span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.error ?? `HTTP ${outcome.status}` });
      return outcome;
    });
  }

  private async post(delivery: SentDelivery, sub: Subscription): Promise<Outcome> {
    const timestamp = Math.floor(Date.now() / 1000);
    let secrets: string[];
    try {
      secrets = liveSecrets(this.box, sub);
    } catch (error) {
      // Sealed under another key than this process's: nothing can be signed here (the job is tried again, perhaps elsewhere).
      this.log.error({ err: error, webhook: sub.id, delivery_id: delivery.id }, 'webhook secret cannot be opened with this process\'s PIR_WEBHOOK_SECRET_KEY: every process must have the same key; the delivery waits');
      throw error;
    }
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': 'PIR-Webhooks/1',
      'webhook-id': delivery.id,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': signatureHeader(secrets, delivery.id, timestamp, delivery.payload),
    };
    const traceparent = currentTraceparent() ?? delivery.traceparent;
    if (traceparent) headers.traceparent = traceparent;
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

/** The job that sends a delivery from attempt `firstAttempt` on, with what it sends (no record read back). */
export function deliveryJob(d: SentDelivery, firstAttempt: number): DeliveryJob {
  const { subscription_id, event_type, payload, traceparent } = d;
  return { delivery_id: d.id, snapshot: { subscription_id, event_type, payload, traceparent }, ...(firstAttempt > 1 ? { first_attempt: firstAttempt } : {}) };
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
