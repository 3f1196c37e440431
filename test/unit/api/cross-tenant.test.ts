/**
 * The cross-tenant matrix: every endpoint PIR's policy guards, for each kind of image project A
 * owns (private, shared without members, shared with B pending, shared with B accepted,
 * community, public) and each caller (A and B as member, reader and service user with the
 * service role alone, an admin). Project B can neither see nor change what Glance's rules keep
 * from it: invisible → 404, visible but not allowed → 403; a caller without the reader role is
 * told 404 about every image (Glance's ImageAPIPolicy) except by the locations API.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CALLERS, testApp, type TestApp, type Token } from './tenant-app.js';
import { mayReceive } from '../../../api/routes/events.js';

type Kind = 'private' | 'shared' | 'shared-pending' | 'shared-accepted' | 'community' | 'public';
const KINDS: Kind[] = ['private', 'shared', 'shared-pending', 'shared-accepted', 'community', 'public'];
const TOKENS: Token[] = ['a-member', 'a-reader', 'b-member', 'b-reader', 'admin', 'a-service', 'b-service'];

const isAdmin = (token: Token) => token === 'admin';
const ofA = (token: Token) => CALLERS[token].project_id === 'A';
const isMember = (token: Token) => token.endsWith('-member') || isAdmin(token);
const isShared = (kind: Kind) => kind.startsWith('shared');
const bIsMember = (kind: Kind) => kind === 'shared-pending' || kind === 'shared-accepted';
/** The service role alone: no reader role. */
const isService = (token: Token) => token.endsWith('-service');
const reads = (token: Token) => !isService(token);
/** Glance's is_image_visible. */
const sees = (token: Token, kind: Kind) => isAdmin(token) || ofA(token) || kind === 'community' || kind === 'public' || bIsMember(kind);
/** Visible and readable (get_image): what every image endpoint but the locations API asks first. */
const seesRead = (token: Token, kind: Kind) => sees(token, kind) && reads(token);
/** A list's answer: 1 if it holds the image, 0 if not, or its status when it is refused. */
const holds = (res: { statusCode: number; json(): any }, id: string) =>
  res.statusCode === 200 ? (res.json().images.some((i: { id: string }) => i.id === id) ? 1 : 0) : res.statusCode;
/**
 * Glance's default list (glance/db/sqlalchemy/api.py _image_get_all): without a visibility
 * filter, community images only for their owner's project, administrators included.
 */
const listsByDefault = (token: Token, kind: Kind) => (!reads(token) ? 403 : (isAdmin(token) && kind !== 'community') || ofA(token) || kind === 'public' || kind === 'shared-accepted' ? 1 : 0);
/** Glance's list with ?visibility=<the image's>: shared images by member_status (default accepted). */
const listsByVisibility = (token: Token, kind: Kind, memberStatus: 'accepted' | 'all') => (!reads(token) ? 403
  : isAdmin(token) || ofA(token) || kind === 'public' || kind === 'community' || kind === 'shared-accepted' || (memberStatus === 'all' && kind === 'shared-pending') ? 1 : 0);
/** An owner-only write (modify_image, delete_image, upload_image, add/delete_member). */
const ownerWrite = (token: Token, kind: Kind, ok: number) => (!seesRead(token, kind) ? 404 : isAdmin(token) || (ofA(token) && isMember(token)) ? ok : 403);

interface Endpoint {
  name: string;
  /** Needs an active image. */
  active?: boolean;
  /** Changes the image: each cell gets its own. */
  mutates?: boolean;
  run(t: TestApp, token: Token, id: string): Promise<number>;
  expect(token: Token, kind: Kind): number;
}

const galleries = new WeakMap<TestApp, string>();
/** One gallery of project A, made once per app. */
async function galleryOf(t: TestApp, token: Token): Promise<string> {
  let id = galleries.get(t);
  if (!id) {
    const res = await t.call(token, 'POST', '/v2/galleries', { name: 'matrix' });
    assert.equal(res.statusCode, 201, res.body);
    id = res.json().id as string;
    galleries.set(t, id);
  }
  return id;
}

let serial = 0;

/** The webhooks' visibility rule, which GET /v2/events applies: shared images to accepted members only. */
const toldOf = (token: Token, kind: Kind) => reads(token) && (isAdmin(token) || ofA(token) || kind === 'community' || kind === 'public' || kind === 'shared-accepted');

/** Whether the caller's event stream carries an event of image `id` (the admin tags it meanwhile). */
async function streamCarries(t: TestApp, token: Token, id: string): Promise<number> {
  let seen = 0;
  const tag = `live-${Math.random().toString(36).slice(2, 8)}`;
  const arrived = new Promise<void>((resolve) => {
    const stop = t.live.listen(async (event, audience) => {
      if (event.image_id !== id || event.type !== 'image.updated') return;
      const caller = CALLERS[token]!;
      if (mayReceive(caller, event, audience.doc, await audience.grantsFor(caller))) seen = 1;
      stop();
      resolve();
    });
  });
  assert.equal((await t.call('admin', 'PUT', `/v2/images/${id}/tags/${tag}`)).statusCode, 204);
  await Promise.race([arrived, new Promise((r) => setTimeout(r, 3000))]);
  return seen;
}

const ENDPOINTS: Endpoint[] = [
  { name: 'GET /v2/events (an event of the image reaches the stream)', mutates: true, run: streamCarries, expect: (k, kind) => (toldOf(k, kind) ? 1 : 0) },
  { name: 'GET image', run: async (t, k, id) => (await t.call(k, 'GET', `/v2/images/${id}`)).statusCode, expect: (k, kind) => (seesRead(k, kind) ? 200 : 404) },
  { name: 'GET image tasks', run: async (t, k, id) => (await t.call(k, 'GET', `/v2/images/${id}/tasks`)).statusCode, expect: (k, kind) => (seesRead(k, kind) ? 200 : 404) },
  {
    name: 'GET image list (default view)',
    run: async (t, k, id) => holds(await t.call(k, 'GET', '/v2/images?limit=1000'), id),
    expect: listsByDefault,
  },
  {
    name: 'GET image list (?visibility=<its visibility>)',
    run: async (t, k, id) => {
      const doc = (await t.call('admin', 'GET', `/v2/images/${id}`)).json();
      return holds(await t.call(k, 'GET', `/v2/images?limit=1000&visibility=${doc.visibility}`), id);
    },
    expect: (k, kind) => listsByVisibility(k, kind, 'accepted'),
  },
  {
    name: 'GET image list (?visibility=<its visibility>&member_status=all)',
    run: async (t, k, id) => {
      const doc = (await t.call('admin', 'GET', `/v2/images/${id}`)).json();
      return holds(await t.call(k, 'GET', `/v2/images?limit=1000&visibility=${doc.visibility}&member_status=all`), id);
    },
    expect: (k, kind) => listsByVisibility(k, kind, 'all'),
  },
  { name: 'GET file', active: true, run: async (t, k, id) => (await t.call(k, 'GET', `/v2/images/${id}/file`)).statusCode, expect: (k, kind) => (!seesRead(k, kind) ? 404 : isMember(k) ? 200 : 403) },
  // Registered locations: adding one is an owner write, or a service user's on any image its
  // project sees (s3:// for admins and service users only); the locations API is for service users
  // and admins; the view's locations for the owner project and admins.
  {
    name: 'POST locations (http)', mutates: true,
    run: async (t, k, id) => (await t.call(k, 'POST', `/v2/images/${id}/locations`, { url: 'https://registered.invalid/disk.raw' })).statusCode,
    expect: (k, kind) => (sees(k, kind) && isService(k) ? 202 : ownerWrite(k, kind, 202)),
  },
  {
    name: 'POST locations (s3)', mutates: true,
    run: async (t, k, id) => (await t.call(k, 'POST', `/v2/images/${id}/locations`, { url: 's3://golden/disk.raw' })).statusCode,
    expect: (k, kind) => (!sees(k, kind) ? 404 : isAdmin(k) || isService(k) ? 202 : 403),
  },
  {
    name: 'PATCH add /locations/-', mutates: true,
    run: async (t, k, id) => (await t.patch(k, id, [{ op: 'add', path: '/locations/-', value: { url: 'https://registered.invalid/disk.raw', metadata: {} } }])).statusCode,
    expect: (k, kind) => ownerWrite(k, kind, 200),
  },
  { name: 'GET locations', run: async (t, k, id) => (await t.call(k, 'GET', `/v2/images/${id}/locations`)).statusCode, expect: (k, kind) => (!sees(k, kind) ? 404 : isAdmin(k) || isService(k) ? 200 : 403) },
  {
    name: 'GET image shows locations and direct_url (operator options on)', mutates: true,
    run: async (t, k, id) => {
      assert.equal((await t.call('admin', 'POST', `/v2/images/${id}/locations`, { url: 'https://registered.invalid/disk.raw' })).statusCode, 202);
      const res = await t.call(k, 'GET', `/v2/images/${id}`);
      if (res.statusCode !== 200) return res.statusCode;
      const listed = (await t.call(k, 'GET', '/v2/images?limit=1000&visibility=all&member_status=all')).json().images.find((i: { id: string }) => i.id === id);
      const shown = [res.json(), listed].filter(Boolean).map((v) => ('locations' in v ? 1 : 0) + ('direct_url' in v ? 1 : 0) + (JSON.stringify(v).includes('registered.invalid') ? 1 : 0));
      return Math.max(...shown);
    },
    expect: (k, kind) => (!seesRead(k, kind) ? 404 : isAdmin(k) || ofA(k) ? 3 : 0),
  },
  { name: 'PATCH', mutates: true, run: async (t, k, id) => (await t.patch(k, id, [{ op: 'replace', path: '/name', value: 'x' }])).statusCode, expect: (k, kind) => ownerWrite(k, kind, 200) },
  { name: 'DELETE image', mutates: true, run: async (t, k, id) => (await t.call(k, 'DELETE', `/v2/images/${id}`)).statusCode, expect: (k, kind) => ownerWrite(k, kind, 204) },
  { name: 'PUT tag', mutates: true, run: async (t, k, id) => (await t.call(k, 'PUT', `/v2/images/${id}/tags/new`)).statusCode, expect: (k, kind) => ownerWrite(k, kind, 204) },
  { name: 'DELETE tag', mutates: true, run: async (t, k, id) => (await t.call(k, 'DELETE', `/v2/images/${id}/tags/old`)).statusCode, expect: (k, kind) => ownerWrite(k, kind, 204) },
  {
    name: 'PUT file', mutates: true,
    run: async (t, k, id) => (await t.call(k, 'PUT', `/v2/images/${id}/file`, Buffer.alloc(1024), { 'content-type': 'application/octet-stream', prefer: 'respond-async' })).statusCode,
    expect: (k, kind) => ownerWrite(k, kind, 202),
  },
  { name: 'PUT stage', mutates: true, run: async (t, k, id) => (await t.call(k, 'PUT', `/v2/images/${id}/stage`, Buffer.alloc(1024), { 'content-type': 'application/octet-stream' })).statusCode, expect: (k, kind) => ownerWrite(k, kind, 204) },
  { name: 'POST import (nothing staged)', run: async (t, k, id) => (await t.call(k, 'POST', `/v2/images/${id}/import`, { method: { name: 'glance-direct' } })).statusCode, expect: (k, kind) => ownerWrite(k, kind, 409) },
  {
    name: 'POST member', mutates: true,
    run: async (t, k, id) => (await t.call(k, 'POST', `/v2/images/${id}/members`, { member: 'C' })).statusCode,
    expect: (k, kind) => { const s = ownerWrite(k, kind, 200); return s === 200 && !isShared(kind) ? 403 : s; },
  },
  {
    name: 'GET members',
    run: async (t, k, id) => {
      const res = await t.call(k, 'GET', `/v2/images/${id}/members`);
      return res.statusCode === 200 ? 200 + res.json().members.length : res.statusCode; // 200 + how many it sees
    },
    expect: (k, kind) => {
      if (!seesRead(k, kind)) return 404;
      if (!isShared(kind)) return 403;
      if (ofA(k) || isAdmin(k)) return 200 + (bIsMember(kind) ? 1 : 0);
      return 201; // B sees its own record only
    },
  },
  {
    name: 'GET member B',
    run: async (t, k, id) => (await t.call(k, 'GET', `/v2/images/${id}/members/B`)).statusCode,
    expect: (k, kind) => (!seesRead(k, kind) || !isShared(kind) ? 404 : bIsMember(kind) ? 200 : 404), // not shared: 404, as Glance
  },
  {
    name: 'PUT member B (accept)', mutates: true,
    run: async (t, k, id) => (await t.call(k, 'PUT', `/v2/images/${id}/members/B`, { status: 'accepted' })).statusCode,
    expect: (k, kind) => {
      if (!seesRead(k, kind)) return 404;
      if (!isShared(kind)) return 403;
      if (!bIsMember(kind)) return 404; // Glance looks the member up before the modify_member policy
      if (ofA(k)) return 403; // the owner never answers for the member
      return isMember(k) ? 200 : 403;
    },
  },
  {
    name: 'DELETE member B', mutates: true,
    run: async (t, k, id) => (await t.call(k, 'DELETE', `/v2/images/${id}/members/B`)).statusCode,
    expect: (k, kind) => { const s = ownerWrite(k, kind, 204); return s === 204 && !isShared(kind) ? 403 : s === 204 && !bIsMember(kind) ? 404 : s; },
  },
  // Share links (PIR extension): the owner's alone; other tenants neither create, list nor revoke them.
  { name: 'POST share-link', active: true, mutates: true, run: async (t, k, id) => (await t.call(k, 'POST', `/v2/images/${id}/share-links`, { expires_in: 60 })).statusCode, expect: (k, kind) => ownerWrite(k, kind, 201) },
  {
    name: 'GET share-links', active: true,
    run: async (t, k, id) => {
      const res = await t.call(k, 'GET', `/v2/images/${id}/share-links`);
      // Whoever may not list learns nothing of the links: no list in the answer.
      if (res.statusCode !== 200) assert.equal(res.json().share_links, undefined);
      return res.statusCode;
    },
    expect: (k, kind) => ownerWrite(k, kind, 200),
  },
  {
    name: 'DELETE share-link', active: true, mutates: true,
    run: async (t, k, id) => {
      const link = (await t.call('admin', 'POST', `/v2/images/${id}/share-links`, { expires_in: 60 })).json().id as string;
      return (await t.call(k, 'DELETE', `/v2/images/${id}/share-links/${link}`)).statusCode;
    },
    expect: (k, kind) => ownerWrite(k, kind, 204),
  },
  {
    name: 'POST uploads (tus creation)', mutates: true,
    run: async (t, k, id) => (await t.call(k, 'POST', `/v2/images/${id}/uploads`, undefined, { 'tus-resumable': '1.0.0', 'upload-length': '1024' })).statusCode,
    expect: (k, kind) => ownerWrite(k, kind, 201),
  },
  // The catalog extension: metafiles follow the image's visibility (404 when unseen); its
  // revisions (past members, removed values) are the owner project's and administrators' (403 to others who see it).
  { name: 'GET revisions', run: async (t, k, id) => (await t.call(k, 'GET', `/v2/images/${id}/revisions`)).statusCode, expect: (k, kind) => (!seesRead(k, kind) ? 404 : ofA(k) || isAdmin(k) ? 200 : 403) },
  { name: 'GET revision 1', run: async (t, k, id) => (await t.call(k, 'GET', `/v2/images/${id}/revisions/1`)).statusCode, expect: (k, kind) => (!seesRead(k, kind) ? 404 : ofA(k) || isAdmin(k) ? 200 : 403) },
  {
    name: 'POST revision 1 restore', mutates: true,
    run: async (t, k, id) => {
      await t.patch('admin', id, [{ op: 'replace', path: '/name', value: 'renamed' }]);
      return (await t.call(k, 'POST', `/v2/images/${id}/revisions/1/restore`)).statusCode;
    },
    expect: (k, kind) => ownerWrite(k, kind, 200),
  },
  { name: 'GET metafile', run: async (t, k, id) => (await t.call(k, 'GET', `/v2/images/${id}/metafile`)).statusCode, expect: (k, kind) => (seesRead(k, kind) ? 200 : 404) },
  {
    name: 'GET image list (?q=<its unique word>)',
    run: async (t, k, id) => {
      const { name } = (await t.call('admin', 'GET', `/v2/images/${id}`)).json();
      const word = String(name).split(' ')[1];
      return holds(await t.call(k, 'GET', `/v2/images?limit=1000&q=${word}`), id);
    },
    expect: listsByDefault,
  },
  {
    name: 'GET image list (?q=…&visibility=all&member_status=all&sort=relevance)',
    run: async (t, k, id) => {
      const { name } = (await t.call('admin', 'GET', `/v2/images/${id}`)).json();
      const word = String(name).split(' ')[1]!.slice(0, 6);
      return holds(await t.call(k, 'GET', `/v2/images?limit=1000&q=${word}&visibility=all&member_status=all&sort=relevance`), id);
    },
    expect: (k, kind) => (!reads(k) ? 403 : isAdmin(k) || ofA(k) || kind === 'public' || kind === 'community' || bIsMember(kind) ? 1 : 0),
  },
  {
    name: 'PATCH pir_gallery_id (A\'s gallery)', mutates: true,
    run: async (t, k, id) => (await t.patch(k, id, [{ op: 'add', path: '/pir_gallery_id', value: await galleryOf(t, 'a-member') }])).statusCode,
    expect: (k, kind) => ownerWrite(k, kind, 200),
  },
  {
    name: 'GET image list (?gallery=<A\'s gallery holding it>)',
    run: async (t, k, id) => {
      const gallery = await galleryOf(t, 'a-member');
      assert.equal((await t.patch('admin', id, [{ op: 'add', path: '/pir_gallery_id', value: gallery }])).statusCode, 200);
      const res = await t.call(k, 'GET', `/v2/images?limit=1000&gallery=${gallery}&visibility=all&member_status=all`);
      return res.statusCode === 200 ? (res.json().images.some((i: { id: string }) => i.id === id) ? 1 : 0) : res.statusCode;
    },
    // Only A's own project (and admins) see A's galleries; everyone else gets 404, whatever the image's visibility.
    expect: (k) => (!reads(k) ? 403 : isAdmin(k) || ofA(k) ? 1 : 404),
  },
  {
    name: 'POST deactivate', active: true, mutates: true,
    run: async (t, k, id) => (await t.call(k, 'POST', `/v2/images/${id}/actions/deactivate`)).statusCode,
    expect: (k, kind) => (!seesRead(k, kind) ? 404 : isAdmin(k) ? 204 : 403),
  },
  {
    name: 'POST reactivate', active: true,
    run: async (t, k, id) => (await t.call(k, 'POST', `/v2/images/${id}/actions/reactivate`)).statusCode,
    expect: (k, kind) => (!seesRead(k, kind) ? 404 : isAdmin(k) ? 204 : 403),
  },
];

describe('cross-tenant matrix', () => {
  let t: TestApp;
  const shared = new Map<string, string>(); // kind + active → an image for endpoints that change nothing
  before(async () => { t = await testApp(); });
  after(async () => { await t.close(); });

  /** An image project A owns, of `kind`, created by the admin (only it may make one public). */
  async function image(kind: Kind, active: boolean): Promise<string> {
    const visibility = isShared(kind) ? 'shared' : kind;
    const id = await t.create('admin', { owner: 'A', visibility, tags: ['old'], name: `img word${String(++serial).padStart(6, '0')}x` });
    if (active) await t.activate('admin', id);
    if (bIsMember(kind)) assert.equal((await t.call('a-member', 'POST', `/v2/images/${id}/members`, { member: 'B' })).statusCode, 200);
    if (kind === 'shared-accepted') assert.equal((await t.call('b-member', 'PUT', `/v2/images/${id}/members/B`, { status: 'accepted' })).statusCode, 200);
    return id;
  }

  for (const endpoint of ENDPOINTS) {
    it(endpoint.name, async () => {
      const failures: string[] = [];
      for (const kind of KINDS) {
        for (const token of TOKENS) {
          let id: string;
          if (endpoint.mutates) id = await image(kind, !!endpoint.active);
          else {
            const key = `${kind}:${endpoint.active ? 'active' : 'queued'}`;
            if (!shared.has(key)) shared.set(key, await image(kind, !!endpoint.active));
            id = shared.get(key)!;
          }
          const got = await endpoint.run(t, token, id);
          const want = endpoint.expect(token, kind);
          if (got !== want) failures.push(`${token} on ${kind}: got ${got}, want ${want}`);
        }
      }
      assert.deepEqual(failures, []);
    });
  }

  it('tells a membership event to the owner, admins and the member it is about, not to other members (GET /v2/events)', async () => {
    const id = await image('shared-accepted', false);
    assert.equal((await t.call('a-member', 'POST', `/v2/images/${id}/members`, { member: 'C' })).statusCode, 200);
    const event = (type: string, member: string, data: object = { member_id: member }) => ({ id: `e-${type}-${member}`, type, version: 1, image_id: id, occurred_at: new Date().toISOString(), data }) as never;
    // Its invitation reaches the invited project while it is pending (Glance shows it the image by id); not the rest.
    const pending = (await t.d.manifest.get(id))!;
    assert.equal(mayReceive(CALLERS['c-member']!, event('image.member.created', 'C'), pending), true, 'C is told of its invitation');
    assert.equal(mayReceive(CALLERS['c-member']!, event('image.updated', 'C', {}), pending), false, 'but not of the image while pending');
    assert.equal(mayReceive(CALLERS['b-member']!, event('image.member.created', 'C'), pending), false, 'B is not told of C');
    assert.equal((await t.call('c-member', 'PUT', `/v2/images/${id}/members/C`, { status: 'accepted' })).statusCode, 200);
    const stored = (await t.d.manifest.get(id))!;
    const told = (token: Token, type: string, member: string) => mayReceive(CALLERS[token]!, event(type, member), stored);
    for (const type of ['image.member.created', 'image.member.updated']) {
      assert.equal(told('a-reader', type, 'C'), true, `${type}: the owner's readers`);
      assert.equal(told('admin', type, 'C'), true, `${type}: admins`);
      assert.equal(told('c-member', type, 'C'), true, `${type}: the member concerned`);
      assert.equal(told('b-member', type, 'C'), false, `${type}: another accepted member`);
      assert.equal(told('b-member', type, 'B'), true, `${type}: B about itself`);
    }
    assert.equal(mayReceive(CALLERS['b-member']!, event('image.updated', 'B', {}), stored), true, 'B still hears of the image itself');
  });

  it('hides the tasks API from everyone but admins', async () => {
    for (const token of TOKENS) assert.equal((await t.call(token, 'GET', '/v2/tasks')).statusCode, isAdmin(token) ? 200 : 403, token);
    // Creating one too (the legacy import); an admin's is refused only for its loopback URL here.
    const task = { type: 'import', input: { import_from: 'http://127.0.0.1/x.qcow2', import_from_format: 'qcow2', image_properties: {} } };
    for (const token of TOKENS) assert.equal((await t.call(token, 'POST', '/v2/tasks', task)).statusCode, isAdmin(token) ? 400 : 403, token);
  });
});

describe('PATCH add /locations/- while locations are hidden (PIR_SHOW_MULTIPLE_LOCATIONS off)', () => {
  let t: TestApp;
  before(async () => { t = await testApp({ showLocations: false }); });
  after(async () => { await t.close(); });

  it('is refused as Glance refuses it (403 locations_hidden; 404 to whoever cannot see the image); POST …/locations still works', async () => {
    const id = await t.create('a-member', { visibility: 'private' });
    const add = [{ op: 'add', path: '/locations/-', value: { url: 'https://registered.invalid/disk.raw', metadata: {} } }];
    const owner = await t.patch('a-member', id, add);
    assert.equal(owner.statusCode, 403, owner.body);
    assert.equal(owner.json().error.error_code, 'locations_hidden');
    assert.equal((await t.patch('b-member', id, add)).statusCode, 404);
    assert.equal((await t.call('a-member', 'GET', `/v2/images/${id}`)).json().status, 'queued', 'nothing registered');
    assert.equal((await t.call('a-member', 'POST', `/v2/images/${id}/locations`, { url: 'https://registered.invalid/disk.raw' })).statusCode, 202);
  });
});

/**
 * The same matrix through galleries (README "Gallery sharing"): a private image of A's in a
 * gallery of A's (private, shared with B pending, accepted, or shared with B but then made
 * private), or in a gallery below it. B sees what a member of each image would see, read-only;
 * without a live membership B learns nothing (404).
 */
type GalleryKind = 'no-members' | 'b-pending' | 'b-accepted' | 'b-suspended';
const GALLERY_KINDS: GalleryKind[] = ['no-members', 'b-pending', 'b-accepted', 'b-suspended'];
const bInGallery = (kind: GalleryKind) => kind === 'b-pending' || kind === 'b-accepted';
const seesViaGallery = (k: Token, kind: GalleryKind) => reads(k) && (isAdmin(k) || ofA(k) || bInGallery(kind));

interface GalleryCell { top: string; below: string; image: string; deep: string; word: string }
interface GalleryEndpoint { name: string; mutates?: boolean; run(t: TestApp, k: Token, c: GalleryCell): Promise<number>; expect(k: Token, kind: GalleryKind): number }

const inList = async (t: TestApp, k: Token, query: string, id: string) => {
  const res = await t.call(k, 'GET', `/v2/images?limit=1000${query}`);
  return res.statusCode === 200 ? (res.json().images.some((i: { id: string }) => i.id === id) ? 1 : 0) : res.statusCode;
};
/** A gallery the caller's project sees refuses a caller without the reader role (403); one it does not see is 404 to all. */
const ofGallery = (k: Token, kind: GalleryKind, answer: number) => (!(isAdmin(k) || ofA(k) || bInGallery(kind)) ? 404 : !reads(k) ? 403 : answer);
const galleryWrite = (k: Token, kind: GalleryKind, ok: number) => (!seesViaGallery(k, kind) ? 404 : isAdmin(k) || (ofA(k) && isMember(k)) ? ok : 403);

const GALLERY_ENDPOINTS: GalleryEndpoint[] = [
  { name: 'GET gallery', run: async (t, k, c) => (await t.call(k, 'GET', `/v2/galleries/${c.top}`)).statusCode, expect: (k, kind) => ofGallery(k, kind, (seesViaGallery(k, kind) ? 200 : 404)) },
  { name: 'GET gallery below it', run: async (t, k, c) => (await t.call(k, 'GET', `/v2/galleries/${c.below}?recursive=true`)).statusCode, expect: (k, kind) => ofGallery(k, kind, (seesViaGallery(k, kind) ? 200 : 404)) },
  { name: 'GET gallery sub-galleries', run: async (t, k, c) => (await t.call(k, 'GET', `/v2/galleries/${c.top}/galleries`)).statusCode, expect: (k, kind) => ofGallery(k, kind, (seesViaGallery(k, kind) ? 200 : 404)) },
  { name: 'GET gallery members', run: async (t, k, c) => (await t.call(k, 'GET', `/v2/galleries/${c.top}/members`)).statusCode, expect: (k, kind) => ofGallery(k, kind, (seesViaGallery(k, kind) ? 200 : 404)) },
  { name: 'GET image in it', run: async (t, k, c) => (await t.call(k, 'GET', `/v2/images/${c.image}`)).statusCode, expect: (k, kind) => (seesViaGallery(k, kind) ? 200 : 404) },
  { name: 'GET image below it', run: async (t, k, c) => (await t.call(k, 'GET', `/v2/images/${c.deep}`)).statusCode, expect: (k, kind) => (seesViaGallery(k, kind) ? 200 : 404) },
  { name: 'GET image file', run: async (t, k, c) => (await t.call(k, 'GET', `/v2/images/${c.image}/file`)).statusCode, expect: (k, kind) => (!seesViaGallery(k, kind) ? 404 : isMember(k) ? 200 : 403) },
  { name: 'GET image revisions', run: async (t, k, c) => (await t.call(k, 'GET', `/v2/images/${c.image}/revisions`)).statusCode, expect: (k, kind) => (!seesViaGallery(k, kind) ? 404 : ofA(k) || isAdmin(k) ? 200 : 403) },
  { name: 'GET image list (default)', run: (t, k, c) => inList(t, k, '', c.deep), expect: (k, kind) => (!reads(k) ? 403 : isAdmin(k) || ofA(k) || kind === 'b-accepted' ? 1 : 0) },
  { name: 'GET image list (member_status=all&visibility=all)', run: (t, k, c) => inList(t, k, '&member_status=all&visibility=all', c.image), expect: (k, kind) => (!reads(k) ? 403 : seesViaGallery(k, kind) ? 1 : 0) },
  { name: 'GET image list (?q=…)', run: (t, k, c) => inList(t, k, `&q=${c.word}&member_status=all`, c.image), expect: (k, kind) => (!reads(k) ? 403 : seesViaGallery(k, kind) ? 1 : 0) },
  { name: 'GET image list (?gallery=…&recursive=true)', run: (t, k, c) => inList(t, k, `&gallery=${c.top}&recursive=true&member_status=all`, c.deep), expect: (k, kind) => (!reads(k) ? 403 : seesViaGallery(k, kind) ? 1 : 404) },
  { name: 'PATCH image in it', mutates: true, run: async (t, k, c) => (await t.patch(k, c.image, [{ op: 'replace', path: '/name', value: 'changed' }])).statusCode, expect: (k, kind) => galleryWrite(k, kind, 200) },
  { name: 'PATCH gallery', mutates: true, run: async (t, k, c) => (await t.call(k, 'PATCH', `/v2/galleries/${c.below}`, { name: 'renamed' })).statusCode, expect: (k, kind) => ofGallery(k, kind, galleryWrite(k, kind, 200)) },
  { name: 'POST gallery member', mutates: true, run: async (t, k, c) => (await t.call(k, 'POST', `/v2/galleries/${c.top}/members`, { member: 'Z' })).statusCode, expect: (k, kind) => ofGallery(k, kind, (kind === 'b-suspended' && (isAdmin(k) || (ofA(k) && isMember(k))) ? 403 : galleryWrite(k, kind, 200))) },
];

describe('cross-tenant matrix through gallery sharing', () => {
  let t: TestApp;
  const cells = new Map<GalleryKind, GalleryCell>();
  before(async () => { t = await testApp(); });
  after(async () => { await t.close(); });

  async function cell(kind: GalleryKind): Promise<GalleryCell> {
    const name = `g-${kind}-${++serial}`;
    const top = (await t.call('a-member', 'POST', '/v2/galleries', { name })).json().id as string;
    const below = (await t.call('a-member', 'POST', '/v2/galleries', { name: 'below', parent_id: top })).json().id as string;
    const word = `gword${String(serial).padStart(6, '0')}x`;
    const image = await t.create('a-member', { visibility: 'private', name: `gallery image ${word}` });
    await t.activate('admin', image);
    const deep = await t.create('a-member', { visibility: 'private', name: 'deep image' });
    assert.equal((await t.patch('a-member', image, [{ op: 'add', path: '/pir_gallery_id', value: top }])).statusCode, 200);
    assert.equal((await t.patch('a-member', deep, [{ op: 'add', path: '/pir_gallery_id', value: below }])).statusCode, 200);
    if (kind !== 'no-members') assert.equal((await t.call('a-member', 'POST', `/v2/galleries/${top}/members`, { member: 'B' })).statusCode, 200);
    if (kind === 'b-accepted' || kind === 'b-suspended') assert.equal((await t.call('b-member', 'PUT', `/v2/galleries/${top}/members/B`, { status: 'accepted' })).statusCode, 200);
    if (kind === 'b-suspended') assert.equal((await t.call('a-member', 'PATCH', `/v2/galleries/${top}`, { visibility: 'private' })).statusCode, 200);
    return { top, below, image, deep, word };
  }

  for (const endpoint of GALLERY_ENDPOINTS) {
    it(endpoint.name, async () => {
      const failures: string[] = [];
      for (const kind of GALLERY_KINDS) {
        for (const token of TOKENS) {
          let c: GalleryCell;
          if (endpoint.mutates) c = await cell(kind);
          else {
            if (!cells.has(kind)) cells.set(kind, await cell(kind));
            c = cells.get(kind)!;
          }
          const got = await endpoint.run(t, token, c);
          const want = endpoint.expect(token, kind);
          if (got !== want) failures.push(`${token} on ${kind}: got ${got}, want ${want}`);
        }
      }
      assert.deepEqual(failures, []);
    });
  }
});

/**
 * The same matrix for the metadata definitions API (/v2/metadefs, README "Metadata
 * definitions"): a namespace project A owns, private or public, holding one of everything.
 * Glance's defaults: a public namespace is read by all, a private one by A's readers; every
 * change is for administrators; what a caller may not read answers 404.
 */
type NsKind = 'private' | 'public';
const NS_KINDS: NsKind[] = ['private', 'public'];
const seesNs = (k: Token, kind: NsKind) => reads(k) && (isAdmin(k) || ofA(k) || kind === 'public');
const nsWrite = (k: Token, kind: NsKind, ok: number) => (!seesNs(k, kind) ? 404 : isAdmin(k) ? ok : 403);
interface NsEndpoint { name: string; mutates?: boolean; run(t: TestApp, k: Token, ns: string): Promise<number>; expect(k: Token, kind: NsKind): number }
const mdUrl = (ns: string, rest = '') => `/v2/metadefs/namespaces/${encodeURIComponent(ns)}${rest}`;
const PROP = { name: 'p2', title: 'P2', type: 'string' };

const NS_ENDPOINTS: NsEndpoint[] = [
  { name: 'GET namespace', run: async (t, k, ns) => (await t.call(k, 'GET', mdUrl(ns))).statusCode, expect: (k, kind) => (seesNs(k, kind) ? 200 : 404) },
  { name: 'GET namespace list', run: async (t, k, ns) => { const r = await t.call(k, 'GET', '/v2/metadefs/namespaces?limit=1000'); return r.statusCode === 200 ? (r.json().namespaces.some((n: { namespace: string }) => n.namespace === ns) ? 1 : 0) : r.statusCode; }, expect: (k, kind) => (!reads(k) ? 403 : seesNs(k, kind) ? 1 : 0) },
  { name: 'GET resource type associations', run: async (t, k, ns) => (await t.call(k, 'GET', mdUrl(ns, '/resource_types'))).statusCode, expect: (k, kind) => (seesNs(k, kind) ? 200 : 404) },
  { name: 'GET properties', run: async (t, k, ns) => (await t.call(k, 'GET', mdUrl(ns, '/properties'))).statusCode, expect: (k, kind) => (seesNs(k, kind) ? 200 : 404) },
  { name: 'GET property', run: async (t, k, ns) => (await t.call(k, 'GET', mdUrl(ns, '/properties/p1'))).statusCode, expect: (k, kind) => (seesNs(k, kind) ? 200 : 404) },
  { name: 'GET objects', run: async (t, k, ns) => (await t.call(k, 'GET', mdUrl(ns, '/objects'))).statusCode, expect: (k, kind) => (seesNs(k, kind) ? 200 : 404) },
  { name: 'GET object', run: async (t, k, ns) => (await t.call(k, 'GET', mdUrl(ns, '/objects/o1'))).statusCode, expect: (k, kind) => (seesNs(k, kind) ? 200 : 404) },
  { name: 'GET tags', run: async (t, k, ns) => (await t.call(k, 'GET', mdUrl(ns, '/tags'))).statusCode, expect: (k, kind) => (seesNs(k, kind) ? 200 : 404) },
  { name: 'GET tag', run: async (t, k, ns) => (await t.call(k, 'GET', mdUrl(ns, '/tags/t1'))).statusCode, expect: (k, kind) => (seesNs(k, kind) ? 200 : 404) },
  { name: 'PUT namespace', mutates: true, run: async (t, k, ns) => (await t.call(k, 'PUT', mdUrl(ns), { namespace: ns, owner: 'A', visibility: 'private' })).statusCode, expect: (k, kind) => nsWrite(k, kind, 200) },
  { name: 'DELETE namespace', mutates: true, run: async (t, k, ns) => (await t.call(k, 'DELETE', mdUrl(ns))).statusCode, expect: (k, kind) => nsWrite(k, kind, 204) },
  { name: 'POST resource type association', mutates: true, run: async (t, k, ns) => (await t.call(k, 'POST', mdUrl(ns, '/resource_types'), { name: 'OS::Cinder::Volume' })).statusCode, expect: (k, kind) => nsWrite(k, kind, 201) },
  { name: 'DELETE resource type association', mutates: true, run: async (t, k, ns) => (await t.call(k, 'DELETE', mdUrl(ns, '/resource_types/OS::Glance::Image'))).statusCode, expect: (k, kind) => nsWrite(k, kind, 204) },
  { name: 'POST property', mutates: true, run: async (t, k, ns) => (await t.call(k, 'POST', mdUrl(ns, '/properties'), PROP)).statusCode, expect: (k, kind) => nsWrite(k, kind, 201) },
  { name: 'PUT property', mutates: true, run: async (t, k, ns) => (await t.call(k, 'PUT', mdUrl(ns, '/properties/p1'), { ...PROP, name: 'p1' })).statusCode, expect: (k, kind) => nsWrite(k, kind, 200) },
  { name: 'DELETE property', mutates: true, run: async (t, k, ns) => (await t.call(k, 'DELETE', mdUrl(ns, '/properties/p1'))).statusCode, expect: (k, kind) => nsWrite(k, kind, 204) },
  { name: 'DELETE all properties', mutates: true, run: async (t, k, ns) => (await t.call(k, 'DELETE', mdUrl(ns, '/properties'))).statusCode, expect: (k, kind) => nsWrite(k, kind, 204) },
  { name: 'POST object', mutates: true, run: async (t, k, ns) => (await t.call(k, 'POST', mdUrl(ns, '/objects'), { name: 'o2' })).statusCode, expect: (k, kind) => nsWrite(k, kind, 201) },
  { name: 'PUT object', mutates: true, run: async (t, k, ns) => (await t.call(k, 'PUT', mdUrl(ns, '/objects/o1'), { name: 'o1', description: 'x' })).statusCode, expect: (k, kind) => nsWrite(k, kind, 200) },
  { name: 'DELETE object', mutates: true, run: async (t, k, ns) => (await t.call(k, 'DELETE', mdUrl(ns, '/objects/o1'))).statusCode, expect: (k, kind) => nsWrite(k, kind, 204) },
  { name: 'DELETE all objects', mutates: true, run: async (t, k, ns) => (await t.call(k, 'DELETE', mdUrl(ns, '/objects'))).statusCode, expect: (k, kind) => nsWrite(k, kind, 204) },
  { name: 'POST tag', mutates: true, run: async (t, k, ns) => (await t.call(k, 'POST', mdUrl(ns, '/tags/t2'))).statusCode, expect: (k, kind) => nsWrite(k, kind, 201) },
  { name: 'POST tags', mutates: true, run: async (t, k, ns) => (await t.call(k, 'POST', mdUrl(ns, '/tags'), { tags: [{ name: 't3' }] })).statusCode, expect: (k, kind) => nsWrite(k, kind, 201) },
  { name: 'PUT tag', mutates: true, run: async (t, k, ns) => (await t.call(k, 'PUT', mdUrl(ns, '/tags/t1'), { name: 't9' })).statusCode, expect: (k, kind) => nsWrite(k, kind, 200) },
  { name: 'DELETE tag', mutates: true, run: async (t, k, ns) => (await t.call(k, 'DELETE', mdUrl(ns, '/tags/t1'))).statusCode, expect: (k, kind) => nsWrite(k, kind, 204) },
  { name: 'DELETE all tags', mutates: true, run: async (t, k, ns) => (await t.call(k, 'DELETE', mdUrl(ns, '/tags'))).statusCode, expect: (k, kind) => nsWrite(k, kind, 204) },
];

describe('cross-tenant matrix of the metadata definitions API', () => {
  let t: TestApp;
  const shared = new Map<NsKind, string>();
  let n = 0;
  before(async () => { t = await testApp(); });
  after(async () => { await t.close(); });

  async function namespace(kind: NsKind): Promise<string> {
    const name = `PIR::Matrix::${kind}${++n}`;
    const res = await t.call('admin', 'POST', '/v2/metadefs/namespaces', {
      namespace: name, owner: 'A', visibility: kind,
      resource_type_associations: [{ name: 'OS::Glance::Image', prefix: 'm_' }],
      properties: { p1: { title: 'P1', type: 'string' } }, objects: [{ name: 'o1' }], tags: [{ name: 't1' }],
    });
    assert.equal(res.statusCode, 201, res.body);
    return name;
  }

  for (const endpoint of NS_ENDPOINTS) {
    it(endpoint.name, async () => {
      const failures: string[] = [];
      for (const kind of NS_KINDS) {
        for (const token of TOKENS) {
          let ns = shared.get(kind);
          if (endpoint.mutates || !ns) {
            ns = await namespace(kind);
            if (!endpoint.mutates) shared.set(kind, ns);
          }
          const got = await endpoint.run(t, token, ns);
          const want = endpoint.expect(token, kind);
          if (got !== want) failures.push(`${token} on ${kind}: got ${got}, want ${want}`);
        }
      }
      assert.deepEqual(failures, []);
    });
  }

  it('lets administrators alone create namespaces; lets every reader list resource types', async () => {
    for (const token of TOKENS) {
      const res = await t.call(token, 'POST', '/v2/metadefs/namespaces', { namespace: `PIR::Create::${token}` });
      assert.equal(res.statusCode, isAdmin(token) ? 201 : 403, `${token}: ${res.body}`);
      assert.equal((await t.call(token, 'GET', '/v2/metadefs/resource_types')).statusCode, reads(token) ? 200 : 403, token);
    }
  });
});
