/** The webhooks extension: /v2/webhooks (see README, Webhooks). Every decision is in WebhookService. */
import type { FastifyInstance } from 'fastify';
import { fail } from '../../core/error-catalog.js';
import type { Delivery, Subscription } from '../../core/webhooks/model.js';
import type { WebhookInput, WebhookService } from '../../core/webhooks/service.js';
import { createWebhookBody, updateWebhookBody, webhookSchema, webhooksSchema } from '../webhook-schema.js';

const DEFAULT_LIMIT = 25;
const MAX_LIMIT = 200;
const ID = { type: 'object', properties: { id: { type: 'string', minLength: 1, maxLength: 64 } } } as const;

export function webhookView(sub: Subscription, secret?: string): Record<string, unknown> {
  return {
    id: sub.id,
    url: sub.url,
    events: sub.events,
    description: sub.description,
    filters: sub.filters,
    enabled: sub.enabled,
    all_projects: sub.all_projects,
    project_id: sub.project_id,
    disabled_reason: sub.disabled_reason,
    disabled_at: sub.disabled_at,
    consecutive_failures: sub.consecutive_failures,
    secret_rotated_at: sub.secrets[0]?.created_at ?? sub.created_at,
    created_at: sub.created_at,
    updated_at: sub.updated_at,
    self: `/v2/webhooks/${sub.id}`,
    deliveries: `/v2/webhooks/${sub.id}/deliveries`,
    schema: '/v2/schemas/webhook',
    ...(secret ? { secret } : {}),
  };
}

function deliveryView(d: Delivery): Record<string, unknown> {
  const last = d.attempts[d.attempts.length - 1];
  return {
    id: d.id, webhook_id: d.subscription_id, event_id: d.event_id, event_type: d.event_type, created_at: d.created_at,
    status: d.status, redeliveries: d.redeliveries, next_attempt_at: d.status === 'pending' ? (last?.next_attempt_at ?? d.created_at) : null,
    attempts: d.attempts,
  };
}

function paging(query: unknown): { limit: number; marker?: string } {
  const q = (query ?? {}) as Record<string, unknown>;
  let limit = DEFAULT_LIMIT;
  if (q.limit !== undefined) {
    if (typeof q.limit !== 'string' || !/^\d{1,6}$/.test(q.limit) || Number(q.limit) < 1) throw fail('bad_limit', 'limit must be a positive whole number.');
    limit = Math.min(MAX_LIMIT, Number(q.limit));
  }
  if (q.marker !== undefined && (typeof q.marker !== 'string' || q.marker.length > 128)) throw fail('bad_marker', 'marker must be one id from the previous page.');
  return { limit, ...(q.marker ? { marker: q.marker as string } : {}) };
}

export async function webhookRoutes(app: FastifyInstance, webhooks: WebhookService): Promise<void> {
  app.get('/v2/schemas/webhook', async () => webhookSchema);
  app.get('/v2/schemas/webhooks', async () => webhooksSchema);

  app.post('/v2/webhooks', { schema: { body: createWebhookBody } }, async (request, reply) => {
    const { sub, secret } = await webhooks.create(request.caller, request.body as WebhookInput);
    reply.header('Location', `/v2/webhooks/${sub.id}`);
    return reply.code(201).send(webhookView(sub, secret));
  });

  app.get('/v2/webhooks', async (request) => {
    const { limit, marker } = paging(request.query);
    const subs = await webhooks.list(request.caller, limit, marker);
    const result: Record<string, unknown> = { webhooks: subs.map((s) => webhookView(s)), first: '/v2/webhooks', schema: '/v2/schemas/webhooks' };
    if (subs.length === limit) result.next = `/v2/webhooks?limit=${limit}&marker=${encodeURIComponent(subs[subs.length - 1]!.id)}`;
    return result;
  });

  app.get('/v2/webhooks/:id', { schema: { params: ID } }, async (request) => webhookView(await webhooks.get(request.caller, (request.params as { id: string }).id)));

  app.patch('/v2/webhooks/:id', { schema: { params: ID, body: updateWebhookBody } }, async (request) => {
    return webhookView(await webhooks.update(request.caller, (request.params as { id: string }).id, request.body as WebhookInput));
  });

  app.delete('/v2/webhooks/:id', { schema: { params: ID } }, async (request, reply) => {
    await webhooks.remove(request.caller, (request.params as { id: string }).id);
    return reply.code(204).send();
  });

  app.post('/v2/webhooks/:id/rotate-secret', { schema: { params: ID } }, async (request) => {
    const { sub, secret } = await webhooks.rotate(request.caller, (request.params as { id: string }).id);
    return webhookView(sub, secret);
  });

  app.post('/v2/webhooks/:id/ping', { schema: { params: ID } }, async (request, reply) => {
    const d = await webhooks.ping(request.caller, (request.params as { id: string }).id);
    return reply.code(202).send(deliveryView(d));
  });

  app.get('/v2/webhooks/:id/deliveries', { schema: { params: ID } }, async (request) => {
    const id = (request.params as { id: string }).id;
    const { limit, marker } = paging(request.query);
    const list = await webhooks.deliveries(request.caller, id, limit, marker);
    const result: Record<string, unknown> = { deliveries: list.map(deliveryView), first: `/v2/webhooks/${id}/deliveries` };
    if (list.length === limit) result.next = `/v2/webhooks/${id}/deliveries?limit=${limit}&marker=${encodeURIComponent(list[list.length - 1]!.id)}`;
    return result;
  });

  app.post('/v2/webhooks/:id/deliveries/:delivery_id/redeliver', {
    schema: { params: { type: 'object', properties: { id: { type: 'string', maxLength: 64 }, delivery_id: { type: 'string', maxLength: 64 } } } },
  }, async (request, reply) => {
    const { id, delivery_id } = request.params as { id: string; delivery_id: string };
    return reply.code(202).send(deliveryView(await webhooks.redeliver(request.caller, id, delivery_id)));
  });
}
