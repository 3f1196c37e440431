/**
 * glance-download (ingest/glance-download.ts): Glance's checks of the method's fields, the
 * properties copied, the catalog lookup, and whole imports in process (Fastify inject) from a fake
 * remote Glance on loopback, found through a fake catalog: the caller's token goes to both, the
 * image takes the remote formats and selected properties, and a failure puts it back in `queued`
 * with its own metadata and a failed task.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../../api/app.js';
import { tokenInvalid, type Authenticator } from '../../../core/authenticator.js';
import type { Caller } from '../../../core/caller.js';
import { PirError } from '../../../core/errors.js';
import { Quotas, UNLIMITED } from '../../../core/quota.js';
import { HashPool } from '../../../ingest/hashing/index.js';
import {
  canonicalUuid, checkGlanceDownloadMethod, DEFAULT_GLANCE_DOWNLOAD_PROPERTIES, GlanceDownloadError, imageEndpointIn, selectRemoteProperties,
  type ImageEndpointFinder,
} from '../../../ingest/glance-download.js';
import { WebDownloads } from '../../../ingest/web-download.js';
import { parseAllowList } from '../../../infra/egress/address-policy.js';
import { DEFAULT_EGRESS, EgressClient } from '../../../infra/egress/egress-client.js';
import { SqliteQuotaStore } from '../../../infra/embedded/sqlite-quota-store.js';
import { loadConfig } from '../../../infra/config.js';
import { domain, silent } from '../core/fixtures.js';

const REMOTE_ID = '36d4b546-64a2-4bb9-bdd0-ba676aa48f2c';
/** An image the fake remote Glance answers with a redirect for. */
const MOVED_ID = '77644240-dbbe-4744-ae28-09b2ac12e218';

describe('glance-download: the method\'s checks', () => {
  const message = (fn: () => unknown) => {
    try {
      fn();
    } catch (error) {
      assert.ok(error instanceof PirError);
      return [error.kind, error.message];
    }
    return assert.fail('no error');
  };

  it("answers Glance's 400s in Glance's order, and defaults the interface to public", () => {
    assert.deepEqual(message(() => checkGlanceDownloadMethod({ glance_image_id: 'foo' })), ['bad_request', "'glance_region' needs to be set for glance-download import method"]);
    assert.deepEqual(message(() => checkGlanceDownloadMethod({ glance_region: 'R' })), ['bad_request', "'glance_image_id' needs to be set for glance-download import method"]);
    assert.deepEqual(message(() => checkGlanceDownloadMethod({ glance_region: 'R', glance_image_id: 'foo' })), ['bad_request', 'Remote image id does not look like a UUID: foo']);
    assert.deepEqual(message(() => checkGlanceDownloadMethod({ glance_region: 'R', glance_image_id: 42 })), ['bad_request', 'Remote image id does not look like a UUID: 42']);
    assert.deepEqual(message(() => checkGlanceDownloadMethod({ glance_region: 7, glance_image_id: REMOTE_ID }))[0], 'bad_request');
    assert.deepEqual(checkGlanceDownloadMethod({ glance_region: 'R', glance_image_id: REMOTE_ID }), { imageId: REMOTE_ID, region: 'R', serviceInterface: 'public' });
    assert.equal(checkGlanceDownloadMethod({ glance_region: 'R', glance_image_id: REMOTE_ID, glance_service_interface: 'internal' }).serviceInterface, 'internal');
  });

  it("takes the id forms Python's uuid.UUID takes, in canonical form (it goes into the remote URL's path)", () => {
    for (const form of [REMOTE_ID, REMOTE_ID.toUpperCase(), REMOTE_ID.replace(/-/g, ''), `{${REMOTE_ID}}`, `urn:uuid:${REMOTE_ID}`]) assert.equal(canonicalUuid(form), REMOTE_ID, form);
    for (const bad of ['foo', `${REMOTE_ID}/../x`, `${REMOTE_ID}0`, '', null]) assert.equal(canonicalUuid(bad), null, String(bad));
  });

  it("copies the properties Glance's default glance_download_properties selects, never os_glance_*, pir_* or a base attribute", () => {
    const remote = { id: REMOTE_ID, status: 'active', hw_cpu_cores: '5', 'trait:STORAGE_DISK_SSD': 'required', os_distro: 'rhel', os_type: 'linux', os_secure_boot: 'required', speed: '88mph', os_glance_import_task: 'x', os_version: '9', hw_numbers: 5 };
    assert.deepEqual(selectRemoteProperties(remote, DEFAULT_GLANCE_DOWNLOAD_PROPERTIES), { hw_cpu_cores: '5', 'trait:STORAGE_DISK_SSD': 'required', os_distro: 'rhel', os_type: 'linux', os_secure_boot: 'required' });
    // A wide prefix does not reach Glance's own namespace nor the image's base attributes.
    assert.deepEqual(selectRemoteProperties({ ...remote, os_hash_value: 'ab', os_hidden: 'false', pir_detected_os: 'x' }, ['os_', 'pir_']), { os_distro: 'rhel', os_type: 'linux', os_secure_boot: 'required', os_version: '9' });
  });

  it('reads PIR_GLANCE_DOWNLOAD_PROPERTIES (Glance\'s default unset, none when empty) and refuses a prefix reaching os_glance', () => {
    assert.deepEqual(loadConfig({}).glanceDownloadProperties, ['hw_', 'trait:', 'os_distro', 'os_secure_boot', 'os_type']);
    assert.deepEqual(loadConfig({ PIR_GLANCE_DOWNLOAD_PROPERTIES: 'hw_, architecture' }).glanceDownloadProperties, ['hw_', 'architecture']);
    assert.deepEqual(loadConfig({ PIR_GLANCE_DOWNLOAD_PROPERTIES: '' }).glanceDownloadProperties, []);
    for (const bad of ['os_', 'os_glance_x', 'o']) assert.throws(() => loadConfig({ PIR_GLANCE_DOWNLOAD_PROPERTIES: bad }), /PIR_GLANCE_DOWNLOAD_PROPERTIES/);
  });

  it('finds the image endpoint of a region (any case, as Glance) and interface in a Keystone v3 catalog', () => {
    const catalog = { catalog: [
      { type: 'identity', endpoints: [{ region_id: 'R1', interface: 'public', url: 'http://keystone' }] },
      { type: 'image', endpoints: [{ region_id: 'R1', interface: 'internal', url: 'http://glance-internal' }, { region_id: 'R1', region: 'R1', interface: 'public', url: 'http://glance-public' }] },
    ] };
    assert.equal(imageEndpointIn(catalog, 'r1', 'public'), 'http://glance-public');
    assert.equal(imageEndpointIn(catalog, 'R1', 'internal'), 'http://glance-internal');
    assert.equal(imageEndpointIn(catalog, 'R2', 'public'), null);
    assert.equal(imageEndpointIn(catalog, 'R1', 'not an interface'), null);
    assert.equal(imageEndpointIn({}, 'R1', 'public'), null);
  });
});

const TOKEN = 'inject-token';
const callers: Record<string, Caller> = { [TOKEN]: { project_id: 'p1', user_id: 'u1', roles: ['member', 'reader'] } };
const authenticator: Authenticator = {
  challenge: null,
  async authenticate(token) { const c = callers[token]; if (!c) throw tokenInvalid(); return c; },
  async close() {},
};

describe('glance-download: imports from a remote Glance (inject)', () => {
  let app: FastifyInstance;
  let d: Awaited<ReturnType<typeof domain>>;
  let webDownloads: WebDownloads;
  let remote: Server;
  let remoteUrl: string;
  const hashes = new HashPool();
  const data = Buffer.alloc(64 * 1024, 7);
  /** What the fake remote Glance answers for the image's record (status, …). */
  let record: Record<string, unknown>;
  const seen: { url: string; token: string | undefined }[] = [];
  const lookups: { token: string; region: string; iface: string }[] = [];
  const endpoints: ImageEndpointFinder = {
    async imageEndpoint(token, region, iface) {
      lookups.push({ token, region, iface });
      if (region !== 'RegionTwo' || iface !== 'public') throw new GlanceDownloadError('glance_endpoint_not_found', `No image service endpoint for region '${region}' and interface '${iface}' in the Keystone catalog.`);
      return `${remoteUrl}/`;
    },
  };
  const call = (method: 'GET' | 'POST' | 'PATCH', url: string, payload?: object) =>
    app.inject({ method, url, payload, headers: { 'x-auth-token': TOKEN, ...(method === 'PATCH' ? { 'content-type': 'application/openstack-images-v2.1-json-patch' } : {}) } });
  const create = async (body: object) => (await call('POST', '/v2/images', body)).json().id as string;
  const settled = async (id: string) => {
    for (let i = 0; i < 200; i++) {
      const image = (await call('GET', `/v2/images/${id}`)).json();
      if (image.status !== 'uploading') return image;
      await new Promise((r) => setTimeout(r, 25));
    }
    return assert.fail('the download did not end');
  };
  const glanceDownload = (id: string, method: object = {}) =>
    call('POST', `/v2/images/${id}/import`, { method: { name: 'glance-download', glance_image_id: REMOTE_ID, glance_region: 'RegionTwo', ...method } });

  before(async () => {
    remote = createServer((request: IncomingMessage, response) => {
      seen.push({ url: request.url!, token: request.headers['x-auth-token'] as string | undefined });
      if (request.url === `/v2/images/${REMOTE_ID}`) return void response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(record));
      if (request.url === `/v2/images/${REMOTE_ID}/file`) return void response.writeHead(200, { 'content-type': 'application/octet-stream' }).end(data);
      if (request.url === `/v2/images/${MOVED_ID}`) return void response.writeHead(302, { location: `/v2/images/${REMOTE_ID}` }).end();
      response.writeHead(404).end();
    }).listen(0, '127.0.0.1');
    await once(remote, 'listening');
    const port = (remote.address() as { port: number }).port;
    remoteUrl = `http://127.0.0.1:${port}`;
    d = await domain();
    const quotas = new Quotas(new SqliteQuotaStore({ path: ':memory:' }), { default: { ...UNLIMITED, image_count_total: 50 }, projects: {} });
    const upload = { maxImageSize: 1 << 20, heartbeatMs: 60_000, idleMs: 60_000 };
    // The remote Glance is on loopback: allowed as an operator would, by PIR_EGRESS_ALLOWLIST.
    const egress = new EgressClient({ ...DEFAULT_EGRESS, allowList: parseAllowList(`127.0.0.1:${port}`) });
    webDownloads = new WebDownloads({ images: d.images, quotas, blobs: d.blobs, hashes, upload, egress, log: silent, glance: { endpoints, properties: DEFAULT_GLANCE_DOWNLOAD_PROPERTIES } });
    app = await buildApp({ images: d.images, manifest: d.manifest, blobs: d.blobs, hashes, upload, quotas, webDownloads, authenticator, log: silent });
  });
  after(async () => {
    await webDownloads.close();
    await app.close();
    await d.close();
    await hashes.close();
    remote.close();
    await rm(d.dir, { recursive: true, force: true });
  });

  const activeRecord = () => ({
    id: REMOTE_ID, status: 'active', disk_format: 'raw', container_format: 'bare', size: data.length,
    checksum: createHash('md5').update(data).digest('hex'), os_hash_algo: 'sha512', os_hash_value: createHash('sha512').update(data).digest('hex'),
    hw_cpu_cores: '5', 'trait:STORAGE_DISK_SSD': 'required', os_distro: 'rhel', speed: '88mph', os_glance_import_task: 'theirs',
  });

  it('is listed by GET /v2/info/import and on create when offered', async () => {
    assert.deepEqual((await call('GET', '/v2/info/import')).json()['import-methods'].value, ['glance-direct', 'web-download', 'glance-download']);
    assert.equal((await call('POST', '/v2/images', { disk_format: 'raw', container_format: 'bare' })).headers['openstack-image-import-methods'], 'glance-direct,web-download,glance-download');
  });

  it("answers Glance's checks at the call: 409 for the image first, then 400 for the method's fields", async () => {
    const noFormats = await create({});
    assert.equal((await call('POST', `/v2/images/${noFormats}/import`, { method: { name: 'glance-download' } })).statusCode, 409);
    const id = await create({ disk_format: 'raw', container_format: 'bare' });
    const badUuid = await glanceDownload(id, { glance_image_id: 'foo' });
    assert.deepEqual([badUuid.statusCode, badUuid.json().error.message], [400, 'Remote image id does not look like a UUID: foo']);
    const noRegion = await call('POST', `/v2/images/${id}/import`, { method: { name: 'glance-download', glance_image_id: REMOTE_ID } });
    assert.deepEqual([noRegion.statusCode, noRegion.json().error.message], [400, "'glance_region' needs to be set for glance-download import method"]);
    const noId = await call('POST', `/v2/images/${id}/import`, { method: { name: 'glance-download', glance_region: 'RegionTwo' } });
    assert.deepEqual([noId.statusCode, noId.json().error.message], [400, "'glance_image_id' needs to be set for glance-download import method"]);
    assert.equal((await call('GET', `/v2/images/${id}`)).json().status, 'queued');
  });

  it("imports the remote image's data, formats and selected properties with the caller's token", async () => {
    record = activeRecord();
    const id = await create({ disk_format: 'iso', container_format: 'ovf' });
    await call('PATCH', `/v2/images/${id}`, [{ op: 'add', path: '/hw_cpu_cores', value: '1' }, { op: 'add', path: '/os_distro', value: 'windows' }]);
    seen.length = 0;
    lookups.length = 0;
    const started = await glanceDownload(id);
    assert.equal(started.statusCode, 202, started.body);
    const [task] = (await call('GET', `/v2/images/${id}/tasks`)).json().tasks;
    // The task exists from the call on (Glance's does), so a waiter does not stop at once.
    assert.ok(task && ['processing', 'success'].includes(task.status), JSON.stringify(task));
    const image = await settled(id);
    // No worker in this app: the pipeline has started on the staged bytes.
    assert.equal(image.status, 'importing', JSON.stringify(image));
    assert.deepEqual([image.disk_format, image.container_format, image.hw_cpu_cores, image['trait:STORAGE_DISK_SSD'], image.os_distro, image.speed, image.os_glance_import_task === 'theirs'],
      ['raw', 'bare', '5', 'required', 'rhel', undefined, false]);
    assert.deepEqual(lookups, [{ token: TOKEN, region: 'RegionTwo', iface: 'public' }]);
    assert.deepEqual(seen, [{ url: `/v2/images/${REMOTE_ID}`, token: TOKEN }, { url: `/v2/images/${REMOTE_ID}/file`, token: TOKEN }]);
    const doc = await d.images.get(callers[TOKEN]!, id);
    assert.equal(doc.staging?.size, data.length);
    // The remote digests are checked by the checksum stage.
    assert.equal(doc.expected.sha512, record.os_hash_value);
    const tasks = (await call('GET', `/v2/images/${id}/tasks`)).json().tasks;
    assert.deepEqual(tasks[0].input.import_req.method, { name: 'glance-download', glance_image_id: REMOTE_ID, glance_region: 'RegionTwo', glance_service_interface: 'public' });
    assert.equal(tasks[0].input.method, 'glance-download');
  });

  for (const [what, setup, method, pattern, code] of [
    ['a region or interface the catalog lacks', () => { record = activeRecord(); }, { glance_region: 'not a region', glance_service_interface: 'not an interface' }, /No image service endpoint for region 'not a region' and interface 'not an interface'/, 'glance_endpoint_not_found'],
    ['a remote image that does not exist', () => { record = activeRecord(); }, { glance_image_id: '00000000-1111-2222-3333-444455556666' }, /was not found in the Glance of region 'RegionTwo'/, 'remote_image_not_found'],
    ['a redirect, which would take the token along', () => { record = activeRecord(); }, { glance_image_id: MOVED_ID }, /answered a redirect \(HTTP 302\), which glance-download does not follow/, 'remote_redirect'],
    ['a remote image that is not active', () => { record = { ...activeRecord(), status: 'queued' }; }, {}, /Source image status should be active instead of queued/, 'remote_image_not_active'],
    ['remote data shorter than the record says', () => { record = { ...activeRecord(), size: data.length + 1 }; }, {}, /The remote image is \d+ bytes but \d+/, 'remote_size_mismatch'],
  ] as const) {
    it(`fails the task for ${what}, and puts the image back in queued with its own metadata`, async () => {
      setup();
      const id = await create({ disk_format: 'iso', container_format: 'ovf' });
      await call('PATCH', `/v2/images/${id}`, [{ op: 'add', path: '/hw_cpu_cores', value: '1' }, { op: 'add', path: '/os_distro', value: 'windows' }]);
      const started = await glanceDownload(id, method);
      assert.equal(started.statusCode, 202, started.body);
      const image = await settled(id);
      assert.deepEqual([image.status, image.disk_format, image.container_format, image.hw_cpu_cores, image.os_distro], ['queued', 'iso', 'ovf', '1', 'windows'], JSON.stringify(image));
      assert.equal(image.pir_failure.code, code);
      const tasks = (await call('GET', `/v2/images/${id}/tasks`)).json().tasks;
      assert.equal(tasks.length, 1);
      assert.equal(tasks[0].status, 'failure');
      assert.equal(tasks[0].request_id, started.headers['x-openstack-request-id']);
      assert.match(tasks[0].message, /^import: glance-download of image [0-9a-f-]+ from region '[^']+' failed: /);
      assert.match(tasks[0].message, pattern);
      // The import can be called again.
      record = activeRecord();
      assert.equal((await glanceDownload(id)).statusCode, 202);
      assert.equal((await settled(id)).status, 'importing');
    });
  }

  it('is not offered without a catalog (PIR not behind Keystone): not listed, and 400 at the call', async () => {
    const plain = new WebDownloads({ images: d.images, quotas: new Quotas(new SqliteQuotaStore({ path: ':memory:' }), { default: UNLIMITED, projects: {} }), blobs: d.blobs, hashes, upload: { maxImageSize: 1 << 20, heartbeatMs: 60_000, idleMs: 60_000 }, egress: new EgressClient(DEFAULT_EGRESS), log: silent });
    const other = await buildApp({ images: d.images, manifest: d.manifest, blobs: d.blobs, hashes, upload: { maxImageSize: 1 << 20, heartbeatMs: 60_000, idleMs: 60_000 }, quotas: new Quotas(new SqliteQuotaStore({ path: ':memory:' }), { default: UNLIMITED, projects: {} }), webDownloads: plain, authenticator, log: silent });
    try {
      const listed = await other.inject({ method: 'GET', url: '/v2/info/import', headers: { 'x-auth-token': TOKEN } });
      assert.deepEqual(listed.json()['import-methods'].value, ['glance-direct', 'web-download']);
      const id = await create({ disk_format: 'raw', container_format: 'bare' });
      const refused = await other.inject({ method: 'POST', url: `/v2/images/${id}/import`, headers: { 'x-auth-token': TOKEN }, payload: { method: { name: 'glance-download', glance_image_id: REMOTE_ID, glance_region: 'RegionTwo' } } });
      assert.deepEqual([refused.statusCode, refused.json().error.error_code], [400, 'unsupported_import_method']);
    } finally {
      await plain.close();
      await other.close();
    }
  });
});
