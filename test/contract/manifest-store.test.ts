/** ManifestStore contract against SQLite (embedded) and MongoDB/FerretDB (distributed). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteManifestStore } from '../../infra/embedded/sqlite-manifest-store.js';
import { MongoManifestStore } from '../../infra/mongo/mongo-manifest-store.js';
import { dropMongoDatabase, services, uniqueName } from '../support/services.js';
import { manifestStoreContract } from './manifest-store.contract.js';

const dir = mkdtempSync(join(tmpdir(), 'pir-contract-sqlite-'));
let n = 0;
// Where each store keeps its data, so the contract can open more instances on the same data.
const sqlitePaths = new WeakMap<object, string>();
manifestStoreContract('sqlite', () => {
  const path = join(dir, `manifest-${n++}.sqlite`);
  const store = new SqliteManifestStore({ path });
  sqlitePaths.set(store, path);
  return store;
}, {
  teardown: async () => rmSync(dir, { recursive: true, force: true }),
  openSibling: (store) => new SqliteManifestStore({ path: sqlitePaths.get(store)! }),
});

// The same contract with tiny driving sets, so list queries (and keyword searches) take the
// walk-the-index plans and the FTS5 intersection that the small fixtures would otherwise skip.
const smallDir = mkdtempSync(join(tmpdir(), 'pir-contract-sqlite-small-'));
manifestStoreContract('sqlite (driving sets of at most 4 rows)', () => new SqliteManifestStore({ path: join(smallDir, `manifest-${n++}.sqlite`), driveMax: 4 }), {
  teardown: async () => rmSync(smallDir, { recursive: true, force: true }),
});

// One database per test run, one collection per store.
const dbName = uniqueName('pir_contract').replace(/-/g, '_');
let c = 0;
const collections = new WeakMap<object, string>();
manifestStoreContract('mongodb', () => {
  const collection = `images_${c++}`;
  const store = new MongoManifestStore({ url: services.mongodbUrl, dbName, collection });
  collections.set(store, collection);
  return store;
}, {
  services: ['mongodb'],
  openSibling: (store) => new MongoManifestStore({ url: services.mongodbUrl, dbName, collection: collections.get(store)! }),
  teardown: () => dropMongoDatabase(dbName),
});
