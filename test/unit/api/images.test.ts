import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { testApp, PATCH_TYPE, type TestApp } from './tenant-app.js';

const errorCode = (res: { json(): unknown }) => (res.json() as { error: { error_code: string } }).error.error_code;

describe('POST /v2/images', () => {
  let t: TestApp;
  before(async () => { t = await testApp(); });
  after(async () => { await t.close(); });

  it('creates with every base field, a client-chosen id and extra properties', async () => {
    const id = '0b5e3a36-2c1f-4d0e-9a51-6d0c4b0e9f11';
    const res = await t.call('a-member', 'POST', '/v2/images', {
      id, name: 'full', disk_format: 'qcow2', container_format: 'bare', visibility: 'private', protected: true,
      os_hidden: true, min_disk: 2, min_ram: 512, tags: ['a', 'b', 'a'], os_distro: 'debian',
    });
    assert.equal(res.statusCode, 201, res.body);
    const body = res.json();
    assert.equal(res.headers.location, `/v2/images/${id}`);
    assert.deepEqual([body.id, body.name, body.owner, body.visibility, body.protected, body.os_hidden, body.min_disk, body.min_ram, body.os_distro, body.status],
      [id, 'full', 'A', 'private', true, true, 2, 512, 'debian', 'queued']);
    assert.deepEqual(body.tags, ['a', 'b']);
    const dup = await t.call('a-member', 'POST', '/v2/images', { id });
    assert.equal(dup.statusCode, 409);
    assert.equal(errorCode(dup), 'duplicate_id');
  });

  it('asks the store about retired ids only for an id the client chose (a generated one costs no read)', async () => {
    const asked: { id: string; chosenId: boolean | undefined }[] = [];
    const create = t.d.manifest.create.bind(t.d.manifest);
    t.d.manifest.create = (doc, events, opts) => {
      asked.push({ id: doc.id, chosenId: opts?.chosenId });
      return create(doc, events, opts);
    };
    try {
      const generated = await t.create('a-member', { name: 'generated' });
      const chosen = '5D0C4B0E-9F11-4A51-8E2C-1F4D0E9A5B36';
      const res = await t.call('a-member', 'POST', '/v2/images', { id: chosen, name: 'chosen' });
      assert.equal(res.statusCode, 201, res.body);
      assert.deepEqual(asked, [{ id: generated, chosenId: false }, { id: chosen.toLowerCase(), chosenId: true }]);
    } finally {
      t.d.manifest.create = create;
    }
  });

  it('never gives a deleted image\'s id to another image (OSSN-0075), queued or active, once purged', async () => {
    for (const upload of [false, true]) {
      const id = upload ? '7d4c1f0e-5b2a-4c3d-8e9f-0a1b2c3d4e5f' : '1e2d3c4b-5a69-4788-9a0b-1c2d3e4f5a6b';
      assert.equal((await t.call('a-member', 'POST', '/v2/images', { id, name: 'golden', disk_format: 'raw', container_format: 'bare' })).statusCode, 201);
      if (upload) await t.activate('a-member', id);
      assert.equal((await t.call('a-member', 'DELETE', `/v2/images/${id}`)).statusCode, 204);
      for (let i = 0; i < 200 && (await t.d.store.get(id)) !== null; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal(await t.d.store.get(id), null, 'the deleted image was purged');
      for (const [token, chosen] of [['b-member', id], ['a-member', id], ['b-member', id.toUpperCase()]] as const) {
        const res = await t.call(token, 'POST', '/v2/images', { id: chosen, name: 'impostor', visibility: 'community' });
        assert.equal(res.statusCode, 409, `${token} ${chosen}: ${res.body}`);
        assert.equal(errorCode(res), 'duplicate_id');
        assert.match(res.json().error.message, /belonged to an image that was deleted; image ids are never reused/);
      }
      assert.equal((await t.call('b-member', 'GET', `/v2/images/${id}`)).statusCode, 404);
    }
  });

  it('takes an id in any case as one UUID: stored in lower case, found in any case, one image per UUID', async () => {
    const upper = 'A1B2C3D4-E5F6-4A7B-8C9D-0E1F2A3B4C5D';
    const created = await t.call('a-member', 'POST', '/v2/images', { id: upper, name: 'cased' });
    assert.equal(created.statusCode, 201, created.body);
    assert.equal(created.json().id, upper.toLowerCase());
    assert.equal(created.headers.location, `/v2/images/${upper.toLowerCase()}`);
    const variant = await t.call('b-member', 'POST', '/v2/images', { id: upper.toLowerCase(), visibility: 'community' });
    assert.equal(variant.statusCode, 409);
    assert.equal(errorCode(variant), 'duplicate_id');
    for (const spelled of [upper, upper.toLowerCase(), 'a1B2c3D4-e5F6-4a7B-8c9D-0e1F2a3B4c5D']) {
      const got = await t.call('a-member', 'GET', `/v2/images/${spelled}`);
      assert.equal(got.statusCode, 200, spelled);
      assert.equal(got.json().id, upper.toLowerCase());
    }
    assert.equal((await t.call('a-member', 'PUT', `/v2/images/${upper}/tags/Mixed-Case`)).statusCode, 204);
    assert.deepEqual((await t.call('a-member', 'GET', `/v2/images/${upper.toLowerCase()}`)).json().tags, ['Mixed-Case'], 'only the id is lowered, not the tag');
    assert.equal((await t.call('b-member', 'GET', `/v2/images/${upper}`)).statusCode, 404, 'another project still cannot see it');
  });

  it('defaults to shared visibility and the caller project as owner', async () => {
    const body = (await t.call('b-member', 'POST', '/v2/images', {})).json();
    assert.equal(body.visibility, 'shared');
    assert.equal(body.owner, 'B');
  });

  it('refuses read-only (403), reserved (403) and badly typed (400) fields', async () => {
    for (const [field, value, code] of [
      ['status', 'active', 'read_only_property'], ['size', 5, 'read_only_property'], ['checksum', 'x', 'read_only_property'],
      ['created_at', 'x', 'read_only_property'], ['pir_failure', 'x', 'read_only_property'], ['locations', [], 'read_only_property'],
      ['os_glance_import_task', 'x', 'reserved_property'], ['deleted', 'x', 'reserved_property'], ['location', 'x', 'reserved_property'],
      ['pir_custom', 'x', 'reserved_property'],
    ] as const) {
      const res = await t.call('a-member', 'POST', '/v2/images', { [field]: value });
      assert.equal(res.statusCode, 403, `${field}: ${res.body}`);
      assert.equal(errorCode(res), code, field);
    }
    for (const body of [{ min_disk: -1 }, { min_ram: 1.5 }, { name: 'x'.repeat(256) }, { visibility: 'everyone' }, { disk_format: 'exe' },
      { tags: [''] }, { protected: 'yes' }, { os_distro: 5 }, { id: 'not-a-uuid' }, [1, 2], 'text']) {
      const res = await t.call('a-member', 'POST', '/v2/images', body);
      assert.equal(res.statusCode, 400, `${JSON.stringify(body)}: ${res.body}`);
      assert.ok(res.json().error.message.length > 10);
    }
  });

  it('follows Glance policy: readers cannot create; only admins publicize or create for another project', async () => {
    assert.equal((await t.call('a-reader', 'POST', '/v2/images', {})).statusCode, 403);
    assert.equal((await t.call('a-member', 'POST', '/v2/images', { visibility: 'public' })).statusCode, 403);
    assert.equal((await t.call('a-member', 'POST', '/v2/images', { owner: 'B' })).statusCode, 403);
    assert.equal((await t.call('a-member', 'POST', '/v2/images', { owner: 'A', visibility: 'community' })).statusCode, 201);
    const admin = await t.call('admin', 'POST', '/v2/images', { owner: 'B', visibility: 'public' });
    assert.equal(admin.statusCode, 201);
    assert.equal(admin.json().owner, 'B');
  });

  it('bounds properties (128) and tags (128) with 413', async () => {
    const props = Object.fromEntries(Array.from({ length: 129 }, (_, i) => [`p${i}`, 'v']));
    const res = await t.call('a-member', 'POST', '/v2/images', props);
    assert.equal(res.statusCode, 413, res.body);
    assert.equal(errorCode(res), 'too_many_properties');
    const tags = await t.call('a-member', 'POST', '/v2/images', { tags: Array.from({ length: 129 }, (_, i) => `t${i}`) });
    assert.ok([400, 413].includes(tags.statusCode), tags.body);
    const big = await t.call('a-member', 'POST', '/v2/images', { a: 'x'.repeat(40_000), b: 'y'.repeat(40_000) });
    assert.equal(big.statusCode, 413);
    assert.equal(errorCode(big), 'properties_too_large');
    const long = await t.call('a-member', 'POST', '/v2/images', { a: 'x'.repeat(65_536) });
    assert.equal(long.statusCode, 400);
  });
});

describe('GET and DELETE /v2/images/{id}', () => {
  let t: TestApp;
  before(async () => { t = await testApp(); });
  after(async () => { await t.close(); });

  it("answers 404 for another project's private image, to readers and members alike", async () => {
    const id = await t.create('a-member', { visibility: 'private' });
    assert.equal((await t.call('a-reader', 'GET', `/v2/images/${id}`)).statusCode, 200);
    assert.equal((await t.call('b-member', 'GET', `/v2/images/${id}`)).statusCode, 404);
    assert.equal((await t.call('b-member', 'DELETE', `/v2/images/${id}`)).statusCode, 404);
    assert.equal((await t.call('admin', 'GET', `/v2/images/${id}`)).statusCode, 200);
  });

  it('refuses to delete a protected image until PATCH unprotects it', async () => {
    const id = await t.create('a-member', { protected: true });
    const refused = await t.call('a-member', 'DELETE', `/v2/images/${id}`);
    assert.equal(refused.statusCode, 403);
    assert.equal(errorCode(refused), 'protected_image');
    assert.equal((await t.patch('a-member', id, [{ op: 'replace', path: '/protected', value: false }])).statusCode, 200);
    assert.equal((await t.call('a-member', 'DELETE', `/v2/images/${id}`)).statusCode, 204);
    assert.equal((await t.call('a-member', 'GET', `/v2/images/${id}`)).statusCode, 404);
  });

  it('lets readers read but not delete', async () => {
    const id = await t.create('a-member');
    const res = await t.call('a-reader', 'DELETE', `/v2/images/${id}`);
    assert.equal(res.statusCode, 403);
    assert.equal(errorCode(res), 'policy_denied');
  });
});

describe('PATCH /v2/images/{id}', () => {
  let t: TestApp;
  let id: string;
  before(async () => { t = await testApp(); id = await t.create('a-member', { name: 'p', os_distro: 'debian' }); });
  after(async () => { await t.close(); });

  it('adds, replaces and removes base fields, extra properties and tags', async () => {
    const res = await t.patch('a-member', id, [
      { op: 'replace', path: '/name', value: 'renamed' },
      { op: 'add', path: '/os_version', value: '12' },
      { op: 'replace', path: '/os_distro', value: 'ubuntu' },
      { op: 'replace', path: '/tags', value: ['x', 'y'] },
      { op: 'add', path: '/min_ram', value: 1024 },
      { op: 'add', path: '/a~1b', value: 'slash' },
    ]);
    assert.equal(res.statusCode, 200, res.body);
    const body = res.json();
    assert.deepEqual([body.name, body.os_version, body.os_distro, body.min_ram, body['a/b']], ['renamed', '12', 'ubuntu', 1024, 'slash']);
    assert.deepEqual(body.tags, ['x', 'y']);
    const removed = (await t.patch('a-member', id, [{ op: 'remove', path: '/os_version' }])).json();
    assert.equal(removed.os_version, undefined);
    assert.equal((await t.patch('a-member', id, [{ op: 'add', path: '/a~0b', value: 'tilde' }])).json()['a~b'], 'tilde');
    for (const path of ['/a~2b', '/~', '/a~']) {
      const bad = await t.patch('a-member', id, [{ op: 'add', path, value: 'v' }]);
      assert.equal(bad.statusCode, 400, path); // RFC 6901, as Glance
      assert.match(bad.json().error.message, /'~0' \(a '~'\) or '~1'/);
    }
  });

  it('takes v2.0 (draft 4) patches, whose add only creates: a base field or a present property is 409, as Glance', async () => {
    const img = await t.create('a-member', { name: 'd4', os_distro: 'debian' });
    const v20 = (ops: unknown) => t.call('a-member', 'PATCH', `/v2/images/${img}`, ops, { 'content-type': 'application/openstack-images-v2.0-json-patch' });
    const added = await v20([{ add: '/os_version', value: '12' }, { replace: '/os_distro', value: 'ubuntu' }]);
    assert.equal(added.statusCode, 200, added.body);
    assert.deepEqual([added.json().os_version, added.json().os_distro], ['12', 'ubuntu']);
    for (const path of ['/os_version', '/name', '/min_ram', '/tags']) {
      const res = await v20([{ add: path, value: path === '/tags' ? ['t'] : path === '/min_ram' ? 1 : 'x' }]);
      assert.equal(res.statusCode, 409, `${path}: ${res.body}`);
      assert.equal(errorCode(res), 'property_exists', path);
      assert.match(res.json().error.message, new RegExp(`Property ${path.slice(1)} already present`));
    }
    // Nothing of a refused patch is written; v2.1's add still sets.
    const refused = await v20([{ add: '/os_arch', value: 'x' }, { add: '/os_distro', value: 'fedora' }]);
    assert.equal(refused.statusCode, 409);
    const shown = (await t.call('a-member', 'GET', `/v2/images/${img}`)).json();
    assert.deepEqual([shown.os_arch, shown.os_distro, shown.name], [undefined, 'ubuntu', 'd4']);
    const v21 = await t.patch('a-member', img, [{ op: 'add', path: '/os_distro', value: 'fedora' }, { op: 'add', path: '/name', value: 'set' }]);
    assert.deepEqual([v21.statusCode, v21.json().os_distro, v21.json().name], [200, 'fedora', 'set']);
  });

  it("passes over PIR's view-only fields, as openstacksdk's whole-view diffs name them", async () => {
    const res = await t.patch('a-member', id, [
      { op: 'remove', path: '/pir_failure' }, { op: 'replace', path: '/pir_pipeline', value: {} },
      { op: 'add', path: '/stores', value: 'local' }, // openstacksdk sends it back as a property
      { op: 'replace', path: '/name', value: 'sdk-renamed' },
    ]);
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.json().name, 'sdk-renamed');
    assert.equal((await t.patch('a-member', id, [{ op: 'remove', path: '/pir_other' }])).statusCode, 403, 'other pir_* names stay read-only');
  });

  it('emits image.updated naming what changed', async () => {
    await t.patch('a-member', id, [{ op: 'replace', path: '/name', value: 'evented' }]);
    await t.d.relay.drain();
    const updated = t.d.published.filter((e) => e.image_id === id && e.type === 'image.updated');
    assert.ok(updated.some((e) => (e.data as { changes: string[] }).changes.includes('name')));
  });

  it('answers as Glance: 403 read-only/reserved/base removal, 409 missing property, 400 malformed, 415 media type', async () => {
    const cases: [unknown, number, string][] = [
      [[{ op: 'replace', path: '/status', value: 'active' }], 403, 'read_only_property'],
      [[{ op: 'add', path: '/os_glance_x', value: '1' }], 403, 'reserved_property'],
      [[{ op: 'replace', path: '/checksum', value: 'x' }], 403, 'read_only_property'],
      [[{ op: 'remove', path: '/name' }], 403, 'base_property_not_removable'],
      [[{ op: 'replace', path: '/nope', value: 'x' }], 409, 'property_missing'],
      [[{ op: 'remove', path: '/nope' }], 409, 'property_missing'],
      [[{ op: 'move', from: '/a', path: '/b' }], 400, 'invalid_patch'],
      [[{ op: 'replace', path: '/tags/0', value: 'x' }], 400, 'invalid_patch'],
      [[{ op: 'replace', path: 'name', value: 'x' }], 400, 'invalid_patch'],
      [[{ op: 'replace', path: '/name' }], 400, 'invalid_patch'],
      [{ op: 'replace' }, 400, 'invalid_patch'],
      [[{ op: 'replace', path: '/min_disk', value: 'big' }], 400, 'invalid_value'],
      [[{ op: 'replace', path: '/visibility', value: 'world' }], 400, 'invalid_value'],
      [[{ op: 'add', path: '/prop', value: 7 }], 400, 'invalid_value'],
      [[{ op: 'replace', path: '/owner', value: 'B' }], 403, 'policy_denied'],
      [[{ op: 'replace', path: '/owner', value: 'A' }], 403, 'policy_denied'], // its own project too, as Glance
      [[{ op: 'replace', path: '/visibility', value: 'public' }], 403, 'policy_denied'],
    ];
    for (const [ops, status, code] of cases) {
      const res = await t.patch('a-member', id, ops);
      assert.equal(res.statusCode, status, `${JSON.stringify(ops)}: ${res.body}`);
      assert.equal(errorCode(res), code, JSON.stringify(ops));
    }
    const json = await t.call('a-member', 'PATCH', `/v2/images/${id}`, [{ op: 'replace', path: '/name', value: 'x' }]);
    assert.equal(json.statusCode, 415);
    assert.equal(errorCode(json), 'patch_media_type');
    // RFC 5789 §2.2, as Glance: the 415 names the patch media types taken.
    const acceptPatch = 'application/openstack-images-v2.0-json-patch, application/openstack-images-v2.1-json-patch';
    assert.equal(json.headers['accept-patch'], acceptPatch);
    const none = await t.call('a-member', 'PATCH', `/v2/images/${id}`, '[]', { 'content-type': '' });
    assert.deepEqual([none.statusCode, none.headers['accept-patch']], [415, acceptPatch]);
    const broken = await t.call('a-member', 'PATCH', `/v2/images/${id}`, '[{"op": ', { 'content-type': PATCH_TYPE });
    assert.equal(broken.statusCode, 400);
    assert.equal(errorCode(broken), 'invalid_json');
    assert.equal(broken.headers['accept-patch'], undefined);
    // The message names the media type sent, not Fastify's 'application/json'.
    assert.match(broken.json().error.message, /not valid JSON \(sent with Content-Type application\/openstack-images-v2\.1-json-patch\)/);
    assert.doesNotMatch(broken.json().error.message, /'application\/json'/);
    const empty = await t.call('a-member', 'PATCH', `/v2/images/${id}`, '', { 'content-type': 'application/openstack-images-v2.0-json-patch' });
    assert.equal(empty.statusCode, 400);
    assert.equal(errorCode(empty), 'no_body');
    assert.match(empty.json().error.message, /Content-Type application\/openstack-images-v2\.0-json-patch\) but the body is empty/);
    const unchanged = (await t.call('a-member', 'GET', `/v2/images/${id}`)).json();
    assert.notEqual(unchanged.owner, 'B');
  });

  it('lets members communitize, only admins publicize, and only admins give an image away', async () => {
    assert.equal((await t.patch('a-member', id, [{ op: 'replace', path: '/visibility', value: 'community' }])).json().visibility, 'community');
    assert.equal((await t.patch('admin', id, [{ op: 'replace', path: '/visibility', value: 'public' }])).json().visibility, 'public');
    assert.equal((await t.patch('admin', id, [{ op: 'replace', path: '/owner', value: 'C' }])).json().owner, 'C');
  });

  it("refuses other projects (404 when they cannot see it, 403 when they can) and readers (403)", async () => {
    const priv = await t.create('a-member', { visibility: 'private' });
    assert.equal((await t.patch('b-member', priv, [{ op: 'replace', path: '/name', value: 'x' }])).statusCode, 404);
    const pub = await t.create('admin', { visibility: 'public' });
    assert.equal((await t.patch('b-member', pub, [{ op: 'replace', path: '/name', value: 'x' }])).statusCode, 403);
    assert.equal((await t.patch('a-reader', priv, [{ op: 'replace', path: '/name', value: 'x' }])).statusCode, 403);
  });

  it('freezes disk_format and container_format once the image has data', async () => {
    const img = await t.create('a-member');
    assert.equal((await t.call('a-member', 'GET', `/v2/images/${img}`)).json().stores, undefined, 'no bytes, no store');
    await t.activate('a-member', img);
    // One store (no PIR_STORES): the image still names it, as README's Stores section says.
    assert.equal((await t.call('a-member', 'GET', `/v2/images/${img}`)).json().stores, 'local');
    const res = await t.patch('a-member', img, [{ op: 'replace', path: '/disk_format', value: 'qcow2' }]);
    assert.equal(res.statusCode, 403, res.body);
    assert.equal(errorCode(res), 'field_frozen');
    assert.equal((await t.patch('a-member', img, [{ op: 'replace', path: '/name', value: 'fine' }])).statusCode, 200);
  });

  it('holds the property quota on PATCH (413)', async () => {
    const img = await t.create('a-member', {});
    const ops = Array.from({ length: 129 }, (_, i) => ({ op: 'add', path: `/k${i}`, value: 'v' }));
    const res = await t.patch('a-member', img, ops);
    assert.equal(res.statusCode, 413);
    assert.equal(errorCode(res), 'too_many_properties');
  });
});

describe('POST /v2/images/{id}/actions/deactivate and reactivate', () => {
  let t: TestApp;
  before(async () => { t = await testApp(); });
  after(async () => { await t.close(); });

  it('is for admins; a deactivated image downloads for admins only; events are emitted', async () => {
    const id = await t.create('a-member');
    assert.equal((await t.call('admin', 'POST', `/v2/images/${id}/actions/deactivate`)).statusCode, 403); // still queued
    await t.activate('a-member', id);
    assert.equal((await t.call('a-member', 'POST', `/v2/images/${id}/actions/deactivate`)).statusCode, 403);
    assert.equal((await t.call('admin', 'POST', `/v2/images/${id}/actions/deactivate`)).statusCode, 204);
    assert.equal((await t.call('admin', 'POST', `/v2/images/${id}/actions/deactivate`)).statusCode, 204);
    assert.equal((await t.call('a-member', 'GET', `/v2/images/${id}`)).json().status, 'deactivated');
    const refused = await t.call('a-member', 'GET', `/v2/images/${id}/file`);
    assert.equal(refused.statusCode, 403);
    assert.equal(errorCode(refused), 'image_deactivated');
    assert.equal((await t.call('admin', 'GET', `/v2/images/${id}/file`)).statusCode, 200);
    assert.equal((await t.call('a-member', 'POST', `/v2/images/${id}/actions/reactivate`)).statusCode, 403);
    assert.equal((await t.call('admin', 'POST', `/v2/images/${id}/actions/reactivate`)).statusCode, 204);
    assert.equal((await t.call('a-member', 'GET', `/v2/images/${id}/file`)).statusCode, 200);
    await t.d.relay.drain();
    const types = t.d.published.filter((e) => e.image_id === id).map((e) => e.type);
    assert.ok(types.includes('image.deactivated') && types.includes('image.reactivated'), types.join());
    const hidden = await t.create('a-member', { visibility: 'private' });
    assert.equal((await t.call('b-member', 'POST', `/v2/images/${hidden}/actions/reactivate`)).statusCode, 404);
  });
});
