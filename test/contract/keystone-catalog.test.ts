/**
 * glance-download's catalog lookup (ingest/glance-download.ts KeystoneCatalog) against the real
 * Keystone of infra/local: the image endpoint of a region (any case) and interface, in the catalog
 * the caller's own token sees; a region or interface it lacks, and a refused token, as the clear
 * failures the import's task shows.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { GlanceDownloadError, KeystoneCatalog } from '../../ingest/glance-download.js';
import { catalogRegionFor, issueToken, KEYSTONE, type IssuedToken } from '../support/keystone.js';
import { requireServices, serviceUp, uniqueName } from '../support/services.js';

const failsWith = (code: string, pattern: RegExp) => (error: unknown) => {
  assert.ok(error instanceof GlanceDownloadError, String(error));
  assert.equal(error.code, code, error.message);
  assert.match(error.message, pattern);
  return true;
};

describe("glance-download's Keystone catalog lookup (real Keystone)", () => {
  let demo: IssuedToken;
  let region: { region: string; remove(): Promise<void> } | null = null;
  const url = 'http://glance.example.test:9292';

  before(async () => {
    if (!(await serviceUp('keystone')).up) return; // each test then fails (CI) or skips
    region = await catalogRegionFor(url, uniqueName('pir-gd'));
    demo = await issueToken('demo', 'demo');
  });
  after(async () => { await region?.remove(); });

  it("finds the region's image endpoint for an interface, with the caller's token", async (t) => {
    if (!(await requireServices(t, ['keystone']))) return;
    const catalog = new KeystoneCatalog({ url: KEYSTONE, timeoutSeconds: 10 });
    assert.equal(await catalog.imageEndpoint(demo.token, region!.region, 'public'), url);
    assert.equal(await catalog.imageEndpoint(demo.token, region!.region.toUpperCase(), 'internal'), url);
  });

  it('fails clearly for a region or interface the catalog lacks, and for a token Keystone refuses', async (t) => {
    if (!(await requireServices(t, ['keystone']))) return;
    const catalog = new KeystoneCatalog({ url: KEYSTONE, timeoutSeconds: 10 });
    await assert.rejects(catalog.imageEndpoint(demo.token, 'not a region', 'public'), failsWith('glance_endpoint_not_found', /region 'not a region' and interface 'public'/));
    await assert.rejects(catalog.imageEndpoint(demo.token, region!.region, 'not an interface'), failsWith('glance_endpoint_not_found', /interface 'not an interface'/));
    await assert.rejects(catalog.imageEndpoint('not-a-token', region!.region, 'public'), failsWith('catalog_unavailable', /refused the caller's token .*HTTP 401/));
  });
});
