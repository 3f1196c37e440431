/**
 * The catalog extension through the HTTP API (app.inject), over a given manifest store and
 * catalog store: galleries, keyword search, revisions and restore, metafiles, hostile input.
 * Run on SQLite (test/unit/api/catalog.test.ts) and on FerretDB (test/contract/catalog-api.test.ts).
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { CatalogStore } from '../../core/catalog-ports.js';
import type { ManifestStore } from '../../core/ports.js';
import { inProcessApp, type InProcessApp } from './in-process-app.js';
import { diffMetadata } from '../../core/revisions.js';

const PATCH = 'application/openstack-images-v2.1-json-patch';

/**
 * `otherProcess`: a second catalog store on the same data, as another process would open it
 * (MongoDB: its own client); the concurrency test sends half its calls through an app on it.
 */
export async function catalogApiSuite(t: TestContext, store: ManifestStore, catalogStore: CatalogStore, otherProcess: CatalogStore = catalogStore): Promise<void> {
  const tokens = {
    'a-member': { project_id: 'A', user_id: 'alice', roles: ['member', 'reader'] },
    'a-reader': { project_id: 'A', user_id: 'arthur', roles: ['reader'] },
    'b-member': { project_id: 'B', user_id: 'bob', roles: ['member', 'reader'] },
    'c-member': { project_id: 'C', user_id: 'carol', roles: ['member', 'reader'] },
    admin: { project_id: 'admin', user_id: 'root', roles: ['admin', 'member', 'reader'] },
  };
  const h: InProcessApp = await inProcessApp(store, { catalogStore, revisionsKeep: 5, tokens });
  t.after(() => h.close());
  const h2: InProcessApp = await inProcessApp(store, { catalogStore: otherProcess, revisionsKeep: 5, tokens });
  t.after(() => h2.close());
  const call = (token: string, method: string, url: string, body?: unknown, headers: Record<string, string> = {}) => callOn(h, token, method, url, body, headers);
  const callOn = async (on: InProcessApp, token: string, method: string, url: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await on.app.inject({
      method: method as 'GET', url,
      headers: { 'x-auth-token': token, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      ...(body !== undefined ? { payload: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
    return { status: res.statusCode, body: res.body ? (res.headers['content-type']?.toString().includes('json') ? res.json() : res.body) : null };
  };
  const patch = (token: string, id: string, ops: unknown) => call(token, 'PATCH', `/v2/images/${id}`, ops, { 'content-type': PATCH });
  const create = async (token: string, body: Record<string, unknown>) => {
    const res = await call(token, 'POST', '/v2/images', { disk_format: 'raw', container_format: 'bare', ...body });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return res.body.id as string;
  };
  const ids = (res: { body: { images: { id: string }[] } }) => res.body.images.map((i) => i.id);

  await t.test('galleries: create a tree, paths, rename, move, counts, delete when empty', async () => {
    const linux = await call('a-member', 'POST', '/v2/galleries', { name: 'linux' });
    assert.equal(linux.status, 201);
    assert.deepEqual({ name: linux.body.name, parent_id: linux.body.parent_id, path: linux.body.path, owner: linux.body.owner }, { name: 'linux', parent_id: null, path: 'linux', owner: 'A' });
    const debian = (await call('a-member', 'POST', '/v2/galleries', { name: 'debian', parent_id: linux.body.id })).body;
    const twelve = (await call('a-member', 'POST', '/v2/galleries', { name: '12', parent_id: debian.id })).body;
    assert.equal(twelve.path, 'linux/debian/12');
    assert.equal((await call('a-member', 'POST', '/v2/galleries', { name: 'debian', parent_id: linux.body.id })).status, 409);

    const img1 = await create('a-member', { name: 'deb12 a' });
    const img2 = await create('a-member', { name: 'deb12 b' });
    const img3 = await create('a-member', { name: 'debian root' });
    assert.equal((await patch('a-member', img1, [{ op: 'add', path: '/pir_gallery_id', value: twelve.id }])).status, 200);
    assert.equal((await patch('a-member', img2, [{ op: 'add', path: '/pir_gallery_id', value: twelve.id }])).status, 200);
    const shown = await patch('a-member', img3, [{ op: 'add', path: '/pir_gallery_id', value: debian.id }]);
    assert.equal(shown.body.pir_gallery_id, debian.id, 'the image shows its gallery');

    assert.deepEqual(new Set(ids(await call('a-member', 'GET', `/v2/images?gallery=${twelve.id}`))), new Set([img1, img2]));
    assert.deepEqual(ids(await call('a-member', 'GET', `/v2/images?gallery=${debian.id}`)), [img3]);
    assert.deepEqual(new Set(ids(await call('a-member', 'GET', `/v2/images?gallery=${linux.body.id}&recursive=true`))), new Set([img1, img2, img3]));
    assert.deepEqual(ids(await call('a-member', 'GET', `/v2/images?gallery=${linux.body.id}`)), []);
    assert.deepEqual(ids(await call('a-member', 'GET', `/v2/images?gallery=${linux.body.id}&recursive=true&q=b`)), [img2]);

    const counted = (await call('a-reader', 'GET', `/v2/galleries/${debian.id}`)).body;
    assert.deepEqual([counted.image_count, counted.gallery_count], [1, 1]);
    const deep = (await call('a-reader', 'GET', `/v2/galleries/${linux.body.id}?recursive=true`)).body;
    assert.deepEqual([deep.image_count, deep.gallery_count], [3, 2]);
    const subs = (await call('a-reader', 'GET', `/v2/galleries/${linux.body.id}/galleries?recursive=true`)).body.galleries;
    assert.deepEqual(subs.map((g: { path: string; image_count: number }) => [g.path, g.image_count]), [['linux/debian', 1], ['linux/debian/12', 2]]);

    // Moving an image is one call; removing the property takes it out.
    assert.equal((await patch('a-member', img2, [{ op: 'replace', path: '/pir_gallery_id', value: debian.id }])).status, 200);
    assert.deepEqual(ids(await call('a-member', 'GET', `/v2/images?gallery=${twelve.id}`)), [img1]);
    assert.equal((await patch('a-member', img1, [{ op: 'remove', path: '/pir_gallery_id' }])).status, 200);

    // Rename and move: paths follow; no cycles.
    const renamed = await call('a-member', 'PATCH', `/v2/galleries/${debian.id}`, { name: 'Debian' });
    assert.equal(renamed.body.path, 'linux/Debian');
    assert.equal((await call('a-member', 'GET', `/v2/galleries/${twelve.id}`)).body.path, 'linux/Debian/12');
    assert.equal((await call('a-member', 'PATCH', `/v2/galleries/${linux.body.id}`, { parent_id: twelve.id })).status, 409);
    const moved = await call('a-member', 'PATCH', `/v2/galleries/${twelve.id}`, { parent_id: null });
    assert.equal(moved.body.path, '12');
    assert.deepEqual((await call('a-reader', 'GET', '/v2/galleries')).body.galleries.map((g: { path: string }) => g.path), ['12', 'linux', 'linux/Debian']);

    // Delete only when empty.
    assert.equal((await call('a-member', 'DELETE', `/v2/galleries/${linux.body.id}`)).status, 409);
    assert.equal((await call('a-member', 'DELETE', `/v2/galleries/${debian.id}`)).status, 409);
    assert.equal((await call('a-member', 'DELETE', `/v2/galleries/${twelve.id}`)).status, 204);
    assert.equal((await call('a-member', 'GET', `/v2/galleries/${twelve.id}`)).status, 404);

    // Readers may look, not change; other projects learn nothing.
    assert.equal((await call('a-reader', 'POST', '/v2/galleries', { name: 'x' })).status, 403);
    assert.equal((await call('a-reader', 'PATCH', `/v2/galleries/${debian.id}`, { name: 'x' })).status, 403);
    for (const [m, u, b] of [['GET', `/v2/galleries/${debian.id}`], ['PATCH', `/v2/galleries/${debian.id}`, { name: 'x' }], ['DELETE', `/v2/galleries/${debian.id}`], ['GET', `/v2/images?gallery=${debian.id}`], ['GET', `/v2/galleries/${debian.id}/galleries`]] as [string, string, unknown?][]) {
      const res = await call('b-member', m, u, b);
      assert.equal(res.status, 404, `${m} ${u}`);
      assert.equal(res.body.error.error_code, 'gallery_not_found');
    }
    assert.deepEqual((await call('b-member', 'GET', '/v2/galleries')).body.galleries, []);
    assert.deepEqual((await call('b-member', 'GET', '/v2/galleries?owner=A')).body.galleries, []);
    // B cannot put its image in A's gallery (nor learn whether it exists).
    const bImg = await create('b-member', { name: 'b image' });
    assert.equal((await patch('b-member', bImg, [{ op: 'add', path: '/pir_gallery_id', value: debian.id }])).status, 400);
    assert.equal((await patch('b-member', bImg, [{ op: 'add', path: '/pir_gallery_id', value: 'no-such' }])).status, 400);
  });

  await t.test('gallery sharing: members see the gallery, those below it and their images as if each were shared; others learn nothing', async () => {
    const top = (await call('a-member', 'POST', '/v2/galleries', { name: 'shared-top' })).body;
    assert.equal(top.visibility, 'shared');
    const below = (await call('a-member', 'POST', '/v2/galleries', { name: 'below', parent_id: top.id })).body;
    const aside = (await call('a-member', 'POST', '/v2/galleries', { name: 'aside' })).body;
    const inTop = await create('a-member', { name: 'gs top', visibility: 'private' });
    const inBelow = await create('a-member', { name: 'gs below' });
    const inAside = await create('a-member', { name: 'gs aside', visibility: 'private' });
    for (const [img, g] of [[inTop, top.id], [inBelow, below.id], [inAside, aside.id]]) {
      assert.equal((await patch('a-member', img!, [{ op: 'add', path: '/pir_gallery_id', value: g }])).status, 200);
    }
    const listed = async (token: string, query = '') => new Set(ids(await call(token, 'GET', `/v2/images?limit=1000${query}`)));

    // Before sharing: B sees nothing of it.
    assert.equal((await call('b-member', 'GET', `/v2/galleries/${top.id}`)).status, 404);
    assert.equal((await call('b-member', 'GET', `/v2/images/${inTop}`)).status, 404);

    // Only the owner's members share; the owner cannot answer for B.
    assert.equal((await call('a-reader', 'POST', `/v2/galleries/${top.id}/members`, { member: 'B' })).status, 403);
    const added = await call('a-member', 'POST', `/v2/galleries/${top.id}/members`, { member: 'B' });
    assert.equal(added.status, 200, JSON.stringify(added.body));
    assert.deepEqual([added.body.member_id, added.body.status, added.body.gallery_id], ['B', 'pending', top.id]);
    assert.equal((await call('a-member', 'POST', `/v2/galleries/${top.id}/members`, { member: 'B' })).status, 409);
    assert.equal((await call('a-member', 'PUT', `/v2/galleries/${top.id}/members/B`, { status: 'accepted' })).status, 403);

    // Pending: B sees the gallery and its images by id (as a Glance member), not in its default list.
    assert.equal((await call('b-member', 'GET', `/v2/galleries/${top.id}`)).status, 200);
    // Creating under it is a change of it: 403 for B (who sees it), 404 for C (who does not).
    assert.equal((await call('b-member', 'POST', '/v2/galleries', { name: 'mine', parent_id: top.id })).status, 403);
    assert.equal((await call('c-member', 'POST', '/v2/galleries', { name: 'mine', parent_id: top.id })).status, 404);
    assert.equal((await call('b-member', 'GET', `/v2/images/${inTop}`)).status, 200);
    assert.equal((await listed('b-member')).has(inTop), false);
    assert.ok((await listed('b-member', '&member_status=pending')).has(inTop));
    assert.deepEqual((await call('b-member', 'GET', '/v2/galleries?shared=true')).body.galleries.map((g: { id: string; member_status: string }) => [g.id, g.member_status]), [[top.id, 'pending']]);

    const accepted = await call('b-member', 'PUT', `/v2/galleries/${top.id}/members/B`, { status: 'accepted' });
    assert.equal(accepted.body.status, 'accepted');
    const bList = await listed('b-member');
    assert.ok(bList.has(inTop) && bList.has(inBelow), 'the gallery and the galleries below it');
    assert.equal(bList.has(inAside), false);
    assert.deepEqual(new Set(ids(await call('b-member', 'GET', `/v2/images?gallery=${top.id}&recursive=true`))), new Set([inTop, inBelow]));
    assert.equal((await call('b-member', 'GET', `/v2/galleries/${top.id}?recursive=true`)).body.image_count, 2);
    assert.equal((await call('b-member', 'GET', `/v2/galleries/${below.id}`)).status, 200);
    assert.notEqual((await call('b-member', 'GET', `/v2/images/${inTop}/file`)).status, 404, 'a member may download');
    // Sees the image, not its history (past members, removed values): the owner's.
    assert.equal((await call('b-member', 'GET', `/v2/images/${inTop}/revisions`)).status, 403);
    assert.equal((await call('b-member', 'GET', `/v2/images/${inTop}/metafile`)).status, 200);
    // Read-only: B changes neither the gallery nor its images.
    assert.equal((await call('b-member', 'PATCH', `/v2/galleries/${top.id}`, { name: 'mine' })).status, 403);
    assert.equal((await call('b-member', 'DELETE', `/v2/galleries/${below.id}`)).status, 403);
    assert.equal((await call('b-member', 'POST', `/v2/galleries/${top.id}/members`, { member: 'C' })).status, 403);
    assert.equal((await patch('b-member', inTop, [{ op: 'replace', path: '/name', value: 'x' }])).status, 403);
    // B sees its own membership only; A sees all.
    await call('a-member', 'POST', `/v2/galleries/${top.id}/members`, { member: 'D' });
    assert.deepEqual((await call('b-member', 'GET', `/v2/galleries/${top.id}/members`)).body.members.map((m: { member_id: string }) => m.member_id), ['B']);
    assert.deepEqual((await call('a-reader', 'GET', `/v2/galleries/${top.id}/members`)).body.members.map((m: { member_id: string }) => m.member_id), ['B', 'D']);
    assert.equal((await call('b-member', 'GET', `/v2/galleries/${top.id}/members/D`)).status, 404);

    // C, never invited, learns nothing: gallery, members, images, lists, search.
    for (const url of [`/v2/galleries/${top.id}`, `/v2/galleries/${below.id}`, `/v2/galleries/${top.id}/members`, `/v2/galleries/${top.id}/members/B`, `/v2/images/${inTop}`, `/v2/images/${inTop}/file`, `/v2/images?gallery=${top.id}`]) {
      assert.equal((await call('c-member', 'GET', url)).status, 404, url);
    }
    assert.equal((await listed('c-member', '&visibility=all&member_status=all')).has(inTop), false);
    assert.deepEqual(ids(await call('c-member', 'GET', '/v2/images?q=gs')), []);

    // An image moved out is no longer shared; moved in, it is.
    await patch('a-member', inAside, [{ op: 'replace', path: '/pir_gallery_id', value: below.id }]);
    assert.ok((await listed('b-member')).has(inAside));
    await patch('a-member', inAside, [{ op: 'remove', path: '/pir_gallery_id' }]);
    assert.equal((await call('b-member', 'GET', `/v2/images/${inAside}`)).status, 404);

    // Private suspends the members; shared brings them back; removing the member ends it.
    assert.equal((await call('a-member', 'PATCH', `/v2/galleries/${top.id}`, { visibility: 'private' })).body.visibility, 'private');
    assert.equal((await call('b-member', 'GET', `/v2/images/${inTop}`)).status, 404);
    assert.equal((await call('b-member', 'GET', `/v2/galleries/${top.id}`)).status, 404);
    assert.equal((await call('a-member', 'POST', `/v2/galleries/${top.id}/members`, { member: 'E' })).status, 403);
    await call('a-member', 'PATCH', `/v2/galleries/${top.id}`, { visibility: 'shared' });
    assert.equal((await call('b-member', 'GET', `/v2/images/${inTop}`)).status, 200);
    assert.equal((await call('a-member', 'DELETE', `/v2/galleries/${top.id}/members/B`)).status, 204);
    assert.equal((await call('b-member', 'GET', `/v2/images/${inTop}`)).status, 404);
    assert.equal((await call('a-member', 'DELETE', `/v2/galleries/${top.id}/members/B`)).status, 404);

    // Hostile member calls.
    for (const [m, u, b] of [['POST', `/v2/galleries/${top.id}/members`, {}], ['POST', `/v2/galleries/${top.id}/members`, { member: '' }], ['POST', `/v2/galleries/${top.id}/members`, { member: 7 }],
      ['POST', `/v2/galleries/${top.id}/members`, { member: 'x'.repeat(300) }], ['POST', `/v2/galleries/${top.id}/members`, { member: 'F', x: 1 }], ['PUT', `/v2/galleries/${top.id}/members/D`, { status: 'maybe' }],
      ['PATCH', `/v2/galleries/${top.id}`, { visibility: 'public' }], ['POST', '/v2/galleries', { name: 'v', visibility: 3 }]] as [string, string, unknown][]) {
      const res = await call(m === 'PUT' ? h.token : 'a-member', m, u, b);
      assert.ok(res.status >= 400 && res.status < 500, `${m} ${u} ${JSON.stringify(b)} → ${res.status}`);
      assert.equal(typeof res.body.error?.error_code, 'string');
    }
  });

  await t.test('gallery sharing: overlapping shares count once with the strongest answer; pending and rejected ones list only under their member_status', async () => {
    const outer = (await call('a-member', 'POST', '/v2/galleries', { name: 'ovl-outer' })).body;
    const inner = (await call('a-member', 'POST', '/v2/galleries', { name: 'ovl-inner', parent_id: outer.id })).body;
    const deep = (await call('a-member', 'POST', '/v2/galleries', { name: 'ovl-deep', parent_id: inner.id })).body;
    const inOuter = await create('a-member', { name: 'ovl outer', visibility: 'private' });
    const inDeep = await create('a-member', { name: 'ovl deep', visibility: 'private' });
    await patch('a-member', inOuter, [{ op: 'add', path: '/pir_gallery_id', value: outer.id }]);
    await patch('a-member', inDeep, [{ op: 'add', path: '/pir_gallery_id', value: deep.id }]);
    const listed = async (query = '') => new Set(ids(await call('c-member', 'GET', `/v2/images?limit=1000${query}`)));
    for (const g of [outer.id, inner.id]) assert.equal((await call('a-member', 'POST', `/v2/galleries/${g}/members`, { member: 'C' })).status, 200);
    // Outer rejected, inner accepted: the inner subtree is accepted (listed by default, not under rejected), the rest rejected.
    assert.equal((await call('c-member', 'PUT', `/v2/galleries/${outer.id}/members/C`, { status: 'rejected' })).status, 200);
    assert.equal((await call('c-member', 'PUT', `/v2/galleries/${inner.id}/members/C`, { status: 'accepted' })).status, 200);
    assert.deepEqual(await listed(), new Set([inDeep]));
    assert.deepEqual(await listed('&member_status=rejected'), new Set([inOuter]));
    assert.deepEqual(await listed('&member_status=pending'), new Set());
    assert.deepEqual(await listed('&member_status=all'), new Set([inOuter, inDeep]));
    // Rejected or pending: still seen by id (as a Glance member), the gallery too.
    assert.equal((await call('c-member', 'GET', `/v2/images/${inOuter}`)).status, 200);
    assert.equal((await call('c-member', 'GET', `/v2/galleries/${outer.id}?recursive=true`)).status, 200);
    assert.equal((await patch('c-member', inOuter, [{ op: 'replace', path: '/name', value: 'x' }])).status, 403, 'seen, so 403 and not 404');
    // A marker seen only through a rejected share is a marker the caller can see.
    assert.equal((await call('c-member', 'GET', `/v2/images?marker=${inOuter}`)).status, 200);
    // Both accepted: each gallery once.
    await call('c-member', 'PUT', `/v2/galleries/${outer.id}/members/C`, { status: 'accepted' });
    assert.deepEqual(await listed(), new Set([inOuter, inDeep]));
    assert.equal((await call('c-member', 'GET', `/v2/galleries/${outer.id}?recursive=true`)).body.image_count, 2);
    const subs = (await call('c-member', 'GET', `/v2/galleries/${outer.id}/galleries?recursive=true`)).body.galleries;
    assert.deepEqual(subs.map((g: { path: string; image_count: number }) => [g.path, g.image_count]), [['ovl-outer/ovl-inner', 0], ['ovl-outer/ovl-inner/ovl-deep', 1]]);
    for (const g of [outer.id, inner.id]) await call('a-member', 'DELETE', `/v2/galleries/${g}/members/C`);
    assert.equal((await call('c-member', 'GET', `/v2/images/${inDeep}`)).status, 404);
  });

  await t.test('unicode: gallery names and search words compare in NFC (composed and decomposed are one)', async () => {
    const nfc = 'caf\u00e9', nfd = 'cafe\u0301';
    const root = (await call('a-member', 'POST', '/v2/galleries', { name: 'uni' })).body;
    const made = await call('a-member', 'POST', '/v2/galleries', { name: nfd, parent_id: root.id });
    assert.equal(made.status, 201);
    assert.equal(made.body.name, nfc, 'stored in NFC');
    assert.equal(made.body.path, `uni/${nfc}`);
    const again = await call('a-member', 'POST', '/v2/galleries', { name: nfc, parent_id: root.id });
    assert.equal(again.status, 409);
    assert.equal(again.body.error.error_code, 'gallery_name_taken');
    const other = (await call('a-member', 'POST', '/v2/galleries', { name: 'other', parent_id: root.id })).body;
    assert.equal((await call('a-member', 'PATCH', `/v2/galleries/${other.id}`, { name: nfd })).status, 409, 'a rename too');
    const img = await create('a-member', { name: `${nfd} noir`, tags: [`cr${'e\u0300'}me`] });
    const img2 = await create('a-member', { name: `${nfc} au lait` });
    const found = async (q: string) => new Set(ids(await call('a-member', 'GET', `/v2/images?q=${encodeURIComponent(q)}`)));
    assert.deepEqual(await found(`${nfc} noir`), new Set([img]));
    assert.deepEqual(await found(`${nfd} noir`), new Set([img]));
    assert.deepEqual(await found(nfd), new Set([img, img2]));
    assert.deepEqual(await found(nfc), new Set([img, img2]));
    assert.deepEqual(await found('caf'), new Set([img, img2]), 'as a prefix');
    assert.deepEqual(await found('cr\u00e8me'), new Set([img]), 'tags too');
    assert.deepEqual(await found('cafe'), new Set(), 'no longer split at the combining accent');
    const ranked = await call('a-member', 'GET', `/v2/images?q=${encodeURIComponent(nfc)}&sort=relevance`);
    assert.equal(ranked.status, 200);
    assert.deepEqual(new Set(ids(ranked)), new Set([img, img2]));
  });

  await t.test("galleries: pir_gallery_id follows a property's patch rules (remove or replace when absent: 409)", async () => {
    const g = (await call('a-member', 'POST', '/v2/galleries', { name: 'patch-rules' })).body;
    const id = await create('a-member', { name: 'outside' });
    for (const op of [{ op: 'remove', path: '/pir_gallery_id' }, { op: 'replace', path: '/pir_gallery_id', value: g.id }]) {
      const r = await patch('a-member', id, [op]);
      assert.equal(r.status, 409, JSON.stringify(op));
      assert.match(JSON.stringify(r.body), /property_missing/);
    }
    assert.equal((await patch('a-member', id, [{ op: 'add', path: '/pir_gallery_id', value: g.id }])).status, 200);
    assert.equal((await patch('a-member', id, [{ op: 'replace', path: '/pir_gallery_id', value: g.id }])).status, 200);
    const twice = await patch('a-member', id, [{ op: 'remove', path: '/pir_gallery_id' }, { op: 'remove', path: '/pir_gallery_id' }]);
    assert.equal(twice.status, 409, 'the second remove finds nothing');
  });

  await t.test('galleries: a PATCH that changes nothing writes nothing (updated_at stays)', async () => {
    const g = (await call('a-member', 'POST', '/v2/galleries', { name: 'unchanged' })).body;
    await new Promise((r) => setTimeout(r, 5));
    for (const body of [{}, { name: 'unchanged' }, { visibility: g.visibility }]) {
      const same = await call('a-member', 'PATCH', `/v2/galleries/${g.id}`, body);
      assert.equal(same.status, 200, JSON.stringify(same.body));
      assert.equal(same.body.updated_at, g.updated_at, JSON.stringify(body));
    }
    const renamed = await call('a-member', 'PATCH', `/v2/galleries/${g.id}`, { name: 'changed' });
    assert.notEqual(renamed.body.updated_at, g.updated_at);
    // A reader's refusal speaks of galleries, not of the image policy it borrows.
    const byReader = await call('a-reader', 'PATCH', `/v2/galleries/${g.id}`, { name: 'again' });
    assert.equal(byReader.status, 403);
    assert.match(JSON.stringify(byReader.body), /changing galleries/);
    assert.doesNotMatch(JSON.stringify(byReader.body), /modify_image/);
  });

  await t.test('galleries: a delete racing an image moving in never leaves the image in a deleted gallery', async () => {
    // 1. The delete runs whole between the PATCH's gallery lookup and its write: the PATCH takes the image out again, 400.
    const g1 = (await call('a-member', 'POST', '/v2/galleries', { name: 'race-1' })).body.id as string;
    const img1 = await create('a-member', { name: 'racer one' });
    const getGallery = catalogStore.getGallery;
    let deleted: { status: number } | undefined;
    catalogStore.getGallery = async function (this: CatalogStore, gid: string) {
      const found = await getGallery.call(this, gid);
      if (gid === g1 && !deleted) {
        deleted = { status: 0 };
        deleted = await call('a-member', 'DELETE', `/v2/galleries/${g1}`);
      }
      return found;
    };
    let moved;
    try {
      moved = await patch('a-member', img1, [{ op: 'add', path: '/pir_gallery_id', value: g1 }]);
    } finally {
      catalogStore.getGallery = getGallery;
    }
    assert.equal(deleted?.status, 204);
    assert.equal(moved.status, 400, JSON.stringify(moved.body));
    assert.equal(moved.body.error.error_code, 'invalid_gallery');
    assert.equal((await call('a-member', 'GET', `/v2/images/${img1}`)).body.pir_gallery_id, undefined);

    // 2. The PATCH runs whole between the delete's count and its delete: the gallery comes back (with its members), 409.
    const g2 = (await call('a-member', 'POST', '/v2/galleries', { name: 'race-2' })).body.id as string;
    await call('a-member', 'POST', `/v2/galleries/${g2}/members`, { member: 'B' });
    const img2 = await create('a-member', { name: 'racer two' });
    const deleteGallery = catalogStore.deleteGallery;
    let placed: { status: number } | undefined;
    catalogStore.deleteGallery = async function (this: CatalogStore, gid: string) {
      if (gid === g2 && !placed) placed = await patch('a-member', img2, [{ op: 'add', path: '/pir_gallery_id', value: g2 }]);
      return deleteGallery.call(this, gid);
    };
    let refused;
    try {
      refused = await call('a-member', 'DELETE', `/v2/galleries/${g2}`);
    } finally {
      catalogStore.deleteGallery = deleteGallery;
    }
    assert.equal(placed?.status, 200);
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    assert.equal(refused.body.error.error_code, 'gallery_not_empty');
    assert.equal((await call('a-member', 'GET', `/v2/galleries/${g2}`)).body.image_count, 1);
    assert.deepEqual(ids(await call('a-member', 'GET', `/v2/images?gallery=${g2}`)), [img2]);
    assert.deepEqual((await call('a-member', 'GET', `/v2/galleries/${g2}/members`)).body.members.map((m: { member_id: string }) => m.member_id), ['B']);
  });

  await t.test('galleries: concurrent changes through two processes: no cycle, no orphan, no lost change, the member cap holds', async () => {
    const on = (i: number) => (i % 2 === 0 ? h : h2);
    const make = async (name: string, parent_id: string | null = null) => {
      const res = await call('a-member', 'POST', '/v2/galleries', { name, parent_id });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return res.body.id as string;
    };
    const tree = async () => (await call('a-member', 'GET', '/v2/galleries')).body.galleries as { id: string; name: string; parent_id: string | null; visibility: string }[];
    for (let round = 0; round < 4; round++) {
      // Two moves, each legal alone, that together would make a loop.
      const a = await make(`loop-a-${round}`);
      const b = await make(`loop-b-${round}`);
      const moves = await Promise.all([
        callOn(on(round), 'a-member', 'PATCH', `/v2/galleries/${a}`, { parent_id: b }),
        callOn(on(round + 1), 'a-member', 'PATCH', `/v2/galleries/${b}`, { parent_id: a }),
      ]);
      assert.deepEqual(moves.map((m) => m.status).sort(), [200, 409], JSON.stringify(moves.map((m) => m.body)));
      assert.equal(moves.find((m) => m.status === 409)!.body.error.error_code, 'gallery_cycle');
      const roots = (await tree()).filter((g) => g.parent_id === null).map((g) => g.id);
      assert.equal([a, b].filter((id) => roots.includes(id)).length, 1, 'one of the two stays at the root');

      // A rename, a move and a visibility change at once: all three land.
      const parent = await make(`edit-parent-${round}`);
      const g = await make(`edit-${round}`);
      const edits = await Promise.all([
        callOn(on(round), 'a-member', 'PATCH', `/v2/galleries/${g}`, { name: `edited-${round}` }),
        callOn(on(round + 1), 'a-member', 'PATCH', `/v2/galleries/${g}`, { parent_id: parent }),
        callOn(on(round), 'a-member', 'PATCH', `/v2/galleries/${g}`, { visibility: 'private' }),
      ]);
      assert.deepEqual(edits.map((e) => e.status), [200, 200, 200], JSON.stringify(edits.map((e) => e.body)));
      const edited = (await call('a-member', 'GET', `/v2/galleries/${g}`)).body;
      assert.deepEqual([edited.name, edited.parent_id, edited.visibility], [`edited-${round}`, parent, 'private']);
      assert.equal((await call('a-member', 'POST', '/v2/galleries', { name: `edit-${round}` })).status, 201, 'the old name is free again');

      // A delete while a gallery is created in it and another moved into it: no orphan.
      const doomed = await make(`doomed-${round}`);
      const mover = await make(`mover-${round}`);
      const [removed, created, moved] = await Promise.all([
        callOn(on(round), 'a-member', 'DELETE', `/v2/galleries/${doomed}`),
        callOn(on(round + 1), 'a-member', 'POST', '/v2/galleries', { name: 'child', parent_id: doomed }),
        callOn(on(round + 1), 'a-member', 'PATCH', `/v2/galleries/${mover}`, { parent_id: doomed }),
      ]);
      if (removed.status === 204) {
        assert.deepEqual([created.status, moved.status], [404, 404], JSON.stringify([created.body, moved.body]));
      } else {
        assert.equal(removed.body.error.error_code, 'gallery_not_empty', JSON.stringify(removed.body));
      }
      const all = await tree();
      const known = new Set(all.map((x) => x.id));
      assert.deepEqual(all.filter((x) => x.parent_id !== null && !known.has(x.parent_id)), [], 'no gallery under a deleted one');
    }

    // 140 members offered at once: exactly 128 kept.
    const shared = await make('crowded');
    const adds = await Promise.all(Array.from({ length: 140 }, (_, i) => callOn(on(i), 'a-member', 'POST', `/v2/galleries/${shared}/members`, { member: `project-${i}` })));
    assert.equal(adds.filter((r) => r.status < 300).length, 128);
    assert.ok(adds.filter((r) => r.status >= 300).every((r) => r.body.error.error_code === 'too_many_members'));
    assert.equal((await call('a-member', 'GET', `/v2/galleries/${shared}/members`)).body.members.length, 128);
  });

  await t.test('galleries: hostile input is a 4xx in the JSON error shape', async () => {
    const bad: [string, string, unknown][] = [
      ['POST', '/v2/galleries', {}],
      ['POST', '/v2/galleries', { name: '' }],
      ['POST', '/v2/galleries', { name: 'a/b' }],
      ['POST', '/v2/galleries', { name: '..' }],
      ['POST', '/v2/galleries', { name: 'x'.repeat(256) }],
      ['POST', '/v2/galleries', { name: 42 }],
      ['POST', '/v2/galleries', { name: 'ok', parent_id: 7 }],
      ['POST', '/v2/galleries', { name: 'ok', parent_id: 'missing' }],
      ['POST', '/v2/galleries', { name: 'ok', extra: 1 }],
      ['POST', '/v2/galleries', [1, 2]],
      ['POST', '/v2/galleries', 'null'],
      ['POST', '/v2/galleries', '{"name":'],
      ['GET', '/v2/images?gallery=', undefined],
      ['GET', '/v2/images?recursive=true', undefined],
      ['GET', '/v2/galleries?shared=yes', undefined],
      ['GET', '/v2/galleries?limit=5', undefined],
      ['GET', '/v2/images?gallery=x&recursive=maybe', undefined],
      ['GET', '/v2/images?gallery=a&gallery=b', undefined],
      ['GET', '/v2/galleries/x?recursive=2', undefined],
      ['GET', '/v2/images?q=', undefined],
      ['GET', '/v2/images?q=%20%2C%2C', undefined],
      ['GET', `/v2/images?q=${Array.from({ length: 20 }, (_, i) => `w${i}`).join('%20')}`, undefined],
      ['GET', `/v2/images?q=${'a'.repeat(2000)}`, undefined],
      ['GET', '/v2/images?sort=relevance', undefined],
      ['GET', '/v2/images?q=a&q=b', undefined],
    ];
    for (const [method, url, body] of bad) {
      const res = await call('a-member', method, url, body);
      assert.ok(res.status >= 400 && res.status < 500, `${method} ${url} ${JSON.stringify(body)?.slice(0, 40)} → ${res.status} ${JSON.stringify(res.body)}`);
      assert.equal(typeof res.body.error?.error_code, 'string', `${method} ${url}: a JSON error`);
    }
  });

  await t.test('search: words ANDed, last word a prefix, case-insensitive, over name, tags, properties; ranked by relevance', async () => {
    const inName = await create('a-member', { name: 'Zebra Linux 9', tags: ['other'] });
    const inTag = await create('a-member', { name: 'plain one', tags: ['ZEBRA-linux'] });
    const inProp = await create('a-member', { name: 'plain two', description: 'a zebra of linux', os_distro: 'x' } as Record<string, unknown>);
    const notAll = await create('a-member', { name: 'zebra only' });
    const q = async (query: string, token = 'a-member') => ids(await call(token, 'GET', `/v2/images?${query}`));
    assert.deepEqual(new Set(await q('q=zebra%20linux')), new Set([inName, inTag, inProp]));
    assert.deepEqual(new Set(await q('q=ZEBRA%20lin')), new Set([inName, inTag, inProp]));
    assert.deepEqual(await q('q=zebr%20linux'), [], 'only the last word is a prefix');
    assert.deepEqual(await q('q=zebra%20linux&sort=relevance'), [inName, inTag, inProp]);
    assert.deepEqual(await q('q=zebra%20linux&sort=relevance&limit=1'), [inName]);
    assert.deepEqual(await q(`q=zebra%20linux&sort=relevance&limit=2&marker=${inName}`), [inTag, inProp]);
    assert.deepEqual(await q('q=zebra&tag=other'), [inName]);
    assert.ok((await q('q=zebra')).includes(notAll));
    assert.deepEqual(await q('q=zebra', 'b-member'), [], "another project's private images are never found");
    // The next link of a relevance page continues the ranking.
    const first = await call('a-member', 'GET', '/v2/images?q=zebra%20linux&sort=relevance&limit=2');
    assert.ok(first.body.next);
    assert.deepEqual(ids(await call('a-member', 'GET', first.body.next)), [inProp]);
  });

  await t.test('revisions: every metadata change is recorded with who, when and the JSON Patch; restore is one new revision', async () => {
    const id = await create('a-member', { name: 'v1', tags: ['t1'], os_distro: 'debian', visibility: 'private' } as Record<string, unknown>);
    await patch('a-member', id, [{ op: 'replace', path: '/name', value: 'v2' }, { op: 'add', path: '/os_version', value: '12' }]);
    await call('a-member', 'PUT', `/v2/images/${id}/tags/t2`);
    await patch('a-member', id, [{ op: 'replace', path: '/visibility', value: 'shared' }]);
    await call('a-member', 'POST', `/v2/images/${id}/members`, { member: 'B' });
    await call('b-member', 'PUT', `/v2/images/${id}/members/B`, { status: 'accepted' });
    await patch('a-member', id, [{ op: 'remove', path: '/os_distro' }]);
    const list = await call('a-reader', 'GET', `/v2/images/${id}/revisions?limit=100`);
    assert.equal(list.status, 200);
    // Retention 5: the first two (create, the name change) are pruned.
    const revs = list.body.revisions;
    assert.deepEqual(revs.map((r: { n: number; action: string }) => [r.n, r.action]), [[3, 'tags'], [4, 'update'], [5, 'members'], [6, 'members'], [7, 'update']]);
    assert.deepEqual(revs[0].patch, [{ op: 'replace', path: '/tags', value: ['t1', 't2'] }]);
    assert.deepEqual(revs[3].patch, [{ op: 'replace', path: '/members', value: [{ member_id: 'B', status: 'accepted' }] }]);
    assert.equal(revs[3].project_id, 'B');
    assert.equal(revs[3].user_id, 'bob');
    assert.deepEqual(revs[4].patch, [{ op: 'remove', path: '/properties/os_distro' }]);
    assert.equal((await call('a-reader', 'GET', `/v2/images/${id}/revisions/1`)).status, 404);
    const paged = await call('a-reader', 'GET', `/v2/images/${id}/revisions?limit=2&marker=4`);
    assert.deepEqual(paged.body.revisions.map((r: { n: number }) => r.n), [5, 6]);
    assert.ok(paged.body.next);

    const three = (await call('a-reader', 'GET', `/v2/images/${id}/revisions/3`)).body;
    assert.deepEqual([three.metadata.name, three.metadata.visibility, three.metadata.tags, three.metadata.properties], ['v2', 'private', ['t1', 't2'], { os_distro: 'debian', os_version: '12' }]);
    // Restore 3: name, visibility and properties come back; members stay (their own calls).
    assert.equal((await call('a-reader', 'POST', `/v2/images/${id}/revisions/3/restore`)).status, 403);
    const restored = await call('a-member', 'POST', `/v2/images/${id}/revisions/3/restore`);
    assert.equal(restored.status, 200, JSON.stringify(restored.body));
    assert.deepEqual([restored.body.visibility, restored.body.os_distro], ['private', 'debian']);
    const after = (await call('a-reader', 'GET', `/v2/images/${id}/revisions?marker=7`)).body.revisions;
    assert.equal(after.length, 1);
    assert.equal(after[0].action, 'restore:3');
    assert.deepEqual(after[0].patch.map((o: { path: string }) => o.path).sort(), ['/properties/os_distro', '/visibility']);
    // Restoring what is already there changes nothing.
    await call('a-member', 'POST', `/v2/images/${id}/revisions/8/restore`);
    assert.equal((await call('a-reader', 'GET', `/v2/images/${id}/revisions?marker=8`)).body.revisions.length, 0);
    // Hostile numbers and paging.
    for (const url of [`/v2/images/${id}/revisions/0`, `/v2/images/${id}/revisions/-1`, `/v2/images/${id}/revisions/abc`, `/v2/images/${id}/revisions/99999999999`, `/v2/images/${id}/revisions?limit=x`, `/v2/images/${id}/revisions?marker=x`, `/v2/images/${id}/revisions?limit=1&limit=2`]) {
      const res = await call('a-member', 'GET', url);
      assert.equal(res.status, 400, url);
    }
    assert.equal((await call('a-member', 'POST', `/v2/images/${id}/revisions/999/restore`)).status, 404);
    // Only those who may see the image see its revisions.
    const priv = await create('a-member', { name: 'private one' });
    assert.equal((await call('b-member', 'GET', `/v2/images/${priv}/revisions`)).status, 404);
    assert.equal((await call('b-member', 'GET', `/v2/images/${priv}/revisions/1`)).status, 404);
    assert.equal((await call('b-member', 'POST', `/v2/images/${priv}/revisions/1/restore`)).status, 404);
  });

  await t.test('revisions: concurrent changes through two processes keep the history a chain ending at the image', async () => {
    const id = await create('a-member', { name: 'chain', tags: ['x'] });
    const on = (i: number) => (i % 2 === 0 ? h : h2);
    // Each revision call of the history is delayed at random, as between processes: the writers finish in any order.
    const stores = [...new Set([catalogStore, otherProcess])];
    const originals = stores.map((st) => ({ st, latest: st.latestRevision, at: st.appendRevisionAt, append: st.appendRevision }));
    const jitter = () => new Promise((resolve) => setTimeout(resolve, Math.random() * 15));
    for (const { st, latest, at, append } of originals) {
      st.latestRevision = async (...args) => { await jitter(); return latest.apply(st, args); };
      st.appendRevisionAt = async (...args) => { await jitter(); return at.apply(st, args); };
      st.appendRevision = async (...args) => { await jitter(); return append.apply(st, args); };
    }
    try {
      await Promise.all([
        ...Array.from({ length: 12 }, (_, i) => callOn(on(i), 'a-member', 'PATCH', `/v2/images/${id}`, [{ op: 'add', path: `/p${i}`, value: String(i) }], { 'content-type': PATCH })),
        ...Array.from({ length: 6 }, (_, i) => callOn(on(i), 'a-member', i % 2 === 0 ? 'DELETE' : 'PUT', `/v2/images/${id}/tags/x`)),
      ]);
    } finally {
      for (const { st, latest, at, append } of originals) Object.assign(st, { latestRevision: latest, appendRevisionAt: at, appendRevision: append });
    }
    const listed = (await call('a-reader', 'GET', `/v2/images/${id}/revisions?limit=100`)).body.revisions as { n: number }[];
    const full = await Promise.all(listed.map(async (r) => (await call('a-reader', 'GET', `/v2/images/${id}/revisions/${r.n}`)).body as { n: number; patch: unknown[]; metadata: Record<string, unknown> }));
    for (let i = 1; i < full.length; i++) {
      assert.equal(full[i]!.n, full[i - 1]!.n + 1);
      assert.deepEqual(full[i]!.patch, diffMetadata(full[i - 1]!.metadata as never, full[i]!.metadata as never), `revision ${full[i]!.n}'s patch goes from revision ${full[i - 1]!.n}`);
      assert.notDeepEqual(full[i]!.patch, [], `revision ${full[i]!.n} changes something`);
    }
    const image = (await call('a-member', 'GET', `/v2/images/${id}`)).body;
    const newest = full[full.length - 1]!.metadata as { properties: Record<string, string>; tags: string[] };
    for (let i = 0; i < 12; i++) assert.equal(newest.properties[`p${i}`], String(i), `p${i} in the newest revision`);
    assert.deepEqual(newest.tags, image.tags);
  });

  await t.test('revisions: a failed revision write does not fail the change; the next history read records it as a repair', async () => {
    const id = await create('a-member', { name: 'rep1' });
    const original = catalogStore.appendRevisionAt;
    let failures = 0;
    catalogStore.appendRevisionAt = async () => { failures++; throw new Error('revision store down (test)'); };
    let res;
    try {
      res = await patch('a-member', id, [{ op: 'replace', path: '/name', value: 'rep2' }]);
    } finally {
      catalogStore.appendRevisionAt = original;
    }
    assert.equal(failures, 1);
    assert.equal(res.status, 200, 'the change is made and answered');
    assert.equal(res.body.name, 'rep2');
    const revs = (await call('a-reader', 'GET', `/v2/images/${id}/revisions`)).body.revisions;
    assert.deepEqual(revs.map((r: { n: number; action: string }) => [r.n, r.action]), [[1, 'create'], [2, 'repair']]);
    assert.deepEqual(revs[1].patch, [{ op: 'replace', path: '/name', value: 'rep2' }]);
    assert.equal(revs[1].user_id, 'pir-system');
    // Repaired once: reading again adds nothing; the next change numbers on.
    assert.equal((await call('a-reader', 'GET', `/v2/images/${id}/revisions`)).body.revisions.length, 2);
    await patch('a-member', id, [{ op: 'replace', path: '/name', value: 'rep3' }]);
    assert.deepEqual((await call('a-reader', 'GET', `/v2/images/${id}/revisions`)).body.revisions.map((r: { action: string }) => r.action), ['create', 'repair', 'update']);
    assert.equal((await call('a-reader', 'GET', `/v2/images/${id}/metafile`)).body.revision, 3);
  });

  await t.test('revisions: a purged image\'s revisions are deleted with it', async () => {
    const id = await create('a-member', { name: 'doomed' });
    await patch('a-member', id, [{ op: 'replace', path: '/name', value: 'doomed 2' }]);
    assert.equal((await catalogStore.latestRevision(id))?.n, 2);
    assert.equal((await call('a-member', 'DELETE', `/v2/images/${id}`)).status, 204);
    const deadline = Date.now() + 15_000;
    while ((await store.get(id)) !== null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await store.get(id), null, 'the image was purged');
    assert.equal(await catalogStore.latestRevision(id), null);
    assert.deepEqual(await catalogStore.revisions(id, 0, 10), []);
  });

  await t.test('metafile: name, formats, visibility, tags, properties and the gallery path, versioned by the newest revision', async () => {
    const g = (await call('a-member', 'POST', '/v2/galleries', { name: 'meta' })).body;
    const sub = (await call('a-member', 'POST', '/v2/galleries', { name: 'sub', parent_id: g.id })).body;
    const id = await create('a-member', { name: 'm', tags: ['x'], os_distro: 'debian', min_ram: 512 } as Record<string, unknown>);
    await patch('a-member', id, [{ op: 'add', path: '/pir_gallery_id', value: sub.id }]);
    const meta = await call('a-reader', 'GET', `/v2/images/${id}/metafile`);
    assert.equal(meta.status, 200);
    assert.deepEqual(meta.body, {
      name: 'm', disk_format: 'raw', container_format: 'bare', visibility: 'shared', protected: false, min_disk: 0, min_ram: 512,
      tags: ['x'], properties: { os_distro: 'debian' }, gallery: 'meta/sub', revision: 2,
    });
    assert.equal((await call('b-member', 'GET', `/v2/images/${id}/metafile`)).status, 404);
    // A community image is anyone's to read, its gallery's path only the owner's (and members') to know.
    const open = await create('a-member', { name: 'open', visibility: 'community' });
    await patch('a-member', open, [{ op: 'add', path: '/pir_gallery_id', value: sub.id }]);
    assert.equal((await call('a-member', 'GET', `/v2/images/${open}/metafile`)).body.gallery, 'meta/sub');
    const stranger = await call('c-member', 'GET', `/v2/images/${open}/metafile`);
    assert.equal(stranger.status, 200);
    assert.equal(stranger.body.gallery, null, 'no gallery name of another project leaks');
  });

  await t.test("revisions: a project an image is given to reads its history from the transfer on, not the previous owner's", async () => {
    const id = await create('a-member', { name: 'given', apikey: 'hunter2-secret' } as Record<string, unknown>);
    await patch('a-member', id, [{ op: 'remove', path: '/apikey' }]);
    assert.equal((await patch('admin', id, [{ op: 'replace', path: '/owner', value: 'B' }])).status, 200);
    const listed = await call('b-member', 'GET', `/v2/images/${id}/revisions`);
    assert.equal(listed.status, 200);
    assert.ok(listed.body.revisions.length >= 1, 'the transfer and what follows');
    assert.ok(!JSON.stringify(listed.body).includes('hunter2'), "the previous owner's removed property is not shown");
    for (const { n } of listed.body.revisions as { n: number }[]) {
      const one = await call('b-member', 'GET', `/v2/images/${id}/revisions/${n}`);
      assert.equal(one.status, 200);
      assert.equal(one.body.metadata.owner, 'B', `revision ${n}`);
    }
    assert.equal((await call('b-member', 'GET', `/v2/images/${id}/revisions/1`)).status, 404);
    assert.equal((await call('b-member', 'POST', `/v2/images/${id}/revisions/1/restore`)).status, 404);
    assert.ok(JSON.stringify((await call('admin', 'GET', `/v2/images/${id}/revisions`)).body).includes('hunter2'), 'administrators read all of it');
  });

  await t.test("properties: PIR's own (the gallery) do not use up the 128 a client may set; lengths count characters", async () => {
    const g = (await call('a-member', 'POST', '/v2/galleries', { name: 'quota' })).body;
    const props = Object.fromEntries(Array.from({ length: 128 }, (_, i) => [`k${i}`, 'v']));
    const id = await create('a-member', { name: 'full', ...props });
    assert.equal((await patch('a-member', id, [{ op: 'add', path: '/pir_gallery_id', value: g.id }])).status, 200);
    assert.equal((await patch('a-member', id, [{ op: 'replace', path: '/k1', value: 'new' }])).status, 200);
    assert.equal((await patch('a-member', id, [{ op: 'add', path: '/k128', value: 'v' }])).status, 413, 'the 129th of the client is still refused');
    const emoji = '\u{1F600}';
    assert.equal((await call('a-member', 'POST', '/v2/images', { name: emoji.repeat(255), tags: [emoji.repeat(255)] })).status, 201);
    const long = await call('a-member', 'POST', '/v2/images', { name: emoji.repeat(256) });
    assert.equal(long.status, 400);
    assert.match(JSON.stringify(long.body), /got 256|255/);
  });
}
