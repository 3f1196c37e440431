/** The catalog extension's API on the embedded stores (SQLite); test/contract/catalog-api.test.ts runs it on FerretDB. */
import { test } from 'node:test';
import { SqliteManifestStore } from '../../../infra/embedded/sqlite-manifest-store.js';
import { SqliteCatalogStore } from '../../../infra/embedded/sqlite-catalog-store.js';
import { catalogApiSuite } from '../../support/catalog-api-suite.js';

test('catalog API on SQLite', { timeout: 120_000 }, async (t) => {
  const catalog = new SqliteCatalogStore({ path: ':memory:' });
  t.after(() => catalog.close());
  await catalogApiSuite(t, new SqliteManifestStore({ path: ':memory:' }), catalog);
});
