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
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { pino } from 'pino';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../../api/app.js';
import { callersAuthenticator } from './app-fixture.js';
import { SYSTEM_CALLER, type Caller } from '../../../core/caller.js';
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
const ADMIN = 'admin-token';
const OTHER = 'other-project-token';
const READER = 'reader-token';
const callers: Record<string, Caller> = {
  [TOKEN]: { project_id: 'p1', user_id: 'u1', roles: ['member', 'reader'] }, [ADMIN]: { project_id: 'p1', user_id: 'a1', roles: ['admin', 'member', 'reader'] },
  [OTHER]: { project_id: 'p2', user_id: 'u2', roles: ['member', 'reader'] }, [READER]: { project_id: 'p1', user_id: 'r1', roles: ['reader'] },
};
/** Remote images of the fake Glance that behave badly (the hostile remote of the review's repros). */
const HOSTILE = {
  /** /file sends a first part, then holds the connection open (a download in progress). */
  hold: 'a0000000-0000-4000-8000-000000000001',
  /** The record comes after 400 ms. */
  slowRecord: 'a0000000-0000-4000-8000-000000000002',
  /** The record never comes. */
  noRecord: 'a0000000-0000-4000-8000-000000000003',
  /** A record over 1 MiB. */
  bigRecord: 'a0000000-0000-4000-8000-000000000004',
  /** The record says 1024 bytes; /file sends far more, without Content-Length. */
  sizeLie: 'a0000000-0000-4000-8000-000000000005',
  /** A property name the image cannot take (303 characters). */
  longProperty: 'a0000000-0000-4000-8000-000000000006',
};
const authenticator = callersAuthenticator(callers);

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
  const call = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: object, token = TOKEN) =>
    app.inject({ method, url, payload, headers: { 'x-auth-token': token, ...(method === 'PATCH' ? { 'content-type': 'application/openstack-images-v2.1-json-patch' } : {}) } });
  /** What the hostile remote did: bytes of /file written, and when its /file connection closed. */
  const hostile = { written: 0, closed: null as Promise<void> | null };
  const logs: { level: number; msg: string }[] = [];
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

  const hostileRecord = (id: string, extra: object = {}) => JSON.stringify({ ...activeRecord(), id, size: 512 * 1024, checksum: undefined, os_hash_algo: undefined, os_hash_value: undefined, ...extra });
  function serveHostile(id: string, file: boolean, response: ServerResponse): void {
    if (!file) {
      const json = { 'content-type': 'application/json' };
      if (id === HOSTILE.slowRecord) return void setTimeout(() => response.writeHead(200, json).end(hostileRecord(id)), 400);
      if (id === HOSTILE.noRecord) return void response.writeHead(200, json).write('{');
      if (id === HOSTILE.bigRecord) return void response.writeHead(200, json).end(hostileRecord(id, { hw_padding: 'x'.repeat(1_100_000) }));
      if (id === HOSTILE.sizeLie) return void response.writeHead(200, json).end(hostileRecord(id, { size: 1024 }));
      if (id === HOSTILE.longProperty) return void response.writeHead(200, json).end(hostileRecord(id, { [`hw_${'x'.repeat(300)}`]: '1' }));
      return void response.writeHead(200, json).end(hostileRecord(id));
    }
    hostile.written = 0;
    hostile.closed = once(response, 'close').then(() => {});
    response.writeHead(200, { 'content-type': 'application/octet-stream' });
    if (id === HOSTILE.hold) {
      hostile.written = 64 * 1024;
      return void response.write(Buffer.alloc(64 * 1024, 1));
    }
    // Up to 16 MiB, as fast as PIR reads, until PIR hangs up.
    const chunk = Buffer.alloc(16 * 1024, 2);
    const pump = () => {
      while (!response.destroyed && hostile.written < (id === HOSTILE.sizeLie ? 16 << 20 : 512 * 1024)) {
        hostile.written += chunk.length;
        if (!response.write(chunk)) return void response.once('drain', pump);
      }
      response.end();
    };
    pump();
  }

  before(async () => {
    remote = createServer((request: IncomingMessage, response) => {
      seen.push({ url: request.url!, token: request.headers['x-auth-token'] as string | undefined });
      if (request.url === `/v2/images/${REMOTE_ID}`) return void response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(record));
      if (request.url === `/v2/images/${REMOTE_ID}/file`) return void response.writeHead(200, { 'content-type': 'application/octet-stream' }).end(data);
      if (request.url === `/v2/images/${MOVED_ID}`) return void response.writeHead(302, { location: `/v2/images/${REMOTE_ID}` }).end();
      const hostileId = Object.values(HOSTILE).find((id) => request.url!.startsWith(`/v2/images/${id}`));
      if (hostileId) return void serveHostile(hostileId, request.url!.endsWith('/file'), response);
      response.writeHead(404).end();
    }).listen(0, '127.0.0.1');
    await once(remote, 'listening');
    const port = (remote.address() as { port: number }).port;
    remoteUrl = `http://127.0.0.1:${port}`;
    d = await domain();
    const quotas = new Quotas(new SqliteQuotaStore({ path: ':memory:' }), { default: { ...UNLIMITED, image_count_total: 50 }, projects: {} });
    // A quick heartbeat: a download notices soon that its image was deleted or swept.
    const upload = { maxImageSize: 1 << 20, heartbeatMs: 50, idleMs: 60_000 };
    // The remote Glance is on loopback: allowed as an operator would, by PIR_EGRESS_ALLOWLIST.
    const egress = new EgressClient({ ...DEFAULT_EGRESS, allowList: parseAllowList(`127.0.0.1:${port}`) });
    const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
    webDownloads = new WebDownloads({ images: d.images, quotas, blobs: d.blobs, hashes, upload, egress, log, glance: { endpoints, properties: DEFAULT_GLANCE_DOWNLOAD_PROPERTIES, recordTimeoutMs: 1500 } });
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

  it("refuses other tenants and readers as any import: 404 where the image is not theirs to see, 403 where they see it but may not change it, and a long hostile field in PIR's 400 shape", async () => {
    const method = { name: 'glance-download', glance_image_id: REMOTE_ID, glance_region: 'RegionTwo' };
    const hidden = await create({ disk_format: 'raw', container_format: 'bare' });
    const seen = await create({ disk_format: 'raw', container_format: 'bare', visibility: 'community' });
    const answer = async (id: string, token: string) => {
      const res = await call('POST', `/v2/images/${id}/import`, { method }, token);
      return [res.statusCode, res.json().error?.code];
    };
    assert.deepEqual(await answer(hidden, OTHER), [404, 404]);
    assert.deepEqual((await answer(seen, OTHER))[0], 403);
    assert.deepEqual((await answer(hidden, READER))[0], 403);
    for (const id of [hidden, seen]) {
      assert.equal((await call('GET', `/v2/images/${id}`)).json().status, 'queued');
      assert.deepEqual((await call('GET', `/v2/images/${id}/tasks`)).json().tasks, [], 'a refused call leaves no task');
    }
    const long = await call('POST', `/v2/images/${hidden}/import`, { method: { ...method, glance_region: 'r'.repeat(100_000) } });
    assert.equal(long.statusCode, 400);
    assert.equal(long.json().error.code, 400);
    assert.ok(long.body.length < 2000, `the refusal echoes ${long.body.length} bytes`);
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

  it('keeps the failed task, created when its call was made, when the image is imported again (Glance keeps every import\'s task)', async () => {
    record = activeRecord();
    const id = await create({ disk_format: 'iso', container_format: 'ovf' });
    const createdAt = (await call('GET', `/v2/images/${id}`)).json().created_at as string;
    // Glance's times are whole seconds: the call comes a second after the image's creation.
    await new Promise((r) => setTimeout(r, 1100));
    const calledAt = Date.now();
    const failed = await glanceDownload(id, { glance_region: 'not a region' });
    assert.equal(failed.statusCode, 202, failed.body);
    assert.equal((await settled(id)).status, 'queued');
    const [failedTask] = (await call('GET', `/v2/images/${id}/tasks`)).json().tasks;
    assert.equal(failedTask.id, `${id}.1`);
    assert.equal(failedTask.status, 'failure');
    assert.ok(Date.parse(failedTask.created_at) >= Math.floor(calledAt / 1000) * 1000 && failedTask.created_at !== createdAt, `${failedTask.created_at} is the call's time, not the image's ${createdAt}`);

    const retried = await glanceDownload(id);
    assert.equal(retried.statusCode, 202, retried.body);
    // Kept in the write that started the retry (one manifest write: a crash cannot lose it).
    assert.deepEqual((await d.manifest.get(id))!.earlier_tasks!.map((t) => [t.id, t.status]), [[`${id}.1`, 'failure']]);
    assert.equal((await settled(id)).status, 'importing');
    const tasks = (await call('GET', `/v2/images/${id}/tasks`)).json().tasks;
    assert.deepEqual(tasks.map((t: { id: string }) => t.id), [`${id}.1`, `${id}.2`]);
    assert.deepEqual(tasks[0], failedTask, 'as it stood when it failed');
    assert.equal(tasks[1].request_id, retried.headers['x-openstack-request-id']);
    assert.deepEqual((await call('GET', `/v2/tasks/${id}.1`, undefined, ADMIN)).json(), failedTask);
    const listed = (await call('GET', '/v2/tasks?status=failure&limit=1000', undefined, ADMIN)).json().tasks.map((t: { id: string }) => t.id);
    assert.ok(listed.includes(`${id}.1`), JSON.stringify(listed));
  });

  const startHostile = async (remoteId: string) => {
    const id = await create({ disk_format: 'iso', container_format: 'ovf' });
    const started = await glanceDownload(id, { glance_image_id: remoteId });
    assert.equal(started.statusCode, 202, started.body);
    return id;
  };
  /** Waits until the hostile remote's /file connection is open (the download is under way). */
  const fileOpened = async () => {
    for (let i = 0; i < 200 && !hostile.closed; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(hostile.closed, 'the data was never requested');
    // Wrapped: an async function's promise result would be awaited with it.
    return { closed: hostile.closed };
  };
  const within = <T>(promise: Promise<T>, ms: number, what: string) =>
    Promise.race([promise, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} not within ${ms} ms`)), ms))]);

  it('lists a download\'s processing task in GET /v2/tasks (and ?status=processing), as GET /v2/tasks/{id} shows it', async () => {
    hostile.closed = null;
    const id = await startHostile(HOSTILE.hold);
    const { closed } = await fileOpened();
    const [task] = (await call('GET', `/v2/images/${id}/tasks`)).json().tasks;
    assert.equal(task.status, 'processing');
    assert.equal((await call('GET', `/v2/tasks/${task.id}`, undefined, ADMIN)).json().status, 'processing');
    for (const query of ['', '?status=processing']) {
      const listed = (await call('GET', `/v2/tasks${query}`, undefined, ADMIN)).json().tasks.map((t: { id: string }) => t.id);
      assert.ok(listed.includes(task.id), `GET /v2/tasks${query} lists ${task.id}: ${JSON.stringify(listed)}`);
    }
    await call('DELETE', `/v2/images/${id}`);
    await within(closed, 3000, 'the download stopping');
  });

  it('ends the task failure with import_interrupted when the stall sweep (or a restart) gives the image back, and the download stops', async () => {
    hostile.closed = null;
    const id = await startHostile(HOSTILE.hold);
    const { closed } = await fileOpened();
    const doc = await d.images.get(SYSTEM_CALLER, id);
    // What the sweeper does for a download no process keeps alive.
    await d.images.abortUpload(SYSTEM_CALLER, id, doc.upload!.run, 'PIR restarted while the data was arriving');
    const image = (await call('GET', `/v2/images/${id}`)).json();
    assert.equal(image.status, 'queued');
    assert.equal(image.pir_failure.code, 'import_interrupted');
    const task = (await call('GET', `/v2/tasks/${id}.${doc.upload!.run}`, undefined, ADMIN)).json();
    assert.equal(task.status, 'failure', JSON.stringify(task));
    assert.match(task.message, /The glance-download stopped before its last byte \(PIR restarted while the data was arriving\); import again/);
    assert.ok((await call('GET', '/v2/tasks?status=failure', undefined, ADMIN)).json().tasks.some((t: { id: string }) => t.id === task.id));
    // This process's download notices it lost the image, and stops.
    await within(closed, 3000, 'the download stopping');
    // The image can be imported again.
    record = activeRecord();
    assert.equal((await glanceDownload(id)).statusCode, 202);
    assert.equal((await settled(id)).status, 'importing');
  });

  it('stops the download soon after the image is deleted, with no error logged', async () => {
    hostile.closed = null;
    logs.length = 0;
    const id = await startHostile(HOSTILE.hold);
    const { closed } = await fileOpened();
    assert.equal((await call('DELETE', `/v2/images/${id}`)).statusCode, 204);
    await within(closed, 3000, 'the download stopping');
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(logs.filter((l) => l.level >= 50), []);
    assert.ok(logs.some((l) => /glance-download stopped: the image was deleted/.test(l.msg)), JSON.stringify(logs));
  });

  it('keeps the heartbeat going while the remote record is slow in coming (the stall sweep must not take the image back)', async () => {
    const id = await create({ disk_format: 'iso', container_format: 'ovf' });
    const started = await glanceDownload(id, { glance_image_id: HOSTILE.slowRecord });
    assert.equal(started.statusCode, 202, started.body);
    const claimed = (await d.images.get(SYSTEM_CALLER, id)).updated_at;
    await new Promise((r) => setTimeout(r, 250));
    const during = await d.images.get(SYSTEM_CALLER, id);
    assert.equal(during.status, 'uploading');
    assert.ok(during.updated_at > claimed, `a heartbeat while the record is read (${claimed} → ${during.updated_at})`);
    const image = await settled(id);
    assert.equal(image.status, 'importing', JSON.stringify(image.pir_failure));
  });

  for (const [what, remoteId, code, pattern] of [
    ['a remote record that never comes (its own short deadline, not the data\'s hour)', HOSTILE.noRecord, 'remote_record_timeout', /did not send the record of image a0000000-0000-4000-8000-000000000003 within 1.5 s/],
    ['a remote record over 1 MiB (the record\'s cap, not PIR_MAX_IMAGE_SIZE)', HOSTILE.bigRecord, 'remote_record_too_large', /record of image a0000000-0000-4000-8000-000000000004 is larger than 1048576 bytes/],
    ['a property name the image cannot take (before any data is read)', HOSTILE.longProperty, 'property_name_too_long', /The remote image's properties cannot be copied to this image: A property name is 1 to 255 characters/],
  ] as const) {
    it(`fails the task for ${what}`, async () => {
      hostile.closed = null;
      const id = await startHostile(remoteId);
      const image = await settled(id);
      assert.deepEqual([image.status, image.pir_failure.code], ['queued', code], JSON.stringify(image.pir_failure));
      assert.match(image.pir_failure.message, pattern);
      assert.equal(hostile.closed, null, 'the data was not requested');
    });
  }

  it('stops reading as soon as the data runs past the remote record\'s size', async () => {
    hostile.closed = null;
    const id = await startHostile(HOSTILE.sizeLie);
    const image = await settled(id);
    assert.deepEqual([image.status, image.pir_failure.code], ['queued', 'remote_size_mismatch'], JSON.stringify(image.pir_failure));
    assert.match(image.pir_failure.message, /The remote image is 1024 bytes but its data runs past that/);
    await within(hostile.closed!, 3000, 'the remote connection closing');
    // Not read to PIR_MAX_IMAGE_SIZE (1 MiB here): what the socket buffers took, at most.
    assert.ok(hostile.written < 16 << 20, `${hostile.written} bytes sent`);
  });

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
