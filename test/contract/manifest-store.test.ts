/** ManifestStore contract against SQLite (embedded) and MongoDB/FerretDB (distributed). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MongoClient } from 'mongodb';
import { SqliteManifestStore } from '../../infra/embedded/sqlite-manifest-store.js';
import { MongoManifestStore } from '../../infra/mongo/mongo-manifest-store.js';
import { services, uniqueName } from '../support/services.js';
import { manifestStoreContract } from './manifest-store.contract.js';

const dir = mkdtempSync(join(tmpdir(), 'pir-contract-sqlite-'));
let n = 0;
manifestStoreContract('sqlite', () => new SqliteManifestStore({ path: join(dir, `manifest-${n++}.sqlite`) }), {
  teardown: async () => rmSync(dir, { recursive: true, force: true }),
});

// One database per test run, one collection per store.
const dbName = uniqueName('pir_contract').replace(/-/g, '_');
let c = 0;
manifestStoreContract('mongodb', () => new MongoManifestStore({ url: services.mongodbUrl, dbName, collection: `images_${c++}` }), {
  services: ['mongodb'],
  teardown: async () => {
    const client = new MongoClient(services.mongodbUrl, { serverSelectionTimeoutMS: 2000 });
    try {
      await client.connect();
      await client.db(dbName).dropDatabase();
    } finally {
      await client.close();
    }
  },
});
