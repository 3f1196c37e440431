/** CatalogStore contract against SQLite (embedded) and MongoDB/FerretDB (distributed). */
import { MongoClient } from 'mongodb';
import { SqliteCatalogStore } from '../../infra/embedded/sqlite-catalog-store.js';
import { MongoCatalogStore } from '../../infra/mongo/mongo-catalog-store.js';
import { services, uniqueName } from '../support/services.js';
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
