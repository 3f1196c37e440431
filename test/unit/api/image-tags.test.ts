import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { testApp, type TestApp } from './tenant-app.js';

describe('PUT and DELETE /v2/images/{id}/tags/{tag}', () => {
  let t: TestApp;
  before(async () => { t = await testApp(); });
  after(async () => { await t.close(); });

  it('adds a tag once, removes it, and 404s removing a tag that is not there', async () => {
    const id = await t.create('a-member');
    assert.equal((await t.call('a-member', 'PUT', `/v2/images/${id}/tags/debian%2012`)).statusCode, 204);
    assert.equal((await t.call('a-member', 'PUT', `/v2/images/${id}/tags/debian%2012`)).statusCode, 204);
    assert.deepEqual((await t.call('a-reader', 'GET', `/v2/images/${id}`)).json().tags, ['debian 12']);
    assert.equal((await t.call('a-member', 'DELETE', `/v2/images/${id}/tags/debian%2012`)).statusCode, 204);
    const missing = await t.call('a-member', 'DELETE', `/v2/images/${id}/tags/debian%2012`);
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().error.error_code, 'tag_not_found');
    await t.d.relay.drain();
    assert.equal(t.d.published.filter((e) => e.image_id === id && e.type === 'image.updated').length, 2);
  });

  it('holds the 128-tag quota (413) and the tag length (400)', async () => {
    const id = await t.create('a-member', { tags: Array.from({ length: 128 }, (_, i) => `t${i}`) });
    const res = await t.call('a-member', 'PUT', `/v2/images/${id}/tags/one-more`);
    assert.equal(res.statusCode, 413);
    assert.equal(res.json().error.error_code, 'too_many_tags');
    assert.equal((await t.call('a-member', 'PUT', `/v2/images/${id}/tags/${'x'.repeat(256)}`)).statusCode, 400);
    // Over the quota at create is the same 413 (as Glance), not a schema 400.
    const create = await t.call('a-member', 'POST', '/v2/images', { tags: Array.from({ length: 129 }, (_, i) => `t${i}`) });
    assert.equal(create.statusCode, 413);
    assert.equal(create.json().error.error_code, 'too_many_tags');
    assert.match(create.json().error.message, /makes 129/);
  });

  it('is for the owner project: readers 403, other projects 404 (private) or 403 (public)', async () => {
    const priv = await t.create('a-member', { visibility: 'private' });
    assert.equal((await t.call('a-reader', 'PUT', `/v2/images/${priv}/tags/x`)).statusCode, 403);
    assert.equal((await t.call('b-member', 'PUT', `/v2/images/${priv}/tags/x`)).statusCode, 404);
    const pub = await t.create('admin', { visibility: 'public' });
    assert.equal((await t.call('b-member', 'PUT', `/v2/images/${pub}/tags/x`)).statusCode, 403);
    assert.equal((await t.call('b-member', 'DELETE', `/v2/images/${pub}/tags/x`)).statusCode, 403);
  });
});
