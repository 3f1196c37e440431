/** MetadefStore contract against SQLite (embedded) and MongoDB/FerretDB (distributed), plus the Mongo store's crash recovery. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MongoClient } from 'mongodb';
import type { MetadefNamespace, MetadefStore } from '../../core/metadef-ports.js';
import { MetadefNameTakenError } from '../../core/metadef-ports.js';
import { SqliteMetadefStore } from '../../infra/embedded/sqlite-metadef-store.js';
import { MongoMetadefStore } from '../../infra/mongo/mongo-metadef-store.js';
import { dropMongoDatabase, requireServices, services, uniqueName } from '../support/services.js';
import { metadefStoreContract } from './metadef-store.contract.js';

/** Where each store's data is, so the concurrency case can open a second instance on it. */
const homes = new WeakMap<MetadefStore, string>();
const homeOf = (store: MetadefStore) => {
  const home = homes.get(store);
  if (home === undefined) throw new Error('not a store this file opened');
  return home;
};

metadefStoreContract('sqlite in memory', () => new SqliteMetadefStore({ path: ':memory:' }));

const dir = mkdtempSync(join(tmpdir(), 'pir-contract-metadefs-'));
let files = 0;
const openFile = (path: string) => {
  const store = new SqliteMetadefStore({ path });
  homes.set(store, path);
  return store;
};
metadefStoreContract('sqlite file', () => openFile(join(dir, `m${files++}.db`)), {
  peer: (store) => openFile(homeOf(store)),
  teardown: async () => rmSync(dir, { recursive: true, force: true }),
});

const dbName = uniqueName('pir_contract_metadefs').replace(/-/g, '_');
let c = 0;
const openMongo = async (prefix: string) => {
  const store = new MongoMetadefStore({ url: services.mongodbUrl, dbName, prefix });
  await store.start();
  homes.set(store, prefix);
  return store;
};
metadefStoreContract('mongodb', () => openMongo(`s${c++}_`), {
  services: ['mongodb'],
  peer: (store) => openMongo(homeOf(store)),
  teardown: () => dropMongoDatabase(dbName),
});

function namespace(name: string): MetadefNamespace {
  const now = new Date().toISOString();
  return { id: randomUUID(), namespace: name, visibility: 'public', protected: false, owner: 'admin', created_at: now, updated_at: now, resource_type_associations: [], properties: {}, objects: [], tags: [], revision: 1 };
}

/**
 * MongoDB-wire only: a writer that dies between its steps (writes its revision but not the
 * head; claims a name but never writes the revision) leaves nothing wedged, and a claim still
 * in flight keeps its name.
 */
test('Mongo metadef store: recovers from writers that died between claim and write', { timeout: 60_000 }, async (t) => {
  if (!(await requireServices(t, ['mongodb']))) return;
  const db = uniqueName('pir_contract_metadef_crash').replace(/-/g, '_');
  const store = new MongoMetadefStore({ url: services.mongodbUrl, dbName: db });
  await store.start();
  const client = new MongoClient(services.mongodbUrl, { serverSelectionTimeoutMS: 3000 });
  await client.connect();
  t.after(async () => {
    await store.close();
    await client.db(db).dropDatabase();
    await client.close();
  });
  const revisions = client.db(db).collection<{ _id: string; doc: string | null }>('metadef_revisions');
  const heads = client.db(db).collection<{ _id: string; n: number; doc: string | null }>('metadef_heads');
  const names = client.db(db).collection<{ _id: string; name: string; g: number; ns_id: string; rev: number; at: number }>('metadef_names');
  const claim = (name: string, g: number, nsId: string, rev: number, ageMs: number) => names.insertOne({ _id: JSON.stringify([name, g]), name, g, ns_id: nsId, rev, at: Date.now() - ageMs });

  // A replace that won revision 2 and died before the head: reads and writers roll forward.
  const a = namespace('A');
  await store.create(a);
  const a2 = { ...a, description: 'won, head never written', revision: 2 };
  await revisions.insertOne({ _id: `${a.id}:${String(2).padStart(10, '0')}`, doc: JSON.stringify(a2) });
  assert.deepEqual(await store.get('A'), a2);
  assert.deepEqual(await store.list(), [a2]);
  assert.equal(await store.replace(a, { ...a, revision: 2 }), false);
  const a3 = { ...a2, description: 'next', revision: 3 };
  assert.equal(await store.replace(a2, a3), true);
  assert.deepEqual((await heads.findOne({ _id: a.id }))?.n, 3);

  // A create that died after claiming its name: the name is held while the claim is young, then voided.
  const ghostId = randomUUID();
  await heads.insertOne({ _id: ghostId, n: 0, doc: null });
  await claim('ghost', 1, ghostId, 1, 0);
  assert.equal(await store.get('ghost'), null);
  await assert.rejects(store.create(namespace('ghost')), MetadefNameTakenError, 'a create under way holds its name');
  await names.updateOne({ _id: JSON.stringify(['ghost', 1]) }, { $set: { at: Date.now() - 3_600_000 } });
  const ghost = namespace('ghost');
  await store.create(ghost);
  assert.deepEqual(await store.get('ghost'), ghost);
  assert.deepEqual((await store.list()).map((x) => x.namespace).sort(), ['A', 'ghost']);

  // A rename that died after claiming the new name: voiding bumps the namespace's revision, content unchanged.
  await claim('B', 1, a.id, 4, 3_600_000);
  const b = namespace('B');
  await store.create(b);
  assert.deepEqual(await store.get('B'), b);
  assert.deepEqual(await store.get('A'), { ...a3, revision: 4 });
  assert.equal(await store.replace(a3, { ...a3, description: 'stale', revision: 4 }), false, 'revision 4 went to the voiding');
});
