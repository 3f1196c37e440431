/**
 * Embedded mode end to end: a real `pir serve` process, real images made with qemu-img,
 * driven over HTTP (and by the real glance CLI in glance-cli.test.ts).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ensureQemuImg, makeImage, makeTempDir, removeDir } from '../support/images.js';
import { PirClient } from '../support/pir-client.js';
import { freePort, startPirProcess, testLogDir, waitFor, type PirProcess } from '../support/pir-process.js';

const logDir = testLogDir('embedded');
import { assertActiveAsExpected, buildMatrix, makeSlowGzip, SLOW_GZIP_ENV, SLOW_GZIP_SIZE, waitForEmptyStaging, type Fixture } from './upload-matrix.js';

const TOKEN = 'e2e-admin-token-0123456789abcdefgh';

async function startServe(dataDir: string, extraEnv: Record<string, string> = {}): Promise<{ pir: PirProcess; client: PirClient }> {
  const port = await freePort();
  const pir = await startPirProcess('serve', { PIR_DATA_DIR: dataDir, PIR_PORT: String(port), PIR_ADMIN_TOKEN: TOKEN, ...extraEnv }, logDir, `serve-${port}`);
  return { pir, client: new PirClient(`http://127.0.0.1:${port}`, TOKEN) };
}

describe('embedded mode (pir serve)', () => {
  let dir: string;
  let pir: PirProcess;
  let client: PirClient;
  let matrix: Fixture[];

  before(async () => {
    ensureQemuImg();
    dir = await makeTempDir('pir-e2e-embedded-');
    matrix = await buildMatrix(dir, 6);
    ({ pir, client } = await startServe(join(dir, 'data'), { PIR_MAX_IMAGE_SIZE: '64MiB' }));
  });
  after(async () => {
    await pir?.stop();
    await removeDir(dir);
  });

  it('answers GET / with 300 and GET /versions with 200, and needs a token for /v2', async () => {
    const root = await fetch(`${client.baseUrl}/`);
    assert.equal(root.status, 300);
    const versions = await (await fetch(`${client.baseUrl}/versions`)).json() as { versions: { status: string }[] };
    assert.ok(versions.versions.some((v) => v.status === 'CURRENT'));
    const anonymous = await fetch(`${client.baseUrl}/v2/images`);
    assert.equal(anonymous.status, 401);
    const wrong = await fetch(`${client.baseUrl}/v2/images`, { headers: { 'x-auth-token': 'nope' } });
    assert.equal(wrong.status, 401);
  });

  it('takes the upload matrix concurrently to active with the right checksums and virtual sizes', async () => {
    const ids = await Promise.all(matrix.map(async (fixture) => {
      const image = await client.createImage({ name: fixture.label, disk_format: fixture.disk_format, container_format: fixture.container_format });
      assert.equal(image.status, 'queued');
      const response = await client.putData(image.id, fixture.path);
      assert.equal(response.status, 204, `${fixture.label}: ${JSON.stringify(response.body)}`);
      return image.id as string;
    }));
    for (const [i, id] of ids.entries()) await assertActiveAsExpected(client, id, matrix[i]);
    await waitForEmptyStaging(join(dir, 'data'));
  });

  it('answers 202 at once with Prefer: respond-async, and the image becomes active', async () => {
    const fixture = matrix[1];
    const image = await client.createImage({ name: 'async', disk_format: fixture.disk_format, container_format: fixture.container_format });
    const response = await client.putData(image.id, fixture.path, 'file', { prefer: 'respond-async' });
    assert.equal(response.status, 202);
    await client.waitSettled(image.id);
    await assertActiveAsExpected(client, image.id, fixture);
  });

  it('imports a staged image with glance-direct', async () => {
    const fixture = matrix[2];
    const image = await client.createImage({ name: 'staged', disk_format: fixture.disk_format, container_format: fixture.container_format });
    assert.equal((await client.putData(image.id, fixture.path, 'stage')).status, 204);
    assert.equal((await client.getImage(image.id)).body.status, 'uploading');
    const imported = await client.call('POST', `/v2/images/${image.id}/import`, { method: { name: 'glance-direct' } });
    assert.equal(imported.status, 202);
    await client.waitSettled(image.id);
    await assertActiveAsExpected(client, image.id, fixture);
    const tasks = await client.call('GET', `/v2/images/${image.id}/tasks`);
    assert.equal(tasks.body.tasks[0].status, 'success');
  });

  it('refuses a qcow2 with a backing file, with the reason, and stores nothing', async () => {
    const evil = await makeImage(dir, 'qcow2', { backing: '/etc/passwd', backingFormat: 'raw', unsafe: true, size: '1G' });
    const image = await client.createImage({ name: 'evil', disk_format: 'qcow2', container_format: 'bare' });
    const response = await client.putData(image.id, evil);
    assert.equal(response.status, 415, 'Glance answers an unsafe image 415');
    assert.equal(response.body.error.error_code, 'qcow2_backing_file');
    assert.match(response.body.error.message, /backing file/);
    const shown = (await client.getImage(image.id)).body;
    assert.equal(shown.status, 'killed');
    assert.deepEqual({ stage: shown.pir_failure.stage, code: shown.pir_failure.code }, { stage: 'inspect', code: 'qcow2_backing_file' });
    const tasks = (await client.call('GET', `/v2/images/${image.id}/tasks`)).body.tasks;
    assert.equal(tasks[0].status, 'failure');
    assert.match(tasks[0].message, /backing file/);
    assert.ok(!(await readdir(join(dir, 'data', 'images'))).includes(image.id));
    await waitForEmptyStaging(join(dir, 'data'));
  });

  it('refuses a qcow2 declared as raw, and a Content-MD5 or os_hash_value that does not match', async () => {
    const qcow2 = matrix[1];
    const mismatch = await client.createImage({ name: 'mismatch', disk_format: 'raw', container_format: 'bare' });
    const refused = await client.putData(mismatch.id, qcow2.path);
    assert.equal(refused.status, 415);
    assert.equal(refused.body.error.error_code, 'format_mismatch');

    const md5 = await client.createImage({ name: 'md5', disk_format: 'qcow2', container_format: 'bare' });
    const wrongMd5 = createHash('md5').update('something else').digest('base64');
    const badMd5 = await client.putData(md5.id, qcow2.path, 'file', { 'content-md5': wrongMd5 });
    assert.equal(badMd5.status, 400);
    assert.equal(badMd5.body.error.error_code, 'checksum_mismatch');

    const goodMd5 = await client.createImage({ name: 'md5-ok', disk_format: 'qcow2', container_format: 'bare' });
    const rightMd5 = Buffer.from(qcow2.expected.md5, 'hex').toString('base64');
    assert.equal((await client.putData(goodMd5.id, qcow2.path, 'file', { 'content-md5': rightMd5 })).status, 204);

    const hash = await client.createImage({ name: 'hash', disk_format: 'qcow2', container_format: 'bare', os_hash_algo: 'sha512', os_hash_value: 'ab'.repeat(64) });
    const badHash = await client.putData(hash.id, qcow2.path);
    assert.equal(badHash.status, 400);
    assert.equal(badHash.body.error.error_code, 'checksum_mismatch');
    assert.equal((await client.getImage(hash.id)).body.status, 'killed');
  });

  it('verifies digests sent as trailers of a chunked upload (RFC 9530 Repr-Digest, Content-MD5) and refuses a malformed one', async () => {
    const qcow2 = matrix[1];
    const base64 = (hex: string) => Buffer.from(hex, 'hex').toString('base64');
    const right = { 'Repr-Digest': `sha-512=:${base64(qcow2.expected.sha512)}:`, 'Content-MD5': base64(qcow2.expected.md5) };

    const good = await client.createImage({ name: 'trailer-ok', disk_format: 'qcow2', container_format: 'bare' });
    assert.equal((await putWithTrailers(client.baseUrl, good.id, qcow2.path, right)).status, 204);
    assert.equal((await client.getImage(good.id)).body.status, 'active');

    const wrongSha = await client.createImage({ name: 'trailer-sha', disk_format: 'qcow2', container_format: 'bare' });
    const lying = await putWithTrailers(client.baseUrl, wrongSha.id, qcow2.path, { 'Repr-Digest': `sha-512=:${base64('cd'.repeat(64))}:` });
    assert.equal(lying.status, 400);
    assert.equal(lying.body.error.error_code, 'checksum_mismatch');
    assert.equal((await client.getImage(wrongSha.id)).body.status, 'killed');

    const wrongMd5 = await client.createImage({ name: 'trailer-md5', disk_format: 'qcow2', container_format: 'bare' });
    const badMd5 = await putWithTrailers(client.baseUrl, wrongMd5.id, qcow2.path, { 'Content-MD5': base64('ef'.repeat(16)) });
    assert.equal(badMd5.body.error.error_code, 'checksum_mismatch');

    const malformed = await client.createImage({ name: 'trailer-bad', disk_format: 'qcow2', container_format: 'bare' });
    const garbage = await putWithTrailers(client.baseUrl, malformed.id, qcow2.path, { 'Repr-Digest': 'sha-512=not-base64' });
    assert.equal(garbage.status, 400);
    assert.equal(garbage.body.error.error_code, 'bad_digest');
    assert.equal((await client.getImage(malformed.id)).body.status, 'queued', 'a refused trailer leaves the image to upload again');
  });

  it('cuts off an upload over PIR_MAX_IMAGE_SIZE with 413 and puts the image back in queued', async () => {
    const big = join(dir, 'big.raw');
    await writeFile(big, Buffer.alloc(65 * 2 ** 20, 1));
    const image = await client.createImage({ name: 'big', disk_format: 'raw', container_format: 'bare' });
    const response = await client.putData(image.id, big).catch((error: Error) => ({ status: 0, body: error.message, headers: {} }));
    // The server answers 413 and closes; a client still sending may see the reset instead.
    assert.ok(response.status === 413 || response.status === 0, `status ${response.status}`);
    await waitFor(async () => (await client.getImage(image.id)).body.status === 'queued', 10_000, 'image back in queued');
    await waitForEmptyStaging(join(dir, 'data'));
    const declared = await client.createImage({ name: 'declared-big', disk_format: 'raw', container_format: 'bare' });
    const early = await client.call('PUT', `/v2/images/${declared.id}/file`, undefined, { 'content-type': 'application/octet-stream', 'x-openstack-image-size': String(2 ** 40) });
    assert.equal(early.status, 413);
    assert.equal(early.body.error.error_code, 'image_too_large');
  });

  it('puts an image back in queued, with no staging file, when the client disconnects mid-upload', async () => {
    const image = await client.createImage({ name: 'vanishing', disk_format: 'raw', container_format: 'bare' });
    const url = new URL(`${client.baseUrl}/v2/images/${image.id}/file`);
    const req = request(url, { method: 'PUT', headers: { 'x-auth-token': TOKEN, 'content-type': 'application/octet-stream', 'content-length': String(32 * 2 ** 20) } });
    req.on('error', () => {});
    req.write(Buffer.alloc(4 * 2 ** 20, 7));
    await waitFor(async () => (await client.getImage(image.id)).body.status === 'saving', 10_000, 'saving');
    req.destroy();
    await waitFor(async () => (await client.getImage(image.id)).body.status === 'queued', 10_000, 'queued after the disconnect');
    await waitForEmptyStaging(join(dir, 'data'));
    // And the image can be uploaded again.
    assert.equal((await client.putData(image.id, matrix[0].path)).status, 204);
  });

  it('refuses a second upload to an active image, serves ranges, and deletes bytes with the image', async () => {
    const fixture = matrix[0];
    const image = await client.createImage({ name: 'ranges', disk_format: 'raw', container_format: 'bare' });
    assert.equal((await client.putData(image.id, fixture.path)).status, 204);
    // A small body: a 409 answered before a large body is read may reach the client as a broken pipe.
    const again = await fetch(`${client.baseUrl}/v2/images/${image.id}/file`, { method: 'PUT', headers: { 'x-auth-token': TOKEN, 'content-type': 'application/octet-stream' }, body: new Uint8Array(512) });
    assert.equal(again.status, 409);
    const part = await fetch(`${client.baseUrl}/v2/images/${image.id}/file`, { headers: { 'x-auth-token': TOKEN, range: 'bytes=65536-65545' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 65536-65545/${fixture.expected.size}`);
    assert.equal((await part.arrayBuffer()).byteLength, 10);
    const bad = await fetch(`${client.baseUrl}/v2/images/${image.id}/file`, { headers: { 'x-auth-token': TOKEN, range: `bytes=${fixture.expected.size + 5}-` } });
    assert.equal(bad.status, 416);
    assert.equal((await client.call('DELETE', `/v2/images/${image.id}`)).status, 204);
    assert.equal((await client.getImage(image.id)).status, 404);
    assert.ok(!(await readdir(join(dir, 'data', 'images'))).includes(image.id));
  });

  it('lists images with limit and marker paging', async () => {
    const first = await client.call('GET', '/v2/images?limit=2');
    assert.equal(first.body.images.length, 2);
    assert.ok(first.body.next);
    const second = await client.call('GET', first.body.next);
    assert.equal(second.body.images.length, 2);
    const seen = new Set([...first.body.images, ...second.body.images].map((i: { id: string }) => i.id));
    assert.equal(seen.size, 4);
  });
});

/** A `pir serve` caught in the middle of unpacking an image that takes seconds to unpack. */
async function serveWithImportInUnpack(prefix: string) {
  const dir = await makeTempDir(prefix);
  const dataDir = join(dir, 'data');
  const gz = makeSlowGzip(dir);
  const { pir, client } = await startServe(dataDir, SLOW_GZIP_ENV);
  const image = await client.createImage({ name: prefix, disk_format: 'raw', container_format: 'compressed' });
  assert.equal((await client.putData(image.id, gz, 'file', { prefer: 'respond-async' })).status, 202);
  await waitFor(async () => (await client.getImage(image.id)).body.pir_pipeline?.stages.unpack.status === 'running', 20_000, 'unpack running');
  return { dir, dataDir, pir, imageId: image.id as string };
}

describe('embedded mode: a restart in the middle of an import', () => {
  it('resumes the import after the process was killed, and the image becomes active once', async () => {
    const { dir, dataDir, pir: killed, imageId } = await serveWithImportInUnpack('pir-e2e-restart-');
    await killed.kill();
    const { pir, client } = await startServe(dataDir, SLOW_GZIP_ENV);
    try {
      const settled = await client.waitSettled(imageId, 120_000);
      assert.equal(settled.status, 'active', JSON.stringify(settled.pir_failure));
      assert.equal(settled.size, SLOW_GZIP_SIZE);
      assert.equal(settled.pir_pipeline.run, 2, 'the import resumed under a new run');
      const zeros = createHash('md5');
      const block = Buffer.alloc(2 ** 20);
      for (let i = 0; i < SLOW_GZIP_SIZE / block.length; i++) zeros.update(block);
      assert.equal(settled.checksum, zeros.digest('hex'));
      assert.deepEqual(await readdir(join(dataDir, 'images')), [imageId]);
      await waitForEmptyStaging(dataDir);
    } finally {
      await pir.stop();
      await removeDir(dir);
    }
  });
});

describe('embedded mode: graceful shutdown', () => {
  it('finishes the stage that is running when SIGTERM comes, exits 0, and the image is active after a restart', async () => {
    const { dir, dataDir, pir: stopped, imageId } = await serveWithImportInUnpack('pir-e2e-sigterm-');
    const code = await stopped.stop(); // SIGTERM, and wait for the exit
    assert.equal(code, 0, stopped.output().slice(-2000));
    assert.match(stopped.output(), /"msg":"stopped"/);
    const { pir, client } = await startServe(dataDir, SLOW_GZIP_ENV);
    try {
      const settled = await client.waitSettled(imageId, 60_000);
      assert.equal(settled.status, 'active', JSON.stringify(settled.pir_failure));
      assert.equal(settled.pir_pipeline.stages.unpack.attempts, 1, 'the unpack stage was finished, not started again');
    } finally {
      await pir.stop();
      await removeDir(dir);
    }
  });
});

describe('embedded mode: an upload that ends while PIR stops', () => {
  it('is answered (204, or 202 while its image settles), not cut off: the requests drain before the job queue closes', async () => {
    const dir = await makeTempDir('pir-e2e-sigterm-upload-');
    const { pir, client } = await startServe(join(dir, 'data'));
    try {
      const image = await client.createImage({ name: 'ends during stop', disk_format: 'raw', container_format: 'bare' });
      const data = Buffer.alloc(8 * 1024 * 1024, 7);
      const url = new URL(`/v2/images/${image.id}/file`, client.baseUrl);
      const answered = new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(url, { method: 'PUT', headers: { 'x-auth-token': TOKEN, 'content-type': 'application/octet-stream', 'content-length': String(data.length) } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
          res.on('error', reject);
        });
        req.on('error', reject);
        // Half of the body, then SIGTERM, then the rest: the last byte comes while PIR stops.
        req.write(data.subarray(0, data.length / 2), () => {
          setTimeout(() => {
            pir.child.kill('SIGTERM');
            setTimeout(() => req.end(data.subarray(data.length / 2)), 300);
          }, 200);
        });
      });
      const started = Date.now();
      const { status, body } = await answered;
      assert.ok(status === 204 || status === 202, `answered ${status}: ${body}\n${pir.output().slice(-3000)}`);
      assert.ok(Date.now() - started < 20_000, 'answered without waiting out the shutdown grace');
      await waitFor(() => pir.child.exitCode !== null, 40_000);
      assert.equal(pir.child.exitCode, 0, pir.output().slice(-2000));
      assert.doesNotMatch(pir.output(), /job queue is closed/);
      const again = await startServe(join(dir, 'data'));
      try {
        const settled = await again.client.waitSettled(image.id, 60_000);
        assert.equal(settled.status, 'active');
        assert.equal(settled.checksum, createHash('md5').update(data).digest('hex'));
      } finally {
        await again.pir.stop();
      }
    } finally {
      await pir.stop();
      await removeDir(dir);
    }
  });
});

/** PUT …/file as a chunked body whose digests follow it as trailers (what `pir image create` sends). */
async function putWithTrailers(baseUrl: string, id: string, file: string, trailers: Record<string, string>): Promise<{ status: number; body: any }> {
  const url = new URL(`/v2/images/${id}/file`, baseUrl);
  const headers = { 'x-auth-token': TOKEN, 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked', trailer: Object.keys(trailers).join(', ') };
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'PUT', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : null });
      });
    });
    req.on('error', reject);
    createReadStream(file).on('end', () => {
      req.addTrailers(trailers);
      req.end();
    }).on('error', reject).pipe(req, { end: false });
  });
}
