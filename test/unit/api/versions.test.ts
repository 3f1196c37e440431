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

  it('asks for a token on /v2 and answers unknown paths with a JSON 404', async () => {
    const noToken = await t.app.inject({ method: 'GET', url: '/v2/images' });
    assert.equal(noToken.statusCode, 401);
    assert.equal(noToken.json().error.error_code, 'token_missing');
    const missing = await t.call('a-member', 'GET', '/v2/nothing-here');
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().error.error_code, 'no_route');
  });
});
