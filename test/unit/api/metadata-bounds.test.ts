/**
 * Issue 6 points 9 and 16: an image's metadata is bounded as Glance bounds it, Glance's reserved
 * names are refused with 403, and a listing page never grows past its byte budget.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { LIMITS } from '../../../core/limits.js';
import { PAGE_LIMITS } from '../../../api/list-page.js';
import { appFixture, assertErrorShape, TOKEN, type AppFixture } from './app-fixture.js';

describe('image metadata bounds and reserved names', () => {
  let f: AppFixture;
  before(async () => { f = await appFixture(); });
  after(async () => f.close());

  const create = (body: unknown) => f.app.inject({ method: 'POST', url: '/v2/images', headers: { 'x-auth-token': TOKEN }, payload: body as object });

  it("refuses Glance's reserved and read-only names with 403, whatever the value", async () => {
    const reserved = ['deleted', 'deleted_at', 'location', 'os_glance_import_task', 'os_glance_failed_import', 'os_glancex'];
    const readOnly = ['stores', 'status', 'checksum', 'size', 'virtual_size', 'created_at', 'updated_at', 'self', 'file', 'schema', 'direct_url', 'locations', 'pir_stage'];
    // owner is not among them: an administrator (this token) may create an image for another project, as in Glance.
    for (const name of reserved) {
      for (const value of ['x', true]) {
        const response = await create({ name: 'r', [name]: value });
        assert.equal(response.statusCode, 403, `${name}=${value}: ${response.body}`);
        assertErrorShape(response.json(), 403, 'reserved_property');
        assert.match(response.json().error.message, new RegExp(`'${name}'`));
      }
    }
    for (const name of readOnly) {
      const response = await create({ name: 'r', [name]: 'x' });
      assert.equal(response.statusCode, 403, `${name}: ${response.body}`);
      assertErrorShape(response.json(), 403, 'read_only_property');
    }
    assert.equal((await create({ name: 'fine', id: '6d1f3f43-4c5b-4c57-9c3a-6d9a3d4e2f10', os_distro: 'ubuntu' })).statusCode, 201);
  });

  it('holds at most 128 extra properties, names of 255 characters, 64 KiB in all', async () => {
    const props = (n: number, size = 1) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`p${i}`, 'v'.repeat(size)]));
    assert.equal((await create({ name: 'ok', ...props(LIMITS.imageProperties) })).statusCode, 201);
    const tooMany = await create({ name: 'many', ...props(LIMITS.imageProperties + 1) });
    assert.equal(tooMany.statusCode, 413, tooMany.body);
    assertErrorShape(tooMany.json(), 413, 'too_many_properties');
    // Far more (past the body schema's own cap): the same 413, not a schema 400.
    const farTooMany = await create({ name: 'many', ...props(1000) });
    assert.equal(farTooMany.statusCode, 413, farTooMany.body);
    assertErrorShape(farTooMany.json(), 413, 'too_many_properties');
    const longName = await create({ ['k'.repeat(256)]: 'v' });
    assert.equal(longName.statusCode, 400);
    assertErrorShape(longName.json(), 400, 'property_name_too_long');
    const tooBig = await create({ name: 'big', ...props(2, 40_000) });
    assert.equal(tooBig.statusCode, 413, tooBig.body);
    assertErrorShape(tooBig.json(), 413, 'properties_too_large');
    // Multi-byte characters count as the bytes they take.
    const wide = await create({ name: 'wide', a: '€'.repeat(22_000) });
    assert.equal(wide.statusCode, 413, wide.body);
  });
});

describe('listing pages within a byte budget', () => {
  let f: AppFixture;
  const count = 120;
  before(async () => {
    f = await appFixture();
    // Each image carries close to the 64 KiB of properties allowed: 120 of them are ~7.5 MiB of JSON.
    const properties = Object.fromEntries(Array.from({ length: 4 }, (_, i) => [`blob${i}`, String(i).repeat(16_000)]));
    for (let i = 0; i < count; i++) await f.d.images.create({ project_id: 'admin', user_id: 'u', roles: ['admin'] }, { name: `big-${String(i).padStart(3, '0')}`, properties });
  });
  after(async () => f.close());

  it('cuts a page of large images short, with a next link, and the pages together list every image once', async () => {
    const seen = new Set<string>();
    let url: string | undefined = '/v2/images?limit=1000&sort=name:asc';
    let pages = 0;
    while (url) {
      const response: { statusCode: number; body: string; json(): unknown } = await f.app.inject({ method: 'GET', url, headers: { 'x-auth-token': TOKEN } });
      assert.equal(response.statusCode, 200);
      assert.ok(response.body.length < PAGE_LIMITS.budgetBytes + 100 * 1024, `a page of ${response.body.length} characters`);
      const body = response.json() as { images: { id: string }[]; next?: string };
      for (const image of body.images) {
        assert.ok(!seen.has(image.id), 'no image twice');
        seen.add(image.id);
      }
      url = body.next;
      pages += 1;
      assert.ok(pages < 20);
    }
    assert.equal(seen.size, count);
    assert.ok(pages >= 2, `${pages} page(s)`);
  });
});
