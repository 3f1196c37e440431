/**
 * The fan-out records one event's deliveries in one store call, enqueues each with the snapshot
 * an attempt sends (so the attempt reads no delivery record back), and on a repeated event
 * enqueues again only the deliveries that never ran.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebhookFanout, deliveryId } from '../../../core/webhooks/fanout.js';
import { webhookDeliveryKind, type DeliveryJob } from '../../../core/webhooks/jobs.js';
import type { Subscription } from '../../../core/webhooks/model.js';
import { SqliteWebhookStore } from '../../../infra/embedded/sqlite-webhook-store.js';
import type { Manifest } from '../../../core/manifest.js';
import type { JobQueue } from '../../../core/ports.js';
import type { PirEvent } from '../../../schemas/events.js';
import { makeDoc } from '../../contract/helpers.js';
import { silent } from '../core/fixtures.js';

const sub = (id: string, project: string, events = ['image.active']): Subscription => ({
  id, project_id: project, user_id: 'u', all_projects: false, url: 'https://example.com/hook', events, description: '',
  filters: {}, enabled: true, disabled_reason: null, disabled_at: null, consecutive_failures: 0,
  secrets: [], created_at: '2026-01-01T00:00:00.000Z', updated_at: '2026-01-01T00:00:00.000Z',
});

test('fan-out: one addDeliveries call per event, jobs carry the snapshot, a repeated event re-enqueues only deliveries that never ran', async () => {
  const store = new SqliteWebhookStore({ path: ':memory:' });
  const doc = makeDoc({ owner: 'p1', visibility: 'private', status: 'active' });
  await store.createSubscription(sub('s1', 'p1'));
  await store.createSubscription(sub('s2', 'p1'));
  await store.createSubscription(sub('s3', 'p2')); // cannot see a private image of p1
  await store.createSubscription(sub('s4', 'p1', ['image.deleted'])); // another event type
  const batches: number[] = [];
  const addDeliveries = store.addDeliveries.bind(store);
  store.addDeliveries = async (ds) => { batches.push(ds.length); return addDeliveries(ds); };
  const jobs: { id: string; data: DeliveryJob }[] = [];
  const queue = { enqueue: async (_kind: unknown, id: string, data: DeliveryJob) => { jobs.push({ id, data }); } } as unknown as JobQueue;
  const manifest = { get: async () => doc } as unknown as Manifest;
  const fanout = new WebhookFanout(store, manifest, queue, webhookDeliveryKind([10]), silent, (d) => ({ id: d.id, status: d.status }));
  const event: PirEvent = { id: 'ev1', type: 'image.active', version: 1, image_id: doc.id, occurred_at: '2026-06-01T00:00:00.000Z', data: { run: 1 } as never, traceparent: '00-0123456789abcdef0123456789abcdef-0123456789abcdef-01' };

  await fanout.handle(event);
  assert.deepEqual(batches, [2], 'one store call for both deliveries');
  assert.deepEqual(jobs.map((j) => j.id).sort(), [deliveryId('s1', 'ev1'), deliveryId('s2', 'ev1')].sort());
  const first = jobs.find((j) => j.id === deliveryId('s1', 'ev1'))!;
  const record = (await store.getDelivery(first.id))!;
  assert.deepEqual(first.data.snapshot, { subscription_id: 's1', event_type: 'image.active', payload: record.payload, traceparent: record.traceparent });
  assert.equal(JSON.parse(record.payload).data.id, doc.id);

  // s1's delivery ran; the event comes again (at least once): only s2's is enqueued again.
  await store.recordAttempt(first.id, { attempt: 1, at: 'x', status: 200, error: null, latency_ms: 1, next_attempt_at: null }, 'delivered');
  jobs.length = 0;
  await fanout.handle(event);
  assert.deepEqual(jobs.map((j) => j.id), [deliveryId('s2', 'ev1')]);
  assert.equal((await store.listDeliveries('s1', 10)).length, 1, 'no second record');
  await store.close();
});
