import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Ajv } from 'ajv';
import { testApp, type TestApp } from './tenant-app.js';

/** The published schemas describe what the server returns: responses validate against them, as glanceclient does. */
describe('GET /v2/schemas/*', () => {
  let t: TestApp;
  let ajv: Ajv;
  before(async () => { t = await testApp(); ajv = new Ajv({ strict: false }); });
  after(async () => { await t.close(); });

  const schema = async (name: string) => {
    const res = await t.call('a-reader', 'GET', `/v2/schemas/${name}`);
    assert.equal(res.statusCode, 200);
    return res.json();
  };

  it('publishes image, images, member, members, task and tasks', async () => {
    for (const name of ['image', 'images', 'member', 'members', 'task', 'tasks']) assert.equal((await schema(name)).name, name);
    const image = await schema('image');
    assert.deepEqual(image.additionalProperties, { type: 'string' });
    assert.deepEqual(image.properties.name.type, ['null', 'string']);
    assert.equal(image.properties.status.readOnly, true);
  });

  it('validates every response shape the server gives', async () => {
    const id = await t.create('a-member', { name: 'v', visibility: 'shared', os_distro: 'debian', tags: ['t'] });
    await t.activate('a-member', id);
    await t.call('a-member', 'POST', `/v2/images/${id}/members`, { member: 'B' });
    const check = (name: string, body: unknown, s: Record<string, unknown>) => {
      const validate = ajv.compile({ ...s, $id: undefined });
      assert.ok(validate(body), `${name}: ${JSON.stringify(validate.errors)}`);
    };
    const image = await schema('image');
    const { name: _n, links: _l, ...imageJson } = image;
    check('image', (await t.call('a-member', 'GET', `/v2/images/${id}`)).json(), imageJson);
    const { name: _n2, links: _l2, ...imagesJson } = await schema('images');
    check('images', (await t.call('a-member', 'GET', '/v2/images')).json(), imagesJson);
    const { name: _n3, ...memberJson } = await schema('member');
    check('member', (await t.call('a-member', 'GET', `/v2/images/${id}/members/B`)).json(), memberJson);
    const { name: _n4, links: _l4, ...membersJson } = await schema('members');
    check('members', (await t.call('a-member', 'GET', `/v2/images/${id}/members`)).json(), membersJson);
    const { name: _n5, links: _l5, ...taskJson } = await schema('task');
    check('task', (await t.call('admin', 'GET', `/v2/tasks/${id}.1`)).json(), taskJson);
    const { name: _n6, links: _l6, ...tasksJson } = await schema('tasks');
    check('tasks', (await t.call('admin', 'GET', '/v2/tasks')).json(), tasksJson);
  });
});
