/**
 * The metadata definitions API (/v2/metadefs) through the whole app: Glance's shapes and codes,
 * the rules a schema cannot say (unique names, protected namespaces, prefixes), hostile input,
 * and every response validated against the schema PIR publishes for it, as glanceclient does.
 * Who may see and change what is in cross-tenant.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Ajv } from 'ajv';
import { testApp, type TestApp } from './tenant-app.js';

const NS = '/v2/metadefs/namespaces';
const url = (ns: string, rest = '') => `${NS}/${encodeURIComponent(ns)}${rest}`;

const LIBVIRT = {
  namespace: 'OS::Compute::Libvirt',
  display_name: 'libvirt Driver Options',
  description: 'Options of the libvirt driver.',
  visibility: 'public',
  protected: true,
  resource_type_associations: [{ name: 'OS::Glance::Image', prefix: 'hw_' }, { name: 'OS::Nova::Flavor', prefix: 'hw:' }],
  properties: {
    boot_menu: { title: 'Boot Menu', type: 'string', enum: ['true', 'false'], description: 'BIOS boot menu.' },
    serial_port_count: { title: 'Serial Port Count', type: 'integer', minimum: 0 },
  },
  objects: [{ name: 'Watchdog', required: ['action'], properties: { action: { title: 'Action', type: 'string', enum: ['reset', 'none'] } } }],
  tags: [{ name: 'compute' }, { name: 'libvirt' }],
};

describe('/v2/metadefs', () => {
  let t: TestApp;
  let ajv: Ajv;
  before(async () => { t = await testApp(); ajv = new Ajv({ strict: false }); });
  after(async () => { await t.close(); });

  const schema = async (name: string) => {
    const res = await t.call('a-reader', 'GET', `/v2/schemas/metadefs/${name}`);
    assert.equal(res.statusCode, 200, name);
    const { name: _n, links: _l, ...json } = res.json();
    return json;
  };
  const valid = async (name: string, body: unknown) => {
    const validate = ajv.compile(await schema(name));
    assert.ok(validate(body), `${name}: ${JSON.stringify(validate.errors)} in ${JSON.stringify(body)}`);
  };

  it('creates a namespace with everything in it, shows it, and each answer matches its published schema', async () => {
    const res = await t.call('admin', 'POST', NS, LIBVIRT);
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(res.headers.location, url(LIBVIRT.namespace));
    const created = res.json();
    assert.equal(created.owner, 'admin-project', 'owner defaults to the caller\'s project');
    assert.equal(created.self, url(LIBVIRT.namespace));
    await valid('namespace', created);

    const shown = (await t.call('b-reader', 'GET', url(LIBVIRT.namespace))).json();
    await valid('namespace', shown);
    assert.deepEqual(Object.keys(shown.properties).sort(), ['boot_menu', 'serial_port_count']);
    assert.deepEqual(shown.tags, [{ name: 'compute' }, { name: 'libvirt' }]);
    assert.equal(shown.objects[0].self, url(LIBVIRT.namespace, '/objects/Watchdog'));
    assert.deepEqual(shown.resource_type_associations.map((a: { name: string; prefix: string }) => `${a.name}=${a.prefix}`), ['OS::Glance::Image=hw_', 'OS::Nova::Flavor=hw:']);

    await valid('namespaces', (await t.call('b-reader', 'GET', NS)).json());
    await valid('objects', (await t.call('b-reader', 'GET', url(LIBVIRT.namespace, '/objects'))).json());
    await valid('object', (await t.call('b-reader', 'GET', url(LIBVIRT.namespace, '/objects/Watchdog'))).json());
    await valid('properties', (await t.call('b-reader', 'GET', url(LIBVIRT.namespace, '/properties'))).json());
    await valid('property', (await t.call('b-reader', 'GET', url(LIBVIRT.namespace, '/properties/boot_menu'))).json());
    await valid('tags', (await t.call('b-reader', 'GET', url(LIBVIRT.namespace, '/tags'))).json());
    await valid('tag', (await t.call('b-reader', 'GET', url(LIBVIRT.namespace, '/tags/compute'))).json());
    await valid('resource_types', (await t.call('b-reader', 'GET', url(LIBVIRT.namespace, '/resource_types'))).json());
    for (const a of (await t.call('b-reader', 'GET', url(LIBVIRT.namespace, '/resource_types'))).json().resource_type_associations) await valid('resource_type', a);
  });

  it('applies a resource type\'s prefix with ?resource_type=, on the namespace and on one property', async () => {
    const shown = (await t.call('a-reader', 'GET', `${url(LIBVIRT.namespace)}?resource_type=OS::Nova::Flavor`)).json();
    assert.deepEqual(Object.keys(shown.properties).sort(), ['hw:boot_menu', 'hw:serial_port_count']);
    assert.deepEqual(shown.objects[0].required, ['hw:action']);
    assert.ok(shown.objects[0].properties['hw:action']);
    const prop = await t.call('a-reader', 'GET', `${url(LIBVIRT.namespace, '/properties/hw_boot_menu')}?resource_type=OS::Glance::Image`);
    assert.equal(prop.statusCode, 200, prop.body);
    assert.equal(prop.json().name, 'boot_menu');
    assert.equal((await t.call('a-reader', 'GET', `${url(LIBVIRT.namespace, '/properties/boot_menu')}?resource_type=OS::Glance::Image`)).statusCode, 404, 'without the prefix');
    assert.equal((await t.call('a-reader', 'GET', `${url(LIBVIRT.namespace, '/properties/hw_boot_menu')}?resource_type=OS::Nope`)).statusCode, 404, 'an association the namespace lacks');
  });

  it('keeps a protected namespace and its contents from deletion until protected is false', async () => {
    for (const path of ['', '/properties/boot_menu', '/objects/Watchdog', '/tags/compute', '/resource_types/OS::Nova::Flavor', '/properties', '/objects', '/tags']) {
      const res = await t.call('admin', 'DELETE', url(LIBVIRT.namespace, path));
      assert.equal(res.statusCode, 403, `${path}: ${res.body}`);
      assert.equal(res.json().error.error_code, 'metadef_protected');
    }
    const put = await t.call('admin', 'PUT', url(LIBVIRT.namespace), { namespace: LIBVIRT.namespace, visibility: 'public', protected: false, owner: 'admin-project' });
    assert.equal(put.statusCode, 200, put.body);
    assert.equal(put.json().protected, false);
    assert.equal((await t.call('admin', 'DELETE', url(LIBVIRT.namespace, '/tags/compute'))).statusCode, 204);
    assert.equal((await t.call('admin', 'GET', url(LIBVIRT.namespace, '/tags/compute'))).statusCode, 404);
  });

  it('answers 409 for a name taken (namespace, property, object, tag, association) and 404 for a missing one', async () => {
    const ns = 'PIR::Conflicts';
    assert.equal((await t.call('admin', 'POST', NS, { namespace: ns })).statusCode, 201);
    assert.equal((await t.call('admin', 'POST', NS, { namespace: ns })).statusCode, 409);
    assert.equal((await t.call('admin', 'POST', url(ns, '/properties'), { name: 'p', title: 'P', type: 'string' })).statusCode, 201);
    assert.equal((await t.call('admin', 'POST', url(ns, '/properties'), { name: 'p', title: 'P', type: 'string' })).statusCode, 409);
    assert.equal((await t.call('admin', 'POST', url(ns, '/objects'), { name: 'o' })).statusCode, 201);
    assert.equal((await t.call('admin', 'POST', url(ns, '/objects'), { name: 'o' })).statusCode, 409);
    assert.equal((await t.call('admin', 'POST', url(ns, '/tags/x'))).statusCode, 201);
    assert.equal((await t.call('admin', 'POST', url(ns, '/tags/x'))).statusCode, 409);
    assert.equal((await t.call('admin', 'POST', url(ns, '/resource_types'), { name: 'OS::Glance::Image' })).statusCode, 201);
    assert.equal((await t.call('admin', 'POST', url(ns, '/resource_types'), { name: 'OS::Glance::Image' })).statusCode, 409);
    assert.equal((await t.call('admin', 'POST', url(ns, '/tags'), { tags: [{ name: 'a' }, { name: 'a' }] })).statusCode, 409, 'a tag twice in one list');
    for (const path of ['/properties/nope', '/objects/nope', '/tags/nope', '/resource_types/nope']) {
      if (!path.startsWith('/resource_types')) assert.equal((await t.call('admin', 'GET', url(ns, path))).statusCode, 404, path);
      assert.equal((await t.call('admin', 'DELETE', url(ns, path))).statusCode, 404, path);
    }
    assert.equal((await t.call('admin', 'GET', url('PIR::Nowhere'))).statusCode, 404);
    assert.equal((await t.call('admin', 'DELETE', url(ns))).statusCode, 204);
    assert.equal((await t.call('admin', 'GET', url(ns))).statusCode, 404);
    assert.equal((await t.call('admin', 'POST', NS, { namespace: ns })).statusCode, 201, 'the name is free again');
  });

  it('renames a namespace, a property, an object and a tag with PUT; PUT resets what it leaves out to the create defaults', async () => {
    const ns = 'PIR::Rename';
    await t.call('admin', 'POST', NS, { namespace: ns, display_name: 'D', visibility: 'public', owner: 'A', properties: { p: { title: 'P', type: 'string' } }, objects: [{ name: 'o' }], tags: [{ name: 't' }] });
    const put = await t.call('admin', 'PUT', url(ns), { namespace: 'PIR::Renamed' });
    assert.equal(put.statusCode, 200, put.body);
    assert.equal(put.json().visibility, 'private');
    assert.equal(put.json().owner, 'admin-project');
    assert.equal(put.json().display_name, undefined);
    assert.equal((await t.call('admin', 'GET', url(ns))).statusCode, 404);
    const to = 'PIR::Renamed';
    assert.equal((await t.call('admin', 'PUT', url(to, '/properties/p'), { name: 'q', title: 'Q', type: 'integer', maximum: 4 })).json().name, 'q');
    assert.deepEqual(Object.keys((await t.call('admin', 'GET', url(to, '/properties'))).json().properties), ['q']);
    const before = (await t.call('admin', 'GET', url(to, '/objects/o'))).json();
    const obj = (await t.call('admin', 'PUT', url(to, '/objects/o'), { name: 'o2', description: 'new' })).json();
    assert.equal(obj.name, 'o2');
    assert.equal(obj.created_at, before.created_at);
    assert.equal((await t.call('admin', 'PUT', url(to, '/tags/t'), { name: 't2' })).json().name, 't2');
    assert.deepEqual((await t.call('admin', 'GET', url(to, '/tags'))).json().tags.map((x: { name: string }) => x.name), ['t2']);
    // Renaming onto a taken name is a conflict, and changes nothing.
    await t.call('admin', 'POST', NS, { namespace: 'PIR::Taken' });
    assert.equal((await t.call('admin', 'PUT', url(to), { namespace: 'PIR::Taken' })).statusCode, 409);
    assert.equal((await t.call('admin', 'GET', url(to))).statusCode, 200);
  });

  it('replaces or appends tags (X-Openstack-Append) and empties each kind with DELETE', async () => {
    const ns = 'PIR::Tags';
    await t.call('admin', 'POST', NS, { namespace: ns, tags: [{ name: 'a' }], properties: { p: { title: 'P', type: 'string' } }, objects: [{ name: 'o' }] });
    const replaced = await t.call('admin', 'POST', url(ns, '/tags'), { tags: [{ name: 'b' }, { name: 'c' }] });
    assert.equal(replaced.statusCode, 201, replaced.body);
    assert.deepEqual(replaced.json(), { tags: [{ name: 'b' }, { name: 'c' }] });
    assert.equal((await t.call('admin', 'POST', url(ns, '/tags'), { tags: [{ name: 'd' }] }, { 'x-openstack-append': 'true' })).statusCode, 201);
    const names = (await t.call('admin', 'GET', `${url(ns, '/tags')}?sort_key=name&sort_dir=asc`)).json().tags.map((x: { name: string }) => x.name);
    assert.deepEqual(names, ['b', 'c', 'd']);
    // An empty list replaces nothing, as in Glance.
    const none = await t.call('admin', 'POST', url(ns, '/tags'), { tags: [] });
    assert.equal(none.statusCode, 201, none.body);
    assert.deepEqual(none.json(), { tags: [] });
    assert.equal((await t.call('admin', 'GET', url(ns, '/tags'))).json().tags.length, 3);
    assert.equal((await t.call('admin', 'POST', url(ns, '/tags'), { tags: [{ name: 'b' }] }, { 'x-openstack-append': 'true' })).statusCode, 409);
    assert.deepEqual((await t.call('admin', 'GET', `${url(ns, '/tags')}?sort_key=name&sort_dir=asc&limit=1&marker=b`)).json().tags.map((x: { name: string }) => x.name), ['c']);
    assert.deepEqual((await t.call('admin', 'GET', `${url(ns, '/tags')}?sort_key=name&sort_dir=asc&limit=%2B1&marker=b`)).json().tags.map((x: { name: string }) => x.name), ['c'], "Glance: int('+1') is 1");
    for (const kind of ['tags', 'objects', 'properties']) assert.equal((await t.call('admin', 'DELETE', url(ns, `/${kind}`))).statusCode, 204, kind);
    const shown = (await t.call('admin', 'GET', url(ns))).json();
    assert.equal(shown.tags, undefined);
    assert.equal(shown.objects, undefined);
    assert.equal(shown.properties, undefined);
  });

  it('lists namespaces with Glance\'s filters, sorting and paging', async () => {
    for (const [i, vis] of [[1, 'public'], [2, 'private'], [3, 'public']] as const) {
      await t.call('admin', 'POST', NS, { namespace: `PIR::List${i}`, visibility: vis, owner: 'A', resource_type_associations: i === 3 ? [{ name: 'OS::Cinder::Volume' }] : [] });
    }
    const names = async (query: string, token: 'admin' | 'a-reader' | 'b-reader' = 'admin') => {
      const res = await t.call(token, 'GET', `${NS}?${query}`);
      assert.equal(res.statusCode, 200, res.body);
      return res.json().namespaces.map((n: { namespace: string }) => n.namespace).filter((n: string) => n.startsWith('PIR::List'));
    };
    assert.deepEqual(await names('sort_key=namespace&sort_dir=asc&limit=1000'), ['PIR::List1', 'PIR::List2', 'PIR::List3']);
    assert.deepEqual(await names('sort_key=namespace&sort_dir=asc&limit=1000&visibility=public'), ['PIR::List1', 'PIR::List3']);
    assert.deepEqual(await names('sort_key=namespace&sort_dir=asc&limit=1000&resource_types=OS::Cinder::Volume,OS::Nope'), ['PIR::List3']);
    assert.deepEqual(await names('sort_key=namespace&sort_dir=asc&limit=1000', 'b-reader'), ['PIR::List1', 'PIR::List3']);
    const page = (await t.call('admin', 'GET', `${NS}?sort_key=namespace&sort_dir=asc&limit=1&marker=PIR::List1`)).json();
    assert.deepEqual(page.namespaces.map((n: { namespace: string }) => n.namespace), ['PIR::List2']);
    assert.match(page.next, /marker=PIR%3A%3AList2/);
    assert.match(page.first, /^\/v2\/metadefs\/namespaces\?sort_key=namespace&sort_dir=asc&limit=1$/);
    assert.equal((await t.call('admin', 'GET', `${NS}?marker=PIR::Nope`)).statusCode, 404);
  });

  it('lists resource types: the seeded system ones and those named by associations', async () => {
    const res = await t.call('b-reader', 'GET', '/v2/metadefs/resource_types');
    assert.equal(res.statusCode, 200);
    const names = res.json().resource_types.map((r: { name: string }) => r.name);
    for (const name of ['OS::Glance::Image', 'OS::Cinder::Volume', 'OS::Nova::Flavor', 'OS::Nova::Aggregate', 'OS::Nova::Server']) assert.ok(names.includes(name), name);
    await t.call('admin', 'POST', NS, { namespace: 'PIR::Custom', resource_type_associations: [{ name: 'PIR::Thing', prefix: 'x_' }] });
    assert.ok((await t.call('b-reader', 'GET', '/v2/metadefs/resource_types')).json().resource_types.some((r: { name: string }) => r.name === 'PIR::Thing'));
    assert.deepEqual([...names].sort(), names, 'sorted by name');
  });

  it('refuses hostile and malformed input with 400 or 403, and changes nothing', async () => {
    const bad: [string, string, unknown, number][] = [
      ['POST', NS, { namespace: 'x'.repeat(81) }, 400],
      ['POST', NS, { namespace: 'a/b' }, 400],
      ['POST', NS, { namespace: 'a\u0000b' }, 400],
      ['POST', NS, { namespace: ' padded' }, 400],
      ['POST', NS, { namespace: 'PIR::Bad', visibility: 'shared' }, 400],
      ['POST', NS, { namespace: 'PIR::Bad', unknown: 1 }, 400],
      ['POST', NS, { namespace: 'PIR::Bad', created_at: '2020-01-01T00:00:00Z' }, 403],
      ['POST', NS, { namespace: 'PIR::Bad', self: '/x' }, 403],
      ['POST', NS, { namespace: 'PIR::Bad', properties: { p: { title: 'P', type: 'bogus' } } }, 400],
      ['POST', NS, { namespace: 'PIR::Bad', properties: { p: { title: 'P', type: 'string', pattern: '(' } } }, 400],
      ['POST', NS, { namespace: 'PIR::Bad', properties: { p: { type: 'string' } } }, 400],
      ['POST', NS, { namespace: 'PIR::Bad', objects: [{ name: 'o' }, { name: 'o' }] }, 409],
      ['POST', NS, { namespace: 'PIR::Bad', tags: Array.from({ length: 1001 }, (_, i) => ({ name: `t${i}` })) }, 413],
      ['POST', NS, '{"namespace": ', 400],
      ['POST', NS, [], 400],
      ['GET', `${NS}?limit=-1`, undefined, 400],
      ['GET', `${NS}?limit=abc`, undefined, 400],
      ['GET', `${NS}?sort_dir=sideways`, undefined, 400],
      ['GET', `${NS}?sort_key=owner;drop`, undefined, 400],
      ['GET', `${NS}?visibility=community`, undefined, 400],
    ];
    for (const [method, path, body, want] of bad) {
      const res = await t.call('admin', method, path, body);
      assert.equal(res.statusCode, want, `${method} ${path} ${JSON.stringify(body)?.slice(0, 80)}: ${res.body}`);
    }
    assert.equal((await t.call('admin', 'GET', url('PIR::Bad'))).statusCode, 404, 'nothing was created');
    await t.call('admin', 'POST', NS, { namespace: 'PIR::Props' });
    assert.equal((await t.call('admin', 'POST', url('PIR::Props', '/properties'), { name: 'p', title: 'P', type: 'string', created_at: 'x' })).statusCode, 403);
    assert.equal((await t.call('admin', 'POST', url('PIR::Props', '/properties'), { title: 'P', type: 'string' })).statusCode, 400, 'a property needs its name');
    assert.equal((await t.call('admin', 'POST', url('PIR::Props', '/objects'), { description: 'no name' })).statusCode, 400);
    assert.equal((await t.call('admin', 'POST', url('PIR::Props', '/tags'), { tags: 'x' })).statusCode, 400);
    // An unknown key: refused in a property's own body (its schema allows no other), dropped from
    // a definition inside a namespace or object (that schema allows them; Glance's model drops them).
    assert.equal((await t.call('admin', 'POST', url('PIR::Props', '/properties'), { name: 'q', title: 'Q', type: 'string', evil: '<script>' })).statusCode, 400);
    const made = await t.call('admin', 'POST', NS, { namespace: 'PIR::Dropped', properties: { q: { title: 'Q', type: 'string', evil: '<script>' } }, objects: [{ name: 'o', properties: { r: { title: 'R', type: 'string', evil: 1 } } }] });
    assert.equal(made.statusCode, 201, made.body);
    assert.deepEqual(made.json().properties.q, { title: 'Q', type: 'string' });
    assert.deepEqual(made.json().objects[0].properties.r, { title: 'R', type: 'string' });
  });

  it('keeps concurrent changes to one namespace: none is lost', async () => {
    const ns = 'PIR::Concurrent';
    await t.call('admin', 'POST', NS, { namespace: ns });
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => t.call('admin', 'POST', url(ns, `/tags/t${i}`))));
    assert.deepEqual(answers.map((r) => r.statusCode), Array(12).fill(201));
    assert.equal((await t.call('admin', 'GET', url(ns, '/tags'))).json().tags.length, 12);
  });
});
