/**
 * web-download end to end: a real `pir serve`, a local HTTP server started here and allow-listed
 * with PIR_EGRESS_ALLOWLIST, a qcow2 made by qemu-img. Every SSRF target is refused with a clear
 * message: at the import call (400) when the URL alone shows it, else as the image's failure.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ensureQemuImg, makeImage, makeTempDir, qemuInfo, removeDir } from '../support/images.js';
import { PirClient, fileDigests } from '../support/pir-client.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from '../support/pir-process.js';
import { inCI } from '../support/services.js';

const run = promisify(execFile);
const haveGlance = await run('glance', ['--version']).then(() => true, () => false);

const TOKEN = 'e2e-web-download-token-0123456789abc';
const logDir = testLogDir('web-download');

/** Polls until the image is active or killed. */
async function waitDone(client: PirClient, id: string, timeoutMs = 60_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { body } = await client.getImage(id);
    if (body.status === 'active' || body.status === 'killed') return body;
    if (Date.now() > deadline) throw new Error(`image ${id} still ${body.status} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('web-download (pir serve, local server allow-listed)', () => {
  let dir: string;
  let pir: PirProcess;
  let client: PirClient;
  let server: Server;
  let base: string;
  let qcow2: string;
  let expected: { size: number; md5: string; sha512: string };
  let virtualSize: number;

  before(async () => {
    ensureQemuImg();
    dir = await makeTempDir('pir-e2e-webdl-');
    qcow2 = await makeImage(dir, 'qcow2', { size: '96M' });
    expected = await fileDigests(qcow2);
    virtualSize = (await qemuInfo(qcow2))['virtual-size'];
    server = createServer(async (req, res) => {
      const path = req.url ?? '/';
      if (path === '/disk.qcow2') {
        res.writeHead(200, { 'content-length': String((await stat(qcow2)).size), 'content-type': 'application/octet-stream' });
        return createReadStream(qcow2).pipe(res);
      }
      if (path === '/chunked.qcow2') return createReadStream(qcow2).pipe(res); // no Content-Length
      if (path === '/moved') return res.writeHead(302, { location: '/disk.qcow2' }).end();
      if (path === '/to-loopback') return res.writeHead(302, { location: 'http://127.0.0.1/disk.qcow2' }).end();
      if (path === '/to-metadata') return res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
      if (path === '/huge') { res.writeHead(200); res.write(Buffer.alloc(1 << 20)); const more = () => { if (!res.destroyed && res.write(Buffer.alloc(1 << 20))) setImmediate(more); else res.once('drain', more); }; more(); return; }
      res.writeHead(404).end('not here');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const serverPort = (server.address() as AddressInfo).port;
    base = `http://127.0.0.1:${serverPort}`;
    const port = await freePort();
    pir = await startPirProcess('serve', {
      PIR_DATA_DIR: join(dir, 'data'), PIR_PORT: String(port), PIR_ADMIN_TOKEN: TOKEN,
      PIR_EGRESS_ALLOWLIST: `127.0.0.1:${serverPort}`, PIR_MAX_IMAGE_SIZE: '16MiB',
    }, logDir, `serve-${port}`);
    client = new PirClient(`http://127.0.0.1:${port}`, TOKEN);
  });
  after(async () => {
    await pir?.stop();
    server?.closeAllConnections();
    server?.close();
    await removeDir(dir);
  });

  const newImage = (name: string) => client.createImage({ name, disk_format: 'qcow2', container_format: 'bare' });
  const webDownload = (id: string, uri: unknown) => client.call('POST', `/v2/images/${id}/import`, { method: { name: 'web-download', uri } });

  it('lists web-download among the import methods, and answers /v2/info/stores and /v2/info/usage', async () => {
    const methods = await client.call('GET', '/v2/info/import');
    assert.deepEqual(methods.body['import-methods'].value, ['glance-direct', 'web-download']);
    const created = await client.call('POST', '/v2/images', { name: 'hdr' });
    assert.equal(created.headers['openstack-image-import-methods'], 'glance-direct,web-download');
    const stores = await client.call('GET', '/v2/info/stores');
    assert.equal(stores.status, 200);
    assert.deepEqual(stores.body.stores.map((s: any) => [s.id, s.default]), [['local', 'true']]); // a string, as Glance's
    const usage = await client.call('GET', '/v2/info/usage');
    assert.deepEqual(usage.body, { usage: {} }); // quotas off, as Glance without unified limits
  });

  for (const [label, path] of [['with Content-Length', '/disk.qcow2'], ['chunked', '/chunked.qcow2'], ['through a redirect', '/moved']] as const) {
    it(`imports a qcow2 from the local server (${label}) to active with the right checksums`, async () => {
      const image = await newImage(`webdl ${label}`);
      const response = await webDownload(image.id, base + path);
      assert.equal(response.status, 202, JSON.stringify(response.body));
      const done = await waitDone(client, image.id);
      assert.equal(done.status, 'active', JSON.stringify(done.pir_failure));
      assert.equal(done.size, expected.size);
      assert.equal(done.checksum, expected.md5);
      assert.equal(done.os_hash_value, expected.sha512);
      assert.equal(done.virtual_size, virtualSize);
      assert.equal(done.pir_pipeline.method, 'web-download');
      const downloaded = await client.downloadDigests(image.id);
      assert.deepEqual({ size: downloaded.size, md5: downloaded.md5, sha512: downloaded.sha512 }, expected);
    });
  }

  const refusedAtCall: [string, RegExp][] = [
    ['http://127.0.0.1/disk.qcow2', /127\.0\.0\.1 is a loopback address/],
    ['http://169.254.169.254/latest/meta-data/', /cloud metadata/],
    ['http://10.0.0.1/disk.qcow2', /10\.0\.0\.1 is a private address/],
    ['http://[::1]/disk.qcow2', /::1 is a loopback address/],
    ['http://0x7f000001/disk.qcow2', /shorthand or encoded/],
    ['http://127.1/disk.qcow2', /shorthand or encoded/],
    ['http://example.org:8080/disk.qcow2', /Port 8080 is refused/],
    ['file:///etc/passwd', /Only http and https/],
    ['http://user:pw@example.org/disk.qcow2', /credentials/],
    ['http://localhost/disk.qcow2', /localhost names the loopback interface/], // RFC 6761, before any lookup
  ];
  for (const [uri, message] of refusedAtCall) {
    it(`refuses ${uri} at the import call with 400, and the image stays queued`, async () => {
      const image = await newImage('ssrf');
      const response = await webDownload(image.id, uri);
      assert.equal(response.status, 400);
      assert.match(response.body.error.message, /^URI for web-download does not pass filtering: /);
      assert.match(response.body.error.message, message);
      assert.equal((await client.getImage(image.id)).body.status, 'queued');
    });
  }

  const refusedInFlight: [string, string, RegExp][] = [
    ['a redirect to loopback', '/to-loopback', /127\.0\.0\.1 is a loopback address/],
    ['a redirect to the metadata address', '/to-metadata', /metadata/],
  ];
  for (const [label, uri, message] of refusedInFlight) {
    it(`refuses ${label}: the image is killed with the reason`, async () => {
      const image = await newImage('ssrf-dns');
      const response = await webDownload(image.id, uri.startsWith('/') ? base + uri : uri);
      assert.equal(response.status, 202);
      const done = await waitDone(client, image.id);
      assert.equal(done.status, 'killed');
      assert.equal(done.pir_failure.stage, 'import');
      assert.equal(done.pir_failure.code, 'address_refused');
      assert.match(done.pir_failure.message, message);
    });
  }

  it('kills the image when the URL answers an error or the image is over PIR_MAX_IMAGE_SIZE', async () => {
    const missing = await newImage('missing');
    assert.equal((await webDownload(missing.id, `${base}/nothing`)).status, 202);
    const gone = await waitDone(client, missing.id);
    assert.equal(gone.status, 'killed');
    assert.equal(gone.pir_failure.code, 'upstream_status');
    assert.match(gone.pir_failure.message, /answered 404/);
    const huge = await newImage('huge');
    assert.equal((await webDownload(huge.id, `${base}/huge`)).status, 202);
    const big = await waitDone(client, huge.id);
    assert.equal(big.status, 'killed');
    assert.equal(big.pir_failure.code, 'image_too_large');
  });

  it('imports with the real glance CLI: image-create-via-import --import-method web-download', { skip: !haveGlance && !inCI ? 'no glance command (python3-glanceclient)' : false }, async () => {
    const home = join(dir, 'glance-home'); // the CLI caches the image schema under ~/.glanceclient
    await mkdir(home, { recursive: true });
    // stdin closed (<&-): the CLI refuses web-download when stdin could carry data.
    const { stdout } = await run('bash', ['-c', 'exec glance "$@" <&-', 'glance', '--os-image-url', client.baseUrl, `--os-auth-token=${TOKEN}`, 'image-create-via-import',
      '--name', 'cli-webdl', '--disk-format', 'qcow2', '--container-format', 'bare', '--import-method', 'web-download', '--uri', `${base}/disk.qcow2`],
    { env: { PATH: process.env.PATH ?? '', HOME: home } });
    const id = /^\|\s*id\s*\|\s*([0-9a-f-]{36})\s*\|$/m.exec(stdout)?.[1];
    assert.ok(id, stdout);
    const done = await waitDone(client, id);
    assert.equal(done.status, 'active', JSON.stringify(done.pir_failure));
    assert.equal(done.checksum, expected.md5);
  });

  it('runs the legacy import task (POST /v2/tasks) from the real glance CLI: task-create, task-show, to an active image', { skip: !haveGlance && !inCI ? 'no glance command (python3-glanceclient)' : false }, async () => {
    const home = join(dir, 'glance-home-tasks');
    await mkdir(home, { recursive: true });
    const glance = (...args: string[]) => run('glance', ['--os-image-url', client.baseUrl, `--os-auth-token=${TOKEN}`, ...args], { env: { PATH: process.env.PATH ?? '', HOME: home } });
    const input = { import_from: `${base}/disk.qcow2`, import_from_format: 'qcow2', image_properties: { name: 'legacy-task', container_format: 'bare', os_distro: 'debian' } };
    const created = (await glance('task-create', '--type', 'import', '--input', JSON.stringify(input))).stdout;
    const taskId = /^\|\s*id\s*\|\s*([0-9a-f-]{36}\.0)\s*\|$/m.exec(created)?.[1];
    assert.ok(taskId, created);
    assert.match(created, /^\|\s*type\s*\|\s*import\s*\|$/m);
    const imageId = taskId.slice(0, 36);
    const done = await waitDone(client, imageId);
    assert.equal(done.status, 'active', JSON.stringify(done.pir_failure));
    assert.deepEqual([done.name, done.disk_format, done.os_distro, done.checksum, done.os_hash_value, done.virtual_size], ['legacy-task', 'qcow2', 'debian', expected.md5, expected.sha512, virtualSize]);
    const shown = (await glance('task-show', taskId)).stdout;
    assert.match(shown, /^\|\s*status\s*\|\s*success\s*\|$/m);
    assert.match(shown, new RegExp(`"image_id": "${imageId}"`));
    // A URL the egress rules refuse is refused at once (400), and no image is made for it.
    const count = (await client.call('GET', '/v2/images?limit=1000')).body.images.length;
    await assert.rejects(glance('task-create', '--type', 'import', '--input', JSON.stringify({ ...input, import_from: 'http://169.254.169.254/latest/' })),
      (error: Error & { stderr?: string }) => /metadata|link-local/.test(String(error.stderr)));
    assert.equal((await client.call('GET', '/v2/images?limit=1000')).body.images.length, count);
  });

  it("answers Glance's preconditions: 409 unless queued with both formats, 400 without a URI or for an unknown method", async () => {
    const noFormats = await client.createImage({ name: 'no formats' });
    const r1 = await webDownload(noFormats.id, `${base}/disk.qcow2`);
    assert.equal(r1.status, 409);
    assert.match(r1.body.error.message, /container_format' needs to be set before import/);
    const image = await newImage('twice');
    assert.equal((await webDownload(image.id, `${base}/disk.qcow2`)).status, 202);
    const again = await webDownload(image.id, `${base}/disk.qcow2`);
    assert.equal(again.status, 409);
    assert.match(again.body.error.message, /needs to be in 'queued' state to use the 'web-download' method/);
    await waitDone(client, image.id);
    const noUri = await webDownload((await newImage('no uri')).id, undefined);
    assert.equal(noUri.status, 400);
    assert.match(noUri.body.error.message, /method\.uri/);
    const unknown = await client.call('POST', `/v2/images/${image.id}/import`, { method: { name: 'glance-download' } });
    assert.equal(unknown.status, 400);
    assert.match(unknown.body.error.message, /Unknown import method name 'glance-download'/);
  });
});
