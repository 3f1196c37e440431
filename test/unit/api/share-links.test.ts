/** Share links: minted by the owner, served without a token (bytes, Range, checksums), counted, revocable, mortal. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { redactUrl } from '../../../api/http-hygiene.js';
import { findLink, imageIdOfToken, newShareLink } from '../../../core/share-links.js';
import { appFixture, activeImage, type AppFixture, TOKEN } from './app-fixture.js';
import { testApp, type TestApp } from './tenant-app.js';

const SIZE = 64 * 1024;
const pathOf = (url: string) => new URL(url).pathname;

describe('share links', () => {
  let t: TestApp;
  before(async () => { t = await testApp(); });
  after(async () => { await t.close(); });

  async function activeOf(token: 'a-member' | 'admin' = 'a-member'): Promise<string> {
    const id = await t.create(token);
    await t.activate(token, id, SIZE);
    return id;
  }

  it('mints an unguessable link that serves the bytes with Range and checksums, without a token, and counts each use', async () => {
    const id = await activeOf();
    const res = await t.call('a-member', 'POST', `/v2/images/${id}/share-links`, { expires_in: 3600 });
    assert.equal(res.statusCode, 201);
    const link = res.json();
    assert.match(link.url, /^http:\/\/127\.0\.0\.1:\d+\/v2\/shared\/[A-Za-z0-9_-]{64}$/);
    assert.ok(Math.abs(Date.parse(link.expires_at) - Date.now() - 3600_000) < 10_000);
    assert.equal(link.uses, 0);
    // The secret is stored hashed only.
    const doc = await t.d.manifest.get(id);
    const token = pathOf(link.url).split('/').pop()!;
    assert.ok(!JSON.stringify(doc).includes(token));

    const whole = await t.app.inject({ method: 'GET', url: pathOf(link.url) });
    assert.equal(whole.statusCode, 200);
    assert.equal(whole.rawPayload.length, SIZE);
    assert.equal(whole.headers['content-md5'], createHash('md5').update(Buffer.alloc(SIZE)).digest('hex'));
    assert.equal(whole.headers['repr-digest'], `sha-512=:${createHash('sha512').update(Buffer.alloc(SIZE)).digest('base64')}:`);
    const part = await t.app.inject({ method: 'GET', url: pathOf(link.url), headers: { range: 'bytes=100-199' } });
    assert.equal(part.statusCode, 206);
    assert.equal(part.headers['content-range'], `bytes 100-199/${SIZE}`);
    assert.equal(part.rawPayload.length, 100);
    const bad = await t.app.inject({ method: 'GET', url: pathOf(link.url), headers: { range: `bytes=${SIZE}-` } });
    assert.equal(bad.statusCode, 416);
    const head = await t.app.inject({ method: 'HEAD', url: pathOf(link.url) });
    assert.equal(head.statusCode, 200);
    assert.equal(head.headers['content-length'], String(SIZE));
    for (const name of ['content-md5', 'repr-digest', 'content-disposition']) {
      assert.ok(head.headers[name], name);
      assert.equal(head.headers[name], whole.headers[name], name);
    }

    // Counting is asynchronous to the download: wait for the three GETs to be counted.
    let uses = 0;
    for (let i = 0; i < 50 && uses < 3; i++) {
      uses = (await t.call('a-member', 'GET', `/v2/images/${id}/share-links`)).json().share_links[0].uses;
      if (uses < 3) await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(uses, 3, 'two GETs and the 416 are uses; HEAD is not');
    const listed = (await t.call('a-member', 'GET', `/v2/images/${id}/share-links`)).json().share_links;
    assert.equal(listed.length, 1);
    assert.equal(listed[0].url, undefined, 'the url (its secret) is shown only at creation');
    assert.deepEqual(listed[0].created_by, { project_id: 'A', user_id: 'a1' });
    // Counting a use does not change the image's updated_at.
    assert.equal((await t.d.manifest.get(id))!.updated_at, doc!.updated_at);
  });

  it('serves nothing else: other paths and a token of a good shape but wrong secret are 404, other methods 405 whatever the token', async () => {
    const id = await activeOf();
    const { url } = (await t.call('a-member', 'POST', `/v2/images/${id}/share-links`, { expires_in: 60 })).json();
    const token = pathOf(url).split('/').pop()!;
    const forged = token.slice(0, 30) + (token[30] === 'A' ? 'B' : 'A') + token.slice(31);
    for (const path of [`/v2/shared/${forged}`, '/v2/shared/short', `/v2/shared/${'x'.repeat(2000)}`, `/v2/shared/${token}x`, '/v2/shared/%ZZ']) {
      const res = await t.app.inject({ method: 'GET', url: path });
      assert.ok([400, 404, 414].includes(res.statusCode), `${path.slice(0, 40)} → ${res.statusCode}`);
      assert.ok(res.json().error.error_code, 'PIR error shape');
    }
    assert.equal((await t.app.inject({ method: 'GET', url: `/v2/shared/${forged}` })).json().error.error_code, 'share_link_not_found');
    for (const path of [pathOf(url), `/v2/shared/${forged}`]) {
      const put = await t.app.inject({ method: 'PUT', url: path, payload: 'x' });
      assert.equal(put.statusCode, 405); // the same for any token: it says nothing of the link
      assert.equal(put.headers.allow, 'GET, HEAD');
      assert.equal((await t.app.inject({ method: 'DELETE', url: path })).statusCode, 405);
    }
    // The image's metadata is not reachable through the link.
    assert.equal((await t.app.inject({ method: 'GET', url: `${pathOf(url)}/file` })).statusCode, 404);
  });

  it('die when revoked, expired, deactivated (and stay dead after reactivation) or deleted', async () => {
    const id = await activeOf();
    const mint = async (expires_in = 600) => (await t.call('a-member', 'POST', `/v2/images/${id}/share-links`, { expires_in })).json();
    const status = async (url: string) => (await t.app.inject({ method: 'GET', url: pathOf(url) })).statusCode;

    const revoked = await mint();
    assert.equal(await status(revoked.url), 200);
    assert.equal((await t.call('a-member', 'DELETE', `/v2/images/${id}/share-links/${revoked.id}`)).statusCode, 204);
    assert.equal(await status(revoked.url), 404);
    assert.equal((await t.call('a-member', 'DELETE', `/v2/images/${id}/share-links/${revoked.id}`)).json().error.error_code, 'share_link_not_found');

    // 2 s, not 1: the first GET must come before the expiry, also on a loaded machine; then wait
    // until just past the expiry the server recorded.
    const short = await mint(2);
    assert.equal(await status(short.url), 200);
    await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(short.expires_at) - Date.now()) + 100));
    assert.equal(await status(short.url), 404, 'expired');

    const live = await mint();
    assert.equal((await t.call('admin', 'POST', `/v2/images/${id}/actions/deactivate`)).statusCode, 204);
    assert.equal(await status(live.url), 404, 'deactivated');
    assert.equal((await t.call('admin', 'POST', `/v2/images/${id}/actions/reactivate`)).statusCode, 204);
    assert.equal(await status(live.url), 404, 'links do not come back with reactivation');
    assert.deepEqual((await t.call('a-member', 'GET', `/v2/images/${id}/share-links`)).json().share_links, []);

    const last = await mint();
    assert.equal((await t.call('a-member', 'DELETE', `/v2/images/${id}`)).statusCode, 204);
    assert.equal(await status(last.url), 404, 'deleted');
  });

  it("die when an administrator gives the image to another project: the new owner never handed them out", async () => {
    const id = await activeOf();
    const link = (await t.call('a-member', 'POST', `/v2/images/${id}/share-links`, { expires_in: 600 })).json();
    assert.equal((await t.app.inject({ method: 'GET', url: pathOf(link.url) })).statusCode, 200);
    assert.equal((await t.patch('admin', id, [{ op: 'replace', path: '/owner', value: 'B' }])).statusCode, 200);
    assert.equal((await t.app.inject({ method: 'GET', url: pathOf(link.url) })).statusCode, 404);
    assert.deepEqual((await t.call('b-member', 'GET', `/v2/images/${id}/share-links`)).json().share_links, []);
    // The new owner's own links work.
    const theirs = (await t.call('b-member', 'POST', `/v2/images/${id}/share-links`, { expires_in: 600 })).json();
    assert.equal((await t.app.inject({ method: 'GET', url: pathOf(theirs.url) })).statusCode, 200);
  });

  it('refuses hostile input with 4xx in PIR error shape', async () => {
    const id = await activeOf();
    for (const body of [{}, { expires_in: 0 }, { expires_in: -5 }, { expires_in: 'soon' }, { expires_in: 1.5 }, { expires_in: 31 * 86400 }, { expires_in: 60, extra: 1 }, [], 'x']) {
      const res = await t.call('a-member', 'POST', `/v2/images/${id}/share-links`, body);
      assert.equal(res.statusCode, 400, JSON.stringify(body));
      assert.equal(res.json().error.error_code === 'invalid_request' || res.json().error.error_code === 'invalid_json', true);
    }
    const queued = await t.create('a-member');
    assert.equal((await t.call('a-member', 'POST', `/v2/images/${queued}/share-links`, { expires_in: 60 })).json().error.error_code, 'invalid_status');
    assert.equal((await t.call('a-member', 'POST', '/v2/images/00000000-0000-0000-0000-000000000000/share-links', { expires_in: 60 })).statusCode, 404);
    assert.equal((await t.call('a-member', 'GET', '/v2/images/not-a-uuid/share-links')).statusCode, 404);
    assert.equal((await t.call('a-member', 'DELETE', `/v2/images/${id}/share-links/${'z'.repeat(300)}`)).statusCode, 404);
  });

  it('is declared in /v2/schemas', async () => {
    for (const name of ['share-link', 'share-links']) {
      const res = await t.call('a-member', 'GET', `/v2/schemas/${name}`);
      assert.equal(res.statusCode, 200);
      assert.equal(res.json().name, name);
    }
  });
});

describe('share link tokens', () => {
  it('carry the image id and 256 random bits; only a live link with the exact secret opens', () => {
    const id = '3f1e2d4c-5b6a-4789-8abc-def012345678';
    const { link, token } = newShareLink(id, 60, { project_id: 'A', user_id: 'u' });
    assert.equal(token.length, 64);
    assert.equal(imageIdOfToken(token), id);
    assert.equal(findLink([link], token)?.id, link.id);
    assert.equal(findLink([link], token, Date.now() + 61_000), null);
    const other = newShareLink(id, 60, { project_id: 'A', user_id: 'u' });
    assert.notEqual(other.token, token);
    assert.equal(findLink([link], other.token), null);
    assert.equal(imageIdOfToken('../../etc/passwd'), null);
  });

  it('never reach the logs', async () => {
    assert.equal(redactUrl('/v2/shared/abcDEF_-123?x=1'), '/v2/shared/[REDACTED]?x=1');
    assert.equal(redactUrl('/v2/%73hared/abc%ZZdef'), '/v2/shared/[REDACTED]');
    assert.equal(redactUrl('/v2/images/abc/shared/x'), '/v2/images/abc/shared/x');
    for (const spelled of ['/v2/images/../shared/tok123', '/v2/./shared/tok123', '/v2/shared;x/tok123', '/v2/%2E%2E/v2/shared/tok123', '/v2/images/x/%2e%2e/../shared/tok123?a=1']) {
      assert.doesNotMatch(redactUrl(spelled), /tok123/, spelled);
    }
    const f: AppFixture = await appFixture();
    try {
      const id = await activeImage(f, Buffer.alloc(4096));
      const res = await f.app.inject({ method: 'POST', url: `/v2/images/${id}/share-links`, headers: { 'x-auth-token': TOKEN, 'content-type': 'application/json' }, payload: '{"expires_in":60}' });
      assert.equal(res.statusCode, 201);
      const token = new URL(res.json().url).pathname.split('/').pop()!;
      assert.equal((await f.app.inject({ method: 'GET', url: `/v2/shared/${token}` })).statusCode, 200);
      // One character changed; the replacement must differ from the last character (1 in 64 tokens ends in 'Q').
      const tampered = token.slice(0, 63) + (token.endsWith('Q') ? 'R' : 'Q');
      assert.equal((await f.app.inject({ method: 'GET', url: `/v2/shared/${tampered}` })).statusCode, 404);
      // Other spellings of the same path: escaped letters, a version, doubled slashes, no version.
      for (const spelled of [`/v2/%73hared/${token}`, `/%762/shared/${token}`, `/v%32/shared/${token}`, `/v2.17/shared/${token}`, `//v2/shared/${token}`, `/v2/shared//${token}`, `/shared/${token}`, `/V2/SHARED/${token}`]) {
        await f.app.inject({ method: 'GET', url: spelled, headers: { accept: 'application/vnd.openstack.images-v2.17' } });
      }
      const text = JSON.stringify(f.logs);
      assert.ok(!text.includes(token.slice(20)), `no part of the secret in the logs: ${f.logs.filter((l) => JSON.stringify(l).includes(token.slice(20))).map((l) => JSON.stringify(l)).join('\n').slice(0, 2000)}`);
      assert.ok(f.logs.some((l) => l.msg === 'share link used' && l.image_id === id), 'the use is logged');
    } finally {
      await f.close();
    }
  });
});
