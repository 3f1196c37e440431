/**
 * Keeps the cache in step with the upstream's image events: on Kafka, a consumer group of this
 * node's own (every node must see every event); otherwise a Standard Webhooks subscription the
 * cache registers upstream with an admin token, whose deliveries it verifies by signature.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { KafkaEventBus } from '../infra/kafka/kafka-event-bus.js';
import { sign } from '../core/webhooks/signing.js';
import type { Upstream } from './upstream.js';

/** What the cache does with one event: drop entries, forget decisions. */
export type EventSink = (type: string, imageId: string, data: Record<string, unknown>) => Promise<void>;

export const FOLLOWED_EVENTS = ['image.deleted', 'image.deactivated', 'image.reactivated', 'image.killed', 'image.active', 'image.updated', 'image.member.*'];

export async function followKafka(brokers: string[], topic: string, group: string, log: Logger, sink: EventSink): Promise<() => Promise<void>> {
  const bus = new KafkaEventBus({ brokers, topic, logger: log, clientId: 'pir-cache' });
  await bus.subscribe(group, async (event) => sink(event.type, event.image_id, event.data as Record<string, unknown>));
  log.info({ topic, group }, 'cache follows image events on Kafka');
  return () => bus.close();
}

interface Registration { id: string; secret: string; url: string }

/** Registers (or finds again, after a restart) this node's webhook upstream; returns its signing secret. */
export async function registerWebhook(upstream: Upstream, adminToken: string, callbackUrl: string, stateFile: string, log: Logger): Promise<string> {
  const saved = await readFile(stateFile, 'utf8').then((t) => JSON.parse(t) as Registration, () => null);
  if (saved && saved.url === callbackUrl) {
    const found = await upstream.call('GET', `/v2/webhooks/${encodeURIComponent(saved.id)}`, adminToken);
    const body = await found.json().catch(() => null) as { enabled?: boolean } | null;
    if (found.status === 200) {
      if (body?.enabled === false) await (await upstream.call('PATCH', `/v2/webhooks/${encodeURIComponent(saved.id)}`, adminToken, { enabled: true })).body?.cancel();
      log.info({ webhook_id: saved.id }, 'cache follows image events by webhook (registration kept)');
      return saved.secret;
    }
  }
  const created = await upstream.call('POST', '/v2/webhooks', adminToken, {
    url: callbackUrl, events: FOLLOWED_EVENTS, all_projects: true, description: `pir cache at ${callbackUrl}`,
  });
  const body = await created.json().catch(() => null) as { id?: string; secret?: string; message?: string } | null;
  if (created.status !== 201 || !body?.id || !body.secret) {
    throw new Error(`the upstream refused the cache's webhook (${created.status}: ${body?.message ?? 'no message'}); the cache needs an admin token upstream (PIR_CACHE_UPSTREAM_TOKEN) and its callback URL allowed by the upstream's egress rules (PIR_EGRESS_ALLOWLIST)`);
  }
  await mkdir(dirname(stateFile), { recursive: true });
  await writeFile(stateFile, JSON.stringify({ id: body.id, secret: body.secret, url: callbackUrl } satisfies Registration), { mode: 0o600 });
  log.info({ webhook_id: body.id }, 'cache follows image events by webhook (registered)');
  return body.secret;
}

const TOLERANCE_SECONDS = 300;

/**
 * The event in a Standard Webhooks delivery, or null when its signature is not one of `secret`
 * or its timestamp is more than five minutes off (a replay).
 */
export function verifiedDelivery(secret: string, headers: Record<string, string | string[] | undefined>, body: string): { type: string; imageId: string; data: Record<string, unknown> } | null {
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  const signatures = headers['webhook-signature'];
  if (typeof id !== 'string' || typeof timestamp !== 'string' || typeof signatures !== 'string' || !/^\d{1,12}$/.test(timestamp)) return null;
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > TOLERANCE_SECONDS) return null;
  const expected = digest(sign(secret, id, Number(timestamp), body));
  if (!signatures.split(' ').some((s) => timingSafeEqual(digest(s), expected))) return null;
  let payload: { type?: unknown; data?: unknown };
  try { payload = JSON.parse(body) as typeof payload; } catch { return null; }
  const data = payload.data as Record<string, unknown> | undefined;
  if (typeof payload.type !== 'string' || typeof data !== 'object' || data === null) return null;
  const imageId = typeof data.id === 'string' ? data.id : typeof data.image_id === 'string' ? data.image_id : '';
  return { type: payload.type, imageId, data };
}

/** Fixed-length digests, so timingSafeEqual compares signatures of any length. */
function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
