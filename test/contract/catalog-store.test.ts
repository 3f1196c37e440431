/** CatalogStore contract against SQLite (embedded) and MongoDB/FerretDB (distributed). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MongoClient } from 'mongodb';
import { SqliteCatalogStore } from '../../infra/embedded/sqlite-catalog-store.js';
import { MongoCatalogStore } from '../../infra/mongo/mongo-catalog-store.js';
import { dropMongoDatabase, requireServices, services, uniqueName } from '../support/services.js';
import { catalogStoreContract } from './catalog-store.contract.js';

catalogStoreContract('sqlite', () => new SqliteCatalogStore({ path: ':memory:' }));

const dbName = uniqueName('pir_contract_catalog').replace(/-/g, '_');
let c = 0;
catalogStoreContract('mongodb', async () => {
  const store = new MongoCatalogStore({ url: services.mongodbUrl, dbName, prefix: `s${c++}_` });
  await store.start();
  return store;
}, {
  services: ['mongodb'],
  teardown: () => dropMongoDatabase(dbName),
});

/**
 * MongoDB-wire only: revisions are found by `_id` from a hint (this process's last seen number,
 * or the image's head document), so a second process, old data without heads, and a head left
 * behind must all still see the newest revision; pruning and dropping delete by `_id` in batches.
 */
test('Mongo catalog store: the newest revision across processes, without a head, with a stale head; pages after pruning; pruning and dropping past one batch', { timeout: 60_000 }, async (t) => {
  if (!(await requireServices(t, ['mongodb']))) return;
  const db = uniqueName('pir_contract_revheads').replace(/-/g, '_');
  const open = async () => { const s = new MongoCatalogStore({ url: services.mongodbUrl, dbName: db }); await s.start(); return s; };
  const client = new MongoClient(services.mongodbUrl, { serverSelectionTimeoutMS: 3000 });
  await client.connect();
  const stores: MongoCatalogStore[] = [];
  t.after(async () => {
    for (const s of stores) await s.close();
    await client.db(db).dropDatabase();
    await client.close();
  });
  const fresh = async () => { const s = await open(); stores.push(s); return s; };
  const rev = (imageId: string) => ({ image_id: imageId, at: new Date().toISOString(), project_id: 'p1', user_id: 'u1', action: 'update', patch: [], metadata: { name: 'x' } });
  const numbers = async (s: MongoCatalogStore, id: string) => (await s.revisions(id, 0, 1000)).map((r) => r.n);

  // Two processes: b has never seen the image; a's remembered number goes stale.
  const a = await fresh();
  await a.appendFirstRevision(rev('img'));
  for (let i = 0; i < 5; i++) await a.appendRevision(rev('img'));
  await a.pruneRevisions('img', 2);
  const b = await fresh();
  assert.equal((await b.latestRevision('img'))?.n, 6);
  assert.equal((await b.appendRevision(rev('img'))).n, 7);
  assert.equal((await a.appendRevision(rev('img'))).n, 8, 'a steps past the number b took');
  assert.equal((await (await fresh()).latestRevision('img'))?.n, 8);
  assert.deepEqual(await numbers(a, 'img'), [5, 6, 7, 8]);

  // More than one delete batch at once: pruning, then dropping.
  for (let i = 0; i < 40; i++) await a.appendRevision(rev('many'));
  await a.pruneRevisions('many', 3);
  assert.deepEqual(await numbers(a, 'many'), [38, 39, 40]);
  assert.deepEqual((await a.revisions('many', 10, 2)).map((r) => r.n), [38, 39], 'a page from inside the pruned range starts at the oldest kept');
  assert.deepEqual((await a.revisions('many', 38, 1)).map((r) => r.n), [39]);
  assert.deepEqual(await a.revisions('many', 40, 5), []);
  for (let i = 0; i < 30; i++) await a.appendRevision(rev('many'));
  assert.deepEqual((await (await fresh()).revisions('many', 0, 20)).map((r) => r.n), Array.from({ length: 20 }, (_, i) => 38 + i), 'a page longer than one batch of lookups');
  await (await fresh()).dropRevisions('many');
  assert.deepEqual(await numbers(a, 'many'), []);
  assert.equal(await client.db(db).collection('image_revision_heads').countDocuments({ _id: 'many' as never }), 0, 'the head goes with them');
  assert.equal(await (await fresh()).latestRevision('many'), null);

  // History written before heads existed, its first revisions pruned: found by the one scan.
  const revs = client.db(db).collection('image_revisions');
  for (const n of [5, 6, 7]) await revs.insertOne({ _id: `old:${String(n).padStart(10, '0')}` as never, ...rev('old'), n });
  assert.equal((await (await fresh()).latestRevision('old'))?.n, 7);
  assert.equal((await (await fresh()).appendRevision(rev('old'))).n, 8);
  // A head left behind (its writes failed) below revisions pruned since: not trusted.
  await client.db(db).collection('image_revision_heads').updateOne({ _id: 'old' as never }, { $set: { n: 2 } });
  assert.equal((await (await fresh()).latestRevision('old'))?.n, 8);
});
