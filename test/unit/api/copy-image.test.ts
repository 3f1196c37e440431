/**
 * POST /v2/images/{id}/import with copy-image on a two-store PIR, in process with inject(): the
 * stores it copies to when none are named (Glance's get_stores_from_request), and its task
 * (Glance's api_image_import task, shown by GET /v2/images/{id}/tasks and /v2/tasks).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../../api/app.js';
import { callersAuthenticator } from './app-fixture.js';
import type { Caller } from '../../../core/caller.js';
import { ImageService } from '../../../core/image-service.js';
import { Quotas, UNLIMITED } from '../../../core/quota.js';
import { COPY_IMAGE_KIND, StoreOperations, type CopyImageJob } from '../../../core/store-operations.js';
import { StoreRegistry } from '../../../core/store-registry.js';
import { HashPool } from '../../../ingest/hashing/index.js';
import { WebDownloads } from '../../../ingest/web-download.js';
import { parseAllowList } from '../../../infra/egress/address-policy.js';
import { DEFAULT_EGRESS, EgressClient } from '../../../infra/egress/egress-client.js';
import { SqliteQuotaStore } from '../../../infra/embedded/sqlite-quota-store.js';
import { FsBlobStore } from '../../../infra/storage/fs-blob-store.js';
import { domain, silent } from '../core/fixtures.js';

const ADMIN = 'admin-token';
const OWNER = 'owner-token';
const callers: Record<string, Caller> = {
  [ADMIN]: { project_id: 'admin', user_id: 'root', roles: ['admin', 'member', 'reader'] },
  [OWNER]: { project_id: 'p', user_id: 'u', roles: ['member', 'reader'] },
};
const authenticator = callersAuthenticator(callers);
const BYTES = Buffer.from('the bytes of a disk image\n'.repeat(64));
const SHA512 = createHash('sha512').update(BYTES).digest('hex');
const last = { attempt: COPY_IMAGE_KIND.retry.attempts, maxAttempts: COPY_IMAGE_KIND.retry.attempts, reportProgress: async () => {} };
const first = { ...last, attempt: 1 };

describe('copy-image (inject, two stores)', () => {
  let app: FastifyInstance;
  let d: Awaited<ReturnType<typeof domain>>;
  let webDownloads: WebDownloads;
  let ops: StoreOperations;
  let cheapDir: string;
  const jobs: { id: string; data: CopyImageJob }[] = [];
  const hashes = new HashPool();
  const call = (method: 'GET' | 'POST', url: string, payload?: object, token = ADMIN, headers: Record<string, string> = {}) =>
    app.inject({ method, url, payload, headers: { 'x-auth-token': token, ...headers } });

  /** An active image of project p, its bytes in `store` only. */
  async function activeImage(store: 'fast' | 'cheap' = 'fast'): Promise<string> {
    const id = (await call('POST', '/v2/images', { name: 'c', disk_format: 'raw', container_format: 'bare' }, OWNER)).json().id as string;
    await writeFile(join(store === 'fast' ? d.blobs.imagesDir : join(cheapDir, 'images'), id), BYTES);
    await d.manifest.update(id, (draft) => {
      Object.assign(draft, { status: 'active', size: BYTES.length, os_hash_algo: 'sha512', os_hash_value: SHA512, stores: [{ store, key: `images/${id}`, at: new Date().toISOString() }] });
      return [];
    });
    return id;
  }

  before(async () => {
    d = await domain();
    cheapDir = await mkdtemp(join(tmpdir(), 'pir-unit-store-'));
    const cheap = new FsBlobStore(cheapDir);
    await cheap.init();
    const stores = new StoreRegistry([
      { id: 'fast', description: 'f', blobs: d.blobs, properties: {} },
      { id: 'cheap', description: 'c', blobs: cheap, properties: {} },
    ], 'fast', true);
    const images = new ImageService(d.manifest, d.blobs, { stageDeadlineSeconds: 60, stores });
    ops = new StoreOperations(d.manifest, stores, { enqueue: async (_kind, id, data) => { jobs.push({ id, data: data as CopyImageJob }); } }, silent);
    const quotas = new Quotas(new SqliteQuotaStore({ path: ':memory:' }), { default: UNLIMITED, projects: {} });
    const upload = { maxImageSize: 1 << 20, heartbeatMs: 60_000, idleMs: 60_000 };
    webDownloads = new WebDownloads({ images, quotas, blobs: d.blobs, hashes, upload, egress: new EgressClient({ ...DEFAULT_EGRESS, allowList: parseAllowList('') }), log: silent });
    app = await buildApp({ images, manifest: d.manifest, blobs: d.blobs, hashes, upload, quotas, webDownloads, authenticator, storeOps: ops, log: silent });
  });
  after(async () => {
    await webDownloads.close();
    await app.close();
    await d.close();
    await hashes.close();
    await rm(d.dir, { recursive: true, force: true });
    await rm(cheapDir, { recursive: true, force: true });
  });

  it('naming no store copies to the default store, as Glance (default_backend): 400 "already present" when it is there', async () => {
    const there = await activeImage('fast');
    const refused = await call('POST', `/v2/images/${there}/import`, { method: { name: 'copy-image' } });
    assert.equal(refused.statusCode, 400, refused.body);
    assert.equal(refused.json().error.error_code, 'already_in_stores');
    assert.match(refused.json().error.message, /already present at store 'fast'/);
    const elsewhere = await activeImage('cheap');
    const copied = await call('POST', `/v2/images/${elsewhere}/import`, { method: { name: 'copy-image' } });
    assert.equal(copied.statusCode, 202, copied.body);
    assert.equal((await call('GET', `/v2/images/${elsewhere}`)).json().os_glance_importing_to_stores, 'fast');
  });

  it('X-Image-Meta-Store names the store to copy to, as Glance', async () => {
    const id = await activeImage('fast');
    const copied = await call('POST', `/v2/images/${id}/import`, { method: { name: 'copy-image' } }, ADMIN, { 'x-image-meta-store': 'cheap' });
    assert.equal(copied.statusCode, 202, copied.body);
    assert.equal((await call('GET', `/v2/images/${id}`)).json().os_glance_importing_to_stores, 'cheap');
  });

  it("records Glance's api_image_import task: processing with the import lock while it copies, success once copied", async () => {
    const id = await activeImage('fast');
    const body = { method: { name: 'copy-image' }, stores: ['cheap'] };
    assert.equal((await call('POST', `/v2/images/${id}/import`, body)).statusCode, 202);
    const [running, ...more] = (await call('GET', `/v2/images/${id}/tasks`)).json().tasks;
    assert.equal(more.length, 0);
    assert.deepEqual([running.type, running.status, running.user_id, running.result, running.message], ['api_image_import', 'processing', 'root', null, '']);
    assert.deepEqual(running.input, { method: 'copy-image', image_id: id, import_req: body, backend: ['cheap'] });
    assert.equal((await call('GET', `/v2/images/${id}`)).json().os_glance_import_task, running.id, 'the import lock names it');
    await ops.handle(jobs[jobs.length - 1].data, first);
    const done = (await call('GET', `/v2/tasks/${running.id}`)).json();
    assert.deepEqual([done.status, done.result, done.message], ['success', { image_id: id }, '']);
    assert.ok(done.expires_at, 'a finished task expires, as Glance');
    const image = (await call('GET', `/v2/images/${id}`)).json();
    assert.deepEqual([image.stores, image.os_glance_import_task], ['cheap,fast', undefined]);
    const listed = (await call('GET', '/v2/tasks?limit=1000')).json().tasks.map((t: { id: string }) => t.id);
    assert.ok(listed.includes(running.id), 'GET /v2/tasks lists it');
    // The owner sees its image's tasks too; a second copy gets a task of its own.
    await d.manifest.update(id, (draft) => { draft.stores = draft.stores!.filter((c) => c.store === 'fast'); return []; });
    assert.equal((await call('POST', `/v2/images/${id}/import`, body)).statusCode, 202);
    const ids = (await call('GET', `/v2/images/${id}/tasks`, undefined, OWNER)).json().tasks.map((t: { id: string; status: string }) => `${t.id}:${t.status}`);
    assert.equal(ids.length, 2);
    assert.equal(ids[0], `${running.id}:success`);
    assert.match(ids[1], /:processing$/);
    assert.notEqual(ids[1].split(':')[0], running.id);
  });

  it('GET /v2/tasks lists a web-download still bringing its bytes in (its task is processing from the call on)', async () => {
    const id = (await call('POST', '/v2/images', { name: 'w', disk_format: 'raw', container_format: 'bare' }, OWNER)).json().id as string;
    const input = { import_req: { method: { name: 'web-download', uri: 'https://example.org/x' } }, backend: ['fast'] };
    await d.manifest.update(id, (draft) => {
      Object.assign(draft, { status: 'uploading', upload: { run: 1, kind: 'web-download', started_at: new Date().toISOString(), input, requested: { user_id: 'u', request_id: null } } });
      return [];
    });
    const listed = (await call('GET', '/v2/tasks?limit=1000')).json().tasks.filter((t: { image_id: string }) => t.image_id === id);
    assert.deepEqual(listed.map((t: { id: string; status: string }) => [t.id, t.status]), [[`${id}.1`, 'processing']]);
  });

  it('a copy that had to succeed and failed for good ends its task failure, with a message', async () => {
    const id = await activeImage('fast');
    assert.equal((await call('POST', `/v2/images/${id}/import`, { method: { name: 'copy-image' }, stores: ['cheap'] })).statusCode, 202);
    // The copy cannot be read from anywhere: every attempt fails.
    await rm(join(d.blobs.imagesDir, id));
    await ops.handle(jobs[jobs.length - 1].data, last);
    const [task] = (await call('GET', `/v2/images/${id}/tasks`)).json().tasks;
    assert.equal(task.status, 'failure');
    assert.match(task.message, /copy to store 'cheap' failed for good/);
    assert.equal((await call('GET', `/v2/images/${id}`)).json().os_glance_failed_import, 'cheap');
  });
});
