/**
 * A private gallery below a shared one is not shared through it (README "Gallery sharing"): the
 * member project of the shared gallery sees neither the private gallery nor what lies below it
 * (its galleries, their images, counts, `?gallery=…&recursive=true`), while the owner sees all.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { testApp, type TestApp } from './tenant-app.js';

describe('a private gallery below a shared one', () => {
  let t: TestApp;
  before(async () => { t = await testApp(); });
  after(async () => { await t.close(); });

  it('is hidden, with everything below it, from the members of the shared gallery above', async () => {
    const gallery = async (name: string, parent_id?: string, visibility?: string) => {
      const res = await t.call('a-member', 'POST', '/v2/galleries', { name, ...(parent_id ? { parent_id } : {}), ...(visibility ? { visibility } : {}) });
      assert.equal(res.statusCode, 201, res.body);
      return res.json().id as string;
    };
    const top = await gallery('top');
    const open = await gallery('open', top);
    const closed = await gallery('closed', top, 'private');
    const underClosed = await gallery('under-closed', closed);
    const place = async (name: string, gid: string) => {
      const id = await t.create('a-member', { name, visibility: 'private' });
      assert.equal((await t.patch('a-member', id, [{ op: 'add', path: '/pir_gallery_id', value: gid }])).statusCode, 200);
      return id;
    };
    const inOpen = await place('in-open', open);
    const inClosed = await place('in-closed', closed);
    const inUnder = await place('in-under-closed', underClosed);
    assert.equal((await t.call('a-member', 'POST', `/v2/galleries/${top}/members`, { member: 'B' })).statusCode, 200);
    assert.equal((await t.call('b-member', 'PUT', `/v2/galleries/${top}/members/B`, { status: 'accepted' })).statusCode, 200);

    // The member project: the open part only.
    assert.equal((await t.call('b-member', 'GET', `/v2/galleries/${open}`)).statusCode, 200);
    assert.equal((await t.call('b-member', 'GET', `/v2/images/${inOpen}`)).statusCode, 200);
    for (const hidden of [closed, underClosed]) {
      assert.equal((await t.call('b-member', 'GET', `/v2/galleries/${hidden}`)).statusCode, 404, 'the private gallery and the one below it');
      assert.equal((await t.call('b-member', 'GET', `/v2/images?gallery=${hidden}`)).statusCode, 404);
    }
    for (const image of [inClosed, inUnder]) assert.equal((await t.call('b-member', 'GET', `/v2/images/${image}`)).statusCode, 404);
    const subs = await t.call('b-member', 'GET', `/v2/galleries/${top}/galleries?recursive=true`);
    assert.equal(subs.statusCode, 200, subs.body);
    assert.deepEqual(JSON.stringify(subs.json()).match(/"id":"[^"]+"/g), [`"id":"${open}"`], subs.body);
    const counts = (await t.call('b-member', 'GET', `/v2/galleries/${top}?recursive=true`)).json();
    assert.equal(counts.gallery_count, 1);
    assert.equal(counts.image_count, 1);
    const listed = (await t.call('b-member', 'GET', `/v2/images?gallery=${top}&recursive=true`)).json().images.map((i: { id: string }) => i.id);
    assert.deepEqual(listed, [inOpen]);
    assert.deepEqual((await t.call('b-member', 'GET', '/v2/images')).json().images.map((i: { id: string }) => i.id), [inOpen]);

    // The owner: everything.
    const ownCounts = (await t.call('a-member', 'GET', `/v2/galleries/${top}?recursive=true`)).json();
    assert.equal(ownCounts.gallery_count, 3);
    assert.equal(ownCounts.image_count, 3);

    // Shared again, the gallery lets the members of the one above in again.
    assert.equal((await t.call('a-member', 'PATCH', `/v2/galleries/${closed}`, { visibility: 'shared' })).statusCode, 200);
    assert.equal((await t.call('b-member', 'GET', `/v2/images/${inUnder}`)).statusCode, 200);
    assert.equal((await t.call('b-member', 'GET', `/v2/galleries/${top}?recursive=true`)).json().image_count, 3);
  });
});
