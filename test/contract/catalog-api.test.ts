/** The catalog extension's API on the distributed stores (MongoDB wire: FerretDB), as test/unit/api/catalog.test.ts on SQLite. */
import { test } from 'node:test';
import { MongoManifestStore } from '../../infra/mongo/mongo-manifest-store.js';
import { MongoCatalogStore } from '../../infra/mongo/mongo-catalog-store.js';
import { catalogApiSuite } from '../support/catalog-api-suite.js';
import { dropMongoDatabase, requireServices, services, uniqueName } from '../support/services.js';

test('catalog API on MongoDB (FerretDB)', { timeout: 300_000 }, async (t) => {
  if (!(await requireServices(t, ['mongodb']))) return;
  const dbName = uniqueName('pir_catalog_api').replace(/-/g, '_');
  const store = new MongoManifestStore({ url: services.mongodbUrl, dbName });
  const catalog = new MongoCatalogStore({ url: services.mongodbUrl, dbName });
  await catalog.start();
  const otherProcess = new MongoCatalogStore({ url: services.mongodbUrl, dbName });
  await otherProcess.start();
  t.after(async () => {
    await store.close();
    await catalog.close();
    await otherProcess.close();
    await dropMongoDatabase(dbName);
  });
  await catalogApiSuite(t, store, catalog, otherProcess);
});
