/**
 * Routes of api/routes/image-import.ts and api/routes/info.ts, in process with Fastify's
 * inject(): import methods, web-download's checks and Glance's preconditions, stores, usage.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../../api/app.js';
import { callersAuthenticator } from './app-fixture.js';
import type { Caller } from '../../../core/caller.js';
import { Quotas, UNLIMITED } from '../../../core/quota.js';
import { HashPool } from '../../../ingest/hashing/index.js';
import { WebDownloads } from '../../../ingest/web-download.js';
import { parseAllowList } from '../../../infra/egress/address-policy.js';
import { DEFAULT_EGRESS, EgressClient } from '../../../infra/egress/egress-client.js';
import { SqliteQuotaStore } from '../../../infra/embedded/sqlite-quota-store.js';
import { domain, silent } from '../core/fixtures.js';

const TOKEN = 'inject-token';
const OTHER = 'other-project-token';
const callers: Record<string, Caller> = {
  [TOKEN]: { project_id: 'p1', user_id: 'u1', roles: ['member', 'reader'] },
  [OTHER]: { project_id: 'p2', user_id: 'u2', roles: ['member', 'reader'] },
};
const authenticator = callersAuthenticator(callers);

describe('import and info routes (inject)', () => {
  let app: FastifyInstance;
  let d: Awaited<ReturnType<typeof domain>>;
  let webDownloads: WebDownloads;
  const hashes = new HashPool();
  const call = (method: 'GET' | 'POST', url: string, payload?: object, token = TOKEN) =>
    app.inject({ method, url, payload, headers: { 'x-auth-token': token } });
  const create = async (body: object = { disk_format: 'raw', container_format: 'bare' }) => (await call('POST', '/v2/images', body)).json().id as string;

  before(async () => {
    d = await domain();
    const quotas = new Quotas(new SqliteQuotaStore({ path: ':memory:' }), { default: { ...UNLIMITED, image_count_total: 50 }, projects: {} });
    const upload = { maxImageSize: 1 << 20, heartbeatMs: 60_000, idleMs: 60_000 };
    // The "remote" server is never reached: these tests stop at the checks and preconditions.
    webDownloads = new WebDownloads({ images: d.images, quotas, blobs: d.blobs, hashes, upload, egress: new EgressClient({ ...DEFAULT_EGRESS, allowList: parseAllowList('') }), log: silent });
    app = await buildApp({ images: d.images, manifest: d.manifest, blobs: d.blobs, hashes, upload, quotas, webDownloads, authenticator, log: silent });
  });
  after(async () => {
    await webDownloads.close();
    await app.close();
    await d.close();
    await hashes.close();
    await rm(d.dir, { recursive: true, force: true });
  });

  it('GET /v2/info/import lists glance-direct and web-download', async () => {
    const response = await call('GET', '/v2/info/import');
    assert.deepEqual(response.json(), { 'import-methods': { description: 'Import methods available.', type: 'array', value: ['glance-direct', 'web-download'] } });
  });

  it('refuses a body on GET /v2/info/import, /v2/info/stores[/detail] and DELETE /v2/stores/…, as Glance\'s body_reject routes (400); an empty one is no body', async () => {
    const calls = [['GET', '/v2/info/import'], ['GET', '/v2/info/stores'], ['GET', '/v2/info/stores/detail'], ['DELETE', `/v2/stores/local/${await create()}`]] as const;
    for (const [method, url] of calls) {
      const withBody = await app.inject({ method, url, payload: '{"x":1}', headers: { 'x-auth-token': TOKEN, 'content-type': 'application/json' } });
      assert.deepEqual([withBody.statusCode, withBody.json().error.error_code, withBody.json().error.message], [400, 'body_not_expected', 'A body is not expected with this request.'], url);
    }
    const empty = await app.inject({ method: 'GET', url: '/v2/info/stores', headers: { 'x-auth-token': TOKEN, 'content-length': '0' } });
    assert.equal(empty.statusCode, 200);
    const noToken = await app.inject({ method: 'GET', url: '/v2/info/stores', payload: '{"x":1}', headers: { 'content-type': 'application/json' } });
    assert.equal(noToken.statusCode, 401, 'the token first, as Glance (keystone middleware before the router)');
  });

  it('GET /v2/info/stores answers Glance\'s shape with one default store', async () => {
    assert.deepEqual(JSON.parse((await call('GET', '/v2/info/stores')).body), { stores: [{ id: 'local', description: 'Local filesystem store under the PIR data directory', default: 'true' }] });
  });

  it('GET /v2/info/usage answers the caller\'s project, sizes in MiB', async () => {
    const before = (await call('GET', '/v2/info/usage')).json().usage;
    await create();
    const usage = (await call('GET', '/v2/info/usage')).json().usage;
    assert.deepEqual(Object.keys(usage).sort(), ['image_count_total', 'image_count_uploading', 'image_size_total', 'image_stage_total']);
    assert.deepEqual(usage.image_count_total, { limit: 50, usage: before.image_count_total.usage + 1 });
    assert.deepEqual(usage.image_size_total, { limit: -1, usage: 0 });
    // Another project's usage is its own.
    assert.deepEqual((await call('GET', '/v2/info/usage', undefined, OTHER)).json().usage.image_count_total, { limit: 50, usage: 0 });
  });

  it('refuses SSRF targets with 400 at the call, leaving the image queued', async () => {
    for (const uri of ['http://127.0.0.1/x', 'http://169.254.169.254/', 'http://0x7f000001/', 'http://127.1/', 'http://[::1]/', 'ftp://example.org/x', 'http://a:b@example.org/', 'http://example.org:8080/']) {
      const id = await create();
      const response = await call('POST', `/v2/images/${id}/import`, { method: { name: 'web-download', uri } });
      assert.equal(response.statusCode, 400, uri);
      assert.match(response.json().error.message, /^URI for web-download does not pass filtering: /);
      assert.equal((await d.images.get(callers[TOKEN], id)).status, 'queued');
    }
  });

  it("checks the image's status and formats before the URI (409 before 400), as Glance's import_image", async () => {
    const busy = await create();
    await d.images.beginWebDownload(callers[TOKEN]!, busy); // uploading: no longer queued
    const refused = await call('POST', `/v2/images/${busy}/import`, { method: { name: 'web-download', uri: 'http://127.0.0.1/x' } });
    assert.equal(refused.statusCode, 409, refused.body);
    assert.match(refused.json().error.message, /needs to be in 'queued' state/);
    const noFormats = await create({});
    assert.equal((await call('POST', `/v2/images/${noFormats}/import`, { method: { name: 'web-download', uri: 'http://127.0.0.1/x' } })).statusCode, 409);
    assert.equal((await call('POST', `/v2/images/${noFormats}/import`, { method: { name: 'web-download' } })).statusCode, 409);
  });

  it("answers Glance's preconditions and request mistakes", async () => {
    const noFormats = await create({});
    assert.equal((await call('POST', `/v2/images/${noFormats}/import`, { method: { name: 'web-download', uri: 'https://example.org/x' } })).statusCode, 409);
    const id = await create();
    assert.equal((await call('POST', `/v2/images/${id}/import`, { method: { name: 'web-download' } })).statusCode, 400);
    assert.equal((await call('POST', `/v2/images/${id}/import`, { method: { name: 'web-download', uri: 42 } })).statusCode, 400);
    assert.equal((await call('POST', `/v2/images/${id}/import`, { method: { name: 'copy-image' } })).statusCode, 400);
    assert.equal((await call('POST', `/v2/images/${id}/import`, {})).statusCode, 400);
    assert.equal((await call('POST', `/v2/images/${id}/import`, { method: { name: 'web-download', uri: 'https://example.org/x' }, all_stores: 'yes' })).statusCode, 400);
    assert.equal((await call('POST', `/v2/images/${id}/import`, { method: { name: 'glance-direct' } })).statusCode, 409); // nothing staged
    // One store (no PIR_STORES): the stores an import or a stage names are ignored, as Glance without
    // enabled_backends reads none of them; all_stores_must_succeed: false is still refused there.
    const lenient = await call('POST', `/v2/images/${id}/import`, { method: { name: 'web-download', uri: 'https://example.org/x' }, all_stores_must_succeed: false });
    assert.deepEqual([lenient.statusCode, lenient.json().error.error_code], [400, 'bad_stores']);
    for (const [body, headers] of [[{ stores: ['nope'] }, {}], [{}, { 'x-image-meta-store': 'nope' }], [{ all_stores: true, stores: [] }, { 'x-image-meta-store': '' }]] as const) {
      const named = await create();
      const stage = await app.inject({ method: 'PUT', url: `/v2/images/${named}/stage`, payload: Buffer.alloc(512), headers: { 'x-auth-token': TOKEN, 'content-type': 'application/octet-stream', ...headers } });
      assert.equal(stage.statusCode, 204, stage.body);
      const imported = await app.inject({ method: 'POST', url: `/v2/images/${named}/import`, payload: { method: { name: 'glance-direct' }, ...body }, headers: { 'x-auth-token': TOKEN, ...headers } });
      assert.equal(imported.statusCode, 202, imported.body);
      assert.deepEqual((await call('GET', `/v2/images/${named}/tasks`)).json().tasks[0].input.backend, [null]);
    }
    assert.equal((await call('POST', '/v2/images/00000000-0000-0000-0000-000000000000/import', { method: { name: 'glance-direct' } })).statusCode, 404);
    // Staged without formats: 409 as Glance, saying that only a new image can carry them now.
    const stagedBare = await create({});
    const staged = await app.inject({ method: 'PUT', url: `/v2/images/${stagedBare}/stage`, payload: Buffer.alloc(512), headers: { 'x-auth-token': TOKEN, 'content-type': 'application/octet-stream' } });
    assert.equal(staged.statusCode, 204);
    const refused = await call('POST', `/v2/images/${stagedBare}/import`, { method: { name: 'glance-direct' } });
    assert.equal(refused.statusCode, 409);
    assert.equal(refused.json().error.error_code, 'import_formats_required');
    assert.match(refused.json().error.message, /'container_format' needs to be set before import.*create the image again/);
  });

  it("shows Glance's import lock, os_glance_import_task, while an import runs, and the import's task as Glance's", async () => {
    const id = await create();
    const staged = await app.inject({ method: 'PUT', url: `/v2/images/${id}/stage`, payload: Buffer.alloc(4096), headers: { 'x-auth-token': TOKEN, 'content-type': 'application/octet-stream' } });
    assert.equal(staged.statusCode, 204);
    assert.equal((await call('GET', `/v2/images/${id}`)).json().os_glance_import_task, undefined, 'staged, no import yet');
    const imported = await call('POST', `/v2/images/${id}/import`, { method: { name: 'glance-direct' }, all_stores_must_succeed: true, extra: 'kept' });
    assert.equal(imported.statusCode, 202);
    // No worker runs in this app, so the import stays in progress.
    const image = (await call('GET', `/v2/images/${id}`)).json();
    assert.equal(image.status, 'importing');
    const tasks = (await call('GET', `/v2/images/${id}/tasks`)).json().tasks as { id: string; status: string; request_id: string; user_id: string; input: any }[];
    assert.equal(tasks.length, 1);
    assert.equal(image.os_glance_import_task, tasks[0]!.id);
    assert.equal(tasks[0]!.status, 'processing');
    // As Glance's task (tempest checks these): the import call's request id, its user, and import_req.
    assert.equal(tasks[0]!.request_id, imported.headers['x-openstack-request-id']);
    assert.equal(tasks[0]!.user_id, 'u1');
    // Glance's input: the whole body, and backend [None] without enabled_backends.
    assert.deepEqual(tasks[0]!.input, { method: 'glance-direct', image_id: id, import_req: { method: { name: 'glance-direct' }, all_stores_must_succeed: true, extra: 'kept' }, backend: [null] });
    // A body of kilobytes of extra keys keeps only the fields Glance reads (the image's record stays small).
    const big = await create();
    await app.inject({ method: 'PUT', url: `/v2/images/${big}/stage`, payload: Buffer.alloc(512), headers: { 'x-auth-token': TOKEN, 'content-type': 'application/octet-stream' } });
    assert.equal((await call('POST', `/v2/images/${big}/import`, { method: { name: 'glance-direct' }, junk: 'x'.repeat(10_000) })).statusCode, 202);
    assert.deepEqual((await call('GET', `/v2/images/${big}/tasks`)).json().tasks[0].input.import_req, { method: { name: 'glance-direct' } });
  });

  it("gives an upload's task, and a web-download's that failed before its bytes were in, the call's run, user and request id", async () => {
    const id = await create();
    const put = await app.inject({ method: 'PUT', url: `/v2/images/${id}/file`, payload: Buffer.alloc(4096), headers: { 'x-auth-token': TOKEN, 'content-type': 'application/octet-stream', prefer: 'respond-async' } });
    assert.equal(put.statusCode, 202, put.body);
    const [task] = (await call('GET', `/v2/images/${id}/tasks`)).json().tasks;
    assert.deepEqual([task.id, task.user_id, task.request_id], [`${id}.1`, 'u1', put.headers['x-openstack-request-id']]);

    const failing = await create();
    // .invalid never resolves (RFC 6761): the download fails after the import was accepted.
    const started = await call('POST', `/v2/images/${failing}/import`, { method: { name: 'web-download', uri: 'https://pir-test.invalid/disk.raw' } });
    assert.equal(started.statusCode, 202, started.body);
    let image: any;
    for (let i = 0; i < 200; i++) {
      image = (await call('GET', `/v2/images/${failing}`)).json();
      if (image.status === 'killed') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(image.status, 'killed', JSON.stringify(image));
    assert.deepEqual([image.pir_failure.run, image.pir_failure.method, image.pir_failure.requested], [1, 'web-download', undefined]);
    const [failed] = (await call('GET', `/v2/images/${failing}/tasks`)).json().tasks;
    assert.deepEqual([failed.id, failed.status, failed.user_id, failed.request_id, failed.input],
      [`${failing}.1`, 'failure', 'u1', started.headers['x-openstack-request-id'],
        { method: 'web-download', image_id: failing, import_req: { method: { name: 'web-download', uri: 'https://pir-test.invalid/disk.raw' } }, backend: [null] }]);
    assert.match(failed.message, /^import: web-download of https:\/\/pir-test\.invalid\/disk\.raw failed: /);
  });

  it('refuses creates over image_count_total with 413 in PIR\'s error shape', async () => {
    const usage = (await call('GET', '/v2/info/usage')).json().usage.image_count_total;
    for (let i = usage.usage; i < 50; i++) await create();
    const refused = await call('POST', '/v2/images', { name: 'one too many' });
    assert.equal(refused.statusCode, 413);
    assert.equal(refused.json().error.error_code, 'quota_exceeded');
    assert.match(refused.json().error.message, /Project p1 is over a limit for \[Resource image_count_total is over limit of 50 due to current usage 50 and delta 1\]/);
    assert.equal((await call('POST', '/v2/images', { name: 'another project' }, OTHER)).statusCode, 201);
  });
});
