/**
 * The fan-out job (issue 8 point 7's fast path): an event's first attempts are made at once by
 * the fan-out itself (real HTTP receivers, signatures checked with the standardwebhooks
 * package), each delivery recorded once, with its first attempt; only what needs more becomes a
 * delivery job: a retry numbered from 2 after the schedule's delay, an endpoint whose slots are
 * taken, an endpoint that was slow lately. The job running again (its worker died) sends again
 * only a delivery with no record; each one still pending goes to its delivery job.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { WebhookFanout, deliveryId, fanoutJobId } from '../../../core/webhooks/fanout.js';
import { WebhookDeliverer } from '../../../core/webhooks/deliver.js';
import { InProcessEndpointLimiter } from '../../../core/webhooks/endpoint-limiter.js';
import { WEBHOOK_FANOUT_KIND, webhookDeliveryKind, type DeliveryJob, type FanoutJob } from '../../../core/webhooks/jobs.js';
import { SecretBox } from '../../../core/webhooks/secret-box.js';
import { sealNewSecret } from '../../../core/webhooks/secrets.js';
import type { Subscription } from '../../../core/webhooks/model.js';
import { PermanentJobError } from '../../../core/jobs.js';
import { SqliteWebhookStore } from '../../../infra/embedded/sqlite-webhook-store.js';
import { DEFAULT_EGRESS, EgressClient } from '../../../infra/egress/egress-client.js';
import { parseAllowList } from '../../../infra/egress/address-policy.js';
import type { Manifest } from '../../../core/manifest.js';
import type { JobQueue } from '../../../core/ports.js';
import type { PirEvent } from '../../../schemas/events.js';
import { makeDoc } from '../../contract/helpers.js';
import { silent } from '../core/fixtures.js';
import { WebhookReceiver, verify } from '../../support/webhook-receiver.js';

const SCHEDULE = [5000];
const box = new SecretBox(randomBytes(32));

function sub(id: string, project: string, url: string, events = ['image.active']): { sub: Subscription; secret: string } {
  const { secret, stored } = sealNewSecret(box, id, '2026-01-01T00:00:00.000Z');
  return {
    secret,
    sub: {
      id, project_id: project, user_id: 'u', all_projects: false, url, events, description: '',
      filters: {}, enabled: true, disabled_reason: null, disabled_at: null, consecutive_failures: 0,
      secrets: [stored], created_at: '2026-01-01T00:00:00.000Z', updated_at: '2026-01-01T00:00:00.000Z',
    },
  };
}

interface Enqueued { kind: string; id: string; data: unknown; delayMs: number }

function setup() {
  const store = new SqliteWebhookStore({ path: ':memory:' });
  const limiter = new InProcessEndpointLimiter();
  const egress = new EgressClient({ ...DEFAULT_EGRESS, allowList: parseAllowList('127.0.0.1/32') });
  const deliverer = new WebhookDeliverer(store, box, egress, { retrySchedule: SCHEDULE, disableAfterFailures: 5, perEndpointConcurrency: 1, concurrency: 8 }, silent, limiter);
  const jobs: Enqueued[] = [];
  // The queue port only records what is enqueued: the jobs are what this test checks.
  const queue = { enqueue: async (kind: { name: string }, id: string, data: unknown, o?: { delayMs?: number }) => { jobs.push({ kind: kind.name, id, data, delayMs: o?.delayMs ?? 0 }); } } as unknown as JobQueue;
  const doc = makeDoc({ owner: 'p1', visibility: 'private', status: 'active' });
  const manifest = { get: async () => doc } as unknown as Manifest;
  const fanout = new WebhookFanout(store, manifest, queue, webhookDeliveryKind(SCHEDULE), silent, (d) => ({ id: d.id, status: d.status }), deliverer);
  const event = (id: string): PirEvent => ({ id, type: 'image.active', version: 1, image_id: doc.id, occurred_at: '2026-06-01T00:00:00.000Z', data: { run: 1 } as never, traceparent: '00-0123456789abcdef0123456789abcdef-0123456789abcdef-01' });
  return { store, limiter, deliverer, jobs, fanout, doc, event };
}

describe('webhook fan-out job', () => {
  const receivers: WebhookReceiver[] = [];
  const start = async (r: WebhookReceiver) => { receivers.push(await r.start()); return r; };
  after(async () => { for (const r of receivers) await r.stop(); });

  it('the bus handler only enqueues one fan-out job per event (its id from the event id)', async () => {
    const { fanout, jobs, event, store } = setup();
    await store.createSubscription(sub('s-any', 'p9', 'https://hooks.example.org/a').sub);
    await fanout.handle(event('ev0'));
    await fanout.handle({ ...event('ev0b'), type: 'image.something_else' } as never);
    assert.deepEqual(jobs.map((j) => [j.kind, j.id]), [[WEBHOOK_FANOUT_KIND.name, fanoutJobId('ev0')]]);
    assert.equal((jobs[0]!.data as FanoutJob).event.id, 'ev0');
  });

  it('the bus handler enqueues nothing for an event no enabled subscription asks for (type, created after it, disabled)', async () => {
    const { fanout, jobs, event, store } = setup();
    await fanout.handle(event('none-at-all'));
    const created = sub('s-created', 'p1', 'https://hooks.example.org/a', ['image.created']);
    const later = sub('s-later', 'p1', 'https://hooks.example.org/b');
    later.sub.created_at = '2026-07-01T00:00:00.000Z'; // after the event
    const disabled = sub('s-disabled', 'p1', 'https://hooks.example.org/c');
    disabled.sub.enabled = false;
    for (const s of [created, later, disabled]) await store.createSubscription(s.sub);
    await fanout.handle(event('ev-skip'));
    assert.equal(jobs.length, 0, 'no job without a subscription that may want image.active');
    await store.createSubscription(sub('s-wildcard', 'p2', 'https://hooks.example.org/d', ['image.*']).sub);
    await fanout.handle(event('ev-wanted'));
    assert.deepEqual(jobs.map((j) => j.id), [fanoutJobId('ev-wanted')], 'a subscription to image.* may want it: the job decides (visibility, filters)');
  });

  it('the bus handlers running together share one read of the subscriptions, begun after each call', async () => {
    const { fanout, event, store } = setup();
    await store.createSubscription(sub('s-any', 'p9', 'https://hooks.example.org/a').sub);
    let reads = 0;
    const enabled = store.enabledSubscriptions.bind(store);
    store.enabledSubscriptions = async () => { reads++; await new Promise((r) => setTimeout(r, 20)); return enabled(); };
    await Promise.all(Array.from({ length: 6 }, (_, i) => fanout.handle(event(`ev-${i}`))));
    assert.equal(reads, 2, 'the first call reads; the five that came while it ran share the next');
  });

  it('first attempts inline: delivered, retry as a job from attempt 2, a full endpoint as a job; a second run sends nothing', async () => {
    const { store, limiter, jobs, fanout, doc, event } = setup();
    const ok = await start(new WebhookReceiver());
    const failing = await start(new WebhookReceiver((_n, _r, res) => { res.writeHead(503).end('busy'); }));
    const full = await start(new WebhookReceiver());
    const a = sub('s-ok', 'p1', ok.url);
    const b = sub('s-503', 'p1', failing.url);
    const c = sub('s-full', 'p1', full.url);
    for (const s of [a, b, c]) await store.createSubscription(s.sub);
    await store.createSubscription(sub('s-other', 'p2', ok.url).sub); // cannot see p1's private image
    const held = await limiter.tryAcquire('s-full', 1); // its only slot is taken
    const writes: string[] = [];
    const addDeliveries = store.addDeliveries.bind(store);
    store.addDeliveries = async (ds) => { writes.push(`pending ${ds.length}`); return addDeliveries(ds); };
    const addAttempted = store.addAttempted.bind(store);
    store.addAttempted = async (d) => { writes.push(`attempted ${d.status}`); return addAttempted(d); };
    const recordAttempt = store.recordAttempt.bind(store);
    store.recordAttempt = async (...args) => { writes.push('update'); return recordAttempt(...args); };

    await fanout.run({ event: event('ev1') });
    assert.deepEqual(writes.sort(), ['attempted delivered', 'attempted pending', 'pending 1'], 'each record written once: after its first attempt, or as pending before its job');
    assert.equal(ok.received.length, 1);
    const body = verify(a.secret, ok.received[0]!);
    assert.equal(body.data.id, doc.id);
    assert.equal(ok.received[0]!.headers['webhook-id'], deliveryId('s-ok', 'ev1'));
    assert.equal(ok.received[0]!.headers.traceparent, '00-0123456789abcdef0123456789abcdef-0123456789abcdef-01');
    assert.equal(failing.received.length, 1);
    assert.equal(full.received.length, 0, 'not sent while the endpoint is full');

    const delivered = (await store.getDelivery(deliveryId('s-ok', 'ev1')))!;
    assert.equal(delivered.status, 'delivered');
    assert.deepEqual(delivered.attempts.map((x) => [x.attempt, x.status]), [[1, 200]]);
    const retrying = (await store.getDelivery(deliveryId('s-503', 'ev1')))!;
    assert.equal(retrying.status, 'pending');
    assert.deepEqual(retrying.attempts.map((x) => [x.attempt, x.status]), [[1, 503]]);
    assert.ok(retrying.attempts[0]!.next_attempt_at);
    assert.equal((await store.getDelivery(deliveryId('s-full', 'ev1')))!.attempts.length, 0);

    const byId = new Map(jobs.map((j) => [j.id, j]));
    assert.equal(jobs.length, 2, JSON.stringify(jobs));
    const retry = byId.get(deliveryId('s-503', 'ev1'))!;
    assert.equal((retry.data as DeliveryJob).first_attempt, 2);
    assert.ok(retry.delayMs >= 4500 && retry.delayMs <= 5500, `the schedule's first delay (${retry.delayMs})`);
    assert.equal((retry.data as DeliveryJob).snapshot?.payload, retrying.payload);
    const waiting = byId.get(deliveryId('s-full', 'ev1'))!;
    assert.equal((waiting.data as DeliveryJob).first_attempt, undefined, 'a job that makes the first attempt');
    assert.equal(waiting.delayMs, 0);

    // This job again after its worker died: nothing is sent by the fan-out, the pending
    // deliveries go to their jobs again (same ids: the queue keeps one).
    jobs.length = 0;
    await fanout.run({ event: event('ev1') }, { attempt: 1, maxAttempts: 10, reportProgress: async () => {}, redelivered: true });
    assert.equal(ok.received.length + failing.received.length + full.received.length, 2, 'nothing sent again');
    assert.deepEqual(jobs.map((j) => j.id).sort(), [deliveryId('s-503', 'ev1'), deliveryId('s-full', 'ev1')].sort());
    assert.equal((jobs.find((j) => j.id === deliveryId('s-503', 'ev1'))!.data as DeliveryJob).first_attempt, 2);
    assert.equal((await store.listDeliveries('s-ok', 10)).length, 1, 'no second record');
    // Run again with one delivery's record missing (its first attempt was cut short): that one is
    // attempted again, with the same webhook-id, and recorded.
    await held!.release();
    jobs.length = 0;
    await store.deleteSubscription('s-ok');
    await store.createSubscription(a.sub);
    await fanout.run({ event: event('ev1') }, { attempt: 1, maxAttempts: 10, reportProgress: async () => {}, redelivered: true });
    assert.equal(ok.received.length, 2);
    assert.equal(ok.received[1]!.headers['webhook-id'], deliveryId('s-ok', 'ev1'));
    assert.equal((await store.getDelivery(deliveryId('s-ok', 'ev1')))!.status, 'delivered');
    assert.equal(failing.received.length + full.received.length, 1, 'the others not sent by the fan-out');
    await store.close();
  });

  it('a delivery job the queue gave up is recorded as failed (so it can be redelivered), not left pending', async () => {
    const { store, limiter, deliverer, fanout, event } = setup();
    const receiver = await start(new WebhookReceiver());
    await store.createSubscription(sub('s-given-up', 'p1', receiver.url).sub);
    // Its only slot taken: the delivery is recorded pending and handed to a job.
    const lease = await limiter.tryAcquire('s-given-up', 1);
    await fanout.run({ event: event('ev-given-up') });
    await lease?.release();
    const id = deliveryId('s-given-up', 'ev-given-up');
    assert.equal((await store.getDelivery(id))!.status, 'pending');
    await deliverer.abandoned({ delivery_id: id });
    const after = (await store.getDelivery(id))!;
    assert.equal(after.status, 'failed');
    assert.match(after.attempts.at(-1)!.error ?? '', /died or froze twice; redeliver it/);
    await deliverer.abandoned({ delivery_id: id }); // only a pending delivery is touched
    assert.equal((await store.getDelivery(id))!.attempts.length, after.attempts.length);
  });

  it('a membership event goes to the owner and the member it is about, not to the image\'s other members', async () => {
    const { store, fanout, doc, event } = setup();
    const at = '2026-01-01T00:00:00.000Z';
    Object.assign(doc, { visibility: 'shared', members: ['B', 'C'].map((member_id) => ({ member_id, status: 'accepted', created_at: at, updated_at: at })) });
    const owner = await start(new WebhookReceiver());
    const b = await start(new WebhookReceiver());
    const c = await start(new WebhookReceiver());
    await store.createSubscription(sub('s-owner', 'p1', owner.url, ['image.member.*']).sub);
    await store.createSubscription(sub('s-b', 'B', b.url, ['image.*']).sub);
    await store.createSubscription(sub('s-c', 'C', c.url, ['image.member.*']).sub);
    await fanout.run({ event: { ...event('ev-member'), type: 'image.member.updated', data: { member_id: 'C', status: 'accepted' } as never } });
    assert.deepEqual([owner.received.length, b.received.length, c.received.length], [1, 0, 1], 'owner and C told; B (another accepted member) not');
    await fanout.run({ event: { ...event('ev-update'), type: 'image.updated', data: {} as never } });
    assert.equal(b.received.length, 1, 'B still hears of the image itself');
    // A pending member hears of its own invitation (nothing else of the image until it accepts).
    (doc.members as { member_id: string; status: string }[]).push({ member_id: 'D', status: 'pending', created_at: at, updated_at: at } as never);
    const d = await start(new WebhookReceiver());
    await store.createSubscription(sub('s-d', 'D', d.url, ['image.*']).sub);
    await fanout.run({ event: { ...event('ev-invite'), type: 'image.member.created', data: { member_id: 'D', status: 'pending' } as never } });
    await fanout.run({ event: { ...event('ev-update2'), type: 'image.updated', data: {} as never } });
    assert.deepEqual(d.received.map((r) => r.headers['webhook-id']), [deliveryId('s-d', 'ev-invite')]);
  });

  it('a delivery job numbered from 2 continues the schedule: with one delay, attempt 2 is the last', async () => {
    const { store, deliverer, jobs, fanout, event } = setup();
    const failing = await start(new WebhookReceiver((_n, _r, res) => { res.writeHead(500).end(); }));
    await store.createSubscription(sub('s-500', 'p1', failing.url).sub);
    await fanout.run({ event: event('ev2') });
    const job = jobs[0]!.data as DeliveryJob;
    assert.equal(job.first_attempt, 2);
    await assert.rejects(deliverer.handle(job, { attempt: 1, maxAttempts: SCHEDULE.length + 1, reportProgress: async () => {} }), PermanentJobError);
    const d = (await store.getDelivery(job.delivery_id))!;
    assert.equal(d.status, 'failed');
    assert.deepEqual(d.attempts.map((x) => [x.attempt, x.status, x.next_attempt_at === null]), [[1, 500, false], [2, 500, true]]);
    assert.equal((await store.getSubscription('s-500'))!.consecutive_failures, 1);
    await store.close();
  });

  it('an endpoint that answered slowly (5 s) gets its next first attempts through delivery jobs', async () => {
    const { store, jobs, fanout, event } = setup();
    const slow = await start(new WebhookReceiver((_n, _r, res) => { setTimeout(() => res.writeHead(200).end(), 5100); }));
    await store.createSubscription(sub('s-slow', 'p1', slow.url).sub);
    await fanout.run({ event: event('ev3') });
    assert.equal(slow.received.length, 1);
    assert.equal((await store.getDelivery(deliveryId('s-slow', 'ev3')))!.status, 'delivered');
    assert.equal(jobs.length, 0);
    await fanout.run({ event: event('ev4') });
    assert.equal(slow.received.length, 1, 'not sent inline');
    assert.deepEqual(jobs.map((j) => j.id), [deliveryId('s-slow', 'ev4')]);
    await store.close();
  });
});

describe('a delivery whose secret another key sealed', () => {
  it('is not sent and says so in an error line naming PIR_WEBHOOK_SECRET_KEY; the job is tried again', async () => {
    const store = new SqliteWebhookStore({ path: ':memory:' });
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => { lines.push(JSON.parse(line)); } });
    const egress = new EgressClient({ ...DEFAULT_EGRESS, allowList: parseAllowList('127.0.0.1/32') });
    const otherKey = new WebhookDeliverer(store, new SecretBox(randomBytes(32)), egress, { retrySchedule: SCHEDULE, disableAfterFailures: 5, perEndpointConcurrency: 1, concurrency: 8 }, log, new InProcessEndpointLimiter());
    const { sub: made } = sub('sealed-elsewhere', 'p1', 'http://127.0.0.1:9/never');
    await store.createSubscription(made);
    const job: DeliveryJob = { delivery_id: 'msg_1', snapshot: { subscription_id: made.id, event_type: 'image.active', payload: '{}', traceparent: null } } as DeliveryJob;
    await assert.rejects(otherKey.handle(job, { attempt: 1, maxAttempts: 3 } as never), (error: Error) => !(error instanceof PermanentJobError));
    const line = lines.find((l) => l.level === 50);
    assert.ok(line, 'an error line');
    assert.match(String(line!.msg), /cannot be opened with this process's PIR_WEBHOOK_SECRET_KEY/);
    assert.equal(line!.webhook, made.id);
    store.close();
  });
});
