/**
 * QuotaStore contract on SQLite (embedded) and MongoDB/FerretDB (distributed): holds, releases,
 * and no overshoot under 16 concurrent reservations from several store instances (on FerretDB,
 * whose conditional writes are not atomic, this is what the ledger's unique-_id chain is for).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { MongoClient } from 'mongodb';
import type { QuotaStore } from '../../core/quota.js';
import { SqliteQuotaStore } from '../../infra/embedded/sqlite-quota-store.js';
import { MongoQuotaStore } from '../../infra/mongo/mongo-quota-store.js';
import { dropMongoDatabase, requireServices, services, uniqueName, type ServiceName } from '../support/services.js';

const MiB = 1024 * 1024;

function quotaStoreContract(name: string, open: () => Promise<QuotaStore>, opts: { services?: ServiceName[]; teardown?: () => Promise<void> } = {}): void {
  test(`QuotaStore contract: ${name}`, { timeout: 120_000 }, async (t) => {
    if (!(await requireServices(t, opts.services ?? []))) return;
    const stores: QuotaStore[] = [];
    const fresh = async () => { const s = await open(); stores.push(s); return s; };
    t.after(async () => {
      for (const s of stores) await s.close().catch(() => undefined);
      await opts.teardown?.();
    });
    const store = await fresh();
    const at = (ms: number) => new Date(Date.parse('2030-01-01T00:00:00Z') + ms).toISOString();

    await t.test('holds, replaces and refuses over a limit, leaving nothing changed', async () => {
      const p = uniqueName('p');
      assert.equal(await store.hold(p, 'a', { image_count_total: 1 }, { image_count_total: 2 }, at(0)), null);
      assert.equal(await store.hold(p, 'a', { image_count_total: 1 }, { image_count_total: 2 }, at(1)), null); // same key: a replace, not a second
      assert.equal(await store.hold(p, 'b', { image_count_total: 1 }, { image_count_total: 2 }, at(2)), null);
      const refusal = await store.hold(p, 'c', { image_count_total: 1 }, { image_count_total: 2 }, at(3));
      assert.deepEqual(refusal, { resource: 'image_count_total', limit: 2, usage: 2, delta: 1 });
      assert.deepEqual((await store.holdings(p)).map((h) => h.key).sort(), ['a', 'b']);
      // -1 and absent limits never refuse; shrinking never refuses, even over the limit.
      assert.equal(await store.hold(p, 'c', { image_count_total: 1 }, { image_count_total: -1 }, at(4)), null);
      assert.equal(await store.hold(p, 'c', { image_count_total: 0 }, { image_count_total: 1 }, at(5)), null);
      // Projects are separate.
      assert.equal(await store.hold(uniqueName('q'), 'a', { image_count_total: 1 }, { image_count_total: 1 }, at(6)), null);
    });

    await t.test('releases, and conditional releases keep holds set after the instant', async () => {
      const p = uniqueName('p');
      await store.hold(p, 'old', { image_count_uploading: 1 }, {}, at(10));
      await store.hold(p, 'new', { image_count_uploading: 1 }, {}, at(30));
      await store.release(p, [{ key: 'old', ifSetBefore: at(20) }, { key: 'new', ifSetBefore: at(20) }]);
      assert.deepEqual((await store.holdings(p)).map((h) => h.key), ['new']);
      await store.release(p, [{ key: 'new' }, { key: 'never-held' }]);
      assert.deepEqual(await store.holdings(p), []);
    });

    await t.test('16 concurrent reservations from 4 store instances never overshoot', async () => {
      const instances = [store, await fresh(), await fresh(), await fresh()];
      const p = uniqueName('p');
      const limits = { image_count_uploading: 5, image_size_total: 40 * MiB };
      const results = await Promise.all(Array.from({ length: 16 }, (_, i) =>
        instances[i % 4].hold(p, `img-${i}/flight`, { image_count_uploading: 1, image_size_total: 7 * MiB }, limits, at(i))));
      const granted = results.filter((r) => r === null).length;
      const holdings = await store.holdings(p);
      assert.equal(holdings.length, granted);
      // 5 slots; 40 MiB / 7 MiB = 5 too: exactly 5 win (the ledger is exact, not only safe).
      assert.equal(granted, 5);
      assert.ok(holdings.reduce((s, h) => s + (h.amounts.image_size_total ?? 0), 0) <= 40 * MiB);
      for (const r of results) if (r) assert.ok(r.resource === 'image_count_uploading' || r.resource === 'image_size_total');
      // Growing holds race the same way: 16 concurrent growths of size within a 50 MiB budget.
      const q = uniqueName('p');
      const grows = await Promise.all(Array.from({ length: 16 }, (_, i) =>
        instances[i % 4].hold(q, `g-${i % 4}`, { image_size_total: (i + 1) * MiB }, { image_size_total: 50 * MiB }, at(i))));
      const total = (await store.holdings(q)).reduce((s, h) => s + (h.amounts.image_size_total ?? 0), 0);
      assert.ok(total <= 50 * MiB, `held ${total / MiB} MiB of 50`);
      assert.ok(grows.some((r) => r === null));
    });
  });
}

const dir = mkdtempSync(join(tmpdir(), 'pir-contract-quota-'));
quotaStoreContract('sqlite', async () => new SqliteQuotaStore({ path: join(dir, 'quotas.sqlite') }), {
  teardown: async () => rmSync(dir, { recursive: true, force: true }),
});

const dbName = uniqueName('pir_quota').replace(/-/g, '_');
quotaStoreContract('mongodb', async () => {
  const store = new MongoQuotaStore({ url: services.mongodbUrl, dbName });
  await store.start();
  return store;
}, {
  services: ['mongodb'],
  teardown: () => dropMongoDatabase(dbName),
});

test('Mongo quota store: the newest entry is found from a stale hint, and after the hinted entry was pruned', { timeout: 60_000 }, async (t) => {
  if (!(await requireServices(t, ['mongodb']))) return;
  const db = uniqueName('pir_contract_quota_hint').replace(/-/g, '_');
  const client = new MongoClient(services.mongodbUrl, { serverSelectionTimeoutMS: 3000 });
  await client.connect();
  const a = new MongoQuotaStore({ url: services.mongodbUrl, dbName: db });
  const b = new MongoQuotaStore({ url: services.mongodbUrl, dbName: db });
  t.after(async () => {
    await Promise.all([a.close(), b.close()]);
    await client.db(db).dropDatabase();
    await client.close();
  });
  const limits = { image_count_total: 10 };
  const at = new Date().toISOString();
  for (const key of ['k1', 'k2']) assert.equal(await a.hold('p', key, { image_count_total: 1 }, limits, at), null); // a has seen seq 1
  for (const key of ['k3', 'k4', 'k5']) assert.equal(await b.hold('p', key, { image_count_total: 1 }, limits, at), null); // seqs 2..4
  assert.deepEqual((await a.holdings('p')).map((h) => h.key).sort(), ['k1', 'k2', 'k3', 'k4', 'k5'], 'a steps forward from seq 1');
  // Entries up to seq 3 pruned, a's remembered seq (4 now) kept: still found; then b's, pruned: the query finds the newest.
  await client.db(db).collection('quota_ledger').deleteMany({ seq: { $lte: 3 } });
  assert.equal(await a.hold('p', 'k6', { image_count_total: 1 }, limits, at), null);
  await client.db(db).collection('quota_ledger').deleteMany({ seq: { $lte: 4 } });
  assert.deepEqual((await b.holdings('p')).map((h) => h.key).sort(), ['k1', 'k2', 'k3', 'k4', 'k5', 'k6']);
  const refused = await b.hold('p', 'k7', { image_count_total: 5 }, limits, at);
  assert.deepEqual(refused, { resource: 'image_count_total', limit: 10, usage: 6, delta: 5 }, 'checked against the true totals');
});
