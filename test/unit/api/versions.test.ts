import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { testApp, type TestApp } from './tenant-app.js';

describe('GET / and /versions', () => {
  let t: TestApp;
  before(async () => { t = await testApp(); });
  after(async () => { await t.close(); });

  it('answers without a token, as Glance', async () => {
    const root = await t.app.inject({ method: 'GET', url: '/' });
    assert.equal(root.statusCode, 300);
    assert.equal(root.json().versions[0].status, 'CURRENT');
    assert.equal((await t.app.inject({ method: 'GET', url: '/versions' })).statusCode, 200);
  });

  it('announces what PIR implements, as Glance without an image cache: 2.17 current, no 2.14 or 2.16', async () => {
    const ids = (await t.app.inject({ method: 'GET', url: '/versions' })).json().versions as { id: string; status: string }[];
    assert.deepEqual(ids.filter((v) => v.status === 'CURRENT').map((v) => v.id), ['v2.17']);
    assert.deepEqual(ids.map((v) => v.id), ['v2.17', 'v2.15', 'v2.13', 'v2.12', 'v2.11', 'v2.10', 'v2.9', 'v2.8', 'v2.7', 'v2.6', 'v2.5', 'v2.4', 'v2.3', 'v2.2', 'v2.1', 'v2.0']);
  });

  it("negotiates versions as Glance's middleware: /v2.N/, the vendor media type, /versions/, and 300 for other versions", async () => {
    const list = await t.call('a-member', 'GET', '/v2.1/images?limit=1');
    assert.equal(list.statusCode, 200, list.body);
    assert.ok(Array.isArray(list.json().images));
    assert.equal((await t.call('a-member', 'GET', '/v2.0/schemas/image')).json().name, 'image');
    assert.equal((await t.call('a-member', 'GET', '/v2.17/images')).statusCode, 200);
    const vendor = await t.call('a-member', 'GET', '/images', undefined, { accept: 'application/vnd.openstack.images-v2' });
    assert.equal(vendor.statusCode, 200, vendor.body);
    assert.equal((await t.call('a-member', 'GET', '/images', undefined, { accept: 'application/vnd.openstack.images-v2.1' })).statusCode, 200);
    assert.equal((await t.app.inject({ method: 'GET', url: '/versions/' })).statusCode, 200);
    for (const [method, url] of [['GET', '/v1/images'], ['GET', '/v3/images'], ['POST', '/v1/images'], ['GET', '/v2.99/images'], ['GET', '/v2.14/images'], ['GET', '/images'], ['DELETE', '/images/x']]) {
      const r = await t.app.inject({ method: method as 'GET', url: url! });
      assert.equal(r.statusCode, 300, `${method} ${url}`);
      assert.equal(r.json().versions[0].id, 'v2.17');
    }
    assert.equal((await t.app.inject({ method: 'GET', url: '/images', headers: { accept: 'application/vnd.openstack.images-v1' } })).statusCode, 300);
    // PIR's own pages are not versions.
    assert.notEqual((await t.app.inject({ method: 'GET', url: '/console' })).statusCode, 300);
  });

  it('asks for a token on /v2 and answers unknown paths with a JSON 404', async () => {
    const noToken = await t.app.inject({ method: 'GET', url: '/v2/images' });
    assert.equal(noToken.statusCode, 401);
    assert.equal(noToken.json().error.error_code, 'token_missing');
    const missing = await t.call('a-member', 'GET', '/v2/nothing-here');
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().error.error_code, 'no_route');
  });

  it("answers a path it serves, asked with a method it does not take, with 405 and Allow (Glance's router)", async () => {
    const id = await t.create('a-member');
    const cases: [string, string, string][] = [
      ['PUT', `/v2/images/${id}`, 'DELETE, GET, PATCH'],
      ['POST', `/v2/images/${id}`, 'DELETE, GET, PATCH'],
      ['POST', `/v2/images/${id}/file`, 'GET, HEAD, PUT'],
      ['DELETE', '/v2/images', 'GET, POST'],
      // HEAD only where PIR declares it (…/file, tus uploads): Glance's router answers 405 elsewhere.
      ['HEAD', `/v2/images/${id}`, 'DELETE, GET, PATCH'],
      ['HEAD', '/v2/images', 'GET, POST'],
      ['HEAD', '/v2/schemas/task', 'GET'],
      ['HEAD', '/v2/tasks', 'GET, POST'],
      ['HEAD', `/v2/images/${id}/members`, 'GET, POST'],
      ['HEAD', `/v2/images/${id}/members/B`, 'DELETE, GET, PUT'],
    ];
    for (const [method, url, allow] of cases) {
      const res = await t.call('a-member', method, url);
      assert.equal(res.statusCode, 405, `${method} ${url}`);
      assert.equal(res.headers.allow, allow, `${method} ${url}`);
      if (method !== 'HEAD') assert.equal(res.json().error.error_code, 'method_not_allowed');
    }
    // Without a token too, as the other 405s; and HEAD stays where PIR documents it.
    assert.equal((await t.app.inject({ method: 'HEAD', url: `/v2/images/${id}` })).statusCode, 405);
    assert.equal((await t.call('a-member', 'HEAD', `/v2/images/${id}/file`)).statusCode, 204);
    for (const url of ['/versions', '/healthz']) assert.equal((await t.app.inject({ method: 'HEAD', url })).statusCode, 200, url);
    assert.equal((await t.call('a-member', 'PUT', `/v2/images/${id}/nothing`)).statusCode, 404);
    // An empty id (tempest's null-id cases) stays the router's 404.
    for (const method of ['GET', 'DELETE']) assert.equal((await t.call('a-member', method, '/v2/images/')).statusCode, 404, method);
  });
});
