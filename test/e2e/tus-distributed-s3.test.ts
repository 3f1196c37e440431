/**
 * tus resumable uploads on S3 across API processes: two `pir api` processes and a `pir worker`
 * that share no filesystem, on the real SeaweedFS, Kafka, Redis and FerretDB.
 * - tus-js-client through a proxy that cuts the connection at random points and, after each cut,
 *   sends the client to the other api: the upload ends on the api that did not create it;
 * - an api SIGKILLed mid-PATCH: the client resumes on the other api from the committed offset,
 *   once the dead holder's lease expired;
 * - two PATCHes racing on two processes: one appends, the other gets 423 (or 409 after it);
 * - termination aborts the multipart upload;
 * - embedded mode (pir serve on S3): random cuts, and a resume after the process was killed.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tus from 'tus-js-client';
import { S3BlobStore } from '../../infra/storage/s3-blob-store.js';
import { cuttingProxy } from '../support/cutting-proxy.js';
import { makeTempDir, removeDir } from '../support/images.js';
import { PirClient } from '../support/pir-client.js';
import { freePort, startPirProcess, testLogDir, waitFor, type PirProcess } from '../support/pir-process.js';
import { inCI, serviceUp, services, uniqueName, distributedS3Env } from '../support/services.js';

const logDir = testLogDir('tus-distributed-s3');
const TOKEN = 'e2e-tus-distributed-s3-token-0123456789';
const MiB = 1024 * 1024;
const TUS = { 'tus-resumable': '1.0.0', 'x-auth-token': TOKEN };
const PATCH_HEADERS = { ...TUS, 'content-type': 'application/offset+octet-stream' };
const needed = ['redis', 'kafka', 'mongodb', 's3'] as const;
const missing = (await Promise.all(needed.map(async (name) => ({ name, ...(await serviceUp(name)) })))).filter((s) => !s.up);
const missingText = missing.map((s) => `${s.name} (${s.where})`).join(', ');

const sha512 = (b: Buffer) => createHash('sha512').update(b).digest('hex');
const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

function rawImage(size: number): Buffer {
  const data = randomBytes(size);
  data.fill(0, 0, 4096); // no format magic at the start: a raw disk
  return data;
}

describe('tus on S3 across two api processes (distributed)', { skip: missing.length && !inCI ? `not running: ${missingText}` : false }, () => {
  let dir: string;
  let env: Record<string, string>;
  const processes: PirProcess[] = [];
  const apis: { process: PirProcess; port: number; base: string }[] = [];
  let client: PirClient;
  let store: S3BlobStore;
  const run = uniqueName('e2etus').replace(/[^A-Za-z0-9]/g, '');
  const prefix = `${run}/`;

  const start = async (role: 'api' | 'worker', name: string, extra: Record<string, string> = {}) => {
    const p = await startPirProcess(role, { ...env, PIR_DATA_DIR: join(dir, `private-${name}`), ...extra }, logDir, name);
    processes.push(p);
    return p;
  };
  const startApi = async (name: string) => {
    const port = await freePort();
    const api = { process: await start('api', name, { PIR_PORT: String(port) }), port, base: `http://127.0.0.1:${port}` };
    apis.push(api);
    return api;
  };
  const call = (base: string, path: string, init: RequestInit = {}) => fetch(`${base}${path}`, { ...init, headers: { 'x-auth-token': TOKEN, ...(init.headers as Record<string, string>) } });
  const keysOf = async (imageId: string) => (await store.list(`staging/${imageId}.`)).map((b) => b.key).sort();
  const createUpload = async (base: string, imageId: string, length: number) => {
    const created = await call(base, `/v2/images/${imageId}/uploads`, { method: 'POST', headers: { ...TUS, 'upload-length': String(length) } });
    assert.equal(created.status, 201, await created.text());
    return created.headers.get('location')!;
  };
  const expectActive = async (imageId: string, data: Buffer) => {
    const settled = await client.waitSettled(imageId, 120_000);
    assert.equal(settled.status, 'active', JSON.stringify(settled.pir_failure));
    assert.equal(settled.size, data.length);
    assert.equal(settled.os_hash_value, sha512(data));
    assert.equal(settled.checksum, md5(data));
    const downloaded = await client.downloadDigests(imageId);
    assert.equal(downloaded.sha512, sha512(data), 'the stored object holds exactly the bytes sent');
    // The multipart upload became the one object; the commit object is gone.
    await waitFor(async () => (await keysOf(imageId)).length === 1, 20_000, 'one object left');
    assert.deepEqual(await keysOf(imageId), [`staging/${imageId}.${settled.pir_pipeline.run}.upload`]);
  };

  before(async () => {
    if (missing.length) throw new Error(`CI is set but these services are not running: ${missingText}. Start them with bash infra/local/services.sh start`);
    dir = await makeTempDir('pir-e2e-tus-s3-');
    env = {
      PIR_ADMIN_TOKEN: TOKEN,
      ...distributedS3Env(run, prefix),
    };
    store = new S3BlobStore({ ...services.s3, prefix });
    await startApi('api-a');
    await startApi('api-b');
    await start('worker', 'worker');
    client = new PirClient(apis[0]!.base, TOKEN);
  });

  after(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    if (store) {
      for (const blob of await store.list('')) await store.delete(blob.key).catch(() => {});
      store.close();
    }
    if (dir) await removeDir(dir);
  });

  it('tus-js-client, cut at random points, resumes each time on the other api process', async () => {
    const data = rawImage(22 * MiB + randomInt(2048) * 512); // raw: whole sectors
    const image = await client.createImage({ name: 'tus-cut', disk_format: 'raw', container_format: 'bare' });
    // Three cuts at random points of whichever connection gets that far (headers included).
    const cuts = [randomInt(256 * 1024, 6 * MiB), randomInt(256 * 1024, 6 * MiB), randomInt(256 * 1024, 6 * MiB)];
    const proxy = await cuttingProxy([apis[0]!.port, apis[1]!.port], cuts);
    try {
      await new Promise<void>((resolve, reject) => {
        new tus.Upload(data, {
          endpoint: `http://127.0.0.1:${proxy.port}/v2/images/${image.id}/uploads`,
          headers: { 'X-Auth-Token': TOKEN },
          retryDelays: [0, 200, 500, 1000, 2000, 4000],
          uploadSize: data.length,
          onError: reject,
          onSuccess: () => resolve(),
        }).start();
      });
      assert.equal(proxy.cuts(), cuts.length, `cut at ${cuts.join(', ')}`);
      assert.ok(proxy.connections() > cuts.length, 'the client reconnected after each cut');
    } finally {
      await proxy.close();
    }
    await expectActive(image.id, data);
    // A created the upload and took bytes until the first cut; after the last cut the client
    // finished on B, which never held the upload's hash state: it restored what A had saved.
    // (Which process takes the PATCHes in between depends on where the cuts fall, 423s included.)
    const restores = (api: { process: PirProcess }) => api.process.output().split('\n')
      .filter((line) => line.includes(`"image_id":"${image.id}"`) && line.includes("restored a resumable upload's hash state")).length;
    assert.ok(restores(apis[1]!) >= 1, 'api B restored the hash state api A had saved');
    console.log(`# cut at ${cuts.join(', ')} bytes; ${proxy.connections()} connections; hash state restored ${restores(apis[0]!)}× on A, ${restores(apis[1]!)}× on B`);
  });

  it('an api killed in the middle of a PATCH: the upload resumes on the other api from the committed offset', async () => {
    const doomed = await startApi('api-doomed');
    const survivor = apis[1]!;
    const data = rawImage(30 * MiB);
    const image = await client.createImage({ name: 'tus-killed', disk_format: 'raw', container_format: 'bare' });
    const location = await createUpload(doomed.base, image.id, data.length);
    const req = request({ host: '127.0.0.1', port: doomed.port, method: 'PATCH', path: location, headers: { ...PATCH_HEADERS, 'upload-offset': '0', 'content-length': String(data.length) } });
    req.on('error', () => {}); // the api dies under it
    req.on('response', (res) => res.resume());
    // 20 MiB sent: at least two 8 MiB parts are committed by then.
    for (let sent = 0; sent < 20 * MiB; sent += MiB) {
      if (!req.write(data.subarray(sent, sent + MiB))) await new Promise((r) => req.once('drain', r));
    }
    await waitFor(async () => {
      const head = await call(survivor.base, location, { method: 'HEAD', headers: TUS });
      return Number(head.headers.get('upload-offset')) >= 16 * MiB;
    }, 30_000, 'two parts committed');
    await doomed.process.kill();
    req.destroy();
    const head = await call(survivor.base, location, { method: 'HEAD', headers: TUS });
    assert.equal(head.status, 200);
    const offset = Number(head.headers.get('upload-offset'));
    assert.ok(offset >= 16 * MiB && offset <= 20 * MiB, `resumes from what was committed (${offset})`);
    // The dead holder's lease blocks PATCHes (423) until it expires, then the other api appends.
    let status = 0;
    let locked = 0;
    const deadline = Date.now() + 40_000;
    while (Date.now() < deadline) {
      // A 423 sent before the body was read may reach the client as a broken pipe instead.
      const rest = await call(survivor.base, location, { method: 'PATCH', headers: { ...PATCH_HEADERS, 'upload-offset': String(offset) }, body: new Uint8Array(data.subarray(offset)) })
        .catch((error: Error) => { if (error.message === 'fetch failed') return null; throw error; });
      status = rest?.status ?? 0;
      if (rest && status !== 423) {
        assert.equal(status, 204, await rest.text());
        break;
      }
      if (rest) assert.equal((await rest.json()).error.error_code, 'upload_locked');
      locked += 1;
      await new Promise((r) => setTimeout(r, 1000));
    }
    assert.equal(status, 204);
    await expectActive(image.id, data);
    assert.match(survivor.process.output(), new RegExp(`"image_id":"${image.id}"[^\\n]*restored a resumable upload's hash state`));
    console.log(`# resumed at ${offset} of ${data.length} bytes after ${locked} refusals (423, or a broken pipe) while the dead api's lease lived`);
  });

  it('two PATCHes racing on two api processes: only one appends, the other is refused with 423', async () => {
    const [a, b] = [apis[0]!, apis[1]!];
    const data = rawImage(12 * MiB);
    const image = await client.createImage({ name: 'tus-race', disk_format: 'raw', container_format: 'bare' });
    const location = await createUpload(a.base, image.id, data.length);
    // A slow PATCH on api A: 1 MiB sent, then it holds.
    const slow = request({ host: '127.0.0.1', port: a.port, method: 'PATCH', path: location, headers: { ...PATCH_HEADERS, 'upload-offset': '0', 'content-length': String(data.length) } });
    const slowAnswer = new Promise<number>((resolve, reject) => { slow.on('response', (res) => { res.resume(); resolve(res.statusCode!); }); slow.on('error', reject); });
    slow.write(data.subarray(0, MiB));
    await new Promise((r) => setTimeout(r, 1000));
    // Meanwhile, the same upload on api B (a client that believes its first connection died).
    // (A small body: a refusal sent before a large body is read may reach the client as a broken pipe.)
    const rival = await call(b.base, location, { method: 'PATCH', headers: { ...PATCH_HEADERS, 'upload-offset': '0' }, body: new Uint8Array(data.subarray(0, 64 * 1024)) });
    assert.equal(rival.status, 423);
    const body = await rival.json();
    assert.equal(body.error.error_code, 'upload_locked');
    assert.equal(rival.headers.get('tus-resumable'), '1.0.0');
    // Nor may B terminate the upload while A appends to it.
    assert.equal((await call(b.base, location, { method: 'DELETE', headers: TUS })).status, 423);
    slow.end(data.subarray(MiB));
    assert.equal(await slowAnswer, 204);
    await expectActive(image.id, data);

    // Both at once, from the start: exactly one appends; the loser gets 423, or 409 when it came after.
    const data2 = rawImage(10 * MiB);
    const image2 = await client.createImage({ name: 'tus-race-2', disk_format: 'raw', container_format: 'bare' });
    const location2 = await createUpload(a.base, image2.id, data2.length);
    // The loser's refusal may come before its body was read, and reach it as a broken pipe (0).
    const both = await Promise.all([a, b].map((api) => call(api.base, location2, { method: 'PATCH', headers: { ...PATCH_HEADERS, 'upload-offset': '0' }, body: new Uint8Array(data2) })
      .then((r) => r.status, (error: Error) => { if (error.message === 'fetch failed') return 0; throw error; })));
    const statuses = both.sort();
    assert.equal(statuses.filter((s) => s === 204).length, 1, `one winner (${statuses.join(', ')})`);
    assert.ok([0, 409, 423, 404].includes(statuses.find((s) => s !== 204)!), `the loser is refused (${statuses.join(', ')})`);
    await expectActive(image2.id, data2);
  });

  it('an image deleted on the other api while a PATCH streams: the PATCH answers 410 image_deleted', async () => {
    const [a, b] = [apis[0]!, apis[1]!];
    const data = rawImage(24 * MiB);
    const image = await client.createImage({ name: 'tus-deleted', disk_format: 'raw', container_format: 'bare' });
    const location = await createUpload(a.base, image.id, data.length);
    const slow = request({ host: '127.0.0.1', port: a.port, method: 'PATCH', path: location, headers: { ...PATCH_HEADERS, 'upload-offset': '0', 'content-length': String(data.length) } });
    const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
      slow.on('response', (res) => { let body = ''; res.on('data', (c: Buffer) => { body += c.toString(); }); res.on('end', () => resolve({ status: res.statusCode!, body })); });
      slow.on('error', reject);
    });
    slow.write(data.subarray(0, 10 * MiB)); // past the first 8 MiB part: a multipart upload is under way
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal((await call(b.base, `/v2/images/${image.id}`, { method: 'DELETE' })).status, 204);
    slow.end(data.subarray(10 * MiB));
    const { status, body } = await answer;
    assert.equal(status, 410, body);
    assert.equal(JSON.parse(body).error.error_code, 'image_deleted');
    await waitFor(async () => (await keysOf(image.id)).length === 0, 20_000, 'nothing left in the bucket');
  });

  it('termination aborts the multipart upload and leaves nothing in the bucket', async () => {
    const data = rawImage(12 * MiB);
    const image = await client.createImage({ name: 'tus-terminated', disk_format: 'raw', container_format: 'bare' });
    const location = await createUpload(apis[0]!.base, image.id, data.length);
    const first = await call(apis[0]!.base, location, { method: 'PATCH', headers: { ...PATCH_HEADERS, 'upload-offset': '0' }, body: new Uint8Array(data.subarray(0, 9 * MiB)) });
    assert.equal(first.status, 204);
    assert.ok((await keysOf(image.id)).length > 0, 'a multipart upload and its commit object');
    assert.equal((await call(apis[1]!.base, location, { method: 'DELETE', headers: TUS })).status, 204);
    assert.deepEqual(await keysOf(image.id), [], 'nothing left, unfinished multipart upload included');
    assert.equal((await client.getImage(image.id)).body.status, 'queued');
  });
});

describe('tus on S3 in embedded mode (pir serve with PIR_S3_ENDPOINT)', { skip: missing.length && !inCI ? `not running: ${missingText}` : false }, () => {
  it('takes a tus-js-client upload cut at random points, and resumes after pir serve was killed and started again', async () => {
    if (missing.length) throw new Error(`CI is set but these services are not running: ${missingText}`);
    const dir = await makeTempDir('pir-e2e-tus-embedded-s3-');
    const prefix = `${uniqueName('e2etusembedded')}/`;
    const store = new S3BlobStore({ ...services.s3, prefix });
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const env = {
      PIR_DATA_DIR: join(dir, 'data'), PIR_ADMIN_TOKEN: TOKEN, PIR_PORT: String(port),
      PIR_S3_ENDPOINT: services.s3.endpoint, PIR_S3_BUCKET: services.s3.bucket, PIR_S3_ACCESS_KEY_ID: services.s3.accessKeyId,
      PIR_S3_SECRET_ACCESS_KEY: services.s3.secretAccessKey, PIR_S3_REGION: services.s3.region, PIR_S3_FORCE_PATH_STYLE: 'true', PIR_S3_PREFIX: prefix,
    };
    let serve = await startPirProcess('serve', env, logDir, 'serve-s3');
    const call = (path: string, init: RequestInit = {}) => fetch(`${base}${path}`, { ...init, headers: { 'x-auth-token': TOKEN, ...(init.headers as Record<string, string>) } });
    try {
      const client = new PirClient(base, TOKEN);
      // tus-js-client through random cuts.
      const data = rawImage(18 * MiB + randomInt(2048) * 512);
      const image = await client.createImage({ name: 'tus-embedded-s3', disk_format: 'raw', container_format: 'bare' });
      const proxy = await cuttingProxy(port, [randomInt(256 * 1024, 6 * MiB), randomInt(256 * 1024, 6 * MiB)]);
      try {
        await new Promise<void>((resolve, reject) => {
          new tus.Upload(data, {
            endpoint: `http://127.0.0.1:${proxy.port}/v2/images/${image.id}/uploads`,
            headers: { 'X-Auth-Token': TOKEN },
            retryDelays: [0, 200, 500, 1000, 2000],
            uploadSize: data.length,
            onError: reject,
            onSuccess: () => resolve(),
          }).start();
        });
        assert.equal(proxy.cuts(), 2);
      } finally {
        await proxy.close();
      }
      const settled = await client.waitSettled(image.id, 120_000);
      assert.equal(settled.status, 'active', JSON.stringify(settled.pir_failure));
      assert.equal(settled.os_hash_value, sha512(data));

      // Half, then the process is killed; the new one resumes with the hash state in S3.
      const data2 = rawImage(20 * MiB);
      const image2 = await client.createImage({ name: 'tus-embedded-s3-restart', disk_format: 'raw', container_format: 'bare' });
      const created = await call(`/v2/images/${image2.id}/uploads`, { method: 'POST', headers: { ...TUS, 'upload-length': String(data2.length) } });
      assert.equal(created.status, 201);
      const location = created.headers.get('location')!;
      const half = 9 * MiB + 4096;
      const first = await call(location, { method: 'PATCH', headers: { ...PATCH_HEADERS, 'upload-offset': '0' }, body: new Uint8Array(data2.subarray(0, half)) });
      assert.equal(first.status, 204);
      await serve.kill();
      serve = await startPirProcess('serve', env, logDir, 'serve-s3-2');
      const head = await call(location, { method: 'HEAD', headers: TUS });
      assert.equal(head.headers.get('upload-offset'), String(half));
      const rest = await call(location, { method: 'PATCH', headers: { ...PATCH_HEADERS, 'upload-offset': String(half) }, body: new Uint8Array(data2.subarray(half)) });
      assert.equal(rest.status, 204, await rest.text());
      const settled2 = await client.waitSettled(image2.id, 120_000);
      assert.equal(settled2.status, 'active', JSON.stringify(settled2.pir_failure));
      assert.equal(settled2.os_hash_value, sha512(data2));
      assert.equal(settled2.checksum, md5(data2));
      assert.deepEqual((await store.list(`staging/${image2.id}.`)).map((b) => b.key), [`staging/${image2.id}.${settled2.pir_pipeline.run}.upload`]);
    } finally {
      await serve.stop();
      for (const blob of await store.list('')) await store.delete(blob.key).catch(() => {});
      store.close();
      await removeDir(dir);
    }
  });
});
