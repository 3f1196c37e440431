/**
 * GET /v2/images in process (Fastify inject over the real app and an SQLite store): each filter,
 * sorting, paging links, and every malformed parameter answered with a 400 that names it.
 * The visibility scope per caller is covered store by store in test/contract (manifest-store).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteManifestStore } from '../../../infra/embedded/sqlite-manifest-store.js';
import type { ImageDoc } from '../../../schemas/image.js';
import { inProcessApp, type InProcessApp } from '../../support/in-process-app.js';
import { makeDoc } from '../../contract/helpers.js';
import { splitQuoted } from '../../../api/list-query.js';
import { parseIsoTime } from '../../../api/iso-time.js';

const BASE = Date.parse('2024-05-01T00:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

describe('GET /v2/images', () => {
  let dir: string;
  let store: SqliteManifestStore;
  let pir: InProcessApp;
  const docs: ImageDoc[] = [];
  const member = (member_id: string, status: 'pending' | 'accepted' | 'rejected') => ({ member_id, status, created_at: iso(BASE), updated_at: iso(BASE) });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pir-list-api-'));
    store = new SqliteManifestStore({ path: join(dir, 'manifest.sqlite') });
    pir = await inProcessApp(store, {
      tokens: {
        'p9-token': { project_id: 'p9', user_id: 'u9', roles: ['member', 'reader'] },
        'p1-token': { project_id: 'p1', user_id: 'u1', roles: ['member', 'reader'] },
      },
    });
    // 50 images: created a second apart (with milliseconds), owners admin/p1/p2, mixed fields.
    for (let i = 0; i < 50; i++) {
      docs.push(makeDoc({
        name: i === 7 ? 'a,b' : `img-${i % 4}`,
        owner: ['admin', 'p1', 'p2'][i % 3]!,
        status: (['active', 'queued', 'active', 'killed', 'active'] as const)[i % 5]!,
        visibility: (['public', 'private', 'shared', 'community'] as const)[i % 4]!,
        disk_format: (['qcow2', 'raw', 'iso'] as const)[i % 3]!,
        container_format: i % 2 ? 'bare' : 'ovf',
        size: i % 5 === 0 ? null : i * 1000,
        protected: i % 6 === 0,
        os_hidden: i % 10 === 9,
        tags: [...(i % 2 ? ['x86'] : []), ...(i % 3 ? [] : ['64bit'])],
        properties: { ...(i % 4 === 1 ? { os_distro: 'debian' } : {}), 'with:colon': 'v:1' },
        members: i % 4 === 2 ? [member('p9', i % 8 === 2 ? 'accepted' : 'pending')] : [],
        created_at: iso(BASE + i * 1000 + 250),
        updated_at: iso(BASE + (50 - i) * 1000 + 999),
      }));
    }
    await store.createMany(docs);
    // A deleted image is never listed.
    await store.create(makeDoc({ name: 'gone', status: 'deleted', owner: 'admin', visibility: 'public' }));
  });
  after(async () => {
    await pir.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const get = async (query: string, token = pir.token) => {
    const res = await pir.app.inject({ method: 'GET', url: `/v2/images${query}`, headers: { 'x-auth-token': token } });
    return { status: res.statusCode, body: res.json() as { images: Record<string, unknown>[]; next?: string; first?: string; error?: { message: string; error_code: string } } };
  };
  const names = async (query: string) => {
    const r = await get(query);
    assert.equal(r.status, 200, `${query}: ${JSON.stringify(r.body)}`);
    return r.body.images.map((i) => i.name as string);
  };
  /** The names of the images picked, newest first. */
  const ordered = (pick: (d: ImageDoc, i: number) => boolean) =>
    docs.map((d, i) => [d, i] as const).filter(([d, i]) => pick(d, i)).sort((a, b) => (a[0].created_at < b[0].created_at ? 1 : -1)).map(([d]) => d.name);
  /** The same without killed images, which a list shows only when its status filter names them (as Glance never lists them). */
  const expected = (pick: (d: ImageDoc, i: number) => boolean) => ordered((d, i) => d.status !== 'killed' && pick(d, i));
  /** Ids the admin lists by default (Glance: all but other projects' community images, hidden ones hidden). */
  const byDefault = (d: ImageDoc) => !d.os_hidden && (d.visibility !== 'community' || d.owner === 'admin');
  const all = (query: string) => names(`${query}${query.includes('?') ? '&' : '?'}limit=1000`);

  it('lists 25 newest first by default, with first and next links', async () => {
    const r = await get('');
    assert.equal(r.status, 200);
    assert.equal(r.body.images.length, 25);
    assert.deepEqual(r.body.images.map((i) => i.name), expected(byDefault).slice(0, 25));
    assert.equal(r.body.first, '/v2/images');
    assert.match(r.body.next!, /^\/v2\/images\?marker=[0-9a-f-]{36}$/);
    const rest = await get(r.body.next!.slice('/v2/images'.length));
    assert.deepEqual([...r.body.images, ...rest.body.images].map((i) => i.name), expected(byDefault));
    assert.equal(rest.body.next, undefined, 'a page shorter than the limit has no next link');
  });

  it('filters by name, id, status, formats with eq and in: (quoted values with commas)', async () => {
    assert.deepEqual(await all('?name=img-1'), expected((d) => byDefault(d) && d.name === 'img-1'));
    assert.deepEqual(await all('?name=eq:img-1'), expected((d) => byDefault(d) && d.name === 'img-1'));
    assert.deepEqual(await all(`?name=${encodeURIComponent('in:img-2,"a,b",nothing')}`), expected((d) => byDefault(d) && (d.name === 'img-2' || d.name === 'a,b')));
    assert.ok((await all(`?visibility=all&name=${encodeURIComponent('in:"a,b"')}`)).length === 1, 'a quoted value keeps its comma');
    assert.deepEqual(await all(`?name=${encodeURIComponent('in:img-2,img-3')}`), expected((d) => byDefault(d) && ['img-2', 'img-3'].includes(d.name!)));
    assert.deepEqual(await all(`?id=in:${docs[3]!.id},${docs[4]!.id}`), expected((d) => byDefault(d) && [docs[3]!.id, docs[4]!.id].includes(d.id)));
    assert.deepEqual(await all(`?id=${docs[4]!.id}`), [docs[4]!.name]);
    assert.ok(docs.some((d) => byDefault(d) && d.status === 'killed'));
    assert.deepEqual(await all('?status=killed'), ordered((d) => byDefault(d) && d.status === 'killed'), 'killed images are listed when asked for by status');
    assert.deepEqual(await all('?status=in:queued,killed'), ordered((d) => byDefault(d) && ['queued', 'killed'].includes(d.status)));
    assert.deepEqual(await all('?status=deleted'), [], 'deleted images are never listed');
    assert.deepEqual(await all('?disk_format=iso&container_format=bare'), expected((d) => byDefault(d) && d.disk_format === 'iso' && d.container_format === 'bare'));
    assert.deepEqual(await all('?disk_format=in:raw,iso'), expected((d) => byDefault(d) && d.disk_format !== 'qcow2'));
  });

  it('filters by visibility, owner, protected, os_hidden, sizes, tags and extra properties', async () => {
    assert.deepEqual(await all('?visibility=community'), expected((d) => !d.os_hidden && d.visibility === 'community'));
    assert.deepEqual(await all('?visibility=all'), expected((d) => !d.os_hidden));
    assert.deepEqual(await all('?visibility=shared&member_status=all'), expected((d) => !d.os_hidden && d.visibility === 'shared'));
    assert.deepEqual(await all('?owner=p1'), expected((d) => byDefault(d) && d.owner === 'p1'));
    assert.deepEqual(await all('?protected=true'), expected((d) => byDefault(d) && d.protected));
    assert.deepEqual(await all('?protected=false&visibility=all'), expected((d) => !d.os_hidden && !d.protected));
    assert.deepEqual(await all('?os_hidden=true&visibility=all'), expected((d) => d.os_hidden));
    assert.deepEqual(await all('?os_hidden=FALSE'), expected(byDefault));
    assert.deepEqual(await all('?size_min=10000&size_max=20000'), expected((d) => byDefault(d) && d.size !== null && d.size >= 10000 && d.size <= 20000));
    assert.deepEqual(await all('?tag=x86'), expected((d) => byDefault(d) && d.tags.includes('x86')));
    assert.deepEqual(await all('?tag=x86&tag=64bit'), expected((d) => byDefault(d) && d.tags.includes('x86') && d.tags.includes('64bit')));
    assert.deepEqual(await all('?os_distro=debian'), expected((d) => byDefault(d) && d.properties.os_distro === 'debian'));
    assert.deepEqual(await all('?os_distro=debian&tag=x86&owner=p2'), expected((d) => byDefault(d) && d.properties.os_distro === 'debian' && d.tags.includes('x86') && d.owner === 'p2'));
    assert.deepEqual(await all(`?${encodeURIComponent('with:colon')}=${encodeURIComponent('v:1')}`), expected(byDefault), 'property values are taken whole, colons included');
    assert.deepEqual(await all('?os_distro=nothing'), []);
    assert.deepEqual(await all('?__proto__=x'), [], 'a property named __proto__ is a filter, not ignored');
    assert.deepEqual(await all('?constructor=x'), []);
  });

  it('filters created_at and updated_at with gt, gte, eq, neq, lt, lte on the shown (whole-second) times', async () => {
    const t = (i: number) => iso(BASE + i * 1000).replace('.000Z', 'Z'); // image i shows as t(i)
    const created = (op: string, i: number) => all(`?created_at=${op}:${encodeURIComponent(t(i))}`);
    assert.deepEqual(await created('gt', 30), expected((d, i) => byDefault(d) && i > 30));
    assert.deepEqual(await created('gte', 30), expected((d, i) => byDefault(d) && i >= 30));
    assert.deepEqual(await created('lt', 3), expected((d, i) => byDefault(d) && i < 3));
    assert.deepEqual(await created('lte', 3), expected((d, i) => byDefault(d) && i <= 3));
    assert.deepEqual(await created('eq', 4), expected((d, i) => byDefault(d) && i === 4));
    assert.deepEqual(await created('neq', 4), expected((d, i) => byDefault(d) && i !== 4));
    assert.deepEqual(await all(`?created_at=${encodeURIComponent(t(4))}`), [docs[4]!.name], 'a bare time is eq');
    assert.deepEqual(await all(`?created_at=gte:${encodeURIComponent('2024-05-01T02:00:10+02:00')}&created_at=lt:${encodeURIComponent(t(12))}`), expected((d, i) => byDefault(d) && i >= 10 && i < 12), 'offsets, and two ranges together');
    assert.deepEqual(await all(`?updated_at=lte:${encodeURIComponent(t(5))}`), expected((d, i) => byDefault(d) && 50 - i <= 5));
  });

  it("takes every ISO 8601 form Glance's parse_isotime (python iso8601) takes: reduced, basic, zones", async () => {
    const created = (...filters: string[]) => all(filters.map((f) => `created_at=${encodeURIComponent(f)}`).join('&').replace(/^/, '?'));
    assert.deepEqual(await created('gte:2024'), expected(byDefault), 'a year alone is its first instant');
    assert.deepEqual(await created('lt:2024-05'), [], 'a year and month');
    assert.deepEqual(await created('gte:2024-05-01', 'lt:2024-5-2'), expected(byDefault));
    assert.deepEqual(await created('gte:20240501T000010Z', 'lt:20240501T000012'), expected((d, i) => byDefault(d) && i >= 10 && i < 12), 'basic format');
    assert.deepEqual(await created('gt:2024-05-01T05:30:10+05:30', 'lte:2024-05-01T05:30:12+0530'), expected((d, i) => byDefault(d) && i > 10 && i <= 12), 'offsets with and without a colon');
    assert.deepEqual(await created('gte:2024-05-01T00:00:10,9', 'lt:2024-05-01T00:00:12.000001'), expected((d, i) => byDefault(d) && i >= 11 && i < 13), 'fractions round to the shown seconds');
    assert.deepEqual(await created('2024-05-01 00:00:04'), [docs[4]!.name], 'a bare time with a space is eq');
    for (const garbage of ['gt:202405', 'gt:2024-05-01T00:00:00z', 'gt:2024-05-01T00:00:00+24:00', 'gt: 2024-05-01', 'lt:2024-05-01T24:00:00Z']) {
      const r = await get(`?created_at=${encodeURIComponent(garbage)}`);
      assert.equal(r.status, 400, garbage);
      assert.equal(r.body.error!.error_code, 'bad_filter', garbage);
      assert.match(r.body.error!.message, /Bad "created_at" query filter format/, garbage);
    }
  });

  it('sorts by sort=k:dir,k2 and by sort_key/sort_dir pairs, with created_at and id as tie-breaks', async () => {
    const sorted = (cmp: (a: ImageDoc, b: ImageDoc) => number) => docs.filter((d) => byDefault(d) && d.status !== 'killed').sort(cmp).map((d) => d.id);
    const ids = async (q: string) => (await get(`${q}&limit=1000`)).body.images.map((i) => i.id as string);
    const byNameThenCreatedAsc = (a: ImageDoc, b: ImageDoc) => (a.name! < b.name! ? -1 : a.name! > b.name! ? 1 : a.created_at < b.created_at ? -1 : 1);
    assert.deepEqual(await ids('?sort=name:asc'), sorted(byNameThenCreatedAsc));
    assert.deepEqual(await ids('?sort_key=name&sort_dir=asc'), sorted(byNameThenCreatedAsc));
    const sizeNulls = (s: number | null) => (s === null ? -1 : s);
    // Two directions: the tie-breaks (created_at, id) are descending.
    const byStatusDescSizeAsc = (a: ImageDoc, b: ImageDoc) => (a.status !== b.status ? (a.status < b.status ? 1 : -1) : sizeNulls(a.size) !== sizeNulls(b.size) ? sizeNulls(a.size) - sizeNulls(b.size) : a.created_at < b.created_at ? 1 : -1);
    assert.deepEqual(await ids('?sort=status:desc,size:asc'), sorted(byStatusDescSizeAsc));
    assert.deepEqual(await ids('?sort_key=status&sort_dir=desc&sort_key=size&sort_dir=asc'), sorted(byStatusDescSizeAsc));
    assert.deepEqual(await ids('?sort=status'), sorted((a, b) => (a.status !== b.status ? (a.status < b.status ? 1 : -1) : a.created_at < b.created_at ? 1 : -1)), 'sort= without a direction is desc');
  });

  it('pages with marker through ties, and next links keep every parameter', async () => {
    const query = '?sort=status:asc&tag=x86&limit=3&visibility=all';
    const seen: string[] = [];
    let url: string | undefined = query;
    let first: string | undefined;
    for (let pages = 0; url && pages < 50; pages++) {
      const r = await get(url);
      assert.equal(r.status, 200);
      first ??= r.body.first;
      seen.push(...r.body.images.map((i) => i.id as string));
      if (r.body.next) {
        const next = new URL(r.body.next, 'http://x');
        assert.deepEqual(next.searchParams.getAll('tag'), ['x86']);
        assert.equal(next.searchParams.get('sort'), 'status:asc');
        assert.equal(next.searchParams.get('visibility'), 'all');
      }
      url = r.body.next?.slice('/v2/images'.length);
    }
    assert.equal(first, '/v2/images?sort=status%3Aasc&tag=x86&limit=3&visibility=all');
    const whole = (await get('?sort=status:asc&tag=x86&limit=1000&visibility=all')).body.images.map((i) => i.id as string);
    assert.deepEqual(seen, whole);
    assert.equal(new Set(seen).size, seen.length);
  });

  it('takes an image id in upper case as the same id in marker and the id filter (as in a path)', async () => {
    const whole = (await get('?visibility=all&limit=1000')).body.images.map((i) => i.id as string);
    const [a, b] = whole;
    assert.deepEqual((await get(`?visibility=all&limit=1000&marker=${a!.toUpperCase()}`)).body.images.map((i) => i.id), whole.slice(1));
    assert.deepEqual((await get(`?visibility=all&id=${b!.toUpperCase()}`)).body.images.map((i) => i.id), [b]);
    assert.deepEqual((await get(`?visibility=all&sort_key=id&sort_dir=asc&id=in:${a!.toUpperCase()},${b}`)).body.images.map((i) => i.id), [a, b].sort());
  });

  it('takes limit 0 as an empty page, clamps to 1000 and defaults to 25', async () => {
    const zero = await get('?limit=0');
    assert.deepEqual(zero.body.images, []);
    assert.equal(zero.body.next, undefined);
    assert.equal((await get('?limit=5000&visibility=all&os_hidden=false')).body.images.length, docs.filter((d) => !d.os_hidden && d.status !== 'killed').length);
    assert.equal((await get('?limit=7')).body.images.length, 7);
  });

  it('reads protected, os_hidden, limit, size ranges and an empty visibility as Glance does', async () => {
    const refused = await get('?protected=True');
    assert.equal(refused.status, 400, "Glance takes protected as sent: only 'true' or 'false'");
    assert.equal(refused.body.error!.error_code, 'bad_filter');
    assert.match(refused.body.error!.message, /'protected'/);
    assert.deepEqual(await all('?os_hidden=True&visibility=all'), expected((d) => d.os_hidden), 'os_hidden is lowered first, as in Glance');
    // Python's int(): its blanks (U+0085 is one, a BOM is not) and any Unicode decimal digits (full-width, Arabic-Indic, mathematical bold).
    for (const limit of ['%2B5', '+5', '%205%20', '0_5', '%EF%BC%95', '%D9%A5', '%C2%855', '%C2%A05%E3%80%80', '%F0%9D%9F%93', '%EF%BC%91_%D9%A5']) {
      const want = decodeURIComponent(limit) === '１_٥' ? 15 : 5;
      assert.equal((await get(`?limit=${limit}`)).body.images.length, want, `int('${decodeURIComponent(limit)}') is ${want}`);
    }
    for (const limit of ['%EF%BB%BF5', '%1C5']) assert.equal((await get(`?limit=${limit}`)).status, 400, `int('${decodeURIComponent(limit)}') is a ValueError`);
    assert.deepEqual((await get('?limit=-0')).body.images, []);
    assert.deepEqual(await all('?size_min=%2B10000&size_max=2_0000'), expected((d) => byDefault(d) && d.size !== null && d.size >= 10000 && d.size <= 20000));
    const none = await get('?visibility=');
    assert.equal(none.status, 200, 'Glance checks a non-empty visibility only, then matches visibility == \'\'');
    assert.deepEqual(none.body.images, []);
    assert.equal(none.body.next, undefined);
    assert.equal((await get('?visibility=&marker=not-an-id')).status, 400, 'the marker is still checked');
  });

  for (const [query, param] of [
    ['?limit=abc', 'limit'], ['?limit=', 'limit'], ['?limit=-1', 'limit'], ['?limit=1.5', 'limit'],
    ['?marker=', 'marker'], ['?marker=00000000-0000-0000-0000-000000000000', 'marker'], ['?marker=not-an-id', 'marker'],
    ['?sort_key=bogus', 'sort_key'], ['?sort_dir=up', 'sort_dir'], ['?sort=name:up', 'sort'], ['?sort=bogus', 'sort'], ['?sort=', 'sort'],
    ['?sort=name&sort_key=size', 'sort'], ['?sort_key=name&sort_key=size&sort_key=id&sort_dir=asc&sort_dir=desc', 'sort_dir'],
    ['?visibility=bogus', 'visibility'], ['?member_status=maybe', 'member_status'],
    ['?protected=maybe', 'protected'], ['?os_hidden=yes', 'os_hidden'],
    ['?size_min=abc', 'size_min'], ['?size_max=1e3', 'size_max'],
    ['?created_at=gt:yesterday', 'created_at'], ['?created_at=since:2024-01-01T00:00:00Z', 'created_at'], ['?updated_at=2024-02-30T00:00:00Z', 'updated_at'],
    ['?name=foo:bar', 'name'], ['?status=gt:active', 'status'], [`?id=${encodeURIComponent('in:"a')}`, 'id'], [`?name=${encodeURIComponent('in:a"b"')}`, 'name'],
    ['?changes-since=2024-01-01T00:00:00Z', 'changes-since'], ['?size=5', 'size'], ['?min_ram=5', 'min_ram'],
    ['?virtual_size_min=1', 'virtual_size'], ['?min_ram_max=1024', 'min_ram'], ['?min_disk_min=1', 'min_disk'],
    ['?name=a&name=b', 'name'], ['?owner=a&owner=b', 'owner'],
  ] as const) {
    it(`refuses ${decodeURIComponent(query)} with a 400 naming ${param}`, async () => {
      const r = await get(query);
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.ok(r.body.error!.message.includes(param), `"${r.body.error!.message}" names ${param}`);
    });
  }

  it("lists a project's view: own images, public ones, and shared ones by member_status", async () => {
    const ids = async (query: string, token: string) => {
      const r = await get(query, token);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.images.map((i) => i.id as string).sort();
    };
    const visible = (pick: (d: ImageDoc) => boolean) => docs.filter((d) => !d.os_hidden && d.status !== 'killed' && pick(d)).map((d) => d.id).sort();
    const memberOf = (d: ImageDoc, status?: string) => d.visibility === 'shared' && d.members!.some((m) => m.member_id === 'p9' && (!status || m.status === status));
    assert.deepEqual(await ids('?limit=1000', 'p9-token'), visible((d) => d.visibility === 'public' || memberOf(d, 'accepted')));
    assert.deepEqual(await ids('?limit=1000&member_status=pending', 'p9-token'), visible((d) => d.visibility === 'public' || memberOf(d, 'pending')));
    assert.deepEqual(await ids('?limit=1000&visibility=shared&member_status=all', 'p9-token'), visible((d) => memberOf(d)));
    assert.deepEqual(await ids('?limit=1000&visibility=community', 'p9-token'), visible((d) => d.visibility === 'community'));
    assert.deepEqual(await ids('?limit=1000', 'p1-token'), visible((d) => d.visibility === 'public' || d.owner === 'p1'));
    assert.deepEqual(await ids('?limit=1000&visibility=private&owner=p2', 'p1-token'), [], "another project's private images never show");
    const privateOfP2 = docs.find((d) => d.owner === 'p2' && d.visibility === 'private')!;
    assert.equal((await get(`?marker=${privateOfP2.id}`, 'p1-token')).status, 400, "another project's private image is no marker");
    assert.equal((await get(`?marker=${privateOfP2.id}`)).status, 200, 'the admin may use it');
  });

  it("pages after an admin's marker that is a deleted image not purged yet (Glance's admin sees deleted rows); anyone else gets 400", async () => {
    const gone = makeDoc({ name: 'gone-marker', status: 'deleted', owner: 'p1', visibility: 'public', created_at: iso(BASE + 20 * 1000 + 500), updated_at: iso(BASE) });
    await store.create(gone);
    const page = await get(`?visibility=all&limit=1000&marker=${gone.id}`);
    assert.equal(page.status, 200, JSON.stringify(page.body));
    assert.deepEqual(page.body.images.map((i) => i.name), expected((d, i) => !d.os_hidden && i <= 20), 'the images after its place, itself not shown');
    const byName = await get(`?visibility=all&sort=name:asc&limit=1000&marker=${gone.id}`);
    assert.deepEqual(byName.body.images.map((i) => i.name), (await all('?visibility=all&sort=name:asc')).filter((n) => n > 'gone-marker'));
    const owner = await get(`?marker=${gone.id}`, 'p1-token');
    assert.equal(owner.status, 400, 'its owner (no admin) cannot page from a deleted image');
    assert.equal(owner.body.error!.error_code, 'bad_marker');
  });

  it('refuses a marker the caller cannot see exactly like an unknown one', async () => {
    const privateOfP1 = docs.find((d) => d.owner === 'p1' && d.visibility === 'private')!;
    const caller = { project_id: 'p2', user_id: 'u', roles: ['member'] };
    const request = { query: { where: {}, memberStatus: 'accepted' as const, sort: [{ key: 'created_at' as const, dir: 'desc' as const }], limit: 5 } };
    const invisible = await pir.images.list(caller, { ...request, marker: privateOfP1.id }).catch((e: Error) => e);
    const unknown = await pir.images.list(caller, { ...request, marker: '00000000-0000-0000-0000-000000000000' }).catch((e: Error) => e);
    assert.ok(invisible instanceof Error && unknown instanceof Error);
    assert.equal(invisible.message.replace(privateOfP1.id, 'X'), unknown.message.replace('00000000-0000-0000-0000-000000000000', 'X'));
    // A public image of another project is a valid marker, and a member sees its accepted shares.
    const publicOfP1 = docs.find((d) => d.owner === 'p1' && d.visibility === 'public')!;
    assert.ok(Array.isArray(await pir.images.list(caller, { ...request, marker: publicOfP1.id })));
    const p9 = { project_id: 'p9', user_id: 'u', roles: ['member'] };
    const shared = await pir.images.list(p9, { query: { ...request.query, limit: 1000 } });
    assert.deepEqual(shared.map((d) => d.id).sort(), docs.filter((d) => !d.os_hidden && d.status !== 'killed' && (d.visibility === 'public' || (d.visibility === 'shared' && d.members!.some((m) => m.member_id === 'p9' && m.status === 'accepted')))).map((d) => d.id).sort());
  });
});

describe('list query helpers', () => {
  it("splits in: values as Glance's split_filter_value_for_quotes", () => {
    assert.deepEqual(splitQuoted('name', 'a,b'), ['a', 'b']);
    assert.deepEqual(splitQuoted('name', '"a,b",c'), ['a,b', 'c']);
    assert.deepEqual(splitQuoted('name', 'a,,b'), ['a', '', 'b']);
    assert.deepEqual(splitQuoted('name', '"a\\"b"'), ['a\\"b']);
    assert.throws(() => splitQuoted('name', 'a"b"'), /no comma before/);
    assert.throws(() => splitQuoted('name', '"a"b'), /no comma after/);
    assert.throws(() => splitQuoted('name', '"ab'), /not closed/);
  });
  it('parses ISO 8601 times as python iso8601 2.1 parse_date does (table checked against the library)', () => {
    const z = (iso: string) => Date.parse(iso);
    const accepted: [string, number][] = [
      ['2024-05-01T00:00:00Z', z('2024-05-01T00:00:00Z')], ['2024-05-01T02:00:00+02:00', z('2024-05-01T00:00:00Z')],
      ['2024-05-01T00:00:00.5', z('2024-05-01T00:00:00.500Z')], ['2024-05-01', z('2024-05-01T00:00:00Z')],
      ['2026', z('2026-01-01T00:00:00Z')], ['2026-12', z('2026-12-01T00:00:00Z')], ['2026-1-6', z('2026-01-06T00:00:00Z')],
      ['20261206', z('2026-12-06T00:00:00Z')], ['202612-06', z('2026-12-06T00:00:00Z')], ['2026-1206', z('2026-12-06T00:00:00Z')],
      ['20261206T225551Z', z('2026-12-06T22:55:51Z')], ['20261206T22Z', z('2026-12-06T22:00:00Z')],
      ['2026-12-06T22:55', z('2026-12-06T22:55:00Z')], ['2026-12-06T225', z('2026-12-06T22:00:05Z')], ['2026-12-06 22:55:5', z('2026-12-06T22:55:05Z')],
      ['2026-12-06T22:55:51,25Z', z('2026-12-06T22:55:51.250Z')], ['2026-12-06T22:55:51.9999999+01:00', z('2026-12-06T21:55:51.999Z') + 0.999],
      ['2026-12-06T22:55:51+05:30', z('2026-12-06T17:25:51Z')], ['2026-12-06T22:55:51+0530', z('2026-12-06T17:25:51Z')],
      ['2026-12-06T22:55:51-05', z('2026-12-07T03:55:51Z')], ['2026-12-06T22:55:51+05:99', z('2026-12-06T16:16:51Z')],
      ['2026-12-06T22:55:51+23:59', z('2026-12-05T22:56:51Z')], ['2026-12-06T22:55:51Z\n', z('2026-12-06T22:55:51Z')],
      ['2024-02-29', z('2024-02-29T00:00:00Z')], ['0001-01-01', z('0001-01-01T00:00:00Z')],
    ];
    for (const [text, ms] of accepted) assert.equal(parseIsoTime(text), ms, JSON.stringify(text));
    const refused = [
      '202612', '2026-', '202', '20261', '2026--12', '2026-13', '2026-00', '2026-12-00', '0000-01-01', '2023-02-29', '2024-02-30',
      '2026-12-06t22:55:51', '2026-12-06T22:55:51z', ' 2026-12-06', '2026-12-06 ', '2026-12-06T', '2026-12-06T22:55:51.', '2026-12-06T22:55:51ZZ',
      '2026-12-06T24:00:00Z', '2026-12-06T23:60:00Z', '2026-12-06T23:59:60Z', '2026-12-06T22:55:51+24:00', '2026-12-06T22:55:51-23:99',
      '2026-12-06T22:55:51+5:30', '2026-12-06T22:55:51 +05:30', '2026-12-06T22:55:51+05:30:00', '2026-12-06T22:55:51Z\n\n',
      '2026-W49', '2026-340', 'yesterday', '',
    ];
    for (const text of refused) assert.equal(parseIsoTime(text), null, JSON.stringify(text));
  });
});
