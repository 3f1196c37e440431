/** WebhookStore contract: the SQLite and MongoDB (FerretDB in the tests) adapters behave alike. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Delivery, Subscription, WebhookStore } from '../../core/webhooks/model.js';
import { SqliteWebhookStore } from '../../infra/embedded/sqlite-webhook-store.js';
import { MongoWebhookStore } from '../../infra/mongo/mongo-webhook-store.js';
import { requireServices, services, uniqueName } from '../support/services.js';
import { MongoClient } from 'mongodb';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { SecretBox } from '../../core/webhooks/secret-box.js';
import { sealNewSecret } from '../../core/webhooks/secrets.js';
import { StartupError } from '../../infra/startup-error.js';
import { agreeOnSecretKey } from '../../infra/webhooks.js';
import { liveSecrets } from '../../core/webhooks/secrets.js';
import { WebhookService } from '../../core/webhooks/service.js';
import { LIMITS } from '../../core/limits.js';
import type { JobQueue } from '../../core/ports.js';
import type { JobKind } from '../../core/jobs.js';
import type { DeliveryJob } from '../../core/webhooks/jobs.js';
import { PirError } from '../../core/errors.js';

const sub = (id: string, project: string, extra: Partial<Subscription> = {}): Subscription => ({
  id, project_id: project, user_id: 'u', all_projects: false, url: 'https://example.com/hook', events: ['image.active'], description: '',
  filters: {}, enabled: true, disabled_reason: null, disabled_at: null, consecutive_failures: 0,
  secrets: [{ enc: 'v1.a.b.c', created_at: '2026-01-01T00:00:00.000Z', expires_at: null }], created_at: '2026-01-01T00:00:00.000Z', updated_at: '2026-01-01T00:00:00.000Z', ...extra,
});
const delivery = (id: string, subId: string, createdAt: string): Delivery => ({
  id, subscription_id: subId, event_id: `e-${id}`, event_type: 'image.active', payload: '{}', traceparent: null, created_at: createdAt, status: 'pending', redeliveries: 0, attempts: [],
});

function contract(label: string, open: () => Promise<WebhookStore>, cleanup: () => Promise<void> = async () => {}, needsMongo = false) {
  test(`${label}: subscriptions are scoped, counted and disabled; deliveries dedupe, record attempts and page newest first`, async (t) => {
    if (needsMongo && !(await requireServices(t, ['mongodb']))) return;
    const store = await open();
    try {
      await store.createSubscription(sub('a1', 'p1'));
      await store.createSubscription(sub('a2', 'p1', { enabled: false }));
      await store.createSubscription(sub('b1', 'p2'));
      assert.deepEqual((await store.listSubscriptions('p1', 10)).map((s) => s.id), ['a1', 'a2']);
      assert.deepEqual((await store.listSubscriptions(null, 2)).map((s) => s.id), ['a1', 'a2']);
      assert.deepEqual((await store.listSubscriptions(null, 10, 'a2')).map((s) => s.id), ['b1']);
      assert.deepEqual((await store.enabledSubscriptions()).map((s) => s.id).sort(), ['a1', 'b1']);
      assert.equal(await store.recordFailure('a1', 2, 'why', 'now'), false);
      assert.equal((await store.getSubscription('a1'))!.consecutive_failures, 1);
      await store.recordSuccess('a1');
      assert.equal((await store.getSubscription('a1'))!.consecutive_failures, 0);
      assert.equal(await store.recordFailure('a1', 2, 'why', 'now'), false);
      assert.equal(await store.recordFailure('a1', 2, 'why', 'now'), true);
      const disabled = (await store.getSubscription('a1'))!;
      assert.equal(disabled.enabled, false);
      assert.equal(disabled.disabled_reason, 'why');
      assert.deepEqual((await store.enabledSubscriptions()).map((s) => s.id), ['b1']);

      assert.equal(await store.addDelivery(delivery('d1', 'b1', '2026-01-01T00:00:01.000Z')), true);
      assert.equal(await store.addDelivery(delivery('d1', 'b1', '2026-01-01T00:00:01.000Z')), false, 'same id: not added twice');
      await store.addDelivery(delivery('d2', 'b1', '2026-01-01T00:00:02.000Z'));
      await store.addDelivery(delivery('d3', 'b1', '2026-01-01T00:00:02.000Z'));
      await store.recordAttempt('d1', { attempt: 1, at: 'x', status: 500, error: null, latency_ms: 3, next_attempt_at: 'y' }, 'pending');
      await store.recordAttempt('d1', { attempt: 2, at: 'x', status: 200, error: null, latency_ms: 3, next_attempt_at: null }, 'delivered');
      const d1 = (await store.getDelivery('d1'))!;
      assert.deepEqual(d1.attempts.map((a) => a.status), [500, 200]);
      assert.equal(d1.status, 'delivered');
      assert.equal(await store.restartDelivery('d1'), 1);
      assert.equal((await store.getDelivery('d1'))!.status, 'pending');
      // Given up (failed), then the late attempt of a job that froze and woke: its retry does not
      // reopen the delivery, which nothing would send again; the attempt is kept.
      await store.recordAttempt('d2', { attempt: 1, at: 'x', status: null, error: 'given up', latency_ms: 0, next_attempt_at: null }, 'failed');
      await store.recordAttempt('d2', { attempt: 1, at: 'x', status: 500, error: null, latency_ms: 3, next_attempt_at: 'y' }, 'pending');
      const d2 = (await store.getDelivery('d2'))!;
      assert.equal(d2.status, 'failed');
      assert.deepEqual(d2.attempts.map((a) => a.status), [null, 500]);
      const page1 = await store.listDeliveries('b1', 2);
      assert.deepEqual(page1.map((d) => d.id), ['d3', 'd2']);
      assert.deepEqual((await store.listDeliveries('b1', 2, 'd2')).map((d) => d.id), ['d1']);
      assert.equal(await store.deleteSubscription('b1'), true);
      assert.equal(await store.getDelivery('d1'), null, 'deliveries go with their subscription');
      assert.equal(await store.deleteSubscription('b1'), false);
    } finally {
      await store.close();
      await cleanup();
    }
  });

  test(`${label}: addDeliveries records a whole fan-out at once and reports the ones that existed; concurrent attempts are all recorded`, async (t) => {
    if (needsMongo && !(await requireServices(t, ['mongodb']))) return;
    const store = await open();
    try {
      await store.createSubscription(sub('s1', 'p1'));
      assert.equal(await store.addDelivery(delivery('f3', 's1', '2026-01-01T00:00:00.000Z')), true);
      const batch = Array.from({ length: 250 }, (_, i) => delivery(`f${i}`, 's1', '2026-01-01T00:00:01.000Z'));
      const existed = await store.addDeliveries(batch);
      assert.deepEqual([...existed], ['f3'], 'only the one added before existed');
      assert.deepEqual([...(await store.addDeliveries(batch.slice(0, 5)))].sort(), ['f0', 'f1', 'f2', 'f3', 'f4'], 'a repeated fan-out adds nothing');
      assert.equal((await store.listDeliveries('s1', 1000)).length, 250);
      assert.equal((await store.getDelivery('f249'))!.payload, '{}');
      // 100 attempts at once (grouped into few commands on MongoDB): each lands on its own delivery.
      await Promise.all(batch.slice(0, 100).map((d, i) => store.recordAttempt(d.id, { attempt: 1, at: 'x', status: 200 + (i % 3), error: null, latency_ms: i, next_attempt_at: null }, 'delivered')));
      for (let i = 0; i < 100; i += 7) {
        const d = (await store.getDelivery(`f${i}`))!;
        assert.equal(d.status, 'delivered');
        assert.deepEqual(d.attempts.map((a) => [a.status, a.latency_ms]), [[200 + (i % 3), i]]);
      }
      assert.equal((await store.getDelivery('f100'))!.status, 'pending', 'the others untouched');
      await store.recordAttempt('f0', { attempt: 2, at: 'y', status: 500, error: null, latency_ms: 1, next_attempt_at: null }, 'failed');
      assert.deepEqual((await store.getDelivery('f0'))!.attempts.map((a) => a.attempt), [1, 2]);
    } finally {
      await store.close();
      await cleanup();
    }
  });

  test(`${label}: addAttempted writes deliveries with their first attempt, many at once, each its own; an existing one gets the attempt appended`, async (t) => {
    if (needsMongo && !(await requireServices(t, ['mongodb']))) return;
    const store = await open();
    try {
      await store.createSubscription(sub('s1', 'p1'));
      const attempt = (i: number) => ({ attempt: 1, at: 'x', status: 200 + (i % 3), error: null, latency_ms: i, next_attempt_at: null });
      assert.equal(await store.addDelivery(delivery('g7', 's1', '2026-01-01T00:00:00.000Z')), true);
      // 150 at once (grouped into few insert commands on MongoDB), one of them existing already.
      const added = await Promise.all(Array.from({ length: 150 }, (_, i) => store.addAttempted({ ...delivery(`g${i}`, 's1', '2026-01-01T00:00:01.000Z'), status: i % 2 ? 'delivered' : 'pending', attempts: [attempt(i)] })));
      assert.deepEqual(added.flatMap((a, i) => (a ? [] : [i])), [7], 'only the existing one was not added');
      for (const i of [0, 1, 7, 100, 149]) {
        const d = (await store.getDelivery(`g${i}`))!;
        assert.equal(d.status, i % 2 ? 'delivered' : 'pending');
        assert.deepEqual(d.attempts.map((a) => [a.status, a.latency_ms]), [[200 + (i % 3), i]]);
      }
      assert.equal((await store.listDeliveries('s1', 1000)).length, 150);
    } finally {
      await store.close();
      await cleanup();
    }
  });

  test(`${label}: ended deliveries created before an instant are deleted, a batch at a time; pending and recent ones stay`, async (t) => {
    if (needsMongo && !(await requireServices(t, ['mongodb']))) return;
    const store = await open();
    try {
      await store.createSubscription(sub('r1', 'p1'));
      const old = '2026-01-01T00:00:00.000Z';
      for (const [id, status] of [['old-d1', 'delivered'], ['old-d2', 'delivered'], ['old-f1', 'failed'], ['old-f2', 'failed'], ['old-d3', 'delivered'], ['old-p', 'pending']] as const) {
        assert.equal(await store.addDelivery({ ...delivery(id, 'r1', old), status }), true);
      }
      assert.equal(await store.addDelivery({ ...delivery('new-d', 'r1', '2026-03-01T00:00:00.000Z'), status: 'delivered' }), true);
      const cutoff = '2026-02-01T00:00:00.000Z';
      assert.equal(await store.deleteEndedDeliveries(cutoff, 2), 2);
      assert.equal(await store.deleteEndedDeliveries(cutoff, 100), 3);
      assert.equal(await store.deleteEndedDeliveries(cutoff, 100), 0);
      assert.deepEqual((await store.listDeliveries('r1', 100)).map((d) => d.id).sort(), ['new-d', 'old-p']);
      assert.equal(await store.getDelivery('old-f1'), null);
    } finally {
      await store.close();
      await cleanup();
    }
  });
}

contract('sqlite', async () => new SqliteWebhookStore({ path: ':memory:' }));

/**
 * An owner's changes through two processes at once (each its own store and service; SQLite: one
 * process, one store): every change lands, every rotated secret signs, the per-project cap holds,
 * and a deliverer's failure count never writes back an owner's earlier settings.
 */
function concurrency(label: string, openTwo: () => Promise<[WebhookStore, WebhookStore, () => Promise<void>]>, needsMongo = false) {
  test(`${label}: concurrent changes of one webhook all land; concurrent rotations all sign; the create cap holds`, { timeout: 120_000 }, async (t) => {
    if (needsMongo && !(await requireServices(t, ['mongodb']))) return;
    const [one, two, close] = await openTwo();
    try {
      const box = new SecretBox(randomBytes(32));
      const service = (store: WebhookStore) => new WebhookService(store, box, null as unknown as JobQueue, null as unknown as JobKind<DeliveryJob>, () => {}, 3600);
      const services2 = [service(one), service(two)];
      const owner = { project_id: 'p1', user_id: 'u1', roles: ['member', 'reader'] };
      const { sub: made } = await services2[0]!.create(owner, { url: 'https://example.com/a', events: ['image.active'] });
      await Promise.all([
        services2[0]!.update(owner, made.id, { description: 'described' }),
        services2[1]!.update(owner, made.id, { events: ['image.deleted'] }),
        services2[0]!.update(owner, made.id, { enabled: false }),
        services2[1]!.update(owner, made.id, { url: 'https://example.com/b' }),
        one.recordFailure(made.id, 100, 'why', 'now'),
      ]);
      const after = (await one.getSubscription(made.id))!;
      assert.deepEqual([after.description, after.events, after.enabled, after.url], ['described', ['image.deleted'], false, 'https://example.com/b']);

      const rotated = await Promise.all(Array.from({ length: 8 }, (_, i) => services2[i % 2]!.rotate(owner, made.id)));
      const live = liveSecrets(box, (await two.getSubscription(made.id))!);
      for (const { secret } of rotated) assert.ok(live.includes(secret), 'every secret a rotation returned signs');

      const room = LIMITS.webhooksPerProject - 1;
      const creates = await Promise.allSettled(Array.from({ length: room + 20 }, (_, i) => services2[i % 2]!.create(owner, { url: `https://example.com/${i}`, events: ['image.active'] })));
      assert.equal(creates.filter((c) => c.status === 'fulfilled').length, room);
      assert.ok(creates.every((c) => c.status === 'fulfilled' || (c.reason instanceof PirError && c.reason.code === 'too_many_webhooks')));
      assert.equal((await one.listSubscriptions('p1', 1000)).length, LIMITS.webhooksPerProject);
    } finally {
      await close();
    }
  });
}

concurrency('sqlite', async () => {
  const store = new SqliteWebhookStore({ path: ':memory:' });
  return [store, store, async () => {}];
});

const db = uniqueName('pir_webhooks').replace(/[^A-Za-z0-9_]/g, '_');
contract('mongo', async () => {
  const s = new MongoWebhookStore({ url: services.mongodbUrl, dbName: db });
  await s.start();
  return s;
}, async () => {
  const c = new MongoClient(services.mongodbUrl, { serverSelectionTimeoutMS: 3000 });
  try { await c.connect(); await c.db(db).dropDatabase(); } catch { /* not reachable */ } finally { await c.close(); }
}, true);

const raceDb = uniqueName('pir_webhook_races').replace(/[^A-Za-z0-9_]/g, '_');
concurrency('mongo', async () => {
  const stores = [new MongoWebhookStore({ url: services.mongodbUrl, dbName: raceDb }), new MongoWebhookStore({ url: services.mongodbUrl, dbName: raceDb })];
  for (const s of stores) await s.start();
  return [stores[0]!, stores[1]!, async () => {
    const c = new MongoClient(services.mongodbUrl, { serverSelectionTimeoutMS: 3000 });
    try { await c.connect(); await c.db(raceDb).dropDatabase(); } catch { /* not reachable */ } finally { await c.close(); }
    for (const s of stores) await s.close();
  }];
}, true);

test('mongo: processes sharing the database agree on one webhook secret key; one with another key stops, unless its key opens the stored secrets', async (t) => {
  if (!(await requireServices(t, ['mongodb']))) return;
  const keyDb = uniqueName('pir_webhook_key').replace(/[^A-Za-z0-9_]/g, '_');
  const store = new MongoWebhookStore({ url: services.mongodbUrl, dbName: keyDb });
  await store.start();
  const silent = pino({ level: 'silent' });
  try {
    const first = new SecretBox(randomBytes(32));
    const other = new SecretBox(randomBytes(32));
    await agreeOnSecretKey(store, first, 'first', silent);
    await agreeOnSecretKey(store, first, 'first again', silent);
    await assert.rejects(agreeOnSecretKey(store, other, '/data/webhook-secret-key', silent), (error: Error) =>
      error instanceof StartupError && error.message.includes('(/data/webhook-secret-key) is not the one the other PIR processes on this database seal'));
    // The key changed on every process on purpose, and a secret sealed with it is stored: it is taken as the key in use.
    const { stored } = sealNewSecret(other, 's1', '2026-01-01T00:00:00.000Z');
    await store.createSubscription(sub('s1', 'p1', { secrets: [stored] }));
    await agreeOnSecretKey(store, other, 'changed', silent);
    await assert.rejects(agreeOnSecretKey(store, first, 'the old key', silent), StartupError);
  } finally {
    const c = new MongoClient(services.mongodbUrl, { serverSelectionTimeoutMS: 3000 });
    try { await c.connect(); await c.db(keyDb).dropDatabase(); } catch { /* not reachable */ } finally { await c.close(); }
    await store.close();
  }
});
