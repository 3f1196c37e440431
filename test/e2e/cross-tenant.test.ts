/**
 * The cross-tenant matrix over HTTP against a real `pir serve` with a tokens file: projects A and
 * B (a member and a reader each) and an admin. Project A owns one image of every kind of
 * visibility; for every endpoint and caller the table says what Glance answers, and each row
 * checks every image. Glance's rules (glance/policies/*.py, glance/api/v2/policy.py):
 *   - an image the caller may not see is a 404, never a 403 (ImageAPIPolicy._enforce);
 *   - a visible image the caller may not change is a 403 (modify/delete/upload: owner's members);
 *   - shared images are seen by their members whatever their member_status, but listed by
 *     default only once accepted; community images are seen by all, listed only on request;
 *   - download needs the member role (readers may not), tasks API access needs admin,
 *     publicize_image needs admin, member_status is set only by the member.
 * To cover a new endpoint, add it to OPS and give its expectations in ROWS.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { identitiesAccepted, makeIdentities, makeRawImage, startTenantPir, type Identities, type TenantPir } from '../support/clients.js';
import { makeTempDir, removeDir } from '../support/images.js';
import { PirClient } from '../support/pir-client.js';
import { testLogDir } from '../support/pir-process.js';
import { openEventStream, type StreamMessage } from '../support/event-stream.js';
import { inCI, serviceUp } from '../support/services.js';

type Who = keyof Identities;
const FIXTURES = ['priv', 'sharedAccepted', 'sharedPending', 'sharedOther', 'public', 'community'] as const;
type Fixture = (typeof FIXTURES)[number];
type Expect = Partial<Record<Fixture, number>>;

const JSON_PATCH = 'application/openstack-images-v2.1-json-patch';
const FIXTURE_TIMEOUT_MS = 90_000;
const FIXTURE_TAG = 'fixture';
/** Image data for the upload and stage attempts (a string: fetch's body types take it as is). */
const PAYLOAD = randomBytes(2048).toString('hex');

/** What a request sends; `member` is the B project id (the one image member there is). */
interface Op {
  method: string;
  path: (id: string, ctx: { member: string }) => string;
  body?: (ctx: { member: string; stranger: string }) => unknown;
  contentType?: string;
  headers?: Record<string, string>;
}

const OPS = {
  show: { method: 'GET', path: (id) => `/v2/images/${id}` },
  download: { method: 'GET', path: (id) => `/v2/images/${id}/file` },
  image_tasks: { method: 'GET', path: (id) => `/v2/images/${id}/tasks` },
  members_list: { method: 'GET', path: (id) => `/v2/images/${id}/members` },
  member_show: { method: 'GET', path: (id, c) => `/v2/images/${id}/members/${c.member}` },
  member_accept: { method: 'PUT', path: (id, c) => `/v2/images/${id}/members/${c.member}`, body: () => ({ status: 'accepted' }) },
  member_reject: { method: 'PUT', path: (id, c) => `/v2/images/${id}/members/${c.member}`, body: () => ({ status: 'rejected' }) },
  member_add: { method: 'POST', path: (id) => `/v2/images/${id}/members`, body: (c) => ({ member: c.stranger }) },
  patch: { method: 'PATCH', path: (id) => `/v2/images/${id}`, contentType: JSON_PATCH, body: () => [{ op: 'add', path: '/xtenant', value: 'changed' }] },
  patch_public: { method: 'PATCH', path: (id) => `/v2/images/${id}`, contentType: JSON_PATCH, body: () => [{ op: 'replace', path: '/visibility', value: 'public' }] },
  tag_add: { method: 'PUT', path: (id) => `/v2/images/${id}/tags/xtenant` },
  tag_delete: { method: 'DELETE', path: (id) => `/v2/images/${id}/tags/${FIXTURE_TAG}` },
  upload: { method: 'PUT', path: (id) => `/v2/images/${id}/file`, contentType: 'application/octet-stream', body: () => PAYLOAD },
  stage: { method: 'PUT', path: (id) => `/v2/images/${id}/stage`, contentType: 'application/octet-stream', body: () => PAYLOAD },
  import: { method: 'POST', path: (id) => `/v2/images/${id}/import`, body: () => ({ method: { name: 'glance-direct' } }) },
  deactivate: { method: 'POST', path: (id) => `/v2/images/${id}/actions/deactivate` },
  reactivate: { method: 'POST', path: (id) => `/v2/images/${id}/actions/reactivate` },
  member_delete: { method: 'DELETE', path: (id, c) => `/v2/images/${id}/members/${c.member}` },
  share_create: { method: 'POST', path: (id) => `/v2/images/${id}/share-links`, body: () => ({ expires_in: 60 }) },
  share_list: { method: 'GET', path: (id) => `/v2/images/${id}/share-links` },
  share_revoke: { method: 'DELETE', path: (id) => `/v2/images/${id}/share-links/00000000-0000-4000-8000-000000000000` },
  tus_create: { method: 'POST', path: (id) => `/v2/images/${id}/uploads`, headers: { 'tus-resumable': '1.0.0', 'upload-length': '2048' } },
  // The catalog extension: metafiles follow the image's visibility, revisions are the owner project's.
  revisions: { method: 'GET', path: (id) => `/v2/images/${id}/revisions` },
  revision_1: { method: 'GET', path: (id) => `/v2/images/${id}/revisions/1` },
  restore_1: { method: 'POST', path: (id) => `/v2/images/${id}/revisions/1/restore` },
  metafile: { method: 'GET', path: (id) => `/v2/images/${id}/metafile` },
  delete: { method: 'DELETE', path: (id) => `/v2/images/${id}` },
  // Multi-store (the matrix runs with two filesystem stores, main and second).
  copy_image: { method: 'POST', path: (id) => `/v2/images/${id}/import`, body: () => ({ method: { name: 'copy-image' }, stores: ['second'] }) },
  store_delete: { method: 'DELETE', path: (id) => `/v2/stores/main/${id}` },
  // A lenient multi-store import (active after its first store, the rest copied by jobs) and a strict copy-image (reverted on failure).
  import_lenient: { method: 'POST', path: (id) => `/v2/images/${id}/import`, body: () => ({ method: { name: 'glance-direct' }, stores: ['main', 'second'], all_stores_must_succeed: false }) },
  copy_image_strict: { method: 'POST', path: (id) => `/v2/images/${id}/import`, body: () => ({ method: { name: 'copy-image' }, stores: ['second'], all_stores_must_succeed: true }) },
} satisfies Record<string, Op>;

/** B (a member of project B) reading A's images: only what B may see. */
const READ_B: Expect = { priv: 404, sharedAccepted: 200, sharedPending: 200, sharedOther: 404, public: 200, community: 200 };
/** B changing A's images: 404 where B cannot see the image, 403 where it can. */
const WRITE_B: Expect = { priv: 404, sharedAccepted: 403, sharedPending: 403, sharedOther: 404, public: 403, community: 403 };
const every = (status: number): Expect => Object.fromEntries(FIXTURES.map((f) => [f, status]));

/** [operation, caller, expected status per image]. Destructive operations come last. */
const ROWS: [keyof typeof OPS, Who, Expect][] = [
  ['show', 'B', READ_B],
  ['show', 'Br', READ_B],
  ['show', 'Ar', every(200)],
  ['download', 'B', READ_B],
  // Glance's download_image needs the member role: readers see images but may not download them.
  ['download', 'Br', { ...WRITE_B }],
  ['download', 'Ar', every(403)],
  ['image_tasks', 'B', READ_B],
  ['image_tasks', 'Ar', every(200)],
  // Only shared images have members; a member sees the list (its own membership).
  ['members_list', 'B', { priv: 404, sharedAccepted: 200, sharedPending: 200, sharedOther: 404, public: 403, community: 403 }],
  ['members_list', 'Br', { priv: 404, sharedAccepted: 200, sharedPending: 200, sharedOther: 404 }],
  ['member_show', 'B', { priv: 404, sharedAccepted: 200, sharedPending: 200, sharedOther: 404, public: 404, community: 404 }], // not shared: 404, as Glance
  // member_status is the member's to set (accepting again changes nothing) …
  ['member_accept', 'B', { priv: 404, sharedAccepted: 200, sharedOther: 404 }],
  // … and not the owner's, nor a reader's of the member project.
  ['member_accept', 'A', { sharedPending: 403 }],
  ['member_reject', 'Br', { sharedAccepted: 403, sharedPending: 403 }],
  ['member_add', 'B', WRITE_B],
  ['member_add', 'Br', WRITE_B],
  ['member_add', 'Ar', { sharedAccepted: 403, sharedPending: 403, sharedOther: 403 }],
  ['patch', 'B', WRITE_B],
  ['patch', 'Br', WRITE_B],
  ['patch', 'Ar', every(403)],
  // publicize_image is admin-only, for the owner too.
  ['patch_public', 'A', { priv: 403, sharedOther: 403, community: 403 }],
  ['patch_public', 'B', WRITE_B],
  ['tag_add', 'B', WRITE_B],
  ['tag_add', 'Ar', every(403)],
  ['tag_delete', 'B', WRITE_B],
  ['tag_delete', 'Ar', every(403)],
  ['upload', 'B', WRITE_B],
  ['upload', 'Ar', every(403)],
  ['stage', 'B', WRITE_B],
  ['stage', 'Ar', every(403)],
  ['import', 'B', WRITE_B],
  ['import', 'Ar', every(403)],
  ['import_lenient', 'B', WRITE_B],
  ['import_lenient', 'Ar', every(403)],
  // Share links are the owner's: other tenants can neither create, list nor revoke them.
  ['share_create', 'B', WRITE_B],
  ['share_create', 'Br', WRITE_B],
  ['share_create', 'Ar', every(403)],
  ['share_list', 'B', WRITE_B],
  ['share_list', 'Br', WRITE_B],
  ['share_revoke', 'B', WRITE_B],
  ['share_revoke', 'Ar', every(403)],
  // A resumable upload is an upload: the same rules as PUT …/file.
  ['tus_create', 'B', WRITE_B],
  ['tus_create', 'Ar', every(403)],
  ['deactivate', 'B', WRITE_B],
  ['deactivate', 'Br', WRITE_B],
  ['deactivate', 'Ar', every(403)],
  ['reactivate', 'B', WRITE_B],
  ['reactivate', 'Ar', every(403)],
  // Only the owner (or admin) removes a member; the member cannot remove itself.
  // An image's history (past members, removed values) is its owner project's: 403 where B sees the image.
  ['revisions', 'B', WRITE_B],
  ['revisions', 'Br', WRITE_B],
  ['revisions', 'Ar', every(200)],
  ['revision_1', 'B', WRITE_B],
  ['metafile', 'B', READ_B],
  ['metafile', 'Ar', every(200)],
  ['restore_1', 'B', WRITE_B],
  ['restore_1', 'Ar', every(403)],
  // copy-image and deleting from a store are admin-only (Glance's copy_image, delete_image_location): the owner gets 403 too.
  ['copy_image', 'B', WRITE_B],
  ['copy_image', 'A', every(403)],
  ['copy_image', 'Ar', every(403)],
  ['copy_image_strict', 'B', WRITE_B],
  ['copy_image_strict', 'Ar', every(403)],
  ['store_delete', 'B', WRITE_B],
  ['store_delete', 'A', every(403)],
  ['store_delete', 'Ar', every(403)],
  ['member_delete', 'B', { priv: 404, sharedAccepted: 403, sharedPending: 403, sharedOther: 404 }],
  ['member_delete', 'Ar', { sharedAccepted: 403, sharedPending: 403 }],
  ['delete', 'B', WRITE_B],
  ['delete', 'Br', WRITE_B],
  ['delete', 'Ar', every(403)],
];

/** [caller, query, images that must be listed, images that must not]. */
const LISTS: [Who, string, Fixture[], Fixture[]][] = [
  ['B', '', ['sharedAccepted', 'public'], ['priv', 'sharedPending', 'sharedOther', 'community']],
  ['Br', '', ['sharedAccepted', 'public'], ['priv', 'sharedPending', 'sharedOther', 'community']],
  ['B', 'visibility=community', ['community'], ['priv', 'public', 'sharedAccepted', 'sharedPending', 'sharedOther']],
  ['B', 'visibility=shared', ['sharedAccepted'], ['priv', 'public', 'sharedPending', 'sharedOther', 'community']],
  ['B', 'visibility=shared&member_status=pending', ['sharedPending'], ['sharedAccepted', 'sharedOther', 'priv']],
  ['B', 'visibility=shared&member_status=all', ['sharedAccepted', 'sharedPending'], ['sharedOther', 'priv']],
  ['B', 'visibility=private', [], [...FIXTURES]],
  ['B', 'visibility=public', ['public'], ['priv', 'sharedAccepted', 'community']],
  ['B', 'visibility=all', ['sharedAccepted', 'public', 'community'], ['priv', 'sharedPending', 'sharedOther']],
  ['A', '', ['priv', 'sharedAccepted', 'sharedPending', 'sharedOther', 'public', 'community'], []],
  ['Ar', '', ['priv', 'sharedAccepted', 'sharedPending', 'sharedOther', 'public', 'community'], []],
  ['admin', '', ['priv', 'sharedOther', 'public'], []],
  // Keyword search (the fixtures' tag is a word of theirs) never finds more than the list shows.
  ['B', `q=${FIXTURE_TAG}`, ['sharedAccepted', 'public'], ['priv', 'sharedPending', 'sharedOther', 'community']],
  ['B', `q=${FIXTURE_TAG.slice(0, 4)}&visibility=all&member_status=all&sort=relevance`, ['sharedAccepted', 'sharedPending', 'public', 'community'], ['priv', 'sharedOther']],
  ['Br', `q=${FIXTURE_TAG}&visibility=private`, [], [...FIXTURES]],
  ['A', `q=${FIXTURE_TAG}`, ['priv', 'sharedAccepted', 'sharedPending', 'sharedOther', 'public', 'community'], []],
];

// Visibility is decided in the stores' queries too: the matrix runs on both (embedded: SQLite;
// distributed: MongoDB wire on FerretDB, with Kafka and Redis).
const needed = ['redis', 'kafka', 'mongodb'] as const;
const missing = (await Promise.all(needed.map(async (name) => ({ name, ...(await serviceUp(name)) })))).filter((s) => !s.up);
const missingText = missing.map((s) => `${s.name} (${s.where})`).join(', ');
if (missing.length && !inCI) console.log(`# cross-tenant e2e (distributed) skipped: not running: ${missingText}; start them with bash infra/local/services.sh start`);

for (const mode of ['embedded', 'distributed'] as const) {
  describe(`cross-tenant matrix (${mode}): project B against project A's images, readers against writes`, {
    skip: mode === 'distributed' && missing.length && !inCI ? `not running: ${missingText}` : false,
  }, () => {
    let dir: string | undefined;
    let tenant: TenantPir | undefined;
    let ids: Identities;
    let refused: string[] = [];
    const images = new Map<Fixture | 'deact', string>();
    const setupErrors = new Map<Fixture | 'deact', string>();
    let taskId: string | undefined;
    const as = (who: Who) => new PirClient(tenant!.url, ids[who].token);
    const stranger = randomUUID().replace(/-/g, '');
    const logDir = testLogDir(`cross-tenant-${mode}`);

    /** Runs one setup call and names the fixture it was for when it fails. */
    async function expectStatus(what: string, response: { status: number; body: unknown }, status: number): Promise<void> {
      if (response.status !== status) throw new Error(`${what}: expected ${status}, got ${response.status} ${JSON.stringify(response.body).slice(0, 300)}`);
    }

    /** Builds one image; a pipeline that never settles fails the fixture (and the ones after it) instead of hanging. */
    let setupStuck = false;
    async function fixture(key: Fixture | 'deact', build: () => Promise<string>): Promise<void> {
      if (setupStuck) {
        setupErrors.set(key, 'not attempted: an earlier image never settled');
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          setupStuck = true;
          reject(new Error(`not active after ${FIXTURE_TIMEOUT_MS / 1000} s (see the pir logs under ${logDir})`));
        }, FIXTURE_TIMEOUT_MS);
      });
      try {
        images.set(key, await Promise.race([build(), timeout]));
      } catch (error) {
        setupErrors.set(key, (error as Error).message);
      } finally {
        clearTimeout(timer);
      }
    }

    /** A creates an image with the given visibility and uploads data: active, owned by A. */
    async function activeImage(visibility: string, file: string): Promise<string> {
      const created = await as('A').call('POST', '/v2/images', { name: `xt-${visibility}`, disk_format: 'raw', container_format: 'bare', visibility, tags: [FIXTURE_TAG] });
      await expectStatus(`A creates a ${visibility} image`, created, 201);
      const id = created.body.id as string;
      await expectStatus('A uploads its data', await as('A').putData(id, file), 204);
      const shown = await as('A').getImage(id);
      if (shown.body?.status !== 'active') throw new Error(`uploaded image is ${shown.body?.status}, not active`);
      return id;
    }

    async function addMember(id: string, accept: boolean): Promise<void> {
      await expectStatus('A adds B as a member', await as('A').call('POST', `/v2/images/${id}/members`, { member: ids.B.project_id }), 200);
      if (accept) await expectStatus('B accepts', await as('B').call('PUT', `/v2/images/${id}/members/${ids.B.project_id}`, { status: 'accepted' }), 200);
    }

    before(async () => {
      if (mode === 'distributed' && missing.length) throw new Error(`CI is set but these services are not running: ${missingText}. Start them with bash infra/local/services.sh start`);
      dir = await makeTempDir('pir-e2e-xtenant-');
      ids = makeIdentities();
      tenant = await startTenantPir(dir, ids, logDir, mode, { PIR_STORES: `main=fs:${join(dir, 'main')},second=fs:${join(dir, 'second')}` });
      refused = await identitiesAccepted(tenant.url, ids);
      const file = join(dir, 'disk.raw');
      await makeRawImage(file, 256 << 10);
      await fixture('priv', () => activeImage('private', file));
      await fixture('sharedAccepted', async () => { const id = await activeImage('shared', file); await addMember(id, true); return id; });
      await fixture('sharedPending', async () => { const id = await activeImage('shared', file); await addMember(id, false); return id; });
      await fixture('sharedOther', () => activeImage('shared', file));
      await fixture('community', () => activeImage('community', file));
      await fixture('deact', () => activeImage('private', file));
      // The public image arrives by glance-direct import (so it has a task), then the admin publishes it.
      await fixture('public', async () => {
        const created = await as('A').call('POST', '/v2/images', { name: 'xt-public', disk_format: 'raw', container_format: 'bare', tags: [FIXTURE_TAG] });
        await expectStatus('A creates an image', created, 201);
        const id = created.body.id as string;
        await expectStatus('A stages data', await as('A').putData(id, file, 'stage'), 204);
        await expectStatus('A imports (glance-direct)', await as('A').call('POST', `/v2/images/${id}/import`, { method: { name: 'glance-direct' } }), 202);
        const settled = await as('A').waitSettled(id, 60_000);
        if (settled.status !== 'active') throw new Error(`imported image is ${settled.status}`);
        const published = await as('admin').call('PATCH', `/v2/images/${id}`, [{ op: 'replace', path: '/visibility', value: 'public' }], { 'content-type': JSON_PATCH });
        await expectStatus('admin makes it public', published, 200);
        return id;
      });
      const tasks = images.has('public') ? await as('A').call('GET', `/v2/images/${images.get('public')}/tasks`) : undefined;
      taskId = tasks?.status === 200 ? tasks.body?.tasks?.[0]?.id : undefined;
    });
    after(async () => {
      await tenant?.stop();
      if (dir) await removeDir(dir);
    });

    it('identity: every token of PIR_TOKENS_FILE authenticates', () => {
      assert.deepEqual(refused, [], `tokens refused — PIR_TOKENS_FILE not honoured?\n${refused.join('\n')}`);
    });

    it('set-up: project A has an image of every visibility, B a member of two shared ones', () => {
      assert.deepEqual(Object.fromEntries(setupErrors), {}, 'fixtures that could not be set up');
    });

    for (const [opName, who, expect] of ROWS) {
      it(`${opName} as ${who}: ${Object.entries(expect).map(([f, s]) => `${f} ${s}`).join(', ')}`, async () => {
        const op: Op = OPS[opName];
        const mismatches: string[] = [];
        for (const [fixtureName, status] of Object.entries(expect) as [Fixture, number][]) {
          const id = images.get(fixtureName);
          if (!id) {
            mismatches.push(`${fixtureName}: not set up (${setupErrors.get(fixtureName)})`);
            continue;
          }
          const response = await send(tenant!.url, ids[who].token, op, id, { member: ids.B.project_id, stranger });
          if (response.status !== status) mismatches.push(`${fixtureName}: expected ${status}, got ${response.status} ${response.text.slice(0, 200)}`);
          else if (status === 200 && opName === 'show' && JSON.parse(response.text).id !== id) mismatches.push(`${fixtureName}: 200 with another image's body`);
        }
        assert.deepEqual(mismatches, [], `${op.method} ${op.path('{id}', { member: '{B}' })} as ${who}`);
      });
    }

    for (const [who, query, included, excluded] of LISTS) {
      it(`list as ${who}${query ? ` ?${query}` : ''}: shows ${included.join(', ') || 'none of A\'s'}; hides ${excluded.join(', ') || '—'}`, async () => {
        const response = await as(who).call('GET', `/v2/images?limit=1000${query ? `&${query}` : ''}`);
        assert.equal(response.status, 200, JSON.stringify(response.body));
        const listed = new Set<string>((response.body.images as { id: string }[]).map((image) => image.id));
        const problems: string[] = [];
        for (const f of included) if (!images.has(f)) problems.push(`${f} not set up`); else if (!listed.has(images.get(f)!)) problems.push(`${f} missing`);
        for (const f of excluded) if (images.has(f) && listed.has(images.get(f)!)) problems.push(`${f} listed but must not be`);
        assert.deepEqual(problems, [], `GET /v2/images${query ? `?${query}` : ''} as ${who}`);
      });
    }

    it('GET /v2/events: B is told of A\'s accepted shared, public and community images only; A of all its own', async () => {
      const streamA = await openEventStream(tenant!.url, ids.A.token);
      const streamB = await openEventStream(tenant!.url, ids.B.token);
      try {
        assert.equal((await streamB.hello).data.project_id, ids.B.project_id);
        await streamA.hello;
        const tag = `live-${randomBytes(4).toString('hex')}`;
        const tagged = (m: StreamMessage, id: string) => m.event === 'image.updated' && m.data?.data?.id === id && (m.data.data.tags as string[]).includes(tag);
        const problems: string[] = [];
        for (const f of FIXTURES) {
          const id = images.get(f);
          if (!id) { problems.push(`${f} not set up`); continue; }
          await expectStatus(`A tags ${f}`, await as('A').call('PUT', `/v2/images/${id}/tags/${tag}`), 204);
        }
        // A (the owner) hears of every one: once it has, B has had its chance too.
        for (const f of FIXTURES) if (images.has(f)) await streamA.waitFor((m) => tagged(m, images.get(f)!), 20_000, `A's event for ${f}`);
        await new Promise((r) => setTimeout(r, 500));
        const told = FIXTURES.filter((f) => images.has(f) && streamB.messages.some((m) => tagged(m, images.get(f)!)));
        assert.deepEqual(problems, []);
        assert.deepEqual(told.sort(), ['community', 'public', 'sharedAccepted'].sort(), 'fixtures B\'s event stream told of');
        const leaked = streamB.messages.filter((m) => m.data?.data?.owner === ids.A.project_id && !['community', 'public', 'sharedAccepted'].some((f) => images.get(f as Fixture) === m.data.data.id));
        assert.deepEqual(leaked.map((m) => `${m.event} ${m.data.data.id}`), [], 'events of A\'s images B may not be told of');
        // A takes its tag off again: the last test checks A's images are as A left them.
        for (const f of FIXTURES) if (images.has(f)) await expectStatus(`A untags ${f}`, await as('A').call('DELETE', `/v2/images/${images.get(f)}/tags/${tag}`), 204);
      } finally {
        streamA.close();
        streamB.close();
      }
    });

    it('a member sees only its own membership in the members list', async () => {
      const id = images.get('sharedAccepted');
      assert.ok(id, `sharedAccepted not set up: ${setupErrors.get('sharedAccepted')}`);
      await expectStatus('A adds a second member', await as('A').call('POST', `/v2/images/${id}/members`, { member: stranger }), 200);
      const seenByB = await as('B').call('GET', `/v2/images/${id}/members`);
      assert.equal(seenByB.status, 200);
      assert.deepEqual(seenByB.body.members.map((m: { member_id: string }) => m.member_id), [ids.B.project_id]);
      const otherShownToB = await as('B').call('GET', `/v2/images/${id}/members/${stranger}`);
      assert.equal(otherShownToB.status, 404, `B shows another project's membership: ${otherShownToB.status}`);
      const seenByA = await as('A').call('GET', `/v2/images/${id}/members`);
      assert.deepEqual(seenByA.body.members.map((m: { member_id: string }) => m.member_id).sort(), [ids.B.project_id, stranger].sort());
      await expectStatus('A removes the second member', await as('A').call('DELETE', `/v2/images/${id}/members/${stranger}`), 204);
    });

    it('readers and B cannot create images; a member cannot create a public one', async () => {
      const body = { name: 'xt-new', disk_format: 'raw', container_format: 'bare' };
      const problems: string[] = [];
      for (const [who, extra, status] of [['Ar', {}, 403], ['Br', {}, 403], ['A', { visibility: 'public' }, 403], ['A', { owner: ids.B.project_id }, 403]] as const) {
        const response = await as(who).call('POST', '/v2/images', { ...body, ...extra });
        if (response.status !== status) problems.push(`${who} POST ${JSON.stringify(extra)}: expected ${status}, got ${response.status}`);
        if (response.status === 201) await as('admin').call('DELETE', `/v2/images/${response.body.id}`);
      }
      assert.deepEqual(problems, []);
    });

    it('stores: every caller lists them; of these callers only the administrator sees their details (stores_info_detail: admins and service users)', async () => {
      const problems: string[] = [];
      for (const [who, status] of [['A', 403], ['B', 403], ['Ar', 403], ['Br', 403], ['admin', 200]] as const) {
        const listed = await as(who).call('GET', '/v2/info/stores');
        if (listed.status !== 200 || listed.body.stores.length !== 2) problems.push(`GET /v2/info/stores as ${who}: ${listed.status}`);
        const detail = await as(who).call('GET', '/v2/info/stores/detail');
        if (detail.status !== status) problems.push(`GET /v2/info/stores/detail as ${who}: expected ${status}, got ${detail.status}`);
      }
      assert.deepEqual(problems, []);
    });

    it('tasks API: admin only (tasks_api_access); task details never reach another project', async () => {
      const problems: string[] = [];
      for (const [who, status] of [['A', 403], ['B', 403], ['Ar', 403], ['admin', 200]] as const) {
        const list = await as(who).call('GET', '/v2/tasks');
        if (list.status !== status) problems.push(`GET /v2/tasks as ${who}: expected ${status}, got ${list.status}`);
        if (!taskId) continue;
        const one = await as(who).call('GET', `/v2/tasks/${taskId}`);
        if (one.status !== status) problems.push(`GET /v2/tasks/{id} as ${who}: expected ${status}, got ${one.status}`);
      }
      if (!taskId) problems.push('no import task found for the public image (GET /v2/images/{id}/tasks as the owner)');
      assert.deepEqual(problems, []);
    });

    it('deactivate/reactivate: admin only; the owner cannot download a deactivated image', async () => {
      const id = images.get('deact');
      assert.ok(id, `deact not set up: ${setupErrors.get('deact')}`);
      const url = tenant!.url;
      const problems: string[] = [];
      const check = async (what: string, who: Who, op: Op, status: number) => {
        const response = await send(url, ids[who].token, op, id, { member: ids.B.project_id, stranger });
        if (response.status !== status) problems.push(`${what}: expected ${status}, got ${response.status} ${response.text.slice(0, 200)}`);
      };
      await check('B deactivates A\'s private image', 'B', OPS.deactivate, 404);
      await check('admin deactivates', 'admin', OPS.deactivate, 204);
      const shown = await as('A').getImage(id);
      if (shown.body?.status !== 'deactivated') problems.push(`status after deactivate: ${shown.body?.status}`);
      await check('the owner downloads the deactivated image', 'A', OPS.download, 403);
      await check('B reactivates A\'s private image', 'B', OPS.reactivate, 404);
      await check('admin reactivates', 'admin', OPS.reactivate, 204);
      await check('the owner downloads again', 'A', OPS.download, 200);
      assert.deepEqual(problems, []);
    });

    it('no token: 401 everywhere, a bad token too', async () => {
      const id = images.get('priv') ?? randomUUID();
      const problems: string[] = [];
      for (const token of ['', 'not-a-token']) {
        for (const [name, op] of Object.entries(OPS)) {
          const response = await send(tenant!.url, token, op, id, { member: ids.B.project_id, stranger });
          if (response.status !== 401) problems.push(`${name} with ${token ? 'a bad' : 'no'} token: ${response.status}`);
        }
      }
      assert.deepEqual(problems, []);
    });

    it('galleries: a private gallery is A\'s alone; a shared one shows B its galleries and images read-only, as if each image were shared', async () => {
      const file = join(dir!, 'disk.raw');
      const gallery = async (name: string, parent?: string) => {
        const res = await as('A').call('POST', '/v2/galleries', { name, ...(parent ? { parent_id: parent } : {}) });
        await expectStatus(`A creates gallery ${name}`, res, 201);
        return res.body.id as string;
      };
      const place = async (image: string, g: string) => expectStatus('A places an image', await as('A').call('PATCH', `/v2/images/${image}`, [{ op: 'add', path: '/pir_gallery_id', value: g }], { 'content-type': JSON_PATCH }), 200);
      const lone = await gallery(`xt-lone-${mode}`);
      const top = await gallery(`xt-shared-${mode}`);
      const below = await gallery('below', top);
      const loneImage = await activeImage('private', file);
      const topImage = await activeImage('private', file);
      const deepImage = await activeImage('private', file);
      await place(loneImage, lone);
      await place(topImage, top);
      await place(deepImage, below);
      await expectStatus('A shares the gallery with B', await as('A').call('POST', `/v2/galleries/${top}/members`, { member: ids.B.project_id }), 200);
      await expectStatus('B accepts', await as('B').call('PUT', `/v2/galleries/${top}/members/${ids.B.project_id}`, { status: 'accepted' }), 200);

      // [method, path, body, expected status for the lone gallery's side, for the shared side], per caller.
      type Row = [string, (g: string, img: string) => string, unknown, Partial<Record<Who, [number, number]>>];
      const patchName = [{ op: 'add', path: '/xtenant', value: 'changed' }];
      const rows: Row[] = [
        ['GET', (g) => `/v2/galleries/${g}`, undefined, { B: [404, 200], Br: [404, 200], Ar: [200, 200], admin: [200, 200] }],
        ['GET', (g) => `/v2/galleries/${g}/galleries?recursive=true`, undefined, { B: [404, 200], Br: [404, 200] }],
        ['GET', (g) => `/v2/galleries/${g}/members`, undefined, { B: [404, 200], Br: [404, 200] }],
        ['GET', (_g, img) => `/v2/images/${img}`, undefined, { B: [404, 200], Br: [404, 200], Ar: [200, 200] }],
        ['GET', (_g, img) => `/v2/images/${img}/file`, undefined, { B: [404, 200], Br: [404, 403], Ar: [403, 403], A: [200, 200] }],
        ['GET', (_g, img) => `/v2/images/${img}/metafile`, undefined, { B: [404, 200], Br: [404, 200] }],
        ['PATCH', (_g, img) => `/v2/images/${img}`, patchName, { B: [404, 403], Br: [404, 403], Ar: [403, 403] }],
        ['PATCH', (g) => `/v2/galleries/${g}`, { name: 'taken-over' }, { B: [404, 403], Br: [404, 403], Ar: [403, 403] }],
        ['POST', (g) => `/v2/galleries/${g}/members`, { member: stranger }, { B: [404, 403], Br: [404, 403], Ar: [403, 403] }],
        ['DELETE', (g) => `/v2/galleries/${g}`, undefined, { B: [404, 403], Br: [404, 403] }],
      ];
      const problems: string[] = [];
      for (const [method, path, body, expect] of rows) {
        for (const [who, [onLone, onShared]] of Object.entries(expect) as [Who, [number, number]][]) {
          for (const [side, g, img, want] of [['lone', lone, loneImage, onLone], ['shared', top, topImage, onShared]] as const) {
            const res = await as(who).call(method, path(g, img), body, method === 'PATCH' && path(g, img).startsWith('/v2/images') ? { 'content-type': JSON_PATCH } : {});
            if (res.status !== want) problems.push(`${method} ${path('{g}', '{img}')} as ${who} on ${side}: expected ${want}, got ${res.status}`);
          }
        }
      }
      // Lists: B finds the shared gallery's images (and those below it), never the lone one's.
      for (const [who, query] of [['B', ''], ['B', '&visibility=all&member_status=all'], ['Br', `&gallery=${top}&recursive=true`], ['B', `&q=xt`]] as [Who, string][]) {
        const res = await as(who).call('GET', `/v2/images?limit=1000${query}`);
        const listed = new Set((res.body?.images ?? []).map((i: { id: string }) => i.id));
        if (!listed.has(topImage) || !listed.has(deepImage)) problems.push(`list ${query} as ${who}: shared gallery's images missing`);
        if (listed.has(loneImage)) problems.push(`list ${query} as ${who}: lone gallery's image listed`);
      }
      const probe = await as('B').call('GET', `/v2/images?gallery=${lone}`);
      if (probe.status !== 404) problems.push(`?gallery=<lone> as B: ${probe.status}`);
      // GET /v2/events follows the sharing: B is told of the shared gallery's images, not the lone one's.
      const streamA = await openEventStream(tenant!.url, ids.A.token);
      const streamB = await openEventStream(tenant!.url, ids.B.token);
      /** A tags the three images; which of them B's stream carried (once A's has carried all three). */
      const toldB = async (step: string) => {
        const tag = `${step}-${randomBytes(4).toString('hex')}`;
        const tagged = (m: StreamMessage, id: string) => m.event === 'image.updated' && m.data?.data?.id === id && (m.data.data.tags as string[]).includes(tag);
        const named: [string, string][] = [['lone', loneImage], ['top', topImage], ['deep', deepImage]];
        for (const [, id] of named) await expectStatus(`A tags an image (${step})`, await as('A').call('PUT', `/v2/images/${id}/tags/${tag}`), 204);
        for (const [name, id] of named) await streamA.waitFor((m) => tagged(m, id), 20_000, `A's event for ${name} (${step})`);
        await new Promise((r) => setTimeout(r, 500));
        const told = named.filter(([, id]) => streamB.messages.some((m) => tagged(m, id))).map(([name]) => name);
        for (const [, id] of named) await expectStatus('A untags', await as('A').call('DELETE', `/v2/images/${id}/tags/${tag}`), 204);
        return told;
      };
      try {
        await streamA.hello;
        await streamB.hello;
        assert.deepEqual(await toldB('shared'), ['top', 'deep'], 'B\'s event stream while B is an accepted member of the gallery');
        // B's membership ends: B learns nothing any more, events included.
        await expectStatus('A removes B', await as('A').call('DELETE', `/v2/galleries/${top}/members/${ids.B.project_id}`), 204);
        assert.deepEqual(await toldB('removed'), [], 'B\'s event stream after B was removed from the gallery');
      } finally {
        streamA.close();
        streamB.close();
      }
      for (const url of [`/v2/galleries/${top}`, `/v2/images/${topImage}`, `/v2/images/${deepImage}/file`]) {
        const res = await as('B').call('GET', url);
        if (res.status !== 404) problems.push(`after removal GET ${url} as B: ${res.status}`);
      }
      assert.deepEqual(problems, []);
    });

    it('after all the refusals, A\'s images are exactly as A left them', async () => {
      const problems: string[] = [];
      for (const f of FIXTURES) {
        const id = images.get(f);
        if (!id) { problems.push(`${f}: not set up`); continue; }
        const { status, body } = await as('A').getImage(id);
        if (status !== 200) { problems.push(`${f}: GET as owner → ${status}`); continue; }
        if (body.status !== 'active') problems.push(`${f}: status ${body.status}`);
        if ('xtenant' in body) problems.push(`${f}: property xtenant was set`);
        if (JSON.stringify(body.tags) !== JSON.stringify([FIXTURE_TAG])) problems.push(`${f}: tags ${JSON.stringify(body.tags)}`);
        const wantVisibility = { priv: 'private', sharedAccepted: 'shared', sharedPending: 'shared', sharedOther: 'shared', public: 'public', community: 'community' }[f];
        if (body.visibility !== wantVisibility) problems.push(`${f}: visibility ${body.visibility}`);
      }
      for (const [f, memberStatus] of [['sharedAccepted', 'accepted'], ['sharedPending', 'pending']] as const) {
        const id = images.get(f);
        if (!id) continue;
        const members = await as('A').call('GET', `/v2/images/${id}/members`);
        const got = members.status === 200 ? members.body.members.map((m: { member_id: string; status: string }) => `${m.member_id}:${m.status}`) : [`HTTP ${members.status}`];
        if (JSON.stringify(got) !== JSON.stringify([`${ids.B.project_id}:${memberStatus}`])) problems.push(`${f}: members ${JSON.stringify(got)}`);
      }
      assert.deepEqual(problems, []);
    });
  });
}

/** One request of the matrix: bodies as the operation declares, the token as given (or none). */
async function send(url: string, token: string, op: Op, id: string, ctx: { member: string; stranger: string }): Promise<{ status: number; text: string }> {
  const headers: Record<string, string> = { ...op.headers };
  if (token) headers['x-auth-token'] = token;
  let body: string | undefined;
  if (op.body) {
    const value = op.body(ctx);
    body = typeof value === 'string' ? value : JSON.stringify(value);
    headers['content-type'] = op.contentType ?? 'application/json';
  }
  const response = await fetch(url + op.path(id, ctx), { method: op.method, headers, body });
  const text = await response.text();
  return { status: response.status, text };
}
