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
    // Glance's packaged schema-image.json properties: glanceclient builds --os-distro, --kernel-id… from them.
    for (const key of ['kernel_id', 'ramdisk_id', 'instance_uuid', 'architecture', 'os_distro', 'os_version', 'description', 'cinder_encryption_key_id', 'cinder_encryption_key_deletion_policy']) {
      assert.ok(image.properties[key], key);
    }
    assert.deepEqual(image.properties.kernel_id.type, ['null', 'string']);
    assert.equal(image.properties.os_distro.is_base, false, "as Glance's: glanceclient adds such a property instead of replacing it");
    assert.deepEqual(image.properties.cinder_encryption_key_deletion_policy.enum, ['on_image_deletion', 'do_not_delete']);
  });

  it("has no boolean top-level additionalProperties in Glance's schemas: openstacksdk reads the key as a dict", async () => {
    // openstacksdk's Schema resource declares additionalProperties as a dict: `true` crashed get_task_schema().
    for (const [name, items] of [['image', ''], ['images', 'images'], ['member', ''], ['members', 'members'], ['task', ''], ['tasks', 'tasks']]) {
      const body = await schema(name);
      const top = items ? body.properties[items].items : body;
      assert.notEqual(typeof top.additionalProperties, 'boolean', name);
    }
    assert.deepEqual((await schema('images')).properties.images.items.additionalProperties, { type: 'string' });
    // Glance's task and tasks are Schema.minimal(): no additionalProperties key at all.
    assert.equal('additionalProperties' in (await schema('task')), false);
    assert.equal('additionalProperties' in (await schema('tasks')).properties.tasks.items, false);
  });

  it("checks the common properties' values as Glance's schema does, at create and with PATCH", async () => {
    const kernel = '3d6a1a5e-6c1f-4a8e-9b1e-2f3c4d5e6f70';
    const bad = await t.call('a-member', 'POST', '/v2/images', { name: 'k', kernel_id: 'not-a-uuid' });
    assert.equal(bad.statusCode, 400, bad.body);
    assert.match(bad.json().error.message, /'kernel_id' must be an image id/);
    const id = await t.create('a-member', { name: 'k', kernel_id: kernel, ramdisk_id: kernel, os_distro: 'ubuntu', architecture: 'x86_64' });
    const shown = (await t.call('a-member', 'GET', `/v2/images/${id}`)).json();
    assert.equal(shown.kernel_id, kernel);
    assert.equal(shown.os_distro, 'ubuntu');
    const patched = await t.patch('a-member', id, [{ op: 'add', path: '/cinder_encryption_key_deletion_policy', value: 'sometimes' }]);
    assert.equal(patched.statusCode, 400, patched.body);
    assert.match(patched.json().error.message, /on_image_deletion, do_not_delete/);
    assert.equal((await t.patch('a-member', id, [{ op: 'add', path: '/cinder_encryption_key_deletion_policy', value: 'do_not_delete' }])).statusCode, 200);
    assert.equal((await t.patch('a-member', id, [{ op: 'replace', path: '/ramdisk_id', value: 'nope' }])).statusCode, 400);
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
