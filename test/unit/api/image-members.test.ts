import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { testApp, type TestApp } from './tenant-app.js';

const code = (res: { json(): unknown }) => (res.json() as { error: { error_code: string } }).error.error_code;

describe('/v2/images/{id}/members', () => {
  let t: TestApp;
  before(async () => { t = await testApp(); });
  after(async () => { await t.close(); });

  it('shares a shared image: the owner adds, the member accepts, the image shows in its list', async () => {
    const id = await t.create('a-member', { name: 'to-share', visibility: 'shared' });
    const updatedAt = (await t.call('a-member', 'GET', `/v2/images/${id}`)).json().updated_at;
    assert.equal((await t.call('b-member', 'GET', `/v2/images/${id}`)).statusCode, 404);
    const added = await t.call('a-member', 'POST', `/v2/images/${id}/members`, { member: 'B' });
    assert.equal(added.statusCode, 200, added.body);
    assert.deepEqual(Object.keys(added.json()).sort(), ['created_at', 'image_id', 'member_id', 'schema', 'status', 'updated_at']);
    assert.equal(added.json().status, 'pending');
    assert.equal(code(await t.call('a-member', 'POST', `/v2/images/${id}/members`, { member: 'B' })), 'member_exists');
    // Glance's deserializer reads only "member": other keys are ignored, a status among them (still pending).
    const extras = await t.call('a-member', 'POST', `/v2/images/${id}/members`, { member: 'D', status: 'accepted', extra: 1 });
    assert.equal(extras.statusCode, 200, extras.body);
    assert.deepEqual([extras.json().member_id, extras.json().status], ['D', 'pending']);
    assert.equal((await t.call('a-member', 'DELETE', `/v2/images/${id}/members/D`)).statusCode, 204);
    // pending: B sees the image by id, but not in its default list
    assert.equal((await t.call('b-reader', 'GET', `/v2/images/${id}`)).statusCode, 200);
    const listed = async () => (await t.call('b-member', 'GET', '/v2/images')).json().images.map((i: { id: string }) => i.id);
    assert.ok(!(await listed()).includes(id));
    // only the member answers
    const byOwner = await t.call('a-member', 'PUT', `/v2/images/${id}/members/B`, { status: 'accepted' });
    assert.equal(byOwner.statusCode, 403);
    assert.equal(code(byOwner), 'member_status_by_member_only');
    // A project that is no member: Glance looks the member up before the modify_member policy (404).
    const noMember = await t.call('a-member', 'PUT', `/v2/images/${id}/members/E`, { status: 'accepted' });
    assert.equal(noMember.statusCode, 404, noMember.body);
    assert.equal(code(noMember), 'member_not_found');
    // openstacksdk sends the member id beside the status; Glance reads only the status.
    const accepted = await t.call('b-member', 'PUT', `/v2/images/${id}/members/B`, { status: 'accepted', member: 'B' });
    assert.equal(accepted.statusCode, 200, accepted.body);
    assert.equal(accepted.json().status, 'accepted');
    assert.ok((await listed()).includes(id));
    assert.equal((await t.call('b-member', 'PUT', `/v2/images/${id}/members/B`, { status: 'maybe' })).statusCode, 400);
    const byReader = await t.call('b-reader', 'PUT', `/v2/images/${id}/members/B`, { status: 'rejected' });
    assert.equal(byReader.statusCode, 403);
    assert.match(byReader.json().error.message, /the member project itself, with the member role/, 'the reason that applies, not "only the owner project"');
    // Members live apart from the image, as in Glance: adding and answering leave its updated_at.
    await new Promise((resolve) => setTimeout(resolve, 1100)); // updated_at is shown to the second
    await t.call('a-member', 'POST', `/v2/images/${id}/members`, { member: 'C' });
    assert.equal((await t.call('b-member', 'PUT', `/v2/images/${id}/members/B`, { status: 'rejected' })).statusCode, 200);
    assert.equal((await t.call('a-member', 'GET', `/v2/images/${id}`)).json().updated_at, updatedAt);
    await t.d.relay.drain();
    const types = t.d.published.filter((e) => e.image_id === id).map((e) => e.type);
    assert.ok(types.includes('image.member.created') && types.includes('image.member.updated'), types.join());
  });

  it('shows the owner every member and a member only its own record', async () => {
    const id = await t.create('a-member', { visibility: 'shared' });
    await t.call('a-member', 'POST', `/v2/images/${id}/members`, { member: 'B' });
    await t.call('a-member', 'POST', `/v2/images/${id}/members`, { member: 'C' });
    const all = (await t.call('a-reader', 'GET', `/v2/images/${id}/members`)).json();
    assert.deepEqual(all.members.map((m: { member_id: string }) => m.member_id).sort(), ['B', 'C']);
    assert.equal(all.schema, '/v2/schemas/members');
    const own = (await t.call('b-member', 'GET', `/v2/images/${id}/members`)).json();
    assert.deepEqual(own.members.map((m: { member_id: string }) => m.member_id), ['B']);
    assert.equal((await t.call('b-member', 'GET', `/v2/images/${id}/members/B`)).statusCode, 200);
    assert.equal((await t.call('b-member', 'GET', `/v2/images/${id}/members/C`)).statusCode, 404);
    assert.equal((await t.call('a-member', 'GET', `/v2/images/${id}/members/C`)).statusCode, 200);
    assert.equal((await t.call('admin', 'GET', `/v2/images/${id}/members`)).json().members.length, 2);
    // a member cannot change another member, nor remove itself; the owner removes
    assert.equal((await t.call('b-member', 'PUT', `/v2/images/${id}/members/C`, { status: 'accepted' })).statusCode, 404);
    assert.equal((await t.call('b-member', 'DELETE', `/v2/images/${id}/members/B`)).statusCode, 403);
    assert.equal((await t.call('b-member', 'POST', `/v2/images/${id}/members`, { member: 'D' })).statusCode, 403);
    assert.equal((await t.call('a-member', 'DELETE', `/v2/images/${id}/members/B`)).statusCode, 204);
    assert.equal((await t.call('a-member', 'DELETE', `/v2/images/${id}/members/B`)).statusCode, 404);
    assert.equal((await t.call('b-member', 'GET', `/v2/images/${id}`)).statusCode, 404);
  });

  it('takes members only on shared images (403), holds the 128 quota (413) and validates bodies (400)', async () => {
    for (const visibility of ['private', 'public', 'community']) {
      const id = await t.create(visibility === 'public' ? 'admin' : 'a-member', { visibility });
      const res = await t.call(visibility === 'public' ? 'admin' : 'a-member', 'POST', `/v2/images/${id}/members`, { member: 'B' });
      assert.equal(res.statusCode, 403, visibility);
      assert.equal(code(res), 'members_only_shared');
      // Showing a member of such an image is 404, as Glance (which hides the reason).
      const shown = await t.call(visibility === 'public' ? 'admin' : 'a-member', 'GET', `/v2/images/${id}/members/B`);
      assert.equal(shown.statusCode, 404, visibility);
      assert.equal(code(shown), 'member_not_found');
    }
    const id = await t.create('a-member', { visibility: 'shared' });
    for (let i = 0; i < 128; i++) assert.equal((await t.call('a-member', 'POST', `/v2/images/${id}/members`, { member: `p${i}` })).statusCode, 200);
    const over = await t.call('a-member', 'POST', `/v2/images/${id}/members`, { member: 'one-more' });
    assert.equal(over.statusCode, 413);
    assert.equal(code(over), 'too_many_members');
    for (const body of [{}, { member: '' }, { member: 5 }, { member: 'x'.repeat(256) }]) {
      assert.equal((await t.call('a-member', 'POST', `/v2/images/${id}/members`, body)).statusCode, 400, JSON.stringify(body));
    }
    assert.equal((await t.call('a-reader', 'POST', `/v2/images/${id}/members`, { member: 'Z' })).statusCode, 403);
  });

  it('keeps memberships when visibility moves away from shared, and ignores them until it is shared again', async () => {
    const id = await t.create('a-member', { visibility: 'shared' });
    await t.call('a-member', 'POST', `/v2/images/${id}/members`, { member: 'B' });
    await t.patch('a-member', id, [{ op: 'replace', path: '/visibility', value: 'private' }]);
    assert.equal((await t.call('b-member', 'GET', `/v2/images/${id}`)).statusCode, 404);
    await t.patch('a-member', id, [{ op: 'replace', path: '/visibility', value: 'shared' }]);
    assert.equal((await t.call('b-member', 'GET', `/v2/images/${id}`)).statusCode, 200);
  });
});
